package queue

import (
	"cmp"
	"encoding/binary"
	"slices"
	"time"
)

// quorumEffects are one applied command's effects, copied out of the core
// (whose entries live until its next command) so a command that runs
// several core commands keeps them all, and so they can be carried out
// without the lock. local are the deliveries to this member's consumers.
type quorumEffects[H any] struct {
	effects []Effect[H]
	local   []Consumer[H] // by effects index; nil: not this member's
	leader  bool
	dlx     []dlxHeld[H] // dead-letters to send at least once (the leader's)
}

func (d *quorumEffects[H]) add(c *Core[H], effects []Effect[H]) {
	for _, e := range effects {
		e.Entries = append([]Entry[H](nil), e.Entries...)
		d.effects = append(d.effects, e)
	}
	c.end()
}

// detachEffects copies one core command's effects out.
func detachEffects[H any](c *Core[H], effects []Effect[H]) *quorumEffects[H] {
	d := &quorumEffects[H]{}
	d.add(c, effects)
	return d
}

// Apply applies a committed command; the group calls it on every member,
// in log order, one at a time.
func (q *Quorum[H]) Apply(cmd []byte) {
	if len(cmd) < cmdHeader {
		return
	}
	op := cmd[0]
	origin := Owner{Node: binary.BigEndian.Uint64(cmd[1:]), Incarnation: binary.BigEndian.Uint64(cmd[9:])}
	seq := binary.BigEndian.Uint64(cmd[17:])
	now := int64(binary.BigEndian.Uint64(cmd[25:]))
	body := cmd[cmdHeader:]
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return
	}
	d := &quorumEffects[H]{leader: q.leader.Load()}
	var res quorumResult[H]
	keep := false // the command stays in flight (an early push)
	c := q.core
	if c.lastUsed == 0 {
		// x-expires counts from the group's first command, at the same
		// point of the log on every member.
		c.Touch(now)
	}
	switch op {
	case opPush:
		if len(body) < pushFields {
			break
		}
		admit := q.pushAdmit(origin, binary.BigEndian.Uint64(body), binary.BigEndian.Uint64(body[8:]), now)
		if admit == pushDuplicate {
			// Sent again after a leader change, and applied already, or
			// given up on (its waiter was answered then).
			res.err = ErrNotCommitted
			break
		}
		if admit == pushEarly {
			if origin == q.self {
				keep = true // in flight still: proposed again after the one before it
				if f, ok := q.inflight[seq]; ok && !f.early {
					f.early = true
					q.inflight[seq] = f
					q.early = append(q.early, seq)
				}
			}
			break
		}
		body = body[16:]
		m := Message[H]{Size: binary.BigEndian.Uint32(body), Priority: body[4],
			Expires: int64(binary.BigEndian.Uint64(body[5:])), Timestamp: int64(binary.BigEndian.Uint64(body[13:]))}
		h, err := q.codec.DecodeHandle(body[21:])
		if err != nil {
			res.err = err
			break
		}
		m.Handle = h
		effects, err := c.Push(m, now)
		res.err = err
		d.add(c, effects)
	case opConsume:
		if len(body) < 17 {
			break
		}
		id := ConsumerID(binary.BigEndian.Uint64(body))
		if _, dup := q.owners[id]; dup {
			break // sent again after a leader change
		}
		q.owners[id] = origin
		d.add(c, c.Consume(id, int64(binary.BigEndian.Uint64(body[8:])), body[16] == 1, now))
		if origin == q.self && q.local[id] == nil {
			// Cancelled here before this (sent again) came: cancel it
			// again, after.
			b := q.command(opCancel, nil)
			q.propose(binary.BigEndian.AppendUint64(b, uint64(id)))
		}
	case opCredit:
		if len(body) < 16 {
			break
		}
		// The owner's total: a credit sent twice gives nothing more.
		id := ConsumerID(binary.BigEndian.Uint64(body))
		if total := int64(binary.BigEndian.Uint64(body[8:])); total > q.granted[id] {
			if _, live := q.owners[id]; live {
				d.add(c, c.Credit(id, total-q.granted[id], now))
				q.granted[id] = total
			}
		}
	case opCancel:
		if len(body) < 8 {
			break
		}
		id := ConsumerID(binary.BigEndian.Uint64(body))
		delete(q.owners, id)
		delete(q.granted, id)
		effects, _ := c.Cancel(id, now)
		d.add(c, effects)
	case opSettle:
		if len(body) < 5 {
			break
		}
		outcome := Outcome(body[0])
		n := int(binary.BigEndian.Uint32(body[1:]))
		if n > (len(body)-5)/8 {
			break
		}
		tags := make([]uint64, n)
		held := q.held[origin]
		for i := range tags {
			tags[i] = binary.BigEndian.Uint64(body[5+8*i:])
			delete(held, tags[i])
		}
		if len(held) == 0 {
			delete(q.held, origin)
		}
		d.add(c, c.Settle(tags, outcome, now))
	case opGet:
		if len(body) < 1 {
			break
		}
		e, tag, ok, effects := c.Get(body[0] == 1, now)
		res.e, res.tag, res.ok = e, tag, ok
		if ok && tag != 0 {
			q.hold(origin, tag, 1)
		}
		d.add(c, effects)
	case opPurge:
		n, effects := c.Purge()
		res.n = n
		d.add(c, effects)
	case opTick:
		d.add(c, c.Tick(now))
	case opPolicy:
		if p, ok := decodePolicy(body); ok {
			d.add(c, c.SetPolicy(p, now))
		}
	case opTouch:
		c.Touch(now)
	case opDown:
		if len(body) < 16 {
			break
		}
		q.down(d, binary.BigEndian.Uint64(body), binary.BigEndian.Uint64(body[8:]), now)
	case opDLXSettle:
		q.settleDLX(d, body)
	}
	q.holdDeadLetters(d)
	q.sortOut(d, now)
	q.armTick()
	var w *quorumWait[H]
	if origin == q.self && !keep {
		w = q.waits[seq]
		delete(q.waits, seq)
		q.landed(seq)
	}
	q.mu.Unlock()
	q.carryOut(d)
	if w != nil {
		w.done(res)
	}
}

