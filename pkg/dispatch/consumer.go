package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/trace"

	"github.com/edupulse/pulsebus/internal/tracing"
)

var (
	// ErrRunning is returned when handlers are registered on, or Run is
	// called for, a consumer that is already running.
	ErrRunning = errors.New("dispatch: consumer already running")
	// ErrStalled is matched by the error of [Consumer.Stalled]: a handler's
	// worker has not advanced for Config.StallTimeout while messages wait.
	ErrStalled = errors.New("handler stalled")
	// ErrReplayOffsetNeedsPartition reports an absolute replay offset
	// without a topic and a partition: offsets mean nothing across
	// partitions.
	ErrReplayOffsetNeedsPartition = errors.New("replay: an absolute offset needs a topic and a partition")
)

// Consumer reads a consumer group's topics and fans each message out to the
// handlers interested in its event type. See the package documentation for
// the guarantees.
type Consumer struct {
	cfg    Config
	log    *slog.Logger
	tracer trace.Tracer
	offs   offsets

	mu       sync.Mutex
	handlers []*registration
	byName   map[string]*registration
	running  bool
	workers  map[*worker]struct{}

	stallMu sync.Mutex
	stalls  map[*worker]stall // see watchStalls
}

// New returns a consumer for cfg. Register handlers, then call Run.
func New(cfg Config) (*Consumer, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	c := cfg.withDefaults()
	return &Consumer{
		cfg:     c,
		log:     c.Logger.With("group", c.Group),
		tracer:  c.TracerProvider.Tracer(tracing.InstrumentationConsumer),
		offs:    offsets{dialer: c.Dialer, brokers: c.Brokers},
		byName:  map[string]*registration{},
		workers: map[*worker]struct{}{},
		stalls:  map[*worker]stall{},
	}, nil
}

// Handle registers a plain (at-least-once) handler for the event types
// (exact names, "prefix.*" or "*").
func (c *Consumer) Handle(name string, types []string, h Handler, opts ...HandlerOption) error {
	return c.register(&registration{name: name, types: types, kind: kindPlain, plain: h}, opts)
}

// HandleTx registers a transactional handler: its writes and the offset
// advance commit in one transaction, so each event takes effect exactly
// once. By default each event has its own transaction; [WithBatchSize]
// groups consecutive events.
func (c *Consumer) HandleTx(name string, types []string, h TxHandler, opts ...HandlerOption) error {
	return c.register(&registration{name: name, types: types, kind: kindTx, tx: h}, opts)
}

// HandleBatchTx registers a batch transactional handler: up to the batch
// size (default DefaultBatchSize) of consecutive events per call and
// transaction.
func (c *Consumer) HandleBatchTx(name string, types []string, h BatchTxHandler, opts ...HandlerOption) error {
	return c.register(&registration{name: name, types: types, kind: kindBatchTx, batch: h}, opts)
}

func (c *Consumer) register(r *registration, opts []HandlerOption) error {
	for _, o := range opts {
		o(r)
	}
	if err := r.finish(c.cfg.Middleware); err != nil {
		return err
	}
	r.retry = r.retry.withDefaults(c.cfg.Retry)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.running {
		return ErrRunning
	}
	if _, dup := c.byName[r.name]; dup {
		return fmt.Errorf("dispatch: handler %s registered twice", r.name)
	}
	c.byName[r.name] = r
	c.handlers = append(c.handlers, r)
	return nil
}

// Ready reports whether PostgreSQL and a Kafka broker answer, for /readyz:
// a round trip to PostgreSQL and an API versions request to the brokers,
// so give ctx a short deadline (a silent broker fails the check only when
// ctx ends, or after the dialer's timeout). Each call costs those
// requests: cache the result when many callers probe. The error is an
// [*UnavailableError] naming the dependency.
func (c *Consumer) Ready(ctx context.Context) error {
	if err := c.cfg.Pool.Ping(ctx); err != nil {
		return &UnavailableError{Dependency: "postgres", Err: err}
	}
	if err := c.pingKafka(ctx); err != nil {
		return &UnavailableError{Dependency: "kafka", Err: err}
	}
	return nil
}

