package broker

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/amqp-go/amqp-go/server/queue"
	"github.com/amqp-go/amqp-go/shared/amqp"
)

// Output back-pressure: past outputHigh bytes queued for the socket, queues
// stop delivering to this connection until the writer drains it below
// outputLow, so a slow consumer holds up only itself.
const (
	outputHigh = 4 << 20
	outputLow  = 1 << 20
)

// conn is one client connection. It has exactly two goroutines: the reader
// (serve), which owns the channel map and all protocol state, and the writer
// (writeLoop), which owns the socket's write side.
type conn struct {
	srv    *Server
	nc     net.Conn
	fr     *amqp.FrameReader
	logger *slog.Logger

	// reader-owned, settled during the handshake
	user       string
	vhost      *VHost
	frameMax   uint32
	channelMax uint16
	heartbeat  time.Duration
	capBlocked bool // client handles connection.blocked
	capCancel  bool // client handles server-sent basic.cancel
	// channels is the reader's; it changes only under chansMu, which
	// other goroutines take to read it (Server.Channels).
	channels map[uint16]*channel
	chansMu  sync.Mutex
	// now is the reader's clock (queue.Now), read once per read from the
	// socket and every 64 frames, not once per frame: the time a publish
	// gives its queues (0: not read since a pause). readsAt is the
	// FrameReader's read count when it was read. Reader goroutine only.
	now     int64
	readsAt uint64
	// lastCh is the channel the reader last found in channels: most
	// connections use one channel, and a map lookup per frame was a tenth
	// of a small message's cost. Reader goroutine only.
	lastCh     *channel
	closing    bool // connection.close sent, waiting for close-ok
	gotCloseOk bool // the client answered our connection.close
	needKick   bool // output appended during this read batch
	// ackedChans are the channels with acks not settled yet (channel.acked).
	// Reader goroutine only.
	ackedChans []*channel
	publishing bool // the client has published: resource alarms stop reading it
	// flowWait, if set, is a congested queue's channel: the reader pauses
	// on it before reading more (publisher flow control).
	flowWait  <-chan struct{}
	flowTimer *time.Timer

	// outMu guards the output buffer and the confirm flush list.
	outMu sync.Mutex
	out   []byte
	spare []byte
	// refs are the large bodies of deliveries that go out by writev
	// (net.Buffers) from the message itself instead of being copied into
	// out: each is written after out[:at]. Only on a TCP socket (vec):
	// TLS would make each buffer a record of its own.
	refs         []outRef
	spareRefs    []outRef
	vec          bool
	confirmChans []*channel
	outClosed    bool
	outBytes     atomic.Int64
	// sendOct and sendCnt count the bytes and the writes (packets, in
	// RabbitMQ's words) sent on the socket, for the management API.
	sendOct, sendCnt atomic.Uint64
	throttled        atomic.Bool // a queue found no room; wake queues on drain
	blocked          bool        // connection.blocked sent (guarded by outMu)
	// deliver is reused for every basic.deliver (guarded by outMu), so
	// encoding one does not allocate; made on the first (deliverMethod),
	// so that a connection that never consumes goes without it.
	deliver *amqp.BasicDeliver

	exclusiveMu sync.Mutex
	exclusive   []*Queue

	// consumerQueuesMu guards consumerQueues: the queue of each consumer,
	// so the writer can wake them after back-pressure.
	consumerQueuesMu sync.Mutex
	consumerQueues   []*Queue

	forced   atomic.Bool   // the server sent connection.close (shutdown)
	ending   atomic.Bool   // set before connection.close or close-ok is queued: no channel frame may follow
	stop     chan struct{} // closed by forceClose: wakes a reader held by an alarm
	stopOnce sync.Once

	// ackTimedOut is set once an ack timeout has closed a channel from its
	// timer; from then on the reader's sends check the channel (endedLocked).
	ackTimedOut atomic.Bool

	wake chan struct{} // writer wake-up, capacity 1
	done chan struct{} // closed by the reader when the connection ends

	// hb is the connection's place in the server's heartbeat rounds.
	hb hbState

	// info is what the management API shows of the connection, published
	// once its handshake has succeeded (nil before), immutable after.
	info atomic.Pointer[ConnInfo]
}

