package broker_test

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/amqp-go/amqp-go/server/broker"
	"github.com/amqp-go/amqp-go/server/servertest"
	wire "github.com/amqp-go/amqp-go/shared/amqp"
)

// startDurableURL runs an in-process server with a data directory (the
// segment log and Badger) and returns its URL.
func startDurableURL(t *testing.T) string {
	t.Helper()
	s, err := broker.Open(broker.Config{Address: "127.0.0.1:0", DataDir: t.TempDir(), OpenDefinitions: servertest.OpenDefinitions,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve() }()
	t.Cleanup(func() {
		_ = s.Close()
		<-served
	})
	return "amqp://guest:guest@" + s.Addr().String() + "/"
}

// confirmTally records the publisher confirms seen on one channel.
type confirmTally struct {
	t      *testing.T
	acked  []bool // by seq, from 1
	nacked int
}

func newConfirmTally(t *testing.T, n int) *confirmTally {
	return &confirmTally{t: t, acked: make([]bool, n+1)}
}

func (c *confirmTally) add(tag uint64, multiple bool) {
	if tag == 0 || tag >= uint64(len(c.acked)) {
		c.t.Fatalf("confirm for tag %d, published %d", tag, len(c.acked)-1)
	}
	from := tag
	if multiple {
		from = 1
	}
	for i := from; i <= tag; i++ {
		c.acked[i] = true
	}
}

func (c *confirmTally) missing() int {
	n := 0
	for _, ok := range c.acked[1:] {
		if !ok {
			n++
		}
	}
	return n
}

// publishBurst writes n publishes on channel ch in one write, followed by
// tail (nil for none).
func publishBurst(r *rawConn, ch uint16, n int, exchange, key string, persistent bool, tail []byte) {
	props := &wire.Properties{}
	if persistent {
		props = &wire.Properties{Flags: wire.FlagDeliveryMode, DeliveryMode: 2}
	}
	body := []byte("confirm me")
	var b []byte
	for range n {
		b = wire.AppendMethodFrame(b, ch, &wire.BasicPublish{Exchange: exchange, RoutingKey: key})
		b = wire.AppendHeaderFrameProps(b, ch, uint64(len(body)), props)
		b = wire.AppendBodyFrames(b, ch, body, 4096)
	}
	r.write(append(b, tail...))
}

// readUntil reads frames, counting confirms on ch, until stop reports true
// for a method on ch; it fails on anything unexpected.
func (r *rawConn) readUntil(ch uint16, tally *confirmTally, stop func(wire.Method) bool) {
	r.t.Helper()
	for {
		fch, m := r.readMethod()
		if fch != ch {
			r.t.Fatalf("%s on channel %d", m.MethodName(), fch)
		}
		switch m := m.(type) {
		case *wire.BasicAck:
			tally.add(m.DeliveryTag, m.Multiple)
			continue
		case *wire.BasicNack:
			tally.add(m.DeliveryTag, m.Multiple)
			tally.nacked++
			continue
		}
		if stop(m) {
			return
		}
		r.t.Fatalf("unexpected %s %+v", m.MethodName(), m)
	}
}

// expectSilence fails if any frame but a heartbeat arrives within d.
func (r *rawConn) expectSilence(d time.Duration, after string) {
	r.t.Helper()
	deadline := time.Now().Add(d)
	for {
		f, err := r.readFrame(time.Until(deadline))
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return
		}
		if err != nil {
			r.t.Fatalf("read after %s: %v", after, err)
		}
		if f.Type == wire.FrameHeartbeat {
			continue
		}
		desc := fmt.Sprintf("frame type %d", f.Type)
		if f.Type == wire.FrameMethod {
			if m, err := wire.DecodeMethod(f.Payload); err == nil {
				desc = m.MethodName()
			}
		}
		r.t.Fatalf("%s on channel %d after %s", desc, f.Channel, after)
	}
}

func isCloseOk(m wire.Method) bool { _, ok := m.(*wire.ChannelCloseOk); return ok }

// confirmThenClose publishes n messages on a confirm channel and closes it
// in the same write; every confirm must come before channel.close-ok and
// nothing of the channel after it, also once the channel id is reused.
func confirmThenClose(t *testing.T, u, exchange, key string, persistent bool) {
	const n = 1000
	r, _ := rawHandshake(t, u, rawOpts{})
	r.openChannel(1)
	r.send(1, &wire.ConfirmSelect{})
	if _, m := r.readMethod(); m.MethodName() != "confirm.select-ok" {
		t.Fatalf("want confirm.select-ok, got %s", m.MethodName())
	}
	publishBurst(r, 1, n, exchange, key, persistent,
		wire.AppendMethodFrame(nil, 1, &wire.ChannelClose{ReplyCode: 200, ReplyText: "bye"}))
	tally := newConfirmTally(t, n)
	r.readUntil(1, tally, isCloseOk)
	if miss := tally.missing(); miss > 0 {
		t.Fatalf("%d of %d publishes unconfirmed at channel.close-ok", miss, n)
	}
	if tally.nacked > 0 {
		t.Fatalf("%d nacks", tally.nacked)
	}
	r.expectSilence(300*time.Millisecond, "channel.close-ok")
	// The same id again: its first frames are the new channel's.
	r.openChannel(1)
	r.send(1, &wire.ConfirmSelect{})
	if ch, m := r.readMethod(); ch != 1 || m.MethodName() != "confirm.select-ok" {
		t.Fatalf("reopened channel: want confirm.select-ok, got %s on %d", m.MethodName(), ch)
	}
	r.expectSilence(100*time.Millisecond, "confirm.select-ok")
}

