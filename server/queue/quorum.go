package queue

import (
	"bytes"
	"encoding/binary"
	"encoding/gob"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Log is a quorum queue's Raft group as the queue sees it. Propose hands a
// command to the group without waiting, and may be called under the
// queue's lock; the group then calls Quorum.Apply with every committed
// command, in log order, on every member. A command raft refused outright
// is reported to dropped; one it lost later is never applied, and its
// waiter times out.
type Log interface {
	Propose(cmd []byte, dropped func())
}

// Codec turns a quorum queue's handles into the bytes its log and
// snapshots carry, and back.
type Codec[H any] interface {
	AppendHandle(dst []byte, h H) []byte
	DecodeHandle(b []byte) (H, error)
}

// Owner is the node incarnation a consumer or an unacked delivery belongs
// to: when the node goes (or restarts, as a new incarnation), they go
// with it.
type Owner struct {
	Node, Incarnation uint64
}

// Errors a quorum queue's waiters get.
var (
	// ErrNotCommitted: the command was not applied in time (no leader, or
	// the leader lost it): a publisher is nacked.
	ErrNotCommitted = errors.New("quorum queue: the command was not committed in time")
	// ErrQueueClosed: the queue was deleted or closed first.
	ErrQueueClosed = errors.New("quorum queue: closed")
)

// QuorumTimeout is how long a waiter (a publish's confirm, basic.get,
// purge) waits for its command to be applied.
const QuorumTimeout = 5 * time.Second

// Quorum is a quorum queue on one member of its Raft group: the same Core
// on every member, changed only by the commands its log applies, so all
// members hold the same messages, consumers, credit, unacked deliveries
// and tags. Every member's consumers are the core's; a member hands the
// deliveries the core makes to its own consumers and ignores the others'.
// Time comes with each command (the proposer's clock), so expiries are the
// same everywhere. What depends on the leader alone (dead-lettering, the
// expiry tick) is done by the member that leads when it applies.
//
// Locking: mu guards everything below it. Log.Propose is called under mu
// (it never waits), so a member's commands enter the log in the order it
// made them; Host and Consumer calls are made without mu, except
// Consumer.Acquire and Unacquire, as in Classic.
type Quorum[H any] struct {
	log    Log
	codec  Codec[H]
	host   Host[H]
	clock  func() int64
	self   Owner
	leader atomic.Bool
	lead   atomic.Uint64
	// timeout is QuorumTimeout (tests shorten it).
	timeout time.Duration

	mu     sync.Mutex
	core   *Core[H]
	meter  Meter
	owners map[ConsumerID]Owner              // replicated: every consumer's owner
	held   map[Owner]map[uint64]struct{}     // replicated: unacked tags by owner
	local  map[ConsumerID]*quorumConsumer[H] // this member's consumers
	waits  map[uint64]*quorumWait[H]         // this member's commands awaiting apply
	// inflight are this member's commands not yet applied, failed or
	// given up on (past timeout), by seq, with when they were made;
	// barriers wait for those before them.
	inflight map[uint64]inflightCmd
	// pushSeq numbers this member's pushes, so a push sent again (after
	// a leader change) is applied once (pushWindow).
	pushSeq uint64
	// pushed are the replicated push windows, by proposer; granted is
	// the credit each consumer's owner has given it so far (credit
	// commands carry that total, so one sent twice gives nothing more).
	pushed   map[Owner]*pushWindow
	granted  map[ConsumerID]int64
	barriers []quorumBarrier
	// pushing and pushingBytes count this member's pushes in flight;
	// flowClear, while non-nil, is closed once they are under the low
	// marks (Congested).
	pushing      int
	pushingBytes int64
	// pushOrder are this member's pushes, oldest first, some landed
	// (oldestPush drops those); early are the seqs of those the log
	// refused as early, some landed since (proposeEarly skips those).
	pushOrder []pushRef
	early     []uint64
	flowClear chan struct{}
	seq       uint64
	nextID    uint64
	closed    bool
	timer     *time.Timer // the leader's expiry tick
	sweep     *time.Timer // sweepWaits, while commands are in flight
	sweepAt   int64       // when sweep fires (0: not armed)
	tickAt    int64       // when timer fires (0: not armed)
	// dead are the messages dead-lettered at least once
	// (Policy.AtLeastOnce) that their targets have not confirmed yet:
	// replicated, in the log's order, but for when the leader sent each
	// (quorum_dlx.go).
	dead heldDeadLetters[H]
}

// quorumConsumer is one of this member's consumers: credit is what it
// has been given in the core (proposed) and not yet used.
type quorumConsumer[H any] struct {
	c        Consumer[H]
	credit   int64
	granted  int64 // credit given since it subscribed, in total
	priority int64
	noAck    bool
}

type quorumWait[H any] struct {
	at   int64
	done func(quorumResult[H])
}

// quorumResult is what an applied command tells the member that made it.
type quorumResult[H any] struct {
	err error
	n   int // a purge's count
	ok  bool
	tag uint64
	e   Entry[H] // a basic.get's message
}

// The commands, each: op, the proposer's Owner (16 bytes), its sequence
// number, its clock, then the op's fields.
const (
	opPush byte = iota + 1
	opConsume
	opCredit
	opCancel
	opSettle
	opGet
	opPurge
	opTick
	opPolicy
	opDown
	opTouch
	opDLXSettle
)

const cmdHeader = 1 + 16 + 8 + 8

// NewQuorum makes member self's replica of a quorum queue with policy
// (its limits, delivery limit, SAC), proposing to log.
func NewQuorum[H any](policy Policy, log Log, codec Codec[H], host Host[H], self Owner, clock func() int64) *Quorum[H] {
	if clock == nil {
		clock = Now
	}
	q := &Quorum[H]{log: log, codec: codec, host: host, clock: clock, self: self, core: New[H](policy, 0),
		owners: map[ConsumerID]Owner{}, held: map[Owner]map[uint64]struct{}{},
		local: map[ConsumerID]*quorumConsumer[H]{}, waits: map[uint64]*quorumWait[H]{}, inflight: map[uint64]inflightCmd{},
		pushed: map[Owner]*pushWindow{}, granted: map[ConsumerID]int64{}, timeout: QuorumTimeout}
	q.meter.Start(clock())
	return q
}

// LeaderChanged tells the queue its group's leader (0: none known) and
// whether it is this member.
func (q *Quorum[H]) LeaderChanged(lead uint64, self bool) {
	q.lead.Store(lead)
	q.leader.Store(self)
	if lead == 0 {
		return
	}
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return
	}
	q.resend()
	expired := false
	clear(q.dead.sent) // a new leader republishes them all; another does not
	var dlx []dlxHeld[H]
	if self {
		q.armTick()
		expired = q.core.deleteAsked
		dlx = q.sendingDLX()
	}
	q.mu.Unlock()
	q.sendDLX(dlx)
	if expired {
		// The queue expired under the last leader, whose deletion may
		// have died with it: ask again (a queue deleted already is not
		// deleted twice: Host.Expired checks).
		q.host.Expired()
	}
}

