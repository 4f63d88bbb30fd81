package broker

import (
	"errors"
	"fmt"
	"maps"

	"github.com/amqp-go/amqp-go/server/security"
	"github.com/amqp-go/amqp-go/shared/amqp"
)

// DefKind is the kind of a definitions change.
type DefKind uint8

// The definitions changes Apply makes.
const (
	ExchangeDeclare DefKind = iota + 1
	ExchangeDelete
	QueueDeclare
	QueueDelete
	Bind
	Unbind
)

// DefChange is one change to a vhost's definitions, whoever asks for it: a
// channel method, recovery at start, the management API. Fields a kind
// does not use are ignored.
type DefChange struct {
	Kind DefKind
	// Exchange is the exchange declared or deleted, or a binding's source.
	Exchange string
	// Queue is the queue declared ("" for a server-named one) or deleted.
	Queue string
	// Destination is a binding's destination: a queue, or an exchange
	// with ToExchange. An empty queue is refused as "no previously
	// declared queue" (a channel's shortcut with nothing declared).
	Destination string
	ToExchange  bool
	// RoutingKey is a binding's key.
	RoutingKey string
	// Type is a declared exchange's type.
	Type string
	// Durable, AutoDelete, Internal (exchanges) and Exclusive (queues)
	// are a declaration's flags.
	Durable, AutoDelete, Internal, Exclusive bool
	// IfUnused and IfEmpty (queues only) are a delete's conditions.
	IfUnused, IfEmpty bool
	// Arguments are a declaration's or binding's arguments.
	Arguments amqp.Table
}

// DefResult is what Apply did.
type DefResult struct {
	// Queue is the declared queue, new or existing (QueueDeclare).
	Queue *Queue
	// Messages is how many ready messages a queue delete dropped.
	Messages int
}

// ApplyOption qualifies one Apply call.
type ApplyOption func(*applyOpts)

type applyOpts struct {
	// conn asks for the change: an exclusive queue it declares is its own,
	// and other connections' exclusive queues are refused. Nil: no
	// connection (exclusive queues are then refused too).
	conn *conn
	// stored: the definition comes from the store (recovery), so it is
	// not written again; id is a stored queue's id.
	stored bool
	id     uint64
	// replicated: the change comes from the cluster's log (every member
	// applies it), so it is made here and not replicated again.
	replicated bool
	// queue or exchange: the broker deletes this object for its own
	// reasons (owner gone, x-expires, auto-delete), not one declared
	// since under its name; ownership is not checked, and a failed store
	// write is logged and the object goes from memory all the same, since
	// no client waits to hear of it.
	queue    *Queue
	exchange *Exchange
	// authz, when set, is the channel whose user's permissions the
	// change must pass (checked where RabbitMQ checks them).
	authz *channel
	// defaultQueueType: a queue declare without x-queue-type gets the
	// vhost's default queue type, as a client's declare does.
	defaultQueueType bool
	// quorumGroup, when set, makes a quorum queue declared from the
	// cluster's log a replicated one, with its group and voters.
	quorumGroup   uint64
	quorumMembers []uint64
	quorumSize    int
	// owner, when set, owns the exclusive queue declared (ownedBy).
	owner *conn
	// home, when set, makes a classic queue declared from the cluster's
	// log a replicated one, homed there (here, or a remoteQueue).
	home *homeNode
}

// WithDefaultQueueType declares a queue as a client's queue.declare does
// (RabbitMQ 3.10's default_queue_type, vhost metadata): a durable queue
// that is neither exclusive nor auto-delete, declared without
// x-queue-type, gets its vhost's default queue type, when that is not
// classic. RabbitMQ's management API declares through a channel, so it
// does this too; recovery and definitions imports do not.
func WithDefaultQueueType() ApplyOption { return func(o *applyOpts) { o.defaultQueueType = true } }

// withDefaultQueueType is ch with its vhost's default queue type added
// to its arguments where WithDefaultQueueType says (a copy: the caller's
// table is not changed).
func (v *VHost) withDefaultQueueType(ch *DefChange) {
	if !ch.Durable || ch.Exclusive || ch.AutoDelete {
		return
	}
	if _, given := ch.Arguments["x-queue-type"]; given {
		return
	}
	t := v.server.sec.DefaultQueueType(v.name)
	if t == "" || t == queueTypeClassic {
		return
	}
	args := maps.Clone(ch.Arguments)
	if args == nil {
		args = amqp.Table{}
	}
	args["x-queue-type"] = t
	ch.Arguments = args
}

func (o *applyOpts) internal() bool { return o.queue != nil || o.exchange != nil }

// withConn makes c the connection asking for the change.
func withConn(c *conn) ApplyOption { return func(o *applyOpts) { o.conn = c } }

