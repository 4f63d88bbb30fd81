package broker

import (
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/amqp-go/amqp-go/server/queue"
	"github.com/amqp-go/amqp-go/shared/amqp"
)

// channel is one AMQP channel. Fields marked "reader" are touched only by the
// connection's reader goroutine; deliveries from queue goroutines go through
// mu; confirms from the store go through confirmMu.
type channel struct {
	id   uint16
	conn *conn

	// perm caches permission decisions (authz.go; reader goroutine).
	perm permCache

	// reader
	closing     bool // channel.close sent, waiting for close-ok
	publish     *amqp.BasicPublish
	publishArgs amqp.BasicPublish // decode target for basic.publish
	ackArgs     amqp.BasicAck     // decode target for basic.ack
	replyKey    string            // direct reply-to name of this channel, if consuming it
	replyTag    string            // its consumer tag
	publishX    *Exchange
	xcache      map[string]*Exchange
	props       []byte
	body        []byte
	bodySize    uint64
	consumers   map[string]*consumer
	prefetch    int32 // per-consumer prefetch for new consumers
	// ended is set, under the conn's outMu, once the channel's last frame
	// (close-ok, or the server's channel.close) is queued: from then on
	// nothing of this channel may go out, and a channel that reuses the id
	// gets no stale frames. (Here, beside prefetch, it fills padding.)
	ended       atomic.Bool
	lastQueue   string
	tx          bool
	txPublishes []txPublish
	txAcks      []txAck
	confirm     bool
	publishSeq  uint64
	// pub is the routing buffers and default-exchange queue cache, made on
	// the first publish: a channel that only consumes goes without its
	// 216 bytes (B7: idle connections).
	pub           *publisher
	stripe        uint32 // its stripe of the exchanges' publish counters
	settleScratch []uint64
	// ackScratch holds the entries one nack or reject takes, reused by
	// the next: outside a transaction they allocate nothing (owned by the
	// reader, which handles the channel's methods).
	ackScratch []unackedEntry
	// acked holds what basic.ack took since the reader last settled
	// (conn.endBatch): a read batch's acks settle together, one queue
	// lock and one driver wake-up a batch instead of an ack. Reader only.
	acked []unackedEntry
	// unsynced: the channel released stored messages (ack, reject, nack
	// without requeue of persistent messages on durable queues) since its
	// last barrier, which the next method the server answers waits for
	// (acksync.go). storeUnsynced: some were in the store;
	// replicaUnsynced: these replicated quorum queues, or classic queues
	// homed on other nodes, had some.
	unsynced        bool
	storeUnsynced   bool
	replicaUnsynced []unsyncedQueue

	// mu guards deliveries: tags, the unacked list and its ack timer.
	mu      sync.Mutex
	nextTag uint64
	unacked unackedList
	closed  bool // no more deliveries: set by shutdown or an ack timeout
	// ackTimer checks the oldest unacked delivery against its consumer
	// timeout; armed (ackArmed) only while the channel has unacked
	// deliveries and one of them had a timeout, so idle channels cost
	// nothing.
	ackTimer *time.Timer
	ackArmed bool
	// timedOut is set (under mu, with closed) when an ack timeout closed
	// the channel from its timer; the reader finishes the shutdown.
	timedOut atomic.Bool
	// stopped is set (under mu, with closed) by shutdown before it
	// requeues: from then on the queues give its consumers no credit
	// (canDeliver), so a requeued message cannot come back to them.
	stopped atomic.Bool
	shut    bool // reader: shutdown has run

	globalLimit   atomic.Int32 // basic.qos global=true; 0: none
	globalUnacked atomic.Int32
	flowPaused    atomic.Bool

	// confirmMu guards the publisher-confirm state below.
	confirmMu     sync.Mutex
	confirmLowest uint64          // lowest seq not yet resolved
	confirmLater  map[uint64]bool // resolved out of order: true ack, false nack
	confirmNacks  []uint64        // nacked seqs, ascending, not yet sent
	confirmSent   uint64          // highest seq whose ack or nack was written
	confirmQueued bool            // on the conn's list of channels to flush
	owedCommits   int             // tx.commits waiting for the store
	closeOkOwed   bool            // the client closed; close-ok waits for confirms
	closeSeq      uint64          // the last publish before the client's close

	// view is what the management API reads of the channel (mgmtview.go).
	view chanView
	// dests are its counters per exchange and per queue (chandests.go).
	dests chanDests
}

