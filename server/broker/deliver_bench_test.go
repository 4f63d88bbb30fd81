package broker_test

import (
	"fmt"
	"net"
	"net/url"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/amqp-go/amqp-go/server/broker"
	"github.com/amqp-go/amqp-go/server/servertest"
	wire "github.com/amqp-go/amqp-go/shared/amqp"
)

// BenchmarkPublishDeliver measures a message's trip through an in-process
// broker (memory store): basic.publish on one connection, routed by the
// default exchange to a queue, delivered by basic.deliver to a consumer on
// another connection. Both clients speak raw frames through the shared
// codec with pre-encoded publishes and without decoding deliveries, so
// allocs/op are (almost all) the broker's. The publisher keeps at most
// window messages in flight, so the queue stays short.
//
//	go test -run '^$' -bench PublishDeliver -benchmem ./server/broker
func BenchmarkPublishDeliver(b *testing.B) {
	for _, c := range []struct {
		name              string
		noAck, persistent bool
		ackEach           bool
	}{{"noack", true, false, false}, {"ack-every-50", false, false, false}, {"ack-each", false, false, true},
		{"persistent-ack-every-50", false, true, false}} {
		b.Run(c.name+"/1000B", func(b *testing.B) { benchPublishDeliver(b, 1000, c.noAck, c.persistent, c.ackEach) })
	}
	// Large bodies (issue 12): transient and persistent, acked in
	// batches, at the default frame_max (131072), so a 1 MB body is 9
	// body frames each way.
	for _, c := range []struct {
		name       string
		persistent bool
	}{{"ack-every-50", false}, {"persistent-ack-every-50", true}} {
		for _, size := range []int{64 << 10, 1 << 20} {
			b.Run(fmt.Sprintf("%s/%dKB", c.name, size>>10), func(b *testing.B) { benchPublishDeliver(b, size, false, c.persistent, false) })
		}
	}
}

// benchPublishDeliver: persistent publishes go to a durable queue on the
// file store (segment log without fsync, so the figure is the broker's
// work, not the disk's).
func benchPublishDeliver(b *testing.B, size int, noAck, persistent, ackEach bool) {
	const ackEvery = 50
	// At most 2,000 messages or 16 MB in flight, written 50 messages or
	// 4 MB at a time.
	window := int64(min(2000, max(4, (16<<20)/size)))
	batch := min(50, max(1, (4<<20)/size))
	cfg := broker.Config{}
	props := &wire.Properties{}
	if persistent {
		cfg.DataDir, cfg.NoSync = b.TempDir(), true
		props = &wire.Properties{Flags: wire.FlagDeliveryMode, DeliveryMode: 2}
	}
	_, u := servertest.StartServer(b, cfg)
	pub := benchDial(b, u)
	cons := benchDial(b, u)
	pub.call(b, &wire.QueueDeclare{Queue: "bench", Durable: persistent})
	if !noAck {
		cons.call(b, &wire.BasicQos{PrefetchCount: 500})
	}
	cons.call(b, &wire.BasicConsume{Queue: "bench", ConsumerTag: "c", NoAck: noAck})

	var enc []byte
	body := make([]byte, size)
	for range batch {
		enc = wire.AppendMethodFrame(enc, 1, &wire.BasicPublish{RoutingKey: "bench"})
		enc = wire.AppendHeaderFrameProps(enc, 1, uint64(size), props)
		enc = wire.AppendBodyFrames(enc, 1, body, 131072)
	}

	var delivered atomic.Int64
	total := int64(b.N)
	done := make(chan error, 1)
	b.ReportAllocs()
	b.SetBytes(int64(size))
	b.ResetTimer()
	var ru0 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	cpu0 := time.Duration(ru0.Utime.Nano() + ru0.Stime.Nano())
	go func() {
		var ack []byte
		var n, tag int64
		for n < total {
			f, err := cons.fr.ReadFrame()
			if err != nil {
				done <- err
				return
			}
			// basic.deliver is class 60, method 60; count those only.
			if f.Type != wire.FrameMethod || len(f.Payload) < 4 || f.Payload[1] != 60 || f.Payload[3] != 60 {
				continue
			}
			n++
			tag++
			if ackEach {
				// One basic.ack per delivery, as perftest sends them,
				// written ackEvery at a time.
				ack = wire.AppendMethodFrame(ack, 1, &wire.BasicAck{DeliveryTag: uint64(tag)})
				if tag%ackEvery == 0 || n == total {
					if _, err := cons.nc.Write(ack); err != nil {
						done <- err
						return
					}
					ack = ack[:0]
				}
			} else if !noAck && (tag%ackEvery == 0 || n == total) {
				ack = wire.AppendMethodFrame(ack[:0], 1, &wire.BasicAck{DeliveryTag: uint64(tag), Multiple: true})
				if _, err := cons.nc.Write(ack); err != nil {
					done <- err
					return
				}
			}
			delivered.Store(n)
		}
		done <- nil
	}()
	var sent int64
	for sent < total {
		for sent-delivered.Load() > window {
			time.Sleep(20 * time.Microsecond)
		}
		k := min(int64(batch), total-sent)
		per := len(enc) / batch
		if _, err := pub.nc.Write(enc[:int(k)*per]); err != nil {
			b.Fatal(err)
		}
		sent += k
	}
	select {
	case err := <-done:
		if err != nil {
			b.Fatal(err)
		}
	case <-time.After(60 * time.Second):
		b.Fatalf("delivered %d of %d", delivered.Load(), total)
	}
	b.StopTimer()
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	b.ReportMetric(float64(cpu-cpu0)/float64(b.N), "cpu-ns/op")
}

