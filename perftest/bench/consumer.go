package bench

import (
	"fmt"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// consumer receives on its own connection and channel in one goroutine.
type consumer struct {
	r          *runner
	idx        int
	conn       *amqp.Connection
	ch         *amqp.Channel
	queue      string
	ctag       string
	deliveries <-chan amqp.Delivery
	w          *wireConn // --client buffered: instead of conn and ch
	tracker    *QueueTracker
	order      *OrderTracker
	lat        *latencyRecorder

	received atomic.Int64
	requeued atomic.Int64 // deliveries nacked with requeue (--nack-every)
	finished atomic.Bool
	closing  atomic.Bool // set before perftest closes conn
	done     chan struct{}
}

func (c *consumer) isDone() bool { return c.finished.Load() }

func (r *runner) newConsumer(i int) (*consumer, error) {
	if r.cfg.Client == ClientBuffered {
		return r.newBufferedConsumer(i)
	}
	cfg := &r.cfg
	conn, _, err := r.dial(fmt.Sprintf("consumer-%d", i))
	if err != nil {
		return nil, err
	}
	ch, err := conn.Channel()
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	fail := func(err error) (*consumer, error) { _ = conn.Close(); return nil, err }
	if cfg.Qos > 0 {
		if err := ch.Qos(cfg.Qos, 0, false); err != nil {
			return fail(err)
		}
	}
	q := r.topo.consumerQueues[i]
	if q == "" {
		dq, err := ch.QueueDeclare("", cfg.Persistent, cfg.AutoDelete, cfg.Exclusive, false, cfg.QueueArgs)
		if err != nil {
			return fail(fmt.Errorf("declaring queue: %w", err))
		}
		q = dq.Name
		if !isDefaultExchange(cfg.Exchange) {
			if err := ch.QueueBind(q, cfg.RoutingKey, cfg.Exchange, false, nil); err != nil {
				return fail(fmt.Errorf("binding queue %q: %w", q, err))
			}
		}
		r.addServerNamed(q)
	}
	c := &consumer{
		r: r, idx: i, conn: conn, ch: ch, queue: q,
		ctag:    fmt.Sprintf("perftest-%s-%d", cfg.ID, i),
		tracker: r.trackers[q],
		order:   NewOrderTracker(cfg.Producers),
		lat:     newLatencyRecorder(),
		done:    make(chan struct{}),
	}
	c.deliveries, err = ch.Consume(q, c.ctag, cfg.AutoAck, false, false, false, nil)
	if err != nil {
		return fail(fmt.Errorf("consuming from %q: %w", q, err))
	}
	r.watch(fmt.Sprintf("consumer #%d", i), conn, ch, &c.closing)
	return c, nil
}

// addServerNamed records a server-named queue a consumer declared.
func (r *runner) addServerNamed(q string) {
	if !r.cfg.Exclusive {
		r.declared = append(r.declared, q)
	}
	r.serverQ[q] = true
	r.trackers[q] = NewQueueTracker(q, r.cfg.Producers)
}

func (c *consumer) run() {
	if c.w != nil {
		c.runWire()
		return
	}
	defer close(c.done)
	defer c.finished.Store(true)
	cfg := &c.r.cfg
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
	defer func() {
		if pending != 0 && !c.ch.IsClosed() {
			if err := c.ch.Ack(pending, true); err != nil && !c.r.stopping() {
				c.r.fail(fmt.Errorf("consumer #%d: ack: %w", c.idx, err))
			}
		}
		if !c.ch.IsClosed() {
			_ = c.ch.Cancel(c.ctag, false)
		}
	}()
	for limit == 0 || n < limit {
		var d amqp.Delivery
		var ok bool
		select {
		case d, ok = <-c.deliveries:
		case <-c.r.stopCh:
			return
		}
		if !ok {
			if !c.r.stopping() {
				c.r.fail(fmt.Errorf("consumer #%d: delivery channel closed", c.idx))
			}
			return
		}
		n++
		nack := nackEvery > 0 && n%nackEvery == 0
		c.handle(d.Body, !nack, d.Redelivered)
		c.received.Add(1)
		if !cfg.AutoAck {
			var err error
			switch {
			case nack:
				err = d.Nack(false, true)
				c.requeued.Add(1)
			case multi <= 1:
				err = d.Ack(false)
			case n%multi == 0:
				err, pending = d.Ack(true), 0
			default:
				pending = d.DeliveryTag
			}
			if err != nil {
				if !c.r.stopping() {
					c.r.fail(fmt.Errorf("consumer #%d: ack: %w", c.idx, err))
				}
				return
			}
		}
		if interval > 0 {
			due := start.Add(time.Duration(float64(n) * interval))
			if dl := time.Until(due); dl > 0 {
				select {
				case <-time.After(dl):
				case <-c.r.stopCh:
					return
				}
			}
		}
	}
}

// handle records latency and sequence information for one body. A
// delivery perftest nacks back to its queue (--nack-every) is not tracked,
// its redelivery is; a redelivery is not checked for order.
func (c *consumer) handle(body []byte, track, redelivered bool) {
	now := time.Now().UnixNano()
	seq, tag, sent, err := DecodeHeader(body)
	if err != nil {
		return
	}
	c.lat.record((now - sent) / int64(time.Microsecond))
	run, p := splitProducerTag(tag)
	if run != c.r.runTag || c.tracker == nil || !track {
		return // another run's message, or one that comes back
	}
	if !c.tracker.Add(p, seq) && !redelivered {
		c.order.Add(p, seq)
	}
}
