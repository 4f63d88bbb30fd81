package queue

import (
	"maps"
	"slices"
)

// unackedTable holds the deliveries awaiting settlement, addressed by
// their delivery tag: the place each took in delivery order since the core
// began (tags start at 1; 0 is none, a no-ack delivery). Recent tags sit in
// a ring, the window, indexed by tag-base, so settling costs an index
// instead of a map lookup; when the window's front is mostly settled, the
// live entries there (a delivery held while thousands after it were
// settled) move to a map, so the window stays dense and a straggler cannot
// make it grow without bound.
type unackedTable[H any] struct {
	ring  []unackedEntry[H] // len a power of two; a settled slot has Seq 0
	head  int               // ring index of tag base
	n     int               // the window's places, settled ones included
	base  uint64
	old   map[uint64]unackedEntry[H] // live entries with tags below base
	live  int
	bytes int64
}

type unackedEntry[H any] struct {
	e  Entry[H]
	at int64 // delivery time, for the oldest unacked age
}

// tableStart is the first tag: 0 means none.
const tableStart = 1

// next is the tag the next delivery takes.
func (t *unackedTable[H]) next() uint64 { return t.base + uint64(t.n) }

// slot is the window's place i (0: base).
func (t *unackedTable[H]) slot(i int) *unackedEntry[H] {
	return &t.ring[(t.head+i)&(len(t.ring)-1)]
}

// add records a delivery of e at time at and returns its tag.
func (t *unackedTable[H]) add(e Entry[H], at int64) uint64 {
	if t.n == len(t.ring) {
		t.grow()
	}
	tag := t.next()
	*t.slot(t.n) = unackedEntry[H]{e: e, at: at}
	t.n++
	t.live++
	t.bytes += int64(e.Size)
	return tag
}

func (t *unackedTable[H]) grow() {
	ring := make([]unackedEntry[H], max(16, 2*len(t.ring)))
	for i := range t.n {
		ring[i] = *t.slot(i)
	}
	t.ring, t.head = ring, 0
}

// take removes the delivery with tag (ok false: none is unacked).
// Callers compact after a batch of takes.
func (t *unackedTable[H]) take(tag uint64) (e Entry[H], ok bool) {
	switch {
	case tag >= t.base && tag-t.base < uint64(t.n):
		s := t.slot(int(tag - t.base))
		if s.e.Seq == 0 {
			return e, false
		}
		e = s.e
		*s = unackedEntry[H]{}
	case tag != 0 && tag < t.base && len(t.old) > 0:
		u, found := t.old[tag]
		if !found {
			return e, false
		}
		delete(t.old, tag)
		if len(t.old) == 0 {
			t.old = nil // a Go map keeps its grown storage when emptied
		}
		e = u.e
	default:
		return e, false
	}
	t.live--
	t.bytes -= int64(e.Size)
	return e, true
}

// compact drops the settled front of the window and, while the window is
// mostly settled, moves the live entries of its older half to old: after
// it the window spans at most 64 places or holds a live entry in every
// four.
func (t *unackedTable[H]) compact() {
	t.skipSettled()
	for t.n > 64 && t.n > 4*(t.live-len(t.old)) {
		half := t.n / 2
		for i := range half {
			s := t.slot(i)
			if s.e.Seq != 0 {
				if t.old == nil {
					t.old = map[uint64]unackedEntry[H]{}
				}
				t.old[t.base+uint64(i)] = *s
				*s = unackedEntry[H]{}
			}
		}
		t.advance(half)
		t.skipSettled()
	}
	if t.n == 0 && len(t.ring) > 4096 {
		t.ring, t.head = nil, 0 // a burst's ring is not kept
	}
}

// advance moves the window's start i places on; they are settled.
func (t *unackedTable[H]) advance(i int) {
	t.head = (t.head + i) & (len(t.ring) - 1)
	t.n -= i
	t.base += uint64(i)
}

func (t *unackedTable[H]) skipSettled() {
	i := 0
	for i < t.n && t.slot(i).e.Seq == 0 {
		i++
	}
	if i > 0 {
		t.advance(i)
	}
}

// oldest is when the longest-unacked delivery went out (0: none). The
// entries in old predate the window's.
func (t *unackedTable[H]) oldest() int64 {
	at := int64(0)
	for _, u := range t.old {
		if at == 0 || u.at < at {
			at = u.at
		}
	}
	if at == 0 && t.n > 0 {
		at = t.slot(0).at // live: compact leaves no settled front
	}
	return at
}

// takeAll removes every unacked delivery, appending their entries to es in
// delivery order.
func (t *unackedTable[H]) takeAll(es []Entry[H]) []Entry[H] {
	if len(t.old) > 0 { // sorting the keys of even an empty map allocates
		for _, tag := range slices.Sorted(maps.Keys(t.old)) {
			es = append(es, t.old[tag].e)
		}
	}
	for i := range t.n {
		if s := t.slot(i); s.e.Seq != 0 {
			es = append(es, s.e)
		}
	}
	t.base = t.next()
	t.ring, t.head, t.n, t.old, t.live, t.bytes = nil, 0, 0, nil, 0, 0
	return es
}
