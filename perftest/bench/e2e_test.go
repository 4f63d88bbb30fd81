package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// syncBuffer is a bytes.Buffer safe for the reporter goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// run runs perftest with args against the test broker.
func run(t *testing.T, ctx context.Context, args ...string) (*Result, string, error) {
	t.Helper()
	url := brokerURL(t)
	var cfg Config
	app := NewApp(&bytes.Buffer{}, &bytes.Buffer{}, func(c Config) error { cfg = c; return nil })
	if err := app.Run(append([]string{"perftest", "-h", url, "-d", t.Name()}, args...)); err != nil {
		t.Fatalf("flags %q: %v", args, err)
	}
	cfg.DrainTimeout = 10 * time.Second
	var out syncBuffer
	res, err := Run(ctx, cfg, &out)
	t.Logf("perftest %s\n%s", strings.Join(args, " "), out.String())
	if res == nil {
		t.Fatalf("no result; err=%v", err)
	}
	return res, out.String(), err
}

func checkClean(t *testing.T, res *Result) {
	t.Helper()
	if res.Duplicates != 0 || res.OutOfOrder != 0 || res.Lost != 0 || res.Unconfirmed != 0 || len(res.Errors) != 0 {
		t.Errorf("dups=%d ooo=%d lost=%d unconfirmed=%d errors=%v",
			res.Duplicates, res.OutOfOrder, res.Lost, res.Unconfirmed, res.Errors)
	}
}

func TestE2ETimeBounded(t *testing.T) {
	res, out, err := run(t, context.Background(), "-x", "2", "-y", "2", "-z", "2", "-r", "2000")
	if err != nil {
		t.Fatal(err)
	}
	checkClean(t, res)
	if res.StopReason != ReasonTimeLimit || res.Sent == 0 || res.Received == 0 || res.LossChecked {
		t.Fatalf("result: %+v", res)
	}
	if res.DurationS < 1.9 || res.DurationS > 3 {
		t.Errorf("duration %.2f s", res.DurationS)
	}
	// 2 producers x 2000 msg/s for 2 s, every message to both consumers;
	// the run may take a little longer on a busy machine, and the rate
	// holds over the time it took.
	if limit := int64(2*2000*res.DurationS) + 100; res.Sent < 2000 || res.Sent > limit || res.Received == 0 {
		t.Errorf("sent=%d received=%d", res.Sent, res.Received)
	}
	for _, want := range []string{"time 1.0", "sent: ", "received: ", "consumer latency: ",
		"test stopped (Reached time limit)", "sending rate avg: ", "receiving rate avg: "} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if res.LatencyUS.P50 <= 0 || res.LatencyUS.Max < res.LatencyUS.P99 {
		t.Errorf("latency %+v", res.LatencyUS)
	}
	// JSON fields.
	b, _ := json.Marshal(res)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"sent", "confirmed", "nacked", "returned", "received", "send_rate",
		"receive_rate", "latency_us", "lost", "duplicates", "out_of_order", "duration_s"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON lacks %q: %s", k, b)
		}
	}
	for _, k := range []string{"min", "p50", "p75", "p95", "p99", "p999", "max"} {
		if _, ok := m["latency_us"].(map[string]any)[k]; !ok {
			t.Errorf("latency_us lacks %q", k)
		}
	}
}

func TestE2ECountBoundedServerNamedQueues(t *testing.T) {
	res, _, err := run(t, context.Background(), "-x", "2", "-y", "2", "-C", "3000")
	if err != nil {
		t.Fatal(err)
	}
	checkClean(t, res)
	// Each consumer has its own queue and gets every message.
	if res.Sent != 6000 || res.Received != 2*res.Sent || !res.LossChecked || res.StopReason != ReasonMessageLimit {
		t.Fatalf("result: %+v", res)
	}
}

func TestE2ECountBoundedSharedQueue(t *testing.T) {
	q := fmt.Sprintf("perftest-shared-%d", time.Now().UnixNano())
	res, _, err := run(t, context.Background(), "-x", "2", "-y", "2", "-u", q, "-C", "3000",
		"-f", "persistent", "-c", "100", "-A", "10", "-q", "200")
	if err != nil {
		t.Fatal(err)
	}
	checkClean(t, res)
	if res.Sent != 6000 || res.Received != res.Sent || res.Confirmed != res.Sent || !res.LossChecked {
		t.Fatalf("result: %+v", res)
	}
	if res.ConfirmLatencyUS == nil || res.ConfirmLatencyUS.P50 <= 0 {
		t.Errorf("confirm latency %+v", res.ConfirmLatencyUS)
	}
	// The queue perftest declared is gone.
	assertQueueGone(t, q)
}

