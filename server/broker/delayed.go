package broker

import (
	"errors"
	"iter"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/amqp-go/amqp-go/server/queue"
	"github.com/amqp-go/amqp-go/server/store"
	"github.com/amqp-go/amqp-go/shared/amqp"
)

// The delayed-message exchange, built in: the type, arguments and header of
// rabbitmq-delayed-message-exchange. A message that reaches such an
// exchange with an x-delay of 1 to 2^32-1 ms waits in the exchange's
// scheduler (queue.Delayed) and is then published from the exchange through
// VHost.Publish like any message, routed by the x-delayed-type's rules with
// its x-delay header negated (so that it is not delayed again, the
// plugin's rule). Any other x-delay routes at once.
const (
	kindDelayed    = "x-delayed-message"
	argDelayedType = "x-delayed-type"
	headerDelay    = "x-delay"
	// maxDelay is the plugin's bound (Erlang's longest timer, in ms): a
	// longer delay routes at once, as there.
	maxDelay = 1<<32 - 1
	// delayedRound bounds the messages one firing takes out of the
	// scheduler under its lock; the rest follow in further rounds.
	delayedRound = 1024
)

// routeKind is the routing type of an exchange of kind with args: the
// x-delayed-type of a delayed exchange, else the kind itself.
func routeKind(kind string, args amqp.Table) string {
	if kind != kindDelayed {
		return kind
	}
	s, _ := asText(args[argDelayedType])
	return s
}

// checkDelayedArgs validates a new delayed exchange's x-delayed-type with
// the plugin's reply codes and texts (rabbit_exchange:check_type's for an
// unknown type).
func checkDelayedArgs(m amqp.Method, args amqp.Table) error {
	s, ok := asText(args[argDelayedType])
	switch {
	case !ok:
		return protoErr(amqp.PreconditionFailed, m, "Invalid argument, 'x-delayed-type' must be an existing exchange type")
	case s == kindDelayed:
		return protoErr(amqp.PreconditionFailed, m, "Invalid argument, 'x-delayed-message' can't be used for 'x-delayed-type'")
	case !validKind(s):
		return protoErr(amqp.CommandInvalid, m, "unknown exchange type '%s'", s)
	}
	return nil
}

// messageDelay reads a message's x-delay header as the plugin does: an
// integer of any width, a longstr holding a decimal integer, or a float or
// decimal truncated. It reports whether the message is delayed (1 ms to
// maxDelay); a missing, zero, negative, too large or otherwise typed value
// routes at once. (The plugin crashes the channel on a longstr that is not
// an integer, and on a decimal; here they route at once.)
func messageDelay(h amqp.Table) (int64, bool) {
	v, ok := h[headerDelay]
	if !ok {
		return 0, false
	}
	var f float64
	switch x := v.(type) {
	case string:
		n, err := strconv.ParseInt(x, 10, 64)
		if err != nil {
			return 0, false
		}
		return n, n > 0 && n <= maxDelay
	case float32:
		f = float64(x)
	case float64:
		f = x
	case amqp.Decimal:
		f = float64(x.Value) / math.Pow10(int(x.Scale))
	default:
		n, isInt := asInt(v)
		return n, isInt && n > 0 && n <= maxDelay
	}
	f = math.Trunc(f)
	if !(f > 0 && f <= maxDelay) { // NaN too
		return 0, false
	}
	return int64(f), true
}

// delayedHandle is what the scheduler holds of a message: the message while
// it is in memory (nil once paged out) and where the log has it (id 0: not
// stored).
type delayedHandle struct {
	msg *Message
	ref store.Ref
}

// delayedExchange is the scheduling side of an x-delayed-message exchange.
// It costs nothing while idle: one timer (time.AfterFunc, no goroutine
// while it waits) is armed for the earliest due time only while messages
// wait.
//
// Locking: fireMu serialises firings and is held across a round's
// publishes, so messages come out in due order (ties in publish order); it
// is taken holding no broker lock and before anything VHost.Publish takes.
// mu guards the scheduler and the timer and is a leaf. relMu guards the
// releases waiting for their flush and is a leaf.
type delayedExchange struct {
	x *Exchange
	// id names a durable delayed exchange's messages in the log (0: none
	// are stored). It is allocated with the queue ids, never reused, and
	// kept in the exchange's definition.
	id uint64

	fireMu sync.Mutex
	pub    publisher // fireMu's

	mu       sync.Mutex
	sched    *queue.Delayed[delayedHandle]
	timer    *time.Timer
	armedFor int64 // the due time the timer is set for (0: not armed)
	// hot counts stored messages also held in memory; past the server's
	// ring size they are kept as log references only.
	hot    int
	closed bool

	relMu    sync.Mutex
	releases []store.Ref
	relTimer *time.Timer
}