// LeaderID is the group's leader as this member knows it (0: none).
func (q *Quorum[H]) LeaderID() uint64 { return q.lead.Load() }

// Leader reports whether this member leads the queue's group.
func (q *Quorum[H]) Leader() bool { return q.leader.Load() }

// command starts a command of op in a new buffer, with room for a
// push's fields (the log keeps each command, so none is reused). Caller
// holds mu.
func (q *Quorum[H]) command(op byte, wait func(quorumResult[H])) []byte {
	q.seq++
	now := q.clock()
	if wait != nil {
		q.waits[q.seq] = &quorumWait[H]{at: now, done: wait}
	}
	q.inflight[q.seq] = inflightCmd{at: now}
	q.armSweep()
	b := make([]byte, 0, cmdHeader+pushFields)
	b = append(b, op)
	b = binary.BigEndian.AppendUint64(b, q.self.Node)
	b = binary.BigEndian.AppendUint64(b, q.self.Incarnation)
	b = binary.BigEndian.AppendUint64(b, q.seq)
	return binary.BigEndian.AppendUint64(b, uint64(now))
}

// propose sends a command made with command. Caller holds mu.
func (q *Quorum[H]) propose(cmd []byte) { q.proposeSized(cmd, 0) }

// proposeSized is propose for a push of size body bytes (0: not a
// push), which the flow control counts.
func (q *Quorum[H]) proposeSized(cmd []byte, size int64) {
	f := q.inflight[q.seq]
	f.cmd, f.size = cmd, size
	q.inflight[q.seq] = f
	q.send(cmd, q.seq, f.at)
}

// inflightCmd is a command of this member's not yet applied.
type inflightCmd struct {
	at, sent int64 // made, last proposed
	cmd      []byte
	size     int64 // a push's body size
	// early: the log refused this push as ahead of its sequence (one
	// before it had not come); it is proposed again once that one has
	// landed (proposeEarly).
	early bool
}

// isPush reports whether f is a push.
func (f inflightCmd) isPush() bool { return len(f.cmd) > 0 && f.cmd[0] == opPush }

// pushRef is one of this member's pushes, by push sequence and command
// sequence.
type pushRef struct{ pseq, seq uint64 }

// resend proposes every command in flight again, in the order they were
// made, but for gets and purges, whose callers have their answer within
// the timeout or fail: a leader that died may have taken them with it.
// A push sent twice is applied once (its push window), and the others
// are idempotent: credit carries its owner's total, a settle names tags
// (settled ones are ignored), a consume names its id. Caller holds mu.
func (q *Quorum[H]) resend() {
	seqs := make([]uint64, 0, len(q.inflight))
	for seq, f := range q.inflight {
		if len(f.cmd) > 0 && f.cmd[0] != opGet && f.cmd[0] != opPurge {
			seqs = append(seqs, seq)
		}
	}
	slices.Sort(seqs)
	for _, seq := range seqs {
		f := q.inflight[seq]
		q.send(f.cmd, seq, f.at)
	}
}

// retryEvery is how soon a command raft refused (no leader yet, an
// election under way) is proposed again, until QuorumTimeout after it
// was made: a publish during an election waits for the new leader rather
// than being nacked at once.
const retryEvery = 20 * time.Millisecond

// send proposes cmd, made at, again every retryEvery while raft refuses
// it; past QuorumTimeout its waiter fails. Caller holds mu.
func (q *Quorum[H]) send(cmd []byte, seq uint64, at int64) {
	if f, ok := q.inflight[seq]; ok {
		f.sent = q.clock()
		q.inflight[seq] = f
	}
	q.log.Propose(cmd, func() {
		time.AfterFunc(retryEvery, func() {
			q.mu.Lock()
			defer q.mu.Unlock()
			if _, ok := q.inflight[seq]; ok && !q.closed {
				q.send(cmd, seq, at) // until sweepWaits gives up on it
			}
		})
	})
}

