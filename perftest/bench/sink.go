package bench

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	wire "github.com/amqp-go/amqp-go/shared/amqp"
)

// Sink is a null AMQP 0-9-1 broker for measuring perftest itself: it speaks
// just enough of the protocol for perftest (handshake, channels, declares,
// binds, qos, confirm.select, consume, cancel, deletes, closes), decodes
// every frame it reads and discards publishes (confirming them when the
// channel is in confirm mode, one multiple basic.ack per read batch), and
// gives each consumer an endless stream of deliveries of DeliverySize bytes,
// within its prefetch window unless no-ack. It routes nothing: what is
// published is never delivered. Its own work per message is a frame decode
// or a frame encode, so what perftest reaches against it is perftest's own
// ceiling (on a shared machine, minus the sink's CPU).
type Sink struct {
	// DeliverySize is the body size of generated deliveries (at least
	// HeaderSize; bodies carry a perftest header with a foreign run tag, so
	// consumers count them and record latency but do not track sequence).
	DeliverySize int

	Published atomic.Int64 // basic.publish frames received
	Delivered atomic.Int64 // basic.deliver frames sent
	Acked     atomic.Int64 // deliveries acknowledged by clients

	mu    sync.Mutex
	conns map[net.Conn]bool
	ln    net.Listener
}

// Serve accepts connections on ln until it is closed.
func (s *Sink) Serve(ln net.Listener) error {
	s.mu.Lock()
	s.ln = ln
	if s.conns == nil {
		s.conns = map[net.Conn]bool{}
	}
	s.mu.Unlock()
	for {
		nc, err := ln.Accept()
		if err != nil {
			return err
		}
		s.mu.Lock()
		s.conns[nc] = true
		s.mu.Unlock()
		go func() {
			sc := &sinkConn{s: s, nc: nc, fr: wire.NewFrameReader(nc, 1<<20), frameMax: 128 << 10, chans: map[uint16]*sinkChannel{}}
			_ = sc.serve()
			_ = nc.Close()
			sc.stopAll()
			s.mu.Lock()
			delete(s.conns, nc)
			s.mu.Unlock()
		}()
	}
}

// Close stops accepting and closes every connection.
func (s *Sink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var err error
	if s.ln != nil {
		err = s.ln.Close()
	}
	for c := range s.conns {
		_ = c.Close()
	}
	return err
}

type sinkConn struct {
	s        *Sink
	nc       net.Conn
	fr       *wire.FrameReader
	frameMax uint32

	wmu  sync.Mutex
	wbuf []byte

	chans map[uint16]*sinkChannel // reader goroutine only
	qn    int
}

type sinkChannel struct {
	confirm bool
	tag     uint64 // publishes confirmed so far / to confirm
	acked   uint64
	prefech int
	gens    []*sinkGen
}

// sinkGen generates deliveries for one consumer.
type sinkGen struct {
	ctag   string
	noAck  bool
	window int // prefetch; 0 = unlimited
	acked  atomic.Uint64
	wake   chan struct{} // an ack opened the window
	stop   chan struct{}
	done   chan struct{}
}

func (c *sinkConn) write(app func([]byte) []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wbuf = app(c.wbuf[:0])
	_, err := c.nc.Write(c.wbuf)
	return err
}

func (c *sinkConn) method(ch uint16, m wire.Method) error {
	return c.write(func(b []byte) []byte { return wire.AppendMethodFrame(b, ch, m) })
}

func (c *sinkConn) stopAll() {
	for _, ch := range c.chans {
		for _, g := range ch.gens {
			g.halt()
		}
	}
}

func (g *sinkGen) halt() {
	select {
	case <-g.stop:
	default:
		close(g.stop)
	}
	<-g.done
}