// fromStore applies a definition read back from the store (id: a queue's
// stored id) without writing it again.
func fromStore(id uint64) ApplyOption {
	return func(o *applyOpts) { o.stored, o.id = true, id }
}

// fromCluster applies a change from the cluster's log.
func fromCluster() ApplyOption { return func(o *applyOpts) { o.replicated = true } }

// inQuorumGroup declares a replicated quorum queue, with its group and
// the group's target size.
func inQuorumGroup(group uint64, members []uint64, size int) ApplyOption {
	return func(o *applyOpts) { o.quorumGroup, o.quorumMembers, o.quorumSize = group, members, size }
}

// homedOn declares a replicated classic queue, with its home node, as
// the metadata log's entry index does (or a snapshot of the log at index).
func homedOn(c quorumChange, index uint64) ApplyOption {
	return func(o *applyOpts) {
		o.home = &homeNode{id: c.Home, name: c.HomeName, index: index, token: c.Token, incarnation: c.Incarnation}
	}
}

// ownedBy makes c the owner of the exclusive queue a change from the
// cluster's log declares on its home node (the connection that proposed
// it there).
func ownedBy(c *conn) ApplyOption { return func(o *applyOpts) { o.owner = c } }

// onlyQueue deletes q itself, for the broker's own reasons.
func onlyQueue(q *Queue) ApplyOption { return func(o *applyOpts) { o.queue = q } }

// onlyExchange deletes x itself, for the broker's own reasons.
func onlyExchange(x *Exchange) ApplyOption { return func(o *applyOpts) { o.exchange = x } }

// Apply validates ch against v's definitions, answering a refusal with
// RabbitMQ's reply code and text, makes it in memory, and stores it when
// it changes durable definitions (before memory changes, so a failed write
// leaves memory as it was; it answers 541 INTERNAL_ERROR, or 506 while the
// disk guard suspends writes).
//
// Locking: changes of one vhost are serialised by v.defsMu, held across
// the store write; v.mu is taken, after it, only to update the maps, so
// lookups (publishing, passive declares, channel caches) never wait for
// a write. Apply must not be called holding any broker lock.
func (v *VHost) Apply(ch DefChange, opts ...ApplyOption) (DefResult, error) {
	var o applyOpts
	for _, f := range opts {
		f(&o)
	}
	switch ch.Kind {
	case ExchangeDeclare:
		return DefResult{}, v.declareExchange(&ch, &o)
	case ExchangeDelete:
		return DefResult{}, v.removeExchange(&ch, &o)
	case QueueDeclare:
		q, err := v.declareQueue(&ch, &o)
		return DefResult{Queue: q}, err
	case QueueDelete:
		n, err := v.removeQueue(&ch, &o)
		return DefResult{Messages: n}, err
	case Bind, Unbind:
		return DefResult{}, v.applyBinding(&ch, &o)
	}
	return DefResult{}, fmt.Errorf("unknown definitions change kind %d", ch.Kind)
}

// method is the AMQP method a change corresponds to, naming it in errors:
// one shared empty method of each kind, never written to (a change's
// errors need only its class and method ids), so that naming costs no
// allocation.
func (ch *DefChange) method() amqp.Method {
	switch ch.Kind {
	case ExchangeDeclare:
		return defMethods.exchangeDeclare
	case ExchangeDelete:
		return defMethods.exchangeDelete
	case QueueDeclare:
		return defMethods.queueDeclare
	case QueueDelete:
		return defMethods.queueDelete
	case Bind:
		if ch.ToExchange {
			return defMethods.exchangeBind
		}
		return defMethods.queueBind
	default:
		if ch.ToExchange {
			return defMethods.exchangeUnbind
		}
		return defMethods.queueUnbind
	}
}

// defMethods are DefChange.method's answers.
var defMethods = struct {
	exchangeDeclare, exchangeDelete, queueDeclare, queueDelete amqp.Method
	exchangeBind, queueBind, exchangeUnbind, queueUnbind       amqp.Method
}{&amqp.ExchangeDeclare{}, &amqp.ExchangeDelete{}, &amqp.QueueDeclare{}, &amqp.QueueDelete{},
	&amqp.ExchangeBind{}, &amqp.QueueBind{}, &amqp.ExchangeUnbind{}, &amqp.QueueUnbind{}}

// storeOutcome turns a store write's error into Apply's answer: a refusal
// for a client's change, a log line for the broker's own (which goes ahead
// in memory).
func (v *VHost) storeOutcome(m amqp.Method, o *applyOpts, err error) error {
	if err == nil {
		return nil
	}
	if o.internal() {
		v.server.logger.Error("definitions store delete failed", "vhost", v.name, "err", err)
		return nil
	}
	return v.server.persistErr(m, err)
}

