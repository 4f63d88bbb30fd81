package broker

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"
	"sync"

	"github.com/amqp-go/amqp-go/server/security"
	"github.com/amqp-go/amqp-go/shared/amqp"
)

// VHost is a virtual host: a namespace of exchanges and queues.
type VHost struct {
	name   string
	server *Server

	// defsMu serialises definition changes (Apply), store write included:
	// the maps and the bindings change only under it, so a holder reads
	// them without mu. It is taken before mu, never while holding it.
	defsMu sync.Mutex
	// policyMu serialises rounds of reapplyPolicies; taken before defsMu.
	policyMu sync.Mutex
	// mu guards the name maps: writers hold defsMu too and take mu only
	// for the map update; lookups take mu shared. Bindings live under each
	// exchange's lock; the lock order is defsMu, vhost.mu, exchange.mu,
	// queue.mu, with dests.mu a leaf inside exchange.mu.
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
	vp := s.policiesOf(name) // a restart's stored policies apply to amq.* too
	for _, x := range v.exchanges {
		x.setPolicy(vp.exchangePolicyFor(x.Name))
	}
	return v
}

// addExchange names x in v and ties it to v's destination index. The
// caller holds v.defsMu and v.mu, or has v to itself (creation).
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

// passiveExchange answers a passive exchange.declare: the exchange must
// exist.
func (v *VHost) passiveExchange(m *amqp.ExchangeDeclare) error {
	if m.Exchange == "" || m.Exchange == "amq.default" {
		return protoErr(amqp.AccessRefused, m, "operation not permitted on the default exchange")
	}
	if v.exchange(m.Exchange) == nil {
		return errNoExchange(m, v.name, m.Exchange)
	}
	return nil
}

// declareExchange creates an exchange or checks that an existing one is
// equivalent (Apply). A redeclare takes only v.mu shared.
func (v *VHost) declareExchange(ch *DefChange, o *applyOpts) error {
	m := ch.method()
	if ch.Exchange == "" || ch.Exchange == "amq.default" {
		return protoErr(amqp.AccessRefused, m, "operation not permitted on the default exchange")
	}
	if !validKind(ch.Type) {
		return protoErr(amqp.CommandInvalid, m, "unknown exchange type '%s'", ch.Type)
	}
	if err := o.check(m, security.Configure, resExchange, ch.Exchange); err != nil {
		return err
	}
	if x := v.exchange(ch.Exchange); x != nil {
		return x.equivalent(ch, v.name)
	}
	if r := v.server.replicates(o); r != nil && !ch.AutoDelete {
		// Checked here, where the client's permissions are known, and
		// made by every member as it applies the change (without v.defsMu,
		// which that apply takes).
		if err := v.checkNewExchange(ch, o, m); err != nil {
			return err
		}
		return v.server.replicateExchange(r, v, ch)
	}
	v.defsMu.Lock()
	defer v.defsMu.Unlock()
	if x := v.exchanges[ch.Exchange]; x != nil {
		return x.equivalent(ch, v.name)
	}
	if !o.stored { // what the store holds was accepted once: keep it
		if err := v.checkNewExchange(ch, o, m); err != nil {
			return err
		}
	}
	x := newExchange(ch.Exchange, ch.Type, ch.Durable, ch.AutoDelete, ch.Internal, ch.Arguments)
	x.setPolicy(v.server.policiesOf(v.name).exchangePolicyFor(x.Name))
	if o.stored && x.delayed != nil {
		x.delayed.id = o.id
	}
	if !o.stored {
		if err := v.server.persistExchange(m, v, x); err != nil {
			return err
		}
	}
	v.mu.Lock()
	v.addExchange(x)
	v.mu.Unlock()
	return nil
}

// checkQuorumDeclare refuses what a quorum queue cannot be, with
// RabbitMQ's texts and in its order: auto-delete, exclusive, transient.
func (v *VHost) checkQuorumDeclare(ch *DefChange, m amqp.Method, name string) error {
	invalid := func(prop string) error {
		return protoErr(amqp.PreconditionFailed, m, "invalid property '%s' for queue '%s' in vhost '%s'", prop, name, v.name)
	}
	switch {
	case ch.AutoDelete:
		return invalid("auto-delete")
	case ch.Exclusive:
		return invalid("exclusive-owner")
	case !ch.Durable:
		return invalid("non-durable")
	}
	return nil
}

