// Command idleconns is a helper for scripts/bench.
//
// Default mode (benchmark B7): open -n real amqp091-go connections, each
// with one channel, print "ready N" on stdout, and hold them idle until
// stdin reaches EOF or SIGINT/SIGTERM arrives, then close them.
//
//	idleconns -uri amqp://guest:guest@127.0.0.1:5672/ -n 5000
//
// Queue-wait mode (benchmark B8): passive-declare -queue every -poll until it
// reports at least -want messages (or -timeout passes) and print one JSON
// object: {"queue":..., "messages":..., "reached":bool, "seconds":...}, where
// seconds count from the start of this program (the caller starts it right
// after starting the broker). Connection failures are retried, because the
// broker may still be starting.
//
//	idleconns -uri ... -queue backlog -want 1000000 -timeout 600s
//
// With -at-most N instead of -want, it waits until the queue holds at most N
// messages (B16: a queue emptied by TTL; B17: a backlog drained).
//
//	idleconns -uri ... -queue ttl -at-most 0 -timeout 600s
//
// Churn mode (benchmark B14): open -churn connections at -rate per second,
// each one publishing one message to -queue (declared at start with
// x-max-length 1000, deleted at the end) and closing; print one JSON object:
// {"opened", "failed", "seconds", "conn_per_s", "start_unix", "mark_unix",
// "end_unix", "first_error"}, where mark_unix is when -mark connections had
// been opened and closed (for RSS drift after the first ones).
//
//	idleconns -uri ... -churn 20000 -rate 200 -mark 10000 -queue churn
//
// Delete mode (the cluster scenarios, whose quorum queues cannot be
// auto-delete): delete every queue named in the comma-separated -queue (one
// that does not exist is fine) and exit; non-zero if a deletion failed.
//
//	idleconns -uri ... -delete -queue c2-1,c2-2
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

func main() {
	start := time.Now()
	uri := flag.String("uri", "amqp://guest:guest@127.0.0.1:5672/", "AMQP URI")
	n := flag.Int("n", 5000, "connections to open (idle mode)")
	par := flag.Int("parallel", 32, "connections opened concurrently")
	heartbeat := flag.Duration("heartbeat", 60*time.Second, "heartbeat interval to negotiate (0: server's)")
	queue := flag.String("queue", "", "queue-wait mode: queue to passive-declare")
	want := flag.Int("want", 0, "queue-wait mode: message count to wait for")
	poll := flag.Duration("poll", 50*time.Millisecond, "queue-wait mode: poll interval")
	timeout := flag.Duration("timeout", 600*time.Second, "queue-wait mode: give up after this long")
	atMost := flag.Int("at-most", -1, "queue-wait mode: wait until the queue holds at most this many messages (instead of -want)")
	churn := flag.Int("churn", 0, "churn mode: connections to open, publish one message on and close")
	rate := flag.Float64("rate", 200, "churn mode: connections per second")
	mark := flag.Int("mark", 10000, "churn mode: report when this many connections are done")
	del := flag.Bool("delete", false, "delete mode: delete the queues named in -queue (comma-separated) and exit")
	declare := flag.Bool("declare", false, "declare mode: declare the queues named in -queue (comma-separated) durable, on the -uri node, and exit")
	flag.Parse()
	if *declare {
		os.Exit(eachQueue(*uri, "declare", strings.Split(*queue, ","), func(ch *amqp.Channel, q string) error {
			_, err := ch.QueueDeclare(q, true, false, false, false, nil)
			return err
		}))
	}
	if *del {
		os.Exit(eachQueue(*uri, "delete", strings.Split(*queue, ","), func(ch *amqp.Channel, q string) error {
			_, err := ch.QueueDelete(q, false, false, false)
			return err
		}))
	}
	if *churn > 0 {
		os.Exit(churnConns(*uri, *queue, *churn, *rate, *mark, *par))
	}
	if *queue != "" {
		reached := func(n int) bool { return n >= *want }
		if *atMost >= 0 {
			reached = func(n int) bool { return n <= *atMost }
		}
		os.Exit(waitQueue(start, *uri, *queue, reached, *poll, *timeout))
	}
	os.Exit(idle(*uri, *n, *par, *heartbeat))
}

func idle(uri string, n, par int, heartbeat time.Duration) int {
	conns := make([]*amqp.Connection, n)
	var next atomic.Int64
	var failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	cfg := amqp.Config{Heartbeat: heartbeat, Locale: "en_US"}
	for w := 0; w < par; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				c, err := amqp.DialConfig(uri, cfg)
				if err == nil {
					if _, err = c.Channel(); err != nil {
						c.Close()
					}
				}
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	if f := failed.Load(); f > 0 {
		fmt.Fprintf(os.Stderr, "idleconns: %d of %d connections failed, first: %v\n", f, n, firstErr.Load())
		closeAll(conns)
		return 1
	}
	fmt.Printf("ready %d\n", n)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	eof := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, bufio.NewReader(os.Stdin)); close(eof) }()
	select {
	case <-sig:
	case <-eof:
	}
	closeAll(conns)
	return 0
}

func closeAll(conns []*amqp.Connection) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for _, c := range conns {
		if c == nil {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() { defer wg.Done(); c.Close(); <-sem }()
	}
	wg.Wait()
}

