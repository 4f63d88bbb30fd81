package broker

import (
	"strings"
	"sync"
	"sync/atomic"

	"github.com/amqp-go/amqp-go/shared/amqp"
)

// Exchange types.
const (
	kindDirect  = "direct"
	kindFanout  = "fanout"
	kindTopic   = "topic"
	kindHeaders = "headers"
)

// Exchange routes messages to queues and other exchanges.
type Exchange struct {
	Name       string
	Kind       string
	Durable    bool
	AutoDelete bool
	Internal   bool
	Args       amqp.Table

	// mu guards bindings, router and deleted. Routing takes it shared, so
	// publishers on different connections don't serialise on one exchange.
	mu       sync.RWMutex
	bindings map[bindingKey]*binding
	router   router
	deleted  bool
	// removed mirrors deleted for lock-free checks by channel caches.
	removed atomic.Bool
	// dests is the vhost's index of bindings by destination, kept in step
	// with bindings; nil for an exchange outside a vhost (benchmarks).
	dests *destIndex
	// vhost is where alternate is looked up; nil outside a vhost.
	vhost *VHost
	// alternate is the alternate-exchange argument ("": none; the default
	// exchange would route nothing there either, as in RabbitMQ).
	alternate string
	// policy is the policy that applies (nil: none); its
	// alternate-exchange serves when the argument is not given.
	policy atomic.Pointer[exchangePolicy]
	// delayed schedules the delayed messages of an x-delayed-message
	// exchange (nil for any other kind); router is its x-delayed-type's.
	delayed *delayedExchange
	// published counts its message_stats (exchangestats.go).
	published publishStats
}

// argAlternate names an exchange's alternate exchange, RabbitMQ's
// extension: what the exchange's own bindings do not match goes there.
const argAlternate = "alternate-exchange"

// checkExchangeArgs validates, with RabbitMQ's texts, the arguments of an
// exchange about to be created (a redeclare is only compared).
func checkExchangeArgs(m amqp.Method, vhost, name string, args amqp.Table) error {
	if v, ok := args[argAlternate]; ok {
		if _, isStr := v.(string); !isStr {
			return protoErr(amqp.PreconditionFailed, m, "invalid type '%s' for arg '%s' in exchange '%s' in vhost '%s'",
				fieldTypeName(v), argAlternate, name, vhost)
		}
	}
	return nil
}

// alternateExchange resolves x's alternate exchange name (alternateName)
// exactly ("amq.default" names none), nil if it has none or it does not exist: then
// what x does not route is unroutable, as RabbitMQ has it (without a log
// line). It takes vhost.mu shared; the caller holds no exchange lock.
func (x *Exchange) alternateExchange(name string) *Exchange {
	if name == "" || x.vhost == nil {
		return nil
	}
	x.vhost.mu.RLock()
	ae := x.vhost.exchanges[name]
	x.vhost.mu.RUnlock()
	return ae
}

// binding joins a source exchange to a queue or exchange destination.
type binding struct {
	src  *Exchange // the source, set by bind
	key  string
	args amqp.Table
	q    *Queue    // exactly one of q and x is set
	x    *Exchange //
	// argsKey is args encoded, for identity and equality.
	argsKey string
	// match is the compiled headers-exchange matcher (headers only).
	match *headersMatch
}

type bindingKey struct {
	q    *Queue
	x    *Exchange
	key  string
	args string
}

func (b *binding) id() bindingKey { return bindingKey{b.q, b.x, b.key, b.argsKey} }

// router is an exchange type's routing table. Callers hold the exchange lock.
type router interface {
	add(b *binding)
	remove(b *binding)
	route(m *Message, props *lazyProps, out []*binding) []*binding
}

func validKind(kind string) bool {
	switch kind {
	case kindDirect, kindFanout, kindTopic, kindHeaders, kindDelayed:
		return true
	}
	return false
}

func newExchange(name, kind string, durable, autoDelete, internal bool, args amqp.Table) *Exchange {
	x := &Exchange{Name: name, Kind: kind, Durable: durable, AutoDelete: autoDelete, Internal: internal, Args: args,
		bindings: map[bindingKey]*binding{}}
	x.alternate, _ = args[argAlternate].(string)
	if kind == kindDelayed {
		x.delayed = newDelayedExchange(x)
	}
	switch routeKind(kind, args) {
	case kindFanout:
		x.router = &fanoutRouter{}
	case kindTopic:
		x.router = newTopicRouter()
	case kindHeaders:
		x.router = &headersRouter{}
	default:
		x.router = &directRouter{m: map[string][]*binding{}}
	}
	return x
}