type txPublish struct {
	msg       *Message
	x         *Exchange
	mandatory bool
}

type txAck struct {
	entries []unackedEntry
	requeue bool // nack/reject with requeue
	drop    bool // nack/reject without requeue
}

func newChannel(c *conn, id uint16) *channel {
	return &channel{id: id, conn: c, consumers: map[string]*consumer{}, confirmLowest: 1, stripe: nextStripe.Add(1)}
}

// startContent begins buffering a publish's content after its header.
// Properties and body share one allocation for the message's life, but
// room for the body is made only when that many bytes have already arrived
// (buffered bytes of the connection), never because the header declares
// it: a header is cheap to send, so memory is reserved only for bytes
// actually received. Otherwise the body frames size it as they come.
func (ch *channel) startContent(props []byte, bodySize uint64, buffered int) {
	np := len(props)
	room := uint64(0)
	if uint64(buffered) >= bodySize {
		room = bodySize
	}
	buf := make([]byte, np, np+int(room))
	copy(buf, props)
	ch.props = buf[:np:np]
	ch.bodySize = bodySize
	ch.body = buf[np:np]
}

// appendBody adds a body frame's payload (already checked against the
// declared size). A payload that BodyBuffer had the frame reader put in
// place is already there.
func (ch *channel) appendBody(p []byte) {
	n := len(ch.body)
	if len(p) > 0 && cap(ch.body) > n && &ch.body[:n+1][n] == &p[0] {
		ch.body = ch.body[:n+len(p)]
		return
	}
	ch.reserveBody(len(p))
	ch.body = append(ch.body, p...)
}

// reserveBody makes room in the body buffer for size more bytes. The
// buffer grows in large steps, so that a body usually takes one
// allocation and a large one few copies, but only with what has arrived:
// to at most 8 times the bytes received, or 16 times the frame being read
// and at most 2 MiB (a connection reads one frame at a time), never to the
// declared size before its bytes come (a content header is cheap to send).
// A 1 MiB body in 128 KiB frames takes one allocation.
func (ch *channel) reserveBody(size int) {
	received := uint64(len(ch.body))
	need := received + uint64(size)
	if need <= uint64(cap(ch.body)) {
		return
	}
	room := min(ch.bodySize, max(need, 2*uint64(cap(ch.body)), 8*received, min(16*uint64(size), 2<<20)))
	np := len(ch.props)
	buf := make([]byte, np+len(ch.body), np+int(room))
	copy(buf, ch.props)
	copy(buf[np:], ch.body)
	ch.props = buf[:np:np]
	ch.body = buf[np:]
}

// BodyBuffer is the connection's amqp.BodySink: a body frame of an
// expected size, on a channel waiting for its publish's body, is read
// straight into the body buffer. Anything else (no such channel, no
// content expected, too many bytes, a closing channel or connection) is
// left to handleFrame, which raises the error. Reader goroutine.
func (c *conn) BodyBuffer(id uint16, size int) []byte {
	if c.closing {
		return nil
	}
	ch := c.channel(id)
	if ch == nil || ch.closing || ch.publish == nil || ch.props == nil || uint64(len(ch.body))+uint64(size) > ch.bodySize {
		return nil
	}
	ch.reserveBody(size)
	n := len(ch.body)
	return ch.body[n : n+size]
}

// canDeliver reports whether queues may hand this channel messages now.
func (ch *channel) canDeliver() bool {
	if ch.flowPaused.Load() || ch.timedOut.Load() || ch.stopped.Load() {
		return false
	}
	return ch.conn.outputRoom()
}

