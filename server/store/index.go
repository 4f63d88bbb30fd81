package store

import (
	"math/bits"
	"slices"
)

// index records which durable queues hold which stored messages; both
// stores keep one, under their own mutex.
//
// A broker may hold millions of messages, so the index is kept in chunks
// of chunkIDs consecutive message ids rather than in maps keyed by id:
// stored ids are dense (both stores number only what they store, in
// order), so a message costs its chunk's 2 bytes (its holder count) plus
// a bit per holding queue, against some 60 bytes in two maps. The last
// chunk and queue looked up are kept beside the maps: ids come in order,
// so most lookups are the one before.
type index struct {
	msgs   map[uint64]*msgChunk
	queues map[QueueID]*holdSet
	// wide counts holders past the 16 bits a chunk keeps (a fan-out to
	// more than 65,534 durable queues).
	wide     map[uint64]uint32
	messages int64
	holds    int64

	lastChunk    *msgChunk // msgs[lastChunkKey], or nil
	lastChunkKey uint64
	lastSet      *holdSet // queues[lastQueue], or nil
	lastQueue    QueueID
}

// chunkIDs is how many consecutive ids a chunk covers.
const chunkIDs = 512

// msgChunk is the per-message state of chunkIDs consecutive ids.
type msgChunk struct {
	n    [chunkIDs]uint16 // holders; 0: not stored or freed; wideHolders: see index.wide
	live int              // ids with n > 0
}

// wideHolders in a chunk's n means the count is in index.wide.
const wideHolders = ^uint16(0)

// holdSet is one queue's holds, a bitmap per chunk.
type holdSet struct {
	chunks  map[uint64]*[chunkIDs / 64]uint64
	n       int64
	last    *[chunkIDs / 64]uint64 // chunks[lastKey], or nil
	lastKey uint64
}

// bitmap returns the set's bitmap of chunk key, or nil.
func (set *holdSet) bitmap(key uint64) *[chunkIDs / 64]uint64 {
	if set.last != nil && set.lastKey == key {
		return set.last
	}
	bm := set.chunks[key]
	if bm != nil {
		set.last, set.lastKey = bm, key
	}
	return bm
}

// chunk returns the chunk of key, or nil.
func (x *index) chunk(key uint64) *msgChunk {
	if x.lastChunk != nil && x.lastChunkKey == key {
		return x.lastChunk
	}
	c := x.msgs[key]
	if c != nil {
		x.lastChunk, x.lastChunkKey = c, key
	}
	return c
}

// set returns q's holds, or nil.
func (x *index) set(q QueueID) *holdSet {
	if x.lastSet != nil && x.lastQueue == q {
		return x.lastSet
	}
	set := x.queues[q]
	if set != nil {
		x.lastSet, x.lastQueue = set, q
	}
	return set
}

// deleteSet forgets q's holds.
func (x *index) deleteSet(q QueueID) {
	delete(x.queues, q)
	if x.lastQueue == q {
		x.lastSet = nil
	}
}

func newIndex() index {
	return index{msgs: map[uint64]*msgChunk{}, queues: map[QueueID]*holdSet{}, wide: map[uint64]uint32{}}
}

// durableQueues appends the distinct non-zero ids of queues to ids, as
// the log wants them. Callers pass a stack buffer: Put does not keep them.
func durableQueues(ids []uint64, queues []QueueID) []uint64 {
	for _, q := range queues {
		if q != 0 {
			ids = append(ids, uint64(q))
		}
	}
	if len(ids) > 16 {
		// A wide fan-out: sorting beats comparing every pair.
		slices.Sort(ids)
		return slices.Compact(ids)
	}
	for i := 1; i < len(ids); i++ {
		if slices.Contains(ids[:i], ids[i]) {
			ids = slices.Delete(ids, i, i+1)
			i--
		}
	}
	return ids
}

// holders returns id's holder count.
func (x *index) holders(c *msgChunk, id uint64) uint32 {
	if n := c.n[id%chunkIDs]; n != wideHolders {
		return uint32(n)
	}
	return x.wide[id]
}

