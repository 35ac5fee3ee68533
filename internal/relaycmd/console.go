package relaycmd

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"

	"github.com/edupulse/pulsebus/internal/console"
	"github.com/edupulse/pulsebus/internal/kafkaconfig"
	"github.com/edupulse/pulsebus/pkg/dispatch"
)

// consoleKafkaTimeout bounds the console's Kafka requests (high
// watermarks), so a page never waits long on a broker that does not answer.
const consoleKafkaTimeout = 5 * time.Second

// consoleParked gives the console the parked commands' requeue and delete.
type consoleParked struct{ pool *pgxpool.Pool }

func (p consoleParked) RequeueParked(ctx context.Context, id int64) (int64, bool, error) {
	res, err := RequeueParked(ctx, p.pool, ParkedFilter{ID: id})
	return res.FirstID, res.Rows > 0, err
}

func (p consoleParked) DeleteParked(ctx context.Context, id int64) (bool, error) {
	rows, err := DeleteParked(ctx, p.pool, ParkedFilter{ID: id})
	return len(rows) > 0, err
}

// ConsoleParked returns the console's parked-row actions on pool: the ones
// "relay parked requeue" and "relay parked delete" run.
func ConsoleParked(pool *pgxpool.Pool) console.ParkedActions { return consoleParked{pool: pool} }

// ConsoleConfig is the part of a console's configuration both binaries
// build the same way: data, Kafka watermarks, parked-row actions and
// replay. The caller adds what only it has (redrive) and starts it.
func ConsoleConfig(settings console.Settings, binary string, pool *pgxpool.Pool, k *kafkaconfig.Config, log *slog.Logger) (console.Config, error) {
	transport, err := k.Transport()
	if err != nil {
		return console.Config{}, err
	}
	dialer, err := k.Dialer()
	if err != nil {
		return console.Config{}, err
	}
	return console.Config{
		Settings: settings,
		Binary:   binary,
		Data:     console.NewData(pool),
		Kafka:    &kafka.Client{Addr: kafka.TCP(k.Brokers...), Transport: transport, Timeout: consoleKafkaTimeout},
		Parked:   ConsoleParked(pool),
		Replay:   &dispatch.Admin{Pool: pool, Brokers: k.Brokers, Dialer: dialer},
		Logger:   log,
	}, nil
}
