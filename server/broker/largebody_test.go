package broker_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/amqp-go/amqp-go/server/broker"
	"github.com/amqp-go/amqp-go/server/servertest"
	wire "github.com/amqp-go/amqp-go/shared/amqp"
	amqp "github.com/rabbitmq/amqp091-go"
)

// Bodies on both sides of every size boundary the publish and delivery
// paths have (a frame's payload at frame_max, the size from which
// deliveries are written in place, 64 KiB, 1 MiB), published in full
// frames, in irregular frames down to 1 byte, and in 4 KiB frames (a 1 MiB
// body in 257 of them), at the smallest and the default frame_max on each
// side, come out intact and in frames no larger than the consumer's
// frame_max; a rejected and requeued one is redelivered intact. Persistent
// messages on a durable queue, so that BROKER_TEST_STORE=badger takes them
// through the segment log.
func TestLargeBodyFraming(t *testing.T) {
	_, u := servertest.StartServer(t, broker.Config{})
	rng := rand.New(rand.NewPCG(12, 1))
	for _, fm := range []struct{ pub, cons uint32 }{{4096, 131072}, {131072, 4096}, {131072, 131072}} {
		t.Run(fmt.Sprintf("publisher-%d-consumer-%d", fm.pub, fm.cons), func(t *testing.T) {
			pub, _ := servertest.RawHandshake(t, u, servertest.RawOptions{FrameMax: fm.pub})
			cons, _ := servertest.RawHandshake(t, u, servertest.RawOptions{FrameMax: fm.cons})
			pub.OpenChannel(1)
			cons.OpenChannel(1)
			q := fmt.Sprintf("large-%d-%d", fm.pub, fm.cons)
			pub.Send(1, &wire.QueueDeclare{Queue: q, Durable: true})
			if _, m := pub.ReadMethod(); m.MethodName() != "queue.declare-ok" {
				t.Fatalf("declare: %s", m.MethodName())
			}
			cons.Send(1, &wire.BasicConsume{Queue: q, ConsumerTag: "c"})
			if _, m := cons.ReadMethod(); m.MethodName() != "basic.consume-ok" {
				t.Fatalf("consume: %s", m.MethodName())
			}
			pp := int(fm.pub - 8) // a full frame's payload
			sizes := []int{1, pp - 1, pp, pp + 1, 2 * pp, 8<<10 - 1, 8 << 10, 8<<10 + 1,
				4088 - 1, 4088, 4089, 64 << 10, 1<<20 + 3}
			props := &wire.Properties{Flags: wire.FlagDeliveryMode, DeliveryMode: 2}
			var bodies [][]byte
			for i, n := range sizes {
				for split := range 3 {
					body := make([]byte, n)
					for j := range body {
						body[j] = byte(i*7 + split + j*31)
					}
					b := wire.AppendMethodFrame(nil, 1, &wire.BasicPublish{RoutingKey: q})
					b = wire.AppendHeaderFrameProps(b, 1, uint64(n), props)
					switch split {
					case 0: // full frames
						b = wire.AppendBodyFrames(b, 1, body, fm.pub)
					case 1: // 1 byte, 7 bytes, then random sizes up to a full frame
						rest := body
						for k := 0; len(rest) > 0; k++ {
							c := min(len(rest), []int{1, 7}[min(k, 1)])
							if k > 1 {
								c = min(len(rest), 1+rng.IntN(pp))
							}
							b = wire.AppendFrame(b, wire.FrameBody, 1, rest[:c])
							rest = rest[c:]
						}
					case 2: // the smallest frames
						b = wire.AppendBodyFrames(b, 1, body, 4096)
					}
					pub.Write(b)
					bodies = append(bodies, body)
				}
			}
			for i, want := range bodies {
				tag, got := readDelivery(t, cons, fm.cons)
				if !bytes.Equal(got, want) {
					t.Fatalf("message %d (%d bytes): body differs (got %d bytes)", i, len(want), len(got))
				}
				if i == len(bodies)-1 {
					cons.Send(1, &wire.BasicReject{DeliveryTag: tag, Requeue: true})
					if _, again := readDelivery(t, cons, fm.cons); !bytes.Equal(again, want) {
						t.Fatalf("redelivered %d-byte body differs", len(want))
					}
				}
			}
		})
	}
}