func newConn(s *Server, nc net.Conn) *conn {
	c := &conn{
		srv: s, nc: nc,
		fr:       amqp.NewFrameReader(nc, s.cfg.ReadBufferSize),
		logger:   s.logger.With("peer", nc.RemoteAddr().String()),
		frameMax: amqp.FrameMinSize, channels: map[uint16]*channel{},
		wake: make(chan struct{}, 1), done: make(chan struct{}), stop: make(chan struct{}),
	}
	c.fr.SetBodySink(c)
	_, c.vec = nc.(*net.TCPConn)
	return c
}

// outRef is a body frame's payload written in place: after out[:at].
type outRef struct {
	at int
	b  []byte
}

// vecMin is the smallest body written in place rather than copied.
const vecMin = 8 << 10

// appendBodyLocked appends body as body frames of at most frame_max
// bytes: copied into out, or, for a large body on a TCP socket, as frame
// headers and ends in out around references to the body itself.
func (c *conn) appendBodyLocked(ch uint16, body []byte) {
	if !c.vec || len(body) < vecMin {
		c.out = amqp.AppendBodyFrames(c.out, ch, body, c.frameMax)
		return
	}
	chunk, total := len(body), len(body)
	if c.frameMax != 0 {
		chunk = min(chunk, int(max(c.frameMax, amqp.FrameMinSize))-8)
	}
	for len(body) > 0 {
		n := min(chunk, len(body))
		c.out = append(c.out, amqp.FrameBody, byte(ch>>8), byte(ch), byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
		c.refs = append(c.refs, outRef{at: len(c.out), b: body[:n]})
		c.out = append(c.out, amqp.FrameEnd)
		body = body[n:]
	}
	c.outBytes.Add(int64(total)) // one add a body, not a frame
}

// kick wakes the writer.
func (c *conn) kick() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// outputRoom reports whether queues may add deliveries to the output.
func (c *conn) outputRoom() bool {
	if c.outBytes.Load() < outputHigh {
		return true
	}
	c.throttled.Store(true)
	return false
}

func (c *conn) appendMethodLocked(ch uint16, m amqp.Method) {
	n := len(c.out)
	c.out = amqp.AppendMethodFrame(c.out, ch, m)
	c.outBytes.Add(int64(len(c.out) - n))
}

func (c *conn) appendContentLocked(ch uint16, m *Message) {
	n := len(c.out)
	c.out = amqp.AppendHeaderFrame(c.out, ch, amqp.ClassBasic, uint64(len(m.Body)), m.Properties)
	c.appendBodyLocked(ch, m.Body)
	c.outBytes.Add(int64(len(c.out) - n))
}

// appendDeliveryLocked appends m's content for its deliveries-th delivery
// (0 or 1: not a redelivery). A redelivery carries the header
// x-delivery-count, deliveries-1, as RabbitMQ's quorum queues set it, and
// so does every delivery with counted (a quorum queue's: RabbitMQ 3.10's
// sets 0 on the first): the properties' header table is re-encoded for
// this delivery only, straight into the output, while other deliveries'
// properties go out byte for byte as published. Properties the rewrite
// cannot read (never: they were validated at publish) go out unchanged.
func (c *conn) appendDeliveryLocked(ch uint16, m *Message, deliveries uint16, counted bool) {
	if deliveries <= 1 && !counted {
		c.appendContentLocked(ch, m)
		return
	}
	n := len(c.out)
	out, ok := amqp.AppendHeaderFrameWithLongHeader(c.out, ch, uint64(len(m.Body)), m.Properties, deliveryCountHeader, int64(max(deliveries, 1)-1))
	if !ok {
		c.appendContentLocked(ch, m)
		return
	}
	c.out = out
	c.appendBodyLocked(ch, m.Body)
	c.outBytes.Add(int64(len(c.out) - n))
}

// deliveryCountHeader counts a message's earlier deliveries on a
// redelivery.
const deliveryCountHeader = "x-delivery-count"

// send queues a method from the reader goroutine; the writer is woken at
// the end of the read batch.
func (c *conn) send(ch uint16, m amqp.Method) {
	c.outMu.Lock()
	if !c.endedLocked(ch) {
		c.appendMethodLocked(ch, m)
	}
	c.outMu.Unlock()
	c.needKick = true
}

// sendContent queues a method with content from the reader goroutine; a
// basic.get-ok gives the message's deliveries and whether its queue
// counts every delivery (see appendDeliveryLocked), a basic.return 0.
func (c *conn) sendContent(ch uint16, m amqp.Method, msg *Message, deliveries uint16, counted bool) {
	c.outMu.Lock()
	if !c.endedLocked(ch) {
		c.appendMethodLocked(ch, m)
		c.appendDeliveryLocked(ch, msg, deliveries, counted)
	}
	c.outMu.Unlock()
	c.needKick = true
}

// endedLocked reports whether channel id was closed by its ack timer while
// the reader was still handling one of its methods: the reply must not
// follow the channel.close. Only after such a timeout is the channel map
// consulted. Reader goroutine, outMu held.
func (c *conn) endedLocked(id uint16) bool {
	if id == 0 || !c.ackTimedOut.Load() {
		return false
	}
	ch := c.channel(id)
	return ch != nil && ch.ended.Load() && !ch.closing
}

// channel returns channel id, nil if it is not open. Reader goroutine.
func (c *conn) channel(id uint16) *channel {
	if ch := c.lastCh; ch != nil && ch.id == id {
		return ch
	}
	ch := c.channels[id]
	if ch != nil {
		c.lastCh = ch
	}
	return ch
}

// queueConfirms schedules ch's resolved confirms for the next write.
func (c *conn) queueConfirms(ch *channel) {
	c.outMu.Lock()
	c.confirmChans = append(c.confirmChans, ch)
	c.outMu.Unlock()
	c.kick()
}

// writeLoop is the writer goroutine: it swaps out the output buffer, adds
// pending confirms, and writes the whole batch with one syscall (write,
// or writev when large bodies are written in place). The round's work is
// in the functions it calls, one after another, so that the deepest path,
// a write, is only this small frame, writeBatch's and the syscall's: an
// idle connection's writer then fits the smallest goroutine stack, 2 KiB.
func (c *conn) writeLoop() {
	if c.heartbeat > 0 {
		// The server's heartbeat rounds kick this writer when one is due.
		c.srv.heartbeats.add(c)
		defer c.srv.heartbeats.remove(c)
	}
	w := &writerState{}
	for {
		final := false
		select {
		case <-c.wake:
		case <-c.done:
			final = true
		}
		if c.takeOutput(w) && !c.writeBatch(w) {
			final = true
		}
		if c.endRound(w, final) {
			c.lingerClose()
			return
		}
	}
}

// writerState is what the writer keeps between rounds and within one.
type writerState struct {
	buf      []byte   // the round's output
	refs     []outRef // large bodies written in place, at their offsets in buf
	queued   int64    // the round's bytes, off outBytes once written
	bufs     net.Buffers
	confirms []*channel
	wrote    bool // since the last heartbeat was due
}

// takeOutput swaps out what is pending (a heartbeat if one is due and
// nothing was written since, the output, the confirms) and reports whether
// there is anything to write. Writer goroutine only.
func (c *conn) takeOutput(w *writerState) bool {
	if c.hb.due.Swap(false) {
		if !w.wrote {
			c.outMu.Lock()
			c.out = amqp.AppendHeartbeatFrame(c.out)
			c.outMu.Unlock()
		}
		w.wrote = false
	}
	c.outMu.Lock()
	w.buf, w.refs = c.out, c.refs
	c.out, c.refs = c.spare[:0], c.spareRefs[:0]
	c.spare, c.spareRefs = nil, nil
	w.confirms = append(w.confirms[:0], c.confirmChans...)
	clear(c.confirmChans)
	c.confirmChans = c.confirmChans[:0]
	c.srv.confirmsHook.run()
	// The confirms are read with outMu still held: a message resolved
	// after the swap may have had its basic.return appended to the next
	// buffer, and its ack must not go out before it.
	for _, ch := range w.confirms {
		w.buf = ch.appendConfirms(w.buf)
	}
	c.outMu.Unlock()
	clear(w.confirms)
	w.queued = int64(len(w.buf))
	for _, r := range w.refs {
		w.queued += int64(len(r.b))
	}
	if len(w.buf) > 0 {
		w.wrote = true
	}
	return len(w.buf) > 0
}

// writeBatch writes the round's output, with its large bodies in place,
// and reports whether it succeeded; on failure the socket is closed (the
// reader sees it and tears down).
func (c *conn) writeBatch(w *writerState) bool {
	// A client that stops reading must not pin this goroutine, the
	// socket and the buffer for ever (RabbitMQ's send_timeout).
	_ = c.nc.SetWriteDeadline(time.Now().Add(c.srv.cfg.SendTimeout))
	var n int64
	var err error
	if len(w.refs) == 0 {
		var m int
		m, err = c.nc.Write(w.buf)
		n = int64(m)
	} else {
		n, err = c.writeGathered(w)
	}
	c.sent(n)
	if err != nil {
		c.writeFailed(err)
		return false
	}
	return true
}

// endRound gives the round's buffers back for the next and reports whether
// the writer is done (final: the connection ended or a write failed).
func (c *conn) endRound(w *writerState, final bool) bool {
	c.outBytes.Add(-w.queued)
	buf, refs := w.buf, w.refs
	w.buf, w.refs, w.queued = nil, nil, 0
	if cap(buf) > 8<<20 {
		buf = nil // don't pin a burst's buffer forever
	}
	clear(refs) // the bodies are written: don't pin them
	if cap(refs) > 4096 {
		refs, w.bufs = nil, nil
	}
	c.outMu.Lock()
	c.spare, c.spareRefs = buf[:0], refs[:0]
	if final {
		c.outClosed = true
	}
	c.outMu.Unlock()
	if c.throttled.Load() && c.outBytes.Load() < outputLow {
		c.throttled.Store(false)
		c.wakeConsumers()
	}
	return final
}

// writeGathered writes the round's output with its large bodies at their
// places (writev).
func (c *conn) writeGathered(w *writerState) (int64, error) {
	w.bufs = gather(w.bufs[:0], w.buf, w.refs)
	v := w.bufs // WriteTo consumes its receiver
	n, err := v.WriteTo(c.nc)
	clear(w.bufs)
	return n, err
}

// sent counts one write of n bytes on the socket.
func (c *conn) sent(n int64) {
	c.sendOct.Add(uint64(max(n, 0)))
	c.sendCnt.Add(1)
}

// writeFailed logs a write that timed out and closes the socket.
func (c *conn) writeFailed(err error) {
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		c.logger.Info("closing connection: client stopped reading", "send_timeout", c.srv.cfg.SendTimeout)
	}
	c.nc.Close() // the reader sees the error and tears down
}

