package queue

// Delayed is the core of a delayed-message exchange (x-delayed-message):
// messages wait until their due time, then come out to be routed, earliest
// first and, at the same time, in the order they came. Like Core it does
// no I/O and reads no clock; an entry costs what a queued one does, so a
// million scheduled messages cost about as much as a million queued ones.
type Delayed[H any] struct {
	items   minHeap[Entry[H]]
	nextSeq uint64
	out     []Entry[H]
}

// NewDelayed makes an empty scheduler.
func NewDelayed[H any]() *Delayed[H] {
	return &Delayed[H]{items: minHeap[Entry[H]]{less: func(a, b Entry[H]) bool {
		if a.Expires != b.Expires {
			return a.Expires < b.Expires
		}
		return a.Seq < b.Seq
	}}}
}

// Schedule holds m until due (ns on the driver's clock). Its Expires field
// is the due time in the entries Due returns.
func (d *Delayed[H]) Schedule(m Message[H], due int64) {
	d.nextSeq++
	e := m.entry(d.nextSeq)
	e.Expires = due
	d.items.push(e)
}

// Due takes every message due at now, in due-time order (ties in schedule
// order). The slice is valid until the next call.
func (d *Delayed[H]) Due(now int64) []Entry[H] { return d.DueMax(now, 0) }

// DueMax is Due taking at most max messages (max <= 0: no limit), so that
// a driver releasing a large backlog at once (a restart after downtime)
// works in bounded rounds; the rest stay due for the next call.
func (d *Delayed[H]) DueMax(now int64, max int) []Entry[H] {
	clear(d.out)
	d.out = d.out[:0]
	for d.items.len() > 0 && d.items.top().Expires <= now && (max <= 0 || len(d.out) < max) {
		d.out = append(d.out, d.items.pop())
	}
	return d.out
}

// NextDeadline is when the next message is due (0: none).
func (d *Delayed[H]) NextDeadline() int64 {
	if d.items.len() == 0 {
		return 0
	}
	return d.items.top().Expires
}

// Len is the number of messages waiting.
func (d *Delayed[H]) Len() int { return d.items.len() }

// Drain takes every waiting message (the exchange is deleted).
func (d *Delayed[H]) Drain() []Entry[H] {
	out := make([]Entry[H], 0, d.items.len())
	for d.items.len() > 0 {
		out = append(out, d.items.pop())
	}
	return out
}
