package broker

import (
	"errors"
	"fmt"
	"time"

	"github.com/amqp-go/amqp-go/shared/wal"
)

// storeRef locates a message in the durable log (id 0: not in the log).
// It is kept small because a long queue holds one per message: segments
// are numbered well below 2^32 and are at most 2 GiB (Open checks), so
// both fit in 32 bits.
type storeRef struct {
	id  uint64
	seg uint32
	off uint32
}

func refAt(id uint64, pos wal.Position) storeRef {
	return storeRef{id: id, seg: uint32(pos.Segment), off: uint32(pos.Offset)}
}

func (r storeRef) pos() wal.Position {
	return wal.Position{Segment: uint64(r.seg), Offset: int64(r.off)}
}

// maxSegmentSize keeps record offsets within storeRef's 32 bits.
const maxSegmentSize = 2 << 30

// fileStore is the durable MessageStore: persistent messages routed to
// durable queues are appended once to the segment log (shared/wal), which
// is the only copy on disk; publisher confirms wait for the fsync that
// covers them. Everything else stays on the heap, as in memoryStore.
type fileStore struct {
	log *wal.Log
	// memoryOnly: persistent messages are not logged (storage.persistent
	// false).
	memoryOnly bool
}

func (s *fileStore) Put(m *Message, queues []*Queue, done func(error)) {
	if !m.Persistent || s.memoryOnly {
		if done != nil {
			done(nil)
		}
		return
	}
	var ids []uint64
	ttlQueue := false
	for _, q := range queues {
		if q.id != 0 {
			ids = append(ids, q.id)
			ttlQueue = ttlQueue || q.policy.ttl >= 0
		}
	}
	if len(ids) == 0 {
		if done != nil {
			done(nil)
		}
		return
	}
	wm := &wal.Message{Queues: ids, Exchange: m.Exchange, RoutingKey: m.RoutingKey, Properties: m.Props, Body: m.Body,
		Meta: messageMeta(m, ttlQueue)}
	pos, err := s.log.Append(wm, done)
	if err != nil {
		if done != nil {
			done(err)
		}
		return
	}
	m.ref = refAt(wm.ID, pos)
}

func (s *fileStore) Release(q *Queue, es []qentry) {
	if q.id == 0 || q.dropped.Load() {
		return
	}
	var refs []wal.Ref
	for _, e := range es {
		if e.ref.id != 0 {
			refs = append(refs, wal.Ref{ID: e.ref.id, Segment: uint64(e.ref.seg)})
		}
	}
	if len(refs) > 0 {
		s.log.Ack(q.id, refs, nil)
	}
}

func (s *fileStore) Load(e *qentry) error {
	if e.msg != nil {
		return nil
	}
	if e.ref.id == 0 {
		return errors.New("message is neither in memory nor in the log")
	}
	wm, err := s.log.ReadMessage(e.ref.pos())
	if err != nil {
		return fmt.Errorf("read message %d at segment %d offset %d: %w", e.ref.id, e.ref.seg, e.ref.off, err)
	}
	e.msg = &Message{Exchange: wm.Exchange, RoutingKey: wm.RoutingKey, Props: wm.Properties, Body: wm.Body,
		Persistent: true, ref: e.ref}
	return nil
}

func (s *fileStore) DropQueue(q *Queue) {
	if q.id == 0 {
		return
	}
	q.dropped.Store(true)
	s.log.DropQueue(q.id, nil)
}

func (s *fileStore) Pages() bool { return true }

func (s *fileStore) Close() error { return s.log.Close() }

// messageMeta is what recovery needs of m to give it back its priority and
// TTL clock: the priority, and when a TTL applies the publish time and the
// message's own deadline. A message with neither keeps the smaller
// version 1 record.
func messageMeta(m *Message, ttlQueue bool) wal.Meta {
	meta := wal.Meta{Priority: m.priority}
	if ttlQueue || m.hasTTL {
		now := time.Now().UnixNano()
		meta.Timestamp = now
		if m.hasTTL {
			meta.Expires = now + m.ttl*int64(time.Millisecond)
		}
	}
	return meta
}