// fail ends command seq's wait with err, if it still waits.
func (q *Quorum[H]) fail(seq uint64, err error) {
	q.mu.Lock()
	w := q.waits[seq]
	delete(q.waits, seq)
	q.landed(seq)
	q.mu.Unlock()
	if w != nil {
		w.done(quorumResult[H]{err: err})
	}
}

// PushAsync proposes m; done, if set, is called once it is applied here
// (nil, or ErrRejected from a full reject-publish queue) or has failed
// (ErrNotCommitted, ErrQueueClosed). It returns what Congested would.
func (q *Quorum[H]) PushAsync(m Message[H], done func(error)) <-chan struct{} {
	var wait func(quorumResult[H])
	if done != nil {
		wait = func(r quorumResult[H]) { done(r.err) }
	}
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		if done != nil {
			done(ErrQueueClosed)
		}
		return nil
	}
	b := q.command(opPush, wait)
	q.pushSeq++
	q.pushOrder = append(q.pushOrder, pushRef{q.pushSeq, q.seq})
	b = binary.BigEndian.AppendUint64(b, q.pushSeq)
	b = binary.BigEndian.AppendUint64(b, q.oldestPush())
	b = binary.BigEndian.AppendUint32(b, m.Size)
	b = append(b, m.Priority)
	b = binary.BigEndian.AppendUint64(b, uint64(m.Expires))
	b = binary.BigEndian.AppendUint64(b, uint64(m.Timestamp))
	b = q.codec.AppendHandle(b, m.Handle)
	q.pushing++
	q.pushingBytes += int64(m.Size)
	q.proposeSized(b, int64(m.Size))
	congested := q.congested()
	q.mu.Unlock()
	return congested
}

// pushFields are a push's fields before its handle: its push sequence,
// the oldest push in flight, size, priority, expiry and timestamp.
const pushFields = 8 + 8 + 4 + 1 + 8 + 8

// oldestPush is the push sequence of this member's oldest push in
// flight (the log takes every push before it as landed: applied, or
// given up on). Caller holds mu.
func (q *Quorum[H]) oldestPush() uint64 {
	if r, ok := q.oldestPushRef(); ok {
		return r.pseq
	}
	return q.pushSeq + 1
}

// oldestPushRef is this member's oldest push in flight, if any. Caller
// holds mu.
func (q *Quorum[H]) oldestPushRef() (pushRef, bool) {
	for len(q.pushOrder) > 0 {
		if _, ok := q.inflight[q.pushOrder[0].seq]; ok {
			return q.pushOrder[0], true
		}
		q.pushOrder = q.pushOrder[1:]
	}
	return pushRef{}, false
}

// proposeEarly proposes again, in their order, the pushes the log
// refused as early, with the current oldest push. Caller holds mu.
func (q *Quorum[H]) proposeEarly() {
	seqs := q.early
	q.early = nil
	slices.Sort(seqs)
	oldest := q.oldestPush()
	for _, seq := range seqs {
		f, ok := q.inflight[seq]
		if !ok || !f.early {
			continue // given up on meanwhile
		}
		f.early = false
		// A copy: the log may still hold the first one.
		f.cmd = slices.Clone(f.cmd)
		binary.BigEndian.PutUint64(f.cmd[cmdHeader+8:], oldest)
		q.inflight[seq] = f
		q.send(f.cmd, seq, f.at)
	}
}

// Publisher flow control: while this member has more than
// QuorumFlowHigh pushes, or QuorumFlowHighBytes of bodies, proposed and
// not yet applied (or failed), Congested hands its publishers a channel
// to wait on, closed once they are under half of both. A publisher
// without confirms could otherwise hand the log messages faster than a
// majority commits them, and they would pile up in memory here.
const (
	QuorumFlowHigh      = 4096
	QuorumFlowHighBytes = 32 << 20
)

// Congested returns nil, or a channel that is closed once this member's
// pushes in flight are few enough again (see QuorumFlowHigh).
func (q *Quorum[H]) Congested() <-chan struct{} {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.congested()
}

// congested is Congested. Caller holds mu.
func (q *Quorum[H]) congested() <-chan struct{} {
	if q.closed || q.pushing <= QuorumFlowHigh && q.pushingBytes <= QuorumFlowHighBytes {
		return nil
	}
	if q.flowClear == nil {
		q.flowClear = make(chan struct{})
	}
	return q.flowClear
}

// unflow closes flowClear once the pushes in flight are under the low
// marks, or the queue is closed. Caller holds mu.
func (q *Quorum[H]) unflow() {
	if q.flowClear != nil && (q.closed || q.pushing <= QuorumFlowHigh/2 && q.pushingBytes <= QuorumFlowHighBytes/2) {
		close(q.flowClear)
		q.flowClear = nil
	}
}

// Push proposes m without waiting for it (see PushAsync) and returns the
// backlog as this member knows it.
func (q *Quorum[H]) Push(m Message[H]) (ready int64, consumers int, err error) {
	q.PushAsync(m, nil)
	ready, _, consumers = q.Backlog()
	return ready, consumers, nil
}

// PushRecovered proposes recovered messages; a quorum queue recovers from
// its log, so the broker has none to give it.
func (q *Quorum[H]) PushRecovered(ms []Message[H]) {
	for _, m := range ms {
		q.PushAsync(m, nil)
	}
}

