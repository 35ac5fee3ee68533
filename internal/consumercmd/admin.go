package consumercmd

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/edupulse/pulsebus/internal/cli"
	"github.com/edupulse/pulsebus/internal/kafkaconfig"
	"github.com/edupulse/pulsebus/pkg/dispatch"
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
	pool, err := cli.Connect(ctx, ac.databaseURL, cli.AppName("consumer", "cli"))
	if err != nil {
		return nil, nil, err
	}
	return &dispatch.Admin{Pool: pool, Brokers: ac.kafka.Brokers, Dialer: dialer}, pool, nil
}

const offsetsAbout = `Prints, per handler, topic and partition of the group, the handler's next
offset (what it handles next), the partition's high watermark (Kafka's end
offset) and the lag between them. The handler offsets in PostgreSQL, not the
Kafka group offset, are what the consumer resumes from.`

func runOffsets(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := cli.NewCommand("consumer offsets", "consumer offsets --group G [--json] [flags]", offsetsAbout)
	var ac adminConfig
	ac.register(cmd, true)
	var asJSON bool
	cmd.Bool(&asJSON, "json", "", false, "print a JSON array instead of a table")
	if err := ac.parse(cmd, true, args, stdout, stderr); err != nil {
		return err
	}
	a, pool, err := ac.admin(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	lags, err := a.Lag(ctx, ac.group)
	if err != nil {
		return err
	}
	if asJSON {
		type row struct {
			Handler       string    `json:"handler"`
			Topic         string    `json:"topic"`
			Partition     int       `json:"partition"`
			NextOffset    int64     `json:"next_offset"`
			HighWatermark int64     `json:"high_watermark"`
			Lag           int64     `json:"lag"`
			UpdatedAt     time.Time `json:"updated_at"`
			Error         string    `json:"error,omitempty"`
		}
		rows := make([]row, 0, len(lags))
		for _, l := range lags {
			r := row{Handler: l.Handler, Topic: l.Topic, Partition: l.Partition, NextOffset: l.NextOffset,
				HighWatermark: l.HighWatermark, Lag: l.Lag, UpdatedAt: l.UpdatedAt}
			if l.Err != nil {
				r.Error = l.Err.Error()
			}
			rows = append(rows, r)
		}
		return writeJSON(stdout, rows)
	}
	if len(lags) == 0 {
		fmt.Fprintf(stdout, "group %s has no handler offsets yet\n", ac.group)
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HANDLER\tTOPIC\tPARTITION\tNEXT_OFFSET\tHIGH_WATERMARK\tLAG\tUPDATED")
	total := map[string]int64{}
	var failed int
	for _, l := range lags {
		hwm, lag := fmt.Sprint(l.HighWatermark), fmt.Sprint(l.Lag)
		if l.Err != nil {
			hwm, lag = "?", "?"
			failed++
		}
		total[l.Handler] += l.Lag
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\t%s\n", l.Handler, l.Topic, l.Partition, l.NextOffset, hwm, lag,
			l.UpdatedAt.UTC().Format(time.RFC3339))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if failed > 0 {
		for _, l := range lags {
			if l.Err != nil {
				fmt.Fprintf(stderr, "high watermark of %s/%d: %v\n", l.Topic, l.Partition, l.Err)
			}
		}
		return fmt.Errorf("could not read %d high watermark(s) from Kafka", failed)
	}
	return nil
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
	cmd := cli.NewCommand("consumer replay", "consumer replay --group G --handler H [--topic T] [--partition P] --to earliest|latest|<RFC3339 time>|<offset> [--dry-run]", replayAbout)
	var ac adminConfig
	ac.register(cmd, true)
	var handler, topic, to string
	var partition int
	var dryRun bool
	cmd.String(&handler, "handler", "", "", "handler name (required)", nil)
	cmd.String(&topic, "topic", "", "", "only this topic (required when the handler has no offsets yet)", nil)
	cmd.Int(&partition, "partition", "", -1, minInt, maxInt, "only this partition (-1: all)")
	cmd.String(&to, "to", "", "", "earliest, latest, an RFC 3339 time (2025-03-01T12:00:00Z) or an offset (required; an offset needs --topic and --partition)", nil)
	cmd.Bool(&dryRun, "dry-run", "", false, "print each partition's old and new offset, write nothing")
	if err := ac.parse(cmd, true, args, stdout, stderr); err != nil {
		return err
	}
	if handler == "" {
		return &cli.ConfigError{Setting: "--handler", Reason: "required"}
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
	if topic != "" && !validTopic(topic) {
		return &cli.ConfigError{Setting: "--topic", Reason: fmt.Sprintf("%q is not a valid Kafka topic name", topic)}
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
	before, err := dispatch.ListOffsets(ctx, pool, ac.group)
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
