package broker

import "strings"

// publisher is one source of publishes (a channel, one dead-lettering): the
// buffers routing reuses from one message to the next and the default
// exchange's queue cache. It serves one goroutine at a time; the zero value
// is ready.
type publisher struct {
	route  routeScratch
	queues []*Queue
	// qcache resolves default-exchange routing keys without vhost.mu.
	qcache map[string]*Queue
	// except is a queue the messages may not reach: a dead-lettering
	// queue's own, so that an expired message cannot cycle back for ever.
	except *Queue
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
	// Admission: a full reject-publish queue refuses the message (and the
	// excepted queue never sees it); the other queues still get it.
	refused := false
	kept := qs[:0]
	for _, q := range qs {
		switch {
		case q == p.except:
		case q.full():
			refused = true
		default:
			kept = append(kept, q)
		}
	}
	var out PublishOutcome
	if len(kept) == 0 && !refused {
		out.Unroutable = true
		if returned != nil {
			returned(msg)
		}
	}
	stored := done
	if refused {
		stored = nil // the publisher hears a nack whatever the store says
	}
	// Put first: it gives msg the log reference each queue entry keeps.
	v.server.store.Put(msg, kept, stored)
	for _, q := range kept {
		if wait := q.push(msg); wait != nil && out.Congested == nil {
			out.Congested = wait
		}
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
