package broker

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/amqp-go/amqp-go/server/queue"
	"github.com/amqp-go/amqp-go/shared/amqp"
)

// remoteQueue is a cluster's classic queue on a member other than its
// home node: the queue.Queue the broker's Queue drives, with every command
// sent over the node link to the home node, which holds the messages
// (homeLink there). Publishes are confirmed once the home node has them
// as safe as its store makes them; consumers get credit windows that the
// home node delivers into.
//
// Locking: mu guards consumers, pending and the info cache; it is
// a leaf (the link's mu is never taken under it, nor a consumer's
// channel's locks).
type remoteQueue struct {
	q *Queue
	// link is the home node's; for a quorum queue forwarded from a node
	// outside its group, targets are the group's members, and link the
	// one in use until it fails (current).
	link    *linkClient
	targets func() []uint64
	// isTarget reports whether a node is among targets, without a copy
	// (every forwarded command asks).
	isTarget func(uint64) bool
	// tagBit marks the delivery tags and consumer ids this queue gives
	// (a quorum queue's front tells them from its local group's).
	tagBit uint64

	mu        sync.Mutex
	consumers map[queue.ConsumerID]*remoteConsumer
	pending   map[queue.Consumer[qhandle]]*remoteConsumer // registered at home, not yet Consume'd here
	nextID    queue.ConsumerID
	info      queue.Info
	infoAt    time.Time
}

var _ queue.Queue[qhandle] = (*remoteQueue)(nil)

// remoteConsumer is a consumer of this node on a remote queue.
type remoteConsumer struct {
	rq    *remoteQueue
	link  *linkClient // the link it is subscribed on
	cid   uint64      // the link's id for it
	id    queue.ConsumerID
	c     queue.Consumer[qhandle]
	noAck bool
	// credit is what the home node may still deliver (rq.mu).
	credit int64
	gone   bool // (rq.mu) cancelled here
}

// remoteWindow is the most credit a remote consumer lends the home node:
// deliveries in flight on the link, beyond the channel's prefetch.
const remoteWindow = 256

func newRemoteQueueCore(q *Queue, link *linkClient) *remoteQueue {
	return &remoteQueue{q: q, link: link, consumers: map[queue.ConsumerID]*remoteConsumer{},
		pending: map[queue.Consumer[qhandle]]*remoteConsumer{}}
}

// current is the link in use: the home node's, or, for a forwarded quorum
// queue, the member's it last reached (another, reachable one once that
// fails: its consumers are cancelled with it, and its settlements void).
func (rq *remoteQueue) current() *linkClient {
	if rq.targets == nil {
		return rq.link
	}
	rq.mu.Lock()
	l := rq.link
	rq.mu.Unlock()
	if l != nil && l.connected() && rq.isTarget(l.home) {
		return l // still a member: a group shaped by hand may have lost it
	}
	s := rq.q.vhost.server
	for _, id := range rq.targets() {
		if id == s.selfID() {
			continue
		}
		c := s.links.client(s, id)
		if c.reachable() {
			l = c
			break
		}
		if l == nil {
			l = c // none reachable: requests fail on the first
		}
	}
	rq.mu.Lock()
	rq.link = l
	rq.mu.Unlock()
	if l == nil {
		return s.links.client(s, 0) // no member: fails every request
	}
	return l
}

// pushAsync sends m to the home node; done, if set, hears once the home
// node has it safe (or refused it, or could not be reached). It returns a
// channel, closed once the link's backlog of pushes has drained, when
// there is too much in flight.
func (rq *remoteQueue) pushAsync(m *Message, done func(error)) <-chan struct{} {
	wait, err := rq.current().call(linkPush, linkCall{size: int64(len(m.Body)) + 256, done: done}, func(b []byte, _ uint64) []byte {
		b = appendQueueName(b, rq.q.vhost.name, rq.q.Name)
		return quorumCodec{}.AppendHandle(b, qhandle{msg: m})
	})
	if err != nil && done != nil {
		done(err)
	}
	return wait
}

