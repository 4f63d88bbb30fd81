package broker_test

import (
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/amqp-go/amqp-go/server/servertest"
	wire "github.com/amqp-go/amqp-go/shared/amqp"
	amqp "github.com/rabbitmq/amqp091-go"
)

// These helpers let every test run against our in-process broker or, with
// BROKER_TEST_URL set, against a real RabbitMQ used as the oracle.

// brokerURL returns BROKER_TEST_URL if set, else a fresh in-process broker.
func brokerURL(t *testing.T) string {
	t.Helper()
	if u := os.Getenv("BROKER_TEST_URL"); u != "" {
		return u
	}
	return servertest.Start(t)
}

// inProcessOnly skips tests that need the in-process server.
func inProcessOnly(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("BROKER_TEST_URL") != "" {
		t.Skip("in-process only: " + why)
	}
}

// runID keeps names unique across runs against a shared RabbitMQ, where
// non-exclusive queues outlive the test.
var runID = func() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}()

// uname returns a name unique to this test, run and suffix.
func uname(t *testing.T, suffix string) string {
	return strings.ReplaceAll(t.Name(), "/", ".") + "-" + suffix + "-" + runID
}

// openConn dials url and closes the connection at the end of the test.
func openConn(t *testing.T, url string) *amqp.Connection {
	t.Helper()
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// openChan opens a channel on conn.
func openChan(t *testing.T, conn *amqp.Connection) *amqp.Channel {
	t.Helper()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("channel: %v", err)
	}
	return ch
}

// cleanupQueues deletes queues at the end of the test (for shared brokers).
func cleanupQueues(t *testing.T, url string, names ...string) {
	t.Cleanup(func() {
		conn, err := amqp.Dial(url)
		if err != nil {
			return
		}
		defer conn.Close()
		for _, n := range names {
			if ch, err := conn.Channel(); err == nil {
				_, _ = ch.QueueDelete(n, false, false, false)
				ch.Close()
			}
		}
	})
}

// cleanupExchanges deletes exchanges at the end of the test.
func cleanupExchanges(t *testing.T, url string, names ...string) {
	t.Cleanup(func() {
		conn, err := amqp.Dial(url)
		if err != nil {
			return
		}
		defer conn.Close()
		for _, n := range names {
			if ch, err := conn.Channel(); err == nil {
				_ = ch.ExchangeDelete(n, false, false)
				ch.Close()
			}
		}
	})
}

// declareQueue declares a plain, non-durable queue that is deleted at the
// end of the test.
func declareQueue(t *testing.T, url string, ch *amqp.Channel, name string) amqp.Queue {
	t.Helper()
	q, err := ch.QueueDeclare(name, false, false, false, false, nil)
	if err != nil {
		t.Fatalf("queue.declare %s: %v", name, err)
	}
	cleanupQueues(t, url, q.Name)
	return q
}

// tempQueue declares a server-named exclusive queue (not auto-delete: it
// goes with its connection).
func tempQueue(t *testing.T, ch *amqp.Channel) string {
	t.Helper()
	q, err := ch.QueueDeclare("", false, false, true, false, nil)
	if err != nil {
		t.Fatalf("queue.declare: %v", err)
	}
	return q.Name
}

// publish publishes body or fails.
func publish(t *testing.T, ch *amqp.Channel, exchange, key string, p amqp.Publishing) {
	t.Helper()
	if err := ch.Publish(exchange, key, false, false, p); err != nil {
		t.Fatalf("publish: %v", err)
	}
}

func body(s string) amqp.Publishing { return amqp.Publishing{Body: []byte(s)} }

// wantErr checks an exception's code and exact reply text.
func wantErr(t *testing.T, err error, code int, text string) {
	t.Helper()
	if err == nil {
		t.Fatalf("want %d %q, got no error", code, text)
	}
	e := amqpErr(t, err)
	if e.Code != code || e.Reason != text {
		t.Fatalf("want %d %q, got %d %q", code, text, e.Code, e.Reason)
	}
}

// waitClose waits for a close notification on c (from NotifyClose).
func waitClose(t *testing.T, c <-chan *amqp.Error) *amqp.Error {
	t.Helper()
	select {
	case e, ok := <-c:
		if !ok || e == nil {
			t.Fatal("closed without an error")
		}
		return e
	case <-time.After(5 * time.Second):
		t.Fatal("timed out waiting for close")
	}
	return nil
}

// wantClose waits for a close and checks code and text.
func wantClose(t *testing.T, c <-chan *amqp.Error, code int, text string) {
	t.Helper()
	e := waitClose(t, c)
	if e.Code != code || e.Reason != text {
		t.Fatalf("want close %d %q, got %d %q", code, text, e.Code, e.Reason)
	}
}

// queueCounts returns a queue's ready messages and consumers via a passive
// declare on a fresh channel.
func queueCounts(t *testing.T, conn *amqp.Connection, name string) (int, int) {
	t.Helper()
	ch := openChan(t, conn)
	defer ch.Close()
	q, err := ch.QueueDeclarePassive(name, false, false, false, false, nil)
	if err != nil {
		t.Fatalf("passive declare %s: %v", name, err)
	}
	return q.Messages, q.Consumers
}

