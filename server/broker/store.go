package broker

// MessageStore is the queue's storage boundary: queues hold *Message
// references and tell the store when they take and drop them. The memory
// implementation keeps everything on the heap; a durable implementation
// appends persistent messages for durable queues to a log and confirms after
// the fsync that covers them.
//
// Methods are called from many goroutines (connection readers, queue owners)
// and must be safe for concurrent use.
type MessageStore interface {
	// Put takes m for the given queues (all of which already hold a
	// reference). done is called exactly once when m is as safe as this
	// store makes it — immediately for memory, after the covering fsync for
	// a durable store — or with the error that prevented it. done must not
	// block.
	Put(m *Message, queues []*Queue, done func(error))
	// Release records that q no longer holds m (acked, purged, dropped).
	Release(q *Queue, m *Message)
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

func (memoryStore) Release(_ *Queue, m *Message) { m.refs.Add(-1) }

func (memoryStore) Close() error { return nil }
