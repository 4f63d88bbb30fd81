package broker

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"net"
	"sync"

	"github.com/amqp-go/amqp-go/server/queue"
	"github.com/amqp-go/amqp-go/server/store"
	"github.com/amqp-go/amqp-go/shared/amqp"
)

// homeLink is a member's link to this node, the home node of classic
// queues it reaches (remoteQueue there): ServeLink's goroutine reads its
// requests and carries them out on the queues here; replies and
// deliveries go back through the link's writer.
//
// What the member's consumers have unacked is recorded per queue, so that
// the link's end returns it to the queues (as a channel's close does),
// and a settle for anything else (a tag of an earlier link) is ignored.
//
// Locking: mu guards consumers, unacked and closed; it is taken before
// the connection's own lock and never held while calling a queue.
type homeLink struct {
	s    *Server
	from uint64
	conn *linkConn
	pub  publisher // pushes' scratch (the reader's only)

	mu        sync.Mutex
	consumers map[uint64]*linkConsumer
	unacked   map[*Queue]map[uint64]struct{}
	closed    bool
}

// linkConsumer is a member's consumer, as this node's queue sees it: the
// credit the member lent, and deliveries sent over the link.
type linkConsumer struct {
	l         *homeLink
	cid       uint64
	q         *Queue
	id        queue.ConsumerID
	noAck     bool
	exclusive bool
	// credit (l.mu) is what may still be delivered; cancelled (l.mu)
	// is set once the member asked to end it.
	credit    int64
	cancelled bool
}

// ServeLink serves a link another member opened to this node
// (cluster.ServiceConfig.OnLink): it returns once the link ends, having
// returned what the member's consumers had unacked.
func (s *Server) ServeLink(from uint64, c net.Conn) {
	l := &homeLink{s: s, from: from, conn: newLinkConn(c), consumers: map[uint64]*linkConsumer{},
		unacked: map[*Queue]map[uint64]struct{}{}}
	if !s.links.serving(l) {
		l.conn.close()
		return
	}
	err := readFrames(c, linkFrameMax(s.cfg.MaxMessageSize), l.handle)
	s.logger.Debug("cluster: a member's link ended", "node", from, "err", err)
	l.end()
	s.links.ended(l)
}

// end closes the link and undoes its consumers: cancelled, and their
// unacked deliveries requeued.
func (l *homeLink) end() {
	l.conn.close()
	l.mu.Lock()
	l.closed = true
	cs := l.consumers
	l.consumers = map[uint64]*linkConsumer{}
	un := l.unacked
	l.unacked = map[*Queue]map[uint64]struct{}{}
	l.mu.Unlock()
	for _, lc := range cs {
		lc.q.removeLinkConsumer(lc)
	}
	for q, tags := range un {
		ts := make([]uint64, 0, len(tags))
		for t := range tags {
			ts = append(ts, t)
		}
		q.cq.Settle(ts, queue.Requeue)
	}
}

// homeQueue is the local queue a request names: one whose home is this
// node, or any local one (a queue declared before the cluster formed).
func (l *homeLink) homeQueue(r *linkReader) (*Queue, error) {
	vhost, name := r.short(), r.short()
	if r.bad {
		return nil, errLinkFrame
	}
	v := l.s.vhost(vhost)
	if v == nil {
		return nil, protoErr(amqp.NotFound, nil, "no vhost '%s'", vhost)
	}
	q := v.queue(name)
	if q == nil || q.remote != nil || q.Exclusive && q.homeOf() == nil || q.front != nil && q.front.forwarding() {
		// A quorum queue is served by a member of its group only; an
		// exclusive queue, by its home if it is the cluster's (the
		// members refuse other connections: checkOwner).
		return nil, errNoQueue(nil, vhost, name)
	}
	return q, nil
}

