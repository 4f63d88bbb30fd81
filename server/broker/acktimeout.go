package broker

import (
	"math"
	"time"

	"github.com/amqp-go/amqp-go/server/queue"
	"github.com/amqp-go/amqp-go/shared/amqp"
)

// Consumer (acknowledgement) timeouts, as RabbitMQ's channel has them: a
// delivery left unacknowledged longer than its timeout closes the channel
// with 406, and the channel's unacked messages go back to their queues.
// Like rabbit_channel, only the oldest unacked delivery is checked.
//
// RabbitMQ checks on its channel tick (channel_tick_interval, 60 s), so its
// close comes up to a tick late; here each channel has one timer, armed at
// the oldest delivery's deadline while the channel has unacked deliveries
// with a timeout, so the close comes on time. A channel with nothing unacked
// has no timer running.

// maxAckCheck is the longest wait between checks while deliveries are
// unacked, RabbitMQ's tick: a younger delivery with a shorter timeout than
// the oldest one's is checked within it once it is the oldest.
const maxAckCheck = time.Minute

// consumerTimeoutArg is the queue.declare and basic.consume argument.
const consumerTimeoutArg = "x-consumer-timeout"

// ackTimeout is the timeout of deliveries from q to a consumer with args
// (nil for basic.get): the consumer's x-consumer-timeout, else the
// queue's, else the server's consumer timeout; negative: none. A consumer
// argument that is not a non-negative integer is ignored, as RabbitMQ
// ignores it.
func (s *Server) ackTimeout(q *Queue, args amqp.Table) time.Duration {
	if v, ok := args[consumerTimeoutArg]; ok {
		if n, isInt := asInt(v); isInt && n >= 0 {
			return msDuration(n)
		}
	}
	if t := q.settings().consumerTimeout; t >= 0 {
		return msDuration(t)
	}
	return s.cfg.ConsumerTimeout
}

// msDuration converts a timeout in ms; one past time.Duration's range is
// none (negative).
func msDuration(ms int64) time.Duration {
	if ms > math.MaxInt64/int64(time.Millisecond) {
		return -1
	}
	return time.Duration(ms) * time.Millisecond
}

// entryTimeout is the ack timeout of an unacked delivery.
func (ch *channel) entryTimeout(e unackedEntry) time.Duration {
	if e.c != nil {
		return e.c.timeout
	}
	return ch.conn.srv.ackTimeout(e.q, nil)
}

// armAckTimerLocked starts the ack timer to fire after d (at most
// maxAckCheck). mu held, timer not armed.
func (ch *channel) armAckTimerLocked(d time.Duration) {
	d = min(max(d, 0), maxAckCheck)
	if ch.ackTimer == nil {
		ch.ackTimer = time.AfterFunc(d, ch.checkAckTimeout)
	} else {
		ch.ackTimer.Reset(d)
	}
	ch.ackArmed = true
}

// stopAckTimerLocked stops the ack timer. mu held.
func (ch *channel) stopAckTimerLocked() {
	if ch.ackTimer != nil {
		ch.ackTimer.Stop()
	}
	ch.ackArmed = false
}

// checkAckTimeout runs on the ack timer's goroutine: it closes the channel
// if its oldest unacked delivery is past its timeout, else re-arms the timer
// while deliveries are unacked. It cannot run the reader's shutdown, so it
// does what must not wait for the client (stop deliveries, requeue, send
// channel.close) and leaves the rest to the reader (see timedOut).
func (ch *channel) checkAckTimeout() {
	ch.mu.Lock()
	ch.ackArmed = false
	e, ok := ch.unacked.first()
	if ch.closed || !ok {
		ch.mu.Unlock()
		return
	}
	timeout := ch.entryTimeout(e)
	age := time.Duration(queue.Now() - e.at)
	if timeout < 0 || age < timeout {
		wait := maxAckCheck
		if timeout >= 0 {
			wait = timeout - age
		}
		ch.armAckTimerLocked(wait)
		ch.mu.Unlock()
		return
	}
	ch.closed = true
	ch.timedOut.Store(true)
	es := ch.unacked.takeAll(nil)
	ch.mu.Unlock()

	c := ch.conn
	tag := ""
	if e.c != nil {
		tag = e.c.tag
	}
	ms := timeout.Milliseconds()
	c.logger.Warn("consumer timed out waiting for a delivery acknowledgement", "channel", ch.id, "consumer", tag,
		"delivery_tag", e.tag, "queue", e.q.Name, "timeout_ms", ms, "user", c.user, "vhost", c.vhostName())
	// The consumers of this channel get no more credit (canDeliver), so
	// their credit counters are not given back.
	settleRuns(es, true, false, nil)
	ae := protoErr(amqp.PreconditionFailed, nil,
		"delivery acknowledgement on channel %d timed out. Timeout value used: %d ms. "+
			"This timeout value can be configured, see consumers doc guide to learn more", ch.id, ms)
	c.logger.Info("channel exception", "channel", ch.id, "code", ae.code, "text", ae.text, "user", c.user, "vhost", c.vhostName())
	c.ackTimedOut.Store(true) // before endChannel: the reader's sends check it
	c.endChannel(ch, &amqp.ChannelClose{ReplyCode: ae.code, ReplyText: ae.text})
}

// finishTimedOut completes, on the reader, a channel an ack timeout closed:
// it shuts the channel down (consumers cancelled) and from now on only
// waits for the client's close-ok. It reports whether the channel had
// timed out.
func (ch *channel) finishTimedOut() bool {
	if !ch.timedOut.Load() {
		return false
	}
	if !ch.closing {
		ch.closing = true
		ch.shutdown()
	}
	return true
}
