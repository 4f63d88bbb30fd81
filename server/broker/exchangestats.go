package broker

import "sync/atomic"

// publishStats are an exchange's message_stats as RabbitMQ 3.10 counts
// them: publish_in, the messages clients (and the management API) publish
// to it, and publish_out, the queues those messages reach, so a message
// routed to three queues counts three (checked against 3.10.8, exchange
// to exchange bindings included: only the exchange published to counts).
// A channel adds to its own stripe, so publishers on the two cores rarely
// share a cache line; readers sum the stripes.
type publishStats [publishStripes]struct {
	in, out atomic.Uint64
	_       [48]byte // the rest of a 64-byte cache line
}

const publishStripes = 8

// count adds one message published through stripe that reached queues.
func (p *publishStats) count(stripe uint32, queues int) {
	s := &p[stripe%publishStripes]
	s.in.Add(1)
	if queues > 0 {
		s.out.Add(uint64(queues))
	}
}

// PublishStats returns the exchange's publish_in and publish_out counts.
func (x *Exchange) PublishStats() (in, out uint64) {
	for i := range x.published {
		in += x.published[i].in.Load()
		out += x.published[i].out.Load()
	}
	return in, out
}

// nextStripe spreads channels over the stripes.
var nextStripe atomic.Uint32