func newDelayedExchange(x *Exchange) *delayedExchange {
	return &delayedExchange{x: x, sched: queue.NewDelayed[delayedHandle]()}
}

// takes reports whether the delayed exchange holds a message with these
// properties rather than routing it now. A nil d takes nothing.
func (d *delayedExchange) takes(props *lazyProps) bool {
	if d == nil {
		return false
	}
	_, ok := messageDelay(props.get())
	return ok
}

// scheduleDelayed hands msg to the delayed exchanges routing reached (in
// p.route.delayed), each holding it for its x-delay. It returns the done
// the rest of Publish answers through: with a delayed exchange that stores
// the message, the publisher hears once both have answered.
func (p *publisher) scheduleDelayed(msg *Message, done func(error)) func(error) {
	xs := p.route.delayed
	delay, _ := messageDelay(p.route.props.get())
	if done != nil {
		j := &confirmJoin{done: done}
		j.pending.Store(int32(len(xs) + 1))
		done = j.one
	}
	for _, x := range xs {
		x.delayed.schedule(msg, delay, done)
	}
	clear(p.route.delayed)
	p.route.delayed = p.route.delayed[:0]
	return done
}

// confirmJoin answers a publish once several parts have: the first error,
// else nil.
type confirmJoin struct {
	done    func(error)
	pending atomic.Int32
	mu      sync.Mutex
	err     error
}

func (j *confirmJoin) one(err error) {
	j.mu.Lock()
	if j.err == nil {
		j.err = err
	}
	j.mu.Unlock()
	if j.pending.Add(-1) == 0 {
		j.mu.Lock()
		err := j.err
		j.mu.Unlock()
		j.done(err)
	}
}

// schedule holds msg for delay ms. done, if set, is called once: at once,
// or for a persistent message on a durable delayed exchange after the
// fsync that stores it (with the store's error if that fails).
func (d *delayedExchange) schedule(msg *Message, delay int64, done func(error)) {
	due := queue.Now() + delay*int64(time.Millisecond)
	h := delayedHandle{msg: msg}
	srv := d.x.vhost.server
	if d.id != 0 && msg.Persistent {
		h.ref = srv.holdDelayed(d.id, msg, due, done)
		done = nil // the store answers
	}
	d.mu.Lock()
	if d.closed {
		// Deleted meanwhile: the message goes with it.
		d.mu.Unlock()
		if !h.ref.IsZero() {
			srv.releaseDelayed(d.id, []store.Ref{h.ref})
		}
		if done != nil {
			done(nil)
		}
		return
	}
	if !h.ref.IsZero() {
		if d.hot >= srv.cfg.RingBufferSize {
			h.msg = nil // the log has it; memory stays bounded
		} else {
			d.hot++
		}
	}
	d.sched.Schedule(queue.Message[delayedHandle]{Handle: h, Size: uint32(len(msg.Body))}, due)
	d.armLocked()
	d.mu.Unlock()
	if done != nil {
		done(nil)
	}
}

// armLocked sets the timer for the earliest due time unless it is set for
// that or earlier. d.mu is held.
func (d *delayedExchange) armLocked() {
	next := d.sched.NextDeadline()
	if next == 0 || d.closed || d.armedFor != 0 && d.armedFor <= next {
		return
	}
	wait := time.Duration(next - queue.Now())
	if d.timer == nil {
		d.timer = time.AfterFunc(wait, d.fire)
	} else {
		d.timer.Reset(wait)
	}
	d.armedFor = next
}

