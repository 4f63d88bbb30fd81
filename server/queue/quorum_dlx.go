package queue

import (
	"encoding/binary"
	"slices"
	"time"
)

// At-least-once dead-lettering (Policy.AtLeastOnce), as RabbitMQ's quorum
// queues do it: a message dead-lettered stays with the queue, in the
// replicated state (Quorum.dlx) and in its limits, until the queues its
// dead-letter exchange routes it to have it. The leader republishes it
// with a confirm (DeadLetterHost); once confirmed it proposes it settled
// (opDLXSettle), and every member releases it as it applies that. A
// dead-letter that routed nowhere, was refused or got no confirm in
// dlxRetry is republished; a new leader republishes every one. So a
// target may get one twice (after a leader change, say), never none.

// holdDeadLetters takes the dead-letters of d's effects into dlx when the
// queue dead-letters at least once (and its host can), so that they are
// neither released nor republished at most once; the leader sends them
// (d.dlx, after the lock). Caller holds mu.
func (q *Quorum[H]) holdDeadLetters(d *quorumEffects[H]) {
	if !q.core.policy.AtLeastOnce {
		return
	}
	if _, ok := q.host.(DeadLetterHost[H]); !ok {
		return
	}
	now := q.clock()
	for i := range d.effects {
		e := &d.effects[i]
		if e.Kind != DeadLetter {
			continue
		}
		for _, en := range e.Entries {
			h := dlxHeld[H]{id: q.dlxNext, entry: en, reason: e.Reason}
			q.dlxNext++
			q.dlx = append(q.dlx, h)
			q.core.Hold(1, int64(en.Size))
			if d.leader {
				q.dlxSent[h.id] = now
				d.dlx = append(d.dlx, h)
			}
		}
		e.Kind, e.Entries = 0, nil // carried out here: nothing for carryOut
	}
	if len(d.dlx) > 0 {
		q.armDLX()
	}
}

// settleDLX applies opDLXSettle: the dead-letters it names (ids, in
// order) are confirmed; they leave dlx and are released. Caller holds mu.
func (q *Quorum[H]) settleDLX(d *quorumEffects[H], body []byte) {
	if len(body) < 4 {
		return
	}
	n := int(binary.BigEndian.Uint32(body))
	if n > (len(body)-4)/8 {
		return
	}
	var released []Entry[H]
	for i := range n {
		id := binary.BigEndian.Uint64(body[4+8*i:])
		delete(q.dlxSent, id)
		j, ok := slices.BinarySearchFunc(q.dlx, id, func(h dlxHeld[H], id uint64) int {
			switch {
			case h.id < id:
				return -1
			case h.id > id:
				return 1
			}
			return 0
		})
		if !ok {
			continue // settled already (proposed twice)
		}
		h := q.dlx[j]
		q.dlx = slices.Delete(q.dlx, j, j+1)
		q.core.Hold(-1, -int64(h.entry.Size))
		released = append(released, h.entry)
	}
	if len(released) > 0 {
		d.effects = append(d.effects, Effect[H]{Kind: Release, Entries: released})
	}
}

// sendingDLX marks every dead-letter held sent now and returns them, for
// sendDLX after the lock (a new leader's). Caller holds mu.
func (q *Quorum[H]) sendingDLX() []dlxHeld[H] {
	if len(q.dlx) == 0 {
		return nil
	}
	now := q.clock()
	for _, h := range q.dlx {
		q.dlxSent[h.id] = now
	}
	q.armDLX()
	return slices.Clone(q.dlx)
}

// sendDLX republishes dead-letters, each with a confirm that proposes it
// settled. Caller holds no lock.
func (q *Quorum[H]) sendDLX(hs []dlxHeld[H]) {
	if len(hs) == 0 {
		return
	}
	host, ok := q.host.(DeadLetterHost[H])
	if !ok {
		return
	}
	for _, h := range hs {
		id := h.id
		host.DeadLetterConfirmed(h.entry, h.reason, func(ok bool) { q.confirmedDLX(id, ok) })
	}
}

// confirmedDLX is a dead-letter's confirm: the leader proposes it
// settled; one refused waits for the retry (it stays marked sent).
func (q *Quorum[H]) confirmedDLX(id uint64, ok bool) {
	if !ok {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed || !q.leader.Load() {
		return // the next leader republishes it
	}
	b := q.command(opDLXSettle, nil)
	b = binary.BigEndian.AppendUint32(b, 1)
	q.propose(binary.BigEndian.AppendUint64(b, id))
}

// armDLX arms the retry of dead-letters not yet confirmed. Caller holds
// mu.
func (q *Quorum[H]) armDLX() {
	if q.closed {
		return
	}
	if q.dlxTimer == nil {
		q.dlxTimer = time.AfterFunc(q.dlxRetry, q.retryDLX)
		return
	}
	q.dlxTimer.Reset(q.dlxRetry)
}

// retryDLX republishes, on the leader, the dead-letters sent dlxRetry ago
// or more and not yet settled.
func (q *Quorum[H]) retryDLX() {
	q.mu.Lock()
	if q.closed || !q.leader.Load() || len(q.dlx) == 0 {
		q.mu.Unlock()
		return
	}
	now := q.clock()
	var again []dlxHeld[H]
	for _, h := range q.dlx {
		if at, ok := q.dlxSent[h.id]; !ok || now-at >= int64(q.dlxRetry) {
			q.dlxSent[h.id] = now
			again = append(again, h)
		}
	}
	q.armDLX()
	q.mu.Unlock()
	q.sendDLX(again)
}

// DeadLettersHeld is how many messages the queue holds dead-lettered at
// least once, awaiting their targets' confirm, and their bodies' bytes.
func (q *Quorum[H]) DeadLettersHeld() (n, bytes int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.core.held, q.core.heldBytes
}
