package queue

import (
	"fmt"
	"maps"
	"slices"
)

// State is a core's whole state, as a quorum queue's Raft snapshot
// carries it: a core made from it by FromState behaves exactly as the
// original for every later command (the same effects, tags, consumer
// choices, counters).
//
// It is plain data: handles are held as they are (the caller serializes
// them), every order that matters is a slice's, and nothing points into
// the core. What can be worked out from the rest is left out, so that a
// snapshot cannot disagree with itself; FromState rebuilds it:
//   - the ready count and bytes, from the levels' entries;
//   - the consumers' summed credit, from Consumers;
//   - the unacked count and bytes, from Unacked;
//   - a level's tombstones (messages expired from the middle of its
//     pushed entries), from the gaps between Back's seqs up to Seq;
//   - the unacked table's ring and straggler map, from Unacked and
//     WindowBase;
//   - storage only (deque blocks, the effect arena, capacities), which
//     no command's outcome depends on.
type State[H any] struct {
	Policy Policy
	// Levels are the priority levels, lowest first: Policy.MaxPriority+1
	// of them.
	Levels []StateLevel[H]
	// Expiries is the expiry heap's array as it is, stale items (of
	// messages no longer ready) included: its order decides which of two
	// messages expiring at once goes first, and its top NextDeadline.
	Expiries []StateExpiry
	// Unacked are the deliveries awaiting settlement, by tag.
	Unacked []StateDelivery[H]
	// NextTag is the tag the next delivery takes.
	NextTag uint64
	// WindowBase is the unacked table's window start: deliveries with a
	// lower tag are stragglers, which the table keeps apart (the oldest
	// unacked age looks at them first).
	WindowBase uint64
	// Consumers are in dispatch order: by priority, highest first, then
	// subscription order.
	Consumers []StateConsumer
	// RR is the round-robin position among consumers of equal priority.
	RR int
	// Order is the last subscription order given.
	Order uint64
	// Active is the single active consumer (0: none).
	Active      ConsumerID
	LastUsed    int64
	HadUsers    bool
	DeleteAsked bool
	Stats       Stats
}

// StateLevel is one priority level's ready messages and counters.
type StateLevel[H any] struct {
	// Front are the requeued messages, by ascending Seq; Back the pushed
	// ones, by ascending Seq, every Back seq above every Front one.
	Front, Back []StateEntry[H]
	// Seq is the last seq given to a push.
	Seq uint64
	// MaxExpiry and Unbounded decide whether a push needs the expiry heap
	// (see level).
	MaxExpiry int64
	Unbounded bool
}

// StateEntry is an entry as State carries it: Entry's fields, its host's
// bit (Entry.Marked) included. It spells them out rather than embedding
// Entry, whose flags are unexported: a snapshot's encoder must see them.
type StateEntry[H any] struct {
	Handle     H
	Expires    int64
	Timestamp  int64
	Size       uint32
	Deliveries uint16
	Priority   uint8
	Mark       bool
	Seq        uint64
}

// StateExpiry is an item of the expiry heap: the message with Seq in
// level Level expires at At.
type StateExpiry struct {
	At    int64
	Seq   uint64
	Level uint8
}

// StateDelivery is an unacked delivery: its tag, when it went out, and
// the entry.
type StateDelivery[H any] struct {
	Tag   uint64
	At    int64
	Entry StateEntry[H]
}

// StateConsumer is a consumer as the core sees it.
type StateConsumer struct {
	ID       ConsumerID
	Priority int64
	Credit   int64
	NoAck    bool
	Order    uint64
}

func stateEntry[H any](e Entry[H]) StateEntry[H] {
	return StateEntry[H]{Handle: e.Handle, Expires: e.Expires, Timestamp: e.Timestamp, Size: e.Size,
		Deliveries: e.Deliveries, Priority: e.Priority, Mark: e.Marked(), Seq: e.Seq}
}

func (s StateEntry[H]) entry() Entry[H] {
	e := Entry[H]{Queued: Queued[H]{Handle: s.Handle, Expires: s.Expires, Timestamp: s.Timestamp, Size: s.Size,
		Deliveries: s.Deliveries, Priority: s.Priority}, Seq: s.Seq}
	if s.Mark {
		e.flags = flagMark
	}
	return e
}

