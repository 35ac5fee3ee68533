package consumercmd

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/edupulse/pulsebus/internal/cli"
	"github.com/edupulse/pulsebus/pkg/dispatch"
)

func runDeadLetters(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	g := &cli.Group{
		Name: "consumer dead-letters",
		About: `Messages a handler could not handle (after its retries, at once for a
permanent error, or because they are not valid envelopes) are stored in
pulsebus.dead_letters, one row per handler and message. For a handler with
on-failure=hold-key, a dead letter with a Kafka key holds that key: the
handler's later events of the key wait behind it (list --held) until it is
redriven successfully or deleted, then run in Kafka order.`,
		Commands: []cli.Subcommand{
			{Name: "list", Summary: "print the dead letters of a group", Run: runDeadLettersList},
			{Name: "show", Summary: "print one dead letter in full, byte for byte", Run: runDeadLettersShow},
			{Name: "redrive", Summary: "run the handler again on dead letters; a row is deleted on success", Run: runDeadLettersRedrive},
			{Name: "delete", Summary: "delete dead letters without running them; a deleted head releases its key", Run: runDeadLettersDelete},
		},
	}
	return g.Run(ctx, args, stdout, stderr)
}

const listAbout = `Prints a group's dead letters, oldest first: where they were read from,
the event id and type when readable, the attempts, the key a row holds and
how many events wait behind it (HELD, for handlers with on-failure=hold-key),
and the last error. --held prints the held events instead, each with the
dead letter it waits for.`

// deadLetterJSON is one row of "dead-letters list --json". Key and value are
// strings when they are valid UTF-8, else base64 in key_base64/value_base64.
// Headers is a name → value map for reading; HeaderList has every header
// in message order, byte for byte, in the same form as key and value.
type deadLetterJSON struct {
	ID            int64             `json:"id"`
	Group         string            `json:"group"`
	Handler       string            `json:"handler"`
	Topic         string            `json:"topic"`
	Partition     int               `json:"partition"`
	Offset        int64             `json:"offset"`
	EventID       string            `json:"event_id,omitempty"`
	EventType     string            `json:"event_type,omitempty"`
	Key           *string           `json:"key,omitempty"`
	KeyBase64     []byte            `json:"key_base64,omitempty"`
	Headers       map[string]string `json:"headers"`
	HeaderList    []headerJSON      `json:"header_list"`
	Value         *string           `json:"value,omitempty"`
	ValueBase64   []byte            `json:"value_base64,omitempty"`
	Error         string            `json:"error"`
	Attempts      int               `json:"attempts"`
	FirstFailedAt time.Time         `json:"first_failed_at"`
	LastFailedAt  time.Time         `json:"last_failed_at"`
	// MessageStored is false when only the message's position was stored.
	MessageStored bool `json:"message_stored"`
	// HoldsKey is true for a key's head: Held events of its key wait
	// behind it.
	HoldsKey bool  `json:"holds_key"`
	Held     int64 `json:"held_events"`
}

// heldEventJSON is one row of "dead-letters list --held --json".
type heldEventJSON struct {
	ID        int64     `json:"id"`
	Group     string    `json:"group"`
	Handler   string    `json:"handler"`
	Topic     string    `json:"topic"`
	Partition int       `json:"partition"`
	Offset    int64     `json:"offset"`
	Key       *string   `json:"key,omitempty"`
	KeyBase64 []byte    `json:"key_base64,omitempty"`
	EventID   string    `json:"event_id,omitempty"`
	EventType string    `json:"event_type,omitempty"`
	HeldAt    time.Time `json:"held_at"`
	// WaitsFor is the id of the dead letter it waits for; absent once that
	// was redriven or deleted and the consumer runs the event next.
	WaitsFor *int64 `json:"waits_for,omitempty"`
}

// headerJSON is one header of deadLetterJSON.HeaderList: key and value as
// strings when valid UTF-8 without NUL, else base64 in key_base64 and
// value_base64. A header without a value has neither value field.
type headerJSON struct {
	Key         *string `json:"key,omitempty"`
	KeyBase64   []byte  `json:"key_base64,omitempty"`
	Value       *string `json:"value,omitempty"`
	ValueBase64 []byte  `json:"value_base64,omitempty"`
}

