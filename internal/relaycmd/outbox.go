package relaycmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/edupulse/pulsebus/internal/cli"
)

// OutboxRow is one row still waiting in pulsebus.outbox. Its JSON form is
// an element of "relay outbox list --json".
type OutboxRow struct {
	ID      int64     `json:"id"`
	EventID uuid.UUID `json:"event_id"`
	Topic   string    `json:"topic"`
	Key     string    `json:"key"`
	Type    string    `json:"type"`
	Source  string    `json:"source"`
	// CreatedAt is when the event was written to the outbox.
	CreatedAt time.Time `json:"created_at"`
	// Attempts counts failed publish attempts so far; LastError is the
	// last one's error ("" when none failed).
	Attempts  int    `json:"attempts"`
	LastError string `json:"last_error"`
	// PayloadBytes is the size of the event's payload.
	PayloadBytes int `json:"payload_bytes"`
}

// OutboxFilter selects waiting rows: the row with ID, or the rows of Topic.
// Exactly one must be set.
type OutboxFilter struct {
	ID    int64
	Topic string
}

func (f OutboxFilter) check() error {
	if (f.ID != 0) == (f.Topic != "") {
		return errors.New("relaycmd: OutboxFilter: set exactly one of ID and Topic")
	}
	return nil
}

// args are the filter's query arguments, as parkedWhere uses them.
func (f OutboxFilter) args() []any { return ParkedFilter{ID: f.ID, Topic: f.Topic}.args() }

const outboxColumns = `id, event_id, topic, key, type, source, created_at, attempts, coalesce(last_error, ''), octet_length(payload)`

// scanOutbox scans outboxColumns, then extra.
func scanOutbox(r pgx.CollectableRow, extra ...any) (OutboxRow, error) {
	var o OutboxRow
	err := r.Scan(append([]any{&o.ID, &o.EventID, &o.Topic, &o.Key, &o.Type, &o.Source, &o.CreatedAt, &o.Attempts,
		&o.LastError, &o.PayloadBytes}, extra...)...)
	o.CreatedAt = o.CreatedAt.UTC()
	return o, err
}

// ListOutbox returns the rows waiting in the outbox for topic (every topic
// when empty), oldest id first, at most limit of them, and how many there
// are in all. Rows a relay is publishing right now are listed too.
func ListOutbox(ctx context.Context, db queryer, topic string, limit int) (rows []OutboxRow, total int64, err error) {
	q, err := db.Query(ctx, `
		SELECT `+outboxColumns+`, count(*) OVER ()
		  FROM pulsebus.outbox WHERE `+parkedWhere+`
		 ORDER BY id LIMIT $3`, append(OutboxFilter{Topic: topic}.args(), limit)...)
	if err != nil {
		return nil, 0, fmt.Errorf("list outbox rows: %w", err)
	}
	rows, err = pgx.CollectRows(q, func(r pgx.CollectableRow) (OutboxRow, error) { return scanOutbox(r, &total) })
	if err != nil {
		return nil, 0, fmt.Errorf("list outbox rows: %w", err)
	}
	return rows, total, nil
}

// OutboxChange is what [ParkOutbox] or [DeleteOutbox] did.
type OutboxChange[T any] struct {
	// Rows are the rows parked (as [ParkedRow]) or deleted (as [OutboxRow]),
	// oldest id first.
	Rows []T
	// InFlight counts the selected rows left alone because a relay holds
	// them: it is publishing them right now (its claim has them locked).
	// Each is either published, or back in the outbox when the attempt
	// fails; run the command again then.
	InFlight int64
}

// operatorParkPrefix starts the error of a row an operator parked.
const operatorParkPrefix = "parked by an operator: "

// claimFreeRows selects the waiting rows parkedWhere picks that no relay
// holds, and counts in the same snapshot those it holds. A row a relay is
// publishing is locked by its claim (which deleted it, uncommitted): SKIP
// LOCKED leaves it alone instead of waiting for the relay.
const claimFreeRows = `
WITH matching AS (
	SELECT id FROM pulsebus.outbox WHERE ` + parkedWhere + `
), target AS (
	SELECT id FROM pulsebus.outbox WHERE ` + parkedWhere + ` ORDER BY id FOR UPDATE SKIP LOCKED
), in_flight AS (
	SELECT (SELECT count(*) FROM matching) - (SELECT count(*) FROM target) AS n
)`

