package broker

import "sync/atomic"

// counterStripes is a counter that goroutines on different cores add to
// without sharing a cache line: each adds to its own stripe (a channel's
// or a queue's, see nextStripe), and a reader sums them.
type counterStripes [stripes]struct {
	n atomic.Uint64
	_ [56]byte // the rest of a 64-byte cache line
}

const stripes = 8

// add adds n to stripe's part.
func (c *counterStripes) add(stripe uint32, n uint64) { c[stripe%stripes].n.Add(n) }

// load sums the stripes.
func (c *counterStripes) load() (n uint64) {
	for i := range c {
		n += c[i].n.Load()
	}
	return n
}

// nextStripe spreads channels and queues over the stripes.
var nextStripe atomic.Uint32

// publishStats are an exchange's message_stats as RabbitMQ 3.10 counts
// them: in, the messages clients (and the management API) publish to it
// (publish_in), and out, the queues those messages reach (publish_out), so
// a message routed to three queues counts three (checked against 3.10.8,
// exchange to exchange bindings included: only the exchange published to
// counts). Publishers add to their channel's stripe.
type publishStats struct {
	in, out counterStripes
}

// count adds one message published through stripe that reached queues.
func (p *publishStats) count(stripe uint32, queues int) {
	p.in.add(stripe, 1)
	if queues > 0 {
		p.out.add(stripe, uint64(queues))
	}
}

// Deleted reports whether x was deleted (the exchanges of a deleted
// vhost are not marked: their vhost is gone).
func (x *Exchange) Deleted() bool { return x.removed.Load() }

// PublishStats returns the exchange's publish_in and publish_out counts.
func (x *Exchange) PublishStats() (in, out uint64) {
	return x.published.in.load(), x.published.out.load()
}
