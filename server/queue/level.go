package queue

import "sort"

// level holds one priority's ready messages in Seq order: requeued ones,
// which always sort before the rest, in front; the others in back, in push
// order. Expired messages taken from the middle of back leave tombstones
// (dead entries that keep their place) that the head skips. A level gives
// its pushes consecutive seqs, so back, which holds every seq from its
// head's on, keeps no seq.
type level[H any] struct {
	front []Entry[H] // requeued, ascending Seq
	back  deque[H]
	seq   uint64 // the last seq given to a push
	// maxExpiry is the latest expiry pushed: a message expiring before it
	// is out of order and needs the expiry heap. unbounded is set once a
	// message that never expires was pushed: every later expiring one
	// needs the heap too. Both reset when the level empties.
	maxExpiry int64
	unbounded bool
}

// empty reports whether the level holds no ready message.
func (l *level[H]) empty() bool { return l.frontEntry() == nil }

// pushBack appends e, whose Seq is the level's latest (l.seq).
func (l *level[H]) pushBack(e Entry[H]) { l.back.pushBack(e.Queued, e.Seq) }

// skipDead drops the tombstones at the head of back.
func (l *level[H]) skipDead() {
	for l.back.n > 0 && l.back.at(0).dead() {
		l.back.popFront()
	}
}

// frontEntry returns the next message, or nil.
func (l *level[H]) frontEntry() *Queued[H] {
	if len(l.front) > 0 {
		return &l.front[0].Queued
	}
	l.skipDead()
	if l.back.n > 0 {
		return l.back.at(0)
	}
	return nil
}

// head returns a copy of the next message, which frontEntry found.
func (l *level[H]) head() Entry[H] {
	if len(l.front) > 0 {
		return l.front[0]
	}
	return Entry[H]{Queued: *l.back.at(0), Seq: l.back.first}
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
	if l.back.n == 0 {
		return Entry[H]{}, false
	}
	seq := l.back.first
	e := Entry[H]{Queued: l.back.popFront(), Seq: seq}
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
	b := &l.back
	if b.n == 0 || seq < b.first || seq-b.first >= uint64(b.n) {
		return Entry[H]{}, false
	}
	q := b.at(int(seq - b.first))
	if q.dead() {
		return Entry[H]{}, false
	}
	e := Entry[H]{Queued: *q, Seq: seq}
	*q = Queued[H]{flags: flagDead} // drops the handle, keeps the place
	l.skipDead()
	return e, true
}

// insert puts a requeued message back at its place by Seq.
func (l *level[H]) insert(e Entry[H]) {
	l.skipDead()
	if b := &l.back; b.n > 0 && e.Seq >= b.first {
		// Not before every pushed message: only a driver bug does this
		// (a message back at a place it never left). Keep the order where
		// its place is a tombstone; otherwise it goes first.
		if j := e.Seq - b.first; j < uint64(b.n) && b.at(int(j)).dead() {
			*b.at(int(j)) = e.Queued
			return
		}
	}
	i := sort.Search(len(l.front), func(i int) bool { return l.front[i].Seq >= e.Seq })
	l.front = append(l.front, Entry[H]{})
	copy(l.front[i+1:], l.front[i:])
	l.front[i] = e
}

// blockSize is how many entries a deque block holds once a queue is long:
// a million-message queue grows by a block at a time, never by doubling
// and copying, and frees each block as its head passes it.
const blockSize = 1024

// deque holds entries in order in fixed-size blocks. A short queue keeps
// one small block that grows by doubling up to blockSize, so an idle queue
// costs a few entries, not a block.
//
// Invariant: with more than one block, every block is blockSize long;
// entry i is at blocks[(head+i)/blockSize][(head+i)%blockSize], and its
// seq is first+i.
type deque[H any] struct {
	blocks [][]Queued[H]
	head   int    // index of the first entry in blocks[0]
	first  uint64 // the first entry's seq
	n      int
	spare  []Queued[H] // one emptied full block kept for reuse
}

// at returns the i-th entry, 0 <= i < n.
func (d *deque[H]) at(i int) *Queued[H] {
	j := d.head + i
	if len(d.blocks) == 1 {
		return &d.blocks[0][j]
	}
	return &d.blocks[j/blockSize][j%blockSize]
}

// pushBack appends e with seq, which is first+n unless d is empty.
func (d *deque[H]) pushBack(e Queued[H], seq uint64) {
	if d.n == 0 {
		d.first = seq
	}
	if len(d.blocks) == 0 {
		d.blocks = [][]Queued[H]{make([]Queued[H], 8)}
		d.head = 0
	}
	j := d.head + d.n
	if len(d.blocks) == 1 && j == len(d.blocks[0]) {
		b := d.blocks[0]
		switch {
		case d.head > 0 && d.n <= len(b)/2:
			// Room at the front: slide down rather than grow.
			copy(b, b[d.head:j])
			clear(b[d.n:j])
			d.head, j = 0, d.n
		case len(b) < blockSize:
			nb := make([]Queued[H], min(2*len(b), blockSize))
			copy(nb, b[d.head:j])
			d.blocks[0], d.head, j = nb, 0, d.n
		}
	}
	if last := len(d.blocks) - 1; j >= (last+1)*blockSize || len(d.blocks) == 1 && j == len(d.blocks[0]) {
		nb := d.spare
		d.spare = nil
		if nb == nil {
			nb = make([]Queued[H], blockSize)
		}
		d.blocks = append(d.blocks, nb)
	}
	*d.at(d.n) = e
	d.n++
}

// popFront takes the first entry, n > 0.
func (d *deque[H]) popFront() Queued[H] {
	p := d.at(0)
	e := *p
	*p = Queued[H]{}
	d.head++
	d.first++
	d.n--
	switch {
	case d.n == 0:
		// The spare is for a queue streaming through blocks; an empty one
		// keeps its last block only (trim lets that go too).
		d.spare = nil
		if len(d.blocks) > 1 {
			d.blocks = d.blocks[len(d.blocks)-1:]
		}
		d.head = 0
	case len(d.blocks) > 1 && d.head == blockSize:
		if d.spare == nil {
			d.spare = d.blocks[0]
		}
		d.blocks[0] = nil
		d.blocks = d.blocks[1:]
		d.head = 0
	}
	return e
}

// trim drops the storage of an empty deque larger than a new one's.
func (d *deque[H]) trim() {
	if d.n == 0 && (len(d.blocks) > 1 || len(d.blocks) == 1 && len(d.blocks[0]) > 8) {
		d.blocks, d.spare, d.head = nil, nil, 0
	}
}
