package broker

import (
	"sort"
	"sync"
	"sync/atomic"
)

// chanDests are a channel's counters per exchange it published to and per
// queue it took messages from: RabbitMQ's channel_exchange_stats and
// channel_queue_stats, which the management API shows as a channel's
// publishes and deliveries. The counters are atomics that only this
// channel's goroutines add to (its reader, and the dispatch goroutines of
// the queues it consumes from, each on its own queue's entry); mu guards
// the two maps only, and the hot paths skip it: a publish finds its
// exchange's entry through lastX (the reader's), a delivery through its
// consumer's entry, so mu is taken on the first publish to another
// exchange, on a get, and on an ack of a get.
type chanDests struct {
	mu sync.Mutex
	xs map[*Exchange]*chanXCounters
	qs map[*Queue]*chanQCounters
	// lastX is the entry of the exchange last published to (reader).
	lastX *chanXCounters
}

// chanXCounters are a channel's counters for one exchange.
type chanXCounters struct {
	x                                                  *Exchange
	publish, confirm, returnUnroutable, dropUnroutable atomic.Uint64
}

// chanQCounters are a channel's counters for one queue.
type chanQCounters struct {
	q *Queue
	deliveryCounters
}

// deliveryCounters are RabbitMQ's consuming-side message_stats of a
// channel, over all its queues (chanView) or for one (chanQCounters).
type deliveryCounters struct {
	deliver, deliverNoAck, get         atomic.Uint64
	getNoAck, getEmpty, redeliver, ack atomic.Uint64
}

// exchange returns x's entry, made on first use (reader goroutine).
func (d *chanDests) exchange(x *Exchange) *chanXCounters {
	if e := d.lastX; e != nil && e.x == x {
		return e
	}
	d.mu.Lock()
	e := d.xs[x]
	if e == nil {
		if d.xs == nil {
			d.xs = map[*Exchange]*chanXCounters{}
		}
		d.pruneLocked()
		e = &chanXCounters{x: x}
		d.xs[x] = e
	}
	d.mu.Unlock()
	d.lastX = e
	return e
}

// queue returns q's entry, made on first use.
func (d *chanDests) queue(q *Queue) *chanQCounters {
	d.mu.Lock()
	defer d.mu.Unlock()
	e := d.qs[q]
	if e == nil {
		if d.qs == nil {
			d.qs = map[*Queue]*chanQCounters{}
		}
		d.pruneLocked()
		e = &chanQCounters{q: q}
		d.qs[q] = e
	}
	return e
}

// pruneLocked drops the entries of deleted exchanges and queues, so that a
// long-lived channel publishing to short-lived exchanges, or getting from
// short-lived queues, keeps entries for the live ones only. It runs when an
// entry is added, every time the maps double.
func (d *chanDests) pruneLocked() {
	n := len(d.xs) + len(d.qs)
	if n < 16 || n&(n-1) != 0 {
		return
	}
	for x, e := range d.xs {
		if x.removed.Load() {
			delete(d.xs, x)
			if d.lastX == e {
				d.lastX = nil
			}
		}
	}
	for q := range d.qs {
		if q.gone.Load() {
			delete(d.qs, q)
		}
	}
}

// acked counts acknowledged deliveries on their queues' entries, one add
// per run of entries of the same one: those of consumers have theirs at
// hand, those of basic.get are looked up, once per run of the same queue.
func (d *chanDests) acked(es []unackedEntry) {
	var run, got *chanQCounters // the run's entry; the last get's queue's
	var n uint64
	for i := range es {
		u := &es[i]
		e := u.c.countersOf()
		if e == nil {
			if got == nil || got.q != u.q {
				got = d.queue(u.q)
			}
			e = got
		}
		if e != run {
			if run != nil {
				run.ack.Add(n)
			}
			run, n = e, 0
		}
		n++
	}
	if run != nil {
		run.ack.Add(n)
	}
}

// countersOf is c's entry in its channel's chanDests (nil for no consumer:
// a basic.get).
func (c *consumer) countersOf() *chanQCounters {
	if c == nil {
		return nil
	}
	return c.dests
}

// ExchangeCounters are a channel's publishes to one exchange (RabbitMQ's
// channel detail "publishes").
type ExchangeCounters struct {
	Exchange                                           *Exchange
	Publish, Confirm, ReturnUnroutable, DropUnroutable uint64
}

// QueueCounters are a channel's deliveries, gets and acks of one queue
// (RabbitMQ's channel detail "deliveries").
type QueueCounters struct {
	Queue                                *Queue
	Deliver, DeliverNoAck, Get, GetNoAck uint64
	GetEmpty, Redeliver, Ack             uint64
}

// Deleted reports whether q was deleted.
func (q *Queue) Deleted() bool { return q.gone.Load() }

// Destinations returns the channel's counters per exchange and per queue,
// by name, leaving out deleted exchanges and queues, and queues it has
// taken nothing from yet. It takes the
// channel's chanDests lock alone.
func (c *ChannelInfo) Destinations() ([]ExchangeCounters, []QueueCounters) {
	if c.ch == nil {
		return nil, nil
	}
	d := &c.ch.dests
	var xs []ExchangeCounters
	var qs []QueueCounters
	d.mu.Lock()
	for x, e := range d.xs {
		if !x.removed.Load() {
			xs = append(xs, ExchangeCounters{Exchange: x, Publish: e.publish.Load(), Confirm: e.confirm.Load(),
				ReturnUnroutable: e.returnUnroutable.Load(), DropUnroutable: e.dropUnroutable.Load()})
		}
	}
	for q, e := range d.qs {
		// An entry is made at basic.consume; RabbitMQ lists the queue
		// only from its first delivery.
		if !q.gone.Load() && e.any() {
			qs = append(qs, QueueCounters{Queue: q, Deliver: e.deliver.Load(), DeliverNoAck: e.deliverNoAck.Load(),
				Get: e.get.Load(), GetNoAck: e.getNoAck.Load(), GetEmpty: e.getEmpty.Load(),
				Redeliver: e.redeliver.Load(), Ack: e.ack.Load()})
		}
	}
	d.mu.Unlock()
	sort.Slice(xs, func(i, j int) bool { return xs[i].Exchange.Name < xs[j].Exchange.Name })
	sort.Slice(qs, func(i, j int) bool { return qs[i].Queue.Name < qs[j].Queue.Name })
	return xs, qs
}

// delivered counts a batch of n deliveries to a consumer, redelivered of
// them flagged so.
func (e *deliveryCounters) delivered(noAck bool, n, redelivered int) {
	if noAck {
		e.deliverNoAck.Add(uint64(n))
	} else {
		e.deliver.Add(uint64(n))
	}
	if redelivered > 0 {
		e.redeliver.Add(uint64(redelivered))
	}
}

// got counts one basic.get that took a message.
func (e *deliveryCounters) got(noAck, redelivered bool) {
	if noAck {
		e.getNoAck.Add(1)
	} else {
		e.get.Add(1)
	}
	if redelivered {
		e.redeliver.Add(1)
	}
}

// any reports whether a counter is above 0.
func (e *deliveryCounters) any() bool {
	return e.deliver.Load()|e.deliverNoAck.Load()|e.get.Load()|e.getNoAck.Load()|e.getEmpty.Load()|
		e.redeliver.Load()|e.ack.Load() != 0
}
