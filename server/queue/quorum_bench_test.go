package queue

import (
	"bytes"
	"encoding/binary"
	"encoding/gob"
	"errors"
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

// kilobyteCodec gives each int handle a 1,000-byte body, as a 1 KB
// message's handle has.
type kilobyteCodec struct{}

var kilobyte [1000]byte

func (kilobyteCodec) AppendHandle(dst []byte, h int) []byte {
	return append(binary.BigEndian.AppendUint64(dst, uint64(h)), kilobyte[:]...)
}

func (kilobyteCodec) DecodeHandle(b []byte) (int, error) {
	if len(b) != 8+len(kilobyte) {
		return 0, errors.New("bad handle")
	}
	return int(binary.BigEndian.Uint64(b)), nil
}

// BenchmarkQuorumSnapshot encodes the snapshot of a queue holding 100,000
// ready messages of 1 KB, in the split encoding (split) and, for the
// record, as the whole gob it used to be (gob); restore decodes the
// split one.
func BenchmarkQuorumSnapshot(b *testing.B) {
	const n = 100_000
	q := NewQuorum[int](Policy{MaxLength: -1, MaxLengthBytes: -1}, &benchLog{}, kilobyteCodec{}, benchHost{}, Owner{Node: 1, Incarnation: 1}, nil)
	st := q.core.State()
	for i := range n {
		st.Levels[0].Back = append(st.Levels[0].Back, StateEntry[int]{Handle: i, Size: 1008, Seq: uint64(i + 1)})
	}
	st.Levels[0].Seq = n
	q.core = FromState(st)
	b.Run("split", func(b *testing.B) {
		b.SetBytes(n * 1008)
		for b.Loop() {
			if _, err := q.Snapshot(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("gob", func(b *testing.B) {
		b.SetBytes(n * 1008)
		for b.Loop() {
			q.mu.Lock()
			s, st := q.snapshotParts(), q.core.State()
			q.mu.Unlock()
			s.State = mapState(st, func(h int) []byte { return kilobyteCodec{}.AppendHandle(nil, h) })
			var buf bytes.Buffer
			if err := gob.NewEncoder(&buf).Encode(&s); err != nil {
				b.Fatal(err)
			}
		}
	})
	snap, err := q.Snapshot()
	if err != nil {
		b.Fatal(err)
	}
	b.Run("restore", func(b *testing.B) {
		b.SetBytes(n * 1008)
		for b.Loop() {
			r := NewQuorum[int](Policy{}, &benchLog{}, kilobyteCodec{}, benchHost{}, Owner{Node: 1, Incarnation: 1}, nil)
			if err := r.Restore(snap); err != nil {
				b.Fatal(err)
			}
		}
	})
}
