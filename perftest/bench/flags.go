package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/urfave/cli/v2"
)

// Flags returns perftest's command-line flags. Names and short forms follow
// RabbitMQ PerfTest; because urfave/cli parses with Go's flag package, every
// flag also works with a single dash (-producers 2) and multi-letter short
// forms (-ad, -ct, -qa) are plain aliases.
func Flags() []cli.Flag {
	d := DefaultConfig()
	return []cli.Flag{
		&cli.StringFlag{Name: "uri", Aliases: []string{"h"}, Value: d.URI, Usage: "connection URI"},
		&cli.IntFlag{Name: "producers", Aliases: []string{"x"}, Value: d.Producers, Usage: "producer count"},
		&cli.IntFlag{Name: "consumers", Aliases: []string{"y"}, Value: d.Consumers, Usage: "consumer count"},
		&cli.StringFlag{Name: "queue", Aliases: []string{"u"}, Usage: "queue name (shared by all consumers); default: one server-named queue per consumer"},
		&cli.StringFlag{Name: "exchange", Aliases: []string{"e"}, Value: d.Exchange, Usage: "exchange name"},
		&cli.StringFlag{Name: "type", Aliases: []string{"t"}, Value: d.ExchangeType, Usage: "exchange type"},
		&cli.StringFlag{Name: "routing-key", Aliases: []string{"k"}, Usage: "routing key (default: a random UUID)"},
		&cli.IntFlag{Name: "size", Aliases: []string{"s"}, Usage: fmt.Sprintf("message size in bytes (minimum %d)", HeaderSize)},
		&cli.StringSliceFlag{Name: "flag", Aliases: []string{"f"}, Usage: "message flag: persistent (also makes declared queues durable), mandatory; repeatable"},
		&cli.IntFlag{Name: "confirm", Aliases: []string{"c"}, Value: d.Confirm, Usage: "max unconfirmed publishes per producer (-1: no confirms, 0: confirms without limit)"},
		&cli.IntFlag{Name: "confirm-timeout", Aliases: []string{"ct"}, Value: int(d.ConfirmTimeout / time.Second), Usage: "waiting timeout for unconfirmed publishes before failing (in seconds)"},
		&cli.IntFlag{Name: "qos", Aliases: []string{"q"}, Usage: "consumer prefetch count (0: unlimited)"},
		&cli.BoolFlag{Name: "autoack", Aliases: []string{"a"}, Usage: "auto ack"},
		&cli.IntFlag{Name: "multi-ack-every", Aliases: []string{"A"}, Usage: "ack with multiple=true every N messages"},
		&cli.Float64Flag{Name: "rate", Aliases: []string{"r"}, Value: d.Rate, Usage: "producer rate limit in msg/s (<=0: unlimited)"},
		&cli.Float64Flag{Name: "consumer-rate", Aliases: []string{"R"}, Value: d.ConsumerRate, Usage: "consumer rate limit in msg/s (<=0: unlimited)"},
		&cli.IntFlag{Name: "time", Aliases: []string{"z"}, Usage: "run duration in seconds (0: unlimited)"},
		&cli.IntFlag{Name: "pmessages", Aliases: []string{"C"}, Usage: "producer message count (0: unlimited)"},
		&cli.IntFlag{Name: "cmessages", Aliases: []string{"D"}, Usage: "consumer message count (0: unlimited)"},
		&cli.StringFlag{Name: "queue-pattern", Aliases: []string{"qp"}, Usage: "queue name pattern for a sequence of queues, e.g. perf-test-%d"},
		&cli.IntFlag{Name: "queue-pattern-from", Aliases: []string{"qpf"}, Value: 1, Usage: "queue pattern sequence start (inclusive)"},
		&cli.IntFlag{Name: "queue-pattern-to", Aliases: []string{"qpt"}, Usage: "queue pattern sequence end (inclusive)"},
		&cli.BoolFlag{Name: "predeclared", Aliases: []string{"p"}, Usage: "use predeclared exchange and queues: declare nothing, delete nothing"},
		&cli.StringFlag{Name: "auto-delete", Aliases: []string{"ad"}, Value: "true", Usage: "should the queues be auto-deleted (true|false)"},
		&cli.BoolFlag{Name: "exclusive", Aliases: []string{"E"}, Usage: "declare exclusive queues"},
		&cli.StringFlag{Name: "queue-args", Aliases: []string{"qa"}, Usage: "queue arguments as key/value pairs, e.g. x-max-length=10,x-queue-type=quorum"},
		&cli.IntFlag{Name: "interval", Aliases: []string{"i"}, Value: int(d.Interval / time.Second), Usage: "sampling interval in seconds"},
		&cli.StringFlag{Name: "id", Aliases: []string{"d"}, Usage: "test ID (default: test-HHmmss-SSS)"},
		&cli.IntFlag{Name: "heartbeat", Aliases: []string{"b"}, Usage: "heartbeat interval in seconds (0: broker's choice)"},
		&cli.IntFlag{Name: "nack-every", Usage: "nack with requeue every Nth delivery instead of acking it (0: never)"},
		&cli.IntFlag{Name: "producer-processes", Usage: "run the producers in N child processes (perftest re-executes itself; 0: in this one)"},
		&cli.IntFlag{Name: "consumer-processes", Usage: "run the consumers in N child processes (0: in this one)"},
		&cli.StringFlag{Name: "child-role", Hidden: true},
		&cli.IntFlag{Name: "child-first", Hidden: true},
		&cli.IntFlag{Name: "child-count", Hidden: true},
		&cli.IntFlag{Name: "run-tag", Hidden: true}, // the parent's run tag + 1; 0 = none
		&cli.StringFlag{Name: "client", Value: d.Client, Usage: "producers' and consumers' client: amqp091 (amqp091-go: a write per publish and per ack) or buffered (perftest's own, on shared/amqp: publishes and acks written in batches)"},
		&cli.BoolFlag{Name: "json", Usage: "print a JSON summary on stdout; the report lines go to stderr"},
	}
}