// State returns the core's whole state (copies: the core may go on). It
// changes nothing, so the last command's effects stay valid.
func (c *Core[H]) State() State[H] {
	s := State[H]{Policy: c.policy, Levels: make([]StateLevel[H], len(c.levels)),
		NextTag: c.unacked.next(), WindowBase: c.unacked.base, RR: c.rr, Order: c.order, Active: c.active,
		LastUsed: c.lastUsed, HadUsers: c.hadUsers, DeleteAsked: c.deleteAsked, Stats: c.stats}
	for i := range c.levels {
		l := &c.levels[i]
		sl := StateLevel[H]{Seq: l.seq, MaxExpiry: l.maxExpiry, Unbounded: l.unbounded}
		for _, e := range l.front {
			sl.Front = append(sl.Front, stateEntry(e))
		}
		for j := range l.back.n {
			// Not frontEntry, which would skip (drop) leading tombstones.
			if q := l.back.at(j); !q.dead() {
				sl.Back = append(sl.Back, stateEntry(Entry[H]{Queued: *q, Seq: l.back.first + uint64(j)}))
			}
		}
		s.Levels[i] = sl
	}
	for _, it := range c.expiries.items {
		s.Expiries = append(s.Expiries, StateExpiry{At: it.at, Seq: it.seq, Level: it.prio})
	}
	u := &c.unacked
	delivery := func(tag uint64, d unackedEntry[H]) StateDelivery[H] {
		return StateDelivery[H]{Tag: tag, At: d.at, Entry: stateEntry(d.e)}
	}
	if len(u.old) > 0 {
		for _, tag := range slices.Sorted(maps.Keys(u.old)) {
			s.Unacked = append(s.Unacked, delivery(tag, u.old[tag]))
		}
	}
	for i := range u.n {
		if d := u.slot(i); d.e.Seq != 0 {
			s.Unacked = append(s.Unacked, delivery(u.base+uint64(i), *d))
		}
	}
	for _, cs := range c.consumers {
		s.Consumers = append(s.Consumers, StateConsumer{ID: cs.id, Priority: cs.priority, Credit: cs.credit,
			NoAck: cs.noAck, Order: cs.order})
	}
	return s
}

// FromState makes a core from a State (which it copies, keeping nothing of
// it). It panics on a state no core could have had: the wrong number of
// levels, a level's pushed seqs out of order or above its Seq, tags out of
// order or outside the table, an expiry in no level.
func FromState[H any](s State[H]) *Core[H] {
	c := New[H](s.Policy, s.LastUsed)
	if len(s.Levels) != len(c.levels) {
		panic(fmt.Sprintf("queue: a state of %d levels for max priority %d", len(s.Levels), s.Policy.MaxPriority))
	}
	for i, sl := range s.Levels {
		l := &c.levels[i]
		l.seq, l.maxExpiry, l.unbounded = sl.Seq, sl.MaxExpiry, sl.Unbounded
		for _, se := range sl.Front {
			l.front = append(l.front, se.entry())
			c.ready++
			c.bytes += int64(se.Size)
		}
		// The pushed entries hold every seq from the first on: the gaps
		// are tombstones, up to the last push's.
		for j, se := range sl.Back {
			if (j > 0 && se.Seq <= sl.Back[j-1].Seq) || se.Seq > sl.Seq {
				panic(fmt.Sprintf("queue: level %d's pushed seq %d out of order or above %d", i, se.Seq, sl.Seq))
			}
			for seq := l.back.first + uint64(l.back.n); j > 0 && seq < se.Seq; seq++ {
				l.back.pushBack(Queued[H]{flags: flagDead}, seq)
			}
			l.back.pushBack(se.entry().Queued, se.Seq)
			c.ready++
			c.bytes += int64(se.Size)
		}
		if l.back.n > 0 {
			for seq := l.back.first + uint64(l.back.n); seq <= sl.Seq; seq++ {
				l.back.pushBack(Queued[H]{flags: flagDead}, seq)
			}
		}
	}
	for _, it := range s.Expiries {
		if it.Level > s.Policy.MaxPriority {
			panic(fmt.Sprintf("queue: an expiry in level %d of %d", it.Level, len(c.levels)))
		}
		// Appended, not pushed: the array is already a heap, in the order
		// that breaks its ties.
		c.expiries.items = append(c.expiries.items, expiryItem{at: it.At, seq: it.Seq, prio: it.Level})
	}
	c.unacked = restoreUnacked[H](s.Unacked, s.WindowBase, s.NextTag)
	for _, sc := range s.Consumers {
		c.consumers = append(c.consumers, &consumerState{id: sc.ID, priority: sc.Priority, credit: sc.Credit,
			noAck: sc.NoAck, order: sc.Order})
		c.credit += sc.Credit
	}
	c.rr, c.order, c.active = s.RR, s.Order, s.Active
	c.hadUsers, c.deleteAsked, c.stats = s.HadUsers, s.DeleteAsked, s.Stats
	return c
}

// restoreUnacked rebuilds an unacked table from its deliveries: those
// below base are stragglers (the old map), the rest sit in a window from
// base to next.
func restoreUnacked[H any](ds []StateDelivery[H], base, next uint64) unackedTable[H] {
	if base < tableStart || next < base {
		panic(fmt.Sprintf("queue: an unacked window from tag %d to %d", base, next))
	}
	t := unackedTable[H]{base: base, n: int(next - base)}
	if t.n > 0 {
		size := 16 // grow's least ring
		for size < t.n {
			size *= 2
		}
		t.ring = make([]unackedEntry[H], size)
	}
	for i, d := range ds {
		if (i > 0 && d.Tag <= ds[i-1].Tag) || d.Tag < tableStart || d.Tag >= next || d.Entry.Seq == 0 {
			// Seq 0 is a settled slot's.
			panic(fmt.Sprintf("queue: unacked tag %d (seq %d) out of order or outside 1 to %d", d.Tag, d.Entry.Seq, next))
		}
		u := unackedEntry[H]{e: d.Entry.entry(), at: d.At}
		if d.Tag < base {
			if t.old == nil {
				t.old = map[uint64]unackedEntry[H]{}
			}
			t.old[d.Tag] = u
		} else {
			*t.slot(int(d.Tag - base)) = u
		}
		t.live++
		t.bytes += int64(d.Entry.Size)
	}
	return t
}