// acquireGlobal takes up to n credits from the channel-wide prefetch window.
func (ch *channel) acquireGlobal(n int32) int32 {
	for {
		limit := ch.globalLimit.Load()
		cur := ch.globalUnacked.Load()
		take := n
		if limit > 0 {
			if cur >= limit {
				return 0
			}
			take = min(n, limit-cur)
		}
		if ch.globalUnacked.CompareAndSwap(cur, cur+take) {
			return take
		}
	}
}

// deliver writes messages taken by q for consumer c. Called by q's dispatch
// goroutine with credit already acquired.
func (ch *channel) deliver(c *consumer, q *Queue, ds []delivery) {
	ch.mu.Lock()
	if ch.closed {
		ch.mu.Unlock()
		if c.noAck {
			q.releaseDelivered(ds)
		} else {
			q.requeue(entriesOf(ds))
		}
		return
	}
	cn := ch.conn
	var now int64
	if !c.noAck {
		now = queue.Now()
		if c.timeout >= 0 && !ch.ackArmed {
			ch.armAckTimerLocked(c.timeout)
		}
	}
	cn.outMu.Lock()
	redelivered := 0
	for _, d := range ds {
		ch.nextTag++
		tag := ch.nextTag
		if !c.noAck {
			ch.unacked.push(unackedEntry{tag: tag, q: q, e: d.e, c: c, at: now})
		}
		m := d.e.msg
		dm := cn.deliverMethod(amqp.BasicDeliver{
			ConsumerTag: c.tag, DeliveryTag: tag, Redelivered: d.e.redelivered(),
			Exchange: m.Exchange, RoutingKey: m.RoutingKey,
		})
		if dm.Redelivered {
			redelivered++
		}
		cn.appendMethodLocked(ch.id, dm)
		cn.appendDeliveryLocked(ch.id, m, d.e.deliveries, q.own.quorum)
	}
	cn.outMu.Unlock()
	ch.mu.Unlock()
	cn.srv.stats.delivered.Add(uint64(len(ds)))
	ch.view.delivered(c.noAck, len(ds), redelivered)
	c.dests.delivered(c.noAck, len(ds), redelivered)
	if c.noAck {
		q.releaseDelivered(ds)
	}
	cn.kick()
}

// entriesOf returns the queue entries of deliveries.
func entriesOf(ds []delivery) []qentry {
	es := make([]qentry, len(ds))
	for i, d := range ds {
		es[i] = d.e
	}
	return es
}

// queueDeleted is called when c's queue is deleted under it.
func (ch *channel) queueDeleted(c *consumer) {
	ch.conn.consumerGone(ch, c)
}

// unackedEntry is a delivered, not yet settled message.
type unackedEntry struct {
	tag uint64
	q   *Queue // nil marks an entry already taken
	e   qentry
	c   *consumer // nil for basic.get
	at  int64     // when it was delivered (queue.Now)
}

// unackedList keeps unacked deliveries in tag order.
type unackedList struct {
	es    []unackedEntry
	head  int
	holes int
}

func (l *unackedList) push(e unackedEntry) { l.es = append(l.es, e) }

func (l *unackedList) live() int { return len(l.es) - l.head - l.holes }

// first returns the oldest outstanding entry (compact keeps it at head).
func (l *unackedList) first() (unackedEntry, bool) {
	if l.head == len(l.es) {
		return unackedEntry{}, false
	}
	return l.es[l.head], true
}

