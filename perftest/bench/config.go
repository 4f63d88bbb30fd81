package bench

import (
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Config holds the parameters of one perftest run. The zero value is not
// usable; start from DefaultConfig.
type Config struct {
	URI            string        // -h/--uri
	Producers      int           // -x/--producers
	Consumers      int           // -y/--consumers
	Queue          string        // -u/--queue; "" = one server-named queue per consumer
	Exchange       string        // -e/--exchange
	ExchangeType   string        // -t/--type
	RoutingKey     string        // -k/--routing-key; "" = random UUID
	Size           int           // -s/--size; raised to HeaderSize if smaller
	Persistent     bool          // -f persistent
	Mandatory      bool          // -f mandatory
	Confirm        int           // -c/--confirm; <0 = no confirms, 0 = confirms without window
	ConfirmTimeout time.Duration // -ct/--confirm-timeout
	Qos            int           // -q/--qos; 0 = unlimited
	AutoAck        bool          // -a/--autoack
	MultiAckEvery  int           // -A/--multi-ack-every
	NackEvery      int           // --nack-every: nack with requeue every Nth delivery; 0 = never
	// ProducerProcesses and ConsumerProcesses (--producer-processes,
	// --consumer-processes) run the producers and consumers in that many
	// child processes (perftest re-executes itself); 0 = in this process.
	ProducerProcesses int
	ConsumerProcesses int
	Rate              float64       // -r/--rate, per producer; <=0 = unlimited
	ConsumerRate      float64       // -R/--consumer-rate, per consumer; <=0 = unlimited
	Time              time.Duration // -z/--time; 0 = unlimited
	ProducerMessages  int           // -C/--pmessages; 0 = unlimited
	ConsumerMessages  int           // -D/--cmessages; 0 = unlimited
	QueuePattern      string        // --queue-pattern, e.g. perf-test-%d
	QueuePatternFrom  int           // --queue-pattern-from
	QueuePatternTo    int           // --queue-pattern-to
	Predeclared       bool          // -p/--predeclared
	AutoDelete        bool          // -ad/--auto-delete
	Exclusive         bool          // -E/--exclusive
	QueueArgs         amqp.Table    // -qa/--queue-args
	JSON              bool          // --json
	Interval          time.Duration // -i/--interval
	ID                string        // -d/--id
	Heartbeat         time.Duration // -b/--heartbeat; 0 = broker's choice
	Client            string        // --client: ClientAMQP091 (default) or ClientBuffered

	// A child process's part (set by hidden flags): role "producers" or
	// "consumers", the global indices [childFirst, childFirst+childCount),
	// and the parent's run tag plus one (0: none).
	childRole              string
	childFirst, childCount int
	runTag                 int
	argv                   []string // the command line, for re-executing (Main sets it)

	// DrainTimeout bounds how long a count-bounded run waits, after the
	// producers are done, for consumers to receive the remaining messages.
	// 0 means ConfirmTimeout.
	DrainTimeout time.Duration
}

// Clients of producers and consumers (--client).
const (
	// ClientAMQP091 is amqp091-go, which writes and flushes every publish
	// and every ack: the client most Go applications use.
	ClientAMQP091 = "amqp091"
	// ClientBuffered is perftest's own client on shared/amqp (wire.go),
	// which buffers publishes and acks and writes them in batches, and
	// handles deliveries on its reader goroutine.
	ClientBuffered = "buffered"
)

// DefaultConfig returns PerfTest's defaults.
func DefaultConfig() Config {
	return Config{
		URI:            "amqp://localhost",
		Producers:      1,
		Consumers:      1,
		Exchange:       "direct",
		ExchangeType:   "direct",
		Confirm:        -1,
		ConfirmTimeout: 30 * time.Second,
		Rate:           -1,
		ConsumerRate:   -1,
		AutoDelete:     true,
		Interval:       time.Second,
		Client:         ClientAMQP091,
	}
}

// ErrUsage marks configuration errors; the command exits with status 2.
var ErrUsage = errors.New("usage error")

func usageErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUsage, fmt.Sprintf(format, args...))
}