// bind adds b; it reports false if an identical binding exists or x has
// been deleted (a bind racing the delete adds nothing).
func (x *Exchange) bind(b *binding) bool {
	b.argsKey = string(amqp.AppendTable(nil, b.args))
	b.src = x
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.deleted {
		return false
	}
	if _, ok := x.bindings[b.id()]; ok {
		return false
	}
	x.bindings[b.id()] = b
	x.router.add(b)
	x.dests.add(b)
	return true
}

// unbind removes the binding equal to b; it reports whether one existed and
// how many bindings remain.
func (x *Exchange) unbind(b *binding) (bool, int) {
	b.argsKey = string(amqp.AppendTable(nil, b.args))
	x.mu.Lock()
	defer x.mu.Unlock()
	old, ok := x.bindings[b.id()]
	if !ok {
		return false, len(x.bindings)
	}
	delete(x.bindings, b.id())
	x.router.remove(old)
	x.dests.remove(old)
	return true, len(x.bindings)
}

// markDeleted marks x deleted and takes the bindings out of it out of the
// destination index, returning them; they stay in x's own tables, which
// nothing routes through any more. It takes x.mu.
func (x *Exchange) markDeleted() []*binding {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.deleted = true
	x.removed.Store(true)
	out := make([]*binding, 0, len(x.bindings))
	for _, b := range x.bindings {
		x.dests.remove(b)
		out = append(out, b)
	}
	return out
}

// unbindTaken removes bs, bindings taken out of the destination index for
// a destination being deleted, from their source exchanges. It returns the
// ones it removed (a concurrent unbind may have got to one first) and the
// auto-delete sources it left without bindings. It takes each source's
// lock in turn, so the caller may hold vhost.mu but no exchange lock.
func unbindTaken(bs []*binding) (removed []*binding, emptied []*Exchange) {
	for _, b := range bs {
		x := b.src
		x.mu.Lock()
		if x.bindings[b.id()] == b {
			delete(x.bindings, b.id())
			x.router.remove(b)
			removed = append(removed, b)
			if len(x.bindings) == 0 && x.AutoDelete && !x.deleted && !containsExchange(emptied, x) {
				emptied = append(emptied, x)
			}
		}
		x.mu.Unlock()
	}
	return removed, emptied
}

// destKey names a binding's destination: exactly one field is set.
type destKey struct {
	q *Queue
	x *Exchange
}

// destIndex is a vhost's index from each destination, queue or exchange,
// to the bindings that lead to it, so that deleting a destination costs its
// own bindings rather than a scan of every exchange. Exchanges keep it in
// step under their own lock: mu nests inside exchange.mu (and so inside
// vhost.mu) and nothing is taken under it. A nil index does nothing.
type destIndex struct {
	mu sync.Mutex
	m  map[destKey]map[*binding]struct{}
}

func (d *destIndex) add(b *binding) {
	if d == nil {
		return
	}
	k := destKey{b.q, b.x}
	d.mu.Lock()
	defer d.mu.Unlock()
	set := d.m[k]
	if set == nil {
		if d.m == nil {
			d.m = map[destKey]map[*binding]struct{}{}
		}
		set = map[*binding]struct{}{}
		d.m[k] = set
	}
	set[b] = struct{}{}
}

func (d *destIndex) remove(b *binding) {
	if d == nil {
		return
	}
	k := destKey{b.q, b.x}
	d.mu.Lock()
	defer d.mu.Unlock()
	if set := d.m[k]; set != nil {
		delete(set, b)
		if len(set) == 0 {
			delete(d.m, k)
		}
	}
}

// take removes the destination's entry and returns its bindings.
func (d *destIndex) take(k destKey) []*binding {
	if d == nil {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	set := d.m[k]
	delete(d.m, k)
	out := make([]*binding, 0, len(set))
	for b := range set {
		out = append(out, b)
	}
	return out
}

// list returns the bindings leading to the destination, leaving them.
func (d *destIndex) list(k destKey) []*binding {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]*binding, 0, len(d.m[k]))
	for b := range d.m[k] {
		out = append(out, b)
	}
	return out
}

