package broker

import (
	"encoding/binary"
	"errors"
	"sync/atomic"

	"github.com/amqp-go/amqp-go/server/queue"
	"github.com/amqp-go/amqp-go/server/store"
	"github.com/amqp-go/amqp-go/shared/amqp"
)

// handleFrame handles one frame for this channel (reader goroutine).
func (ch *channel) handleFrame(f amqp.Frame) error {
	c := ch.conn
	ch.finishTimedOut()
	if ch.closing {
		// After channel.close only close and close-ok count.
		if f.Type != amqp.FrameMethod {
			return nil
		}
		m, err := amqp.DecodeMethod(f.Payload)
		if err != nil {
			return nil
		}
		switch m.(type) {
		case *amqp.ChannelCloseOk:
			c.dropChannel(ch.id)
		case *amqp.ChannelClose:
			// Crossing closes: answer it, but keep the channel until the
			// peer's close-ok for our channel.close arrives (as RabbitMQ).
			c.send(ch.id, &amqp.ChannelCloseOk{})
		}
		return nil
	}
	switch f.Type {
	case amqp.FrameMethod:
		if ch.publish != nil {
			return protoErr(amqp.UnexpectedFrame, nil,
				"expected content header for class 60, got non content header frame instead")
		}
		if len(f.Payload) >= 4 && binary.BigEndian.Uint32(f.Payload) == basicPublishID {
			// The hot path: decode into the channel's own struct (free
			// again once the content is complete), reusing the previous
			// publish's name strings when the bytes are the same.
			if !ch.decodePublish(f.Payload[4:]) {
				if err := ch.publishArgs.DecodeArgs(f.Payload[4:]); err != nil {
					return decodeFailure(err)
				}
			}
			return ch.handleMethod(&ch.publishArgs)
		}
		if len(f.Payload) >= 4 && binary.BigEndian.Uint32(f.Payload) == basicAckID {
			// Most clients ack each message: decode into the channel's
			// own struct, not a new one a message.
			if err := ch.ackArgs.DecodeArgs(f.Payload[4:]); err != nil {
				return decodeFailure(err)
			}
			return ch.handleMethod(&ch.ackArgs)
		}
		m, err := amqp.DecodeMethod(f.Payload)
		if err != nil {
			return decodeFailure(err)
		}
		return ch.handleMethod(m)
	case amqp.FrameHeader:
		if ch.publish == nil || ch.props != nil {
			return protoErr(amqp.UnexpectedFrame, nil, "expected method frame, got non method frame instead")
		}
		h, err := amqp.ParseContentHeader(f.Payload)
		if err != nil {
			return protoErr(amqp.FrameErrorCode, nil, "cannot decode content header: %v", err)
		}
		if h.ClassID != amqp.ClassBasic {
			return protoErr(amqp.UnexpectedFrame, nil, "content header for class %d does not match method class 60", h.ClassID)
		}
		if limit := c.srv.cfg.MaxMessageSize; h.BodySize > limit {
			return protoErr(amqp.PreconditionFailed, ch.publish,
				"message size %d is larger than configured max size %d", h.BodySize, limit)
		}
		ch.startContent(h.RawProperties, h.BodySize, c.fr.Buffered())
		if h.BodySize == 0 {
			return ch.contentDone()
		}
		return nil
	case amqp.FrameBody:
		if ch.publish == nil || ch.props == nil {
			return protoErr(amqp.UnexpectedFrame, nil, "expected method frame, got non method frame instead")
		}
		if uint64(len(ch.body))+uint64(len(f.Payload)) > ch.bodySize {
			return protoErr(amqp.FrameErrorCode, nil, "body frame exceeds declared body size %d", ch.bodySize)
		}
		ch.appendBody(f.Payload)
		if uint64(len(ch.body)) == ch.bodySize {
			return ch.contentDone()
		}
		return nil
	}
	return protoErr(amqp.FrameErrorCode, nil, "unknown frame type %d", f.Type)
}

