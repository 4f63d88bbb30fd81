package store

import "slices"

// index records which durable queues hold which stored messages; both
// stores keep one, under their own mutex.
type index struct {
	msgs   map[uint64]held
	queues map[QueueID]map[uint64]struct{}
	holds  int64
	bytes  int64
}

// held is one stored message: how many queues hold it and its body size.
type held struct {
	n    uint32
	size uint32
}

func newIndex() index {
	return index{msgs: map[uint64]held{}, queues: map[QueueID]map[uint64]struct{}{}}
}

// durableQueues returns the distinct non-zero ids of queues as the log
// wants them (nil if none).
func durableQueues(queues []QueueID) []uint64 {
	var ids []uint64
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

// add records that queue q holds message id.
func (x *index) add(id uint64, q QueueID, size uint32) {
	set := x.queues[q]
	if set == nil {
		set = map[uint64]struct{}{}
		x.queues[q] = set
	}
	if _, ok := set[id]; ok {
		return
	}
	set[id] = struct{}{}
	h, ok := x.msgs[id]
	if !ok {
		h.size = size
		x.bytes += int64(size)
	}
	h.n++
	x.msgs[id] = h
	x.holds++
}

// put records a new message held by queues.
func (x *index) put(id uint64, queues []uint64, size uint32) {
	for _, q := range queues {
		x.add(id, QueueID(q), size)
	}
}

// unhold drops q's hold on id; it reports whether q held it and whether
// that was the last hold (the message is gone from the index).
func (x *index) unhold(set map[uint64]struct{}, id uint64) (wasHeld, freed bool) {
	if _, ok := set[id]; !ok {
		return false, false
	}
	delete(set, id)
	x.holds--
	h := x.msgs[id]
	if h.n--; h.n > 0 {
		x.msgs[id] = h
		return true, false
	}
	delete(x.msgs, id)
	x.bytes -= int64(h.size)
	return true, true
}

// release drops q's holds on refs, calling fn (may be nil) for each ref q
// held, with whether it was the message's last hold.
func (x *index) release(q QueueID, refs []Ref, fn func(r Ref, freed bool)) {
	set := x.queues[q]
	if set == nil {
		return
	}
	for _, r := range refs {
		if ok, freed := x.unhold(set, r.ID); ok && fn != nil {
			fn(r, freed)
		}
	}
	if len(set) == 0 {
		delete(x.queues, q)
	}
}

// drop drops every hold of q, calling fn (may be nil) for each message it
// was the last hold of.
func (x *index) drop(q QueueID, fn func(id uint64)) {
	set := x.queues[q]
	for id := range set {
		if _, freed := x.unhold(set, id); freed && fn != nil {
			fn(id)
		}
	}
	delete(x.queues, q)
}

// live reports whether some queue holds id.
func (x *index) live(id uint64) bool {
	_, ok := x.msgs[id]
	return ok
}

func (x *index) stats() Stats {
	return Stats{Messages: int64(len(x.msgs)), Holds: x.holds, Bytes: x.bytes}
}
