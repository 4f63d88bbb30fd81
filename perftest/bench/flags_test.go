package bench

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// parse runs the app on args and returns the validated configuration.
func parse(t *testing.T, args ...string) (Config, error) {
	t.Helper()
	var got Config
	var out, errOut bytes.Buffer
	app := NewApp(&out, &errOut, func(c Config) error { got = c; return nil })
	err := app.Run(append([]string{"perftest"}, args...))
	return got, err
}

func mustParse(t *testing.T, args ...string) Config {
	t.Helper()
	c, err := parse(t, args...)
	if err != nil {
		t.Fatalf("parse %q: %v", args, err)
	}
	return c
}

func TestFlagDefaults(t *testing.T) {
	c := mustParse(t)
	if c.URI != "amqp://localhost" || c.Producers != 1 || c.Consumers != 1 ||
		c.Exchange != "direct" || c.ExchangeType != "direct" || c.Confirm != -1 ||
		c.ConfirmTimeout != 30*time.Second || !c.AutoDelete || c.Interval != time.Second ||
		c.Size != HeaderSize || c.Queue != "" || c.Time != 0 || c.Predeclared || c.JSON ||
		c.Persistent || c.Mandatory || c.Rate > 0 || c.QueuePatternFrom != 1 {
		t.Fatalf("unexpected defaults: %+v", c)
	}
	if len(c.RoutingKey) != 36 || strings.Count(c.RoutingKey, "-") != 4 {
		t.Fatalf("routing key %q is not a UUID", c.RoutingKey)
	}
	if !strings.HasPrefix(c.ID, "test-") || len(c.ID) != len("test-150405-000") {
		t.Fatalf("id %q does not look like PerfTest's", c.ID)
	}
	if c2 := mustParse(t); c2.RoutingKey == c.RoutingKey {
		t.Fatal("routing key is not random per run")
	}
}

func TestFlagForms(t *testing.T) {
	for _, args := range [][]string{
		{"-producers", "20", "-consumers", "30"},
		{"--producers", "20", "--consumers", "30"},
		{"-x", "20", "-y", "30"},
		{"--x", "20", "--y=30"},
		{"-producers=20", "-y", "30"},
	} {
		c := mustParse(t, args...)
		if c.Producers != 20 || c.Consumers != 30 {
			t.Errorf("%q: producers=%d consumers=%d", args, c.Producers, c.Consumers)
		}
	}
}

func TestAllShortForms(t *testing.T) {
	c := mustParse(t,
		"-h", "amqp://u:p@127.0.0.1:5999/vh", "-x", "3", "-y", "4", "-u", "q1",
		"-e", "ex", "-t", "topic", "-k", "rk", "-s", "1000", "-f", "persistent", "-f", "mandatory",
		"-c", "100", "-ct", "7", "-q", "50", "-A", "10", "-r", "500", "-R", "400", "-z", "9",
		"-C", "1000", "-D", "2000", "-ad", "false", "-qa", "x-max-length=10,x-queue-type=quorum,x-flag=true",
		"-i", "2", "-d", "myid", "-b", "5", "-E", "-p", "--client", "buffered")
	want := Config{
		URI: "amqp://u:p@127.0.0.1:5999/vh", Producers: 3, Consumers: 4, Queue: "q1",
		Exchange: "ex", ExchangeType: "topic", RoutingKey: "rk", Size: 1000,
		Persistent: true, Mandatory: true, Confirm: 100, ConfirmTimeout: 7 * time.Second,
		Qos: 50, MultiAckEvery: 10, Rate: 500, ConsumerRate: 400, Time: 9 * time.Second,
		ProducerMessages: 1000, ConsumerMessages: 2000, AutoDelete: false,
		Interval: 2 * time.Second, ID: "myid", Heartbeat: 5 * time.Second, Exclusive: true,
		Predeclared: true, QueuePatternFrom: 1, DrainTimeout: 7 * time.Second, Client: ClientBuffered,
	}
	qa := c.QueueArgs
	c.QueueArgs = nil
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("got  %+v\nwant %+v", c, want)
	}
	if qa["x-max-length"] != int64(10) || qa["x-queue-type"] != "quorum" || qa["x-flag"] != true {
		t.Fatalf("queue args: %#v", qa)
	}
	if c := mustParse(t, "-a"); !c.AutoAck {
		t.Fatal("-a not parsed")
	}
	if c := mustParse(t, "--json"); !c.JSON {
		t.Fatal("--json not parsed")
	}
}