// waitCount polls until the queue holds want ready messages, for 5 s.
func waitCount(t *testing.T, conn *amqp.Connection, name string, want int) {
	t.Helper()
	waitReady(t, conn, name, want, 5*time.Second)
}

// waitReady polls until the queue holds want ready messages, for within.
func waitReady(t *testing.T, conn *amqp.Connection, name string, want int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		n, _ := queueCounts(t, conn, name)
		if n == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue %s: %d messages, want %d", name, n, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// getBody fetches one message with basic.get or fails.
func getBody(t *testing.T, ch *amqp.Channel, q string, autoAck bool) amqp.Delivery {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		d, ok, err := ch.Get(q, autoAck)
		if err != nil {
			t.Fatalf("get: %v", err)
		}
		if ok {
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("get %s: queue stayed empty", q)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// ---- raw frame client ----

// rawConn is servertest's RawConn under the names these tests use, for
// what amqp091-go cannot express.
type rawConn struct {
	*servertest.RawConn
	t  *testing.T
	nc net.Conn
	fr *wire.FrameReader
}

func wrapRaw(t *testing.T, rc *servertest.RawConn) *rawConn {
	return &rawConn{RawConn: rc, t: t, nc: rc.NC, fr: rc.FR}
}

// rawDial opens a TCP connection to url's host without any handshake.
func rawDial(t *testing.T, rawurl string) *rawConn {
	t.Helper()
	return wrapRaw(t, servertest.RawDial(t, rawurl, servertest.RawOptions{}))
}

type rawOpts struct {
	heartbeat    uint16
	vhost        string // "" means the URL's vhost
	password     string // "" means the URL's password
	capabilities wire.Table
	noOpen       bool // stop after tune-ok
}

// rawHandshake dials and opens a connection; it returns connection.start.
func rawHandshake(t *testing.T, rawurl string, o rawOpts) (*rawConn, *wire.ConnectionStart) {
	t.Helper()
	rc, start := servertest.RawHandshake(t, rawurl, servertest.RawOptions{Heartbeat: o.heartbeat, VHost: o.vhost,
		Password: o.password, Capabilities: o.capabilities, NoOpen: o.noOpen})
	return wrapRaw(t, rc), start
}

func (r *rawConn) write(b []byte) { r.t.Helper(); r.Write(b) }

func (r *rawConn) send(ch uint16, m wire.Method) { r.t.Helper(); r.Send(ch, m) }

// publish sends basic.publish with content in one write.
func (r *rawConn) publish(ch uint16, m *wire.BasicPublish, body []byte) {
	r.t.Helper()
	r.Publish(ch, m, body)
}

// readFrame reads one frame (payload copied) with a timeout.
func (r *rawConn) readFrame(timeout time.Duration) (wire.Frame, error) { return r.ReadFrame(timeout) }

// readMethod reads the next method frame, skipping heartbeats.
func (r *rawConn) readMethod() (uint16, wire.Method) { r.t.Helper(); return r.ReadMethod() }

// expectConnClose reads until connection.close, checks it, answers close-ok
// and waits for the socket to close.
func (r *rawConn) expectConnClose(code uint16, text string) {
	r.t.Helper()
	for {
		ch, m := r.readMethod()
		cl, ok := m.(*wire.ConnectionClose)
		if !ok {
			continue
		}
		if ch != 0 {
			r.t.Fatalf("connection.close on channel %d", ch)
		}
		r.t.Logf("connection.close %d %q", cl.ReplyCode, cl.ReplyText)
		if cl.ReplyCode != code || (text != "" && cl.ReplyText != text) {
			r.t.Fatalf("want connection.close %d %q, got %d %q", code, text, cl.ReplyCode, cl.ReplyText)
		}
		r.send(0, &wire.ConnectionCloseOk{})
		r.expectEOF(5 * time.Second)
		return
	}
}

// expectEOF waits for the server to close the socket, ignoring frames.
func (r *rawConn) expectEOF(within time.Duration) { r.t.Helper(); r.ExpectEOF(within) }

// openChannel opens channel id on a raw connection.
func (r *rawConn) openChannel(id uint16) { r.t.Helper(); r.OpenChannel(id) }

// expectNoDelivery asserts that nothing arrives on ds within a short window.
func expectNoDelivery(t *testing.T, ds <-chan amqp.Delivery, within time.Duration) {
	t.Helper()
	select {
	case d := <-ds:
		t.Fatalf("unexpected delivery %q", d.Body)
	case <-time.After(within):
	}
}

// replyText is text as sent in a reply: RabbitMQ cuts texts over 255 bytes
// to 252 and appends "...".
func replyText(text string) string {
	if len(text) > 255 {
		return text[:252] + "..."
	}
	return text
}