func (c *sinkConn) serve() error {
	hdr := make([]byte, 8)
	if _, err := io.ReadFull(c.nc, hdr); err != nil || !bytes.Equal(hdr, wire.ProtocolHeader) {
		return errors.New("bad protocol header")
	}
	if err := c.method(0, &wire.ConnectionStart{VersionMajor: 0, VersionMinor: 9,
		ServerProperties: wire.Table{"product": "perftest sink", "capabilities": wire.Table{
			"publisher_confirms": true, "basic.nack": true, "consumer_cancel_notify": true}},
		Mechanisms: "PLAIN AMQPLAIN", Locales: "en_US"}); err != nil {
		return err
	}
	var ackBuf []byte
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			return err
		}
		switch f.Type {
		case wire.FrameMethod:
			m, err := wire.DecodeMethod(f.Payload)
			if err != nil {
				return err
			}
			if err := c.handle(f.Channel, m); err != nil {
				return err
			}
		case wire.FrameHeader:
			if _, err := wire.ParseContentHeader(f.Payload); err != nil {
				return err
			}
		}
		if c.fr.Buffered() > 0 {
			continue
		}
		// End of a read batch: confirm what it published.
		ackBuf = ackBuf[:0]
		for n, ch := range c.chans {
			if ch.confirm && ch.tag > ch.acked {
				ackBuf = wire.AppendMethodFrame(ackBuf, n, &wire.BasicAck{DeliveryTag: ch.tag, Multiple: true})
				ch.acked = ch.tag
			}
		}
		if len(ackBuf) > 0 {
			if err := c.write(func(b []byte) []byte { return append(b, ackBuf...) }); err != nil {
				return err
			}
		}
	}
}