// benchConn is a raw-frame client for benchmarks: one connection with
// channel 1 open.
type benchConn struct {
	nc net.Conn
	fr *wire.FrameReader
}

func benchDial(b *testing.B, rawurl string) *benchConn {
	b.Helper()
	u, err := url.Parse(rawurl)
	if err != nil {
		b.Fatal(err)
	}
	nc, err := net.Dial("tcp", u.Host)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { nc.Close() })
	c := &benchConn{nc: nc, fr: wire.NewFrameReader(nc, 256<<10)}
	c.write(b, wire.ProtocolHeader)
	if _, ok := c.method(b).(*wire.ConnectionStart); !ok {
		b.Fatal("want connection.start")
	}
	pass, _ := u.User.Password()
	c.send(b, 0, &wire.ConnectionStartOk{ClientProperties: wire.Table{"product": "bench"}, Mechanism: "PLAIN",
		Response: "\x00" + u.User.Username() + "\x00" + pass, Locale: "en_US"})
	tune, ok := c.method(b).(*wire.ConnectionTune)
	if !ok {
		b.Fatal("want connection.tune")
	}
	c.send(b, 0, &wire.ConnectionTuneOk{ChannelMax: tune.ChannelMax, FrameMax: tune.FrameMax, Heartbeat: 0})
	c.send(b, 0, &wire.ConnectionOpen{VirtualHost: "/"})
	if _, ok := c.method(b).(*wire.ConnectionOpenOk); !ok {
		b.Fatal("want connection.open-ok")
	}
	c.send(b, 1, &wire.ChannelOpen{})
	if _, ok := c.method(b).(*wire.ChannelOpenOk); !ok {
		b.Fatal("want channel.open-ok")
	}
	return c
}

func (c *benchConn) write(b *testing.B, p []byte) {
	if _, err := c.nc.Write(p); err != nil {
		b.Fatal(err)
	}
}

func (c *benchConn) send(b *testing.B, ch uint16, m wire.Method) {
	c.write(b, wire.AppendMethodFrame(nil, ch, m))
}

// call sends m on channel 1 and waits for the next method (its reply).
func (c *benchConn) call(b *testing.B, m wire.Method) wire.Method {
	b.Helper()
	c.send(b, 1, m)
	r := c.method(b)
	if cl, ok := r.(*wire.ChannelClose); ok {
		b.Fatalf("%s: channel closed: %d %s", m.MethodName(), cl.ReplyCode, cl.ReplyText)
	}
	return r
}

func (c *benchConn) method(b *testing.B) wire.Method {
	b.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer c.nc.SetReadDeadline(time.Time{})
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			b.Fatal(err)
		}
		if f.Type != wire.FrameMethod {
			continue
		}
		m, err := wire.DecodeMethod(f.Payload)
		if err != nil {
			b.Fatal(err)
		}
		return m
	}
}
