package consumercmd

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/edupulse/pulsebus/internal/cli"
	"github.com/edupulse/pulsebus/internal/kafkaconfig"
	"github.com/edupulse/pulsebus/internal/kafkaname"
	"github.com/edupulse/pulsebus/pkg/dispatch"
	"github.com/edupulse/pulsebus/pkg/migrate"
)

// adminConfig is what offsets and replay need: the database, Kafka and a
// group.
type adminConfig struct {
	databaseURL string
	kafka       kafkaconfig.Config
	group       string
}

func (ac *adminConfig) register(c *cli.Command, withKafka bool) {
	c.String(&ac.databaseURL, "database-url", "DATABASE_URL", cli.DefaultDatabaseURL, "PostgreSQL URL or DSN holding the pulsebus schema", nil)
	c.Secret()
	if withKafka {
		ac.kafka.Register(c.Settings)
	}
	c.String(&ac.group, "group", "CONSUMER_GROUP", "", "consumer group (required)", nil)
}

// parse parses args with c and checks the settings.
func (ac *adminConfig) parse(c *cli.Command, withKafka bool, args []string, stdout, stderr io.Writer) error {
	if err := c.Parse(args, stdout, stderr); err != nil {
		return err
	}
	if ac.group == "" {
		return c.Invalid("group", "required")
	}
	if withKafka {
		return ac.kafka.Validate()
	}
	return nil
}

// admin connects and returns the dispatch admin; close the pool when done.
func (ac *adminConfig) admin(ctx context.Context) (*dispatch.Admin, *pgxpool.Pool, error) {
	dialer, err := ac.kafka.Dialer()
	if err != nil {
		return nil, nil, err
	}
	pool, err := ac.connect(ctx)
	if err != nil {
		return nil, nil, err
	}
	return &dispatch.Admin{Pool: pool, Brokers: ac.kafka.Brokers, Dialer: dialer}, pool, nil
}

