package broker

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"
	"sync"

	"github.com/amqp-go/amqp-go/shared/amqp"
)

// VHost is a virtual host: a namespace of exchanges and queues.
type VHost struct {
	name   string
	server *Server

	// mu guards the name maps. Bindings live under each exchange's lock;
	// the lock order is vhost.mu, then exchange.mu, then queue.mu, with
	// dests.mu a leaf inside exchange.mu.
	mu        sync.RWMutex
	exchanges map[string]*Exchange
	queues    map[string]*Queue
	// dests indexes every binding by its destination, for deletes.
	dests destIndex
}

func newVHost(s *Server, name string) *VHost {
	v := &VHost{name: name, server: s, exchanges: map[string]*Exchange{}, queues: map[string]*Queue{}}
	v.addExchange(newExchange("", kindDirect, true, false, false, nil))
	for _, x := range []struct{ name, kind string }{
		{"amq.direct", kindDirect}, {"amq.fanout", kindFanout}, {"amq.topic", kindTopic},
		{"amq.headers", kindHeaders}, {"amq.match", kindHeaders},
	} {
		v.addExchange(newExchange(x.name, x.kind, true, false, false, nil))
	}
	return v
}

// addExchange names x in v and ties it to v's destination index. The
// caller holds v.mu, or has v to itself (creation, recovery).
func (v *VHost) addExchange(x *Exchange) {
	x.dests = &v.dests
	x.vhost = v
	v.exchanges[x.Name] = x
}

func (v *VHost) exchange(name string) *Exchange {
	if name == "amq.default" {
		name = ""
	}
	v.mu.RLock()
	x := v.exchanges[name]
	v.mu.RUnlock()
	return x
}

func (v *VHost) queue(name string) *Queue {
	v.mu.RLock()
	q := v.queues[name]
	v.mu.RUnlock()
	return q
}

func reservedName(name string) bool { return strings.HasPrefix(name, "amq.") }