// handleMethod dispatches a channel-level method.
func (ch *channel) handleMethod(m amqp.Method) error {
	c := ch.conn
	v := c.vhost
	if ch.unsynced && answers(m) {
		if err := ch.syncSettled(m); err != nil {
			return err
		}
	}
	if err := ch.durableChange(m); err != nil {
		return err
	}
	switch m := m.(type) {
	case *amqp.ChannelOpen:
		return protoErr(amqp.ChannelError, m, "second 'channel.open' seen")
	case *amqp.ChannelClose:
		ch.shutdown()
		if ch.finishTimedOut() {
			// Our channel.close crossed the client's: answer it and
			// wait for the close-ok.
			c.send(ch.id, &amqp.ChannelCloseOk{})
			return nil
		}
		c.dropChannel(ch.id)
		ch.closeOk()
	case *amqp.ChannelCloseOk:
		// Nothing pending; tolerate.
	case *amqp.ChannelFlow:
		if !m.Active {
			// RabbitMQ 3.x does not implement client-initiated flow control.
			return protoErr(amqp.NotImplemented, m, "active=false")
		}
		c.send(ch.id, &amqp.ChannelFlowOk{Active: true})
	case *amqp.ChannelFlowOk:

	case *amqp.ExchangeDeclare:
		var err error
		if m.Passive {
			err = v.passiveExchange(m)
		} else {
			_, err = ch.applyMethod(m)
		}
		if err != nil {
			return err
		}
		if !m.NoWait {
			c.send(ch.id, &amqp.ExchangeDeclareOk{})
		}
	case *amqp.ExchangeDelete:
		_, err := ch.applyMethod(m)
		var ae *amqpError
		if errors.As(err, &ae) && ae.code == amqp.NotFound {
			err = nil // RabbitMQ's delete is idempotent
		}
		if err != nil {
			return err
		}
		if !m.NoWait {
			c.send(ch.id, &amqp.ExchangeDeleteOk{})
		}
	case *amqp.ExchangeBind:
		if _, err := ch.applyMethod(m); err != nil {
			return err
		}
		if !m.NoWait {
			c.send(ch.id, &amqp.ExchangeBindOk{})
		}
	case *amqp.ExchangeUnbind:
		if _, err := ch.applyMethod(m); err != nil {
			return err
		}
		if !m.NoWait {
			c.send(ch.id, &amqp.ExchangeUnbindOk{})
		}

	case *amqp.QueueDeclare:
		if m.Queue == replyQueue && m.Passive {
			// RabbitMQ answers this probe (Spring AMQP uses it to detect
			// direct reply-to support).
			if !m.NoWait {
				c.send(ch.id, &amqp.QueueDeclareOk{Queue: replyQueue})
			}
			return nil
		}
		var q *Queue
		var err error
		if m.Passive {
			q, err = v.passiveQueue(m, c)
		} else {
			var r DefResult
			r, err = ch.applyMethod(m)
			q = r.Queue
		}
		if err != nil {
			return err
		}
		ch.lastQueue = q.Name
		if !m.NoWait {
			msgs, consumers := q.counts()
			c.send(ch.id, &amqp.QueueDeclareOk{Queue: q.Name, MessageCount: uint32(msgs), ConsumerCount: uint32(consumers)})
		}
	case *amqp.QueueBind:
		if _, err := ch.applyMethod(m); err != nil {
			return err
		}
		if !m.NoWait {
			c.send(ch.id, &amqp.QueueBindOk{})
		}
	case *amqp.QueueUnbind:
		if _, err := ch.applyMethod(m); err != nil {
			return err
		}
		c.send(ch.id, &amqp.QueueUnbindOk{})
	case *amqp.QueuePurge:
		q, err := ch.readQueue(m, m.Queue)
		if err != nil {
			return err
		}
		n := q.purge()
		if !m.NoWait {
			c.send(ch.id, &amqp.QueuePurgeOk{MessageCount: uint32(n)})
		}
	case *amqp.QueueDelete:
		r, err := ch.applyMethod(m)
		if err != nil {
			return err
		}
		if !m.NoWait {
			c.send(ch.id, &amqp.QueueDeleteOk{MessageCount: uint32(r.Messages)})
		}

	case *amqp.BasicQos:
		if m.PrefetchSize != 0 {
			return protoErr(amqp.NotImplemented, m, "prefetch_size!=0 (%d)", m.PrefetchSize)
		}
		if m.Global {
			ch.globalLimit.Store(int32(m.PrefetchCount))
			for _, cn := range ch.consumers {
				cn.q.signal()
			}
		} else {
			ch.prefetch = int32(m.PrefetchCount)
			ch.view.prefetch.Store(ch.prefetch)
		}
		c.send(ch.id, &amqp.BasicQosOk{})
	case *amqp.BasicConsume:
		return ch.consume(m)
	case *amqp.BasicCancel:
		ch.cancel(m.ConsumerTag)
		if !m.NoWait {
			c.send(ch.id, &amqp.BasicCancelOk{ConsumerTag: m.ConsumerTag})
		}
	case *amqp.BasicPublish:
		if m.Immediate {
			return protoErr(amqp.NotImplemented, m, "immediate=true")
		}
		if err := ch.checkPublishWrite(m); err != nil {
			return err
		}
		x := ch.exchange(m.Exchange)
		if x == nil {
			return errNoExchange(m, v.name, m.Exchange)
		}
		if x.Internal {
			return protoErr(amqp.AccessRefused, m, "cannot publish to internal exchange '%s' in vhost '%s'", m.Exchange, v.name)
		}
		if err := ch.checkPublishTopic(m, x); err != nil {
			return err
		}
		ch.publish, ch.publishX = m, x
		ch.props = nil
	case *amqp.BasicGet:
		return ch.get(m)
	case *amqp.BasicAck:
		return ch.ackOrNack(m, m.DeliveryTag, m.Multiple, false, false)
	case *amqp.BasicNack:
		return ch.ackOrNack(m, m.DeliveryTag, m.Multiple, true, m.Requeue)
	case *amqp.BasicReject:
		return ch.ackOrNack(m, m.DeliveryTag, false, true, m.Requeue)
	case *amqp.BasicRecover:
		if !m.Requeue {
			return protoErr(amqp.NotImplemented, m, "requeue=false") // as RabbitMQ
		}
		ch.recover()
		c.send(ch.id, &amqp.BasicRecoverOk{})
	case *amqp.BasicRecoverAsync:
		if !m.Requeue {
			return protoErr(amqp.NotImplemented, m, "requeue=false")
		}
		ch.recover()

	case *amqp.TxSelect:
		if ch.confirm {
			return protoErr(amqp.PreconditionFailed, m, "cannot switch from confirm to tx mode")
		}
		ch.tx = true
		ch.view.tx.Store(true)
		c.send(ch.id, &amqp.TxSelectOk{})
	case *amqp.TxCommit:
		if !ch.tx {
			return protoErr(amqp.PreconditionFailed, m, "channel is not transactional")
		}
		ch.commit()
	case *amqp.TxRollback:
		if !ch.tx {
			return protoErr(amqp.PreconditionFailed, m, "channel is not transactional")
		}
		ch.rollback()
		c.send(ch.id, &amqp.TxRollbackOk{})

	case *amqp.ConfirmSelect:
		if ch.tx {
			return protoErr(amqp.PreconditionFailed, m, "cannot switch from tx to confirm mode")
		}
		ch.confirm = true
		ch.view.confirm.Store(true)
		if !m.Nowait {
			c.send(ch.id, &amqp.ConfirmSelectOk{})
		}
	default:
		if m.ClassID() == amqp.ClassConnection {
			return protoErr(amqp.CommandInvalid, m, "%s on channel %d", m.MethodName(), ch.id)
		}
		return protoErr(amqp.CommandInvalid, m, "unexpected method %s from client", m.MethodName())
	}
	return nil
}