// take removes the entry with tag, or with multiple every entry up to tag
// (tag 0: all). ok is false if the tag is not outstanding.
func (l *unackedList) take(tag uint64, multiple bool, out []unackedEntry) ([]unackedEntry, bool) {
	if multiple && tag == 0 {
		for _, e := range l.es[l.head:] {
			if e.q != nil {
				out = append(out, e)
			}
		}
		l.es, l.head, l.holes = l.es[:0], 0, 0
		return out, true
	}
	i := l.head + sort.Search(len(l.es)-l.head, func(i int) bool { return l.es[l.head+i].tag >= tag })
	if i >= len(l.es) || l.es[i].tag != tag || l.es[i].q == nil {
		return out, false
	}
	if !multiple {
		out = append(out, l.es[i])
		l.es[i].q = nil
		l.es[i].e = qentry{}
		l.holes++
	} else {
		for j := l.head; j <= i; j++ {
			if l.es[j].q != nil {
				out = append(out, l.es[j])
			} else {
				l.holes--
			}
			l.es[j] = unackedEntry{}
		}
		l.head = i + 1
	}
	l.compact()
	return out, true
}

// restore puts back entries taken by a rolled-back transaction.
func (l *unackedList) restore(es []unackedEntry) {
	all := append(l.takeAll(nil), es...)
	sort.Slice(all, func(i, j int) bool { return all[i].tag < all[j].tag })
	l.es = all
}

// takeAll removes and returns every entry.
func (l *unackedList) takeAll(out []unackedEntry) []unackedEntry {
	out, _ = l.take(0, true, out)
	return out
}

func (l *unackedList) compact() {
	for l.head < len(l.es) && l.es[l.head].q == nil {
		l.es[l.head] = unackedEntry{}
		l.head++
		l.holes--
	}
	if l.head == len(l.es) {
		l.es, l.head, l.holes = l.es[:0], 0, 0
		return
	}
	if l.head > 1024 && l.head > len(l.es)/2 || l.holes > 1024 && l.holes > l.live() {
		n := 0
		for _, e := range l.es[l.head:] {
			if e.q != nil {
				l.es[n] = e
				n++
			}
		}
		clear(l.es[n:])
		l.es, l.head, l.holes = l.es[:n], 0, 0
	}
}

// settle finishes taken entries: acked, rejected (dead-lettered where the
// queue says so) or returned to their queues (requeue), and gives credit
// back.
func (ch *channel) settle(es []unackedEntry, requeue, rejected bool) {
	if len(es) == 0 {
		return
	}
	global := false
	for _, e := range es {
		if e.c != nil {
			e.c.unacked.Add(-1)
			global = true
		}
	}
	if global {
		ch.globalUnacked.Add(-int32(countConsumed(es)))
	}
	if !requeue {
		ch.settledDurable(es)
	}
	ch.settleScratch = settleRuns(es, requeue, rejected, ch.settleScratch)
	if ch.globalLimit.Load() > 0 {
		for _, c := range ch.consumers {
			c.q.signal()
		}
	}
}

// settleRuns settles entries (see settle) a run of one queue at a time, so
// each queue is locked once per run; scratch (the runs' delivery tags) is
// reused and returned, so an ack allocates nothing. The queue wakes its
// driver itself.
func settleRuns(es []unackedEntry, requeue, rejected bool, scratch []uint64) []uint64 {
	outcome := queue.Ack
	switch {
	case requeue:
		outcome = queue.Requeue
	case rejected:
		outcome = queue.Reject
	}
	for i := 0; i < len(es); {
		j := i + 1
		for j < len(es) && es[j].q == es[i].q {
			j++
		}
		tags := scratch[:0]
		for _, e := range es[i:j] {
			tags = append(tags, e.e.tag)
		}
		es[i].q.cq.Settle(tags, outcome)
		scratch = tags[:0]
		i = j
	}
	return scratch
}

func countConsumed(es []unackedEntry) int {
	n := 0
	for _, e := range es {
		if e.c != nil {
			n++
		}
	}
	return n
}

