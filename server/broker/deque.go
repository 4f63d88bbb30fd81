package broker

import "sync/atomic"

// entryDeque holds a queue's ready entries in seq order. It is a list of
// fixed-size blocks, so a queue of millions of entries costs about 48 bytes
// each with no doubling copies, while a short queue keeps one small block
// that grows as needed.
//
// Invariant: every block has exactly dequeBlock entries, except when there
// is a single block, which may be shorter and grows by doubling.
type entryDeque struct {
	blocks [][]qentry
	head   int // index of the first entry in blocks[0]
	n      int
	spare  []qentry // one emptied block kept for reuse
	// hot, if set, counts the body bytes of pageable entries held in
	// memory (a durable queue's share of the global ring budget).
	hot *atomic.Int64
}

// account adds (sign 1) or removes (-1) e's bytes from the hot budget.
func (d *entryDeque) account(e *qentry, sign int64) {
	if d.hot != nil && e.msg != nil && e.ref.id != 0 {
		d.hot.Add(sign * int64(len(e.msg.Body)))
	}
}

const dequeBlock = 1024

func (d *entryDeque) len() int { return d.n }

// at returns the i-th entry (0 is the head).
func (d *entryDeque) at(i int) *qentry {
	j := d.head + i
	if len(d.blocks) == 1 {
		return &d.blocks[0][j]
	}
	return &d.blocks[j/dequeBlock][j%dequeBlock]
}

func (d *entryDeque) newBlock() []qentry {
	if d.spare != nil {
		b := d.spare
		d.spare = nil
		return b
	}
	return make([]qentry, dequeBlock)
}

func (d *entryDeque) pushBack(e qentry) {
	if len(d.blocks) == 0 {
		d.blocks = [][]qentry{make([]qentry, 8)}
		d.head = 0
	}
	j := d.head + d.n
	if len(d.blocks) == 1 {
		b := d.blocks[0]
		if j == len(b) {
			switch {
			case d.head > 0 && d.n <= len(b)/2:
				// Mostly consumed: slide down instead of growing.
				copy(b, b[d.head:j])
				clear(b[d.n:])
				d.head = 0
			case len(b) < dequeBlock:
				nb := make([]qentry, min(2*len(b), dequeBlock))
				copy(nb, b[d.head:j])
				d.blocks[0], d.head = nb, 0
			default:
				d.blocks = append(d.blocks, d.newBlock())
			}
		}
	} else if j == len(d.blocks)*dequeBlock {
		d.blocks = append(d.blocks, d.newBlock())
	}
	d.n++
	*d.at(d.n - 1) = e
	d.account(&e, 1)
}

func (d *entryDeque) popFront() qentry {
	p := d.at(0)
	e := *p
	*p = qentry{}
	d.account(&e, -1)
	d.n--
	d.head++
	if d.n == 0 {
		d.head = 0
		if len(d.blocks) > 1 {
			d.spare = d.blocks[0]
			d.blocks = d.blocks[:1]
		}
		return e
	}
	if d.head == dequeBlock && len(d.blocks) > 1 {
		d.spare = d.blocks[0]
		d.blocks[0] = nil
		d.blocks = d.blocks[1:]
		d.head = 0
		if cap(d.blocks) > 2*len(d.blocks)+16 {
			d.blocks = append([][]qentry(nil), d.blocks...)
		}
	}
	return e
}

// pushFront puts e at the head.
func (d *entryDeque) pushFront(e qentry) {
	if d.head == 0 {
		if len(d.blocks) <= 1 && d.n < dequeBlock {
			// Single block: grow at the front.
			var b []qentry
			if len(d.blocks) == 1 {
				b = d.blocks[0]
			}
			nb := make([]qentry, min(max(8, 2*len(b)), dequeBlock))
			off := len(nb) - d.n
			copy(nb[off:], b[d.head:d.head+d.n])
			d.blocks, d.head = [][]qentry{nb}, off
		} else {
			if len(d.blocks) == 1 && len(d.blocks[0]) < dequeBlock {
				nb := make([]qentry, dequeBlock)
				copy(nb, d.blocks[0][:d.n])
				d.blocks[0] = nb
			}
			d.blocks = append([][]qentry{d.newBlock()}, d.blocks...)
			d.head = dequeBlock
		}
	}
	d.head--
	d.n++
	*d.at(0) = e
	d.account(&e, 1)
}

// insertOrdered puts e back at the place its seq gives it; requeued
// messages are nearly always older than everything ready, so this is
// usually a push at the front.
func (d *entryDeque) insertOrdered(e qentry) {
	lo, hi := 0, d.n
	for lo < hi {
		mid := (lo + hi) / 2
		if d.at(mid).seq < e.seq {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo == 0 {
		d.pushFront(e)
		return
	}
	d.pushBack(qentry{})
	for i := d.n - 1; i > lo; i-- {
		*d.at(i) = *d.at(i - 1)
	}
	*d.at(lo) = e
	d.account(&e, 1)
}

// drain removes and returns every entry.
func (d *entryDeque) drain() []qentry {
	out := make([]qentry, 0, d.n)
	for d.n > 0 {
		out = append(out, d.popFront())
	}
	*d = entryDeque{hot: d.hot}
	return out
}
