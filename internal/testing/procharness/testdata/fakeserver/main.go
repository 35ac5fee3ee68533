// Command fakeserver is procharness's test subject: it serves /healthz and
// /metrics on $ADDR, prints its arguments, and exits with $EXIT_CODE on
// SIGTERM, or sleeps through it when $IGNORE_TERM is set.
package main

import (
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
)

func main() {
	fmt.Println("args:", os.Args[1:])
	fmt.Fprintln(os.Stderr, "starting")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	http.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	http.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, "# TYPE fake_total counter\nfake_total{topic=\"a\"} 3\nfake_total{topic=\"b\"} 4\n# TYPE fake_up gauge\nfake_up 1\n")
	})
	go func() {
		if err := http.ListenAndServe(os.Getenv("ADDR"), nil); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(9)
		}
	}()
	for range sig {
		if os.Getenv("IGNORE_TERM") == "" {
			code, _ := strconv.Atoi(os.Getenv("EXIT_CODE"))
			os.Exit(code)
		}
		fmt.Fprintln(os.Stderr, "ignoring SIGTERM")
	}
}