// queueFor resolves a queue argument ("" is the last declared queue) and
// checks exclusive ownership.
func (ch *channel) queueFor(m amqp.Method, name string) (*Queue, error) {
	if name == "" {
		if ch.lastQueue == "" {
			return nil, protoErr(amqp.NotFound, m, "no previously declared queue")
		}
		name = ch.lastQueue
	}
	q := ch.conn.vhost.queue(name)
	if q == nil {
		return nil, errNoQueue(m, ch.conn.vhost.name, name)
	}
	if q.isUnavailable() {
		return nil, errUnavailable(m, q)
	}
	return q, q.checkOwner(ch.conn, m)
}

// withMethod attaches the failing method's ids to an exception.
func withMethod(err error, m amqp.Method) error {
	var ae *amqpError
	if errors.As(err, &ae) {
		ae.classID, ae.methodID = m.ClassID(), m.MethodID()
	}
	return err
}

func (ch *channel) consume(m *amqp.BasicConsume) error {
	c := ch.conn
	if m.Queue == replyQueue {
		return ch.consumeReply(m)
	}
	q, err := ch.readQueue(m, m.Queue)
	if err != nil {
		return err
	}
	if q.own.quorum && ch.globalLimit.Load() > 0 {
		// RabbitMQ 3.10's connection error: a quorum queue has no
		// channel-wide prefetch.
		return protoErr(amqp.NotImplemented, m, "queue '%s' in vhost '%s' does not support global qos", q.Name, q.vhost.name)
	}
	tag := m.ConsumerTag
	if tag == "" {
		tag = "amq.ctag-" + randomName()
	}
	if old, ok := ch.consumers[tag]; ok {
		if !old.gone.Load() {
			return protoErr(amqp.NotAllowed, m, "attempt to reuse consumer tag '%s'", tag)
		}
		delete(ch.consumers, tag)
	}
	cn := &consumer{tag: tag, ch: ch, q: q, noAck: m.NoAck, exclusive: m.Exclusive, prefetch: ch.prefetch,
		timeout: c.srv.ackTimeout(q, m.Arguments), args: m.Arguments, dests: ch.dests.queue(q)}
	if v, ok := m.Arguments["x-priority"]; ok {
		p, isInt := asInt(v)
		if !isInt {
			return protoErr(amqp.PreconditionFailed, m, "invalid arg 'x-priority' for queue '%s' in vhost '%s': {unacceptable_type,%s}",
				q.Name, q.vhost.name, fieldTypeName(v))
		}
		cn.priority = p
	}
	// consume-ok must precede the first delivery, so the queue queues it
	// once the consumer is accepted and before it can deliver.
	var ok func()
	if !m.NoWait {
		ok = func() { c.send(ch.id, &amqp.BasicConsumeOk{ConsumerTag: tag}) }
	}
	if err := q.addConsumer(cn, m, ok); err != nil {
		return err
	}
	ch.consumers[tag] = cn
	cn.listed.Store(true)
	ch.view.consumers.Add(1)
	c.addConsumerQueue(q)
	return nil
}