// confirmed resolves publish seq (ack if err is nil, nack otherwise). It may
// be called from any goroutine.
func (ch *channel) confirmed(seq uint64, err error) {
	ch.confirmMu.Lock()
	ack := err == nil
	if ack {
		ch.conn.srv.stats.confirmed.Add(1)
		ch.view.confirmed.Add(1)
	}
	ch.view.unconfirmed.Add(-1)
	if seq == ch.confirmLowest {
		if !ack {
			ch.confirmNacks = append(ch.confirmNacks, seq)
		}
		ch.confirmLowest++
		for {
			a, ok := ch.confirmLater[ch.confirmLowest]
			if !ok {
				break
			}
			if !a {
				ch.confirmNacks = append(ch.confirmNacks, ch.confirmLowest)
			}
			delete(ch.confirmLater, ch.confirmLowest)
			ch.confirmLowest++
		}
	} else {
		if ch.confirmLater == nil {
			ch.confirmLater = map[uint64]bool{}
		}
		ch.confirmLater[seq] = ack
	}
	queue := !ch.confirmQueued && ch.confirmLowest-1 > ch.confirmSent
	if queue {
		ch.confirmQueued = true
	}
	last := ch.lastOwedLocked()
	ch.confirmMu.Unlock()
	if last {
		ch.conn.endChannel(ch, &amqp.ChannelCloseOk{})
	} else if queue {
		ch.conn.queueConfirms(ch)
	}
}

// lastOwedLocked reports whether the client has closed the channel and
// nothing it is owed is still waiting for the store: the close-ok may go
// out now. It reports true once. confirmMu held.
func (ch *channel) lastOwedLocked() bool {
	if !ch.closeOkOwed || ch.confirmLowest <= ch.closeSeq || ch.owedCommits > 0 {
		return false
	}
	ch.closeOkOwed = false
	return true
}

// closeOk answers the client's channel.close (reader goroutine). Like
// RabbitMQ's channel, it first sends the confirms for what the client
// published before the close; where some wait for the store (fsync), or a
// tx.commit-ok does, the last of them sends the close-ok instead.
func (ch *channel) closeOk() {
	ch.confirmMu.Lock()
	ch.closeOkOwed, ch.closeSeq = true, ch.publishSeq
	last := ch.lastOwedLocked()
	ch.confirmMu.Unlock()
	if last {
		ch.conn.endChannel(ch, &amqp.ChannelCloseOk{})
	}
}

// commitDone sends tx.commit-ok (unless the store failed) for a commit that
// commit counted in owedCommits. Any goroutine.
func (ch *channel) commitDone(ok bool) {
	c := ch.conn
	if ok {
		c.outMu.Lock()
		if !c.outClosed && !ch.ended.Load() {
			c.appendMethodLocked(ch.id, &amqp.TxCommitOk{})
		}
		c.outMu.Unlock()
		c.kick()
	}
	ch.confirmMu.Lock()
	ch.owedCommits--
	last := ch.lastOwedLocked()
	ch.confirmMu.Unlock()
	if last {
		c.endChannel(ch, &amqp.ChannelCloseOk{})
	}
}

// appendConfirms writes the acks and nacks resolved since the last call:
// one basic.ack multiple per contiguous run of acks, a basic.nack for each
// nack. Called by the connection's writer, and by endChannel with the
// conn's outMu held.
func (ch *channel) appendConfirms(dst []byte) []byte {
	if ch.ended.Load() || ch.conn.ending.Load() {
		return dst // after the channel's or the connection's last frame
	}
	ch.confirmMu.Lock()
	upTo := ch.confirmLowest - 1
	from := ch.confirmSent
	nacks := ch.confirmNacks
	ch.confirmNacks = nil
	ch.confirmSent = upTo
	ch.confirmQueued = false
	ch.confirmMu.Unlock()
	for _, n := range nacks {
		if n-1 > from {
			dst = amqp.AppendMethodFrame(dst, ch.id, &amqp.BasicAck{DeliveryTag: n - 1, Multiple: true})
		}
		dst = amqp.AppendMethodFrame(dst, ch.id, &amqp.BasicNack{DeliveryTag: n})
		from = n
	}
	if upTo > from {
		dst = amqp.AppendMethodFrame(dst, ch.id, &amqp.BasicAck{DeliveryTag: upTo, Multiple: upTo-from > 1})
	}
	return dst
}
