package queue

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

// benchLog applies every proposed command on every member, in order, on
// one goroutine, as a Raft group's loop does, without Raft's own cost:
// what is left is the quorum queue's own work per command.
type benchLog struct {
	cmds    chan []byte
	members []*Quorum[int]
}

func (l *benchLog) Propose(cmd []byte, dropped func()) { l.cmds <- cmd }

func (l *benchLog) run(done chan struct{}) {
	defer close(done)
	for cmd := range l.cmds {
		for _, m := range l.members {
			m.Apply(cmd)
		}
	}
}

type benchHost struct{}

func (benchHost) Release([]Entry[int])                 {}
func (benchHost) DeadLetter([]Entry[int], Reason)      {}
func (benchHost) Prepare(es []Entry[int]) []Entry[int] { return es }
func (benchHost) Expired()                             {}

// ackingConsumer settles every delivery at once, on the member it
// consumes from.
type ackingConsumer struct {
	q        *Quorum[int]
	inFlight atomic.Int64
	acked    atomic.Int64
	tags     []uint64
}

func (c *ackingConsumer) Acquire(n int64) int64 {
	take := min(n, 200-c.inFlight.Load())
	if take <= 0 {
		return 0
	}
	c.inFlight.Add(take)
	return take
}

func (c *ackingConsumer) Unacquire(n int64) { c.inFlight.Add(-n) }

func (c *ackingConsumer) Deliver(es []Entry[int], tag uint64) {
	c.tags = c.tags[:0]
	for i := range es {
		c.tags = append(c.tags, tag+uint64(i))
	}
	c.inFlight.Add(-int64(len(es)))
	c.q.Settle(c.tags, Ack)
	c.acked.Add(int64(len(es)))
}

// BenchmarkQuorumPushDeliverAck is one message's way through a 3-member
// quorum queue: a push on member 0, its delivery to a consumer on member
// 1, and that consumer's ack, each command applied on all three members.
func BenchmarkQuorumPushDeliverAck(b *testing.B) {
	l := &benchLog{cmds: make(chan []byte, 4096)}
	p := Policy{MaxLength: -1, MaxLengthBytes: -1}
	for i := range 3 {
		l.members = append(l.members, NewQuorum[int](p, l, intCodec{}, benchHost{}, Owner{Node: uint64(i + 1), Incarnation: 1}, nil))
	}
	l.members[0].LeaderChanged(1, true)
	for _, m := range l.members[1:] {
		m.LeaderChanged(1, false)
	}
	done := make(chan struct{})
	go l.run(done)
	c := &ackingConsumer{q: l.members[1]}
	l.members[1].Consume(c, 0, false)
	var window sync.WaitGroup
	sem := make(chan struct{}, 100) // a publisher's confirm window
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		sem <- struct{}{}
		window.Add(1)
		l.members[0].PushAsync(Message[int]{Handle: i, Size: 1000}, func(error) { <-sem; window.Done() })
	}
	window.Wait()
	for c.acked.Load() < int64(b.N) {
		runtime.Gosched()
	}
	b.StopTimer()
	for _, m := range l.members {
		m.Close()
	}
	close(l.cmds)
	<-done
}