// Push is pushAsync without a confirm; it reports no counts (the home
// node's queue does its own flow control).
func (rq *remoteQueue) Push(m queue.Message[qhandle]) (int64, int, error) {
	rq.pushAsync(m.Handle.msg, nil)
	return 0, 0, nil
}

// PushRecovered: a remote queue recovers nothing here.
func (rq *remoteQueue) PushRecovered([]queue.Message[qhandle]) {}

// Admits: the home node judges a reject-publish queue's admission, and
// nacks a refused push.
func (rq *remoteQueue) Admits(uint32) bool { return true }

// register subscribes c at the home node (exclusivity is judged there)
// without credit yet: Consume then starts it.
func (rq *remoteQueue) register(m amqp.Method, c queue.Consumer[qhandle], priority int64, noAck, exclusive bool) error {
	rc := &remoteConsumer{rq: rq, link: rq.current(), c: c, noAck: noAck}
	status, body, err := rc.link.callWait(linkConsume, 5*time.Second, func(cid uint64) { rc.cid = cid; rc.link.addConsumer(rc) },
		func(b []byte) []byte {
			b = appendQueueName(b, rq.q.vhost.name, rq.q.Name)
			b = appendU64(b, uint64(priority))
			return append(b, boolByte(noAck), boolByte(exclusive))
		})
	if err == nil && status != linkOK {
		err = linkFailure(m, body)
	}
	if err != nil {
		rc.link.removeConsumer(rc.cid)
		if errors.Is(err, errHomeDown) || errors.Is(err, context.DeadlineExceeded) {
			if rq.targets != nil {
				return protoErr(amqp.NotFound, m, "queue '%s' in vhost '%s' is unavailable: no member of its group can be reached", rq.q.Name, rq.q.vhost.name)
			}
			return rq.q.errHomeDown(m)
		}
		return err
	}
	rq.mu.Lock()
	rq.pending[c] = rc
	rq.mu.Unlock()
	return nil
}

// hasPending reports whether register subscribed c, not yet started.
func (rq *remoteQueue) hasPending(c queue.Consumer[qhandle]) bool {
	rq.mu.Lock()
	defer rq.mu.Unlock()
	return rq.pending[c] != nil
}

// Consume starts a consumer register subscribed: it lends the home node
// its first credit.
func (rq *remoteQueue) Consume(c queue.Consumer[qhandle], _ int64, _ bool) queue.ConsumerID {
	rq.mu.Lock()
	rc := rq.pending[c]
	delete(rq.pending, c)
	if rc == nil {
		rq.mu.Unlock()
		return 0
	}
	rq.nextID++
	rc.id = rq.nextID
	rq.consumers[rc.id] = rc
	rq.mu.Unlock()
	rq.topUp(rc)
	return rc.id
}

// unregister drops a consumer register subscribed and that is not
// going to be started.
func (rq *remoteQueue) unregister(c queue.Consumer[qhandle]) {
	rq.mu.Lock()
	rc := rq.pending[c]
	delete(rq.pending, c)
	if rc != nil {
		rc.gone = true
	}
	rq.mu.Unlock()
	if rc != nil {
		rc.link.send(linkCancel, func(b []byte) []byte { return appendU64(b, rc.cid) })
	}
}

// topUp lends the home node what credit rc's channel grants, up to
// remoteWindow.
func (rq *remoteQueue) topUp(rc *remoteConsumer) {
	rq.mu.Lock()
	if rc.gone {
		rq.mu.Unlock()
		return
	}
	want := remoteWindow - rc.credit
	var got int64
	if want > 0 {
		got = rc.c.Acquire(want)
		rc.credit += got
	}
	rq.mu.Unlock()
	if got > 0 {
		rc.link.send(linkCredit, func(b []byte) []byte { return appendU32(appendU64(b, rc.cid), uint32(got)) })
	}
}

func (rq *remoteQueue) topUpAll() {
	rq.mu.Lock()
	cs := make([]*remoteConsumer, 0, len(rq.consumers))
	for _, rc := range rq.consumers {
		cs = append(cs, rc)
	}
	rq.mu.Unlock()
	for _, rc := range cs {
		rq.topUp(rc)
	}
}