// count reports how many bindings lead to the destination.
func (d *destIndex) count(k destKey) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.m[k])
}

func (x *Exchange) bindingCount() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.bindings)
}

// bindingList returns the bindings out of x.
func (x *Exchange) bindingList() []*binding {
	x.mu.RLock()
	defer x.mu.RUnlock()
	out := make([]*binding, 0, len(x.bindings))
	for _, b := range x.bindings {
		out = append(out, b)
	}
	return out
}

// lazyProps decodes a message's properties at most once per publish, and
// only if a headers exchange asks.
type lazyProps struct {
	m       *Message
	done    bool
	headers amqp.Table
}

func (p *lazyProps) get() amqp.Table {
	if !p.done {
		p.done = true
		if pr, err := p.m.decodeProperties(); err == nil {
			p.headers = pr.Headers
		}
	}
	return p.headers
}

// routeMessage appends to out the queues m reaches from x, following
// exchange-to-exchange bindings and alternate exchanges and visiting each
// exchange once.
// scratch is reused between calls by the caller.
func routeMessage(x *Exchange, m *Message, out []*Queue, scratch *routeScratch) []*Queue {
	scratch.reset()
	scratch.props = lazyProps{m: m}
	props := &scratch.props // held in the scratch so it does not escape per message
	scratch.pending = append(scratch.pending, x)
	scratch.seenX = append(scratch.seenX, x)
	for len(scratch.pending) > 0 {
		cur := scratch.pending[len(scratch.pending)-1]
		scratch.pending = scratch.pending[:len(scratch.pending)-1]
		if cur.delayed != nil && cur.delayed.takes(props) {
			// A delayed exchange holds the message (VHost.Publish
			// schedules it) instead of routing it now.
			scratch.delayed = append(scratch.delayed, cur)
			continue
		}
		cur.mu.RLock()
		if cur.deleted {
			cur.mu.RUnlock()
			continue
		}
		scratch.bindings = cur.router.route(m, props, scratch.bindings[:0])
		cur.mu.RUnlock()
		if len(scratch.bindings) == 0 {
			// Each exchange whose own bindings match nothing passes the
			// message on to its alternate; one already visited ends a
			// chain that loops (RabbitMQ's rule).
			if ae := cur.alternateExchange(cur.alternateName()); ae != nil && !containsExchange(scratch.seenX, ae) {
				scratch.seenX = append(scratch.seenX, ae)
				scratch.pending = append(scratch.pending, ae)
			}
			continue
		}
		for _, b := range scratch.bindings {
			if b.q != nil {
				if !scratch.containsQueue(out, b.q) {
					out = append(out, b.q)
				}
			} else if !containsExchange(scratch.seenX, b.x) {
				scratch.seenX = append(scratch.seenX, b.x)
				scratch.pending = append(scratch.pending, b.x)
			}
		}
	}
	return out
}

// routeScratch holds per-channel buffers so routing does not allocate.
type routeScratch struct {
	pending  []*Exchange
	seenX    []*Exchange
	bindings []*binding
	props    lazyProps
	// seenQ de-duplicates destinations once a message reaches more than
	// a handful of queues, keeping wide fanouts linear.
	seenQ map[*Queue]struct{}
	// delayed are the delayed exchanges that hold the message.
	delayed []*Exchange
}

func (s *routeScratch) reset() {
	s.pending = s.pending[:0]
	s.delayed = s.delayed[:0]
	s.seenX = s.seenX[:0]
	s.bindings = s.bindings[:0]
	clear(s.seenQ)
}

// linearDedupe is how many destinations are checked by scanning before a
// set takes over.
const linearDedupe = 16

func (s *routeScratch) containsQueue(qs []*Queue, q *Queue) bool {
	if len(qs) <= linearDedupe {
		for _, x := range qs {
			if x == q {
				return true
			}
		}
		return false
	}
	if s.seenQ == nil {
		s.seenQ = make(map[*Queue]struct{}, 2*len(qs))
	}
	if len(s.seenQ) == 0 {
		for _, x := range qs {
			s.seenQ[x] = struct{}{}
		}
	}
	if _, ok := s.seenQ[q]; ok {
		return true
	}
	s.seenQ[q] = struct{}{}
	return false
}