// ConfigFromContext builds a Config from parsed flags. It does not call
// Validate.
func ConfigFromContext(c *cli.Context) (Config, error) {
	cfg := DefaultConfig()
	cfg.URI = c.String("uri")
	cfg.Producers = c.Int("producers")
	cfg.Consumers = c.Int("consumers")
	cfg.Queue = c.String("queue")
	cfg.Exchange = c.String("exchange")
	cfg.ExchangeType = c.String("type")
	cfg.RoutingKey = c.String("routing-key")
	cfg.Size = c.Int("size")
	if err := cfg.ParseFlagValues(c.StringSlice("flag")); err != nil {
		return cfg, err
	}
	cfg.Confirm = c.Int("confirm")
	cfg.ConfirmTimeout = time.Duration(c.Int("confirm-timeout")) * time.Second
	cfg.Qos = c.Int("qos")
	cfg.AutoAck = c.Bool("autoack")
	cfg.MultiAckEvery = c.Int("multi-ack-every")
	cfg.Rate = c.Float64("rate")
	cfg.ConsumerRate = c.Float64("consumer-rate")
	cfg.Time = time.Duration(c.Int("time")) * time.Second
	cfg.ProducerMessages = c.Int("pmessages")
	cfg.ConsumerMessages = c.Int("cmessages")
	cfg.QueuePattern = c.String("queue-pattern")
	cfg.QueuePatternFrom = c.Int("queue-pattern-from")
	cfg.QueuePatternTo = c.Int("queue-pattern-to")
	cfg.Predeclared = c.Bool("predeclared")
	ad, err := strconv.ParseBool(c.String("auto-delete"))
	if err != nil {
		return cfg, usageErr("--auto-delete wants true or false, not %q", c.String("auto-delete"))
	}
	cfg.AutoDelete = ad
	cfg.Exclusive = c.Bool("exclusive")
	if cfg.QueueArgs, err = ParseQueueArgs(c.String("queue-args")); err != nil {
		return cfg, err
	}
	cfg.JSON = c.Bool("json")
	cfg.Interval = time.Duration(c.Int("interval")) * time.Second
	cfg.ID = c.String("id")
	cfg.Heartbeat = time.Duration(c.Int("heartbeat")) * time.Second
	cfg.Client = c.String("client")
	cfg.NackEvery = c.Int("nack-every")
	cfg.ProducerProcesses = c.Int("producer-processes")
	cfg.ConsumerProcesses = c.Int("consumer-processes")
	cfg.childRole = c.String("child-role")
	cfg.childFirst = c.Int("child-first")
	cfg.childCount = c.Int("child-count")
	cfg.runTag = c.Int("run-tag")
	return cfg, nil
}

// NewApp returns the perftest command. action is called with the parsed and
// validated configuration; Main passes one that runs the benchmark.
func NewApp(stdout, stderr io.Writer, action func(Config) error) *cli.App {
	// PerfTest uses -h for --uri; help is --help or -?, as in PerfTest.
	cli.HelpFlag = &cli.BoolFlag{Name: "help", Aliases: []string{"?"}, Usage: "show usage"}
	return &cli.App{
		Name:            "perftest",
		Usage:           "AMQP 0.9.1 throughput and latency test, compatible with RabbitMQ PerfTest",
		UsageText:       "perftest [options]   e.g. perftest -x 2 -y 2 -z 30 -f persistent -c 100",
		Flags:           Flags(),
		Writer:          stdout,
		ErrWriter:       stderr,
		HideHelpCommand: true,
		Action: func(c *cli.Context) error {
			if c.Args().Len() > 0 {
				return usageErr("unexpected arguments: %v", c.Args().Slice())
			}
			cfg, err := ConfigFromContext(c)
			if err != nil {
				return err
			}
			if err := cfg.Validate(); err != nil {
				return err
			}
			return action(cfg)
		},
	}
}

// Exit statuses of Main.
const (
	ExitOK      = 0 // run completed, no errors
	ExitFailure = 1 // protocol error, unconfirmed messages, or loss
	ExitUsage   = 2 // bad flags
)

// Main runs perftest with the given arguments (args[0] is the program
// name) and returns the process exit status. ctx is cancelled on
// SIGINT/SIGTERM by the caller; cancellation ends the run normally.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	status := ExitOK
	app := NewApp(stdout, stderr, func(cfg Config) error {
		cfg.argv = args
		report, human := stdout, stdout
		if cfg.JSON {
			human = stderr
		}
		res, err := Run(ctx, cfg, human)
		if res != nil && cfg.JSON {
			enc := json.NewEncoder(report)
			enc.SetIndent("", "  ")
			if jerr := enc.Encode(res); jerr != nil && err == nil {
				err = jerr
			}
		}
		if err != nil {
			fmt.Fprintf(stderr, "perftest: %v\n", err)
			status = ExitFailure
		}
		return nil
	})
	if err := app.Run(args); err != nil {
		fmt.Fprintf(stderr, "perftest: %v\n", err)
		if errors.Is(err, ErrUsage) || status == ExitOK {
			return ExitUsage
		}
	}
	return status
}