// delivered hands a batch from the home node to rc's channel; the link's
// reader is the only caller, so a consumer's deliveries keep their order.
func (rq *remoteQueue) delivered(rc *remoteConsumer, es []queue.Entry[qhandle], tag uint64) {
	n := int64(len(es))
	rq.mu.Lock()
	gone := rc.gone
	if !gone {
		// More than lent would be the home node's error; the channel's
		// window is what was acquired.
		rc.credit -= n
		if rc.credit < 0 {
			rc.credit = 0
		}
	}
	rq.mu.Unlock()
	if gone {
		if tag != 0 {
			rq.settleOn(rc.link, tagRange(tag, len(es)), queue.Requeue)
		}
		return
	}
	if tag != 0 {
		tag |= rq.tagBit
	}
	rc.c.Deliver(es, tag)
	rq.topUp(rc)
}

func tagRange(first uint64, n int) []uint64 {
	tags := make([]uint64, n)
	for i := range tags {
		tags[i] = first + uint64(i)
	}
	return tags
}

// Cancel ends a consumer: the credit it lent goes back to its channel.
func (rq *remoteQueue) Cancel(id queue.ConsumerID) bool {
	rq.mu.Lock()
	rc := rq.consumers[id]
	delete(rq.consumers, id)
	var credit int64
	if rc != nil {
		rc.gone = true
		credit, rc.credit = rc.credit, 0
	}
	left := len(rq.consumers) > 0
	rq.mu.Unlock()
	if rc == nil {
		return left
	}
	if credit > 0 {
		rc.c.Unacquire(credit)
	}
	// The link keeps rc until the home node confirms (linkCancelled):
	// deliveries still on their way go back to the queue.
	rc.link.send(linkCancel, func(b []byte) []byte { return appendU64(b, rc.cid) })
	return left
}

func (rq *remoteQueue) isGone(rc *remoteConsumer) bool {
	rq.mu.Lock()
	defer rq.mu.Unlock()
	return rc.gone
}

// consumerLost is a consumer the home node ended, or lost with the link:
// its channel cancels it (basic.cancel to a client that takes them). One
// still pending (not started) is dropped.
func (rq *remoteQueue) consumerLost(rc *remoteConsumer) {
	rq.mu.Lock()
	if rq.pending[rc.c] == rc {
		delete(rq.pending, rc.c)
		rc.gone = true
	}
	gone := rc.gone
	rq.mu.Unlock()
	if gone {
		return
	}
	if c, ok := rc.c.(*consumer); ok {
		c.ch.queueDeleted(c)
		return
	}
	rq.Cancel(rc.id)
}

// Settle sends the outcomes to the home node, then lends what credit the
// settled deliveries freed.
func (rq *remoteQueue) Settle(tags []uint64, outcome queue.Outcome) {
	rq.settle(tags, outcome)
	rq.topUpAll()
}

func (rq *remoteQueue) settle(tags []uint64, outcome queue.Outcome) {
	rq.settleOn(rq.current(), tags, outcome)
}

// settleOn sends the outcomes on link l.
func (rq *remoteQueue) settleOn(l *linkClient, tags []uint64, outcome queue.Outcome) {
	if len(tags) == 0 {
		return
	}
	l.send(linkSettle, func(b []byte) []byte {
		b = appendQueueName(b, rq.q.vhost.name, rq.q.Name)
		b = append(b, byte(outcome))
		b = appendU32(b, uint32(len(tags)))
		for _, t := range tags {
			b = appendU64(b, t&^rq.tagBit)
		}
		return b
	})
}

// Get takes the head message at the home node (basic.get); ok is false
// when there is none or the home node cannot be reached.
func (rq *remoteQueue) Get(noAck bool) (e queue.Entry[qhandle], tag uint64, ok bool) {
	e, tag, _, ok, _ = rq.get(noAck)
	return e, tag, ok
}

