package broker_test

import (
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/amqp-go/amqp-go/server/broker"
	"github.com/amqp-go/amqp-go/server/servertest"
	amqp "github.com/rabbitmq/amqp091-go"
)

// The global consumer timeout needs a RabbitMQ configured with a short
// consumer_timeout, not the shared oracle node:
//
//	CONF='consumer_timeout = 2000' ADVANCED='[{rabbit,[{channel_tick_interval,500}]}].' \
//	  scripts/rabbitmq-peer start 5691
//	BROKER_TEST_CONSUMER_TIMEOUT_URL=amqp://guest:guest@127.0.0.1:5691/ go test ./server/broker -run ConsumerTimeout
//
// RabbitMQ checks on its channel tick (60 s unless ADVANCED shortens it),
// so the close comes up to a tick after the timeout; the checks that
// nothing closes a channel wait three timeouts, which means something only
// with a tick shorter than that.
const (
	timeoutURLEnv = "BROKER_TEST_CONSUMER_TIMEOUT_URL"
	timeoutMsEnv  = "BROKER_TEST_CONSUMER_TIMEOUT_MS" // that node's consumer_timeout (default 2000)
)

// timeoutBroker returns a broker whose consumer timeout is short, and that
// timeout: the node of timeoutURLEnv, else (without BROKER_TEST_URL) an
// in-process one with 200 ms.
func timeoutBroker(t *testing.T) (string, time.Duration) {
	t.Helper()
	if u := os.Getenv(timeoutURLEnv); u != "" {
		ms := 2000
		if s := os.Getenv(timeoutMsEnv); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil {
				t.Fatalf("%s=%q: %v", timeoutMsEnv, s, err)
			}
			ms = n
		}
		return u, time.Duration(ms) * time.Millisecond
	}
	inProcessOnly(t, "the consumer timeout needs a RabbitMQ node with a short consumer_timeout: set "+timeoutURLEnv)
	_, u := servertest.StartServer(t, broker.Config{ConsumerTimeout: 200 * time.Millisecond})
	return u, 200 * time.Millisecond
}

// closeWait bounds how long a timed-out channel may take to close: RabbitMQ
// checks on its channel tick (up to 60 s).
func closeWait(timeout time.Duration) time.Duration {
	if os.Getenv(timeoutURLEnv) != "" {
		return timeout + 65*time.Second
	}
	return timeout + 5*time.Second
}

func timeoutText(channel int, timeout time.Duration) string {
	return fmt.Sprintf("PRECONDITION_FAILED - delivery acknowledgement on channel %d timed out. "+
		"Timeout value used: %d ms. This timeout value can be configured, see consumers doc guide to learn more",
		channel, timeout.Milliseconds())
}

// wantTimeoutClose waits for ch's close and checks RabbitMQ's 406.
func wantTimeoutClose(t *testing.T, closed <-chan *amqp.Error, channel int, timeout time.Duration) {
	t.Helper()
	select {
	case e := <-closed:
		if e == nil || e.Code != 406 || e.Reason != timeoutText(channel, timeout) {
			t.Fatalf("want close 406 %q, got %v", timeoutText(channel, timeout), e)
		}
	case <-time.After(closeWait(timeout)):
		t.Fatalf("channel not closed %v after its delivery", closeWait(timeout))
	}
}

// wantOpen checks that nothing closes ch for a while.
func wantOpen(t *testing.T, closed <-chan *amqp.Error, d time.Duration) {
	t.Helper()
	select {
	case e := <-closed:
		t.Fatalf("channel closed: %v", e)
	case <-time.After(d):
	}
}

// TestConsumerTimeout: a delivery left unacked past the consumer timeout
// closes its channel with RabbitMQ's 406, naming the channel and the
// timeout, and the message comes back redelivered to another consumer;
// the connection and its other channels stay.
func TestConsumerTimeout(t *testing.T) {
	u, timeout := timeoutBroker(t)
	conn := openConn(t, u)
	other := openChan(t, conn) // channel 1
	q := declareQueue(t, u, other, uname(t, "q")).Name
	publish(t, other, "", q, body("late"))

	ch := openChan(t, conn) // channel 2
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	ds, err := ch.Consume(q, "", false, false, false, false, nil)
	if err != nil {
		t.Fatalf("consume: %v", err)
	}
	if d := recv(t, ds); d.Redelivered {
		t.Fatal("first delivery flagged redelivered")
	}
	wantTimeoutClose(t, closed, 2, timeout)

	ds2, err := other.Consume(q, "", false, false, false, false, nil)
	if err != nil {
		t.Fatalf("consume on channel 1: %v", err)
	}
	d := recv(t, ds2)
	if string(d.Body) != "late" || !d.Redelivered {
		t.Fatalf("got %q redelivered=%v, want \"late\" redelivered", d.Body, d.Redelivered)
	}
	if err := d.Ack(false); err != nil {
		t.Fatalf("ack: %v", err)
	}
}

// TestConsumerTimeoutBasicGet: a basic.get delivery counts too.
func TestConsumerTimeoutBasicGet(t *testing.T) {
	u, timeout := timeoutBroker(t)
	conn := openConn(t, u)
	ch := openChan(t, conn)
	q := declareQueue(t, u, ch, uname(t, "q")).Name
	publish(t, ch, "", q, body("got"))
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	getBody(t, ch, q, false)
	wantTimeoutClose(t, closed, 1, timeout)
	d := getBody(t, openChan(t, conn), q, true)
	if !d.Redelivered {
		t.Fatal("requeued message not flagged redelivered")
	}
}

