package migrate_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/edupulse/pulsebus/pkg/migrate"
)

// A service migrates the PulseBus schema at start-up, before its relay or
// consumer runs: Up applies whatever is missing, under a lock, so that
// replicas starting together apply each migration once, and a second run
// has nothing to do. (The test's TestMain points DATABASE_URL at a fresh,
// empty database.)
func ExampleUp() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()

	if _, err := migrate.Up(ctx, pool); err != nil {
		log.Fatal(err)
	}
	again, err := migrate.Up(ctx, pool)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("applied on the second run:", len(again.Versions))

	// A process that must not migrate (a read-only role, say) checks
	// instead, and stops with an error saying which version is missing.
	if err := migrate.Check(ctx, pool); err != nil {
		log.Fatal(err)
	}
	st, err := migrate.GetStatus(ctx, pool)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("schema current:", st.Current == st.Latest)
	// Output:
	// applied on the second run: 0
	// schema current: true
}
