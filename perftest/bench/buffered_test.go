package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// The buffered client (--client buffered) against a real broker: every
// message arrives once, in order, confirmed, with the loss check on.
func TestBufferedSharedQueueConfirmsAndAcks(t *testing.T) {
	q := fmt.Sprintf("perftest-buf-%d", time.Now().UnixNano())
	res, _, err := run(t, context.Background(), "--client", "buffered", "-x", "2", "-y", "2", "-u", q,
		"-C", "20000", "-f", "persistent", "-c", "100", "-q", "200")
	if err != nil {
		t.Fatal(err)
	}
	checkClean(t, res)
	if res.Sent != 40000 || res.Received != res.Sent || res.Confirmed != res.Sent || !res.LossChecked {
		t.Fatalf("result: %+v", res)
	}
	if res.ConfirmLatencyUS == nil || res.ConfirmLatencyUS.P50 <= 0 || res.LatencyUS.P50 <= 0 {
		t.Errorf("latencies: confirm %+v consumer %+v", res.ConfirmLatencyUS, res.LatencyUS)
	}
	assertQueueGone(t, q)
}

// Server-named queues (every consumer gets every message), multi-ack, and
// no confirms: the publisher only flushes by size, age and at the end.
func TestBufferedServerNamedQueuesMultiAck(t *testing.T) {
	res, _, err := run(t, context.Background(), "--client", "buffered", "-x", "1", "-y", "3", "-C", "30000", "-A", "7", "-q", "100")
	if err != nil {
		t.Fatal(err)
	}
	checkClean(t, res)
	if res.Sent != 30000 || res.Received != 3*res.Sent || !res.LossChecked {
		t.Fatalf("result: %+v", res)
	}
}

// Unroutable mandatory publishes come back as basic.return and are counted.
func TestBufferedMandatoryReturns(t *testing.T) {
	res, _, err := run(t, context.Background(), "--client", "buffered", "-x", "1", "-y", "0",
		"-k", "nowhere", "-f", "mandatory", "-c", "10", "-C", "500")
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent != 500 || res.Returned != 500 || res.Confirmed != 500 {
		t.Fatalf("result: %+v", res)
	}
}

// Rate-limited publishing flushes before each wait, so a slow producer's
// messages are not held back: consumer latency stays far below the 100 ms
// between publishes.
func TestBufferedRateLimitedLatency(t *testing.T) {
	res, _, err := run(t, context.Background(), "--client", "buffered", "-x", "1", "-y", "1", "-r", "10", "-z", "2")
	if err != nil {
		t.Fatal(err)
	}
	checkClean(t, res)
	if res.Received < 15 || res.LatencyUS.P99 > 50000 {
		t.Fatalf("received %d, latency %+v", res.Received, res.LatencyUS)
	}
}

// A server-side channel error ends a buffered run with an error.
func TestBufferedProtocolErrorFails(t *testing.T) {
	res, _, err := run(t, context.Background(), "--client", "buffered", "-p", "-y", "0",
		"-e", fmt.Sprintf("perftest-missing-%d", time.Now().UnixNano()), "-z", "3")
	if err == nil || res.StopReason != ReasonError || !strings.Contains(err.Error(), "404") {
		t.Fatalf("err=%v result=%+v", err, res)
	}
}

// Against the null sink, what the sink counts is what perftest sent, every
// publish is confirmed, and consumers receive the generated deliveries.
func TestSinkCountsWhatPerftestSends(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Sink{DeliverySize: 100}
	go func() { _ = s.Serve(ln) }()
	defer s.Close()
	url := "amqp://guest:guest@" + ln.Addr().String() + "/"
	for _, client := range []string{ClientAMQP091, ClientBuffered} {
		before := s.Published.Load()
		cfg := DefaultConfig()
		cfg.URI, cfg.Client, cfg.Producers, cfg.Consumers = url, client, 2, 2
		cfg.Queue, cfg.Confirm, cfg.Qos, cfg.Time, cfg.ID = "q", 50, 100, 2*time.Second, t.Name()
		var out syncBuffer
		res, err := Run(context.Background(), cfg, &out)
		if err != nil {
			t.Fatalf("%s: %v\n%s", client, err, out.String())
		}
		if got := s.Published.Load() - before; got != res.Sent || res.Sent == 0 || res.Confirmed != res.Sent {
			t.Errorf("%s: sink saw %d publishes, perftest sent %d, confirmed %d", client, got, res.Sent, res.Confirmed)
		}
		if res.Received == 0 || res.PerftestCPUS <= 0 {
			t.Errorf("%s: received %d, perftest CPU %.3f s", client, res.Received, res.PerftestCPUS)
		}
	}
}

