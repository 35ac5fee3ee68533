package dispatchprom

// DeadLettersSQL is the gauges' query, for the plan test.
const DeadLettersSQL = deadLettersSQL