// handle carries out one frame of the member's.
func (l *homeLink) handle(op byte, body []byte) error {
	r := &linkReader{b: body}
	switch op {
	case linkPush:
		id := r.u64()
		q, err := l.homeQueue(r)
		if err != nil {
			return l.replyErr(id, err)
		}
		h, err := quorumCodec{}.DecodeHandle(r.rest())
		if err != nil {
			return err
		}
		q.vhost.pushOne(&l.pub, q, h.msg, func(err error) { _ = l.replyErr(id, err) })
	case linkConsume:
		id := r.u64()
		q, err := l.homeQueue(r)
		if err != nil {
			return l.replyErr(id, err)
		}
		prio := int64(r.u64())
		noAck, exclusive := r.u8() == 1, r.u8() == 1
		if err := r.err(); err != nil {
			return err
		}
		lc := &linkConsumer{l: l, cid: id, q: q, noAck: noAck, exclusive: exclusive}
		l.mu.Lock()
		if _, dup := l.consumers[id]; dup {
			l.mu.Unlock()
			return errLinkFrame
		}
		l.consumers[id] = lc
		l.mu.Unlock()
		if err := q.addLinkConsumer(lc, prio); err != nil {
			l.mu.Lock()
			delete(l.consumers, id)
			l.mu.Unlock()
			return l.replyErr(id, err)
		}
		return l.replyErr(id, nil)
	case linkCredit:
		cid, n := r.u64(), int64(r.u32())
		if err := r.err(); err != nil {
			return err
		}
		l.mu.Lock()
		lc := l.consumers[cid]
		if lc != nil {
			lc.credit += n
		}
		l.mu.Unlock()
		if lc != nil {
			lc.q.signal()
		}
	case linkSettle:
		q, err := l.homeQueue(r)
		outcome := queue.Outcome(r.u8())
		n := int(r.u32())
		if r.bad || n > len(r.b)/8 {
			return errLinkFrame
		}
		if err != nil {
			return nil // deleted meanwhile: nothing to settle
		}
		tags := make([]uint64, 0, n)
		l.mu.Lock()
		set := l.unacked[q]
		for range n {
			t := r.u64()
			if _, ok := set[t]; ok {
				delete(set, t)
				tags = append(tags, t)
			}
		}
		if set != nil && len(set) == 0 {
			delete(l.unacked, q)
		}
		l.mu.Unlock()
		switch outcome {
		case queue.Ack, queue.Reject, queue.Requeue:
		default:
			return errLinkFrame
		}
		if len(tags) > 0 {
			q.cq.Settle(tags, outcome)
		}
	case linkCancel:
		cid := r.u64()
		if err := r.err(); err != nil {
			return err
		}
		l.mu.Lock()
		lc := l.consumers[cid]
		delete(l.consumers, cid)
		if lc != nil {
			lc.cancelled = true
		}
		// After this, no delivery for cid is written: Deliver checks
		// cancelled under mu.
		l.conn.frame(linkCancelled, func(b []byte) []byte { return appendU64(b, cid) })
		l.mu.Unlock()
		if lc != nil {
			lc.q.removeLinkConsumer(lc)
		}
	case linkGet:
		id := r.u64()
		q, err := l.homeQueue(r)
		if err != nil {
			return l.replyErr(id, err)
		}
		noAck := r.u8() == 1
		if err := r.err(); err != nil {
			return err
		}
		ce, tag, remaining, ok, err := q.get(noAck)
		if err != nil {
			return l.replyErr(id, protoErr(amqp.NotFound, nil, "queue '%s' in vhost '%s' is unavailable: %v", q.Name, q.vhost.name, err))
		}
		if !ok {
			l.reply(id, linkOK, func(b []byte) []byte { return append(b, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0) })
			return nil
		}
		if !noAck && !l.track(q, tag, 1) {
			q.giveBack(ce, tag)
			return nil
		}
		l.reply(id, linkOK, func(b []byte) []byte {
			b = append(b, 1)
			b = appendU64(b, tag)
			b = appendU32(b, uint32(remaining))
			b = appendU16(b, ce.Deliveries)
			return quorumCodec{}.AppendHandle(b, ce.Handle)
		})
		if noAck {
			e := fromEntry(&ce, 0)
			q.release([]qentry{e})
		}
	case linkPurge:
		id := r.u64()
		q, err := l.homeQueue(r)
		if err != nil {
			return l.replyErr(id, err)
		}
		n := q.purge()
		l.reply(id, linkOK, func(b []byte) []byte { return appendU32(b, uint32(n)) })
	case linkInfo:
		id := r.u64()
		q, err := l.homeQueue(r)
		if err != nil {
			return l.replyErr(id, err)
		}
		in, err := json.Marshal(q.cq.Info())
		if err != nil {
			return l.replyErr(id, err)
		}
		l.reply(id, linkOK, func(b []byte) []byte { return append(b, in...) })
	case linkSync:
		// Frames are carried out in order, and a settlement's store
		// records are appended before Settle returns: the store's
		// barrier covers every one before this (a quorum queue's
		// group's barrier, its proposals from here).
		id := r.u64()
		q, err := l.homeQueue(r)
		if err != nil {
			return l.replyErr(id, err)
		}
		if q.quorum != nil {
			go func() {
				err := q.quorum.Barrier()
				if errors.Is(err, queue.ErrQueueClosed) {
					err = nil
				}
				_ = l.replyErr(id, err)
			}()
			return nil
		}
		l.s.store.Sync(func(err error) { _ = l.replyErr(id, err) })
	case linkTouch:
		if q, err := l.homeQueue(r); err == nil {
			q.touch()
		}
	default:
		return errLinkFrame
	}
	return nil
}