// --nack-every 3 requeues every third delivery: with both clients, every
// message is still kept exactly once (the loss check passes), the requeued
// ones come back, and nothing counts as out of order.
func TestNackEveryRequeues(t *testing.T) {
	for _, client := range []string{ClientAMQP091, ClientBuffered} {
		q := fmt.Sprintf("perftest-nack-%s-%d", client, time.Now().UnixNano())
		res, _, err := run(t, context.Background(), "--client", client, "-x", "2", "-y", "2", "-u", q,
			"-C", "3000", "-q", "50", "--nack-every", "3")
		if err != nil {
			t.Fatalf("%s: %v", client, err)
		}
		checkClean(t, res)
		if res.Sent != 6000 || !res.LossChecked || res.Requeued == 0 || res.Received != res.Sent+res.Requeued {
			t.Fatalf("%s: result: %+v", client, res)
		}
		// Every third delivery goes back: about half as many requeues as messages.
		if res.Requeued < res.Sent/3 {
			t.Errorf("%s: %d requeued of %d sent", client, res.Requeued, res.Sent)
		}
	}
}

// Fast buffered producers into a queue with a slow consumer: the broker
// throttles the publishers (flow control) and holds their unread publishes
// when the run stops. The run still ends cleanly and promptly: connections
// are closed all at once (the consumer's going lets the broker read the
// publishers again), not one close timeout after another.
func TestBufferedStopUnderFlowControl(t *testing.T) {
	q := fmt.Sprintf("perftest-flow-%d", time.Now().UnixNano())
	start := time.Now()
	res, _, err := run(t, context.Background(), "--client", "buffered", "-x", "4", "-y", "1", "-u", q,
		"-R", "200", "-q", "10", "-z", "2")
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 2*time.Second+stopGrace+closeTimeout+2*time.Second {
		t.Errorf("run took %v", took)
	}
	if res.Sent <= res.Received || res.Received == 0 || len(res.Errors) != 0 {
		t.Fatalf("result: %+v", res)
	}
}

// --producer-processes and --consumer-processes: the test binary re-executes
// itself (TestMain runs Main for a child); the parent merges the children's
// counts and latencies, and the run is as clean as in one process.
func TestProcesses(t *testing.T) {
	q := fmt.Sprintf("perftest-procs-%d", time.Now().UnixNano())
	var stdout, stderr syncBuffer
	code := Main(context.Background(), []string{"perftest", "-h", brokerURL(t), "--client", "buffered",
		"-x", "3", "-y", "2", "-u", q, "-c", "50", "-q", "100", "-r", "500", "-z", "2",
		"--producer-processes", "2", "--consumer-processes=2", "--json"}, &stdout, &stderr)
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	var res Result
	if err := json.Unmarshal([]byte(stdout.String()), &res); err != nil {
		t.Fatalf("%v: %s", err, stdout.String())
	}
	checkClean(t, &res)
	// 3 producers at 500 msg/s for 2 s, all confirmed; the consumers got
	// (almost) all of it, with latencies from both consumer processes.
	if res.Sent < 2000 || res.Sent > 3100 || res.Confirmed != res.Sent || res.Received < res.Sent*9/10 || res.LatencyUS.P50 <= 0 ||
		res.ConfirmLatencyUS == nil || res.ConfirmLatencyUS.P50 <= 0 || res.PerftestCPUS <= 0 {
		t.Fatalf("result: %+v", res)
	}
	if n := strings.Count(stderr.String(), "in process "); n != 4 {
		t.Errorf("%d child processes, want 4: %s", n, stderr.String())
	}
	assertQueueGone(t, q)
}
