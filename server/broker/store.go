package broker

import (
	"fmt"
	"time"

	"github.com/amqp-go/amqp-go/server/queue"
	"github.com/amqp-go/amqp-go/server/store"
)

// The broker keeps messages in a store.Store, the memory or the file
// implementation (server/store), through the few functions below: a queue
// knows the store only by its id (store.QueueID) and each message's
// store.Ref. Only persistent messages routed to durable queues (non-zero
// ids) are stored; everything else lives on the heap alone.

// putMessage stores m for the queues among queues that keep it in the
// store (storesMessage: durable ones, for a persistent message) and gives it
// its reference (m.ref). done is called once, as store.Store.Put says. A
// message no queue keeps in the store costs a look at each queue here.
// The ids are gathered in p's scratch (the store does not keep them).
func (s *Server) putMessage(p *publisher, m *Message, queues []*Queue, done func(error)) {
	ids := p.storeIDs[:0]
	ttlQueue := false
	for _, q := range queues {
		if q.storesMessage(m) {
			ids = append(ids, store.QueueID(q.id))
			ttlQueue = ttlQueue || q.settings().ttl >= 0
		}
	}
	if len(ids) == 0 {
		finishPut(done)
		return
	}
	p.storeIDs = ids
	m.Meta = messageMeta(m, ttlQueue)
	sm := &m.Message
	if !m.Persistent {
		// Kept for quorum queues only: the store keeps what it is told
		// is persistent (and gives it back as persistent after a restart).
		c := m.Message
		c.Persistent = true
		sm = &c
	}
	// A failure is also given to done, which nacks the publisher.
	m.ref, _ = s.store.Put(sm, ids, done)
}

func finishPut(done func(error)) {
	if done != nil {
		done(nil)
	}
}

// releaseEntries tells the store that q let go of these entries (acked,
// purged, expired, dead-lettered). A transient queue holds nothing there,
// and a deleted one was dropped whole.
func (q *Queue) releaseEntries(n int, ref func(i int) store.Ref) {
	if q.id == 0 || q.dropped.Load() {
		return
	}
	refs := make([]store.Ref, 0, n)
	for i := range n {
		if r := ref(i); !r.IsZero() {
			refs = append(refs, r)
		}
	}
	if len(refs) > 0 {
		q.store.Release(store.QueueID(q.id), refs)
	}
}

// loadMessage reads a paged-out message back from the store.
func (q *Queue) loadMessage(ref store.Ref) (*Message, error) {
	if ref.IsZero() {
		return nil, fmt.Errorf("message is neither in memory nor in the store")
	}
	sm, err := q.store.Load(ref)
	if err != nil {
		return nil, fmt.Errorf("read message %d at segment %d offset %d: %w", ref.ID, ref.Segment, ref.Offset, err)
	}
	return &Message{Message: *sm, ref: ref}, nil
}

// dropFromStore records that q was deleted with everything it held.
func (q *Queue) dropFromStore() {
	if q.id == 0 {
		return
	}
	q.dropped.Store(true)
	q.store.DropQueue(store.QueueID(q.id))
}

// messageMeta is what recovery needs of m to give it back its priority and
// TTL clock: the priority, and when a TTL applies the publish time and the
// message's own deadline. A message with neither keeps the smaller
// version 1 record.
func messageMeta(m *Message, ttlQueue bool) store.Meta {
	meta := store.Meta{Priority: m.Priority}
	if ttlQueue || m.hasTTL {
		now := queue.Now()
		meta.Timestamp = now
		if m.hasTTL {
			meta.Expires = now + m.ttl*int64(time.Millisecond)
		}
	}
	return meta
}
