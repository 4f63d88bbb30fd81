package bench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"time"

	wire "github.com/amqp-go/amqp-go/shared/amqp"
	amqp "github.com/rabbitmq/amqp091-go"
)

// newBufferedConsumer is newConsumer for --client buffered: perftest's own
// client (wire.go). Deliveries are handled on the connection's reading
// goroutine; acks are buffered and written once per read batch.
func (r *runner) newBufferedConsumer(i int) (*consumer, error) {
	cfg := &r.cfg
	w, err := dialWire(cfg.URI, fmt.Sprintf("perftest-%s-consumer-%d", cfg.ID, i), r.heartbeat())
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*consumer, error) { _ = w.nc.Close(); return nil, err }
	if cfg.Qos > 0 {
		if _, err := w.call(&wire.BasicQos{PrefetchCount: uint16(cfg.Qos)}, "basic.qos-ok"); err != nil {
			return fail(err)
		}
	}
	q := r.topo.consumerQueues[i]
	if q == "" {
		m, err := w.call(&wire.QueueDeclare{Durable: cfg.Persistent, AutoDelete: cfg.AutoDelete,
			Exclusive: cfg.Exclusive, Arguments: wire.Table(cfg.QueueArgs)}, "queue.declare-ok")
		if err != nil {
			return fail(fmt.Errorf("declaring queue: %w", err))
		}
		q = m.(*wire.QueueDeclareOk).Queue
		if !isDefaultExchange(cfg.Exchange) {
			if _, err := w.call(&wire.QueueBind{Queue: q, Exchange: cfg.Exchange, RoutingKey: cfg.RoutingKey}, "queue.bind-ok"); err != nil {
				return fail(fmt.Errorf("binding queue %q: %w", q, err))
			}
		}
		r.addServerNamed(q)
	}
	c := &consumer{
		r: r, idx: i, w: w, queue: q,
		ctag:    fmt.Sprintf("perftest-%s-%d", cfg.ID, i),
		tracker: r.trackers[q],
		order:   NewOrderTracker(cfg.Producers),
		lat:     newLatencyRecorder(),
		done:    make(chan struct{}),
	}
	if _, err := w.call(&wire.BasicConsume{Queue: q, ConsumerTag: c.ctag, NoAck: cfg.AutoAck}, "basic.consume-ok"); err != nil {
		return fail(fmt.Errorf("consuming from %q: %w", q, err))
	}
	return c, nil
}

// runWire is run for a buffered consumer: it reads the connection itself
// until the run stops or its message limit is reached.
func (c *consumer) runWire() {
	defer close(c.done)
	defer c.finished.Store(true)
	cfg := &c.r.cfg
	w := c.w
	stopWatch := make(chan struct{})
	defer close(stopWatch)
	go func() {
		// Wake the reader when the run stops.
		select {
		case <-c.r.stopCh:
			_ = w.nc.SetReadDeadline(time.Now())
		case <-stopWatch:
		}
	}()
	if err := c.readWire(cfg); err != nil && !c.r.stopping() {
		c.r.fail(fmt.Errorf("consumer #%d: %w", c.idx, err))
	}
}

