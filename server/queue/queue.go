package queue

// Queue is a queue as the protocol layer calls it, whatever keeps its
// messages: the classic queue (Classic, a Core driven by a goroutine of its
// own) is the first kind; a quorum queue (the same Core applied from a
// Raft log) and a stream are the next. H is the message handle the kind's
// Host understands. Every method is safe for concurrent use; none calls a
// Consumer or the Host while holding a lock of the queue's.
type Queue[H any] interface {
	// Push enqueues a routed message and returns the ready count and
	// consumers after it (for flow control), or ErrRejected from a full
	// reject-publish queue. Delivery happens later, on the queue's terms.
	// m.Timestamp, when set, is the push's time as well as the message's.
	Push(m Message[H]) (ready int64, consumers int, err error)
	// PushRecovered enqueues the messages a restart found, in order,
	// before any consumer is added.
	PushRecovered(ms []Message[H])
	// Admits reports whether a reject-publish queue would take a message
	// of size bytes now (the publisher's admission check).
	Admits(size uint32) bool
	// Consume adds a consumer, which the queue then grants messages to
	// through Consumer.Acquire and Consumer.Deliver.
	Consume(c Consumer[H], priority int64, noAck bool) ConsumerID
	// Cancel removes a consumer (its unacked messages stay unacked) and
	// reports whether consumers are left.
	Cancel(id ConsumerID) bool
	// Settle acks, rejects (dead-lettering if the queue has a
	// dead-letter exchange) or requeues deliveries by the tags Deliver and
	// Get gave them.
	Settle(tags []uint64, outcome Outcome)
	// Get takes the head message (basic.get) and its tag (0 with noAck).
	Get(noAck bool) (e Entry[H], tag uint64, ok bool)
	// GiveBack returns a message taken by Get, with its tag, that could
	// not be handed over, as if never taken.
	GiveBack(e Entry[H], tag uint64)
	// Purge drops every ready message and returns how many.
	Purge() int
	// Delete releases everything and stops the queue; it returns the
	// ready count it held.
	Delete() int
	// Close stops the queue keeping its messages (server shutdown).
	Close()
	// Info reports counts, ages, counters and rates (queue.declare-ok,
	// the management API, metrics).
	Info() Info
	// SampleRates takes a sample of the counters for Info's rates; the
	// broker calls it for every queue once per sampling interval.
	SampleRates()
	// Head returns the head message, the next to go out, leaving it in
	// place (ok false: none is ready), for reading its properties.
	Head() (e Entry[H], ok bool)
	// Backlog is the ready messages, their body bytes and the consumers,
	// cheaper than Info.
	Backlog() (ready, readyBytes int64, consumers int)
	// Touch records a use for x-expires (declare, basic.get).
	Touch()
	// Wake asks the queue to look for work (a consumer has credit again).
	Wake()
	// SetPolicy changes the queue's limits, dead-lettering and expiry (a
	// policy was set or cleared); lower limits drop what they leave over
	// at once. MaxPriority and SingleActive keep their declared values.
	SetPolicy(p Policy)
}

var _ Queue[struct{}] = (*Classic[struct{}])(nil)
