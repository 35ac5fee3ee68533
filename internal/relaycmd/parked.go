package relaycmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/edupulse/pulsebus/internal/cli"
	"github.com/edupulse/pulsebus/pkg/outbox"
)

// ParkedRow is one row of pulsebus.outbox_parked: an event the broker
// refused for good (too large, invalid topic, not authorized, not a valid
// envelope). Its JSON form is an element of "relay parked list --json".
type ParkedRow struct {
	// ID is the outbox id the row had when it was parked.
	ID      int64     `json:"id"`
	EventID uuid.UUID `json:"event_id"`
	Topic   string    `json:"topic"`
	Key     string    `json:"key"`
	Type    string    `json:"type"`
	Source  string    `json:"source"`
	// CreatedAt is when the event was written to the outbox.
	CreatedAt time.Time `json:"created_at"`
	// Attempts counts the publish attempts, the refused one included.
	Attempts int       `json:"attempts"`
	ParkedAt time.Time `json:"parked_at"`
	// Error is why the broker (or the relay's own checks) refused it.
	Error string `json:"error"`
	// PayloadBytes is the size of the event's payload.
	PayloadBytes int `json:"payload_bytes"`
}

// ParkedFilter selects parked rows: the row with ID, the rows of Topic, or
// with All every row. Exactly one must be set.
type ParkedFilter struct {
	ID    int64
	Topic string
	All   bool
}

// selectors counts how many of ID, Topic and All are set.
func (f ParkedFilter) selectors() int {
	n := 0
	for _, set := range []bool{f.ID != 0, f.Topic != "", f.All} {
		if set {
			n++
		}
	}
	return n
}

func (f ParkedFilter) check() error {
	if f.selectors() != 1 {
		return errors.New("relaycmd: ParkedFilter: set exactly one of ID, Topic and All")
	}
	return nil
}

// args are the filter's query arguments: $1 id (NULL: any), $2 topic
// (NULL: any), as parkedWhere uses them.
func (f ParkedFilter) args() []any {
	var id, topic any
	if f.ID != 0 {
		id = f.ID
	}
	if f.Topic != "" {
		topic = f.Topic
	}
	return []any{id, topic}
}

const parkedWhere = `($1::bigint IS NULL OR id = $1) AND ($2::text IS NULL OR topic = $2)`

const parkedColumns = `id, event_id, topic, key, type, source, created_at, attempts, parked_at, error, octet_length(payload)`

// scanParked scans parkedColumns, then extra.
func scanParked(r pgx.CollectableRow, extra ...any) (ParkedRow, error) {
	var p ParkedRow
	err := r.Scan(append([]any{&p.ID, &p.EventID, &p.Topic, &p.Key, &p.Type, &p.Source, &p.CreatedAt, &p.Attempts,
		&p.ParkedAt, &p.Error, &p.PayloadBytes}, extra...)...)
	p.CreatedAt, p.ParkedAt = p.CreatedAt.UTC(), p.ParkedAt.UTC()
	return p, err
}

// queryer is what the parked functions need of a pool or a transaction.
type queryer interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// ListParked returns the parked rows of topic (every topic when empty),
// oldest outbox id first, at most limit of them, and how many there are in
// all.
func ListParked(ctx context.Context, db queryer, topic string, limit int) (rows []ParkedRow, total int64, err error) {
	f := ParkedFilter{Topic: topic}
	q, err := db.Query(ctx, `
		SELECT `+parkedColumns+`, count(*) OVER ()
		  FROM pulsebus.outbox_parked WHERE `+parkedWhere+`
		 ORDER BY id LIMIT $3`, append(f.args(), limit)...)
	if err != nil {
		return nil, 0, fmt.Errorf("list parked rows: %w", err)
	}
	rows, err = pgx.CollectRows(q, func(r pgx.CollectableRow) (ParkedRow, error) { return scanParked(r, &total) })
	if err != nil {
		return nil, 0, fmt.Errorf("list parked rows: %w", err)
	}
	return rows, total, nil
}

// RequeueResult is what [RequeueParked] moved.
type RequeueResult struct {
	// Rows is how many parked rows went back into the outbox.
	Rows int
	// FirstID and LastID are the smallest and largest outbox ids they went
	// back under, the ids they had (0 when none moved).
	FirstID, LastID int64
	// Topics counts the moved rows per topic, by topic name.
	Topics []TopicCount
}

