// Package store is the broker's message store: it keeps message bodies
// keyed by reference for the queues that hold them, so a queue can keep a
// small Ref per message and read the body back when it needs it. Two
// implementations share one contract and one conformance suite
// (storetest): NewMemory keeps bodies on the heap, OpenFile appends them
// to the segment log (shared/wal) and brings them back after a restart.
//
// Only persistent messages routed to at least one durable queue (a
// non-zero QueueID) are stored, by both implementations alike: Put gives
// every other message the zero Ref and keeps nothing, so the caller keeps
// transient messages on its own heap. That keeps the memory store an exact
// model of the file store (same refs, holders and Stats for the same
// calls) and keeps the file store from tracking what it never writes.
//
// Both stores index the (queue, message) pairs they hold, so Release and
// DropQueue are exact: releasing a pair that is not held is ignored rather
// than miscounted (the segment log trusts its caller and would reclaim a
// segment early), and Load refuses a message no queue holds any more. The
// index costs 16 bytes per stored message and 8 per (queue, message) pair,
// plus the maps' overhead.
//
// # Concurrency
//
// Every method is safe for concurrent use. Put, Release, Load, DropQueue
// and Sync never wait for I/O to finish (Put and Release may wait briefly
// for the log's back-pressure; Load reads a record). done callbacks run on
// the store's own goroutine (the file store's commit goroutine) or, for
// the memory store, inside Put: they must not block and must not call
// back into the store.
package store

import (
	"errors"
	"iter"
	"time"

	"github.com/amqp-go/amqp-go/shared/wal"
)

// QueueID names a durable queue to the store; 0 is a queue that is not
// durable, which the store never holds anything for.
type QueueID uint64

// Ref locates a stored message. The zero Ref means "not in the store": the
// message lives only in its caller's memory and cannot be paged out. A long
// queue holds one per message, so it is kept to 16 bytes: segments are
// numbered well below 2^32 and at most MaxSegmentSize long. The memory
// store's refs carry only an ID.
type Ref struct {
	ID      uint64
	Segment uint32
	Offset  uint32
}

// IsZero reports whether r is the zero Ref.
func (r Ref) IsZero() bool { return r.ID == 0 }

func (r Ref) walRef() wal.Ref { return wal.Ref{ID: r.ID, Segment: uint64(r.Segment)} }

// MaxSegmentSize is the largest segment size a Ref can address.
const MaxSegmentSize = 2 << 30

// Meta is what a queue needs of a message after a restart without reading
// its body: it is stored with the message (segment log record version 2)
// and returned by Recover. The zero Meta is also what messages written
// before the log could carry it recover with.
type Meta struct {
	// Timestamp is the publish time (unix ns; 0: unknown). A queue's own
	// x-message-ttl is applied from it, so one record can serve queues
	// with different TTLs.
	Timestamp int64
	// Expires is the message's own deadline (expiration property), unix
	// ns; 0: never.
	Expires int64
	// Due is when a delayed message becomes deliverable (unix ns); 0: not
	// delayed.
	Due      int64
	Priority uint8
}

// Message is one published message. The store may keep m (the memory
// store does), so it must not be modified after Put, nor a loaded one
// ever.
type Message struct {
	Exchange   string
	RoutingKey string
	// Properties are the raw AMQP basic properties (flags word + list).
	Properties []byte
	Body       []byte
	// Persistent is delivery_mode 2: only persistent messages are stored.
	Persistent bool
	Meta
}

// Entry is one live message of a recovered queue.
type Entry struct {
	Ref  Ref
	Meta Meta
	// Size is the body's size, for length limits in bytes.
	Size uint32
}

// RecoveredQueue is what a durable queue held when the store was opened.
type RecoveredQueue struct {
	// Corrupt: a damaged record may have held messages or acks of it (the
	// broker refuses the queue until an offline repair).
	Corrupt bool
	// log is the log's own list, converted entry by entry as it is read:
	// a million recovered messages are not copied into a second list.
	log []wal.Entry
}

// Len is the number of its live messages.
func (q *RecoveredQueue) Len() int { return len(q.log) }

// Entries yields its live messages in publish order.
func (q *RecoveredQueue) Entries() iter.Seq[Entry] {
	return func(yield func(Entry) bool) {
		for i := range q.log {
			e := &q.log[i]
			if !yield(Entry{Ref: refAt(e.ID, e.Pos), Meta: Meta(e.Meta), Size: e.BodySize}) {
				return
			}
		}
	}
}

// Corruption is a damaged stretch of the log other than a torn tail.
type Corruption struct {
	File           string
	Offset, Length int64
	Reason         string
	// Queues are those the damaged record names; empty: unknown (any
	// durable queue may be affected).
	Queues []QueueID
}

// TornTail is a partial write at the end of the log, cut on open.
type TornTail struct {
	File          string
	Offset, Bytes int64
	Reason        string
}

// Recovered is what the store held when it was opened.
type Recovered struct {
	Queues      map[QueueID]*RecoveredQueue
	Corruptions []Corruption
	TornTail    *TornTail // nil if none
	// Scan figures of the file store (zero for memory).
	Segments int
	Bytes    int64
	Duration time.Duration
}

// Stats are the store's counters. Messages and Holds count what queues
// hold now (the queues count their own bytes).
type Stats struct {
	Messages int64 // stored messages held by at least one queue
	Holds    int64 // (queue, message) pairs
	// Log is the segment log's own counters (zero for the memory store).
	Log wal.Stats
}

// Errors of the stores.
var (
	// ErrNotFound: the ref was never issued, or every queue has released
	// it (or was dropped).
	ErrNotFound = errors.New("store: message not found (released, or never stored)")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("store: closed")
	// errRecovered: Recover hands its result over once.
	errRecovered = errors.New("store: Recover already called")
)

// Store keeps messages for the queues that hold them. See the package
// comment for what is stored and for concurrency.
type Store interface {
	// Put stores m for the durable queues among queues (duplicates and
	// zero ids are ignored) and returns its Ref, or the zero Ref when m
	// is not stored (not persistent, or no durable queue). done (may be
	// nil) is called exactly once: with nil when m is as safe as this
	// store makes it (at once for memory; after the covering fsync for
	// the file store), or with the error that prevented it, which Put
	// also returns when it fails at once. done may run before Put
	// returns. Put does not keep queues once it returns.
	Put(m *Message, queues []QueueID, done func(error)) (Ref, error)
	// Release records that q no longer holds refs (acked, purged,
	// expired). Refs q does not hold, and zero refs, are ignored; a
	// message no queue holds is freed.
	Release(q QueueID, refs []Ref)
	// Load reads a stored message back. It fails with ErrNotFound once
	// every queue released the message.
	Load(ref Ref) (*Message, error)
	// DropQueue records that q was deleted with everything it held.
	DropQueue(q QueueID)
	// Sync calls done once every Put, Release and DropQueue that returned
	// before the call is as safe as the store makes it (at once for
	// memory; after the fsync covering them for the file store, at once
	// if nothing is pending), or with the error that prevented it
	// (ErrClosed after Close). It never waits itself: done runs as Put's
	// does, and may run before Sync returns. The broker calls it before
	// answering a channel's synchronous method after acks.
	Sync(done func(error))
	// Recover returns what durable queues held when the store was opened
	// (nothing, for a new memory store), without reading bodies. It hands
	// the result over: call it once, before releasing recovered refs.
	Recover() (*Recovered, error)
	// Stats returns a snapshot of the counters.
	Stats() Stats
	// Close flushes what is pending (its done callbacks run before Close
	// returns) and releases the store; later calls fail with ErrClosed.
	Close() error
}
