package cli_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/edupulse/pulsebus/internal/testing/testdb"
)

// rolePrefix returns a random role name prefix ("pbt1a2b3c_") and drops
// the four roles it names when t ends: roles are cluster-wide.
func rolePrefix(t *testing.T) string {
	t.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	prefix := "pbt" + hex.EncodeToString(b) + "_"
	t.Cleanup(func() {
		for _, p := range []string{"producer", "relay", "consumer", "admin"} {
			testdb.DropRole(t, prefix+p)
		}
	})
	return prefix
}

// ownedDatabase creates an empty database owned by a new LOGIN role with
// the attributes options and returns a URL that connects to it as that
// role, with the setting pulsebus.role_prefix = prefix.
func ownedDatabase(t *testing.T, options, prefix string) string {
	t.Helper()
	owner := testdb.NewRole(t, options) // before the database: dropped after it
	db := testdb.NewEmpty(t)
	admin, err := pgx.Connect(context.Background(), testdb.ServerURL())
	require.NoError(t, err)
	defer admin.Close(context.Background())
	_, err = admin.Exec(context.Background(), `ALTER DATABASE `+pgx.Identifier{db.Name}.Sanitize()+` OWNER TO `+pgx.Identifier{owner}.Sanitize())
	require.NoError(t, err)
	u, err := url.Parse(testdb.URLAs(db.URL, owner))
	require.NoError(t, err)
	q := u.Query()
	q.Set("pulsebus.role_prefix", prefix)
	u.RawQuery = q.Encode()
	return u.String()
}

// A migrating user without CREATEROLE still migrates: the roles it could
// not create are named in a warning with what a DBA runs, and once the DBA
// has created them, pulsebus.setup_roles() grants them what they need.
func TestRunMigrate_WithoutCreateRoleNamesTheMissingRoles(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	prefix := rolePrefix(t)
	ownerURL := ownedDatabase(t, "LOGIN", prefix)

	out, errOut, err := runMigrate(t, "--database-url", ownerURL)
	require.NoError(t, err)
	require.Contains(t, out, "schema now at version")
	require.Contains(t, errOut, "warning: the roles "+prefix+"admin, "+prefix+"consumer, "+prefix+"producer, "+prefix+"relay do not exist")
	require.Contains(t, errOut, "SELECT * FROM pulsebus.setup_roles()")

	admin, err := pgx.Connect(ctx, testdb.ServerURL()) // the DBA
	require.NoError(t, err)
	defer admin.Close(ctx)
	for _, p := range []string{"producer", "relay", "consumer", "admin"} {
		_, err := admin.Exec(ctx, `CREATE ROLE `+pgx.Identifier{prefix + p}.Sanitize()+` NOLOGIN`)
		require.NoError(t, err)
	}
	owner, err := pgx.Connect(ctx, ownerURL)
	require.NoError(t, err)
	defer owner.Close(ctx)
	rows, err := owner.Query(ctx, `SELECT role_name::text || ' ' || status FROM pulsebus.setup_roles()`)
	require.NoError(t, err)
	status, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Equal(t, []string{prefix + "admin granted", prefix + "consumer granted", prefix + "producer granted", prefix + "relay granted"}, status)

	_, errOut, err = runMigrate(t, "--database-url", ownerURL)
	require.NoError(t, err)
	require.NotContains(t, errOut, "warning")

	// A member of the producer role now publishes, and reads nothing.
	u, err := url.Parse(ownerURL)
	require.NoError(t, err)
	producer, err := pgxpool.New(ctx, testdb.URLAs(u.String(), testdb.NewRole(t, "LOGIN", prefix+"producer")))
	require.NoError(t, err)
	defer producer.Close()
	_, err = producer.Exec(ctx, `SELECT pulsebus.publish('lessons', 'k', 'lesson.published', '{}')`)
	require.NoError(t, err)
	_, err = producer.Exec(ctx, `SELECT 1 FROM pulsebus.outbox`)
	require.ErrorContains(t, err, "permission denied")
}

// A migrating user with CREATEROLE (not a superuser) creates the missing
// roles, NOLOGIN, and no warning is printed; roles that exist (made by a
// DBA, or by the migration of another database) are used as they are.
func TestRunMigrate_WithCreateRoleCreatesTheRoles(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	prefix := rolePrefix(t)
	admin, err := pgx.Connect(ctx, testdb.ServerURL())
	require.NoError(t, err)
	defer admin.Close(ctx)
	_, err = admin.Exec(ctx, `CREATE ROLE `+pgx.Identifier{prefix + "admin"}.Sanitize()+` NOLOGIN`) // a DBA made this one
	require.NoError(t, err)

	first := ownedDatabase(t, "LOGIN CREATEROLE", prefix)
	_, errOut, err := runMigrate(t, "--database-url", first)
	require.NoError(t, err)
	require.NotContains(t, errOut, "warning")
	var nologin int
	require.NoError(t, admin.QueryRow(ctx, `SELECT count(*) FROM pg_roles WHERE rolname LIKE $1 || '%' AND NOT rolcanlogin`, prefix).Scan(&nologin))
	require.Equal(t, 4, nologin)

	second := ownedDatabase(t, "LOGIN", prefix) // the roles exist: no CREATEROLE needed
	_, errOut, err = runMigrate(t, "--database-url", second)
	require.NoError(t, err)
	require.NotContains(t, errOut, "warning")
}