// TestConfirmsBeforeChannelCloseOk: unroutable publishes are confirmed at
// once; the confirms must still precede the close-ok (amqplib treats a
// frame after close-ok as a connection error).
func TestConfirmsBeforeChannelCloseOk(t *testing.T) {
	confirmThenClose(t, brokerURL(t), "amq.direct", uname(t, "nowhere"), false)
}

// TestConfirmsBeforeChannelCloseOkDurable: persistent publishes to a
// durable queue are confirmed after their fsync; close-ok waits for them.
func TestConfirmsBeforeChannelCloseOkDurable(t *testing.T) {
	inProcessOnly(t, "RabbitMQ drops confirms still waiting for its disk at close-ok; we send them first")
	u := startDurableURL(t)
	q := uname(t, "durable")
	conn := openConn(t, u)
	ch := openChan(t, conn)
	if _, err := ch.QueueDeclare(q, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	confirmThenClose(t, u, "", q, true)
	if n, _ := queueCounts(t, conn, q); n != 1000 {
		t.Fatalf("queue holds %d messages, want 1000", n)
	}
}

// TestNothingAfterServerChannelClose: after the server's channel.close for
// an exception, nothing of the channel goes out but the close-ok answering
// a crossing close, and nothing at all after the client's close-ok.
func TestNothingAfterServerChannelClose(t *testing.T) {
	const n = 1000
	r, _ := rawHandshake(t, brokerURL(t), rawOpts{})
	r.openChannel(1)
	r.send(1, &wire.ConfirmSelect{})
	if _, m := r.readMethod(); m.MethodName() != "confirm.select-ok" {
		t.Fatalf("want confirm.select-ok, got %s", m.MethodName())
	}
	publishBurst(r, 1, n, "amq.direct", uname(t, "nowhere"), false,
		wire.AppendMethodFrame(nil, 1, &wire.BasicAck{DeliveryTag: 1 << 40}))
	tally := newConfirmTally(t, n)
	var closed *wire.ChannelClose
	r.readUntil(1, tally, func(m wire.Method) bool {
		closed, _ = m.(*wire.ChannelClose)
		return closed != nil
	})
	if closed.ReplyCode != 406 || closed.ReplyText != "PRECONDITION_FAILED - unknown delivery tag 1099511627776" {
		t.Fatalf("channel.close %d %q", closed.ReplyCode, closed.ReplyText)
	}
	r.expectSilence(300*time.Millisecond, "channel.close")
	r.send(1, &wire.ChannelCloseOk{})
	r.expectSilence(100*time.Millisecond, "channel.close-ok")
	r.openChannel(1)
	r.expectSilence(100*time.Millisecond, "channel.open-ok")
}

// TestTxCommitOkBeforeChannelCloseOk: a commit of persistent messages to a
// durable queue answers after the fsync; a channel.close right behind it
// gets its close-ok after the commit-ok, and nothing follows.
func TestTxCommitOkBeforeChannelCloseOk(t *testing.T) {
	inProcessOnly(t, "needs an in-process server with a data directory")
	u := startDurableURL(t)
	q := uname(t, "durable")
	conn := openConn(t, u)
	if _, err := openChan(t, conn).QueueDeclare(q, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	r, _ := rawHandshake(t, u, rawOpts{})
	r.openChannel(1)
	r.send(1, &wire.TxSelect{})
	if _, m := r.readMethod(); m.MethodName() != "tx.select-ok" {
		t.Fatalf("want tx.select-ok, got %s", m.MethodName())
	}
	tail := wire.AppendMethodFrame(nil, 1, &wire.TxCommit{})
	tail = wire.AppendMethodFrame(tail, 1, &wire.ChannelClose{ReplyCode: 200, ReplyText: "bye"})
	publishBurst(r, 1, 100, "", q, true, tail)
	for _, want := range []string{"tx.commit-ok", "channel.close-ok"} {
		if ch, m := r.readMethod(); ch != 1 || m.MethodName() != want {
			t.Fatalf("want %s, got %s on %d", want, m.MethodName(), ch)
		}
	}
	r.expectSilence(200*time.Millisecond, "channel.close-ok")
	if n, _ := queueCounts(t, conn, q); n != 100 {
		t.Fatalf("queue holds %d messages, want 100", n)
	}
}