func TestLongFormsSingleDash(t *testing.T) {
	c := mustParse(t, "-uri", "amqp://127.0.0.1:5999/", "-queue-pattern", "perf-test-%d",
		"-queue-pattern-from", "2", "-queue-pattern-to", "5", "-auto-delete", "false",
		"-confirm", "10", "-confirm-timeout", "3", "-multi-ack-every", "5", "-pmessages", "7",
		"-cmessages", "8", "-routing-key", "k", "-flag", "persistent,mandatory",
		"-queue-args", "x-max-length=1", "-interval", "3", "-id", "x", "-time", "4", "-predeclared")
	if c.URI != "amqp://127.0.0.1:5999/" || c.QueuePattern != "perf-test-%d" || c.QueuePatternFrom != 2 ||
		c.QueuePatternTo != 5 || c.AutoDelete || c.Confirm != 10 || c.ConfirmTimeout != 3*time.Second ||
		c.MultiAckEvery != 5 || c.ProducerMessages != 7 || c.ConsumerMessages != 8 || c.RoutingKey != "k" ||
		!c.Persistent || !c.Mandatory || c.QueueArgs["x-max-length"] != int64(1) ||
		c.Interval != 3*time.Second || c.ID != "x" || c.Time != 4*time.Second || !c.Predeclared {
		t.Fatalf("single-dash long forms: %+v", c)
	}
}

func TestHelpIsNotH(t *testing.T) {
	var out bytes.Buffer
	code := Main(context.Background(), []string{"perftest", "--help"}, &out, &out)
	if code != ExitOK || !strings.Contains(out.String(), "--uri value, -h value") {
		t.Fatalf("--help: code %d, output:\n%s", code, out.String())
	}
	out.Reset()
	if code := Main(context.Background(), []string{"perftest", "-?"}, &out, &out); code != ExitOK ||
		!strings.Contains(out.String(), "--producers") {
		t.Fatalf("-?: code %d, output:\n%s", code, out.String())
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"-f", "immediate"},
		{"-ad", "maybe"},
		{"-x", "-1"},
		{"-u", "q", "--queue-pattern", "p-%d", "--queue-pattern-to", "2"},
		{"--queue-pattern", "p-%d", "--queue-pattern-from", "3", "--queue-pattern-to", "2"},
		{"--queue-pattern", "nopattern", "--queue-pattern-to", "2"},
		{"-qa", "novalue"},
		{"--client", "java"},
		{"--producer-processes", "2", "-C", "100"},
		{"--no-such-flag"},
		{"extra-arg"},
	} {
		var out bytes.Buffer
		if code := Main(context.Background(), append([]string{"perftest"}, args...), &out, &out); code != ExitUsage {
			t.Errorf("%q: exit %d, want %d; output: %s", args, code, ExitUsage, out.String())
		}
	}
	if _, err := parse(t, "-f", "immediate"); !errors.Is(err, ErrUsage) {
		t.Errorf("err = %v, want ErrUsage", err)
	}
}

func TestSizeRaisedToHeader(t *testing.T) {
	if c := mustParse(t, "-s", "12"); c.Size != HeaderSize {
		t.Fatalf("size %d, want %d", c.Size, HeaderSize)
	}
	if c := mustParse(t, "-s", "4000"); c.Size != 4000 {
		t.Fatalf("size %d", c.Size)
	}
}

func TestParseQueueArgs(t *testing.T) {
	qa, err := ParseQueueArgs(" x-max-length = 5 , x-overflow=reject-publish")
	if err != nil {
		t.Fatal(err)
	}
	want := amqp.Table{"x-max-length": int64(5), "x-overflow": "reject-publish"}
	if len(qa) != len(want) || qa["x-max-length"] != want["x-max-length"] || qa["x-overflow"] != want["x-overflow"] {
		t.Fatalf("got %#v", qa)
	}
	if qa, err := ParseQueueArgs(""); qa != nil || err != nil {
		t.Fatalf("empty: %v %v", qa, err)
	}
}

func TestConnectionRefusedExitsNonZero(t *testing.T) {
	var out bytes.Buffer
	code := Main(context.Background(), []string{"perftest", "-h", "amqp://guest:guest@127.0.0.1:1/", "-z", "1"}, &out, &out)
	if code != ExitFailure {
		t.Fatalf("exit %d, want %d; output: %s", code, ExitFailure, out.String())
	}
}
