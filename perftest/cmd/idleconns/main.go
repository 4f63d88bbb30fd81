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
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
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
	flag.Parse()
	if *queue != "" {
		os.Exit(waitQueue(start, *uri, *queue, *want, *poll, *timeout))
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

type waitResult struct {
	Queue    string  `json:"queue"`
	Messages int     `json:"messages"`
	Reached  bool    `json:"reached"`
	Seconds  float64 `json:"seconds"`
	Error    string  `json:"error,omitempty"`
}

func waitQueue(start time.Time, uri, queue string, want int, poll, timeout time.Duration) int {
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
		if q.Messages >= want {
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