// Run joins the group and handles messages until ctx is done. It then stops
// fetching, lets the in-flight messages finish (up to Config.DrainTimeout),
// saves every handler's progress, leaves the group and returns nil. It
// returns an error only when it cannot start.
func (c *Consumer) Run(ctx context.Context) error {
	if err := c.setRunning(); err != nil {
		return err
	}
	defer func() {
		c.mu.Lock()
		c.running = false
		c.mu.Unlock()
	}()

	// workCtx is what handlers run under: it outlives ctx by DrainTimeout so
	// in-flight messages finish.
	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	drained := c.cancelAfterDrainTimeout(ctx, cancelWork)
	defer drained()

	cg, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID:                c.cfg.Group,
		Brokers:           c.cfg.Brokers,
		Dialer:            c.cfg.Dialer,
		Topics:            c.cfg.Topics,
		HeartbeatInterval: c.cfg.HeartbeatInterval,
		SessionTimeout:    c.cfg.SessionTimeout,
		RebalanceTimeout:  c.cfg.RebalanceTimeout,
		JoinGroupBackoff:  c.cfg.JoinGroupBackoff,
		StartOffset:       c.cfg.StartOffset,
		Timeout:           10 * time.Second,
		ErrorLogger:       kafka.LoggerFunc(func(f string, a ...any) { c.log.Debug("kafka group: " + fmt.Sprintf(f, a...)) }),
	})
	if err != nil {
		return fmt.Errorf("join consumer group %s: %w", c.cfg.Group, err)
	}

	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); c.listen(ctx) }()
	go func() { defer wg.Done(); c.watchStalls(ctx) }()

	c.log.Info("consumer started", "topics", c.cfg.Topics, "handlers", len(c.handlers))
	for {
		gen, err := cg.Next(ctx)
		if ctx.Err() != nil {
			break
		}
		if errors.Is(err, kafka.RebalanceInProgress) {
			c.log.Debug("consumer group: rebalancing", "err", err)
			continue
		}
		if err != nil {
			c.log.Warn("consumer group: no generation yet", "err", err)
			continue
		}
		c.startGeneration(gen, workCtx)
	}
	c.log.Info("consumer stopping: draining in-flight messages")
	_ = cg.Close() // ends the generation, waits for the workers, leaves the group
	wg.Wait()
	c.log.Info("consumer stopped")
	return nil
}

// setRunning marks c running, or says why it cannot run.
func (c *Consumer) setRunning() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.running {
		return ErrRunning
	}
	if len(c.handlers) == 0 {
		return errors.New("dispatch: no handlers registered")
	}
	c.running = true
	return nil
}

// cancelAfterDrainTimeout calls cancelWork once Config.DrainTimeout has
// passed since ctx ended, unless the returned drained is called first.
func (c *Consumer) cancelAfterDrainTimeout(ctx context.Context, cancelWork context.CancelFunc) (drained func()) {
	done := make(chan struct{})
	go func() {
		select {
		case <-done:
			return
		case <-ctx.Done():
		}
		t := time.NewTimer(c.cfg.DrainTimeout)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
			c.log.Warn("drain timeout: cancelling in-flight handlers", "timeout", c.cfg.DrainTimeout)
			cancelWork()
		}
	}()
	return func() { close(done) }
}

// startGeneration starts one worker per assigned partition and handler, and
// the committer of the Kafka group offsets. kafka-go waits for all of them
// to return before it joins the next generation.
func (c *Consumer) startGeneration(gen *kafka.Generation, workCtx context.Context) {
	assigned := map[string][]int{}
	var ws []*worker
	for topic, parts := range gen.Assignments {
		for _, pa := range parts {
			assigned[topic] = append(assigned[topic], pa.ID)
			for _, h := range c.handlers {
				ws = append(ws, newWorker(c, h, workCtx, topic, pa))
			}
		}
	}
	for _, ps := range assigned {
		slices.Sort(ps)
	}
	c.log.Info("joined generation", "generation", gen.ID, "member", gen.MemberID, "assigned", assigned)
	c.cfg.Hooks.rebalance(assigned)
	c.mu.Lock()
	for _, w := range ws {
		c.workers[w] = struct{}{}
	}
	c.mu.Unlock()
	var running sync.WaitGroup
	running.Add(len(ws))
	for _, w := range ws {
		gen.Start(func(ctx context.Context) {
			defer running.Done()
			w.run(ctx)
			c.mu.Lock()
			delete(c.workers, w)
			c.mu.Unlock()
		})
	}
	gen.Start(func(ctx context.Context) { c.watchPartitions(ctx, gen.ID) })
	gen.Start(func(ctx context.Context) {
		t := time.NewTicker(c.cfg.CommitInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				running.Wait()
				c.commitGroupOffsets(gen, ws)
				c.log.Info("generation ended: progress saved", "generation", gen.ID)
				return
			case <-t.C:
				c.commitGroupOffsets(gen, ws)
			}
		}
	})
}

