package broker

import "errors"

// MessageStore is the queue's storage boundary: queues hold message
// references (entries) and tell the store when they take and drop them.
// The memory implementation keeps everything on the heap; the file
// implementation (filestore.go) appends persistent messages for durable
// queues to the segment log, confirms after the fsync that covers them, and
// lets queues page cold messages out of memory and read them back.
//
// Methods are called from many goroutines (connection readers, queue owners)
// and must be safe for concurrent use.
type MessageStore interface {
	// Put takes m for the given queues. done is called exactly once when m
	// is as safe as this store makes it — at once for memory, after the
	// covering fsync for a durable store — or with the error that prevented
	// it. done must not block.
	Put(m *Message, queues []*Queue, done func(error))
	// Release records that q no longer holds these entries (acked, purged,
	// dropped).
	Release(q *Queue, es []qentry)
	// Load fills e.msg for an entry that was paged out.
	Load(e *qentry) error
	// DropQueue records that q was deleted with everything it held.
	DropQueue(q *Queue)
	// Pages reports whether entries may be paged out (Load can read them).
	Pages() bool
	// Close flushes and releases the store.
	Close() error
}

// memoryStore keeps messages on the heap only; the garbage collector frees a
// message once its last queue lets go.
type memoryStore struct{}

// NewMemoryStore returns the store used when nothing needs to survive a
// restart.
func NewMemoryStore() MessageStore { return memoryStore{} }

func (memoryStore) Put(_ *Message, _ []*Queue, done func(error)) {
	if done != nil {
		done(nil)
	}
}

func (memoryStore) Release(*Queue, []qentry) {}

func (memoryStore) Load(e *qentry) error {
	if e.msg == nil {
		return errors.New("memory store: message not in memory")
	}
	return nil
}

func (memoryStore) DropQueue(*Queue) {}

func (memoryStore) Pages() bool { return false }

func (memoryStore) Close() error { return nil }