// fire publishes every message that is due, in rounds, then sets the
// timer for the next. A spurious firing (a timer reset as it fired) finds
// nothing due and only re-arms.
func (d *delayedExchange) fire() {
	d.fireMu.Lock()
	defer d.fireMu.Unlock()
	for {
		d.mu.Lock()
		d.armedFor = 0
		if d.closed {
			d.mu.Unlock()
			return
		}
		// The slice stays valid until the next DueMax, which only this
		// loop calls (under fireMu).
		round := d.sched.DueMax(queue.Now(), delayedRound)
		for i := range round {
			if round[i].Handle.msg != nil && !round[i].Handle.ref.IsZero() {
				d.hot--
			}
		}
		if len(round) == 0 {
			d.armLocked()
			d.mu.Unlock()
			return
		}
		d.mu.Unlock()
		for i := range round {
			d.publishDue(round[i].Handle)
		}
	}
}

// publishDue publishes a message that came due from the exchange through
// VHost.Publish: alternate exchanges, queue limits and dead-lettering apply
// as to any publish now; nobody hears of it being unroutable (mandatory is
// not answered: the publisher may be gone by then, the plugin's reason for
// not supporting it). A stored message's hold is released
// once that publish's own store write is done, so a crash between the two
// duplicates it rather than losing it.
func (d *delayedExchange) publishDue(h delayedHandle) {
	srv := d.x.vhost.server
	m := h.msg
	if m == nil {
		sm, err := srv.store.Load(h.ref)
		if err != nil {
			srv.logger.Error("delayed exchange: cannot read message back", "exchange", d.x.Name, "err", err)
			return
		}
		m = &Message{Message: *sm}
	}
	var done func(error)
	if !h.ref.IsZero() {
		ref := h.ref
		done = func(err error) {
			// Not after a store failure: the log stops taking writes,
			// and the message is routed again after the restart.
			if err == nil || errors.Is(err, errQueueFull) {
				d.released(ref)
			}
		}
	}
	d.x.vhost.Publish(&d.pub, d.x, undelayed(m), nil, done)
}

// undelayed is m as the plugin routes it when due: its x-delay header
// negated (a signedint), so that no delayed exchange holds it again, and
// the properties the broker acts on (priority, expiration) read again,
// since a message read back from the log carries only its raw properties.
func undelayed(m *Message) *Message {
	props, err := m.decodeProperties()
	if err != nil {
		return m // routed as it is: without headers nothing delays it
	}
	delay, _ := messageDelay(props.Headers)
	h := make(amqp.Table, len(props.Headers))
	for k, v := range props.Headers {
		h[k] = v
	}
	if delay <= math.MaxInt32 {
		h[headerDelay] = int32(-delay)
	} else {
		h[headerDelay] = -delay
	}
	props.Headers = h
	out := &Message{Message: store.Message{Exchange: m.Exchange, RoutingKey: m.RoutingKey, Properties: props.Append(nil),
		Body: m.Body, Persistent: m.Persistent, Meta: store.Meta{Priority: props.Priority}}}
	out.ttl, out.hasTTL = messageTTL(&props)
	return out
}

// released queues a stored message's release for the next flush. Store
// callbacks call it, and may not call into the log themselves, so one
// short-lived timer goroutine per batch of releases does.
func (d *delayedExchange) released(ref store.Ref) {
	d.relMu.Lock()
	d.releases = append(d.releases, ref)
	if len(d.releases) == 1 {
		if d.relTimer == nil {
			d.relTimer = time.AfterFunc(0, d.flushReleases)
		} else {
			d.relTimer.Reset(0)
		}
	}
	d.relMu.Unlock()
}

func (d *delayedExchange) flushReleases() {
	d.relMu.Lock()
	refs := d.releases
	d.releases = nil
	d.relMu.Unlock()
	if len(refs) > 0 {
		d.x.vhost.server.releaseDelayed(d.id, refs)
	}
}

// drop ends a deleted exchange's scheduling: its waiting messages are
// dropped, and from the log too. A nil d does nothing.
func (d *delayedExchange) drop() {
	if d == nil {
		return
	}
	d.mu.Lock()
	d.closed = true
	if d.timer != nil {
		d.timer.Stop()
	}
	d.sched = queue.NewDelayed[delayedHandle]() // the garbage collector takes the rest
	d.hot = 0
	d.mu.Unlock()
	if d.id != 0 {
		d.x.vhost.server.dropDelayed(d.id)
	}
}

