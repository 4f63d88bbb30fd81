package queue

import "sort"

// level holds one priority's ready messages in Seq order: requeued ones,
// which always sort before the rest, in front; the others in back, in push
// order. Expired messages taken from the middle of back leave tombstones
// (dead entries that keep their Seq for searches) that the head skips.
type level[H any] struct {
	front []Entry[H] // requeued, ascending Seq
	back  []Entry[H]
	head  int // first entry of back still held
	// maxExpiry is the latest expiry pushed: a message expiring before it
	// is out of order and needs the expiry heap. unbounded is set once a
	// message that never expires was pushed: every later expiring one
	// needs the heap too. Both reset when the level empties.
	maxExpiry int64
	unbounded bool
}

// empty reports whether the level holds no ready message.
func (l *level[H]) empty() bool { return l.frontEntry() == nil }

func (l *level[H]) pushBack(e Entry[H]) { l.back = append(l.back, e) }

// skipDead moves head past tombstones and compacts a mostly taken back.
func (l *level[H]) skipDead() {
	for l.head < len(l.back) && l.back[l.head].dead {
		l.back[l.head] = Entry[H]{}
		l.head++
	}
	switch {
	case l.head == len(l.back):
		l.back, l.head = l.back[:0], 0
	case l.head > 1024 && l.head > len(l.back)/2:
		n := copy(l.back, l.back[l.head:])
		clear(l.back[n:])
		l.back, l.head = l.back[:n], 0
	}
}

// frontEntry returns the next message, or nil.
func (l *level[H]) frontEntry() *Entry[H] {
	if len(l.front) > 0 {
		return &l.front[0]
	}
	l.skipDead()
	if l.head < len(l.back) {
		return &l.back[l.head]
	}
	return nil
}

func (l *level[H]) popFront() (Entry[H], bool) {
	if len(l.front) > 0 {
		e := l.front[0]
		l.front[0] = Entry[H]{}
		l.front = l.front[1:]
		if len(l.front) == 0 {
			l.front = nil
		}
		return e, true
	}
	l.skipDead()
	if l.head == len(l.back) {
		return Entry[H]{}, false
	}
	e := l.back[l.head]
	l.back[l.head] = Entry[H]{}
	l.head++
	l.skipDead()
	return e, true
}

// remove takes the message with seq out of the middle (ok false: it is not
// ready here).
func (l *level[H]) remove(seq uint64) (Entry[H], bool) {
	i := sort.Search(len(l.front), func(i int) bool { return l.front[i].Seq >= seq })
	if i < len(l.front) && l.front[i].Seq == seq {
		e := l.front[i]
		l.front = append(l.front[:i], l.front[i+1:]...)
		return e, true
	}
	live := l.back[l.head:]
	j := sort.Search(len(live), func(j int) bool { return live[j].Seq >= seq })
	if j < len(live) && live[j].Seq == seq && !live[j].dead {
		e := live[j]
		live[j] = Entry[H]{Seq: seq, dead: true} // drops the handle, keeps the order
		l.skipDead()
		return e, true
	}
	return Entry[H]{}, false
}

// insert puts a requeued message back at its place by Seq.
func (l *level[H]) insert(e Entry[H]) {
	l.skipDead()
	if l.head < len(l.back) && e.Seq > l.back[l.head].Seq {
		// Not before every pushed message (only a driver bug does this):
		// keep the order anyway, at a copy's cost.
		live := l.back[l.head:]
		j := l.head + sort.Search(len(live), func(j int) bool { return live[j].Seq >= e.Seq })
		l.back = append(l.back, Entry[H]{})
		copy(l.back[j+1:], l.back[j:])
		l.back[j] = e
		return
	}
	i := sort.Search(len(l.front), func(i int) bool { return l.front[i].Seq >= e.Seq })
	l.front = append(l.front, Entry[H]{})
	copy(l.front[i+1:], l.front[i:])
	l.front[i] = e
}