// textOrBytes returns b as a string when it is valid UTF-8 without NUL
// bytes, else as bytes for base64; nil for nil.
func textOrBytes(b []byte) (*string, []byte) {
	if b == nil {
		return nil, nil
	}
	if utf8.Valid(b) && bytes.IndexByte(b, 0) < 0 {
		s := string(b)
		return &s, nil
	}
	return nil, b
}

func toJSON(d dispatch.DeadLetter) deadLetterJSON {
	out := deadLetterJSON{ID: d.ID, Group: d.Group, Handler: d.Handler, Topic: d.Topic, Partition: d.Partition,
		Offset: d.Offset, Error: d.Error, Attempts: d.Attempts, FirstFailedAt: d.FirstFailedAt, LastFailedAt: d.LastFailedAt,
		Headers: map[string]string{}, HeaderList: make([]headerJSON, 0, len(d.Headers)), MessageStored: d.MessageStored,
		HoldsKey: d.HoldsKey, Held: d.Held}
	if d.EventID != nil {
		out.EventID = *d.EventID
	}
	if d.EventType != nil {
		out.EventType = *d.EventType
	}
	if utf8.Valid(d.Key) {
		k := string(d.Key)
		out.Key = &k
	} else {
		out.KeyBase64 = d.Key
	}
	if utf8.Valid(d.Value) {
		v := string(d.Value)
		out.Value = &v
	} else {
		out.ValueBase64 = d.Value
	}
	for _, h := range d.Headers {
		out.Headers[h.Key] = string(h.Value)
		var hj headerJSON
		hj.Key, hj.KeyBase64 = textOrBytes([]byte(h.Key))
		hj.Value, hj.ValueBase64 = textOrBytes(h.Value)
		out.HeaderList = append(out.HeaderList, hj)
	}
	return out
}

func runDeadLettersList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := cli.NewCommand("consumer dead-letters list", "consumer dead-letters list --group G [--handler-name H] [--limit N] [--held] [--json]", listAbout)
	var ac adminConfig
	ac.register(cmd, false)
	var sel handlerNameFlag
	sel.register(cmd, "consumer dead-letters list", "only this handler's", true)
	var limit int
	var asJSON, held bool
	cmd.Int(&limit, "limit", "", 100, minInt, maxInt, "at most this many rows")
	cmd.Bool(&asJSON, "json", "", false, "print a JSON array with the full messages (key, headers, value) instead of a table")
	cmd.Bool(&held, "held", "", false, "list the events held behind dead letters (on-failure=hold-key), by key in Kafka order, instead")
	if err := ac.parse(cmd, false, args, stdout, stderr); err != nil {
		return err
	}
	handler, err := sel.resolve(stderr)
	if err != nil {
		return err
	}
	if limit < 1 {
		return &cli.ConfigError{Setting: "--limit", Reason: fmt.Sprintf("%d: want at least 1", limit)}
	}
	pool, err := ac.connect(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	if held {
		return listHeld(ctx, pool, ac.group, handler, limit, asJSON, stdout)
	}
	dls, err := (&dispatch.Admin{Pool: pool}).ListDeadLetters(ctx, dispatch.DeadLetterFilter{Group: ac.group, Handler: handler, Limit: limit})
	if err != nil {
		return err
	}
	if asJSON {
		rows := make([]deadLetterJSON, 0, len(dls))
		for _, d := range dls {
			rows = append(rows, toJSON(d))
		}
		return writeJSON(stdout, rows)
	}
	if len(dls) == 0 {
		fmt.Fprintf(stdout, "no dead letters in group %s\n", ac.group)
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tHANDLER\tTOPIC\tPARTITION\tOFFSET\tTYPE\tEVENT_ID\tATTEMPTS\tLAST_FAILED\tHELD\tERROR")
	var waiting int64
	for _, d := range dls {
		typ, id := "-", "-"
		if d.EventType != nil {
			typ = *d.EventType
		}
		if d.EventID != nil {
			id = *d.EventID
		}
		holds := "-"
		if d.HoldsKey {
			holds = fmt.Sprintf("key %s: %d waiting", displayKey(d.Key), d.Held)
			waiting += d.Held
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%d\t%s\t%s\t%d\t%s\t%s\t%s\n", d.ID, d.Handler, d.Topic, d.Partition, d.Offset,
			typ, id, d.Attempts, d.LastFailedAt.UTC().Format(time.RFC3339), holds, oneLine(d.Error, 120))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(dls) == limit {
		fmt.Fprintf(stdout, "(first %d shown; raise --limit for more)\n", limit)
	}
	if waiting > 0 {
		fmt.Fprintf(stdout, "%d event(s) wait behind the dead letters that hold their key (list them with --held); "+
			"they run in order once it is redriven or deleted\n", waiting)
	}
	return nil
}

// displayKey renders a Kafka key for a table: as text when it is printable
// UTF-8 of at most 40 characters, else Go-quoted and cut.
func displayKey(k []byte) string {
	s := string(k)
	if utf8.ValidString(s) && strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) || r == ' ' }) < 0 &&
		utf8.RuneCountInString(s) <= 40 {
		return s
	}
	if len(k) > 40 {
		return strconv.Quote(string(k[:40])) + "..."
	}
	return strconv.Quote(s)
}