// Admits reports whether a push of size bytes would be taken, as this
// member's replica stands.
func (q *Quorum[H]) Admits(size uint32) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.core.Admits(size)
}

// Consume adds one of this member's consumers: proposed, then given
// credit as its channel allows.
func (q *Quorum[H]) Consume(c Consumer[H], priority int64, noAck bool) ConsumerID {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.nextID++
	// Unique across members and incarnations without coordination.
	id := ConsumerID(mix(q.self.Node^mix(q.self.Incarnation)) ^ q.nextID)
	q.subscribe(id, &quorumConsumer[H]{c: c, priority: priority, noAck: noAck})
	return id
}

// subscribe proposes consumer id of this member's. Caller holds mu.
func (q *Quorum[H]) subscribe(id ConsumerID, lc *quorumConsumer[H]) {
	q.local[id] = lc
	b := q.command(opConsume, nil)
	b = binary.BigEndian.AppendUint64(b, uint64(id))
	b = binary.BigEndian.AppendUint64(b, uint64(lc.priority))
	b = append(b, boolByte(lc.noAck))
	q.propose(b)
	q.topUp(id, lc)
}

// topUp gives a local consumer more credit in the core once it has used
// half of a batch. Caller holds mu.
func (q *Quorum[H]) topUp(id ConsumerID, lc *quorumConsumer[H]) {
	if q.closed || lc.credit > maxBatch/2 {
		return
	}
	n := lc.c.Acquire(maxBatch - lc.credit)
	if n <= 0 {
		return
	}
	lc.credit += n
	lc.granted += n
	b := q.command(opCredit, nil)
	b = binary.BigEndian.AppendUint64(b, uint64(id))
	b = binary.BigEndian.AppendUint64(b, uint64(lc.granted))
	q.propose(b)
}

// Cancel removes one of this member's consumers; its unacked deliveries
// stay unacked. It reports whether consumers are left, as this member
// knows.
func (q *Quorum[H]) Cancel(id ConsumerID) bool {
	q.mu.Lock()
	lc := q.local[id]
	delete(q.local, id)
	if lc != nil && lc.credit > 0 {
		lc.c.Unacquire(lc.credit)
	}
	if !q.closed {
		b := q.command(opCancel, nil)
		b = binary.BigEndian.AppendUint64(b, uint64(id))
		q.propose(b)
	}
	_, _, consumers := q.core.Backlog()
	q.mu.Unlock()
	return consumers > 1
}

// Settle proposes the settlement of this member's deliveries by tag.
func (q *Quorum[H]) Settle(tags []uint64, outcome Outcome) {
	if len(tags) == 0 {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	q.settle(tags, outcome)
}

func (q *Quorum[H]) settle(tags []uint64, outcome Outcome) {
	b := q.command(opSettle, nil)
	b = append(b, byte(outcome))
	b = binary.BigEndian.AppendUint32(b, uint32(len(tags)))
	for _, t := range tags {
		b = binary.BigEndian.AppendUint64(b, t)
	}
	q.propose(b)
}

// wait proposes a command made by build and waits for its result.
func (q *Quorum[H]) wait(op byte, build func([]byte) []byte) quorumResult[H] {
	ch := make(chan quorumResult[H], 1)
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return quorumResult[H]{err: ErrQueueClosed}
	}
	b := q.command(op, func(r quorumResult[H]) { ch <- r })
	seq := q.seq
	if build != nil {
		b = build(b)
	}
	q.propose(b)
	q.mu.Unlock()
	t := time.NewTimer(q.timeout)
	defer t.Stop()
	select {
	case r := <-ch:
		return r
	case <-t.C:
		q.fail(seq, ErrNotCommitted)
		return <-ch
	}
}

// Get takes the head message (basic.get) once the log has the get.
func (q *Quorum[H]) Get(noAck bool) (e Entry[H], tag uint64, ok bool) {
	r := q.wait(opGet, func(b []byte) []byte { return append(b, boolByte(noAck)) })
	return r.e, r.tag, r.ok
}

// GiveBack returns a message Get took that could not be handed over: a
// requeue (it counts as delivered once), or a push again without a tag.
func (q *Quorum[H]) GiveBack(e Entry[H], tag uint64) {
	if tag == 0 {
		q.PushAsync(Message[H]{Handle: e.Handle, Expires: e.Expires, Timestamp: e.Timestamp, Size: e.Size, Priority: e.Priority}, nil)
		return
	}
	q.Settle([]uint64{tag}, Requeue)
}

// Purge drops every ready message once the log has the purge.
func (q *Quorum[H]) Purge() int { return q.wait(opPurge, nil).n }

// Delete releases this member's replica (the queue's deletion came
// through the metadata group, to every member) and fails its waiters.
func (q *Quorum[H]) Delete() int {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return 0
	}
	n, effects := q.core.Delete()
	d := detachEffects(q.core, effects)
	if len(q.dead.list) > 0 {
		// Dead-lettered at least once and never confirmed: they go with
		// the queue, as RabbitMQ's do.
		d.effects = append(d.effects, Effect[H]{Kind: Release, Entries: q.dead.drain()})
	}
	waits := q.closeLocked()
	q.mu.Unlock()
	q.carryOut(d)
	for _, w := range waits {
		w.done(quorumResult[H]{err: ErrQueueClosed})
	}
	return n
}