// eachQueue does what (declare, delete) to each of queues on one channel
// (a new one after a failure), reporting failures on stderr. A missing
// queue's delete is fine: RabbitMQ and ours answer delete-ok for it.
func eachQueue(uri, what string, queues []string, do func(ch *amqp.Channel, q string) error) int {
	conn, err := amqp.Dial(uri)
	if err != nil {
		fmt.Fprintf(os.Stderr, "idleconns: %s: %v\n", what, err)
		return 1
	}
	defer conn.Close()
	status := 0
	var ch *amqp.Channel
	for _, q := range queues {
		if q == "" {
			continue
		}
		if ch == nil || ch.IsClosed() {
			if ch, err = conn.Channel(); err != nil {
				fmt.Fprintf(os.Stderr, "idleconns: %s: %v\n", what, err)
				return 1
			}
		}
		if err := do(ch, q); err != nil {
			fmt.Fprintf(os.Stderr, "idleconns: %s %s: %v\n", what, q, err)
			status = 1
		}
	}
	return status
}

type waitResult struct {
	Queue    string  `json:"queue"`
	Messages int     `json:"messages"`
	Reached  bool    `json:"reached"`
	Seconds  float64 `json:"seconds"`
	Error    string  `json:"error,omitempty"`
}

func waitQueue(start time.Time, uri, queue string, reached func(int) bool, poll, timeout time.Duration) int {
	res := waitResult{Queue: queue}
	deadline := start.Add(timeout)
	var conn *amqp.Connection
	var ch *amqp.Channel
	for time.Now().Before(deadline) {
		if conn == nil || conn.IsClosed() {
			var err error
			conn, err = amqp.Dial(uri)
			if err != nil {
				res.Error = err.Error()
				time.Sleep(poll)
				continue
			}
			ch = nil
		}
		if ch == nil || ch.IsClosed() {
			var err error
			if ch, err = conn.Channel(); err != nil {
				res.Error = err.Error()
				conn.Close()
				conn = nil
				time.Sleep(poll)
				continue
			}
		}
		q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
		if err != nil {
			// 404 while the queue is not recovered yet closes the channel.
			res.Error = err.Error()
			ch = nil
			time.Sleep(poll)
			continue
		}
		res.Error = ""
		res.Messages = q.Messages
		if reached(q.Messages) {
			res.Reached = true
			break
		}
		time.Sleep(poll)
	}
	res.Seconds = time.Since(start).Seconds()
	if conn != nil {
		conn.Close()
	}
	_ = json.NewEncoder(os.Stdout).Encode(res)
	if !res.Reached {
		return 1
	}
	return 0
}

type churnResult struct {
	Opened     int64   `json:"opened"`
	Failed     int64   `json:"failed"`
	Seconds    float64 `json:"seconds"`
	ConnPerS   float64 `json:"conn_per_s"`
	StartUnix  float64 `json:"start_unix"`
	MarkUnix   float64 `json:"mark_unix,omitempty"`
	EndUnix    float64 `json:"end_unix"`
	FirstError string  `json:"first_error,omitempty"`
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// churnConns opens n connections at rate per second (at most par at a
// time), each publishing one message to queue and closing.
func churnConns(uri, queue string, n int, rate float64, mark, par int) int {
	if queue == "" {
		queue = "churn"
	}
	setup, err := amqp.Dial(uri)
	if err != nil {
		fmt.Fprintln(os.Stderr, "idleconns:", err)
		return 1
	}
	defer setup.Close()
	sch, err := setup.Channel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "idleconns:", err)
		return 1
	}
	if _, err := sch.QueueDeclare(queue, false, false, false, false, amqp.Table{"x-max-length": int32(1000)}); err != nil {
		fmt.Fprintln(os.Stderr, "idleconns:", err)
		return 1
	}
	var res churnResult
	var done, failed atomic.Int64
	var firstErr atomic.Value
	var markAt atomic.Int64
	one := func() {
		c, err := amqp.Dial(uri)
		if err == nil {
			var ch *amqp.Channel
			if ch, err = c.Channel(); err == nil {
				err = ch.Publish("", queue, false, false, amqp.Publishing{Body: []byte("churn")})
			}
			if cerr := c.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			failed.Add(1)
			firstErr.CompareAndSwap(nil, err.Error())
		}
		if done.Add(1) == int64(mark) {
			markAt.Store(time.Now().UnixNano())
		}
	}
	start := time.Now()
	sem := make(chan struct{}, par)
	var wg sync.WaitGroup
	interval := time.Duration(float64(time.Second) / rate)
	for i := 0; i < n; i++ {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d) // pacing: the i-th connection opens at start + i/rate
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() { defer wg.Done(); one(); <-sem }()
	}
	wg.Wait()
	end := time.Now()
	_, _ = sch.QueueDelete(queue, false, false, false)
	res.Failed = failed.Load()
	res.Opened = int64(n) - res.Failed
	res.Seconds = end.Sub(start).Seconds()
	res.ConnPerS = float64(res.Opened) / res.Seconds
	res.StartUnix, res.EndUnix = unixSeconds(start), unixSeconds(end)
	if m := markAt.Load(); m != 0 {
		res.MarkUnix = float64(m) / 1e9
	}
	if e, ok := firstErr.Load().(string); ok {
		res.FirstError = e
	}
	_ = json.NewEncoder(os.Stdout).Encode(res)
	if res.Failed > 0 {
		return 1
	}
	return 0
}