// parkOutboxSQL moves the claim-free selected rows to outbox_parked with
// the operator's reason ($3); each returned row also carries the in-flight
// count.
const parkOutboxSQL = claimFreeRows + `, moved AS (
	DELETE FROM pulsebus.outbox o USING target WHERE o.id = target.id
	RETURNING o.*
), parked AS (
	INSERT INTO pulsebus.outbox_parked (id, event_id, topic, key, type, source, subject, event_time,
	                                    content_type, meta, payload, dataschema, created_at, attempts, error)
	SELECT id, event_id, topic, key, type, source, subject, event_time,
	       content_type, meta, payload, dataschema, created_at, attempts, '` + operatorParkPrefix + `' || $3
	  FROM moved
	RETURNING ` + parkedColumns + `
)
SELECT parked.*, in_flight.n FROM parked, in_flight ORDER BY parked.id`

// deleteOutboxSQL deletes the claim-free selected rows; each returned row
// also carries the in-flight count.
const deleteOutboxSQL = claimFreeRows + `, deleted AS (
	DELETE FROM pulsebus.outbox o USING target WHERE o.id = target.id
	RETURNING o.*
)
SELECT ` + outboxColumns + `, in_flight.n FROM deleted, in_flight ORDER BY id`

// ParkOutbox moves the waiting rows f selects to pulsebus.outbox_parked
// in one statement, with "parked by an operator: " + reason as their error,
// so the relay stops trying them; "relay parked requeue" puts them back.
// Their attempts and last error stay as they were. Rows a relay is
// publishing right now are left alone and counted in InFlight.
func ParkOutbox(ctx context.Context, db queryer, f OutboxFilter, reason string) (OutboxChange[ParkedRow], error) {
	if reason == "" {
		return OutboxChange[ParkedRow]{}, errors.New("relaycmd: ParkOutbox needs a reason")
	}
	res, err := changeOutbox(ctx, db, f, parkOutboxSQL, []any{reason}, scanParked)
	if err != nil {
		return res, fmt.Errorf("park outbox rows: %w", err)
	}
	return res, nil
}

// DeleteOutbox deletes the waiting rows f selects in one statement and
// returns them: their events are never published. Rows a relay is
// publishing right now are left alone and counted in InFlight.
func DeleteOutbox(ctx context.Context, db queryer, f OutboxFilter) (OutboxChange[OutboxRow], error) {
	res, err := changeOutbox(ctx, db, f, deleteOutboxSQL, nil, scanOutbox)
	if err != nil {
		return res, fmt.Errorf("delete outbox rows: %w", err)
	}
	return res, nil
}

// changeOutbox runs query, parkOutboxSQL or deleteOutboxSQL, for f and
// extra arguments. When it changed no row, the rows f still selects are the
// ones relays hold.
func changeOutbox[T any](ctx context.Context, db queryer, f OutboxFilter, query string, extra []any,
	scan func(pgx.CollectableRow, ...any) (T, error)) (OutboxChange[T], error) {
	var res OutboxChange[T]
	if err := f.check(); err != nil {
		return res, err
	}
	q, err := db.Query(ctx, query, append(f.args(), extra...)...)
	if err != nil {
		return res, err
	}
	res.Rows, err = pgx.CollectRows(q, func(r pgx.CollectableRow) (T, error) { return scan(r, &res.InFlight) })
	if err != nil || len(res.Rows) > 0 {
		return res, err
	}
	q, err = db.Query(ctx, `SELECT count(*) FROM pulsebus.outbox WHERE `+parkedWhere, f.args()...)
	if err != nil {
		return res, err
	}
	res.InFlight, err = pgx.CollectExactlyOneRow(q, pgx.RowTo[int64])
	return res, err
}