// reply answers request id.
func (l *homeLink) reply(id uint64, status byte, body func(b []byte) []byte) {
	l.conn.frame(linkReply, func(b []byte) []byte {
		b = append(appendU64(b, id), status)
		if body != nil {
			b = body(b)
		}
		return b
	})
}

// replyErr answers request id with err's outcome: ok for nil, rejected
// for a full reject-publish queue, else the AMQP error (541 for another).
// It returns nil: a failed request is the member's to hear of.
func (l *homeLink) replyErr(id uint64, err error) error {
	switch {
	case err == nil:
		l.reply(id, linkOK, nil)
	case errors.Is(err, errQueueFull):
		l.reply(id, linkRejected, nil)
	default:
		var ae *amqpError
		if !errors.As(err, &ae) {
			ae = protoErr(amqp.InternalError, nil, "%v", err)
		}
		l.reply(id, linkFailed, func(b []byte) []byte {
			b = appendU16(b, ae.code)
			b = appendU16(b, uint16(len(ae.text)))
			return append(b, ae.text...)
		})
	}
	return nil
}

// track records n deliveries from tag on as unacked by the member; false
// once the link has ended (the caller gives them back).
func (l *homeLink) track(q *Queue, tag uint64, n int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.trackLocked(q, tag, n)
	return true
}

func (l *homeLink) trackLocked(q *Queue, tag uint64, n int) {
	set := l.unacked[q]
	if set == nil {
		set = map[uint64]struct{}{}
		l.unacked[q] = set
	}
	for i := range n {
		set[tag+uint64(i)] = struct{}{}
	}
}

// Acquire takes what credit the member lent, up to n.
func (lc *linkConsumer) Acquire(n int64) int64 {
	lc.l.mu.Lock()
	defer lc.l.mu.Unlock()
	if lc.cancelled || lc.l.closed {
		return 0
	}
	n = min(n, lc.credit)
	lc.credit -= n
	return n
}

// Unacquire gives back credit not used.
func (lc *linkConsumer) Unacquire(n int64) {
	lc.l.mu.Lock()
	lc.credit += n
	lc.l.mu.Unlock()
}

// Deliver sends a batch to the member; once the member cancelled the
// consumer, or the link ended, the batch goes back to the queue.
func (lc *linkConsumer) Deliver(es []queue.Entry[qhandle], tag uint64) {
	l := lc.l
	l.mu.Lock()
	sent := !lc.cancelled && !l.closed
	if sent {
		if tag != 0 {
			l.trackLocked(lc.q, tag, len(es))
		}
		l.conn.frame(linkDeliver, func(b []byte) []byte {
			b = appendU64(b, lc.cid)
			b = appendU64(b, tag)
			b = appendU16(b, uint16(len(es)))
			for i := range es {
				b = appendU16(b, es[i].Deliveries)
				at := len(b)
				b = append(b, 0, 0, 0, 0)
				b = quorumCodec{}.AppendHandle(b, es[i].Handle)
				binary.BigEndian.PutUint32(b[at:], uint32(len(b)-at-4))
			}
			return b
		})
	}
	l.mu.Unlock()
	switch {
	case tag == 0:
		// Without acks the queue let them go at delivery, sent or not.
		lc.q.releaseEntries(len(es), func(i int) store.Ref { return es[i].Handle.ref })
	case !sent:
		lc.q.cq.Settle(tagRange(tag, len(es)), queue.Requeue)
	}
}

// endLinkConsumers ends the members' consumers of q on every link this node
// serves (q's group was shaped without this node, which no longer serves
// it): each member's channel hears of it as a consumer the home node
// ended (basic.cancel). What they had unacked stays the link's.
func (s *Server) endLinkConsumers(q *Queue) {
	s.links.mu.Lock()
	served := make([]*homeLink, 0, len(s.links.served))
	for l := range s.links.served {
		served = append(served, l)
	}
	s.links.mu.Unlock()
	for _, l := range served {
		var ended []*linkConsumer
		l.mu.Lock()
		for cid, lc := range l.consumers {
			if lc.q == q {
				delete(l.consumers, cid)
				lc.cancelled = true
				l.conn.frame(linkCancelled, func(b []byte) []byte { return appendU64(b, cid) })
				ended = append(ended, lc)
			}
		}
		l.mu.Unlock()
		for _, lc := range ended {
			q.removeLinkConsumer(lc)
		}
	}
}
