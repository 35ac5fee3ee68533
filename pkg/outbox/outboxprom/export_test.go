package outboxprom

// ParkedSQL is the parked gauges' query, for the plan test.
const ParkedSQL = parkedSQL
