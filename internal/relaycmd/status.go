package relaycmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/edupulse/pulsebus/internal/cli"
	"github.com/edupulse/pulsebus/internal/console"
	"github.com/edupulse/pulsebus/pkg/outbox"
)

// Status is what "relay status" reports, read from the tables in one
// snapshot. Its JSON form is the output of "relay status --json".
type Status struct {
	// Relay is the relay group name whose lease is shown.
	Relay string `json:"relay"`
	// Backlog describes pulsebus.outbox.
	Backlog Backlog `json:"backlog"`
	// Parked describes pulsebus.outbox_parked.
	Parked Parked `json:"parked"`
	// Lease is the leader lease row, nil when no relay of the group ever
	// held it.
	Lease *Lease `json:"lease"`
	// Held lists the keys whose rows wait behind a parked row (relay
	// --on-refused hold-key), oldest parked row first, at most
	// console.MaxHeldKeys; empty with --on-refused park.
	Held []HeldKey `json:"held"`
}

// HeldKey is one topic and key whose rows wait behind a parked row.
type HeldKey = console.HeldKey

// Backlog is the outbox's content.
type Backlog struct {
	// Rows waiting to be published.
	Rows int64 `json:"rows"`
	// OldestAgeSeconds is the age of the oldest row (0 when empty),
	// measured with the database's clock.
	OldestAgeSeconds float64 `json:"oldest_age_seconds"`
	// Head is the row the relay publishes next, nil when empty.
	Head *HeadRow `json:"head,omitempty"`
	// Topics counts the rows per topic.
	Topics []TopicCount `json:"topics"`
}

// HeadRow is the oldest row in the outbox (lowest id).
type HeadRow struct {
	ID        int64     `json:"id"`
	Topic     string    `json:"topic"`
	CreatedAt time.Time `json:"created_at"`
	// Attempts counts failed publish attempts; with LastError, it shows
	// why the relay is stuck (a missing topic, the broker down).
	Attempts  int    `json:"attempts"`
	LastError string `json:"last_error,omitempty"`
}

// TopicCount is one topic's share of a table.
type TopicCount struct {
	Topic string `json:"topic"`
	Rows  int64  `json:"rows"`
	// OldestAgeSeconds is, for the backlog, the age of the topic's oldest
	// row; for parked rows, the time since the last one was parked.
	OldestAgeSeconds float64 `json:"oldest_age_seconds"`
}

// Parked is the content of pulsebus.outbox_parked: rows the broker refused
// for good.
type Parked struct {
	Rows   int64        `json:"rows"`
	Topics []TopicCount `json:"topics"`
}

// Lease is the relay group's leader lease row.
type Lease struct {
	LeaderID   string    `json:"leader_id"`
	Term       int64     `json:"term"`
	AcquiredAt time.Time `json:"acquired_at"`
	ExpiresAt  time.Time `json:"expires_at"`
	// Held is true while the lease is unexpired: LeaderID is the leader.
	Held bool `json:"held"`
	// ExpiresInSeconds is negative once the lease expired.
	ExpiresInSeconds float64 `json:"expires_in_seconds"`
}