// cancel ends consumer tag (unknown tags are ignored, as RabbitMQ does).
func (ch *channel) cancel(tag string) {
	if ch.cancelReply(tag) {
		return
	}
	cn, ok := ch.consumers[tag]
	if !ok {
		return
	}
	delete(ch.consumers, tag)
	ch.view.unlist(cn)
	ch.conn.removeConsumerQueue(cn.q)
	if cn.q.removeConsumer(cn) {
		cn.q.vhost.autoDelete(cn.q)
	}
}

func (ch *channel) get(m *amqp.BasicGet) error {
	q, err := ch.readQueue(m, m.Queue)
	if err != nil {
		return err
	}
	ce, qtag, remaining, ok, err := q.get(m.NoAck)
	if err != nil {
		return errUnavailable(m, q)
	}
	if !ok {
		ch.view.getEmpty.Add(1)
		ch.dests.queue(q).getEmpty.Add(1)
		ch.conn.send(ch.id, &amqp.BasicGetEmpty{})
		return nil
	}
	ch.mu.Lock()
	if ch.closed {
		// An ack timeout closed the channel meanwhile: the message goes
		// back (counted unacked, as requeue expects).
		ch.mu.Unlock()
		q.giveBack(ce, qtag)
		return nil
	}
	e := fromEntry(&ce, qtag)
	ch.nextTag++
	tag := ch.nextTag
	if !m.NoAck {
		ch.unacked.push(unackedEntry{tag: tag, q: q, e: e, at: queue.Now()})
		if t := ch.conn.srv.ackTimeout(q, nil); t >= 0 && !ch.ackArmed {
			ch.armAckTimerLocked(t)
		}
	}
	ch.conn.sendContent(ch.id, &amqp.BasicGetOk{DeliveryTag: tag, Redelivered: e.redelivered(),
		Exchange: e.msg.Exchange, RoutingKey: e.msg.RoutingKey, MessageCount: uint32(remaining)}, e.msg, e.deliveries, q.own.quorum)
	ch.mu.Unlock()
	ch.conn.srv.stats.delivered.Add(1)
	ch.view.got(m.NoAck, e.redelivered())
	ch.dests.queue(q).got(m.NoAck, e.redelivered())
	if m.NoAck {
		q.release([]qentry{e})
	}
	return nil
}