// writeOutboxTable writes rows as a table, each on one line: the key cut
// to 32 runes, the last error whole.
func writeOutboxTable(w io.Writer, rows []OutboxRow) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tEVENT_ID\tTOPIC\tKEY\tTYPE\tATTEMPTS\tCREATED_AT\tLAST_ERROR")
	for _, o := range rows {
		key, lastErr := oneLine(o.Key, 32), oneLine(o.LastError, 0)
		if key == "" {
			key = "-"
		}
		if lastErr == "" {
			lastErr = "-"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", o.ID, o.EventID, oneLine(o.Topic, 0), key, oneLine(o.Type, 0),
			o.Attempts, o.CreatedAt.Format(time.RFC3339), lastErr)
	}
	return tw.Flush()
}

func outboxCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	g := &cli.Group{
		Name: prog + " outbox",
		About: `Rows still waiting in pulsebus.outbox for the relay. A row the relay can
never publish and that it does not park (it keeps failing transiently, for
instance for a topic that will never exist) holds back the rows of its key
behind it; these commands show the waiting rows and take such a row out of
the way without SQL: park it (to pulsebus.outbox_parked, from where "relay
parked requeue" puts it back) or delete it.

A row a relay is publishing at that moment is locked by the relay's claim:
park and delete leave it alone, say so, and change the others. It is then
either published, or back in the outbox when the attempt fails; run the
command again.`,
		Commands: []cli.Subcommand{
			{Name: "list", Summary: "print the waiting rows, oldest first", Run: outboxListCommand},
			{Name: "park", Summary: "move waiting rows to pulsebus.outbox_parked with a reason", Run: outboxParkCommand},
			{Name: "delete", Summary: "drop waiting rows for good, printing what was deleted", Run: outboxDeleteCommand},
		},
	}
	return g.Run(ctx, args, stdout, stderr)
}

const outboxListAbout = `Prints the rows waiting in pulsebus.outbox, oldest id first: id, event
id, topic, key, type, failed attempts, when it was written and the last
error, whole ("relay status" shows the head row's). --json adds source and
payload_bytes.`

func outboxListCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := newTableCmd("outbox", "list", "list [--topic T] [--limit N] [--json] [flags]", outboxListAbout)
	var (
		topic  string
		limit  int
		asJSON bool
	)
	c.String(&topic, "topic", "", "", "only this topic's rows", topicFlag)
	c.Int(&limit, "limit", "", 100, 1, 1_000_000, "at most this many rows")
	c.Bool(&asJSON, "json", "", false, "print a JSON array with every field instead of a table")
	return c.run(ctx, args, stdout, stderr, nil, func(pool *pgxpool.Pool) error {
		rows, total, err := ListOutbox(ctx, pool, topic, limit)
		if err != nil {
			return err
		}
		return printRows(stdout, stderr, rows, total, asJSON, nothingWaiting(OutboxFilter{Topic: topic}), writeOutboxTable)
	})
}

// nothingWaiting says that f selects no waiting row.
func nothingWaiting(f OutboxFilter) string {
	switch {
	case f.ID != 0:
		return fmt.Sprintf("no outbox row with id %d", f.ID)
	case f.Topic != "":
		return "no outbox rows for topic " + f.Topic
	default:
		return "no outbox rows"
	}
}

// outboxSelection defines park's or delete's --id and --topic; check,
// after parsing, requires exactly one.
func (c *tableCmd) outboxSelection(verb string) (f *OutboxFilter, check func() error) {
	f = &OutboxFilter{}
	var id int
	c.Int(&id, "id", "", 0, 0, math.MaxInt, verb+" the outbox row with this id (the id list shows)")
	c.ShowDefault("none")
	c.String(&f.Topic, "topic", "", "", verb+" every waiting row of this topic", topicFlag)
	return f, func() error {
		f.ID = int64(id)
		if c.From("id") != "" && id == 0 {
			return &cli.ConfigError{Setting: "--id", Reason: `"0" is not an outbox row id (ids start at 1)`}
		}
		switch {
		case f.ID == 0 && f.Topic == "":
			return &cli.ConfigError{Setting: "--id/--topic", Reason: "give one: --id ID or --topic T"}
		case f.ID != 0 && f.Topic != "":
			return &cli.ConfigError{Setting: "--id/--topic", Reason: "give one: --id ID or --topic T, not both"}
		}
		return nil
	}
}

