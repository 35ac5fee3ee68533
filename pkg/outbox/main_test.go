package outbox_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/edupulse/pulsebus/internal/testing/testdb"
	"github.com/edupulse/pulsebus/internal/testing/testkafka"
	"github.com/edupulse/pulsebus/internal/testing/testmain"
)

func TestMain(m *testing.M) {
	closeExampleEnv := setExampleEnv()
	testmain.Run(m, testdb.DropTemplate, closeExampleEnv)
}

// setExampleEnv gives the examples what a user's program would have:
// DATABASE_URL naming a migrated database of its own and KAFKA_BROKERS a
// kfake cluster. It returns what closes them.
func setExampleEnv() (closeEnv func()) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db, err := testdb.Create(ctx, "pulsebus_outbox_examples_", 4)
	if err != nil {
		fmt.Fprintln(os.Stderr, "examples:", err)
		os.Exit(1)
	}
	kc, err := testkafka.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "examples:", err)
		os.Exit(1)
	}
	os.Setenv("DATABASE_URL", db.URL)
	os.Setenv("KAFKA_BROKERS", strings.Join(kc.Addrs, ","))
	return func() {
		kc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = db.Drop(ctx)
	}
}