// applyBinding adds or removes a binding. A binding between durable ends
// is stored; an auto-delete source left without bindings is deleted.
func (v *VHost) applyBinding(ch *DefChange, o *applyOpts) error {
	emptied, err := v.changeBinding(ch, o)
	if emptied != nil {
		v.autoDeleteExchange(emptied)
	}
	return err
}

// changeBinding is applyBinding under v.defsMu; it returns the source if
// an unbind left it auto-delete and unbound.
func (v *VHost) changeBinding(ch *DefChange, o *applyOpts) (*Exchange, error) {
	m := ch.method()
	// RabbitMQ's order: write on the destination, the default exchange,
	// read on the source (and on the key, for a topic source), the
	// exchanges (destination first) or the exchange then the queue, then
	// exclusive access.
	destKind := resQueue
	if ch.ToExchange {
		destKind = resExchange
	}
	if ch.ToExchange || ch.Destination != "" {
		if err := o.check(m, security.Write, destKind, ch.Destination); err != nil {
			return nil, err
		}
	}
	if ch.Exchange == "" || ch.Exchange == "amq.default" ||
		ch.ToExchange && (ch.Destination == "" || ch.Destination == "amq.default") {
		return nil, protoErr(amqp.AccessRefused, m, "operation not permitted on the default exchange")
	}
	if err := o.check(m, security.Read, resExchange, ch.Exchange); err != nil {
		return nil, err
	}
	for {
		if r := v.server.replicates(o); r != nil && v.bindingReplicates(ch) {
			// Checked here, made by every member as it applies it
			// (without v.defsMu, which that apply takes).
			if err := o.checkTopic(m, v.exchange(ch.Exchange), ch.RoutingKey); err != nil {
				return nil, err
			}
			if q := v.queue(ch.Destination); !ch.ToExchange && q != nil {
				if err := q.checkOwner(o.conn, m); err != nil {
					return nil, err
				}
			}
			return nil, v.server.replicateExchange(r, v, ch)
		}
		emptied, err := v.changeBindingHere(ch, o, m)
		if err != errReplicatesNow {
			return emptied, err
		}
	}
}

// bindingReplicates reports whether ch, a binding made or removed, goes
// through the cluster: its source and destination are on every member.
func (v *VHost) bindingReplicates(ch *DefChange) bool {
	src := v.exchange(ch.Exchange)
	if ch.ToExchange {
		return replicatedBinding(src, v.exchange(ch.Destination))
	}
	return replicatedQueueBinding(src, v.queue(ch.Destination))
}

// changeBindingHere makes or removes ch's binding on this node alone,
// under v.defsMu; errReplicatesNow when the cluster's log has meanwhile
// made its ends ones that every member has.
func (v *VHost) changeBindingHere(ch *DefChange, o *applyOpts, m amqp.Method) (*Exchange, error) {
	v.server.localChangeHook.run()
	v.defsMu.Lock()
	defer v.defsMu.Unlock()
	if v.server.replicates(o) != nil && v.bindingReplicates(ch) {
		return nil, errReplicatesNow
	}
	if err := o.checkTopic(m, v.exchanges[ch.Exchange], ch.RoutingKey); err != nil {
		return nil, err
	}
	b := &binding{key: ch.RoutingKey, args: ch.Arguments}
	if ch.ToExchange {
		if b.x = v.exchanges[ch.Destination]; b.x == nil {
			return nil, errNoExchange(m, v.name, ch.Destination)
		}
	}
	x := v.exchanges[ch.Exchange]
	if x == nil {
		return nil, errNoExchange(m, v.name, ch.Exchange)
	}
	if !ch.ToExchange {
		q, err := v.bindingQueue(m, ch.Destination, o)
		if err != nil {
			return nil, err
		}
		b.q = q
	}
	b.argsKey = string(amqp.AppendTable(nil, b.args))
	x.mu.RLock()
	old := x.bindings[b.id()]
	x.mu.RUnlock()
	durable := !o.stored && durableBinding(x, b)
	if ch.Kind == Unbind {
		if old == nil {
			return nil, nil
		}
		if durable {
			if err := v.server.forgetBinding(m, v, x, old); err != nil {
				return nil, err
			}
		}
		if _, left := x.unbind(old); left == 0 && x.AutoDelete {
			return x, nil
		}
		return nil, nil
	}
	if old != nil {
		return nil, nil
	}
	if routeKind(x.Kind, x.Args) == kindHeaders {
		hm, err := compileHeadersMatch(b.args)
		if err != nil {
			return nil, withMethod(err, m)
		}
		b.match = hm
	}
	if durable {
		if err := v.server.persistBinding(m, v, x, b); err != nil {
			return nil, err
		}
	}
	x.bind(b)
	return nil, nil
}