// listHeld prints the held events of a group (or one handler's), by key in
// Kafka order, with the dead letter each waits for.
func listHeld(ctx context.Context, db *pgxpool.Pool, group, handler string, limit int, asJSON bool, stdout io.Writer) error {
	held, err := (&dispatch.Admin{Pool: db}).ListHeldEvents(ctx, dispatch.DeadLetterFilter{Group: group, Handler: handler, Limit: limit})
	if err != nil {
		return err
	}
	if asJSON {
		rows := make([]heldEventJSON, 0, len(held))
		for _, h := range held {
			row := heldEventJSON{ID: h.ID, Group: h.Group, Handler: h.Handler, Topic: h.Topic, Partition: h.Partition,
				Offset: h.Offset, HeldAt: h.HeldAt, WaitsFor: h.HeadID}
			row.Key, row.KeyBase64 = textOrBytes(h.Key)
			if h.EventID != nil {
				row.EventID = *h.EventID
			}
			if h.EventType != nil {
				row.EventType = *h.EventType
			}
			rows = append(rows, row)
		}
		return writeJSON(stdout, rows)
	}
	if len(held) == 0 {
		fmt.Fprintf(stdout, "no held events in group %s\n", group)
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tHANDLER\tTOPIC\tPARTITION\tOFFSET\tKEY\tTYPE\tEVENT_ID\tHELD_AT\tWAITS_FOR")
	for _, h := range held {
		typ, id, waits := "-", "-", "released: the consumer runs it next"
		if h.EventType != nil {
			typ = *h.EventType
		}
		if h.EventID != nil {
			id = *h.EventID
		}
		if h.HeadID != nil {
			waits = fmt.Sprintf("dead letter %d", *h.HeadID)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\n", h.ID, h.Handler, h.Topic, h.Partition, h.Offset,
			displayKey(h.Key), typ, id, h.HeldAt.UTC().Format(time.RFC3339), waits)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(held) == limit {
		fmt.Fprintf(stdout, "(first %d shown; raise --limit for more)\n", limit)
	}
	return nil
}

const showAbout = `Prints one dead letter in full: where it was read from, the error, and its
key, headers (in order) and value byte for byte, as Go-quoted strings (\xff
for a byte that is not UTF-8 text). --json prints the row as list --json does.`

func runDeadLettersShow(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := cli.NewCommand("consumer dead-letters show", "consumer dead-letters show --group G --id ID [--json]", showAbout)
	var ac adminConfig
	ac.register(cmd, false)
	var idFlag int
	var asJSON bool
	cmd.Int(&idFlag, "id", "", 0, minInt, maxInt, "the dead letter's id (required)")
	cmd.Bool(&asJSON, "json", "", false, "print the row as JSON")
	if err := ac.parse(cmd, false, args, stdout, stderr); err != nil {
		return err
	}
	if idFlag <= 0 {
		return &cli.ConfigError{Setting: "--id", Reason: fmt.Sprintf("%d: want the id of a dead letter (see dead-letters list)", idFlag)}
	}
	pool, err := ac.connect(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	dls, err := (&dispatch.Admin{Pool: pool}).ListDeadLetters(ctx, dispatch.DeadLetterFilter{Group: ac.group, ID: int64(idFlag), Limit: 1})
	if err != nil {
		return err
	}
	if len(dls) == 0 {
		return fmt.Errorf("no dead letter %d in group %s", idFlag, ac.group)
	}
	d := dls[0]
	if asJSON {
		return writeJSON(stdout, toJSON(d))
	}
	typ, id := "-", "-"
	if d.EventType != nil {
		typ = *d.EventType
	}
	if d.EventID != nil {
		id = *d.EventID
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "id:\t%d\n", d.ID)
	fmt.Fprintf(tw, "handler:\t%s (group %s)\n", d.Handler, d.Group)
	fmt.Fprintf(tw, "read from:\t%s/%d at offset %d\n", d.Topic, d.Partition, d.Offset)
	fmt.Fprintf(tw, "event:\t%s, type %s\n", id, typ)
	fmt.Fprintf(tw, "attempts:\t%d, first failed %s, last %s\n", d.Attempts,
		d.FirstFailedAt.UTC().Format(time.RFC3339), d.LastFailedAt.UTC().Format(time.RFC3339))
	fmt.Fprintf(tw, "error:\t%s\n", oneLine(d.Error, 4000))
	if err := tw.Flush(); err != nil {
		return err
	}
	if !d.MessageStored {
		fmt.Fprintf(stdout, "message: not stored (see the error); replay the handler to offset %d of %s/%d to handle it again\n",
			d.Offset, d.Topic, d.Partition)
		return nil
	}
	fmt.Fprintf(stdout, "key: %s\n", quoteBytes(d.Key))
	fmt.Fprintf(stdout, "headers: %d\n", len(d.Headers))
	for _, h := range d.Headers {
		fmt.Fprintf(stdout, "  %s: %s\n", strconv.Quote(h.Key), quoteBytes(h.Value))
	}
	fmt.Fprintf(stdout, "value: %d bytes\n%s\n", len(d.Value), quoteBytes(d.Value))
	return nil
}

// quoteBytes renders b as a Go-quoted string, or (none) for nil.
func quoteBytes(b []byte) string {
	if b == nil {
		return "(none)"
	}
	return strconv.Quote(string(b))
}

// oneLine flattens s to one line of at most max runes.
func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) > max {
		r := []rune(s)
		s = string(r[:max]) + "..."
	}
	return s
}

const redriveAbout = `Runs a handler once more on dead letters: one row by --id, or all of a
handler's rows with --handler-name. A row is deleted when the handler succeeds; on
failure it stays, with the new error and one more attempt, and the command
exits 1. Offsets are not touched. A row that held its key (on-failure=hold-key)
releases the events held behind it when it succeeds: the running consumer
that owns the partition runs them next, in Kafka order.

The handlers are built from the same specs as "consumer run" (--handler,
repeatable, or CONSUMER_HANDLERS), so run it with the consumer's environment.
Redrive does not read Kafka: the dead-letter rows hold the whole messages.

Until the next release, --handler NAME (a value without "=") still selects a
handler and --handler-spec SPEC still gives a spec, with a warning.`

func runDeadLettersRedrive(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	const name = "consumer dead-letters redrive"
	cmd := cli.NewCommand(name, "consumer dead-letters redrive --id ID | --handler-name H [--handler SPEC]... [flags]", redriveAbout)
	var ac adminConfig
	ac.register(cmd, false)
	var specs, oldSpecs []string
	cmd.List(&specs, "handler", "CONSUMER_HANDLERS", "handler spec as for run --handler", splitEnvSpecs)
	cmd.List(&oldSpecs, "handler-spec", "", "deprecated: use --handler (goes in the next release)", nil)
	var sel handlerNameFlag
	sel.register(cmd, name, "redrive every dead letter of this handler", false)
	var idFlag int
	var logFormat, logLevel string
	cmd.Int(&idFlag, "id", "", 0, minInt, maxInt, "redrive this dead letter")
	cmd.String(&logFormat, "log-format", "LOG_FORMAT", "auto", "log format: auto, json or text", nil)
	cmd.String(&logLevel, "log-level", "LOG_LEVEL", "info", "log level: debug, info, warn or error", nil)
	if err := ac.parse(cmd, false, args, stdout, stderr); err != nil {
		return err
	}
	specs, err := redriveSpecs(cmd, &sel, specs, oldSpecs, stderr)
	if err != nil {
		return err
	}
	handler, err := sel.resolve(stderr)
	if err != nil {
		return err
	}
	id := int64(idFlag)
	switch {
	case id == 0 && handler == "":
		return &cli.ConfigError{Setting: "--id/--handler-name", Reason: "give one: --id ID or --handler-name NAME"}
	case id != 0 && handler != "":
		return &cli.ConfigError{Setting: "--id/--handler-name", Reason: "give one, not both"}
	case id < 0:
		return &cli.ConfigError{Setting: "--id", Reason: fmt.Sprintf("%d is not a dead letter id", id)}
	}
	log, err := cli.NewLogger(stderr, logFormat, logLevel)
	if err != nil {
		return err
	}
	hs, err := parseHandlerSpecs(cmd.Settings, "handler", "CONSUMER_HANDLERS", specs)
	if err != nil {
		return err
	}
	configured := map[string]bool{}
	for _, s := range hs {
		configured[s.Name] = true
	}
	if handler != "" && !configured[handler] {
		return &cli.ConfigError{Setting: cmd.Label("handler"),
			Reason: fmt.Sprintf("handler %s is not configured; give its spec to run it", handler)}
	}
	pool, err := ac.connect(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	if id > 0 {
		// Check before the redrive, which would record "not registered" as
		// the row's new error.
		dls, err := (&dispatch.Admin{Pool: pool}).ListDeadLetters(ctx, dispatch.DeadLetterFilter{Group: ac.group, ID: id, Limit: 1})
		if err != nil {
			return err
		}
		if len(dls) == 0 {
			return fmt.Errorf("no dead letter %d in group %s", id, ac.group)
		}
		if !configured[dls[0].Handler] {
			return &cli.ConfigError{Setting: cmd.Label("handler"),
				Reason: fmt.Sprintf("dead letter %d belongs to handler %s, which is not configured; give its spec to run it", id, dls[0].Handler)}
		}
	}
	// The consumer is only used for Redrive, which reads neither Kafka
	// brokers nor topics; dispatch.Config requires both, so placeholders.
	c, err := dispatch.New(dispatch.Config{Brokers: []string{"unused:9092"}, Group: ac.group, Topics: []string{"unused"},
		Pool: pool, Logger: log})
	if err != nil {
		return err
	}
	if _, err := registerHandlers(c, hs, log, false, cmd.Label("handler")); err != nil {
		return err
	}
	res, err := (&dispatch.Admin{Pool: pool, Consumer: c}).Redrive(ctx, dispatch.DeadLetterFilter{ID: id, Handler: handler})
	for _, e := range res.Errors {
		fmt.Fprintf(stdout, "failed again: %s\n", e)
	}
	fmt.Fprintf(stdout, "redriven %d, failed %d\n", res.Redriven, res.Failed)
	if res.Released > 0 {
		fmt.Fprintf(stdout, "%d of them held their key: the events held behind them run next, in order\n", res.Released)
	}
	if err != nil {
		return err
	}
	if res.Failed > 0 {
		return fmt.Errorf("%d dead letter(s) failed again and stay in the dead letters", res.Failed)
	}
	return nil
}

// redriveSpecs returns redrive's handler specs: those of --handler, else of
// CONSUMER_HANDLERS, and of the deprecated --handler-spec. A --handler
// value without "=" is the deprecated --handler NAME: it goes to sel, and
// when no --handler value is a spec, the specs come from CONSUMER_HANDLERS
// as they did before.
func redriveSpecs(cmd *cli.Command, sel *handlerNameFlag, specs, oldSpecs []string, stderr io.Writer) ([]string, error) {
	if cmd.From("handler") == "--handler" {
		var kept []string
		for _, v := range specs {
			if strings.Contains(v, "=") {
				kept = append(kept, v)
				continue
			}
			if sel.deprecated != "" && sel.deprecated != v {
				return nil, &cli.ConfigError{Setting: "--handler-name", Reason: fmt.Sprintf(
					"--handler %s and --handler %s (deprecated, names) disagree; give one --handler-name", sel.deprecated, v)}
			}
			sel.deprecated = v
		}
		if len(kept) == 0 {
			kept = splitEnvSpecs(os.Getenv("CONSUMER_HANDLERS"))
		}
		specs = kept
	}
	if len(oldSpecs) > 0 {
		warnDeprecated(stderr, sel.command, "--handler-spec SPEC", "--handler SPEC")
		specs = append(specs, oldSpecs...)
	}
	return specs, nil
}

const deleteAbout = `Deletes dead letters without running their handler: one row by --id, or
all of a handler's rows with --handler-name. It prints what it deleted.

Deleting a dead letter that holds its key (a handler with
on-failure=hold-key) releases the events held behind it: the running
consumers are told at once, and the one that owns the partition runs them in
Kafka order (a consumer that is not running runs them when it starts). To
run the dead letter itself first, redrive it instead.`

func runDeadLettersDelete(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := cli.NewCommand("consumer dead-letters delete", "consumer dead-letters delete --group G --id ID | --handler-name H", deleteAbout)
	var ac adminConfig
	ac.register(cmd, false)
	var idFlag int
	var sel handlerNameFlag
	cmd.Int(&idFlag, "id", "", 0, minInt, maxInt, "delete this dead letter")
	sel.register(cmd, "consumer dead-letters delete", "delete every dead letter of this handler", false)
	if err := ac.parse(cmd, false, args, stdout, stderr); err != nil {
		return err
	}
	handler, err := sel.resolve(stderr)
	if err != nil {
		return err
	}
	id := int64(idFlag)
	switch {
	case id == 0 && handler == "":
		return &cli.ConfigError{Setting: "--id/--handler-name", Reason: "give one: --id ID or --handler-name NAME"}
	case id != 0 && handler != "":
		return &cli.ConfigError{Setting: "--id/--handler-name", Reason: "give one, not both"}
	case id < 0:
		return &cli.ConfigError{Setting: "--id", Reason: fmt.Sprintf("%d is not a dead letter id", id)}
	}
	pool, err := cli.Connect(ctx, ac.databaseURL, cli.AppName("consumer", "cli"))
	if err != nil {
		return err
	}
	defer pool.Close()
	gone, err := (&dispatch.Admin{Pool: pool}).DeleteDeadLetters(ctx, dispatch.DeadLetterFilter{Group: ac.group, ID: id, Handler: handler})
	if err != nil {
		return err
	}
	if len(gone) == 0 {
		if id > 0 {
			return fmt.Errorf("no dead letter %d in group %s", id, ac.group)
		}
		fmt.Fprintf(stdout, "no dead letters of handler %s in group %s\n", handler, ac.group)
		return nil
	}
	for _, d := range gone {
		event := "-"
		if d.EventID != nil {
			event = *d.EventID
		}
		fmt.Fprintf(stdout, "deleted dead letter %d: handler %s, %s/%d at offset %d, event %s\n",
			d.ID, d.Handler, d.Topic, d.Partition, d.Offset, event)
		if d.HoldsKey {
			fmt.Fprintf(stdout, "  released key %s: %d held event(s) run next, in order\n", displayKey(d.Key), d.Held)
		}
	}
	fmt.Fprintf(stdout, "deleted %d dead letter(s) of group %s\n", len(gone), ac.group)
	return nil
}
