package queue

import "sort"

// level holds one priority's ready messages in Seq order: requeued ones,
// which always sort before the rest, in front; the others in back, in push
// order. Expired messages taken from the middle of back leave tombstones
// (dead entries that keep their Seq for searches) that the head skips.
type level[H any] struct {
	front []Entry[H] // requeued, ascending Seq
	back  deque[H]
	// maxExpiry is the latest expiry pushed: a message expiring before it
	// is out of order and needs the expiry heap. unbounded is set once a
	// message that never expires was pushed: every later expiring one
	// needs the heap too. Both reset when the level empties.
	maxExpiry int64
	unbounded bool
}

// empty reports whether the level holds no ready message.
func (l *level[H]) empty() bool { return l.frontEntry() == nil }

func (l *level[H]) pushBack(e Entry[H]) { l.back.pushBack(e) }

// skipDead drops the tombstones at the head of back.
func (l *level[H]) skipDead() {
	for l.back.n > 0 && l.back.at(0).dead() {
		l.back.popFront()
	}
}

// frontEntry returns the next message, or nil.
func (l *level[H]) frontEntry() *Entry[H] {
	if len(l.front) > 0 {
		return &l.front[0]
	}
	l.skipDead()
	if l.back.n > 0 {
		return l.back.at(0)
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
	if l.back.n == 0 {
		return Entry[H]{}, false
	}
	e := l.back.popFront()
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
	j := sort.Search(b.n, func(j int) bool { return b.at(j).Seq >= seq })
	if j < b.n && b.at(j).Seq == seq && !b.at(j).dead() {
		e := *b.at(j)
		*b.at(j) = Entry[H]{Seq: seq, flags: flagDead} // drops the handle, keeps the order
		l.skipDead()
		return e, true
	}
	return Entry[H]{}, false
}

// insert puts a requeued message back at its place by Seq.
func (l *level[H]) insert(e Entry[H]) {
	l.skipDead()
	if b := &l.back; b.n > 0 && e.Seq > b.at(0).Seq {
		// Not before every pushed message (only a driver bug does this):
		// keep the order anyway, at a copy's cost.
		j := sort.Search(b.n, func(j int) bool { return b.at(j).Seq >= e.Seq })
		b.pushBack(Entry[H]{})
		for k := b.n - 1; k > j; k-- {
			*b.at(k) = *b.at(k - 1)
		}
		*b.at(j) = e
		return
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
// entry i is at blocks[(head+i)/blockSize][(head+i)%blockSize].
type deque[H any] struct {
	blocks [][]Entry[H]
	head   int // index of the first entry in blocks[0]
	n      int
	spare  []Entry[H] // one emptied full block kept for reuse
}

// at returns the i-th entry, 0 <= i < n.
func (d *deque[H]) at(i int) *Entry[H] {
	j := d.head + i
	if len(d.blocks) == 1 {
		return &d.blocks[0][j]
	}
	return &d.blocks[j/blockSize][j%blockSize]
}

func (d *deque[H]) pushBack(e Entry[H]) {
	if len(d.blocks) == 0 {
		d.blocks = [][]Entry[H]{make([]Entry[H], 8)}
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
			nb := make([]Entry[H], min(2*len(b), blockSize))
			copy(nb, b[d.head:j])
			d.blocks[0], d.head, j = nb, 0, d.n
		}
	}
	if last := len(d.blocks) - 1; j >= (last+1)*blockSize || len(d.blocks) == 1 && j == len(d.blocks[0]) {
		nb := d.spare
		d.spare = nil
		if nb == nil {
			nb = make([]Entry[H], blockSize)
		}
		d.blocks = append(d.blocks, nb)
	}
	*d.at(d.n) = e
	d.n++
}

// popFront takes the first entry, n > 0.
func (d *deque[H]) popFront() Entry[H] {
	p := d.at(0)
	e := *p
	*p = Entry[H]{}
	d.head++
	d.n--
	switch {
	case d.n == 0:
		if len(d.blocks) > 1 {
			d.spare = nil
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