// ReadStatus reads the status of relay group name in one read-only
// snapshot.
//
// With holdKeys (relay --on-refused hold-key) it also lists the keys held
// behind a parked row.
func ReadStatus(ctx context.Context, db interface {
	BeginTx(context.Context, pgx.TxOptions) (pgx.Tx, error)
}, name string, holdKeys bool) (Status, error) {
	st := Status{Relay: name, Backlog: Backlog{Topics: []TopicCount{}}, Parked: Parked{Topics: []TopicCount{}}, Held: []HeldKey{}}
	err := pgx.BeginTxFunc(ctx, db, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `
			SELECT topic, count(*), extract(epoch FROM clock_timestamp() - min(created_at))::float8
			  FROM pulsebus.outbox GROUP BY topic ORDER BY topic`)
		if err != nil {
			return fmt.Errorf("read outbox backlog: %w", err)
		}
		st.Backlog.Topics, err = pgx.CollectRows(rows, scanTopicCount)
		if err != nil {
			return fmt.Errorf("read outbox backlog: %w", err)
		}
		for _, tc := range st.Backlog.Topics {
			st.Backlog.Rows += tc.Rows
			st.Backlog.OldestAgeSeconds = max(st.Backlog.OldestAgeSeconds, tc.OldestAgeSeconds)
		}
		var head HeadRow
		err = tx.QueryRow(ctx, `SELECT id, topic, created_at, attempts, coalesce(last_error, '') FROM pulsebus.outbox ORDER BY id LIMIT 1`).
			Scan(&head.ID, &head.Topic, &head.CreatedAt, &head.Attempts, &head.LastError)
		switch {
		case err == nil:
			head.CreatedAt = head.CreatedAt.UTC()
			st.Backlog.Head = &head
		case !errors.Is(err, pgx.ErrNoRows):
			return fmt.Errorf("read outbox head: %w", err)
		}

		rows, err = tx.Query(ctx, `
			SELECT topic, count(*), extract(epoch FROM clock_timestamp() - max(parked_at))::float8
			  FROM pulsebus.outbox_parked GROUP BY topic ORDER BY topic`)
		if err != nil {
			return fmt.Errorf("read parked rows: %w", err)
		}
		st.Parked.Topics, err = pgx.CollectRows(rows, scanTopicCount)
		if err != nil {
			return fmt.Errorf("read parked rows: %w", err)
		}
		for _, tc := range st.Parked.Topics {
			st.Parked.Rows += tc.Rows
		}
		if holdKeys && st.Parked.Rows > 0 && st.Backlog.Rows > 0 {
			var err error
			if st.Held, err = console.ReadHeldKeys(ctx, tx); err != nil {
				return err
			}
		}

		var l Lease
		err = tx.QueryRow(ctx, `
			SELECT leader_id, term, acquired_at, expires_at, expires_at > clock_timestamp(),
			       extract(epoch FROM expires_at - clock_timestamp())::float8
			  FROM pulsebus.relay_leader WHERE name = $1`, name).
			Scan(&l.LeaderID, &l.Term, &l.AcquiredAt, &l.ExpiresAt, &l.Held, &l.ExpiresInSeconds)
		switch {
		case err == nil:
			l.AcquiredAt, l.ExpiresAt = l.AcquiredAt.UTC(), l.ExpiresAt.UTC()
			st.Lease = &l
		case !errors.Is(err, pgx.ErrNoRows):
			return fmt.Errorf("read relay lease: %w", err)
		}
		return nil
	})
	return st, err
}

func scanTopicCount(r pgx.CollectableRow) (TopicCount, error) {
	var tc TopicCount
	err := r.Scan(&tc.Topic, &tc.Rows, &tc.OldestAgeSeconds)
	return tc, err
}

// WriteText writes st for people.
func (st Status) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "relay:\t%s\n", st.Relay)
	switch l := st.Lease; {
	case l == nil:
		fmt.Fprintf(tw, "leader:\tno leader (no relay named %q has run)\n", st.Relay)
	case l.Held:
		fmt.Fprintf(tw, "leader:\t%s, term %d, lease expires in %s (%s), leader since %s\n",
			l.LeaderID, l.Term, seconds(l.ExpiresInSeconds), l.ExpiresAt.Format(stamp), l.AcquiredAt.Format(stamp))
	default:
		fmt.Fprintf(tw, "leader:\tno leader (last %s, term %d, lease ended %s ago at %s)\n",
			l.LeaderID, l.Term, seconds(-l.ExpiresInSeconds), l.ExpiresAt.Format(stamp))
	}
	if st.Backlog.Rows == 0 {
		fmt.Fprintf(tw, "backlog:\t%s\n", rows(0))
	} else {
		fmt.Fprintf(tw, "backlog:\t%s, oldest %s old\n", rows(st.Backlog.Rows), seconds(st.Backlog.OldestAgeSeconds))
		for _, tc := range st.Backlog.Topics {
			fmt.Fprintf(tw, "  %s\t%s, oldest %s old\n", tc.Topic, rows(tc.Rows), seconds(tc.OldestAgeSeconds))
		}
		if h := st.Backlog.Head; h != nil && h.Attempts > 0 {
			fmt.Fprintf(tw, "head row:\tid %d (%s): %d failed attempts, last error: %s\n", h.ID, h.Topic, h.Attempts, h.LastError)
		}
	}
	fmt.Fprintf(tw, "parked:\t%s\n", rows(st.Parked.Rows))
	for _, tc := range st.Parked.Topics {
		fmt.Fprintf(tw, "  %s\t%s, last parked %s ago\n", tc.Topic, rows(tc.Rows), seconds(tc.OldestAgeSeconds))
	}
	if len(st.Held) > 0 {
		var n int64
		for _, h := range st.Held {
			n += h.Rows
		}
		fmt.Fprintf(tw, "held:\t%s behind %d parked row(s) of their key\n", rows(n), len(st.Held))
		for _, h := range st.Held {
			fmt.Fprintf(tw, "  %s\t%s, key %q behind parked row %d\n", h.Topic, rows(h.Rows), h.Key, h.HeadID)
		}
	}
	return tw.Flush()
}

func rows(n int64) string {
	if n == 1 {
		return "1 row"
	}
	return fmt.Sprintf("%d rows", n)
}

// stamp formats times in the text output: UTC, milliseconds.
const stamp = "2006-01-02T15:04:05.000Z07:00"

