package broker

import (
	"errors"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/amqp-go/amqp-go/server/queue"
	"github.com/amqp-go/amqp-go/server/store"
	"github.com/amqp-go/amqp-go/shared/amqp"
)

// publisher is one source of publishes (a channel, one dead-lettering): the
// buffers routing reuses from one message to the next and the default
// exchange's queue cache. It serves one goroutine at a time; the zero value
// is ready.
type publisher struct {
	route  routeScratch
	queues []*Queue
	// storeIDs is putMessage's scratch for the durable queues' ids.
	storeIDs []store.QueueID
	// qcache resolves default-exchange routing keys without vhost.mu.
	qcache map[string]*Queue
	// deaths is a dead-letter's x-death, newest first (nil for a client's
	// publish): the queues it would reach round a cycle are skipped (see
	// cycles).
	deaths []any
	// now is the time of the publish on queue.Now's clock, which its
	// queues take as the push's (a connection's reader sets it from its
	// clock read per socket read); 0: Publish reads the clock, once for
	// all the queues.
	now int64
}

// cycles reports whether a dead-letter reaching q would close a cycle of
// dead-letterings in which no client rejected it, as RabbitMQ's
// rabbit_dead_letter:is_cycle: it is not delivered there, so that a message
// expiring or overflowing round a cycle (its own queue the shortest) does
// not loop for ever.
func (p *publisher) cycles(q *Queue) bool {
	for _, d := range p.deaths {
		t, ok := d.(amqp.Table)
		if !ok || t["reason"] == "rejected" {
			return false
		}
		if t["queue"] == q.Name {
			return true
		}
	}
	return false
}

// PublishOutcome is what became of a published message.
type PublishOutcome struct {
	// Queues is how many queues took the message (a direct reply-to
	// delivery counts as one).
	Queues int
	// Unroutable: nothing matched, alternate exchanges included. A message
	// that matched only full reject-publish queues is refused, not
	// unroutable.
	Unroutable bool
	// Congested, if set, is closed once the backlog of a queue the message
	// went to has halved: a client's publisher pauses until then.
	Congested <-chan struct{}
}

// Publish is the one way into queues, for client publishes and
// dead-letters alike. It routes msg from x (the default exchange by queue
// name or to a direct reply-to consumer, any other through its bindings and
// alternate exchanges), admits it to each queue (a full reject-publish
// queue refuses it), stores it once for all of them and enqueues it, where
// each queue stamps its expiry.
//
// returned, if set (a mandatory publish), is called with msg before done
// when msg is unroutable. done, if set, is called exactly once: with nil
// once msg is as safe as the store makes it (at once if nothing stores it),
// with errQueueFull if a queue refused it (the others still have it), or
// with the store's error.
//
// The caller holds no broker lock: routing takes vhost.mu (shared) for
// lookups p's cache misses and for alternate exchanges, then each exchange's
// and each queue's lock in turn.
func (v *VHost) Publish(p *publisher, x *Exchange, msg *Message, returned func(*Message), done func(error)) PublishOutcome {
	qs := p.queues[:0]
	if x.Name == "" {
		if q := p.queueNamed(v, msg.RoutingKey); q != nil {
			qs = append(qs, q)
		} else if strings.HasPrefix(msg.RoutingKey, replyPrefix) && v.server.deliverReply(msg) {
			if done != nil {
				done(nil)
			}
			return PublishOutcome{Queues: 1}
		}
	} else {
		qs = routeMessage(x, msg, qs, &p.route)
	}
	// A delayed exchange reached holds the message: not unroutable, and
	// the publisher hears once it is stored too.
	delayed := len(p.route.delayed) > 0
	if delayed {
		done = p.scheduleDelayed(msg, done)
	}
	return v.enqueue(p, qs, msg, delayed, returned, done)
}

