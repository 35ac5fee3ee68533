package outbox

// Test-only access to the relay's SQL, so tests and benchmarks can run
// exactly the relay's statements.

// ClaimSQLForTest is the relay's claim statement.
const ClaimSQLForTest = claimSQL

// BeginClaimSQLForTest is how a relay with cfg begins a claim transaction.
func BeginClaimSQLForTest(cfg RelayConfig) string {
	c, err := cfg.withDefaults()
	if err != nil {
		panic(err)
	}
	return beginSQL(c.LeaseTTL)
}