// ackOrNack handles basic.ack, basic.nack and basic.reject. Outside a
// transaction a basic.ack's entries wait in ch.acked for the read batch's
// other acks (conn.endBatch settles them before any other frame and
// before a read that may block, so nothing the client does after an ack
// can miss it); a nack's or reject's are settled at once.
func (ch *channel) ackOrNack(m amqp.Method, tag uint64, multiple, negative, requeue bool) error {
	var scratch []unackedEntry
	switch {
	case ch.tx: // a transaction keeps what it took until it ends
	case negative:
		scratch = ch.ackScratch[:0]
	default:
		scratch = ch.acked
	}
	n := len(scratch)
	ch.mu.Lock()
	es, ok := ch.unacked.take(tag, multiple, scratch)
	ch.mu.Unlock()
	if !ok {
		return protoErr(amqp.PreconditionFailed, m, "unknown delivery tag %d", tag)
	}
	if !negative {
		taken := es[n:]
		ch.conn.srv.stats.acknowledged.Add(uint64(len(taken)))
		ch.view.ack.Add(uint64(len(taken)))
		ch.dests.acked(taken)
	}
	switch {
	case ch.tx:
		ch.txAcks = append(ch.txAcks, txAck{entries: es, requeue: negative && requeue, drop: negative && !requeue})
		ch.view.txAcks.Add(int32(len(es)))
	case !negative:
		if n == 0 && len(es) > 0 {
			ch.conn.ackedChans = append(ch.conn.ackedChans, ch)
		}
		ch.acked = es
	default:
		ch.settle(es, requeue, !requeue)
		clear(es) // no queue or message pinned until the next nack
		if cap(es) <= 4096 {
			ch.ackScratch = es[:0]
		}
	}
	return nil
}

// settleAcked settles ch.acked (conn.settleAcks). Reader goroutine only.
func (ch *channel) settleAcked() {
	es := ch.acked
	ch.settle(es, false, false)
	clear(es) // no queue or message pinned until the next ack
	if cap(es) > 4096 {
		es = nil // a burst's buffer is not kept
	}
	ch.acked = es[:0]
}

// recover requeues every unacked message on the channel (basic.recover
// requeue=true; RabbitMQ refuses requeue=false with 540).
func (ch *channel) recover() {
	ch.mu.Lock()
	es := ch.unacked.takeAll(nil)
	ch.mu.Unlock()
	ch.settle(es, true, false)
}