// requeueSQL moves the selected parked rows back into the outbox with
// their old ids (never reused: the outbox's ids come from an identity), so
// each goes out before the rows committed after it (with --on-refused
// hold-key, before the rows of its key that waited behind it); attempts 0,
// no last error, created_at now.
const requeueSQL = `
WITH moved AS (
	DELETE FROM pulsebus.outbox_parked WHERE ` + parkedWhere + `
	RETURNING *
)
INSERT INTO pulsebus.outbox (id, event_id, topic, key, type, source, subject, event_time, content_type, meta, payload, dataschema)
OVERRIDING SYSTEM VALUE
SELECT id, event_id, topic, key, type, source, subject, event_time, content_type, meta, payload, dataschema
  FROM moved ORDER BY id
RETURNING id, topic`

// RequeueParked moves the parked rows f selects back into pulsebus.outbox
// and wakes the relays (pg_notify on [outbox.NotifyChannel]), in one
// transaction. The rows keep their outbox ids, so the relay publishes them
// at once, ahead of the rows committed after them: with hold-key, a
// requeued row goes out before the rows of its key that waited behind it.
// Attempts start again from 0.
func RequeueParked(ctx context.Context, db interface {
	Begin(context.Context) (pgx.Tx, error)
}, f ParkedFilter) (RequeueResult, error) {
	var res RequeueResult
	if err := f.check(); err != nil {
		return res, err
	}
	err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, requeueSQL, f.args()...)
		if err != nil {
			return err
		}
		type moved struct {
			id    int64
			topic string
		}
		ms, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (moved, error) {
			var m moved
			return m, r.Scan(&m.id, &m.topic)
		})
		if err != nil || len(ms) == 0 {
			return err
		}
		if _, err := tx.Exec(ctx, `SELECT pg_notify($1, '')`, outbox.NotifyChannel); err != nil {
			return err
		}
		res.Rows, res.FirstID, res.LastID = len(ms), ms[0].id, ms[0].id
		perTopic := map[string]int64{}
		for _, m := range ms {
			res.FirstID, res.LastID = min(res.FirstID, m.id), max(res.LastID, m.id)
			if perTopic[m.topic] == 0 {
				res.Topics = append(res.Topics, TopicCount{Topic: m.topic})
			}
			perTopic[m.topic]++
		}
		for i := range res.Topics {
			res.Topics[i].Rows = perTopic[res.Topics[i].Topic]
		}
		return nil
	})
	if err != nil {
		return RequeueResult{}, fmt.Errorf("requeue parked rows: %w", err)
	}
	return res, nil
}

// DeleteParked deletes the parked rows f selects (f.All is refused: delete
// by id or topic) and returns them, oldest outbox id first.
func DeleteParked(ctx context.Context, db queryer, f ParkedFilter) ([]ParkedRow, error) {
	if err := f.check(); err != nil {
		return nil, err
	}
	if f.All {
		return nil, errors.New("relaycmd: DeleteParked deletes by ID or Topic only")
	}
	q, err := db.Query(ctx, `
		WITH deleted AS (DELETE FROM pulsebus.outbox_parked WHERE `+parkedWhere+` RETURNING *)
		SELECT `+parkedColumns+` FROM deleted ORDER BY id`, f.args()...)
	if err != nil {
		return nil, fmt.Errorf("delete parked rows: %w", err)
	}
	rows, err := pgx.CollectRows(q, func(r pgx.CollectableRow) (ParkedRow, error) { return scanParked(r) })
	if err != nil {
		return nil, fmt.Errorf("delete parked rows: %w", err)
	}
	return rows, nil
}

// writeParkedTable writes rows as a table, each on one line: the key cut
// to keyWidth runes, the error whole (the last column, so a long one does
// not push the others apart; a cut error hides the limit or the topic it
// names).
func writeParkedTable(w io.Writer, rows []ParkedRow) error {
	const keyWidth = 32
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tEVENT_ID\tTOPIC\tKEY\tTYPE\tATTEMPTS\tPARKED_AT\tERROR")
	for _, p := range rows {
		key := oneLine(p.Key, keyWidth)
		if key == "" {
			key = "-"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", p.ID, p.EventID, oneLine(p.Topic, 0), key, oneLine(p.Type, 0),
			p.Attempts, p.ParkedAt.Format(time.RFC3339), oneLine(p.Error, 0))
	}
	return tw.Flush()
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// oneLine flattens s to one line (tabs and newlines become spaces) of at
// most max runes, "..." marking a cut; max 0 means no limit.
func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if max > 0 && utf8.RuneCountInString(s) > max {
		s = string([]rune(s)[:max]) + "..."
	}
	return s
}

func parkedCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	g := &cli.Group{
		Name: prog + " parked",
		About: `Events the broker refuses for good (larger than the broker or
--max-message-bytes accepts, an invalid topic, not authorized, not a valid
envelope) are moved out of the outbox into pulsebus.outbox_parked with their
error, counted in pulsebus_relay_parked_total and logged, so the rest keeps
flowing. These commands show them and put them back or drop them.`,
		Commands: []cli.Subcommand{
			{Name: "list", Summary: "print the parked rows, oldest first", Run: parkedListCommand},
			{Name: "requeue", Summary: "move parked rows back into the outbox for the relay to publish", Run: parkedRequeueCommand},
			{Name: "delete", Summary: "drop parked rows for good, printing what was deleted", Run: parkedDeleteCommand},
		},
	}
	return g.Run(ctx, args, stdout, stderr)
}

// tableCmd is one command of "relay parked" or "relay outbox": its flags,
// --database-url and --connect-timeout first.
type tableCmd struct {
	*cli.Command
	db dbFlags
}

func newParkedCmd(name, usage, about string) *tableCmd {
	return newTableCmd("parked", name, usage, about)
}

// newTableCmd returns the command "relay group name".
func newTableCmd(group, name, usage, about string) *tableCmd {
	c := &tableCmd{Command: cli.NewCommand(prog+" "+group+" "+name, prog+" "+group+" "+usage, about)}
	c.db.register(c.Settings)
	return c
}

// run parses args, runs check (if any), connects and calls do with the
// pool.
func (c *tableCmd) run(ctx context.Context, args []string, stdout, stderr io.Writer, check func() error, do func(*pgxpool.Pool) error) error {
	if err := c.Parse(args, stdout, stderr); err != nil {
		return err
	}
	if check != nil {
		if err := check(); err != nil {
			return err
		}
	}
	pool, err := c.db.connect(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	return do(pool)
}

// topicFlag checks a --topic value: empty (not given) or a Kafka topic
// name the outbox could hold.
func topicFlag(s string) error {
	if s != "" && (len(s) > 249 || strings.ContainsAny(s, " \t\n")) {
		return errors.New("is not a Kafka topic name")
	}
	return nil
}

const listAbout = `Prints the parked rows, oldest outbox id first: id, event id, topic, key,
type, attempts, when it was parked and the whole error (on one line in the
table; as stored in --json, which adds source, created_at and
payload_bytes).`

func parkedListCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := newParkedCmd("list", "list [--topic T] [--limit N] [--json] [flags]", listAbout)
	var (
		topic  string
		limit  int
		asJSON bool
	)
	c.String(&topic, "topic", "", "", "only this topic's parked rows", topicFlag)
	c.Int(&limit, "limit", "", 100, 1, 1_000_000, "at most this many rows")
	c.Bool(&asJSON, "json", "", false, "print a JSON array with every field and the full error instead of a table")
	return c.run(ctx, args, stdout, stderr, nil, func(pool *pgxpool.Pool) error {
		rows, total, err := ListParked(ctx, pool, topic, limit)
		if err != nil {
			return err
		}
		return printRows(stdout, stderr, rows, total, asJSON, nothing(ParkedFilter{Topic: topic}), writeParkedTable)
	})
}

// printRows prints the first rows of total that a list command read: a
// JSON array on stdout (a note that more exist on stderr, so stdout stays
// JSON), or the table and the note, or none when there are no rows.
func printRows[R any](stdout, stderr io.Writer, rows []R, total int64, asJSON bool, none string, table func(io.Writer, []R) error) error {
	more := ""
	if int64(len(rows)) < total {
		more = fmt.Sprintf("(first %d of %d shown; raise --limit for more)\n", len(rows), total)
	}
	if asJSON {
		fmt.Fprint(stderr, more)
		return writeJSON(stdout, append([]R{}, rows...))
	}
	if len(rows) == 0 {
		fmt.Fprintln(stdout, none)
		return nil
	}
	if err := table(stdout, rows); err != nil {
		return err
	}
	fmt.Fprint(stdout, more)
	return nil
}

// nothing says that f selects no parked rows.
func nothing(f ParkedFilter) string {
	switch {
	case f.ID != 0:
		return fmt.Sprintf("no parked row with id %d", f.ID)
	case f.Topic != "":
		return "no parked rows for topic " + f.Topic
	default:
		return "no parked rows"
	}
}