// seconds formats a number of seconds: "4.2s" below a minute, else a
// duration rounded to the second ("1m30s", "26h3m0s").
func seconds(s float64) string {
	if s < 59.95 {
		return fmt.Sprintf("%.1fs", s)
	}
	return time.Duration(s * float64(time.Second)).Round(time.Second).String()
}

// dbFlags are the flags of the commands that only use the tables (status,
// parked): the database and how long to wait for it.
type dbFlags struct {
	databaseURL string
	timeout     time.Duration
}

func (d *dbFlags) register(ss *cli.Settings) {
	ss.String(&d.databaseURL, "database-url", "DATABASE_URL", cli.DefaultDatabaseURL, "PostgreSQL URL or DSN", cli.NonEmpty)
	ss.Secret()
	ss.Duration(&d.timeout, "connect-timeout", "RELAY_CONNECT_TIMEOUT", DefaultConnectTimeout, time.Millisecond, time.Hour,
		"how long to wait for PostgreSQL")
}

// connect connects within --connect-timeout and checks the schema is
// migrated.
func (d *dbFlags) connect(ctx context.Context) (*pgxpool.Pool, error) {
	cctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	return connectDB(cctx, d.databaseURL, cli.AppName(prog, "cli"), d.timeout)
}

func statusCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var (
		db        dbFlags
		name      string
		asJSON    bool
		check     bool
		maxAge    time.Duration
		onRefused string
	)
	cmd := cli.NewCommand(prog+" status", prog+" status [--json] [--check] [flags]", `Prints the outbox backlog (rows, age of the oldest, per topic), the parked
rows (per topic; "relay parked list" shows them one by one) and the relay
group's leader lease, read from the tables.

With --check it also exits 1, naming each problem on stderr, when no relay
holds the lease, when rows are parked, or when the oldest waiting row is
older than --max-backlog-age: for scripts and probes.`)
	db.register(cmd.Settings)
	cmd.String(&name, "name", "RELAY_NAME", outbox.DefaultRelayName, "relay group whose leader lease to show", cli.NonEmpty)
	cmd.Bool(&asJSON, "json", "", false, "print JSON instead of text")
	cmd.Enum(&onRefused, "on-refused", "RELAY_ON_REFUSED", string(outbox.OnRefusedHoldKey),
		[]string{string(outbox.OnRefusedHoldKey), string(outbox.OnRefusedPark)}, "the relays' --on-refused: with hold-key, list the keys held behind parked rows")
	cmd.Bool(&check, "check", "", false, "exit 1 without a leader, with parked rows, or with a backlog older than --max-backlog-age")
	cmd.Duration(&maxAge, "max-backlog-age", "", DefaultMaxBacklogAge, time.Second, 24*time.Hour, "with --check, the oldest waiting row's age that counts as a problem")
	if err := cmd.Parse(args, stdout, stderr); err != nil {
		return err
	}
	pool, err := db.connect(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	st, err := ReadStatus(ctx, pool, name, onRefused == string(outbox.OnRefusedHoldKey))
	if err != nil {
		return err
	}
	if asJSON {
		err = writeJSON(stdout, st)
	} else {
		err = st.WriteText(stdout)
	}
	if err != nil || !check {
		return err
	}
	if problems := st.Problems(maxAge); len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintf(stderr, "check: %s\n", p)
		}
		return &cli.LoggedError{Err: fmt.Errorf("relay status --check: %d problem(s): %s", len(problems), strings.Join(problems, "; "))}
	}
	return nil
}

// DefaultMaxBacklogAge is the default of relay status --max-backlog-age.
const DefaultMaxBacklogAge = time.Minute

// Problems lists what --check counts as unhealthy in st: no relay holding
// the lease, parked rows, and a backlog whose oldest row is older than
// maxAge. Empty when all is well.
func (st Status) Problems(maxAge time.Duration) []string {
	var problems []string
	switch {
	case st.Lease == nil:
		problems = append(problems, fmt.Sprintf("no relay of group %s has ever held the lease", st.Relay))
	case !st.Lease.Held:
		problems = append(problems, fmt.Sprintf("no relay of group %s holds the lease (expired %.0fs ago)", st.Relay, -st.Lease.ExpiresInSeconds))
	}
	if st.Parked.Rows > 0 {
		problems = append(problems, fmt.Sprintf("%d parked row(s): relay parked list", st.Parked.Rows))
	}
	for _, h := range st.Held {
		problems = append(problems, fmt.Sprintf("%s of %s key %q held behind parked row %d", rows(h.Rows), h.Topic, h.Key, h.HeadID))
	}
	if age := time.Duration(st.Backlog.OldestAgeSeconds * float64(time.Second)); st.Backlog.Rows > 0 && age > maxAge {
		problems = append(problems, fmt.Sprintf("the oldest of %d waiting row(s) is %s old (over --max-backlog-age %s)", st.Backlog.Rows, age.Round(time.Second), maxAge))
	}
	return problems
}