// contentDone completes an assembled publish.
func (ch *channel) contentDone() error {
	c := ch.conn
	p := ch.publish
	msg := &Message{Message: store.Message{Exchange: p.Exchange, RoutingKey: p.RoutingKey, Properties: ch.props, Body: ch.body}}
	ch.publish, ch.props, ch.body = nil, nil, nil
	c.srv.stats.received.Add(1)
	ch.view.publish.Add(1)
	flags := propFlags(msg.Properties)
	if flags&amqp.FlagDeliveryMode != 0 {
		msg.Persistent = amqp.PeekDeliveryMode(msg.Properties) == 2
	}
	// The properties the broker acts on are decoded once, and only when
	// one of them is present (the common publish carries none).
	const acted = amqp.FlagExpiration | amqp.FlagUserID | amqp.FlagPriority | amqp.FlagReplyTo
	if flags&acted != 0 {
		props, err := msg.decodeProperties()
		if err == nil {
			if props.Flags&amqp.FlagUserID != 0 && props.UserID != c.user && !c.impersonates() {
				return protoErr(amqp.PreconditionFailed, p,
					"user_id property set to '%s' but authenticated user was '%s'", props.UserID, c.user)
			}
			msg.Priority = props.Priority
			msg.ttl, msg.hasTTL = messageTTL(&props)
			if props.ReplyTo == replyQueue {
				if err := ch.rewriteReplyTo(msg, &props, p); err != nil {
					return err
				}
			}
		}
	}
	x := ch.publishX
	ch.publishX = nil
	if x.removed.Load() {
		return errNoExchange(p, c.vhost.name, p.Exchange)
	}
	xd := ch.dests.exchange(x)
	xd.publish.Add(1)
	if ch.tx {
		ch.txPublishes = append(ch.txPublishes, txPublish{msg: msg, x: x, mandatory: p.Mandatory})
		ch.view.txMsgs.Store(int32(len(ch.txPublishes)))
		return nil
	}
	var done func(error)
	if ch.confirm {
		ch.publishSeq++
		seq := ch.publishSeq
		ch.view.unconfirmed.Add(1)
		done = func(err error) {
			if err == nil {
				xd.confirm.Add(1)
			}
			ch.confirmed(seq, err)
		}
	}
	ch.route(msg, x, p.Mandatory, done)
	return nil
}

// basicPublishID is basic.publish's class and method ids as the first four
// payload bytes of its method frame.
const basicPublishID = uint32(amqp.ClassBasic)<<16 | 40

// basicAckID is basic.ack's, the same way.
const basicAckID = uint32(amqp.ClassBasic)<<16 | 80

// isBasicAck reports whether f is a basic.ack method frame.
func isBasicAck(f amqp.Frame) bool {
	return f.Type == amqp.FrameMethod && len(f.Payload) >= 4 && binary.BigEndian.Uint32(f.Payload) == basicAckID
}

// route publishes msg from x through the vhost: a mandatory message that no
// queue took comes back as basic.return (before its confirm), and a
// congested queue pauses this connection's reader (flow control).
func (ch *channel) route(msg *Message, x *Exchange, mandatory bool, done func(error)) {
	var returned func(*Message)
	if mandatory {
		returned = ch.returnUnroutable
	}
	if ch.pub == nil {
		ch.pub = &publisher{}
	}
	ch.pub.now = ch.conn.now // the reader's, read once per socket read
	out := ch.conn.vhost.Publish(ch.pub, x, msg, returned, done)
	x.published.count(ch.stripe, out.Queues)
	switch {
	case out.Queues == 0 && !mandatory:
		ch.view.dropUnroutable.Add(1)
		ch.dests.exchange(x).dropUnroutable.Add(1)
	case out.Unroutable && mandatory:
		ch.dests.exchange(x).returnUnroutable.Add(1)
	}
	if out.Congested != nil && ch.conn.flowWait == nil {
		ch.conn.flowWait = out.Congested
	}
}

// returnUnroutable answers a mandatory publish that reached no queue.
func (ch *channel) returnUnroutable(msg *Message) {
	ch.view.returnUnroutable.Add(1)
	ch.conn.sendContent(ch.id, &amqp.BasicReturn{ReplyCode: amqp.NoRoute, ReplyText: "NO_ROUTE",
		Exchange: msg.Exchange, RoutingKey: msg.RoutingKey}, msg, 0, false)
}

// commit applies a transaction: publishes first, then settlements, as
// RabbitMQ does. tx.commit-ok goes out once every published message is as
// safe as the store makes it (after the covering fsync for persistent
// messages on durable queues), and so are its acks (a store barrier after
// them, acksync.go). If the store fails, no commit-ok is sent: the alarm
// is raised and the client must not believe the commit.
func (ch *channel) commit() {
	var pending atomic.Int32
	var failed atomic.Bool
	pending.Store(int32(len(ch.txPublishes)) + 1)
	ch.confirmMu.Lock()
	ch.owedCommits++ // a channel.close-ok waits for the commit-ok
	ch.confirmMu.Unlock()
	finish := func(err error) {
		if err != nil {
			failed.Store(true)
		}
		if pending.Add(-1) == 0 {
			ch.commitDone(!failed.Load())
		}
	}
	for _, p := range ch.txPublishes {
		ch.route(p.msg, p.x, p.mandatory, finish)
	}
	ch.txPublishes = nil
	for _, a := range ch.txAcks {
		ch.settle(a.entries, a.requeue, a.drop)
	}
	ch.txAcks = nil
	ch.view.txReset()
	if ch.unsynced {
		// Without blocking the reader: the commit-ok waits anyway.
		store, quorum := ch.takeUnsynced()
		if store {
			pending.Add(1)
			ch.conn.srv.store.Sync(finish)
		}
		if len(quorum) > 0 {
			pending.Add(1)
			go func() { finish(ch.conn.srv.syncSettled(false, quorum)) }() // ends with the barriers
		}
	}
	finish(nil)
}