// bindingQueue resolves a binding's destination queue. The caller holds
// v.defsMu. A binding from the cluster's log is made whether or not a
// remote queue's home node can be reached now, and whoever owns an
// exclusive one (the node asked judged that): every member must make it.
func (v *VHost) bindingQueue(m amqp.Method, name string, o *applyOpts) (*Queue, error) {
	if name == "" {
		return nil, protoErr(amqp.NotFound, m, "no previously declared queue")
	}
	q := v.queues[name]
	if q == nil {
		return nil, errNoQueue(m, v.name, name)
	}
	if o.replicated {
		return q, nil // the node asked judged its owner too
	}
	if q.isUnavailable() {
		return nil, errUnavailable(m, q)
	}
	return q, q.checkOwner(o.conn, m)
}

// autoDeleteExchange deletes an auto-delete exchange whose last binding
// went (unless it has gained one since).
func (v *VHost) autoDeleteExchange(x *Exchange) {
	if x.bindingCount() > 0 {
		return
	}
	_, _ = v.Apply(DefChange{Kind: ExchangeDelete, Exchange: x.Name, IfUnused: true}, onlyExchange(x))
}

// deleteQueue deletes q itself (not a queue declared since under its name)
// for the broker's own reasons: its exclusive owner or last consumer went,
// or it expired. m, when set, adds a queue.delete's conditions.
func (v *VHost) deleteQueue(q *Queue, m *amqp.QueueDelete) (int, error) {
	ch := DefChange{Kind: QueueDelete, Queue: q.Name}
	if m != nil {
		ch.IfUnused, ch.IfEmpty = m.IfUnused, m.IfEmpty
	}
	r, err := v.Apply(ch, onlyQueue(q))
	return r.Messages, err
}

// defChange translates a declare (not passive), delete, bind or unbind
// method into a DefChange; lastQueue stands in for an empty queue name,
// as RabbitMQ's channels do.
func defChange(m amqp.Method, lastQueue string) (DefChange, bool) {
	queue := func(name string) string {
		if name == "" {
			return lastQueue
		}
		return name
	}
	// An empty queue and key on a queue binding mean the last queue's name.
	key := func(q, k string) string {
		if q == "" && k == "" {
			return lastQueue
		}
		return k
	}
	switch m := m.(type) {
	case *amqp.ExchangeDeclare:
		return DefChange{Kind: ExchangeDeclare, Exchange: m.Exchange, Type: m.Type, Durable: m.Durable,
			AutoDelete: m.AutoDelete, Internal: m.Internal, Arguments: m.Arguments}, true
	case *amqp.ExchangeDelete:
		return DefChange{Kind: ExchangeDelete, Exchange: m.Exchange, IfUnused: m.IfUnused}, true
	case *amqp.QueueDeclare:
		return DefChange{Kind: QueueDeclare, Queue: m.Queue, Durable: m.Durable, Exclusive: m.Exclusive,
			AutoDelete: m.AutoDelete, Arguments: m.Arguments}, true
	case *amqp.QueueDelete:
		return DefChange{Kind: QueueDelete, Queue: queue(m.Queue), IfUnused: m.IfUnused, IfEmpty: m.IfEmpty}, true
	case *amqp.QueueBind:
		return DefChange{Kind: Bind, Exchange: m.Exchange, Destination: queue(m.Queue),
			RoutingKey: key(m.Queue, m.RoutingKey), Arguments: m.Arguments}, true
	case *amqp.QueueUnbind:
		return DefChange{Kind: Unbind, Exchange: m.Exchange, Destination: queue(m.Queue),
			RoutingKey: key(m.Queue, m.RoutingKey), Arguments: m.Arguments}, true
	case *amqp.ExchangeBind:
		return DefChange{Kind: Bind, Exchange: m.Source, Destination: m.Destination, ToExchange: true,
			RoutingKey: m.RoutingKey, Arguments: m.Arguments}, true
	case *amqp.ExchangeUnbind:
		return DefChange{Kind: Unbind, Exchange: m.Source, Destination: m.Destination, ToExchange: true,
			RoutingKey: m.RoutingKey, Arguments: m.Arguments}, true
	}
	return DefChange{}, false
}

// applyMethod applies a definitions method on behalf of the channel.
func (ch *channel) applyMethod(m amqp.Method) (DefResult, error) {
	c, ok := defChange(m, ch.lastQueue)
	if !ok {
		return DefResult{}, errors.New("not a definitions method: " + m.MethodName())
	}
	return ch.conn.vhost.Apply(c, withConn(ch.conn), authorize(ch), WithDefaultQueueType())
}
