package broker

import (
	"sync"
	"time"

	"github.com/amqp-go/amqp-go/server/store"
	"github.com/amqp-go/amqp-go/shared/amqp"
)

// deadLetter republishes e's message to the queue's dead-letter exchange
// with RabbitMQ's x-death bookkeeping, through the publish path clients use.
// confirmed, if set (at least once: queue.DeadLetterHost), is called once:
// true once every queue it reached has it as a publisher's confirm says,
// or when it has nowhere to go any more; false when it routed nowhere,
// was refused or was not stored (the queue sends it again later).
func (q *Queue) deadLetter(e *qentry, reason string, confirmed func(ok bool)) {
	answer := func(ok bool) {
		if confirmed != nil {
			confirmed(ok)
		}
	}
	v := q.vhost
	p := q.settings()
	if !p.hasDLX {
		answer(true) // a policy took the dead-letter exchange away meanwhile
		return
	}
	x := v.exchange(p.dlx)
	if x == nil {
		// RabbitMQ drops too when the exchange is missing; at least once,
		// it keeps the message until the exchange is back.
		answer(false)
		return
	}
	if e.msg == nil {
		m, err := q.loadMessage(e.ref)
		if err != nil {
			q.vhost.server.logger.Error("dead-lettering: cannot read message back", "queue", q.Name, "err", err)
			answer(true)
			return
		}
		e.msg = m
	}
	m := e.msg
	props, err := m.decodeProperties()
	if err != nil {
		answer(true)
		return
	}
	headers := amqp.Table{}
	for k, val := range props.Headers {
		headers[k] = val
	}
	deaths, _ := headers["x-death"].([]any)
	var count int64 = 1
	kept := make([]any, 0, len(deaths)+1)
	for _, d := range deaths {
		t, ok := d.(amqp.Table)
		if ok && t["queue"] == q.Name && t["reason"] == reason {
			if c, ok := asInt(t["count"]); ok {
				count = c + 1
			}
			continue
		}
		kept = append(kept, d)
	}
	death := amqp.Table{
		"count": count, "reason": reason, "queue": q.Name, "time": time.Now().UTC().Truncate(time.Second),
		"exchange": m.Exchange, "routing-keys": []any{m.RoutingKey},
	}
	if props.Flags&amqp.FlagExpiration != 0 {
		death["original-expiration"] = props.Expiration
		props.Expiration = ""
		props.Flags &^= amqp.FlagExpiration
	}
	headers["x-death"] = append([]any{death}, kept...)
	if _, ok := headers["x-first-death-reason"]; !ok {
		headers["x-first-death-reason"] = reason
		headers["x-first-death-queue"] = q.Name
		headers["x-first-death-exchange"] = m.Exchange
	}
	props.Headers = headers
	props.Flags |= amqp.FlagHeaders
	key := m.RoutingKey
	if p.hasDLRK {
		key = p.dlrk
	}
	dm := &Message{Message: store.Message{Exchange: p.dlx, RoutingKey: key, Properties: props.Append(nil),
		Body: m.Body, Persistent: m.Persistent, Meta: store.Meta{Priority: m.Priority}}}
	// A message expiring or overflowing round a cycle back into a queue it
	// died in would loop for ever; RabbitMQ drops it there unless a client
	// rejected it on the way (publisher.cycles). Without confirmed,
	// dead-letters are at most once, as in RabbitMQ's classic queues: one
	// that a full reject-publish queue refuses, or that routes nowhere, is
	// lost.
	pub := &publisher{deaths: headers["x-death"].([]any)}
	if confirmed == nil {
		v.Publish(pub, x, dm, nil, nil)
		return
	}
	// The outcome and the store's answer, in either order (the store may
	// answer before Publish returns).
	var mu sync.Mutex
	stored, routed, answered := false, false, 0
	settle := func() {
		if answered++; answered == 2 {
			confirmed(stored && routed)
		}
	}
	out := v.Publish(pub, x, dm, nil, func(err error) {
		mu.Lock()
		defer mu.Unlock()
		stored = err == nil
		settle()
	})
	mu.Lock()
	defer mu.Unlock()
	routed = !out.Unroutable
	settle()
}