// readDelivery reads a basic.deliver and its content, checking that no
// frame is larger than frameMax and that the body frames add up to the
// header's size.
func readDelivery(t *testing.T, r *servertest.RawConn, frameMax uint32) (uint64, []byte) {
	t.Helper()
	f, err := r.ReadFrame(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	m, err := wire.DecodeMethod(f.Payload)
	if err != nil {
		t.Fatal(err)
	}
	d, ok := m.(*wire.BasicDeliver)
	if !ok {
		t.Fatalf("want basic.deliver, got %s", m.MethodName())
	}
	f, err = r.ReadFrame(10 * time.Second)
	if err != nil || f.Type != wire.FrameHeader {
		t.Fatalf("want a content header: %v (type %d)", err, f.Type)
	}
	h, err := wire.ParseContentHeader(f.Payload)
	if err != nil {
		t.Fatal(err)
	}
	var body []byte
	for uint64(len(body)) < h.BodySize {
		f, err := r.ReadFrame(10 * time.Second)
		if err != nil || f.Type != wire.FrameBody || f.Channel != 1 {
			t.Fatalf("want a body frame on channel 1: %v (type %d, channel %d)", err, f.Type, f.Channel)
		}
		if len(f.Payload)+8 > int(frameMax) {
			t.Fatalf("%d-byte body frame over frame_max %d", len(f.Payload)+8, frameMax)
		}
		body = append(body, f.Payload...)
	}
	if uint64(len(body)) != h.BodySize {
		t.Fatalf("body frames carry %d bytes, header says %d", len(body), h.BodySize)
	}
	return d.DeliveryTag, body
}

// A consumer whose socket fills (a tiny receive buffer, not read while
// 10 MB of 256 KiB messages are delivered to it) gets every body intact
// and in order once it reads, in small reads: deliveries written in place
// (writev) resume correctly after partial writes.
func TestSlowReaderLargeBodies(t *testing.T) {
	_, u := servertest.StartServer(t, broker.Config{})
	cons, _ := servertest.RawHandshake(t, u, servertest.RawOptions{RecvBuffer: 4096})
	pub, _ := servertest.RawHandshake(t, u, servertest.RawOptions{})
	cons.OpenChannel(1)
	pub.OpenChannel(1)
	pub.Send(1, &wire.QueueDeclare{Queue: "slow"})
	if _, m := pub.ReadMethod(); m.MethodName() != "queue.declare-ok" {
		t.Fatalf("declare: %s", m.MethodName())
	}
	cons.Send(1, &wire.BasicConsume{Queue: "slow", ConsumerTag: "c", NoAck: true})
	if _, m := cons.ReadMethod(); m.MethodName() != "basic.consume-ok" {
		t.Fatalf("consume: %s", m.MethodName())
	}
	pub.Send(1, &wire.ConfirmSelect{})
	if _, m := pub.ReadMethod(); m.MethodName() != "confirm.select-ok" {
		t.Fatalf("confirm.select: %s", m.MethodName())
	}
	const n, size = 40, 256 << 10
	for i := range n {
		body := bytes.Repeat([]byte{byte(i)}, size)
		body[0], body[size-1] = 0xAA, byte(i+1)
		pub.Publish(1, &wire.BasicPublish{RoutingKey: "slow"}, body)
	}
	for acked := uint64(0); acked < n; {
		_, m := pub.ReadMethod()
		a, ok := m.(*wire.BasicAck)
		if !ok {
			t.Fatalf("want basic.ack, got %s", m.MethodName())
		}
		acked = a.DeliveryTag
	}
	// Read in small pieces through a fresh frame reader.
	cons.FR = wire.NewFrameReader(smallReads{cons.NC}, 4096)
	for i := range n {
		_, body := readDelivery(t, cons, 131072)
		if len(body) != size || body[0] != 0xAA || body[size-1] != byte(i+1) || body[size/2] != byte(i) {
			t.Fatalf("message %d: %d bytes, first %x, middle %x, last %x", i, len(body), body[0], body[size/2], body[size-1])
		}
	}
}

// smallReads reads at most 1,000 bytes at a time.
type smallReads struct{ c net.Conn }

func (s smallReads) Read(p []byte) (int, error) {
	if len(p) > 1000 {
		p = p[:1000]
	}
	return s.c.Read(p)
}

// Publisher flow control counts bytes too: 1 MiB messages into a queue
// whose consumer takes 2 and never acks are held near 32 MiB of ready
// bodies (32 messages), not 4,096 messages (4 GiB). Watched for 2 s with
// the publisher flat out; a throttled publisher still gets one message in
// per 50 ms pause.
func TestLargeMessagePublisherIsThrottled(t *testing.T) {
	url, conn, _, q := stuckConsumer(t, 2)
	pconn := openConn(t, url)
	pch := openChan(t, pconn)
	var published atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		body := make([]byte, 1<<20)
		for published.Load() < 2000 {
			if err := pch.Publish("", q, false, false, amqp.Publishing{Body: body}); err != nil {
				return
			}
			published.Add(1)
		}
	}()
	defer func() { pconn.Close(); <-done }()
	const bound = 32 + 60
	var most int
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); {
		ready, _ := queueCounts(t, conn, q)
		most = max(most, ready)
		if most > bound {
			t.Fatalf("backlog grew to %d ready 1 MiB messages (published %d); flow control should hold it near 32", most, published.Load())
		}
	}
	if most < 32 {
		t.Fatalf("backlog only reached %d messages (published %d): the test did not reach the threshold", most, published.Load())
	}
}