// stop ends scheduling at server close, keeping the stored messages in
// the log: it waits for a firing in progress and flushes the releases
// already known, so that what was routed is not routed again.
func (d *delayedExchange) stop() {
	d.mu.Lock()
	d.closed = true
	if d.timer != nil {
		d.timer.Stop()
	}
	d.mu.Unlock()
	d.fireMu.Lock() // waits for a firing in progress
	d.flushReleases()
	d.fireMu.Unlock()
}

// start arms the timer of an exchange recovered from the store, once
// recovery is done, so that no due message enters a queue before the
// queue's own recovered messages.
func (d *delayedExchange) start() {
	d.mu.Lock()
	d.armLocked()
	d.mu.Unlock()
}

// recoverEntries schedules again a durable delayed exchange's messages
// found in the log, each at its stored due time (one already due is routed
// as soon as the server starts). The timer is armed by start.
func (d *delayedExchange) recoverEntries(es iter.Seq[store.Entry]) {
	d.mu.Lock()
	for e := range es {
		d.sched.Schedule(queue.Message[delayedHandle]{Handle: delayedHandle{ref: e.Ref}, Size: e.Size}, e.Meta.Due)
	}
	d.mu.Unlock()
}

// delayedExchanges lists the delayed exchanges of every vhost.
func (s *Server) delayedExchanges() []*delayedExchange {
	vs := s.vhostSnapshot()
	var out []*delayedExchange
	for _, v := range vs {
		v.mu.RLock()
		for _, x := range v.exchanges {
			if x.delayed != nil {
				out = append(out, x.delayed)
			}
		}
		v.mu.RUnlock()
	}
	return out
}

// delayedByID returns the durable delayed exchanges by log id (recovery).
func (s *Server) delayedByID() map[uint64]*delayedExchange {
	byID := map[uint64]*delayedExchange{}
	for _, d := range s.delayedExchanges() {
		if d.id != 0 {
			byID[d.id] = d
		}
	}
	return byID
}

// startDelayed starts the delayed exchanges' timers after recovery.
func (s *Server) startDelayed() {
	for _, d := range s.delayedExchanges() {
		d.start()
	}
}

// stopDelayed stops every delayed exchange's timer (server close).
func (s *Server) stopDelayed() {
	for _, d := range s.delayedExchanges() {
		d.stop()
	}
}

// assignDelayedID gives a new durable delayed exchange its log id before
// its definition is stored. The caller holds the vhost's defsMu.
func (s *Server) assignDelayedID(x *Exchange) error {
	if x.delayed == nil || x.delayed.id != 0 || !x.Durable {
		return nil
	}
	id, err := s.defs.nextQueueID()
	if err != nil {
		return err
	}
	x.delayed.id = id
	return nil
}

// delayedID is x's log id (0: none), stored with its definition.
func (x *Exchange) delayedID() uint64 {
	if x.delayed == nil {
		return 0
	}
	return x.delayed.id
}

// The store-facing part: a stored delayed message is held in the store
// under the exchange's id with its due time in the Meta, released once
// routed, and the id is dropped with the exchange.

// holdDelayed stores a persistent message for the durable delayed exchange
// id until due (unix ns), calling done once the store has it (after the
// covering fsync for the file store), and returns its reference. The store
// keeps its own copy of the message's fields: m itself is stored again
// with other Meta if it also reached durable queues.
func (s *Server) holdDelayed(id uint64, m *Message, due int64, done func(error)) store.Ref {
	sm := m.Message
	sm.Meta = store.Meta{Due: due, Priority: m.Priority}
	ref, _ := s.store.Put(&sm, []store.QueueID{store.QueueID(id)}, done) // a failure goes to done
	return ref
}

// releaseDelayed records that the exchange id no longer holds refs.
func (s *Server) releaseDelayed(id uint64, refs []store.Ref) {
	s.store.Release(store.QueueID(id), refs)
}

// dropDelayed records that the exchange id was deleted with what it held.
func (s *Server) dropDelayed(id uint64) { s.store.DropQueue(store.QueueID(id)) }