// Close stops the replica, keeping everything (the log has it).
func (q *Quorum[H]) Close() {
	q.mu.Lock()
	waits := q.closeLocked()
	q.mu.Unlock()
	for _, w := range waits {
		w.done(quorumResult[H]{err: ErrQueueClosed})
	}
}

func (q *Quorum[H]) closeLocked() []*quorumWait[H] {
	q.closed = true
	q.unflow()
	for _, b := range q.barriers {
		b.done <- ErrQueueClosed
	}
	q.barriers = nil
	if q.timer != nil {
		q.timer.Stop()
	}
	if q.sweep != nil {
		q.sweep.Stop()
	}
	q.dead.stop()
	ws := make([]*quorumWait[H], 0, len(q.waits))
	for _, w := range q.waits {
		ws = append(ws, w)
	}
	clear(q.waits)
	clear(q.local)
	return ws
}

// Info reports this member's replica's counts, counters and rates.
func (q *Quorum[H]) Info() Info {
	q.mu.Lock()
	defer q.mu.Unlock()
	in := q.core.Info()
	in.Rates = q.meter.Rates()
	return in
}

// SampleRates samples the counters for Info's rates, and fails the
// waiters whose command was not applied within QuorumTimeout.
func (q *Quorum[H]) SampleRates() {
	q.mu.Lock()
	q.meter.Sample(q.core.stats, q.clock())
	q.mu.Unlock()
}

// resendAfter is how long a command of this member's may go unapplied
// before it is proposed again: raft loses a proposal forwarded to a
// leader that dropped it (its inbox full) or died, without a word.
const resendAfter = time.Second

// resentWhenStale reports whether a command of kind op is proposed again
// after resendAfter without a leader change: a consumer's (subscription,
// credit, cancel, settlement), small, idempotent, and without which the
// consumer would stall. Pushes are not (under a slow commit, sending every
// waiting body again would only slow it more: they are sent again on a
// leader change, and nacked at the timeout), nor gets and purges (twice
// would take twice).
func resentWhenStale(op byte) bool {
	switch op {
	case opConsume, opCredit, opCancel, opSettle:
		return true
	}
	return false
}

// sweepWaits runs from the sweep timer while commands are in flight: it
// fails the waiters whose command was not applied within the timeout
// (a publish is nacked, a get answers empty) and stops sending those,
// and proposes again, in order, the consumers' commands unapplied for
// resendAfter (resentWhenStale). Those are never given up: without them a
// consumer would stall for good; being idempotent, they are sent until
// applied.
func (q *Quorum[H]) sweepWaits() {
	now := q.clock()
	q.mu.Lock()
	q.sweepAt = 0
	var late []*quorumWait[H]
	for seq, w := range q.waits {
		if now-w.at > int64(q.timeout) {
			late = append(late, w)
			delete(q.waits, seq)
			q.landed(seq)
		}
	}
	var stale []uint64
	for seq, f := range q.inflight {
		switch {
		case len(f.cmd) > 0 && f.cmd[0] == opPush && now-f.at > int64(q.timeout):
			q.landed(seq) // a push without a waiter: given up as its waiter would be
		case len(f.cmd) > 0 && resentWhenStale(f.cmd[0]) && now-f.sent > int64(resendAfter):
			stale = append(stale, seq)
		}
	}
	// Pushes the log refused as early wait for the oldest one: if it
	// was lost without a leader change, it is sent again here rather
	// than given up on after the timeout.
	if r, ok := q.oldestPushRef(); ok && len(q.early) > 0 {
		if f := q.inflight[r.seq]; !f.early && now-f.sent > int64(resendAfter) {
			stale = append(stale, r.seq)
		}
	}
	slices.Sort(stale)
	for _, seq := range stale {
		f := q.inflight[seq]
		q.send(f.cmd, seq, f.at)
	}
	q.armSweep()
	q.mu.Unlock()
	for _, w := range late {
		w.done(quorumResult[H]{err: ErrNotCommitted})
	}
}

// armSweep arms the sweep timer, if commands are in flight and it is not
// armed. Caller holds mu.
func (q *Quorum[H]) armSweep() {
	if q.sweepAt != 0 || q.closed || len(q.inflight) == 0 && len(q.waits) == 0 {
		return
	}
	d := min(q.timeout/4, resendAfter/2)
	q.sweepAt = q.clock() + int64(d)
	if q.sweep == nil {
		q.sweep = time.AfterFunc(d, q.sweepWaits)
	} else {
		q.sweep.Reset(d)
	}
}

// Head returns the head message as this member's replica has it.
func (q *Quorum[H]) Head() (e Entry[H], ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.core.Head()
}

// Backlog is this member's replica's ready messages, bytes and consumers.
func (q *Quorum[H]) Backlog() (ready, readyBytes int64, consumers int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.core.Backlog()
}

// Touch records a use of the queue (a declare) for x-expires, through
// the log, so every member's core counts the same idle time.
func (q *Quorum[H]) Touch() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.closed {
		q.propose(q.command(opTouch, nil))
	}
}

// Wake gives this member's consumers credit again (their channels have
// room).
func (q *Quorum[H]) Wake() {
	q.mu.Lock()
	for id, lc := range q.local {
		q.topUp(id, lc)
	}
	q.mu.Unlock()
}