// selection defines requeue's or delete's --id and --topic (and --all
// when withAll); check, after parsing, requires exactly one of them.
func (c *tableCmd) selection(withAll bool, verb string) (f *ParkedFilter, check func() error) {
	f = &ParkedFilter{}
	var id int
	c.Int(&id, "id", "", 0, 0, math.MaxInt, verb+" the parked row with this id (the id list shows)")
	c.ShowDefault("none")
	c.String(&f.Topic, "topic", "", "", verb+" every parked row of this topic", topicFlag)
	names, want := "--id/--topic", "give one: --id ID or --topic T"
	if withAll {
		c.Bool(&f.All, "all", "", false, verb+" every parked row")
		names, want = "--id/--topic/--all", "give one: --id ID, --topic T or --all"
	}
	return f, func() error {
		f.ID = int64(id)
		if c.From("id") != "" && id == 0 {
			return &cli.ConfigError{Setting: "--id", Reason: `"0" is not a parked row id (ids start at 1)`}
		}
		switch n := f.selectors(); {
		case n == 0:
			return &cli.ConfigError{Setting: names, Reason: want}
		case n > 1:
			return &cli.ConfigError{Setting: names, Reason: want + ", not several"}
		}
		return nil
	}
}

// errNoSuchID is the error of requeue and delete when --id names no row:
// the operator most likely mistyped it.
func errNoSuchID(id int64) error {
	return fmt.Errorf("no parked row with id %d (see relay parked list)", id)
}

const requeueAbout = `Moves parked rows back into pulsebus.outbox in one transaction and wakes
the running relays (pg_notify), which publish them like any other row. Fix
the cause first (raise the topic's max.message.bytes and --max-message-bytes,
create the topic, grant the ACL), or the relay parks them again.

The rows keep their outbox ids, so they go out ahead of the rows committed
after them. With --on-refused hold-key (the relay's default) the later rows
of a parked row's key waited behind it: the requeued row reaches Kafka first,
then they follow in order. With --on-refused park they went out already, so
the requeued event arrives after them. Attempts start again from 0;
created_at becomes now (backlog age and commit-to-ack latency count from the
requeue); the event id and time stay.`

func parkedRequeueCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := newParkedCmd("requeue", "requeue --id ID | --topic T | --all [flags]", requeueAbout)
	f, check := c.selection(true, "requeue")
	return c.run(ctx, args, stdout, stderr, check, func(pool *pgxpool.Pool) error {
		res, err := RequeueParked(ctx, pool, *f)
		switch {
		case err != nil:
			return err
		case res.Rows == 0 && f.ID != 0:
			return errNoSuchID(f.ID)
		case res.Rows == 0:
			fmt.Fprintf(stdout, "%s: nothing requeued\n", nothing(*f))
			return nil
		}
		ids := fmt.Sprintf("id %d", res.FirstID)
		if res.Rows > 1 {
			ids = fmt.Sprintf("ids %d to %d", res.FirstID, res.LastID)
		}
		fmt.Fprintf(stdout, "requeued %s into pulsebus.outbox (%s, as before) and notified the relay\n", rows(int64(res.Rows)), ids)
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		for _, tc := range res.Topics {
			fmt.Fprintf(tw, "  %s\t%s\n", tc.Topic, rows(tc.Rows))
		}
		return tw.Flush()
	})
}

const deleteAbout = `Deletes parked rows for good: the events are never published. Prints every
deleted row (as list does), so the output is a record of what was dropped.
There is no --all: delete by id or by topic.`

func parkedDeleteCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := newParkedCmd("delete", "delete --id ID | --topic T [flags]", deleteAbout)
	f, check := c.selection(false, "delete")
	return c.run(ctx, args, stdout, stderr, check, func(pool *pgxpool.Pool) error {
		deleted, err := DeleteParked(ctx, pool, *f)
		switch {
		case err != nil:
			return err
		case len(deleted) == 0 && f.ID != 0:
			return errNoSuchID(f.ID)
		case len(deleted) == 0:
			fmt.Fprintf(stdout, "%s: nothing deleted\n", nothing(*f))
			return nil
		}
		fmt.Fprintf(stdout, "deleted %s:\n", rows(int64(len(deleted))))
		return writeParkedTable(stdout, deleted)
	})
}