func (c *sinkConn) handle(n uint16, m wire.Method) error {
	ch := c.chans[n]
	switch m := m.(type) {
	case *wire.ConnectionStartOk:
		return c.method(0, &wire.ConnectionTune{ChannelMax: 2047, FrameMax: c.frameMax, Heartbeat: 0})
	case *wire.ConnectionTuneOk:
		if m.FrameMax != 0 && m.FrameMax < c.frameMax {
			c.frameMax = m.FrameMax
		}
		c.fr.SetMaxFrame(c.frameMax)
		return nil
	case *wire.ConnectionOpen:
		return c.method(0, &wire.ConnectionOpenOk{})
	case *wire.ConnectionClose:
		c.stopAll()
		_ = c.method(0, &wire.ConnectionCloseOk{})
		return io.EOF
	case *wire.ChannelOpen:
		c.chans[n] = &sinkChannel{}
		return c.method(n, &wire.ChannelOpenOk{})
	}
	if ch == nil {
		return fmt.Errorf("sink: %s on channel %d, which is not open", m.MethodName(), n)
	}
	switch m := m.(type) {
	case *wire.ChannelClose:
		for _, g := range ch.gens {
			g.halt()
		}
		delete(c.chans, n)
		return c.method(n, &wire.ChannelCloseOk{})
	case *wire.ChannelCloseOk:
		delete(c.chans, n)
	case *wire.ConfirmSelect:
		ch.confirm = true
		if !m.Nowait {
			return c.method(n, &wire.ConfirmSelectOk{})
		}
	case *wire.BasicPublish:
		c.s.Published.Add(1)
		if ch.confirm {
			ch.tag++
		}
	case *wire.ExchangeDeclare:
		if !m.NoWait {
			return c.method(n, &wire.ExchangeDeclareOk{})
		}
	case *wire.ExchangeDelete:
		if !m.NoWait {
			return c.method(n, &wire.ExchangeDeleteOk{})
		}
	case *wire.QueueDeclare:
		q := m.Queue
		if q == "" {
			c.qn++
			q = fmt.Sprintf("amq.gen-sink-%d", c.qn)
		}
		if !m.NoWait {
			return c.method(n, &wire.QueueDeclareOk{Queue: q})
		}
	case *wire.QueueBind:
		if !m.NoWait {
			return c.method(n, &wire.QueueBindOk{})
		}
	case *wire.QueueDelete:
		if !m.NoWait {
			return c.method(n, &wire.QueueDeleteOk{})
		}
	case *wire.BasicQos:
		ch.prefech = int(m.PrefetchCount)
		return c.method(n, &wire.BasicQosOk{})
	case *wire.BasicConsume:
		tag := m.ConsumerTag
		if tag == "" {
			tag = fmt.Sprintf("amq.ctag-sink-%d", len(ch.gens)+1)
		}
		if !m.NoWait {
			if err := c.method(n, &wire.BasicConsumeOk{ConsumerTag: tag}); err != nil {
				return err
			}
		}
		g := &sinkGen{ctag: tag, noAck: m.NoAck, window: ch.prefech, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
		ch.gens = append(ch.gens, g)
		go c.generate(n, g)
	case *wire.BasicCancel:
		for i, g := range ch.gens {
			if g.ctag == m.ConsumerTag {
				g.halt()
				ch.gens = append(ch.gens[:i], ch.gens[i+1:]...)
				break
			}
		}
		if !m.NoWait {
			return c.method(n, &wire.BasicCancelOk{ConsumerTag: m.ConsumerTag})
		}
	case *wire.BasicAck:
		c.ack(ch, m.DeliveryTag, m.Multiple)
	case *wire.BasicNack:
		c.ack(ch, m.DeliveryTag, m.Multiple)
	case *wire.BasicReject:
		c.ack(ch, m.DeliveryTag, false)
	}
	return nil
}

// ack credits a consumer's window. Delivery tags are per channel; with one
// consumer per channel (perftest's case) the tag is that consumer's count.
func (c *sinkConn) ack(ch *sinkChannel, tag uint64, multiple bool) {
	if len(ch.gens) == 0 {
		return
	}
	g := ch.gens[0]
	for {
		cur := g.acked.Load()
		next := cur + 1
		if multiple {
			next = max(cur, tag)
		}
		if g.acked.CompareAndSwap(cur, next) {
			c.s.Acked.Add(int64(next - cur))
			select {
			case g.wake <- struct{}{}:
			default:
			}
			return
		}
	}
}

// generate sends deliveries to one consumer in batches of up to 64 KiB,
// within its prefetch window.
func (c *sinkConn) generate(n uint16, g *sinkGen) {
	defer close(g.done)
	size := max(c.s.DeliverySize, HeaderSize)
	body := make([]byte, size)
	var props wire.Properties
	props.Flags = wire.FlagDeliveryMode
	props.DeliveryMode = 1
	deliver := wire.BasicDeliver{ConsumerTag: g.ctag, Exchange: "direct", RoutingKey: "sink"}
	var sent uint64
	var buf []byte
	for {
		select {
		case <-g.stop:
			return
		default:
		}
		allowed := uint64(1 << 62)
		if !g.noAck && g.window > 0 {
			allowed = g.acked.Load() + uint64(g.window)
		}
		if sent >= allowed {
			select {
			case <-g.stop:
				return
			case <-g.wake:
			}
			continue
		}
		buf = buf[:0]
		batch := 0
		now := time.Now().UnixNano()
		for sent < allowed && len(buf) < 64<<10 {
			sent++
			batch++
			// tag 0xffff_ffff: a run tag no perftest run uses for its own messages
			EncodeHeader(body, sent, 0xffffffff, now)
			deliver.DeliveryTag = sent
			buf = wire.AppendMethodFrame(buf, n, &deliver)
			buf = wire.AppendHeaderFrameProps(buf, n, uint64(len(body)), &props)
			buf = wire.AppendBodyFrames(buf, n, body, c.frameMax)
		}
		c.wmu.Lock()
		_, err := c.nc.Write(buf)
		c.wmu.Unlock()
		if err != nil {
			return
		}
		c.s.Delivered.Add(int64(batch))
	}
}