// declareExchange creates x or checks that an existing one is equivalent.
func (v *VHost) declareExchange(m *amqp.ExchangeDeclare) error {
	if m.Exchange == "" || m.Exchange == "amq.default" {
		return protoErr(amqp.AccessRefused, m, "operation not permitted on the default exchange")
	}
	if m.Passive {
		if v.exchange(m.Exchange) == nil {
			return errNoExchange(m, v.name, m.Exchange)
		}
		return nil
	}
	if !validKind(m.Type) {
		return protoErr(amqp.CommandInvalid, m, "unknown exchange type '%s'", m.Type)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if x := v.exchanges[m.Exchange]; x != nil {
		return x.equivalent(m, v.name)
	}
	if reservedName(m.Exchange) {
		return protoErr(amqp.AccessRefused, m, "exchange name '%s' contains reserved prefix 'amq.*'", m.Exchange)
	}
	if err := checkExchangeArgs(m, v.name, m.Exchange, m.Arguments); err != nil {
		return err
	}
	x := newExchange(m.Exchange, m.Type, m.Durable, m.AutoDelete, m.Internal, m.Arguments)
	if err := v.server.persistExchange(m, v, x); err != nil {
		return err
	}
	v.addExchange(x)
	return nil
}

func (x *Exchange) equivalent(m *amqp.ExchangeDeclare, vhost string) error {
	diff := func(arg string, got, cur any) error {
		return protoErr(amqp.PreconditionFailed, m,
			"inequivalent arg '%s' for exchange '%s' in vhost '%s': received '%v' but current is '%v'",
			arg, x.Name, vhost, got, cur)
	}
	switch {
	case m.Type != x.Kind:
		return diff("type", m.Type, x.Kind)
	case m.Durable != x.Durable:
		return diff("durable", m.Durable, x.Durable)
	case m.AutoDelete != x.AutoDelete:
		return diff("auto_delete", m.AutoDelete, x.AutoDelete)
	case m.Internal != x.Internal:
		return diff("internal", m.Internal, x.Internal)
	}
	// Of the arguments RabbitMQ compares only the alternate exchange.
	got, gok := m.Arguments[argAlternate]
	cur, cok := x.Args[argAlternate]
	return argEquivalent(m, "exchange", x.Name, vhost, argAlternate, got, gok, cur, cok)
}

// deleteExchange removes x and every binding into and out of it: the ones
// out of it are its own, the ones into it come from the destination index,
// so the cost is x's bindings, not the vhost's.
func (v *VHost) deleteExchange(m *amqp.ExchangeDelete) error {
	if m.Exchange == "" || m.Exchange == "amq.default" {
		return protoErr(amqp.AccessRefused, m, "operation not permitted on the default exchange")
	}
	if reservedName(m.Exchange) {
		return protoErr(amqp.AccessRefused, m, "deletion of system exchange '%s' in vhost '%s' not allowed", m.Exchange, v.name)
	}
	v.mu.Lock()
	x := v.exchanges[m.Exchange]
	if x == nil {
		v.mu.Unlock()
		return errNoExchange(m, v.name, m.Exchange)
	}
	if m.IfUnused && x.bindingCount() > 0 {
		v.mu.Unlock()
		return protoErr(amqp.PreconditionFailed, m, "exchange '%s' in vhost '%s' in use", m.Exchange, v.name)
	}
	delete(v.exchanges, m.Exchange)
	own := x.markDeleted()
	into, emptied := unbindTaken(v.dests.take(destKey{x: x}))
	v.server.forgetExchange(v, x, append(own, into...))
	v.mu.Unlock()
	for _, src := range emptied {
		v.autoDeleteExchange(src)
	}
	return nil
}

// autoDeleteExchange deletes an auto-delete exchange whose last binding went.
func (v *VHost) autoDeleteExchange(x *Exchange) {
	if x.bindingCount() > 0 {
		return
	}
	_ = v.deleteExchange(&amqp.ExchangeDelete{Exchange: x.Name, IfUnused: true})
}

// declareQueue creates a queue or checks an existing one, returning it.
func (v *VHost) declareQueue(m *amqp.QueueDeclare, c *conn) (*Queue, error) {
	name := m.Queue
	if m.Passive {
		q := v.queue(name)
		if q == nil {
			return nil, errNoQueue(m, v.name, name)
		}
		if q.isUnavailable() {
			return nil, errUnavailable(m, q)
		}
		if err := q.checkOwner(c, m); err != nil {
			return nil, err
		}
		q.touch() // RabbitMQ counts a passive redeclare as a use too
		return q, nil
	}
	if name == "" {
		name = "amq.gen-" + randomName()
	} else if reservedName(name) {
		return nil, protoErr(amqp.AccessRefused, m, "queue name '%s' contains reserved prefix 'amq.*'", name)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if q := v.queues[name]; q != nil {
		if q.isUnavailable() {
			return nil, errUnavailable(m, q)
		}
		if err := q.checkOwner(c, m); err != nil {
			return nil, err
		}
		q.touch()
		return q, q.equivalent(m, v.name)
	}
	var owner *conn
	if m.Exclusive {
		owner = c
	}
	policy, err := parsePolicy(m, v.name, name, m.Arguments)
	if err != nil {
		return nil, err
	}
	q := newQueue(v, name, m.Durable, m.Exclusive, m.AutoDelete, m.Arguments, owner, policy)
	if err := v.server.persistQueue(m, v, q); err != nil {
		q.markDeleted()
		return nil, err
	}
	v.queues[name] = q
	if owner != nil {
		c.addExclusive(q)
	}
	// Every queue is bound to the default exchange by its name; routing
	// there is a map lookup, so no binding object is kept.
	return q, nil
}

// checkOwner refuses access to another connection's exclusive queue.
func (q *Queue) checkOwner(c *conn, m amqp.Method) error {
	if q.Exclusive && q.owner != c {
		return errLocked(m, q)
	}
	return nil
}

func errLocked(m amqp.Method, q *Queue) error {
	return protoErr(amqp.ResourceLocked, m,
		"cannot obtain exclusive access to locked queue '%s' in vhost '%s'. It could be originally declared on another connection or the exclusive property value does not match that of the original declaration.",
		q.Name, q.vhost.name)
}

// queueArgsChecked are the arguments whose values must match on redeclare.
var queueArgsChecked = []string{
	"x-expires", "x-message-ttl", "x-dead-letter-exchange", "x-dead-letter-routing-key",
	"x-max-length", "x-max-length-bytes", "x-max-priority", "x-overflow", "x-queue-mode", "x-queue-version",
	"x-queue-type", "x-single-active-consumer", "x-queue-master-locator", "x-queue-leader-locator",
}

func (q *Queue) equivalent(m *amqp.QueueDeclare, vhost string) error {
	diff := func(arg string, got, cur any) error {
		return protoErr(amqp.PreconditionFailed, m,
			"inequivalent arg '%s' for queue '%s' in vhost '%s': received '%v' but current is '%v'",
			arg, q.Name, vhost, got, cur)
	}
	switch {
	case m.Exclusive != q.Exclusive:
		// RabbitMQ checks exclusivity first and strictly: a lock, not an
		// inequivalence.
		return errLocked(m, q)
	case m.Durable != q.Durable:
		return diff("durable", m.Durable, q.Durable)
	case m.AutoDelete != q.AutoDelete:
		return diff("auto_delete", m.AutoDelete, q.AutoDelete)
	}
	for _, k := range queueArgsChecked {
		got, gok := m.Arguments[k]
		cur, cok := q.Args[k]
		if k == "x-queue-type" && sameQueueType(got, gok, cur, cok) {
			continue
		}
		if err := argEquivalent(m, "queue", q.Name, vhost, k, got, gok, cur, cok); err != nil {
			return err
		}
	}
	return nil
}

// argEquivalent compares argument k of a redeclare (got, if gok) with the
// current one (cur, if cok) as RabbitMQ does, for a queue or an exchange
// (kind): integers by value whatever their width, text by its bytes
// whether longstr or binary. It returns RabbitMQ's 406 or nil.
func argEquivalent(m amqp.Method, kind, name, vhost, k string, got any, gok bool, cur any, cok bool) error {
	if gok && cok {
		gt, gText := asText(got)
		ct, cText := asText(cur)
		if fieldEqual(got, cur) || gText && cText && gt == ct {
			return nil
		}
		// Both given but different: RabbitMQ quotes the bare values.
		return protoErr(amqp.PreconditionFailed, m,
			"inequivalent arg '%s' for %s '%s' in vhost '%s': received '%s' but current is '%s'",
			k, kind, name, vhost, fieldText(got), fieldText(cur))
	}
	if gok != cok {
		return protoErr(amqp.PreconditionFailed, m,
			"inequivalent arg '%s' for %s '%s' in vhost '%s': received %s but current is %s",
			k, kind, name, vhost, argText(got, gok), argText(cur, cok))
	}
	return nil
}

// sameQueueType is RabbitMQ's x-queue-type equivalence: no type and the
// string "classic" are the same classic queue, and given on both sides the
// names compare as text.
func sameQueueType(got any, gok bool, cur any, cok bool) bool {
	if gok && cok {
		g, gText := asText(got)
		c, cText := asText(cur)
		return gText && cText && g == c
	}
	v := got
	if cok {
		v = cur
	}
	s, isStr := v.(string)
	return isStr && s == queueTypeClassic
}

// argText renders an argument as RabbitMQ's equivalence errors do.
func argText(v any, ok bool) string {
	if !ok {
		return "none"
	}
	return fmt.Sprintf("the value '%v' of type '%s'", fieldText(v), fieldTypeName(v))
}

// fieldText renders a field value for error texts.
func fieldText(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case []byte:
		return string(x)
	}
	return fmt.Sprint(v)
}

// fieldTypeName is RabbitMQ's name for a field value's type.
func fieldTypeName(v any) string {
	switch v.(type) {
	case string:
		return "longstr"
	case []byte:
		return "binary"
	case bool:
		return "bool"
	case int8:
		return "byte"
	case uint8:
		return "unsignedbyte"
	case int16:
		return "short"
	case uint16:
		return "unsignedshort"
	case int32:
		return "signedint"
	case uint32:
		return "unsignedint"
	case int64, int:
		return "long"
	case float32:
		return "float"
	case float64:
		return "double"
	case amqp.Decimal:
		return "decimal"
	case amqp.Table:
		return "table"
	case []any:
		return "array"
	case nil:
		return "void"
	}
	return "timestamp"
}

// deleteQueue removes q, its bindings (found in the destination index: the
// cost is q's own bindings) and its consumers, returning how many ready
// messages it dropped.
func (v *VHost) deleteQueue(q *Queue, m *amqp.QueueDelete) (int, error) {
	if m != nil && (m.IfUnused || m.IfEmpty) {
		msgs, consumers := q.counts()
		if m.IfUnused && consumers > 0 {
			return 0, protoErr(amqp.PreconditionFailed, m, "queue '%s' in vhost '%s' in use", q.Name, v.name)
		}
		if m.IfEmpty && msgs > 0 {
			return 0, protoErr(amqp.PreconditionFailed, m, "queue '%s' in vhost '%s' not empty", q.Name, v.name)
		}
	}
	v.mu.Lock()
	if v.queues[q.Name] != q {
		v.mu.Unlock()
		return 0, nil
	}
	delete(v.queues, q.Name)
	gone, emptied := unbindTaken(v.dests.take(destKey{q: q}))
	v.server.forgetQueue(v, q, gone)
	v.mu.Unlock()
	consumers, n := q.markDeleted()
	for _, c := range consumers {
		c.ch.queueDeleted(c)
	}
	if q.owner != nil {
		q.owner.removeExclusive(q)
	}
	for _, x := range emptied {
		v.autoDeleteExchange(x)
	}
	return n, nil
}

// randomName returns 22 URL-safe random characters, as RabbitMQ's
// server-named queues and consumer tags carry.
func randomName() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}