// Validate checks the configuration and fills in derived defaults (test id,
// routing key).
func (c *Config) Validate() error {
	switch {
	case c.Producers < 0 || c.Consumers < 0:
		return usageErr("producer and consumer counts must not be negative")
	case c.Producers > 1<<16:
		return usageErr("at most %d producers", 1<<16)
	case c.Interval <= 0:
		return usageErr("interval must be positive")
	case c.ProducerMessages < 0 || c.ConsumerMessages < 0:
		return usageErr("message counts must not be negative")
	case c.MultiAckEvery < 0:
		return usageErr("--multi-ack-every must not be negative")
	case c.NackEvery < 0 || (c.NackEvery > 0 && c.AutoAck):
		return usageErr("--nack-every must not be negative, and needs acks (not --autoack)")
	case c.Qos < 0 || c.Qos > 65535:
		return usageErr("--qos must be between 0 and 65535")
	case c.Size < 0:
		return usageErr("--size must not be negative")
	case c.Time < 0:
		return usageErr("--time must not be negative")
	case c.ProducerProcesses < 0 || c.ConsumerProcesses < 0:
		return usageErr("--producer-processes and --consumer-processes must not be negative")
	case (c.ProducerProcesses > 0 || c.ConsumerProcesses > 0) && c.Time == 0 && (c.ConsumerMessages == 0 || c.Consumers == 0):
		return usageErr("--producer-processes/--consumer-processes need -z, or -D with consumers (the drain wait and the loss check of -C alone need one process)")
	case c.Client != ClientAMQP091 && c.Client != ClientBuffered:
		return usageErr("--client wants %s or %s, not %q", ClientAMQP091, ClientBuffered, c.Client)
	}
	if c.QueuePattern != "" {
		if c.Queue != "" {
			return usageErr("--queue and --queue-pattern are mutually exclusive")
		}
		if c.QueuePatternTo < c.QueuePatternFrom || c.QueuePatternFrom < 0 {
			return usageErr("--queue-pattern needs 0 <= --queue-pattern-from <= --queue-pattern-to")
		}
		if !strings.Contains(c.QueuePattern, "%") {
			return usageErr("--queue-pattern must contain a %%d verb, e.g. perf-test-%%d")
		}
	}
	if c.ConfirmTimeout <= 0 {
		c.ConfirmTimeout = 30 * time.Second
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = c.ConfirmTimeout
	}
	if c.ID == "" {
		now := time.Now()
		c.ID = fmt.Sprintf("test-%s-%03d", now.Format("150405"), now.Nanosecond()/1e6)
	}
	if c.RoutingKey == "" {
		c.RoutingKey = randomUUID()
	}
	if c.Size < HeaderSize {
		c.Size = HeaderSize
	}
	return nil
}

// ParseFlagValues applies PerfTest's -f/--flag values.
func (c *Config) ParseFlagValues(flags []string) error {
	for _, f := range flags {
		for _, v := range strings.Split(f, ",") {
			switch strings.TrimSpace(strings.ToLower(v)) {
			case "persistent":
				c.Persistent = true
			case "mandatory":
				c.Mandatory = true
			case "":
			default:
				return usageErr("unsupported --flag %q (supported: persistent, mandatory)", v)
			}
		}
	}
	return nil
}

// ParseQueueArgs parses PerfTest's --queue-args syntax,
// "x-max-length=10,x-queue-type=quorum". Integer and boolean values are
// sent as AMQP integers and booleans, everything else as strings.
func ParseQueueArgs(s string) (amqp.Table, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	t := amqp.Table{}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, usageErr("bad --queue-args entry %q, want key=value", kv)
		}
		v = strings.TrimSpace(v)
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			t[k] = n
		} else if b, err := strconv.ParseBool(v); err == nil && (v == "true" || v == "false") {
			t[k] = b
		} else {
			t[k] = v
		}
	}
	return t, nil
}

func randomUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