func (rq *remoteQueue) get(noAck bool) (e queue.Entry[qhandle], tag uint64, remaining int, ok bool, err error) {
	status, body, err := rq.current().callWait(linkGet, 5*time.Second, nil, func(b []byte) []byte {
		return append(appendQueueName(b, rq.q.vhost.name, rq.q.Name), boolByte(noAck))
	})
	if err != nil {
		return e, 0, 0, false, err
	}
	if status != linkOK {
		return e, 0, 0, false, linkFailure(nil, body)
	}
	r := linkReader{b: body}
	found := r.u8() == 1
	tag = r.u64()
	remaining = int(r.u32())
	deliveries := r.u16()
	if err := r.err(); err != nil || !found {
		return e, 0, remaining, false, err
	}
	h, err := quorumCodec{}.DecodeHandle(r.rest())
	if err != nil {
		return e, 0, 0, false, err
	}
	e.Handle, e.Deliveries, e.Size, e.Priority = h, deliveries, uint32(len(h.msg.Body)), h.msg.Priority
	if tag != 0 {
		tag |= rq.tagBit
	}
	return e, tag, remaining, true, nil
}

// barrier returns once the home node's store has made durable what this
// node settled there on connection gen; an error if that connection is
// gone (its settlements may be lost with it) or the home node's store
// failed.
func (rq *remoteQueue) barrier(gen uint64) error {
	l := rq.current()
	c := l.conn.Load()
	now := l.generation()
	if c == nil || now != gen {
		return errHomeDown
	}
	status, body, err := l.callWait(linkSync, 10*time.Second, nil, func(b []byte) []byte {
		return appendQueueName(b, rq.q.vhost.name, rq.q.Name)
	})
	if err == nil && status != linkOK {
		err = linkFailure(nil, body)
	}
	if err != nil {
		return err
	}
	if l.generation() != gen {
		return errHomeDown // a new connection was dialled for the sync: the old one's may be lost
	}
	return nil
}

// GiveBack returns a message Get took, at the home node.
func (rq *remoteQueue) GiveBack(_ queue.Entry[qhandle], tag uint64) {
	if tag != 0 {
		rq.settle([]uint64{tag}, queue.Requeue)
	}
}

// Purge drops the home node's ready messages; 0 when it cannot be reached.
func (rq *remoteQueue) Purge() int {
	status, body, err := rq.current().callWait(linkPurge, 5*time.Second, nil, func(b []byte) []byte {
		return appendQueueName(b, rq.q.vhost.name, rq.q.Name)
	})
	if err != nil || status != linkOK {
		return 0
	}
	r := linkReader{b: body}
	return int(r.u32())
}

// Delete ends this node's consumers of the queue (the home node deletes
// its own, with the messages, as it applies the same deletion).
func (rq *remoteQueue) Delete() int {
	rq.Close()
	return 0
}

// Close ends this node's consumers of the queue at the home node.
func (rq *remoteQueue) Close() {
	rq.mu.Lock()
	var ids []queue.ConsumerID
	for id := range rq.consumers {
		ids = append(ids, id)
	}
	rq.mu.Unlock()
	for _, id := range ids {
		rq.Cancel(id)
	}
}

// infoFresh is how long Info answers from its last answer, so that a
// listing of many remote queues costs one round trip per queue and
// interval.
const infoFresh = time.Second

// Info is the home node's, at most infoFresh old; the last one known (or
// zero) while it cannot be reached.
func (rq *remoteQueue) Info() queue.Info {
	rq.mu.Lock()
	if time.Since(rq.infoAt) < infoFresh {
		in := rq.info
		rq.mu.Unlock()
		return in
	}
	rq.mu.Unlock()
	in, err := rq.fetchInfo()
	rq.mu.Lock()
	defer rq.mu.Unlock()
	if err == nil {
		rq.info, rq.infoAt = in, time.Now()
	}
	return rq.info
}

func (rq *remoteQueue) fetchInfo() (queue.Info, error) {
	var in queue.Info
	status, body, err := rq.current().callWait(linkInfo, 2*time.Second, nil, func(b []byte) []byte {
		return appendQueueName(b, rq.q.vhost.name, rq.q.Name)
	})
	if err != nil {
		return in, err
	}
	if status != linkOK {
		return in, linkFailure(nil, body)
	}
	err = json.Unmarshal(body, &in)
	return in, err
}