// SetPolicy proposes a policy change; every member proposes it (each
// applies the metadata group's policy change), and applying it again is
// harmless.
func (q *Quorum[H]) SetPolicy(p Policy) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	b := q.command(opPolicy, nil)
	q.propose(appendPolicy(b, p))
}

// Down proposes that node's consumers and unacked deliveries are gone
// (the leader saw it leave; a restarted node says so of its former
// incarnations): its consumers are cancelled and its deliveries
// requeued, for incarnations before before.
func (q *Quorum[H]) Down(node, before uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	b := q.command(opDown, nil)
	b = binary.BigEndian.AppendUint64(b, node)
	b = binary.BigEndian.AppendUint64(b, before)
	q.propose(b)
}

// Owners returns the node incarnations that have consumers or unacked
// deliveries here, this member's among them (for the watch on members
// that left or restarted).
func (q *Quorum[H]) Owners() []Owner {
	q.mu.Lock()
	defer q.mu.Unlock()
	var os []Owner
	for _, o := range q.owners {
		if !slices.Contains(os, o) {
			os = append(os, o)
		}
	}
	for o, tags := range q.held {
		if len(tags) > 0 && !slices.Contains(os, o) {
			os = append(os, o)
		}
	}
	sortOwners(os)
	return os
}

// armTick arms the leader's timer for the core's next deadline. Caller
// holds mu.
func (q *Quorum[H]) armTick() {
	next := q.core.NextDeadline()
	if q.closed || !q.leader.Load() || next == 0 || q.tickAt != 0 && q.tickAt <= next {
		return
	}
	q.tickAt = next
	d := time.Duration(max(next-q.clock(), 0))
	if q.timer == nil {
		q.timer = time.AfterFunc(d, q.tick)
	} else {
		q.timer.Reset(d)
	}
}

// tick proposes a clock tick (the leader's timer fired).
func (q *Quorum[H]) tick() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.tickAt = 0
	if q.closed || !q.leader.Load() {
		return
	}
	q.propose(q.command(opTick, nil))
}

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// mix is splitmix64's finaliser.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// appendPolicy encodes p: 5 flag bytes, 4 limits of 8 bytes, then
// AtLeastOnce's byte (a policy from before it ends without one).
func appendPolicy(b []byte, p Policy) []byte {
	b = append(b, p.MaxPriority, byte(p.Overflow), boolByte(p.DeadLetter), boolByte(p.SingleActive), boolByte(p.LimitDeliveries))
	b = binary.BigEndian.AppendUint64(b, uint64(p.MaxLength))
	b = binary.BigEndian.AppendUint64(b, uint64(p.MaxLengthBytes))
	b = binary.BigEndian.AppendUint64(b, uint64(p.Expires))
	b = binary.BigEndian.AppendUint64(b, uint64(p.DeliveryLimit))
	return append(b, boolByte(p.AtLeastOnce))
}

func decodePolicy(b []byte) (Policy, bool) {
	if len(b) < 5+32 {
		return Policy{}, false
	}
	p := Policy{MaxPriority: b[0], Overflow: Overflow(b[1]), DeadLetter: b[2] == 1, SingleActive: b[3] == 1, LimitDeliveries: b[4] == 1}
	b = b[5:]
	p.MaxLength = int64(binary.BigEndian.Uint64(b))
	p.MaxLengthBytes = int64(binary.BigEndian.Uint64(b[8:]))
	p.Expires = int64(binary.BigEndian.Uint64(b[16:]))
	p.DeliveryLimit = int64(binary.BigEndian.Uint64(b[24:]))
	p.AtLeastOnce = len(b) > 32 && b[32] == 1
	return p, true
}

// quorumSnapshot is a replica's state as its group's snapshot carries it:
// the core's, with handles encoded, and the owners the core knows
// nothing of.
type quorumSnapshot struct {
	State   State[[]byte]
	Owners  []quorumOwned
	Held    []quorumHeld
	Pushed  []quorumPushed
	Granted []quorumGranted
	// HandleSizes are the sizes of the handles before the gob in the
	// split encoding (snapshotMagic), whose State holds none.
	HandleSizes []uint32
	// DLX are the messages dead-lettered at least once and not yet
	// confirmed (their handles in the gob), DLXNext the next id.
	DLX     []quorumDLX
	DLXNext uint64
}

type quorumDLX struct {
	ID     uint64
	Entry  StateEntry[[]byte]
	Reason Reason
}

type quorumPushed struct {
	Owner  Owner
	Window pushWindow
}

type quorumGranted struct {
	ID    ConsumerID
	Total int64
}

type quorumOwned struct {
	ID    ConsumerID
	Owner Owner
}

type quorumHeld struct {
	Owner Owner
	Tags  []uint64
}

// SnapshotAfter is how many commands may pass between two snapshots:
// twice the messages held, so that a snapshot, which copies them all,
// costs at most a few message copies per command.
func (q *Quorum[H]) SnapshotAfter() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return 2 * uint64(q.core.ready+int64(q.core.unacked.live))
}

// SnapshotLater captures the replica's state as of the last applied
// command and returns its encoding, to run off the cluster's loop
// (cluster.SnapshotLater): the capture copies the core's entries (their
// handles point to messages that never change), the encoding copies the
// bodies, once (see encodeSnapshot).
func (q *Quorum[H]) SnapshotLater() func() ([]byte, error) {
	q.mu.Lock()
	st := q.core.State()
	s := q.snapshotParts()
	dlx := slices.Clone(q.dead.list)
	q.mu.Unlock()
	return func() ([]byte, error) {
		s.DLX = q.snapshotDLX(dlx)
		return q.encodeSnapshot(st, s)
	}
}