func (c *consumer) readWire(cfg *Config) error {
	w := c.w
	limit := int64(cfg.ConsumerMessages)
	multi := int64(cfg.MultiAckEvery)
	nackEvery := int64(cfg.NackEvery)
	var interval float64
	if cfg.ConsumerRate > 0 {
		interval = float64(time.Second) / cfg.ConsumerRate
	}
	start := time.Now()
	var n int64
	var pending uint64 // highest delivery tag not yet acked (multi-ack)
	var tag uint64     // current delivery's tag
	var redelivered bool
	var bodyLeft uint64
	var head [HeaderSize]byte // the current body's first bytes
	var have int
	inContent := false
	ack := func(t uint64, multiple bool) {
		w.wmu.Lock()
		w.wbuf = wire.AppendMethodFrame(w.wbuf, wireChannel, &wire.BasicAck{DeliveryTag: t, Multiple: multiple})
		var err error
		if len(w.wbuf) >= flushBytes {
			err = w.flushLocked()
		}
		w.wmu.Unlock()
		_ = err // a write error shows up as a read error next
	}
	flush := func() error {
		w.wmu.Lock()
		defer w.wmu.Unlock()
		return w.flushLocked()
	}
	defer func() {
		if pending != 0 && !w.closing.Load() {
			ack(pending, true)
		}
		_ = flush()
	}()
	// complete handles a delivery whose body has been read.
	complete := func() error {
		n++
		nack := nackEvery > 0 && n%nackEvery == 0
		c.handle(head[:have], !nack, redelivered)
		c.received.Add(1)
		if !cfg.AutoAck {
			switch {
			case nack:
				w.wmu.Lock()
				w.wbuf = wire.AppendMethodFrame(w.wbuf, wireChannel, &wire.BasicNack{DeliveryTag: tag, Requeue: true})
				w.wmu.Unlock()
				c.requeued.Add(1)
			case multi <= 1:
				ack(tag, false)
			case n%multi == 0:
				ack(tag, true)
				pending = 0
			default:
				pending = tag
			}
		}
		if interval > 0 {
			due := start.Add(time.Duration(float64(n) * interval))
			if dl := time.Until(due); dl > 0 {
				if err := flush(); err != nil {
					return err
				}
				select {
				case <-time.After(dl):
				case <-c.r.stopCh:
				}
			}
		}
		return nil
	}
	for limit == 0 || n < limit {
		if w.fr.Buffered() == 0 {
			// End of a read batch: write the acks it produced.
			if err := flush(); err != nil {
				return err
			}
		}
		if c.r.stopping() {
			return nil
		}
		f, err := w.fr.ReadFrame()
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && c.r.stopping() {
				return nil
			}
			return fmt.Errorf("connection: %w", err)
		}
		switch f.Type {
		case wire.FrameHeartbeat:
			continue
		case wire.FrameHeader:
			if !inContent {
				continue
			}
			// Only the body size is needed: read in place (class,
			// weight, then size), not the whole parsed header.
			if len(f.Payload) < 14 {
				return fmt.Errorf("content header of %d bytes", len(f.Payload))
			}
			bodyLeft, have = binary.BigEndian.Uint64(f.Payload[4:12]), 0
			if bodyLeft == 0 {
				inContent = false
				if err := complete(); err != nil {
					return err
				}
			}
			continue
		case wire.FrameBody:
			if !inContent {
				continue
			}
			have += copy(head[have:], f.Payload)
			bodyLeft -= min(bodyLeft, uint64(len(f.Payload)))
			if bodyLeft == 0 {
				inContent = false
				if err := complete(); err != nil {
					return err
				}
			}
			continue
		}
		if t, r, ok := deliverArgs(f.Payload); ok {
			tag, redelivered, inContent = t, r, true
			continue
		}
		m, err := wire.DecodeMethod(f.Payload)
		if err != nil {
			return err
		}
		switch m := m.(type) {
		case *wire.BasicDeliver:
			tag, redelivered, inContent = m.DeliveryTag, m.Redelivered, true
		case *wire.BasicCancel:
			return fmt.Errorf("consumer cancelled by the server (basic.cancel)")
		case *wire.ChannelClose:
			w.send(func(b []byte) []byte { return wire.AppendMethodFrame(b, wireChannel, &wire.ChannelCloseOk{}) })
			return fmt.Errorf("channel closed by server: %v", &amqp.Error{Code: int(m.ReplyCode), Reason: m.ReplyText, Server: true})
		case *wire.ConnectionClose:
			w.send(func(b []byte) []byte { return wire.AppendMethodFrame(b, 0, &wire.ConnectionCloseOk{}) })
			return fmt.Errorf("connection closed by server: %v", &amqp.Error{Code: int(m.ReplyCode), Reason: m.ReplyText, Server: true})
		}
	}
	return nil
}

// closeDeadline closes the consumer's connection politely.
func (c *consumer) closeDeadline(t time.Time) {
	if c.w != nil {
		_ = c.w.nc.SetReadDeadline(time.Time{})
		_ = c.w.closeReading(t)
		return
	}
	_ = c.conn.CloseDeadline(t)
}

// deliverClass and deliverMethod identify basic.deliver's frames.
var deliverClass, deliverMethod = (&wire.BasicDeliver{}).ClassID(), (&wire.BasicDeliver{}).MethodID()

// deliverArgs reads basic.deliver's delivery tag and redelivered flag, all
// a consumer uses of it, in place (decoding it made a method and three
// strings a delivery); ok is false for any other method or a short
// payload, which DecodeMethod then handles.
func deliverArgs(p []byte) (tag uint64, redelivered, ok bool) {
	if len(p) < 5 || binary.BigEndian.Uint16(p) != deliverClass || binary.BigEndian.Uint16(p[2:]) != deliverMethod {
		return 0, false, false
	}
	n := 5 + int(p[4]) // past the class, method and consumer tag
	if len(p) < n+9 {
		return 0, false, false
	}
	return binary.BigEndian.Uint64(p[n:]), p[n+8]&1 != 0, true
}