// hold records n unacked deliveries from tag on for owner.
func (q *Quorum[H]) hold(owner Owner, tag uint64, n int) {
	held := q.held[owner]
	if held == nil {
		held = map[uint64]struct{}{}
		q.held[owner] = held
	}
	for i := range n {
		held[tag+uint64(i)] = struct{}{}
	}
}

// down cancels the consumers of node's incarnations before before and
// requeues their unacked deliveries. Caller holds mu.
func (q *Quorum[H]) down(d *quorumEffects[H], node, before uint64, now int64) {
	gone := func(o Owner) bool { return o.Node == node && o.Incarnation < before }
	var ids []ConsumerID
	for id, o := range q.owners {
		if gone(o) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids) // map order is not the same on every member
	for _, id := range ids {
		delete(q.owners, id)
		delete(q.granted, id)
		effects, _ := q.core.Cancel(id, now)
		d.add(q.core, effects)
		if lc := q.local[id]; lc != nil {
			// This member was cut off and is back: its consumer goes on,
			// subscribed again under its id.
			if lc.credit > 0 {
				lc.c.Unacquire(lc.credit)
			}
			lc.credit, lc.granted = 0, 0
			defer q.subscribe(id, lc)
		}
	}
	var owners []Owner
	for o := range q.held {
		if gone(o) {
			owners = append(owners, o)
		}
	}
	sortOwners(owners)
	for _, o := range owners {
		tags := make([]uint64, 0, len(q.held[o]))
		for t := range q.held[o] {
			tags = append(tags, t)
		}
		delete(q.held, o)
		slices.Sort(tags)
		d.add(q.core, q.core.Settle(tags, Requeue, now))
	}
}