// rollback discards buffered publishes and puts buffered settlements back
// as unacked.
func (ch *channel) rollback() {
	ch.txPublishes = nil
	var back []unackedEntry
	for _, a := range ch.txAcks {
		back = append(back, a.entries...)
	}
	ch.txAcks = nil
	ch.view.txReset()
	if len(back) > 0 {
		ch.mu.Lock()
		ch.unacked.restore(back)
		if !ch.ackArmed {
			ch.armAckTimerLocked(0) // the restored ones count again
		}
		ch.mu.Unlock()
	}
}

// shutdown ends the channel: unacked messages return to their queues, then
// consumers are cancelled. Safe to call more than once.
func (ch *channel) shutdown() {
	if ch.shut {
		return
	}
	ch.shut = true
	ch.conn.srv.releaseChannel(ch.conn.user)
	ch.mu.Lock()
	ch.closed = true // an ack timeout may have set it already
	ch.stopped.Store(true)
	es := ch.unacked.takeAll(nil)
	ch.stopAckTimerLocked()
	ch.mu.Unlock()
	ch.conn.srv.stats.channels.Add(-1)
	ch.cancelReply(ch.replyTag)
	for _, a := range ch.txAcks {
		es = append(es, a.entries...)
	}
	ch.txAcks, ch.txPublishes = nil, nil
	ch.publish, ch.publishX, ch.props, ch.body = nil, nil, nil, nil
	// Requeue before cancelling, as an ack timeout does: cancelling a
	// single active consumer makes the next one active, which must find
	// these messages back in their places first, as with RabbitMQ. The
	// consumers, still subscribed, get no credit meanwhile (stopped).
	ch.settle(es, true, false)
	for tag := range ch.consumers {
		ch.cancel(tag)
	}
}

// exchange looks an exchange up through the channel's cache, so publishing
// takes no lock shared with other channels.
func (ch *channel) exchange(name string) *Exchange {
	if x := ch.xcache[name]; x != nil && !x.removed.Load() {
		return x
	}
	x := ch.conn.vhost.exchange(name)
	if x != nil {
		if ch.xcache == nil || len(ch.xcache) >= lookupCacheMax {
			ch.xcache = map[string]*Exchange{}
		}
		ch.xcache[name] = x
	}
	return x
}

// decodePublish parses basic.publish's arguments into ch.publishArgs
// without allocating when the exchange and routing key repeat the previous
// publish's (the common case). It reports false on anything unusual, and
// the generated decoder then gives the precise error.
func (ch *channel) decodePublish(b []byte) bool {
	// reserved-1 (short), exchange (shortstr), routing-key (shortstr), bits.
	if len(b) < 3 {
		return false
	}
	i := 2
	xl := int(b[i])
	i++
	if len(b) < i+xl+1 {
		return false
	}
	x := b[i : i+xl]
	i += xl
	kl := int(b[i])
	i++
	if len(b) != i+kl+1 {
		return false
	}
	k := b[i : i+kl]
	bits := b[i+kl]
	p := &ch.publishArgs
	p.Reserved1 = binary.BigEndian.Uint16(b)
	if string(x) != p.Exchange {
		p.Exchange = string(x)
	}
	if string(k) != p.RoutingKey {
		p.RoutingKey = string(k)
	}
	p.Mandatory = bits&1 != 0
	p.Immediate = bits&2 != 0
	return true
}