// fresh drops the cached Info (a declare's counts must be current).
func (rq *remoteQueue) fresh() {
	rq.mu.Lock()
	rq.infoAt = time.Time{}
	rq.mu.Unlock()
}

// SampleRates: the home node samples its queue's rates.
func (rq *remoteQueue) SampleRates() {}

// Head: the home node has the head message; a remote queue shows none.
func (rq *remoteQueue) Head() (queue.Entry[qhandle], bool) { return queue.Entry[qhandle]{}, false }

// Backlog is Info's counts.
func (rq *remoteQueue) Backlog() (ready, readyBytes int64, consumers int) {
	in := rq.Info()
	return in.Ready, in.ReadyBytes, in.Consumers
}

// Touch records a use at the home node (x-expires).
func (rq *remoteQueue) Touch() {
	rq.current().send(linkTouch, func(b []byte) []byte { return appendQueueName(b, rq.q.vhost.name, rq.q.Name) })
}

// Wake lends credit its consumers' channels have again.
func (rq *remoteQueue) Wake() { rq.topUpAll() }

// SetPolicy: the home node applies policies to its queue (they replicate).
func (rq *remoteQueue) SetPolicy(queue.Policy) {}

// linkFailure is a failed reply's AMQP error, for method m.
func linkFailure(m amqp.Method, body []byte) error {
	r := linkReader{b: body}
	code := r.u16()
	n := int(r.u16())
	text := string(r.take(n))
	if r.bad {
		return errLinkFrame
	}
	e := &amqpError{code: code, text: text, hard: hardCodes[code]}
	if m != nil {
		e.classID, e.methodID = m.ClassID(), m.MethodID()
	}
	return e
}

// errHomeDown is RabbitMQ's 404 for a durable queue whose home node is
// down. A transient queue gets the same text without "durable" while the
// cluster has yet to delete it (transientGoneAfter): RabbitMQ deletes
// those at once, so it has no text of its own for them.
func (q *Queue) errHomeDown(m amqp.Method) error {
	kind := "durable queue"
	if !q.Durable {
		kind = "queue"
	}
	return protoErr(amqp.NotFound, m, "home node '%s' of %s '%s' in vhost '%s' is down or inaccessible",
		q.HomeNode(), kind, q.Name, q.vhost.name)
}

// linkClient is this node's link to one home node, dialled when first
// needed and again after a failure (at most once per linkRetry): requests
// and their replies, and the deliveries to this node's consumers there.
//
// Locking: mu guards everything below it; dialMu serialises dials and is
// taken before mu. Neither is held while calling a callback or a
// consumer. conn is read without a lock (a publish's fast path) and
// changed only under mu, where a call's registration checks it.
type linkClient struct {
	s    *Server
	home uint64
	conn atomic.Pointer[linkConn]

	dialMu sync.Mutex

	mu        sync.Mutex
	failedAt  time.Time
	next      uint64
	calls     map[uint64]linkCall
	consumers map[uint64]*remoteConsumer
	gen       uint64        // the connection's number, unique among the server's links (linkGens)
	inflight  int64         // bytes of pushes not yet answered
	congested chan struct{} // closed once inflight is below pushLow
	closed    bool
}

// linkCall is a request waiting for its reply: a push's (size counted
// against the backlog, done told its outcome, if set) or another's (cb).
type linkCall struct {
	size int64
	done func(error)
	cb   func(status byte, body []byte, err error)
}

// answer hands a reply (or err, the link's failure) to the call.
func (c linkCall) answer(status byte, body []byte, err error) {
	switch {
	case c.cb != nil:
		c.cb(status, body, err)
	case c.done == nil:
	case err != nil:
		c.done(err)
	case status == linkRejected:
		c.done(errQueueFull)
	case status == linkFailed:
		c.done(linkFailure(nil, body))
	default:
		c.done(nil)
	}
}