func containsExchange(xs []*Exchange, x *Exchange) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// directRouter routes on exact routing-key equality.
type directRouter struct{ m map[string][]*binding }

func (r *directRouter) add(b *binding) { r.m[b.key] = append(r.m[b.key], b) }
func (r *directRouter) remove(b *binding) {
	r.m[b.key] = removeBinding(r.m[b.key], b)
	if len(r.m[b.key]) == 0 {
		delete(r.m, b.key)
	}
}
func (r *directRouter) route(m *Message, _ *lazyProps, out []*binding) []*binding {
	return append(out, r.m[m.RoutingKey]...)
}

// fanoutRouter routes to every binding.
type fanoutRouter struct{ all []*binding }

func (r *fanoutRouter) add(b *binding)    { r.all = append(r.all, b) }
func (r *fanoutRouter) remove(b *binding) { r.all = removeBinding(r.all, b) }
func (r *fanoutRouter) route(_ *Message, _ *lazyProps, out []*binding) []*binding {
	return append(out, r.all...)
}

func removeBinding(bs []*binding, b *binding) []*binding {
	for i, x := range bs {
		if x == b {
			copy(bs[i:], bs[i+1:])
			bs[len(bs)-1] = nil
			return bs[:len(bs)-1]
		}
	}
	return bs
}

// topicRouter is a trie over dot-separated words, with '*' matching one word
// and '#' matching zero or more.
type topicRouter struct{ root *topicNode }

type topicNode struct {
	children map[string]*topicNode
	star     *topicNode
	hash     *topicNode
	here     []*binding
}

func newTopicRouter() *topicRouter { return &topicRouter{root: &topicNode{}} }

func (n *topicNode) child(word string) *topicNode {
	switch word {
	case "*":
		if n.star == nil {
			n.star = &topicNode{}
		}
		return n.star
	case "#":
		if n.hash == nil {
			n.hash = &topicNode{}
		}
		return n.hash
	}
	if n.children == nil {
		n.children = map[string]*topicNode{}
	}
	c := n.children[word]
	if c == nil {
		c = &topicNode{}
		n.children[word] = c
	}
	return c
}

// topicWords splits a key into words; like RabbitMQ, the empty key has
// none (so "#" matches it and "*" does not).
func topicWords(key string) []string {
	if key == "" {
		return nil
	}
	return strings.Split(key, ".")
}

func (r *topicRouter) add(b *binding) {
	n := r.root
	for _, w := range topicWords(b.key) {
		n = n.child(w)
	}
	n.here = append(n.here, b)
}

func (r *topicRouter) remove(b *binding) {
	// Empty nodes are left in place: they cost a little memory and keep
	// removal simple; a rebind reuses them.
	n := r.root
	for _, w := range topicWords(b.key) {
		switch w {
		case "*":
			n = n.star
		case "#":
			n = n.hash
		default:
			n = n.children[w]
		}
		if n == nil {
			return
		}
	}
	n.here = removeBinding(n.here, b)
}

func (r *topicRouter) route(m *Message, _ *lazyProps, out []*binding) []*binding {
	// '#' can reach one binding along several paths; routeMessage drops
	// the duplicate destinations (linear in the number of matches).
	return r.root.match(m.RoutingKey, m.RoutingKey == "", out)
}

// match matches the remaining key (done: no words left).
func (n *topicNode) match(key string, done bool, out []*binding) []*binding {
	if done {
		out = append(out, n.here...)
		if n.hash != nil {
			out = n.hash.match("", true, out)
		}
		return out
	}
	word, rest, more := strings.Cut(key, ".")
	if c := n.children[word]; c != nil {
		out = c.match(rest, !more, out)
	}
	if n.star != nil {
		out = n.star.match(rest, !more, out)
	}
	if n.hash != nil {
		// '#' swallows zero words...
		out = n.hash.match(key, false, out)
		// ...or one or more.
		k, d := key, false
		for !d {
			_, r, m := strings.Cut(k, ".")
			k, d = r, !m
			out = n.hash.match(k, d, out)
		}
	}
	return out
}