// snapshotMagic starts a snapshot in the split encoding: the magic, the
// handles' total length (8 bytes, big endian), the handles back to back
// in the order mapState visits them, then quorumSnapshot's gob with every
// handle left out and their sizes in HandleSizes. Gob wrote each body
// into a buffer of its own and then into the stream, both grown by
// doubling: four copies of every body and most of a snapshot's CPU (a
// follower draining a 200k backlog spent three quarters of its CPU
// there); here each body is copied once, into the snapshot. A gob stream
// never starts with a zero byte, so a snapshot without the magic is the
// older, all-gob encoding, which Restore still reads.
const snapshotMagic = "\x00QS2"

// encodeSnapshot encodes st and s in the split encoding.
func (q *Quorum[H]) encodeSnapshot(st State[H], s quorumSnapshot) ([]byte, error) {
	// Room for every handle and its share of the gob, so that appending
	// rarely grows the snapshot.
	size := len(snapshotMagic) + 8 + 4096
	for _, l := range st.Levels {
		for _, e := range l.Front {
			size += int(e.Size) + 160
		}
		for _, e := range l.Back {
			size += int(e.Size) + 160
		}
	}
	for _, d := range st.Unacked {
		size += int(d.Entry.Size) + 160
	}
	out := append(make([]byte, 0, size), snapshotMagic...)
	out = binary.BigEndian.AppendUint64(out, 0)
	start := len(out)
	s.State = mapState(st, func(h H) []byte {
		n := len(out)
		out = q.codec.AppendHandle(out, h)
		s.HandleSizes = append(s.HandleSizes, uint32(len(out)-n))
		return nil
	})
	binary.BigEndian.PutUint64(out[len(snapshotMagic):], uint64(len(out)-start))
	w := bytes.NewBuffer(out)
	if err := gob.NewEncoder(w).Encode(&s); err != nil {
		return nil, err
	}
	return w.Bytes(), nil
}

// decodeSnapshot decodes either encoding into s, with each handle
// decoded from a copy of its bytes (a message kept from the snapshot
// must not pin the whole of it).
func (q *Quorum[H]) decodeSnapshot(data []byte) (State[H], quorumSnapshot, error) {
	var s quorumSnapshot
	if !bytes.HasPrefix(data, []byte(snapshotMagic)) {
		if err := gob.NewDecoder(bytes.NewReader(data)).Decode(&s); err != nil {
			return State[H]{}, s, err
		}
		return q.decodeHandles(s, func(b []byte) ([]byte, bool) { return b, true })
	}
	data = data[len(snapshotMagic):]
	if len(data) < 8 || binary.BigEndian.Uint64(data) > uint64(len(data)-8) {
		return State[H]{}, s, errors.New("bad handles length")
	}
	n := int(binary.BigEndian.Uint64(data))
	handles := data[8 : 8+n]
	if err := gob.NewDecoder(bytes.NewReader(data[8+n:])).Decode(&s); err != nil {
		return State[H]{}, s, err
	}
	next := 0
	return q.decodeHandles(s, func([]byte) ([]byte, bool) {
		if next >= len(s.HandleSizes) || int(s.HandleSizes[next]) > len(handles) {
			return nil, false
		}
		b := bytes.Clone(handles[:s.HandleSizes[next]])
		handles, next = handles[s.HandleSizes[next]:], next+1
		return b, true
	})
}

// decodeHandles maps s's state to handles, taking each one's bytes from
// take (given the bytes the gob held, if any).
func (q *Quorum[H]) decodeHandles(s quorumSnapshot, take func([]byte) ([]byte, bool)) (State[H], quorumSnapshot, error) {
	var derr error
	st := mapState(s.State, func(b []byte) H {
		var h H
		b, ok := take(b)
		if !ok {
			if derr == nil {
				derr = errors.New("handles do not match their sizes")
			}
			return h
		}
		h, err := q.codec.DecodeHandle(b)
		if err != nil && derr == nil {
			derr = err
		}
		return h
	})
	return st, s, derr
}

// Snapshot returns the replica's state as of the last applied command.
func (q *Quorum[H]) Snapshot() ([]byte, error) { return q.SnapshotLater()() }

// snapshotParts copies what a snapshot holds beside the core's state.
// Caller holds mu.
func (q *Quorum[H]) snapshotParts() quorumSnapshot {
	var s quorumSnapshot
	for id, o := range q.owners {
		s.Owners = append(s.Owners, quorumOwned{id, o})
	}
	for o, tags := range q.held {
		h := quorumHeld{Owner: o}
		for t := range tags {
			h.Tags = append(h.Tags, t)
		}
		slices.Sort(h.Tags)
		s.Held = append(s.Held, h)
	}
	for o, w := range q.pushed {
		s.Pushed = append(s.Pushed, quorumPushed{Owner: o, Window: *w})
	}
	for id, n := range q.granted {
		s.Granted = append(s.Granted, quorumGranted{id, n})
	}
	s.DLXNext = q.dead.next
	return s
}