// setHolders stores id's holder count.
func (x *index) setHolders(c *msgChunk, id uint64, n uint32) {
	switch {
	case n < uint32(wideHolders):
		c.n[id%chunkIDs] = uint16(n)
		delete(x.wide, id)
	default:
		c.n[id%chunkIDs] = wideHolders
		x.wide[id] = n
	}
}

// add records that queue q holds message id.
func (x *index) add(id uint64, q QueueID) {
	set := x.set(q)
	if set == nil {
		set = &holdSet{chunks: map[uint64]*[chunkIDs / 64]uint64{}}
		x.queues[q] = set
	}
	bm := set.bitmap(id / chunkIDs)
	if bm == nil {
		bm = new([chunkIDs / 64]uint64)
		set.chunks[id/chunkIDs] = bm
	}
	word, bit := (id%chunkIDs)/64, uint64(1)<<(id%64)
	if bm[word]&bit != 0 {
		return
	}
	bm[word] |= bit
	set.n++
	c := x.chunk(id / chunkIDs)
	if c == nil {
		c = new(msgChunk)
		x.msgs[id/chunkIDs] = c
	}
	n := x.holders(c, id)
	if n == 0 {
		c.live++
		x.messages++
	}
	x.setHolders(c, id, n+1)
	x.holds++
}

// put records a new message held by queues.
func (x *index) put(id uint64, queues []uint64) {
	for _, q := range queues {
		x.add(id, QueueID(q))
	}
}

// unhold drops set's hold on id; it reports whether the queue held it and
// whether that was the last hold (the message is gone from the index).
func (x *index) unhold(set *holdSet, id uint64) (wasHeld, freed bool) {
	bm := set.bitmap(id / chunkIDs)
	if bm == nil {
		return false, false
	}
	word, bit := (id%chunkIDs)/64, uint64(1)<<(id%64)
	if bm[word]&bit == 0 {
		return false, false
	}
	bm[word] &^= bit
	set.n--
	if *bm == ([chunkIDs / 64]uint64{}) {
		delete(set.chunks, id/chunkIDs)
		if set.last == bm {
			set.last = nil
		}
	}
	x.holds--
	c := x.chunk(id / chunkIDs)
	n := x.holders(c, id) - 1
	x.setHolders(c, id, n)
	if n > 0 {
		return true, false
	}
	x.messages--
	if c.live--; c.live == 0 {
		delete(x.msgs, id/chunkIDs)
		if x.lastChunk == c {
			x.lastChunk = nil
		}
	}
	return true, true
}

// release drops q's holds on refs, calling fn (may be nil) for each ref q
// held, with whether it was the message's last hold.
func (x *index) release(q QueueID, refs []Ref, fn func(r Ref, freed bool)) {
	set := x.set(q)
	if set == nil {
		return
	}
	for _, r := range refs {
		if ok, freed := x.unhold(set, r.ID); ok && fn != nil {
			fn(r, freed)
		}
	}
	if set.n == 0 {
		x.deleteSet(q)
	}
}

// drop drops every hold of q, calling fn (may be nil) for each message it
// was the last hold of.
func (x *index) drop(q QueueID, fn func(id uint64)) {
	set := x.set(q)
	if set == nil {
		return
	}
	for base, bm := range set.chunks {
		for w, word := range *bm {
			for word != 0 {
				id := base*chunkIDs + uint64(w)*64 + uint64(bits.TrailingZeros64(word))
				word &= word - 1
				if _, freed := x.unhold(set, id); freed && fn != nil {
					fn(id)
				}
			}
		}
	}
	x.deleteSet(q)
}

// live reports whether some queue holds id.
func (x *index) live(id uint64) bool {
	c := x.chunk(id / chunkIDs)
	return c != nil && c.n[id%chunkIDs] != 0
}

func (x *index) stats() Stats {
	return Stats{Messages: x.messages, Holds: x.holds}
}