// TestConsumerTimeoutAckedInTime: deliveries acked within the timeout
// never close the channel, however long the consumer runs.
func TestConsumerTimeoutAckedInTime(t *testing.T) {
	u, timeout := timeoutBroker(t)
	conn := openConn(t, u)
	ch := openChan(t, conn)
	q := declareQueue(t, u, ch, uname(t, "q")).Name
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	ds, err := ch.Consume(q, "", false, false, false, false, nil)
	if err != nil {
		t.Fatalf("consume: %v", err)
	}
	pub := openChan(t, conn)
	end := time.Now().Add(3 * timeout)
	n := 0
	for time.Now().Before(end) {
		publish(t, pub, "", q, body(strconv.Itoa(n)))
		d := recv(t, ds)
		time.Sleep(timeout / 10) // hold each one a while, well within the timeout
		if err := d.Ack(false); err != nil {
			t.Fatalf("ack %d: %v", n, err)
		}
		n++
	}
	wantOpen(t, closed, timeout)
}

// TestConsumerTimeoutNoAck: a no-ack consumer has nothing to acknowledge
// and is never timed out.
func TestConsumerTimeoutNoAck(t *testing.T) {
	u, timeout := timeoutBroker(t)
	conn := openConn(t, u)
	ch := openChan(t, conn)
	q := declareQueue(t, u, ch, uname(t, "q")).Name
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	ds, err := ch.Consume(q, "", true, false, false, false, nil)
	if err != nil {
		t.Fatalf("consume: %v", err)
	}
	publish(t, ch, "", q, body("a"))
	recv(t, ds)
	wantOpen(t, closed, 3*timeout)
}

// TestConsumerTimeoutArguments: x-consumer-timeout of basic.consume wins
// over the queue's, and the queue's over the server's, both ways.
func TestConsumerTimeoutArguments(t *testing.T) {
	inProcessOnly(t, "RabbitMQ 3.10 has no x-consumer-timeout (3.12 has the queue's and the consumer's)")
	const short, long = 200 * time.Millisecond, 10 * time.Minute
	ms := func(d time.Duration) int64 { return d.Milliseconds() }
	cases := []struct {
		name        string
		global      time.Duration // broker.Config.ConsumerTimeout (0: 30 min)
		queue, cons amqp.Table
		want        time.Duration // 0: no timeout within a second
		viaBasicGet bool
	}{
		{name: "queue over global", global: 0, queue: amqp.Table{"x-consumer-timeout": ms(short)}, want: short},
		{name: "queue longer than global", global: short, queue: amqp.Table{"x-consumer-timeout": ms(long)}},
		{name: "consumer over queue", queue: amqp.Table{"x-consumer-timeout": ms(long)},
			cons: amqp.Table{"x-consumer-timeout": int32(300)}, want: 300 * time.Millisecond},
		{name: "consumer longer than queue", queue: amqp.Table{"x-consumer-timeout": ms(short)},
			cons: amqp.Table{"x-consumer-timeout": ms(long)}},
		{name: "consumer over global", global: short, cons: amqp.Table{"x-consumer-timeout": ms(long)}},
		{name: "consumer bad value ignored", queue: amqp.Table{"x-consumer-timeout": int16(250)},
			cons: amqp.Table{"x-consumer-timeout": "1"}, want: 250 * time.Millisecond},
		{name: "global off, queue on", global: -1, queue: amqp.Table{"x-consumer-timeout": ms(short)}, want: short},
		{name: "basic.get uses the queue's", global: long, queue: amqp.Table{"x-consumer-timeout": ms(short)},
			want: short, viaBasicGet: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, u := servertest.StartServer(t, broker.Config{ConsumerTimeout: tc.global})
			conn := openConn(t, u)
			ch := openChan(t, conn)
			q, err := ch.QueueDeclare(uname(t, "q"), false, false, false, false, tc.queue)
			if err != nil {
				t.Fatalf("declare: %v", err)
			}
			publish(t, ch, "", q.Name, body("m"))
			closed := ch.NotifyClose(make(chan *amqp.Error, 1))
			if tc.viaBasicGet {
				getBody(t, ch, q.Name, false)
			} else {
				ds, err := ch.Consume(q.Name, "", false, false, false, false, tc.cons)
				if err != nil {
					t.Fatalf("consume: %v", err)
				}
				recv(t, ds)
			}
			if tc.want == 0 {
				wantOpen(t, closed, time.Second)
				return
			}
			start := time.Now()
			wantTimeoutClose(t, closed, 1, tc.want)
			if took := time.Since(start); took > tc.want+time.Second {
				t.Fatalf("closed after %v, timeout %v", took, tc.want)
			}
		})
	}
}

// TestConsumerTimeoutQueueArgValidation: the queue's x-consumer-timeout is
// a non-negative integer (ms), with RabbitMQ's texts for other values.
func TestConsumerTimeoutQueueArgValidation(t *testing.T) {
	inProcessOnly(t, "RabbitMQ 3.10 has no x-consumer-timeout and takes any value")
	checkQueueArgs(t, "x-consumer-timeout", []argCase{
		{"zero", int32(0), ""},
		{"long", int64(3600000), ""},
		{"negative", int32(-1), "{value_negative,-1}"},
		{"string", "1000", `"expected integer, got longstr"`},
		{"double", 1000.0, `"expected integer, got double"`},
	})
}
