package queue

import (
	"slices"
	"time"
)

// At-least-once dead-lettering (Policy.AtLeastOnce), as RabbitMQ's quorum
// queues do it: a message dead-lettered stays with the queue, in its
// limits (Core.Hold), until the queues its dead-letter exchange routes it
// to have it. The queue republishes it with a confirm (DeadLetterHost),
// again when it routed nowhere, was refused or got no confirm in
// heldDeadLetters.retry, and lets it go once confirmed. A target may get
// one twice, never none. The quorum queue keeps them in its replicated
// state (quorum_dlx.go); the classic core, which single-node quorum queues
// run on, in memory, while the store keeps the message itself.

// DeadLetterHost is a Host that dead-letters at least once.
type DeadLetterHost[H any] interface {
	// DeadLetterConfirmed republishes e to the queue's dead-letter
	// exchange with reason, as DeadLetter does, without releasing it,
	// and calls done once: true once every queue it reached has it as
	// safely as a publisher's confirm says (or it has nowhere to go any
	// more: the queue lost its dead-letter exchange, or the message
	// cannot be read back), false if it routed nowhere, was refused or
	// was not stored (the queue republishes it later).
	DeadLetterConfirmed(e Entry[H], reason Reason, done func(ok bool))
}

// DLXRetry is how long a queue waits for a dead-letter's confirm (at
// least once) before it republishes it.
const DLXRetry = 5 * time.Second

// dlxHeld is a message dead-lettered at least once, awaiting its
// targets' confirm.
type dlxHeld[H any] struct {
	id     uint64
	entry  Entry[H]
	reason Reason
}

// heldDeadLetters are a queue's dead-letters held at least once, by id
// (next gives the next), with when each was last sent. The queue's lock
// guards it. The zero value is ready (sent is made on first use, so an
// idle queue pays nothing; retry 0 is DLXRetry).
type heldDeadLetters[H any] struct {
	list  []dlxHeld[H]
	next  uint64
	sent  map[uint64]int64
	timer *time.Timer
	retry time.Duration
}

// add holds e, dead-lettered for reason, under the next id.
func (d *heldDeadLetters[H]) add(e Entry[H], reason Reason) dlxHeld[H] {
	h := dlxHeld[H]{id: d.next, entry: e, reason: reason}
	d.next++
	d.list = append(d.list, h)
	return h
}

// remove lets dead-letter id go (confirmed), reporting its entry; false
// if it is not held (settled already).
func (d *heldDeadLetters[H]) remove(id uint64) (Entry[H], bool) {
	delete(d.sent, id)
	i, ok := slices.BinarySearchFunc(d.list, id, func(h dlxHeld[H], id uint64) int {
		switch {
		case h.id < id:
			return -1
		case h.id > id:
			return 1
		}
		return 0
	})
	if !ok {
		return Entry[H]{}, false
	}
	e := d.list[i].entry
	d.list = slices.Delete(d.list, i, i+1)
	return e, true
}

// due marks sent now, and returns, the dead-letters never sent or sent
// retry ago or more (all: every one held).
func (d *heldDeadLetters[H]) due(now int64, all bool) []dlxHeld[H] {
	var out []dlxHeld[H]
	for _, h := range d.list {
		if at, ok := d.sent[h.id]; all || !ok || now-at >= int64(d.every()) {
			d.markSent(h.id, now)
			out = append(out, h)
		}
	}
	return out
}

// markSent records that dead-letter id was sent at now.
func (d *heldDeadLetters[H]) markSent(id uint64, now int64) {
	if d.sent == nil {
		d.sent = map[uint64]int64{}
	}
	d.sent[id] = now
}

// every is the retry period.
func (d *heldDeadLetters[H]) every() time.Duration {
	if d.retry == 0 {
		return DLXRetry
	}
	return d.retry
}

// arm (re)arms the retry timer to call f in every().
func (d *heldDeadLetters[H]) arm(f func()) {
	if d.timer == nil {
		d.timer = time.AfterFunc(d.every(), f)
		return
	}
	d.timer.Reset(d.every())
}

// stop stops the retry timer.
func (d *heldDeadLetters[H]) stop() {
	if d.timer != nil {
		d.timer.Stop()
	}
}

// drain lets every dead-letter go (the queue is deleted) and returns
// their entries.
func (d *heldDeadLetters[H]) drain() []Entry[H] {
	es := make([]Entry[H], len(d.list))
	for i, h := range d.list {
		es[i] = h.entry
	}
	d.list = nil
	clear(d.sent)
	return es
}

// sendDeadLetters republishes hs through host, each with a confirm that
// calls confirmed with its id. Caller holds no lock.
func sendDeadLetters[H any](host Host[H], hs []dlxHeld[H], confirmed func(id uint64, ok bool)) {
	dh, ok := host.(DeadLetterHost[H])
	if !ok {
		return
	}
	for _, h := range hs {
		id := h.id
		dh.DeadLetterConfirmed(h.entry, h.reason, func(ok bool) { confirmed(id, ok) })
	}
}