// connect opens the database and checks that its schema is migrated, as
// run does, so that a subcommand on an unmigrated database names the fix
// rather than a missing table.
func (ac *adminConfig) connect(ctx context.Context) (*pgxpool.Pool, error) {
	pool, err := cli.Connect(ctx, ac.databaseURL, cli.AppName("consumer", "cli"))
	if err != nil {
		return nil, err
	}
	if err := checkSchema(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}

// checkSchema returns an error naming the command to run unless the
// database has every migration this build needs.
func checkSchema(ctx context.Context, pool *pgxpool.Pool) error {
	if err := migrate.Check(ctx, pool); err != nil {
		return fmt.Errorf("%w: run consumer migrate with the same --database-url", err)
	}
	return nil
}

const offsetsAbout = `Prints, per handler of the group, its topics, partitions, total lag and when
its offsets last moved; --by-partition prints each topic and partition
instead: the handler's next offset (what it handles next), the partition's
high watermark (Kafka's end offset) and the lag between them. The handler
offsets in PostgreSQL, not the Kafka group offset, are what the consumer
resumes from. When a high watermark cannot be read, the lag shows ? (in JSON,
null with an error field) and the command exits 1.`

// offsetsPartitionJSON is one row of "offsets --json --by-partition".
// HighWatermark and Lag are null when the high watermark could not be read;
// Error says why.
type offsetsPartitionJSON struct {
	Handler       string    `json:"handler"`
	Topic         string    `json:"topic"`
	Partition     int       `json:"partition"`
	NextOffset    int64     `json:"next_offset"`
	HighWatermark *int64    `json:"high_watermark"`
	Lag           *int64    `json:"lag"`
	UpdatedAt     time.Time `json:"updated_at"`
	Error         string    `json:"error,omitempty"`
}

// offsetsHandlerJSON is one row of "offsets --json": a handler's total over
// its partitions. Lag is null when a high watermark could not be read;
// Error says why (the first failure, and how many partitions failed).
type offsetsHandlerJSON struct {
	Handler     string    `json:"handler"`
	Topics      []string  `json:"topics"`
	Partitions  int       `json:"partitions"`
	Lag         *int64    `json:"lag"`
	LastUpdated time.Time `json:"last_updated"`
	Error       string    `json:"error,omitempty"`
}

// handlerLag is one handler's total over its partitions.
type handlerLag struct {
	handler     string
	topics      []string
	partitions  int
	lag         int64
	lastUpdated time.Time
	failed      int
	firstErr    error
}

// summarize totals lags (sorted by handler, topic, partition) per handler.
func summarize(lags []dispatch.OffsetLag) []handlerLag {
	var out []handlerLag
	for _, l := range lags {
		if len(out) == 0 || out[len(out)-1].handler != l.Handler {
			out = append(out, handlerLag{handler: l.Handler})
		}
		h := &out[len(out)-1]
		if !slices.Contains(h.topics, l.Topic) {
			h.topics = append(h.topics, l.Topic)
		}
		h.partitions++
		h.lag += l.Lag
		if l.UpdatedAt.After(h.lastUpdated) {
			h.lastUpdated = l.UpdatedAt
		}
		if l.Err != nil {
			h.failed++
			if h.firstErr == nil {
				h.firstErr = l.Err
			}
		}
	}
	return out
}

func runOffsets(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := cli.NewCommand("consumer offsets", "consumer offsets --group G [--handler-name H] [--topic T] [--by-partition] [--json] [flags]", offsetsAbout)
	var ac adminConfig
	ac.register(cmd, true)
	var sel handlerNameFlag
	sel.register(cmd, "consumer offsets", "only this handler", false)
	var topic string
	var byPartition, asJSON bool
	cmd.String(&topic, "topic", "", "", "only this topic", nil)
	cmd.Bool(&byPartition, "by-partition", "", false, "one line per handler, topic and partition instead of one per handler")
	cmd.Bool(&asJSON, "json", "", false, "print a JSON array of the same rows instead of a table")
	if err := ac.parse(cmd, true, args, stdout, stderr); err != nil {
		return err
	}
	handler, err := sel.resolve(stderr)
	if err != nil {
		return err
	}
	a, pool, err := ac.admin(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	if handler != "" || topic != "" {
		// Name a filter that matches nothing before asking Kafka anything.
		offs, err := a.ListOffsets(ctx, ac.group)
		if err != nil {
			return err
		}
		var handlers, topics []string
		for _, o := range offs {
			handlers, topics = appendNew(handlers, o.Handler), appendNew(topics, o.Topic)
		}
		if handler != "" && !slices.Contains(handlers, handler) {
			return fmt.Errorf("group %s has no handler %s (%s)", ac.group, handler, known("its handlers", handlers))
		}
		if topic != "" && !slices.Contains(topics, topic) {
			return fmt.Errorf("no handler of group %s has offsets on topic %s (%s)", ac.group, topic, known("its topics", topics))
		}
	}
	all, err := a.Lag(ctx, ac.group)
	if err != nil {
		return err
	}
	var lags []dispatch.OffsetLag
	for _, l := range all {
		if (handler == "" || l.Handler == handler) && (topic == "" || l.Topic == topic) {
			lags = append(lags, l)
		}
	}
	slices.SortFunc(lags, func(a, b dispatch.OffsetLag) int {
		return cmp.Or(cmp.Compare(a.Handler, b.Handler), cmp.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition))
	})
	var failed []dispatch.OffsetLag
	for _, l := range lags {
		if l.Err != nil {
			failed = append(failed, l)
		}
	}
	if err := printOffsets(stdout, ac.group, lags, byPartition, asJSON); err != nil {
		return err
	}
	if len(failed) == 0 {
		return nil
	}
	if !asJSON {
		for _, l := range failed {
			fmt.Fprintf(stderr, "high watermark of %s/%d: %v\n", l.Topic, l.Partition, l.Err)
		}
	}
	return fmt.Errorf("could not read %d high watermark(s) from Kafka (%s): %w", len(failed), ac.kafka.String(), failed[0].Err)
}

// printOffsets prints lags as offsets' table or JSON, per handler or with
// byPartition per partition.
func printOffsets(stdout io.Writer, group string, lags []dispatch.OffsetLag, byPartition, asJSON bool) error {
	switch {
	case asJSON && byPartition:
		rows := make([]offsetsPartitionJSON, 0, len(lags))
		for _, l := range lags {
			r := offsetsPartitionJSON{Handler: l.Handler, Topic: l.Topic, Partition: l.Partition, NextOffset: l.NextOffset,
				UpdatedAt: l.UpdatedAt}
			if l.Err != nil {
				r.Error = l.Err.Error()
			} else {
				r.HighWatermark, r.Lag = &l.HighWatermark, &l.Lag
			}
			rows = append(rows, r)
		}
		return writeJSON(stdout, rows)
	case asJSON:
		sums := summarize(lags)
		rows := make([]offsetsHandlerJSON, 0, len(sums))
		for _, h := range sums {
			r := offsetsHandlerJSON{Handler: h.handler, Topics: h.topics, Partitions: h.partitions, LastUpdated: h.lastUpdated}
			if h.firstErr != nil {
				r.Error = fmt.Sprintf("high watermark of %d partition(s) unread: %v", h.failed, h.firstErr)
			} else {
				r.Lag = &h.lag
			}
			rows = append(rows, r)
		}
		return writeJSON(stdout, rows)
	case len(lags) == 0:
		fmt.Fprintf(stdout, "group %s has no handler offsets yet\n", group)
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	if byPartition {
		fmt.Fprintln(tw, "HANDLER\tTOPIC\tPARTITION\tNEXT_OFFSET\tHIGH_WATERMARK\tLAG\tUPDATED")
		for _, l := range lags {
			hwm, lag := fmt.Sprint(l.HighWatermark), fmt.Sprint(l.Lag)
			if l.Err != nil {
				hwm, lag = "?", "?"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\t%s\n", l.Handler, l.Topic, l.Partition, l.NextOffset, hwm, lag,
				l.UpdatedAt.UTC().Format(time.RFC3339))
		}
		return tw.Flush()
	}
	fmt.Fprintln(tw, "HANDLER\tTOPICS\tPARTITIONS\tLAG\tLAST_UPDATED")
	for _, h := range summarize(lags) {
		lag := fmt.Sprint(h.lag)
		if h.failed > 0 {
			lag = "?"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\n", h.handler, len(h.topics), h.partitions, lag, h.lastUpdated.UTC().Format(time.RFC3339))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "(one line per handler; --by-partition for each topic and partition)")
	return nil
}

// appendNew appends s to list unless list holds it already.
func appendNew(list []string, s string) []string {
	if slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}

// known lists names sorted after what ("its handlers: a, b"), or says there
// are none.
func known(what string, names []string) string {
	if len(names) == 0 {
		return what + ": none"
	}
	return what + ": " + strings.Join(slices.Sorted(slices.Values(names)), ", ")
}

const replayAbout = `Moves a handler's next offsets on the chosen partitions to earliest, latest,
the first offset at or after an RFC 3339 time (Kafka ListOffsets) or an
absolute offset, and notifies running consumers of the group: they re-read
from there for that handler only, without a restart. Other handlers are not
re-run. Without --topic, every partition the handler has offsets on moves.
An absolute offset needs --topic and --partition and must lie between the
partition's low and high watermarks (both included). --dry-run prints the
moves and writes nothing.`

func runReplay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := cli.NewCommand("consumer replay", "consumer replay --group G --handler-name H [--topic T] [--partition P] --to earliest|latest|<RFC3339 time>|<offset> [--dry-run]", replayAbout)
	var ac adminConfig
	ac.register(cmd, true)
	var sel handlerNameFlag
	sel.register(cmd, "consumer replay", "handler name (required)", true)
	var topic, to string
	var partition int
	var dryRun bool
	cmd.String(&topic, "topic", "", "", "only this topic (required when the handler has no offsets yet)", nil)
	cmd.Int(&partition, "partition", "", -1, minInt, maxInt, "only this partition (-1: all)")
	cmd.String(&to, "to", "", "", "earliest, latest, an RFC 3339 time (2025-03-01T12:00:00Z) or an offset (required; an offset needs --topic and --partition)", nil)
	cmd.Bool(&dryRun, "dry-run", "", false, "print each partition's old and new offset, write nothing")
	if err := ac.parse(cmd, true, args, stdout, stderr); err != nil {
		return err
	}
	handler, err := sel.resolve(stderr)
	if err != nil {
		return err
	}
	if handler == "" {
		return &cli.ConfigError{Setting: "--handler-name", Reason: "required"}
	}
	if to == "" {
		return &cli.ConfigError{Setting: "--to", Reason: "required: earliest, latest, an RFC 3339 time or an offset"}
	}
	target, err := dispatch.ParseReplayTarget(to)
	if err != nil {
		return &cli.ConfigError{Setting: "--to", Reason: err.Error()}
	}
	if partition < -1 {
		return &cli.ConfigError{Setting: "--partition", Reason: fmt.Sprintf("%d: want a partition >= 0, or -1 for all", partition)}
	}
	if err := kafkaname.ValidateTopic(topic); topic != "" && err != nil {
		return &cli.ConfigError{Setting: "--topic", Reason: err.Error()}
	}
	if target.Kind == "offset" && (topic == "" || partition < 0) {
		return &cli.ConfigError{Setting: "--to", Reason: fmt.Sprintf(
			"an absolute offset (%d) needs --topic and --partition: each partition has its own offsets", target.Offset)}
	}
	a, pool, err := ac.admin(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	before, err := a.ListOffsets(ctx, ac.group)
	if err != nil {
		return err
	}
	type tp struct {
		topic     string
		partition int
	}
	prev := map[tp]int64{}
	for _, o := range before {
		if o.Handler == handler {
			prev[tp{o.Topic, o.Partition}] = o.NextOffset
		}
	}
	rows, err := a.Replay(ctx, dispatch.ReplayParams{Group: ac.group, Handler: handler, Topic: topic, Partition: partition,
		To: target, DryRun: dryRun})
	var rangeErr *dispatch.ReplayRangeError
	if errors.As(err, &rangeErr) {
		return &cli.ConfigError{Setting: "--to", Reason: rangeErr.Error()}
	}
	if err != nil {
		return err
	}
	sortOffsets(rows)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HANDLER\tTOPIC\tPARTITION\tFROM\tTO")
	for _, r := range rows {
		from := "(none)"
		if p, ok := prev[tp{r.Topic, r.Partition}]; ok {
			from = fmt.Sprint(p)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\n", r.Handler, r.Topic, r.Partition, from, r.NextOffset)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if dryRun {
		fmt.Fprintf(stdout, "dry run: nothing written; without --dry-run, %s of group %s would move to %s on %d partition(s)\n",
			handler, ac.group, to, len(rows))
		return nil
	}
	fmt.Fprintf(stdout, "replayed %s of group %s to %s on %d partition(s); running consumers re-deliver to it now\n",
		handler, ac.group, to, len(rows))
	if len(prev) == 0 {
		fmt.Fprintf(stderr, "note: handler %s had no offsets in group %s before; check the name if that is unexpected\n", handler, ac.group)
	}
	return nil
}

func sortOffsets(rows []dispatch.HandlerOffset) {
	slices.SortFunc(rows, func(a, b dispatch.HandlerOffset) int {
		return cmp.Or(cmp.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition))
	})
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