// Restore replaces the replica's state with a snapshot's. This member's
// consumers, if any, are subscribed again (the snapshot may predate
// them).
func (q *Quorum[H]) Restore(data []byte) error {
	st, s, err := q.decodeSnapshot(data)
	if err != nil {
		return fmt.Errorf("quorum queue snapshot: %w", err)
	}
	dlx, err := q.restoreDLX(s.DLX)
	if err != nil {
		return fmt.Errorf("quorum queue snapshot: a dead-letter: %w", err)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.core = FromState(st)
	q.dead.list, q.dead.next = dlx, s.DLXNext
	for _, d := range dlx {
		q.core.Hold(1, int64(d.entry.Size))
	}
	clear(q.dead.sent)
	if q.leader.Load() && len(dlx) > 0 {
		go q.sendDLX(q.sendingDLX())
	}
	clear(q.owners)
	for _, o := range s.Owners {
		q.owners[o.ID] = o.Owner
	}
	clear(q.pushed)
	for _, p := range s.Pushed {
		w := p.Window
		q.pushed[p.Owner] = &w
	}
	clear(q.granted)
	for _, g := range s.Granted {
		q.granted[g.ID] = g.Total
	}
	clear(q.held)
	for _, h := range s.Held {
		q.hold(h.Owner, 0, 0)
		for _, t := range h.Tags {
			q.held[h.Owner][t] = struct{}{}
		}
	}
	for id, lc := range q.local {
		// Its credit is what the restored core has left of it; it is
		// given more from the total the core knows.
		var left int64
		for _, cs := range q.core.consumers {
			if cs.id == id {
				left = cs.credit
			}
		}
		if lc.credit > left {
			lc.c.Unacquire(lc.credit - left)
		}
		lc.credit, lc.granted = left, q.granted[id]
		if _, ok := q.owners[id]; !ok {
			q.subscribe(id, lc)
		} else {
			q.topUp(id, lc)
		}
	}
	return nil
}

// mapState is s with its handles mapped by f.
func mapState[A, B any](s State[A], f func(A) B) State[B] {
	entry := func(e StateEntry[A]) StateEntry[B] { return mapEntry(e, f) }
	entries := func(es []StateEntry[A]) []StateEntry[B] {
		out := make([]StateEntry[B], len(es))
		for i, e := range es {
			out[i] = entry(e)
		}
		return out
	}
	out := State[B]{Policy: s.Policy, Expiries: s.Expiries, NextTag: s.NextTag, WindowBase: s.WindowBase,
		Consumers: s.Consumers, RR: s.RR, Order: s.Order, Active: s.Active, LastUsed: s.LastUsed,
		HadUsers: s.HadUsers, DeleteAsked: s.DeleteAsked, Stats: s.Stats}
	for _, l := range s.Levels {
		out.Levels = append(out.Levels, StateLevel[B]{Front: entries(l.Front), Back: entries(l.Back), Seq: l.Seq,
			MaxExpiry: l.MaxExpiry, Unbounded: l.Unbounded})
	}
	for _, d := range s.Unacked {
		out.Unacked = append(out.Unacked, StateDelivery[B]{Tag: d.Tag, At: d.At, Entry: entry(d.Entry)})
	}
	return out
}

// mapEntry is e with its handle mapped by f.
func mapEntry[A, B any](e StateEntry[A], f func(A) B) StateEntry[B] {
	return StateEntry[B]{Handle: f(e.Handle), Expires: e.Expires, Timestamp: e.Timestamp, Size: e.Size,
		Deliveries: e.Deliveries, Priority: e.Priority, Mark: e.Mark, Seq: e.Seq}
}

// quorumBarrier is a Barrier waiting for this member's commands up to seq.
type quorumBarrier struct {
	seq  uint64
	done chan error
}

// Barrier waits until every command this member made before the call
// (its settlements above all) has been applied, or failed: the broker's
// barrier before answering a synchronous method, so acks before it are
// in the group's log on a majority. It fails with ErrNotCommitted when
// one has not been applied within the timeout (lost with a leader: its
// messages come back).
func (q *Quorum[H]) Barrier() error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return ErrQueueClosed
	}
	if !q.pendingUpTo(q.seq) {
		q.mu.Unlock()
		return nil
	}
	b := quorumBarrier{seq: q.seq, done: make(chan error, 1)}
	q.barriers = append(q.barriers, b)
	q.mu.Unlock()
	t := time.NewTimer(q.timeout)
	defer t.Stop()
	select {
	case err := <-b.done:
		return err
	case <-t.C:
		return ErrNotCommitted
	}
}

// pendingUpTo reports whether a command up to seq is in flight. Caller
// holds mu.
func (q *Quorum[H]) pendingUpTo(seq uint64) bool {
	for s := range q.inflight {
		if s <= seq {
			return true
		}
	}
	return false
}

// landed takes command seq out of flight and releases the barriers it
// held. Caller holds mu.
func (q *Quorum[H]) landed(seq uint64) {
	f, ok := q.inflight[seq]
	if !ok {
		return
	}
	delete(q.inflight, seq)
	if f.isPush() {
		q.pushing--
		q.pushingBytes -= f.size
		q.unflow()
		if len(q.early) > 0 && !q.closed {
			q.proposeEarly()
		}
	}
	if len(q.barriers) == 0 {
		return
	}
	kept := q.barriers[:0]
	for _, b := range q.barriers {
		if q.pendingUpTo(b.seq) {
			kept = append(kept, b)
		} else {
			b.done <- nil
		}
	}
	clear(q.barriers[len(kept):])
	q.barriers = kept
}