// watchPartitions returns, ending the generation, when a topic's partition
// count changes — a topic created after the member joined included — so
// that the rebalance that follows assigns the new partitions. (kafka-go's
// own watcher ends a generation at once while a topic does not exist,
// which rebalances in a tight loop.) A change between the group leader's
// assignment and the first look here is caught by the next rebalance.
func (c *Consumer) watchPartitions(ctx context.Context, generation int32) {
	known := c.partitionCounts(ctx)
	t := time.NewTicker(c.cfg.PartitionWatchInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for topic, n := range c.partitionCounts(ctx) {
			was, ok := known[topic]
			if !ok {
				known[topic] = n
				continue
			}
			if n != was {
				c.log.Info("partitions changed; rejoining the group", "topic", topic, "partitions", n,
					"before", was, "generation", generation)
				return
			}
		}
	}
}

// partitionCounts returns how many partitions each topic has (0 when it
// does not exist), leaving out those it could not learn.
func (c *Consumer) partitionCounts(ctx context.Context) map[string]int {
	out := make(map[string]int, len(c.cfg.Topics))
	for _, topic := range c.cfg.Topics {
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		ids, err := c.offs.partitions(lctx, topic)
		cancel()
		switch {
		case err == nil:
			out[topic] = len(ids)
		case errors.Is(err, kafka.UnknownTopicOrPartition):
			out[topic] = 0
		default:
			c.log.Debug("look up partitions", "topic", topic, "err", err)
		}
	}
	return out
}

// commitGroupOffsets commits, per partition, the minimum next offset over
// the handlers, so Kafka tooling shows a lag no handler is behind of.
func (c *Consumer) commitGroupOffsets(gen *kafka.Generation, ws []*worker) {
	lowest := map[string]map[int]int64{}
	known := map[offsetKey]bool{}
	for _, w := range ws {
		pk := offsetKey{topic: w.key.topic, partition: w.key.partition}
		d := w.durable.Load()
		if d < 0 {
			known[pk] = false
			continue
		}
		if _, seen := known[pk]; !seen {
			known[pk] = true
		}
		if lowest[pk.topic] == nil {
			lowest[pk.topic] = map[int]int64{}
		}
		if cur, ok := lowest[pk.topic][pk.partition]; !ok || d < cur {
			lowest[pk.topic][pk.partition] = d
		}
	}
	for pk, ok := range known {
		if !ok && lowest[pk.topic] != nil {
			delete(lowest[pk.topic], pk.partition)
		}
	}
	if err := gen.CommitOffsets(lowest); err != nil {
		c.log.Debug("commit group offsets", "err", err)
	}
}

// notification is the payload on notifyChannel.
type notification struct {
	Group   string `json:"group"`
	Handler string `json:"handler"`
}

// listen LISTENs on notifyChannel and tells the workers of a replayed
// handler to reload their offsets. Each time LISTEN takes effect, on the
// first connection and after a lost one, it reloads every worker, since
// notifications may have been missed.
func (c *Consumer) listen(ctx context.Context) {
	delay := 100 * time.Millisecond
	for ctx.Err() == nil {
		listening, err := c.listenOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		if listening {
			delay = 100 * time.Millisecond
		}
		c.log.Warn("offset notifications: connection lost; reconnecting", "err", err, "in", delay)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(delay*2, 10*time.Second)
	}
}

// listenKeepalive is how long the notification connection may stay silent
// before it is pinged: a connection that died without a word would
// otherwise go unnoticed, and replays with it.
const listenKeepalive = 30 * time.Second

func (c *Consumer) listenOnce(ctx context.Context) (listening bool, err error) {
	conn, err := pgx.ConnectConfig(ctx, c.cfg.Pool.Config().ConnConfig.Copy())
	if err != nil {
		return false, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		return false, err
	}
	// A replay committed before LISTEN took effect was not heard: workers
	// that loaded their offsets before now reload them.
	c.signal(func(*worker) bool { return true })
	for {
		wctx, cancel := context.WithTimeout(ctx, listenKeepalive)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		if err != nil {
			if ctx.Err() == nil && pgconn.Timeout(err) {
				if err := conn.Ping(ctx); err != nil {
					return true, err
				}
				continue
			}
			return true, err
		}
		var p notification
		if err := json.Unmarshal([]byte(n.Payload), &p); err != nil {
			c.log.Warn("offset notifications: bad payload", "payload", n.Payload)
			continue
		}
		if p.Group != c.cfg.Group {
			continue
		}
		c.log.Info("handler offsets changed: reloading", "handler", p.Handler)
		c.signal(func(w *worker) bool { return p.Handler == "" || w.key.handler == p.Handler })
	}
}

func (c *Consumer) signal(match func(*worker) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for w := range c.workers {
		if match(w) {
			select {
			case w.reload <- struct{}{}:
			default:
			}
		}
	}
}