// The push backlog a link lets publishers have before they pause.
const (
	pushHigh = 32 << 20
	pushLow  = 16 << 20
)

// linkRetry is how long a failed dial is not tried again: requests fail
// at once meanwhile.
const linkRetry = time.Second

// connected reports whether the link has a connection now.
func (l *linkClient) connected() bool { return l.conn.Load() != nil }

// reachable reports whether the link can be had now (dialling it if
// need be).
func (l *linkClient) reachable() bool {
	_, err := l.ensure()
	return err == nil
}

// ensure returns the link's connection, dialling it if there is none.
func (l *linkClient) ensure() (*linkConn, error) {
	if c := l.conn.Load(); c != nil {
		return c, nil
	}
	l.dialMu.Lock()
	defer l.dialMu.Unlock()
	l.mu.Lock()
	c, failedAt, closed := l.conn.Load(), l.failedAt, l.closed
	l.mu.Unlock()
	if c != nil {
		return c, nil
	}
	if closed || time.Since(failedAt) < linkRetry {
		return nil, errHomeDown
	}
	g := l.s.quorumGroups()
	if g == nil {
		return nil, errHomeDown
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	nc, err := g.DialLink(ctx, l.home)
	cancel()
	if err != nil {
		l.mu.Lock()
		l.failedAt = time.Now()
		l.mu.Unlock()
		l.s.logger.Debug("cluster: no link to a classic queue's home node", "node", l.home, "err", err)
		return nil, errHomeDown
	}
	c = newLinkConn(nc)
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		c.close()
		return nil, errHomeDown
	}
	l.conn.Store(c)
	l.gen = linkGens.Add(1)
	l.mu.Unlock()
	go l.readLoop(c)
	return c, nil
}

// linkGens numbers node link connections, so that no two of a process's
// share a generation (a remote queue's ack barrier compares them).
var linkGens atomic.Uint64

// generation is the current connection's number (0: none made yet).
func (l *linkClient) generation() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.gen
}

// call sends a request, whose reply (or errHomeDown, once, when the link
// fails first) goes to lc; lc.size counts against the push backlog. The
// returned channel, when not nil, is closed once the backlog has drained
// (pushes only). err is set, and lc not answered, when the request could
// not be sent. body is given the request's id (appended already).
func (l *linkClient) call(op byte, lc linkCall, body func(b []byte, id uint64) []byte) (<-chan struct{}, error) {
	c, err := l.ensure()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	if l.conn.Load() != c {
		l.mu.Unlock()
		return nil, errHomeDown
	}
	l.next++
	id := l.next
	l.calls[id] = lc
	var wait <-chan struct{}
	if size := lc.size; size > 0 {
		l.inflight += size
		if l.inflight > pushHigh {
			if l.congested == nil {
				l.congested = make(chan struct{})
			}
			wait = l.congested
		}
	}
	l.mu.Unlock()
	if !c.frame(op, func(b []byte) []byte { return body(appendU64(b, id), id) }) {
		// Failed meanwhile: the reader's end answers every call, this
		// one included, unless it already ran.
		l.fail(c)
	}
	return wait, nil
}

// callWait sends a request and waits up to timeout for its reply. with,
// if set, is given the request's id before the request goes out.
func (l *linkClient) callWait(op byte, timeout time.Duration, with func(id uint64), body func(b []byte) []byte) (byte, []byte, error) {
	type reply struct {
		status byte
		body   []byte
		err    error
	}
	ch := make(chan reply, 1)
	var rid uint64
	_, err := l.call(op, linkCall{cb: func(status byte, body []byte, err error) { ch <- reply{status, body, err} }},
		func(b []byte, id uint64) []byte {
			rid = id
			if with != nil {
				with(id)
			}
			return body(b)
		})
	if err != nil {
		return 0, nil, err
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case r := <-ch:
		return r.status, r.body, r.err
	case <-t.C:
		l.mu.Lock()
		delete(l.calls, rid)
		l.mu.Unlock()
		return 0, nil, context.DeadlineExceeded
	}
}