// gather lists what the writer writes in order: out with each ref's
// bytes at its place.
func gather(dst net.Buffers, out []byte, refs []outRef) net.Buffers {
	prev := 0
	for _, r := range refs {
		dst = append(dst, out[prev:r.at], r.b)
		prev = r.at
	}
	return append(dst, out[prev:])
}

// wakeConsumers signals the queue of every consumer on this connection.
func (c *conn) wakeConsumers() {
	c.srv.forConsumers(c, func(q *Queue) { q.signal() })
}

// serve runs the connection: handshake, then the frame loop, then teardown.
func (c *conn) serve() {
	defer c.srv.removeConn(c)
	err := c.handshake()
	c.srv.handshakes.Add(-1)
	if err != nil && !errors.Is(err, errHandshake) && err != io.EOF {
		// Timeouts and resets; refusals were logged where they happened,
		// and a socket closed before a byte came (a TCP health check) is
		// not worth a line.
		c.logRefused("handshake failed", "err", err)
	}
	if err == nil {
		writer := make(chan struct{})
		go func() { defer close(writer); c.writeLoop() }()
		err = c.readLoop()
		c.teardown()
		close(c.done)
		// The connection counts until its socket is closed, which the
		// writer does last (bounded by the send timeout).
		<-writer
		c.logger.Info("connection closed")
	} else {
		c.nc.Close()
	}
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		c.logger.Debug("connection ended", "err", err)
	}
}

