package webhook_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/edupulse/pulsebus/pkg/dispatch"
	"github.com/edupulse/pulsebus/pkg/dispatch/webhook"
	"github.com/edupulse/pulsebus/pkg/envelope"
)

type lessonPublished struct {
	LessonID string `json:"lesson_id"`
}

func (lessonPublished) EventType() string { return "lesson.published" }

// Deliver events to an HTTP endpoint; register the handler with a consumer
// as any other plain handler.
func Example() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Println(r.Method, r.Header.Get("ce-type"), r.Header.Get("Content-Type"))
		w.WriteHeader(http.StatusAccepted)
	}))
	defer srv.Close()

	h, err := webhook.New(webhook.Config{URL: srv.URL + "/hooks/search"})
	if err != nil {
		panic(err)
	}
	var c *dispatch.Consumer // from dispatch.New
	if c != nil {
		_ = c.Handle("search-hook", []string{"lesson.*"}, h)
	}

	env, _ := envelope.New("lessons-api", lessonPublished{LessonID: "42"})
	fmt.Println(h.Handle(context.Background(), env))
	// Output:
	// POST lesson.published application/json
	// <nil>
}
