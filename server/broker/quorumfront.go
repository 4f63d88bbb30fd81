package broker

import (
	"slices"
	"sync"
	"sync/atomic"

	"github.com/amqp-go/amqp-go/server/queue"
)

// A quorum queue's group need not be every member: x-quorum-initial-group-size
// (default 3, as RabbitMQ's) picks its voters at the declaration. A member
// outside the group still has the queue, and the group's state machine
// (which nothing drives until the group adds it), and serves its clients
// by forwarding their commands over a node link to a member of the group
// (a remoteQueue with the group's members as targets), as a classic queue
// is reached through its home node. quorumFront is the queue.Queue such a
// queue's broker Queue drives: its local group's while this node is a
// voter, the forwarder's otherwise. A consumer, a delivery tag and a
// basic.get keep the side they came from: the forwarder's delivery tags
// carry forwardBit, which the local group's (counted from 1) never reach,
// and its consumers are in fwdIDs (the group's ids are hashes, any 64
// bits).
type quorumFront struct {
	q     *Queue
	local *queue.Quorum[qhandle]
	fwd   *remoteQueue

	mu     sync.Mutex // a leaf: guards fwdIDs
	fwdIDs map[queue.ConsumerID]struct{}
	// forwarded mirrors len(fwdIDs), so that a wake-up of a group's
	// queue with no forwarded consumer (the usual case) costs no lock.
	forwarded atomic.Int32
}

// forwardBit marks the forwarder's delivery tags and consumer ids.
const forwardBit = 1 << 63

var _ queue.Queue[qhandle] = (*quorumFront)(nil)

// forwarding reports whether this node is outside the queue's group.
func (f *quorumFront) forwarding() bool { return !f.q.isVoter.Load() }

func (f *quorumFront) Push(m queue.Message[qhandle]) (int64, int, error) {
	if f.forwarding() {
		return f.fwd.Push(m)
	}
	return f.local.Push(m)
}

func (f *quorumFront) PushRecovered(ms []queue.Message[qhandle]) { f.local.PushRecovered(ms) }

func (f *quorumFront) Admits(size uint32) bool {
	if f.forwarding() {
		return true // the group's member judges, and nacks a refusal
	}
	return f.local.Admits(size)
}

// Consume starts a consumer on the side it was registered on: the
// forwarder's if addConsumer registered it there.
func (f *quorumFront) Consume(c queue.Consumer[qhandle], priority int64, noAck bool) queue.ConsumerID {
	if f.fwd.hasPending(c) {
		id := f.fwd.Consume(c, priority, noAck) | forwardBit
		f.mu.Lock()
		if f.fwdIDs == nil {
			f.fwdIDs = map[queue.ConsumerID]struct{}{}
		}
		f.fwdIDs[id] = struct{}{}
		f.forwarded.Store(int32(len(f.fwdIDs)))
		f.mu.Unlock()
		return id
	}
	return f.local.Consume(c, priority, noAck)
}

func (f *quorumFront) Cancel(id queue.ConsumerID) bool {
	f.mu.Lock()
	_, fwd := f.fwdIDs[id]
	delete(f.fwdIDs, id)
	f.forwarded.Store(int32(len(f.fwdIDs)))
	f.mu.Unlock()
	if fwd {
		return f.fwd.Cancel(id &^ forwardBit)
	}
	return f.local.Cancel(id)
}

// Settle sends each tag to its side.
func (f *quorumFront) Settle(tags []uint64, outcome queue.Outcome) {
	if !slices.ContainsFunc(tags, func(t uint64) bool { return t&forwardBit != 0 }) {
		f.local.Settle(tags, outcome) // the usual case: nothing to split, nothing allocated
		return
	}
	var local, fwd []uint64
	for _, t := range tags {
		if t&forwardBit != 0 {
			fwd = append(fwd, t)
		} else {
			local = append(local, t)
		}
	}
	if len(local) > 0 {
		f.local.Settle(local, outcome)
	}
	f.fwd.Settle(fwd, outcome)
}

func (f *quorumFront) Get(noAck bool) (queue.Entry[qhandle], uint64, bool) {
	if f.forwarding() {
		return f.fwd.Get(noAck)
	}
	return f.local.Get(noAck)
}

func (f *quorumFront) GiveBack(e queue.Entry[qhandle], tag uint64) {
	if tag&forwardBit != 0 {
		f.fwd.GiveBack(e, tag)
		return
	}
	f.local.GiveBack(e, tag)
}

func (f *quorumFront) Purge() int {
	if f.forwarding() {
		return f.fwd.Purge()
	}
	return f.local.Purge()
}

func (f *quorumFront) Delete() int {
	f.fwd.Close()
	return f.local.Delete()
}

func (f *quorumFront) Close() {
	f.fwd.Close()
	f.local.Close()
}

func (f *quorumFront) Info() queue.Info {
	if f.forwarding() {
		return f.fwd.Info()
	}
	return f.local.Info()
}

func (f *quorumFront) SampleRates() { f.local.SampleRates() }

func (f *quorumFront) Head() (queue.Entry[qhandle], bool) {
	if f.forwarding() {
		return queue.Entry[qhandle]{}, false
	}
	return f.local.Head()
}

func (f *quorumFront) Backlog() (int64, int64, int) {
	if f.forwarding() {
		return f.fwd.Backlog()
	}
	return f.local.Backlog()
}

func (f *quorumFront) Touch() {
	if f.forwarding() {
		f.fwd.Touch()
		return
	}
	f.local.Touch()
}

func (f *quorumFront) Wake() {
	if f.forwarded.Load() > 0 {
		f.fwd.Wake()
	}
	f.local.Wake()
}

func (f *quorumFront) SetPolicy(p queue.Policy) { f.local.SetPolicy(p) }

// remoteNow is the remoteQueue q's clients' commands go to now: a classic
// queue's homed elsewhere, or a quorum queue's forwarder while this node
// is outside its group; nil when q's messages are here.
func (q *Queue) remoteNow() *remoteQueue {
	if q.remote != nil {
		return q.remote
	}
	if q.front != nil && q.front.forwarding() {
		return q.front.fwd
	}
	return nil
}