// checkNewExchange checks a declaration of a new exchange: its name,
// its arguments and the permissions its alternate exchange needs.
func (v *VHost) checkNewExchange(ch *DefChange, o *applyOpts, m amqp.Method) error {
	if reservedName(ch.Exchange) {
		return protoErr(amqp.AccessRefused, m, "exchange name '%s' contains reserved prefix 'amq.*'", ch.Exchange)
	}
	if err := checkExchangeArgs(m, v.name, ch.Exchange, ch.Arguments); err != nil {
		return err
	}
	if ae, ok := asText(ch.Arguments[argAlternate]); ok {
		// RabbitMQ: read on the new exchange, write on its alternate.
		if err := o.check(m, security.Read, resExchange, ch.Exchange); err != nil {
			return err
		}
		if err := o.check(m, security.Write, resExchange, ae); err != nil {
			return err
		}
	}
	if ch.Type == kindDelayed {
		return checkDelayedArgs(m, ch.Arguments)
	}
	return nil
}

func (x *Exchange) equivalent(m *DefChange, vhost string) error {
	diff := func(arg string, got, cur any) error {
		return protoErr(amqp.PreconditionFailed, m.method(),
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
	// Of the arguments RabbitMQ compares only the alternate exchange, and
	// here a delayed exchange's routing type too.
	for _, k := range []string{argAlternate, argDelayedType} {
		if k == argDelayedType && x.delayed == nil {
			break
		}
		got, gok := m.Arguments[k]
		cur, cok := x.Args[k]
		if err := argEquivalent(m.method(), "exchange", x.Name, vhost, k, got, gok, cur, cok); err != nil {
			return err
		}
	}
	return nil
}

// removeExchange deletes an exchange and every binding into and out of it
// (Apply): the ones out of it are its own, the ones into it come from the
// destination index, so the cost is its bindings, not the vhost's.
func (v *VHost) removeExchange(ch *DefChange, o *applyOpts) error {
	m := ch.method()
	if ch.Exchange == "" || ch.Exchange == "amq.default" {
		return protoErr(amqp.AccessRefused, m, "operation not permitted on the default exchange")
	}
	if reservedName(ch.Exchange) {
		return protoErr(amqp.AccessRefused, m, "deletion of system exchange '%s' in vhost '%s' not allowed", ch.Exchange, v.name)
	}
	if err := o.check(m, security.Configure, resExchange, ch.Exchange); err != nil {
		return err
	}
	emptied, err := []*Exchange(nil), errReplicatesNow
	for err == errReplicatesNow {
		if r := v.server.replicates(o); r != nil {
			if x := v.exchange(ch.Exchange); x != nil && replicatedExchange(x) {
				// if-unused is judged here: bindings to queues are each
				// node's own, so members would judge it differently.
				if ch.IfUnused && x.bindingCount() > 0 {
					return protoErr(amqp.PreconditionFailed, m, "exchange '%s' in vhost '%s' in use", ch.Exchange, v.name)
				}
				return v.server.replicateExchange(r, v, &DefChange{Kind: ExchangeDelete, Exchange: ch.Exchange})
			}
		}
		emptied, err = v.removeExchangeDef(ch, o, m)
	}
	for _, src := range emptied {
		v.autoDeleteExchange(src)
	}
	return err
}

// removeExchangeDef is removeExchange under v.defsMu; it returns the
// auto-delete sources the delete left without bindings.
func (v *VHost) removeExchangeDef(ch *DefChange, o *applyOpts, m amqp.Method) ([]*Exchange, error) {
	v.defsMu.Lock()
	defer v.defsMu.Unlock()
	x := v.exchanges[ch.Exchange]
	if x == nil {
		return nil, errNoExchange(m, v.name, ch.Exchange)
	}
	if o.exchange != nil && x != o.exchange {
		return nil, nil // gone already; this is another of its name
	}
	if v.server.replicates(o) != nil && replicatedExchange(x) {
		return nil, errReplicatesNow // the cluster's log declared it meanwhile
	}
	if ch.IfUnused && x.bindingCount() > 0 {
		return nil, protoErr(amqp.PreconditionFailed, m, "exchange '%s' in vhost '%s' in use", ch.Exchange, v.name)
	}
	if x.Durable && !o.stored {
		bs := append(x.bindingList(), v.dests.list(destKey{x: x})...)
		if err := v.storeOutcome(m, o, v.server.forgetExchange(v, x, bs)); err != nil {
			return nil, err
		}
	}
	v.mu.Lock()
	delete(v.exchanges, ch.Exchange)
	v.mu.Unlock()
	x.markDeleted()
	x.delayed.drop() // its waiting messages go with it
	_, emptied := unbindTaken(v.dests.take(destKey{x: x}))
	return emptied, nil
}

// passiveQueue answers a passive queue.declare: the queue must exist and
// be c's to use.
func (v *VHost) passiveQueue(m *amqp.QueueDeclare, c *conn) (*Queue, error) {
	q := v.queue(m.Queue)
	if q == nil {
		return nil, errNoQueue(m, v.name, m.Queue)
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

// declareQueue creates a queue or checks an existing one, returning it
// (Apply). A redeclare takes only v.mu shared.
func (v *VHost) declareQueue(ch *DefChange, o *applyOpts) (*Queue, error) {
	if o.defaultQueueType {
		v.withDefaultQueueType(ch)
	}
	m := ch.method()
	name := ch.Queue
	if name == "" && isQuorum(ch.Arguments) {
		return nil, protoErr(amqp.PreconditionFailed, m, "Cannot declare a server-named queue for type rabbit_quorum_queue")
	}
	if name == "" {
		name = "amq.gen-" + randomName()
	} else if reservedName(name) && !o.stored && !o.replicated {
		return nil, protoErr(amqp.AccessRefused, m, "queue name '%s' contains reserved prefix 'amq.*'", name)
	}
	if err := o.check(m, security.Configure, resQueue, name); err != nil {
		return nil, err
	}
	if q := v.queue(name); q != nil {
		return q, q.redeclared(ch, o, v.name)
	}
	if r := v.server.replicates(o); r != nil && isQuorum(ch.Arguments) {
		// Checked here, where the client's permissions are known, and
		// made by every member, with its Raft group, as it applies the
		// change (without v.defsMu, which that apply takes).
		if _, err := v.checkNewQueue(ch, o, m, name); err != nil {
			return nil, err
		}
		return v.declareQuorumReplicated(r, ch, name)
	}
	if r := v.server.replicates(o); r != nil && !isQuorum(ch.Arguments) {
		// The same, for a classic queue homed here.
		if _, err := v.checkNewQueue(ch, o, m, name); err != nil {
			return nil, err
		}
		return v.declareClassicReplicated(r, ch, o, name)
	}
	v.defsMu.Lock()
	defer v.defsMu.Unlock()
	if q := v.queues[name]; q != nil {
		if o.home != nil && q.homeOf() == nil && q.remote == nil && q.quorum == nil && o.home.id == v.server.selfID() {
			// Recovered from this node's store, which did not mark it,
			// before the cluster's log declared it again: it is the
			// cluster's, homed here.
			q.home.Store(o.home)
			if err := v.server.persistHome(v, q); err != nil {
				v.server.logger.Warn("cluster: a classic queue's home was not stored", "vhost", v.name, "queue", name, "err", err)
			}
		}
		return q, q.redeclared(ch, o, v.name)
	}
	var owner *conn
	if ch.Exclusive {
		owner = o.conn
		if o.owner != nil {
			owner = o.owner
		}
	}
	policy, err := v.checkNewQueue(ch, o, m, name)
	if err != nil {
		return nil, err
	}
	ap := v.server.policiesOf(v.name).queuePolicyFor(name, ch.Arguments, policy)
	if o.quorumGroup != 0 {
		if !policy.quorum {
			return nil, protoErr(amqp.InternalError, m, "queue '%s' in vhost '%s': a replicated declaration of a queue that is not a quorum queue", name, v.name)
		}
		q, err := newQuorumQueue(v, name, ch.Arguments, policy, ap, o.quorumGroup, o.quorumMembers, o.quorumSize)
		if err != nil {
			return nil, protoErr(amqp.InternalError, m, "quorum queue '%s' in vhost '%s': %v", name, v.name, err)
		}
		v.mu.Lock()
		v.queues[name] = q
		v.mu.Unlock()
		return q, nil
	}
	if o.home != nil && o.home.id != v.server.selfID() {
		if policy.quorum {
			return nil, protoErr(amqp.InternalError, m, "queue '%s' in vhost '%s': a replicated classic declaration of a quorum queue", name, v.name)
		}
		q := newRemoteQueue(v, name, ch, policy, ap, o.home)
		v.mu.Lock()
		v.queues[name] = q
		v.mu.Unlock()
		return q, nil
	}
	q := newQueue(v, name, ch.Durable, ch.Exclusive, ch.AutoDelete, ch.Arguments, owner, policy, ap)
	if o.home != nil {
		q.home.Store(o.home)
	}
	if o.stored {
		q.id = o.id
	} else if err := v.server.persistQueue(m, v, q); err != nil {
		q.markDeleted()
		return nil, err
	}
	v.mu.Lock()
	v.queues[name] = q
	v.mu.Unlock()
	if owner != nil {
		owner.addExclusive(q)
	}
	// Every queue is bound to the default exchange by its name; routing
	// there is a map lookup, so no binding object is kept.
	return q, nil
}

// checkNewQueue checks the declaration of a new queue (the permissions
// its dead-letter exchange needs, its arguments, what a quorum queue
// cannot be, the vhost's queue limit) and returns its policy.
func (v *VHost) checkNewQueue(ch *DefChange, o *applyOpts, m amqp.Method, name string) (queuePolicy, error) {
	if dlx, ok := asText(ch.Arguments[argDLX]); ok && !o.stored {
		// RabbitMQ: read on the new queue, write on its dead-letter
		// exchange.
		if err := o.check(m, security.Read, resQueue, name); err != nil {
			return queuePolicy{}, err
		}
		if err := o.check(m, security.Write, resExchange, dlx); err != nil {
			return queuePolicy{}, err
		}
	}
	policy, err := parsePolicy(m, v.name, name, ch.Arguments)
	if err != nil {
		return queuePolicy{}, err
	}
	if policy.quorum {
		if err := v.checkQuorumDeclare(ch, m, name); err != nil {
			return queuePolicy{}, err
		}
	}
	if !o.stored && !o.replicated {
		if err := v.checkQueueLimit(m, name); err != nil {
			return queuePolicy{}, err
		}
	}
	return policy, nil
}

// redeclared checks a declare of existing q (by o.conn) and counts it as
// a use. One from the cluster's log (a declaration applied twice, a
// snapshot's) does not ask whether a remote queue's home node is up: the
// node asked judged that, and every member must reach the same verdict.
func (q *Queue) redeclared(ch *DefChange, o *applyOpts, vhost string) error {
	m := ch.method()
	if !o.replicated && q.isUnavailable() {
		return errUnavailable(m, q)
	}
	if o.replicated {
		// The log's (a declaration proposed again, or a snapshot's): the
		// node that proposed it judged its owner.
		q.touch()
		return q.equivalent(ch, vhost)
	}
	if err := q.checkOwner(o.conn, m); err != nil {
		return err
	}
	q.touch()
	return q.equivalent(ch, vhost)
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

// removeQueue deletes a queue (Apply) with its bindings, found in the
// destination index (the cost is its own bindings), and its consumers,
// returning how many ready messages it dropped. A queue that does not
// exist is no error: RabbitMQ's delete is idempotent.
func (v *VHost) removeQueue(ch *DefChange, o *applyOpts) (int, error) {
	if err := o.check(ch.method(), security.Configure, resQueue, ch.Queue); err != nil {
		return 0, err
	}
	q, emptied, err := (*Queue)(nil), []*Exchange(nil), errReplicatesNow
	for err == errReplicatesNow {
		if r := v.server.replicates(o); r != nil {
			if rq := v.queue(ch.Queue); rq != nil && replicatedQueue(rq) {
				if err := rq.checkOwner(o.conn, ch.method()); err != nil {
					return 0, err
				}
				if rq.remote != nil && rq.isUnavailable() {
					return 0, rq.errHomeDown(ch.method()) // RabbitMQ's too: the home node must take part
				}
				return v.removeQuorumReplicated(r, ch, rq)
			}
		}
		q, emptied, err = v.removeQueueDef(ch, o)
	}
	if q == nil || err != nil {
		return 0, err
	}
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

// removeQueueDef is removeQueue under v.defsMu: it takes the queue out of
// the maps and the bindings, returning it (nil if there was none) and the
// auto-delete exchanges left without bindings.
func (v *VHost) removeQueueDef(ch *DefChange, o *applyOpts) (*Queue, []*Exchange, error) {
	m := ch.method()
	v.defsMu.Lock()
	defer v.defsMu.Unlock()
	q := v.queues[ch.Queue]
	if q == nil || o.queue != nil && q != o.queue {
		return nil, nil, nil
	}
	if v.server.replicates(o) != nil && replicatedQueue(q) {
		return nil, nil, errReplicatesNow // the cluster's log declared it meanwhile
	}
	if o.queue == nil && !o.replicated {
		if err := q.checkOwner(o.conn, m); err != nil {
			return nil, nil, err
		}
	}
	if ch.IfUnused || ch.IfEmpty {
		msgs, consumers := q.counts()
		if ch.IfUnused && consumers > 0 {
			return nil, nil, protoErr(amqp.PreconditionFailed, m, "queue '%s' in vhost '%s' in use", q.Name, v.name)
		}
		if ch.IfEmpty && msgs > 0 {
			return nil, nil, protoErr(amqp.PreconditionFailed, m, "queue '%s' in vhost '%s' not empty", q.Name, v.name)
		}
	}
	if q.id != 0 && !o.stored {
		if err := v.storeOutcome(m, o, v.server.forgetQueue(v, q, v.dests.list(destKey{q: q}))); err != nil {
			return nil, nil, err
		}
	}
	v.mu.Lock()
	delete(v.queues, q.Name)
	v.mu.Unlock()
	_, emptied := unbindTaken(v.dests.take(destKey{q: q}))
	return q, emptied, nil
}

// randomName returns 22 URL-safe random characters, as RabbitMQ's
// server-named queues and consumer tags carry.
func randomName() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}
