package broker

import (
	"time"

	"github.com/amqp-go/amqp-go/server/store"
	"github.com/amqp-go/amqp-go/shared/amqp"
)

// deadLetter republishes e's message to the queue's dead-letter exchange
// with RabbitMQ's x-death bookkeeping, through the publish path clients use.
func (q *Queue) deadLetter(e *qentry, reason string) {
	v := q.vhost
	p := q.settings()
	if !p.hasDLX {
		return // a policy took the dead-letter exchange away meanwhile
	}
	x := v.exchange(p.dlx)
	if x == nil {
		return // RabbitMQ drops too when the exchange is missing
	}
	if e.msg == nil {
		m, err := q.loadMessage(e.ref)
		if err != nil {
			q.vhost.server.logger.Error("dead-lettering: cannot read message back", "queue", q.Name, "err", err)
			return
		}
		e.msg = m
	}
	m := e.msg
	props, err := m.decodeProperties()
	if err != nil {
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
	// rejected it on the way (publisher.cycles). Dead-letters are at most
	// once, as in RabbitMQ's classic queues: one that a full reject-publish
	// queue refuses, or that routes nowhere, is lost.
	v.Publish(&publisher{deaths: headers["x-death"].([]any)}, x, dm, nil, nil)
}
