package queue

import "testing"

// BenchmarkPushDeliverAck is the classic steady state: a message pushed,
// delivered to a consumer with credit, acked.
func BenchmarkPushDeliverAck(b *testing.B) {
	c := New[int](Policy{MaxLength: -1, MaxLengthBytes: -1}, 0)
	c.Consume(1, 0, false, 0)
	seqs := make([]uint64, 1)
	b.ReportAllocs()
	for i := range b.N {
		now := int64(i)
		c.Push(Message[int]{Handle: i, Size: 100}, now)
		es := c.Credit(1, 1, now)
		seqs[0] = es[0].Tag
		c.Settle(seqs, Ack, now)
	}
}

// BenchmarkBacklog pushes b.N messages with a per-queue TTL and then
// drains them, as a queue with a backlog does.
func BenchmarkBacklog(b *testing.B) {
	c := New[int](Policy{MaxLength: -1, MaxLengthBytes: -1}, 0)
	b.ReportAllocs()
	for i := range b.N {
		c.Push(Message[int]{Handle: i, Size: 100, Expires: int64(i) + 1e12}, int64(i))
	}
	c.Consume(1, 0, true, 0)
	for c.Info().Ready > 0 {
		c.Credit(1, 128, int64(b.N))
	}
}

// BenchmarkUnackedWindow keeps 4,000 deliveries unacked, as 20 consumers
// with a prefetch of 200 do on a busy queue: each message is pushed,
// delivered, and acked 4,000 deliveries later.
func BenchmarkUnackedWindow(b *testing.B) {
	const window = 4000
	c := New[int](Policy{MaxLength: -1, MaxLengthBytes: -1}, 0)
	c.Consume(1, 0, false, 0)
	ring := make([]uint64, window)
	seqs := make([]uint64, 1)
	b.ReportAllocs()
	for i := range b.N + window {
		now := int64(i)
		c.Push(Message[int]{Handle: i, Size: 100}, now)
		seq := c.Credit(1, 1, now)[0].Tag
		if i >= window {
			seqs[0] = ring[i%window]
			c.Settle(seqs, Ack, now)
		}
		ring[i%window] = seq
		if i == window {
			b.ResetTimer()
		}
	}
}

// BenchmarkTwentyConsumers is one queue with 20 consumers, as the driver
// runs it: messages are pushed between rounds, and each round credits every
// consumer in turn, takes back what is left, and acks what was delivered.
func BenchmarkTwentyConsumers(b *testing.B) {
	const consumers = 20
	c := New[int](Policy{MaxLength: -1, MaxLengthBytes: -1}, 0)
	for id := range consumers {
		c.Consume(ConsumerID(id+1), 0, false, 0)
	}
	tags := make([]uint64, 0, 128)
	b.ReportAllocs()
	for i := 0; i < b.N; {
		now := int64(i)
		for range 64 {
			c.Push(Message[int]{Handle: i, Size: 100}, now)
			i++
		}
		tags = tags[:0]
		for id := range consumers {
			for _, e := range c.Credit(ConsumerID(id+1), 8, now) {
				for j := range e.Entries {
					tags = append(tags, e.Tag+uint64(j))
				}
			}
		}
		for id := range consumers {
			c.TakeCredit(ConsumerID(id + 1))
		}
		c.Settle(tags, Ack, now)
	}
}