// leftAlone reports the rows a command left because a relay holds them; an
// error when --id named such a row and nothing was done.
func leftAlone(w io.Writer, f OutboxFilter, inFlight int64, changed int) error {
	switch {
	case inFlight == 0 && changed == 0 && f.ID != 0:
		return fmt.Errorf("%s (published or removed already? see relay outbox list)", nothingWaiting(f))
	case inFlight == 0 && changed == 0:
		fmt.Fprintf(w, "%s: nothing to do\n", nothingWaiting(f))
	case inFlight > 0 && f.ID != 0:
		return fmt.Errorf("outbox row %d is being published by a relay right now (its claim holds the row), so it was left alone: "+
			"it is either published or back in the outbox in a moment; run the command again if it is still listed", f.ID)
	case inFlight > 0:
		fmt.Fprintf(w, "left alone: %s of topic %s that a relay is publishing right now (its claim holds them); "+
			"run the command again if they are still listed\n", rows(inFlight), f.Topic)
	}
	return nil
}

const outboxParkAbout = `Moves waiting rows to pulsebus.outbox_parked in one statement, with the
error "parked by an operator: <reason>", so the relay stops trying them and
the rows behind them flow. "relay parked list" shows them, "relay parked
requeue" puts them back into the outbox (after the rows waiting then),
"relay parked delete" drops them. Attempts and the last error stay as they
were. Rows a relay is publishing at that moment are left alone (see
"relay outbox --help").`

func outboxParkCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := newTableCmd("outbox", "park", "park --id ID | --topic T --reason TEXT [flags]", outboxParkAbout)
	f, check := c.outboxSelection("park")
	var reason string
	c.String(&reason, "reason", "", "", `why, kept in the parked row's error ("parked by an operator: <reason>"); required`, nil)
	checkAll := func() error {
		if err := check(); err != nil {
			return err
		}
		if reason == "" {
			return &cli.ConfigError{Setting: "--reason", Reason: "required: say why the rows are parked (it is kept with them)"}
		}
		return nil
	}
	return c.run(ctx, args, stdout, stderr, checkAll, func(pool *pgxpool.Pool) error {
		res, err := ParkOutbox(ctx, pool, *f, reason)
		if err != nil {
			return err
		}
		if len(res.Rows) > 0 {
			fmt.Fprintf(stdout, "parked %s into pulsebus.outbox_parked (relay parked requeue puts them back):\n", rows(int64(len(res.Rows))))
			if err := writeParkedTable(stdout, res.Rows); err != nil {
				return err
			}
		}
		return leftAlone(stdout, *f, res.InFlight, len(res.Rows))
	})
}

const outboxDeleteAbout = `Deletes waiting rows for good in one statement: their events are never
published. Prints every deleted row (as list does), so the output is a
record of what was dropped. Rows a relay is publishing at that moment are
left alone (see "relay outbox --help"). There is no --all.`

func outboxDeleteCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := newTableCmd("outbox", "delete", "delete --id ID | --topic T [flags]", outboxDeleteAbout)
	f, check := c.outboxSelection("delete")
	return c.run(ctx, args, stdout, stderr, check, func(pool *pgxpool.Pool) error {
		res, err := DeleteOutbox(ctx, pool, *f)
		if err != nil {
			return err
		}
		if len(res.Rows) > 0 {
			fmt.Fprintf(stdout, "deleted %s from pulsebus.outbox (never to be published):\n", rows(int64(len(res.Rows))))
			if err := writeOutboxTable(stdout, res.Rows); err != nil {
				return err
			}
		}
		return leftAlone(stdout, *f, res.InFlight, len(res.Rows))
	})
}