func TestE2EQueuePattern(t *testing.T) {
	p := fmt.Sprintf("perftest-pat-%d-%%d", time.Now().UnixNano())
	res, _, err := run(t, context.Background(), "-x", "3", "-y", "2", "--queue-pattern", p,
		"--queue-pattern-from", "1", "--queue-pattern-to", "2", "-C", "1000", "-a")
	if err != nil {
		t.Fatal(err)
	}
	checkClean(t, res)
	// producers 0,2 -> queue 1, producer 1 -> queue 2; one consumer each.
	if res.Sent != 3000 || res.Received != res.Sent || !res.LossChecked {
		t.Fatalf("result: %+v", res)
	}
	assertQueueGone(t, fmt.Sprintf(p, 1))
	assertQueueGone(t, fmt.Sprintf(p, 2))
}

func TestE2EConsumerLimit(t *testing.T) {
	res, _, err := run(t, context.Background(), "-x", "1", "-y", "2", "-D", "500", "-r", "5000")
	if err != nil {
		t.Fatal(err)
	}
	if res.Received != 1000 || res.StopReason != ReasonMessageLimit || res.LossChecked {
		t.Fatalf("result: %+v", res)
	}
}

func TestE2ESignalStopsCleanly(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	res, _, err := run(t, ctx, "-x", "1", "-y", "1", "-c", "50")
	if err != nil {
		t.Fatal(err)
	}
	checkClean(t, res)
	if res.StopReason != ReasonSignal || res.Sent == 0 {
		t.Fatalf("result: %+v", res)
	}
}

func TestE2EProtocolErrorFails(t *testing.T) {
	// A predeclared queue that does not exist: the broker closes the channel.
	_, _, err := runExpectStartError(t, "-p", "-u", fmt.Sprintf("perftest-missing-%d", time.Now().UnixNano()), "-z", "2")
	if err == nil {
		t.Fatal("want an error")
	}
	// Publishing to a missing predeclared exchange: the broker closes the
	// producer's channel mid-run.
	res, _, err := run(t, context.Background(), "-p", "-y", "0", "-e", fmt.Sprintf("perftest-missing-%d", time.Now().UnixNano()), "-z", "3")
	if err == nil || res.StopReason != ReasonError {
		t.Fatalf("err=%v result=%+v", err, res)
	}
	var out bytes.Buffer
	if code := Main(context.Background(), []string{"perftest", "-h", brokerURL(t), "-p", "-y", "0", "-e", "perftest-missing-x", "-z", "3"}, &out, &out); code != ExitFailure {
		t.Fatalf("exit %d", code)
	}
}

func runExpectStartError(t *testing.T, args ...string) (*Result, string, error) {
	t.Helper()
	var cfg Config
	app := NewApp(&bytes.Buffer{}, &bytes.Buffer{}, func(c Config) error { cfg = c; return nil })
	if err := app.Run(append([]string{"perftest", "-h", brokerURL(t)}, args...)); err != nil {
		t.Fatal(err)
	}
	var out syncBuffer
	res, err := Run(context.Background(), cfg, &out)
	return res, out.String(), err
}

func TestE2EJSONOutput(t *testing.T) {
	var stdout, stderr syncBuffer
	code := Main(context.Background(), []string{"perftest", "-h", brokerURL(t), "-x", "1", "-y", "1", "-C", "200", "--json"}, &stdout, &stderr)
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	var res Result
	if err := json.Unmarshal([]byte(stdout.String()), &res); err != nil {
		t.Fatalf("stdout is not one JSON object: %v\n%s", err, stdout.String())
	}
	if res.Sent != 200 || res.Received != 200 || !strings.Contains(stderr.String(), "sending rate avg") {
		t.Fatalf("res=%+v stderr=%s", res, stderr.String())
	}
}

func assertQueueGone(t *testing.T, q string) {
	t.Helper()
	conn, err := amqp.Dial(brokerURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclarePassive(q, false, false, false, false, nil); !isNotFound(err) {
		t.Errorf("queue %q still exists (err=%v)", q, err)
	}
}