// send sends a one-way frame on the current connection, if there is one
// (a frame for a connection that failed has nobody to reach: the home
// node undid its side).
func (l *linkClient) send(op byte, body func(b []byte) []byte) {
	if c := l.conn.Load(); c != nil && !c.frame(op, body) {
		l.fail(c)
	}
}

func (l *linkClient) addConsumer(rc *remoteConsumer) {
	l.mu.Lock()
	l.consumers[rc.cid] = rc
	l.mu.Unlock()
}

func (l *linkClient) removeConsumer(cid uint64) {
	l.mu.Lock()
	delete(l.consumers, cid)
	l.mu.Unlock()
}

// readLoop is c's reader: replies, deliveries and cancellations, until c
// fails.
func (l *linkClient) readLoop(c *linkConn) {
	err := readFrames(c.c, linkFrameMax(l.s.cfg.MaxMessageSize), func(op byte, body []byte) error {
		r := linkReader{b: body}
		switch op {
		case linkReply:
			id := r.u64()
			status := r.u8()
			if err := r.err(); err != nil {
				return err
			}
			l.mu.Lock()
			call, ok := l.calls[id]
			delete(l.calls, id)
			if ok && call.size > 0 {
				l.inflight -= call.size
				l.releaseLocked()
			}
			l.mu.Unlock()
			if ok {
				call.answer(status, r.rest(), nil)
			}
		case linkDeliver:
			cid, tag, n := r.u64(), r.u64(), int(r.u16())
			es := make([]queue.Entry[qhandle], n)
			for i := range es {
				deliveries := r.u16()
				size := int(r.u32())
				h, err := quorumCodec{}.DecodeHandle(r.take(size))
				if err != nil || r.bad {
					return errLinkFrame
				}
				es[i].Handle, es[i].Deliveries, es[i].Size, es[i].Priority = h, deliveries, uint32(len(h.msg.Body)), h.msg.Priority
			}
			l.mu.Lock()
			rc := l.consumers[cid]
			l.mu.Unlock()
			if rc != nil { // nil: a protocol error; the home node undoes it with the link
				rc.rq.delivered(rc, es, tag)
			}
		case linkCancelled:
			// The home node ended the consumer: asked to (it was gone
			// here already, and nothing more comes for it), or on its
			// own (the channel here hears of it).
			cid := r.u64()
			l.mu.Lock()
			rc := l.consumers[cid]
			delete(l.consumers, cid)
			l.mu.Unlock()
			if rc != nil && !rc.rq.isGone(rc) {
				go rc.rq.consumerLost(rc)
			}
		default:
			return errLinkFrame
		}
		return nil
	})
	l.s.logger.Info("cluster: link to a classic queue's home node lost", "node", l.home, "err", err)
	l.fail(c)
}

// releaseLocked wakes paused publishers once the push backlog is low.
func (l *linkClient) releaseLocked() {
	if l.congested != nil && l.inflight < pushLow {
		close(l.congested)
		l.congested = nil
	}
}

// fail ends connection c: every call waiting on it hears errHomeDown and
// every consumer on it is cancelled. The home node, seeing the link end,
// returns what these consumers had unacked to its queue.
func (l *linkClient) fail(c *linkConn) {
	c.close()
	l.mu.Lock()
	if !l.conn.CompareAndSwap(c, nil) {
		l.mu.Unlock()
		return
	}
	l.failedAt = time.Now()
	calls := l.calls
	l.calls = map[uint64]linkCall{}
	cs := l.consumers
	l.consumers = map[uint64]*remoteConsumer{}
	l.inflight = 0
	l.releaseLocked()
	l.mu.Unlock()
	for _, call := range calls {
		call.answer(0, nil, errHomeDown)
	}
	for _, rc := range cs {
		if !rc.rq.isGone(rc) {
			go rc.rq.consumerLost(rc)
		}
	}
}

// close ends the link for good (server shutdown).
func (l *linkClient) close() {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	if c := l.conn.Load(); c != nil {
		l.fail(c)
	}
}
