package outboxprom_test

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edupulse/pulsebus/pkg/outbox"
	"github.com/edupulse/pulsebus/pkg/outbox/outboxprom"
)

// Register the metrics and pass them to the relay as its hooks.
func Example() {
	metrics := outboxprom.New()
	registry := prometheus.NewRegistry()
	registry.MustRegister(metrics)

	cfg := outbox.RelayConfig{Hooks: metrics.Hooks() /* Pool, Brokers, ... */}
	_ = cfg // outbox.NewRelay(cfg)

	// The relay reports through the hooks; here by hand.
	cfg.Hooks.OnPublished("lessons", 3)
	families, _ := registry.Gather()
	for _, mf := range families {
		if mf.GetName() == "pulsebus_relay_events_published_total" {
			m := mf.GetMetric()[0]
			fmt.Println(mf.GetName(), m.GetLabel()[0].GetValue(), m.GetCounter().GetValue())
		}
	}
	// Output: pulsebus_relay_events_published_total lessons 3
}
