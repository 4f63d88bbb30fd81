package queue

import (
	"encoding/binary"
	"slices"
)

// A quorum queue's dead-letters at least once (deadletters.go) are in its
// replicated state (Quorum.dead), in the log's order. The leader
// republishes them; once one is confirmed it proposes it settled
// (opDLXSettle), and every member releases it as it applies that. A new
// leader republishes every one held, and a snapshot carries them.

// holdDeadLetters takes the dead-letters of d's effects into q.dead when
// the queue dead-letters at least once (and its host can), so that they
// are neither released nor republished at most once; the leader sends
// them (d.dlx, after the lock). Caller holds mu.
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
			h := q.dead.add(en, e.Reason)
			q.core.Hold(1, int64(en.Size))
			if d.leader {
				q.dead.markSent(h.id, now)
				d.dlx = append(d.dlx, h)
			}
		}
		e.Kind, e.Entries = 0, nil // carried out here: nothing for carryOut
	}
	if len(d.dlx) > 0 && !q.closed {
		q.dead.arm(q.retryDLX)
	}
}

// settleDLX applies opDLXSettle: the dead-letters it names are confirmed;
// they leave q.dead and are released. Caller holds mu.
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
		if e, ok := q.dead.remove(binary.BigEndian.Uint64(body[4+8*i:])); ok { // else settled already
			q.core.Hold(-1, -int64(e.Size))
			released = append(released, e)
		}
	}
	if len(released) > 0 {
		d.effects = append(d.effects, Effect[H]{Kind: Release, Entries: released})
	}
}

// sendingDLX marks every dead-letter held sent now and returns them, for
// sendDLX after the lock (a new leader's). Caller holds mu.
func (q *Quorum[H]) sendingDLX() []dlxHeld[H] {
	hs := q.dead.due(q.clock(), true)
	if len(hs) > 0 && !q.closed {
		q.dead.arm(q.retryDLX)
	}
	return hs
}

// sendDLX republishes dead-letters, each with a confirm that proposes it
// settled. Caller holds no lock.
func (q *Quorum[H]) sendDLX(hs []dlxHeld[H]) { sendDeadLetters(q.host, hs, q.confirmedDLX) }

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

// retryDLX republishes, on the leader, the dead-letters sent q.dead.retry
// ago or more and not yet settled.
func (q *Quorum[H]) retryDLX() {
	q.mu.Lock()
	if q.closed || !q.leader.Load() || len(q.dead.list) == 0 {
		q.mu.Unlock()
		return
	}
	again := q.dead.due(q.clock(), false)
	q.dead.arm(q.retryDLX)
	q.mu.Unlock()
	q.sendDLX(again)
}

// snapshotDLX is q.dead as a snapshot carries it, handles encoded.
func (q *Quorum[H]) snapshotDLX(hs []dlxHeld[H]) []quorumDLX {
	var out []quorumDLX
	for _, h := range hs {
		se := mapEntry(stateEntry(h.entry), func(h H) []byte { return q.codec.AppendHandle(nil, h) })
		out = append(out, quorumDLX{ID: h.id, Entry: se, Reason: h.reason})
	}
	return out
}

// restoreDLX decodes a snapshot's dead-letters.
func (q *Quorum[H]) restoreDLX(s []quorumDLX) ([]dlxHeld[H], error) {
	hs := make([]dlxHeld[H], 0, len(s))
	for _, d := range s {
		var err error
		se := mapEntry(d.Entry, func(b []byte) H {
			var h H
			h, err = q.codec.DecodeHandle(b)
			return h
		})
		if err != nil {
			return nil, err
		}
		hs = append(hs, dlxHeld[H]{id: d.ID, entry: se.entry(), reason: d.Reason})
	}
	return slices.Clip(hs), nil
}