// readLoop reads and handles frames until the connection ends.
func (c *conn) readLoop() error {
	var lastDeadline time.Time
	var frames uint
	// Acks read before the end count, whatever ended it.
	defer c.settleAcks()
	for {
		if c.publishing && !c.closing {
			// A resource alarm stops reading publishers, as RabbitMQ does;
			// connections that only consume keep draining.
			if cleared := c.srv.alarmWait(); cleared != nil {
				// Replies to what was already read must not wait for
				// the alarm to clear.
				c.endBatch()
				if c.waitAlarm(cleared) {
					return errPeerGone
				}
				lastDeadline = time.Time{}
				c.now = 0
			}
		}
		if c.flowWait != nil {
			// Per message, not per read batch: a batch-sized allowance
			// lets a flood of publishers straight through. The price is
			// that a throttled connection's own close waits its turn,
			// as with RabbitMQ's blocked connections.
			c.pauseForFlow()
			c.now = 0
		}
		frames++
		if c.heartbeat > 0 && !c.closing && !c.forced.Load() && (frames%64 == 0 || c.fr.Buffered() == 0) {
			// The clock is read before a read that may block, or every 64
			// frames under load; a coarse refresh keeps the two-heartbeat
			// detection window without a clock read per frame.
			if now := time.Now(); now.Sub(lastDeadline) > c.heartbeat/4 {
				lastDeadline = now
				_ = c.nc.SetReadDeadline(now.Add(2 * c.heartbeat))
			}
		}
		f, err := c.fr.ReadFrame()
		if err != nil {
			var fe *amqp.FrameError
			if errors.As(err, &fe) {
				c.closeWith(&amqpError{code: fe.Code, text: fe.Text, hard: true})
				c.flushNow()
				return err
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && !c.closing {
				c.logger.Info("missed heartbeats from client, timeout", "heartbeat", c.heartbeat)
			}
			return err
		}
		if r := c.fr.Reads(); r != c.readsAt || c.now == 0 || frames%64 == 0 {
			c.readsAt, c.now = r, queue.Now()
		}
		if f.Type == amqp.FrameHeader {
			c.publishing = true // only basic.publish carries content from clients
		}
		if len(c.ackedChans) > 0 && !isBasicAck(f) {
			// Whatever else comes sees the acks before it done.
			c.settleAcks()
		}
		done, err := c.handleFrame(f)
		if c.fr.Buffered() == 0 {
			c.endBatch() // the next read may block
		}
		if err != nil || done {
			c.flushNow()
			return err
		}
	}
}

// endBatch ends a read batch, before the reader may block: its acks
// settle and the writer wakes for what it appended. Reader goroutine only.
func (c *conn) endBatch() {
	c.settleAcks()
	if c.needKick {
		c.needKick = false
		c.kick()
	}
}

// settleAcks settles the acks read since the last call (channel.acked).
// Reader goroutine only.
func (c *conn) settleAcks() {
	for _, ch := range c.ackedChans {
		ch.settleAcked()
	}
	clear(c.ackedChans)
	c.ackedChans = c.ackedChans[:0]
}

// pauseForFlow stops reading from a publisher while a queue it published
// to is congested, for at most flowPause at a time.
func (c *conn) pauseForFlow() {
	wait := c.flowWait
	c.flowWait = nil
	c.endBatch()
	if c.flowTimer == nil {
		c.flowTimer = time.NewTimer(flowPause)
	} else {
		c.flowTimer.Reset(flowPause)
	}
	select {
	case <-wait:
	case <-c.flowTimer.C:
	case <-c.stop:
	}
	c.flowTimer.Stop()
}

// flushNow wakes the writer and lets it drain before the reader tears down.
func (c *conn) flushNow() { c.kick() }

// handleFrame dispatches one frame; done reports the end of the connection.
func (c *conn) handleFrame(f amqp.Frame) (done bool, err error) {
	if f.Type == amqp.FrameHeartbeat {
		if e := heartbeatError(f); e != nil {
			c.closeWith(e)
		}
		return false, nil
	}
	if f.Channel == 0 {
		if f.Type != amqp.FrameMethod {
			c.closeWith(protoErr(amqp.UnexpectedFrame, nil, "expected method frame, got non method frame instead"))
			return false, nil
		}
		return c.handleConnectionMethod(f.Payload)
	}
	if c.closing {
		return false, nil // only connection.close-ok matters now
	}
	ch := c.channel(f.Channel)
	if ch == nil {
		if f.Type != amqp.FrameMethod {
			c.closeWith(protoErr(amqp.ChannelError, nil, "expected 'channel.open'"))
			return false, nil
		}
		m, err := amqp.DecodeMethod(f.Payload)
		if err != nil {
			c.closeWith(decodeFailure(err))
			return false, nil
		}
		open, ok := m.(*amqp.ChannelOpen)
		if !ok {
			c.closeWith(protoErr(amqp.ChannelError, m, "expected 'channel.open'"))
			return false, nil
		}
		if c.channelMax != 0 && f.Channel > c.channelMax {
			c.closeWith(protoErr(amqp.NotAllowed, m, "channel number %d exceeds negotiated channel_max %d", f.Channel, c.channelMax))
			return false, nil
		}
		_ = open
		if e := c.srv.admitChannel(m, c.user); e != nil {
			c.closeWith(e)
			return false, nil
		}
		ch = newChannel(c, f.Channel)
		c.srv.stats.channels.Add(1)
		c.chansMu.Lock()
		c.channels[f.Channel] = ch
		c.chansMu.Unlock()
		c.send(f.Channel, &amqp.ChannelOpenOk{})
		return false, nil
	}
	if err := ch.handleFrame(f); err != nil {
		c.raise(ch, err)
	}
	return false, nil
}

// raise turns a handler error into a channel or connection exception.
func (c *conn) raise(ch *channel, err error) {
	var ae *amqpError
	if !errors.As(err, &ae) {
		ae = protoErr(amqp.InternalError, nil, "%v", err)
	}
	if ae.hard {
		c.closeWith(ae)
		return
	}
	ch.shutdown()
	if ch.finishTimedOut() {
		return // its ack timer closed it first; that close stands
	}
	c.logger.Info("channel exception", "channel", ch.id, "code", ae.code, "text", ae.text, "user", c.user, "vhost", c.vhostName())
	ch.closing = true
	c.endChannel(ch, &amqp.ChannelClose{ReplyCode: ae.code, ReplyText: ae.text, FailingClassID: ae.classID, FailingMethodID: ae.methodID})
}

// endChannel queues ch's last frame, its close-ok or the server's
// channel.close, after the confirms already resolved, and stops anything
// else of ch from going out: late confirms, tx.commit-ok, basic.cancel
// (deliveries stop at shutdown). Any goroutine.
func (c *conn) endChannel(ch *channel, last amqp.Method) {
	c.outMu.Lock()
	if !c.outClosed && !c.ending.Load() {
		n := len(c.out)
		c.out = ch.appendConfirms(c.out)
		c.outBytes.Add(int64(len(c.out) - n))
		c.appendMethodLocked(ch.id, last)
	}
	ch.ended.Store(true)
	c.outMu.Unlock()
	c.kick()
}

func (c *conn) vhostName() string {
	if c.vhost == nil {
		return ""
	}
	return c.vhost.name
}

// decodeFailure maps a codec error to RabbitMQ's exception.
func decodeFailure(err error) *amqpError {
	var um *amqp.UnknownMethodError
	if errors.As(err, &um) {
		return &amqpError{code: amqp.CommandInvalid, hard: true, classID: um.ClassID, methodID: um.MethodID,
			text: "COMMAND_INVALID - unknown method"}
	}
	var de *amqp.DecodeError
	if errors.As(err, &de) {
		return &amqpError{code: amqp.FrameErrorCode, hard: true, classID: de.ClassID, methodID: de.MethodID,
			text: "FRAME_ERROR - cannot decode method: " + de.Reason}
	}
	return protoErr(amqp.SyntaxError, nil, "%v", err)
}

// closeWith starts a connection exception: send connection.close and ignore
// everything but the close handshake from now on.
func (c *conn) closeWith(e *amqpError) {
	if c.closing {
		return
	}
	c.logger.Info("connection exception", "code", e.code, "text", e.text, "user", c.user, "vhost", c.vhostName())
	c.closing = true
	c.ending.Store(true)
	for _, ch := range c.channels {
		ch.shutdown()
	}
	c.send(0, &amqp.ConnectionClose{ReplyCode: e.code, ReplyText: e.text, FailingClassID: e.classID, FailingMethodID: e.methodID})
	c.kick()
	// The client has a bounded time to answer with close-ok.
	_ = c.nc.SetReadDeadline(time.Now().Add(3 * time.Second))
}

// handleConnectionMethod handles methods on channel 0 after the handshake.
func (c *conn) handleConnectionMethod(payload []byte) (bool, error) {
	m, err := amqp.DecodeMethod(payload)
	if err != nil {
		c.closeWith(decodeFailure(err))
		return false, nil
	}
	switch m := m.(type) {
	case *amqp.ConnectionClose:
		if e := c.syncSettled(m); e != nil {
			c.closeWith(e)
			return false, nil
		}
		c.ending.Store(true)
		c.send(0, &amqp.ConnectionCloseOk{})
		return true, nil
	case *amqp.ConnectionCloseOk:
		if c.closing || c.forced.Load() {
			c.gotCloseOk = true
			return true, nil
		}
		c.closeWith(protoErr(amqp.CommandInvalid, m, "unexpected connection.close-ok"))
	case *amqp.ConnectionBlocked, *amqp.ConnectionUnblocked:
		// Clients may echo these; RabbitMQ ignores them.
	case *amqp.ConnectionUpdateSecret:
		if c.closing {
			return false, nil
		}
		// RabbitMQ's internal user store accepts any new secret: the
		// secret only matters to backends that check it (tokens). Once
		// backends are pluggable, one that checks secrets may refuse here,
		// as RabbitMQ does: closeWith(protoErr(amqp.NotAllowed, m, "New
		// secret was refused by one of the backends")).
		c.send(0, &amqp.ConnectionUpdateSecretOk{})
	default:
		if c.closing {
			return false, nil
		}
		c.closeWith(protoErr(amqp.ChannelError, m, "unexpected method in connection state running"))
	}
	return false, nil
}

// teardown releases everything the connection held. Reader goroutine only.
func (c *conn) teardown() {
	c.lastCh = nil
	for id, ch := range c.channels {
		ch.shutdown()
		c.chansMu.Lock()
		delete(c.channels, id)
		c.chansMu.Unlock()
	}
	c.exclusiveMu.Lock()
	qs := append([]*Queue(nil), c.exclusive...)
	c.exclusive = nil
	c.exclusiveMu.Unlock()
	for _, q := range qs {
		if q.homeOf() != nil && q.vhost.server.replicating() != nil {
			// The cluster's: deleted through it, retried until it is.
			q.ownerGone.Store(true)
			q.vhost.server.dropTransient(q, "its owner's connection closed")
			continue
		}
		_, _ = q.vhost.deleteQueue(q, nil)
	}
}

func (c *conn) addExclusive(q *Queue) {
	c.exclusiveMu.Lock()
	c.exclusive = append(c.exclusive, q)
	c.exclusiveMu.Unlock()
}

func (c *conn) removeExclusive(q *Queue) {
	c.exclusiveMu.Lock()
	defer c.exclusiveMu.Unlock()
	for i, x := range c.exclusive {
		if x == q {
			c.exclusive = append(c.exclusive[:i], c.exclusive[i+1:]...)
			return
		}
	}
}

// consumerGone tells the client that the server cancelled consumer cn
// (its queue was deleted). Called from whichever goroutine deleted the
// queue; the consumer map itself is cleaned by the reader when it next
// sees the tag, so only the notification is sent here.
func (c *conn) consumerGone(ch *channel, cn *consumer) {
	cn.gone.Store(true)
	ch.view.unlist(cn)
	ch.mu.Lock()
	closed := ch.closed
	ch.mu.Unlock()
	if closed || !c.capCancel {
		return
	}
	c.outMu.Lock()
	if !c.outClosed && !ch.ended.Load() {
		c.appendMethodLocked(ch.id, &amqp.BasicCancel{ConsumerTag: cn.tag, NoWait: true})
	}
	c.outMu.Unlock()
	c.kick()
}

// setBlocked sends connection.blocked or unblocked if the client handles it.
func (c *conn) setBlocked(reason string, on bool) {
	if !c.capBlocked {
		return
	}
	c.outMu.Lock()
	if c.blocked != on && !c.outClosed {
		c.blocked = on
		if on {
			c.appendMethodLocked(0, &amqp.ConnectionBlocked{Reason: reason})
		} else {
			c.appendMethodLocked(0, &amqp.ConnectionUnblocked{})
		}
	}
	c.outMu.Unlock()
	c.kick()
}

// forceClose starts closing the connection from outside the reader, with
// 320 CONNECTION_FORCED, and bounds how long the reader waits for close-ok.
func (c *conn) forceClose() {
	c.forceCloseWith("CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'")
}

// forceCloseWith is forceClose with another 320 text (a vhost deleted).
func (c *conn) forceCloseWith(text string) {
	c.forced.Store(true)
	c.ending.Store(true)
	c.stopOnce.Do(func() { close(c.stop) })
	c.outMu.Lock()
	if !c.outClosed {
		c.appendMethodLocked(0, &amqp.ConnectionClose{ReplyCode: amqp.ConnectionForced, ReplyText: text})
	}
	c.outMu.Unlock()
	c.kick()
	_ = c.nc.SetReadDeadline(time.Now().Add(3 * time.Second))
}

func (c *conn) addConsumerQueue(q *Queue) {
	c.consumerQueuesMu.Lock()
	c.consumerQueues = append(c.consumerQueues, q)
	c.consumerQueuesMu.Unlock()
}

func (c *conn) removeConsumerQueue(q *Queue) {
	c.consumerQueuesMu.Lock()
	defer c.consumerQueuesMu.Unlock()
	for i, x := range c.consumerQueues {
		if x == q {
			c.consumerQueues = append(c.consumerQueues[:i], c.consumerQueues[i+1:]...)
			return
		}
	}
}

// lingerClose closes the socket without destroying what we last wrote.
// Closing first has two bad effects: with unread client data pending the
// kernel sends a RST, which can discard our close-ok in flight; and clients
// such as amqp091-go that read EOF before processing close-ok report a
// graceful close as an error. So, like RabbitMQ, wait (bounded) for the
// client to close, draining what it still sends. Called by the writer after
// the reader has exited.
func (c *conn) lingerClose() {
	if c.gotCloseOk {
		// The client has our connection.close and expects us to close
		// the socket now, as RabbitMQ does (set by the reader, which
		// has exited).
		c.nc.Close()
		return
	}
	_ = c.nc.SetReadDeadline(time.Now().Add(time.Second))
	buf := make([]byte, 4096)
	for {
		if _, err := c.nc.Read(buf); err != nil {
			break
		}
	}
	c.nc.Close()
}

// deliverMethod returns the connection's reused basic.deliver, set to d.
// Caller holds outMu.
func (c *conn) deliverMethod(d amqp.BasicDeliver) *amqp.BasicDeliver {
	if c.deliver == nil {
		c.deliver = new(amqp.BasicDeliver)
	}
	*c.deliver = d
	return c.deliver
}