// sortOut records the unacked deliveries by owner (on every member alike),
// finds this member's consumers for its deliveries, requeues deliveries
// to this member's consumers that were cancelled meanwhile, and tops up
// the credit of those that got some. Caller holds mu.
func (q *Quorum[H]) sortOut(d *quorumEffects[H], now int64) {
	var requeue []uint64
	for i := range d.effects {
		e := &d.effects[i]
		if e.Kind != Deliver {
			continue
		}
		owner, known := q.owners[e.Consumer]
		if e.Tag != 0 && known {
			q.hold(owner, e.Tag, len(e.Entries))
		}
		if owner != q.self {
			continue
		}
		if d.local == nil {
			d.local = make([]Consumer[H], len(d.effects))
		}
		lc := q.local[e.Consumer]
		if lc == nil {
			// Cancelled here before the log had the cancel.
			for j := range e.Entries {
				if e.Tag != 0 {
					requeue = append(requeue, e.Tag+uint64(j))
				}
			}
			continue
		}
		lc.credit -= int64(len(e.Entries))
		d.local[i] = lc.c
	}
	if len(requeue) > 0 {
		q.settle(requeue, Requeue)
	}
	for id, lc := range q.local {
		q.topUp(id, lc)
	}
}

// carryOut runs an applied command's effects: store releases, this
// member's deliveries, and, on the leader only, dead-letters (so a
// message is dead-lettered once, not once per member).
func (q *Quorum[H]) carryOut(d *quorumEffects[H]) {
	for i, e := range d.effects {
		switch e.Kind {
		case Release:
			q.host.Release(e.Entries)
		case Deliver:
			if d.local != nil && d.local[i] != nil {
				d.local[i].Deliver(e.Entries, e.Tag)
			}
		case DeadLetter:
			if d.leader {
				q.host.DeadLetter(e.Entries, e.Reason)
			} else {
				q.host.Release(e.Entries)
			}
		case DeleteQueue:
			// x-expires: the leader has the queue deleted (through the
			// metadata group, on every member).
			if d.leader {
				q.host.Expired()
			}
		}
	}
	q.sendDLX(d.dlx)
}

func sortOwners(s []Owner) {
	slices.SortFunc(s, func(a, b Owner) int {
		if c := cmp.Compare(a.Node, b.Node); c != 0 {
			return c
		}
		return cmp.Compare(a.Incarnation, b.Incarnation)
	})
}

// pushWindow is what the log has applied of one proposer's pushes: every
// push sequence up to Hi, in order (a push that comes ahead of its turn
// waits for its proposer to send it again: pushAdmit).
type pushWindow struct {
	Hi   uint64
	Last int64 // the log's time of its last push
}

// pushWindowAge: a window without pushes for this long goes (its
// proposer restarted or left).
const pushWindowAge = int64(5 * time.Minute)

// What the log does with a push (pushAdmit).
const (
	pushApply     = iota // its turn: applied
	pushDuplicate        // applied already, or given up on by its proposer
	pushEarly            // one before it has not come: refused, to come again
)

// pushAdmit decides push pseq of origin, whose proposer's oldest push in
// flight was oldest when it made it: pushes enter the queue in the order
// their proposer made them, as one channel's publishes do, even when the
// log has them out of order (one dropped during an election and sent
// again after later ones, or lost with a leader). Caller holds mu.
func (q *Quorum[H]) pushAdmit(origin Owner, pseq, oldest uint64, now int64) int {
	w := q.pushed[origin]
	if w == nil {
		for o, old := range q.pushed {
			if now-old.Last > pushWindowAge {
				delete(q.pushed, o)
			}
		}
		w = &pushWindow{}
		q.pushed[origin] = w
	}
	w.Last = now
	if oldest > w.Hi+1 {
		w.Hi = oldest - 1 // its proposer has those landed: applied, or given up on
	}
	switch {
	case pseq <= w.Hi:
		return pushDuplicate
	case pseq == w.Hi+1:
		w.Hi = pseq
		return pushApply
	}
	return pushEarly
}
