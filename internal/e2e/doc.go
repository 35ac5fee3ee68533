// Package e2e holds the end-to-end test of PulseBus as it is deployed: the
// relay and consumer binaries started as processes against a real
// PostgreSQL and a Kafka-protocol broker (kfake over TCP), events written by
// the SQL function pulsebus.publish as a service in any language would, and
// the results checked where an operator would look: the webhook receiving
// CloudEvents, the dead letters, the parked rows, the commands' output and
// the /metrics of both processes, and a real Prometheus server evaluating
// deploy/prometheus's alert rules and the dashboard's queries against them.
// It has no non-test code.
package e2e