// enqueue is Publish once msg is routed to qs (p.queues' storage, which it
// clears): admission, the store, the pushes and the publisher's outcome.
// delayed: a delayed exchange holds msg too, so it is not unroutable. A
// message another member routed to one of this node's queues comes in
// here (pushOne).
func (v *VHost) enqueue(p *publisher, qs []*Queue, msg *Message, delayed bool, returned func(*Message), done func(error)) PublishOutcome {
	// Admission: a full reject-publish queue refuses the message (and a
	// dead-letter's cycle never sees it); the other queues still get it.
	refused, limited := false, false
	var refusedDLX []*Queue // reject-publish-dlx queues that refused it
	kept := qs[:0]
	for _, q := range qs {
		switch {
		case p.deaths != nil && p.cycles(q):
		case q.remote != nil && !q.remote.current().reachable():
			// Its home node is down: as RabbitMQ, the message is not
			// routed there (a mandatory one comes back if no other queue
			// took it), rather than nacked.
		case q.full(msg):
			refused = true
			if st := q.settings(); st.rejectPublishDLX && st.hasDLX {
				refusedDLX = append(refusedDLX, q)
			}
		default:
			kept = append(kept, q)
			limited = limited || q.limited()
		}
	}
	// A quorum queue of the cluster's confirms once its group has the
	// message: the publisher hears once the store and each of them has
	// answered.
	var replicated func(error)
	if done != nil {
		if n := countReplicated(kept); n > 0 {
			done = joinOutcomes(done, n+1)
			replicated = done
		}
	}
	var out PublishOutcome
	if len(kept) == 0 && !refused && !delayed {
		out.Unroutable = true
		if returned != nil {
			returned(msg)
		}
	}
	stored := done
	var late *lateAdmission
	switch {
	case refused:
		stored = nil // the publisher hears a nack whatever the store says
	case done != nil && len(kept) > 0:
		// The publisher hears once the store has answered and every
		// queue has the message, so that a client acting on the confirm
		// (a basic.get on another connection) finds it there; a queue
		// that filled since its check refuses at push, and the publisher
		// hears a nack.
		late = &lateAdmission{done: done}
		late.pending.Store(2)
		stored = late.stored
	}
	// Put first: it gives msg the log reference each queue entry keeps.
	v.server.putMessage(p, msg, kept, stored)
	v.server.pushHook.run()
	refusedLate := false
	now := p.now
	if now == 0 && len(kept) > 0 {
		now = queue.Now()
	}
	for _, q := range kept {
		wait, r := q.push(msg, now, replicated)
		if wait != nil && out.Congested == nil {
			out.Congested = wait
		}
		refusedLate = refusedLate || r
	}
	if late != nil {
		late.pushed(refusedLate)
	}
	// A reject-publish-dlx queue dead-letters what it refused (x-death
	// reason maxlen), before the publisher hears its nack.
	for _, q := range refusedDLX {
		q.deadLetter(&qentry{msg: msg}, queue.ReasonMaxLen.String(), nil)
	}
	if refused && done != nil {
		done(errQueueFull)
	}
	out.Queues = len(kept)
	clear(qs)
	p.queues = qs[:0]
	return out
}

// lookupCacheMax bounds the per-publisher and per-channel name caches (RPC
// clients publish to many reply queues); a full cache is simply dropped.
const lookupCacheMax = 1024

// queueNamed looks a queue up for default-exchange routing through p's
// cache, so that a channel's publishes take no lock shared with others.
func (p *publisher) queueNamed(v *VHost, name string) *Queue {
	if q := p.qcache[name]; q != nil && !q.gone.Load() {
		return q
	}
	q := v.queue(name)
	if q != nil {
		if p.qcache == nil || len(p.qcache) >= lookupCacheMax {
			p.qcache = map[string]*Queue{}
		}
		p.qcache[name] = q
	}
	return q
}

// countReplicated counts the replicated quorum queues, and the classic
// queues homed on other nodes, among qs: their confirms come later.
func countReplicated(qs []*Queue) int {
	n := 0
	for _, q := range qs {
		if q.quorum != nil || q.remote != nil {
			n++
		}
	}
	return n
}

// joinOutcomes returns a done to be called n times, which calls done once
// with the first error (errQueueFull before others), or nil.
func joinOutcomes(done func(error), n int) func(error) {
	var mu sync.Mutex
	var first error
	return func(err error) {
		mu.Lock()
		if err != nil && (first == nil || errors.Is(err, errQueueFull)) {
			first = err
		}
		n--
		last, e := n == 0, first
		mu.Unlock()
		if last {
			done(e)
		}
	}
}

// quorumOutcome is a quorum queue push's outcome as a publisher hears it.
func quorumOutcome(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, queue.ErrRejected):
		return errQueueFull
	default:
		return err
	}
}

// lateAdmission holds back a publish's confirm until both the store and the
// pushes into the queues have answered: the store may answer first (at
// once for a transient message, or from another goroutine's fsync), and
// a reject-publish queue that filled between the admission check and the
// push refuses the message there, whose publisher must hear a nack rather
// than the store's ack.
type lateAdmission struct {
	done    func(error)
	pending atomic.Int32
	refused atomic.Bool
	err     error // the store's, written before its pending decrement
}

func (a *lateAdmission) stored(err error) {
	a.err = err
	a.finish()
}

func (a *lateAdmission) pushed(refused bool) {
	a.refused.Store(refused)
	a.finish()
}

func (a *lateAdmission) finish() {
	if a.pending.Add(-1) != 0 {
		return
	}
	if a.refused.Load() {
		a.done(errQueueFull)
		return
	}
	a.done(a.err)
}
