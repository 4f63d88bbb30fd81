package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"time"

	"github.com/amqp-go/amqp-go/server/security"
	"github.com/amqp-go/amqp-go/shared/amqp"
)

// Replicator carries definitions changes to every member of a cluster
// (cluster.Service): Replicate returns once this node has applied the
// change from the cluster's log, with the verdict of the part's Apply.
type Replicator interface {
	Replicate(ctx context.Context, kind byte, payload []byte) error
}

// Replica is a part of the server's state that a cluster's metadata
// group carries (cluster.Replicated): every member applies each change in
// the log's order. Its methods run on the cluster's loop goroutine and
// must not wait for the cluster.
type Replica interface {
	Apply(index uint64, payload []byte) error
	Snapshot() ([]byte, error)
	Restore(data []byte) error
}

// The parts of the state that replicate, by kind (Replicas).
const (
	// ReplicaSecurity is the security store: users, vhosts, permissions,
	// topic permissions, limits and policies, replicated whole with each
	// change (they are small and change rarely).
	ReplicaSecurity byte = 1
	// ReplicaExchanges are the exchanges and the bindings between them,
	// but for auto-delete exchanges, whose deletion follows bindings that
	// are each node's own.
	ReplicaExchanges byte = 2
)

// ErrNoMajority wraps a change the cluster did not take in time: this
// node reaches no majority of the members (or the change was lost with a
// leader). The change was not made, here or, most likely, anywhere.
var ErrNoMajority = errors.New("the cluster has no majority to take the change")

// noMajority wraps err in ErrNoMajority when the cluster did not take a
// change in time, leaving a part's own verdict as it is.
func noMajority(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", ErrNoMajority, err)
	}
	return err
}

// replicateTimeout bounds how long a change waits for the cluster: past
// it, the client hears of a failure (no majority, most likely).
const replicateTimeout = 10 * time.Second

// Replicas are the parts of s's state a cluster's metadata group carries,
// by kind; pass them to the cluster before it starts applying its log.
func (s *Server) Replicas() map[byte]Replica {
	return map[byte]Replica{ReplicaSecurity: securityReplica{s}, ReplicaExchanges: exchangeReplica{s}, ReplicaQuorumQueues: quorumReplica{s},
		ReplicaAlarms: alarmReplica{s}}
}

// Replicate makes every later definitions change of s go through r:
// security changes (users, vhosts, permissions, limits, policies),
// exchange declarations and deletions, and bindings between exchanges
// are made on every member, this one
// included, when it applies them from the cluster's log. Changes the
// broker makes for its own reasons (an auto-delete, a vhost's deletion
// carried out) and what recovery reads back stay local.
func (s *Server) Replicate(r Replicator) {
	s.replicator.Store(&r)
	s.sec.SetReplicator(func(base uint64, next *security.Definitions) error {
		b, err := json.Marshal(securityChange{Base: base, Definitions: next})
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), replicateTimeout)
		defer cancel()
		return noMajority(r.Replicate(ctx, ReplicaSecurity, b))
	})
}

// OfferDefinitions makes this node's security definitions the cluster's
// when the cluster has none yet (a new cluster: the first offer to be
// applied wins, the others are stale); it returns once the cluster has
// some, or ctx ends.
func (s *Server) OfferDefinitions(ctx context.Context) error {
	for s.sec.Version() == 0 {
		if err := s.sec.OfferInitial(); err != nil {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Second):
			}
		}
	}
	return nil
}

// errReplicatesNow is a definitions change's local path finding, under
// v.defsMu, that the cluster's log has meanwhile made what it changes
// one that every member has: the change must go through the cluster
// after all, or this node alone would have it.
var errReplicatesNow = errors.New("the change replicates now")

func (s *Server) replicating() Replicator {
	if r := s.replicator.Load(); r != nil {
		return *r
	}
	return nil
}

// securityChange is a replicated security change: the whole resulting
// state and the version it was computed from.
type securityChange struct {
	Base        uint64                `json:"base"`
	Definitions *security.Definitions `json:"definitions"`
}

// securitySnapshot is the security part of a cluster snapshot.
type securitySnapshot struct {
	Version     uint64                `json:"version"`
	Definitions *security.Definitions `json:"definitions"`
}

type securityReplica struct{ s *Server }

func (r securityReplica) Apply(index uint64, payload []byte) error {
	var c securityChange
	if err := json.Unmarshal(payload, &c); err != nil || c.Definitions == nil {
		return fmt.Errorf("security change %d: undecodable: %v", index, err)
	}
	before := r.s.securityView()
	if err := r.s.sec.ApplyReplicated(index, c.Base, c.Definitions); err != nil {
		return err
	}
	r.s.securityReplaced(before)
	return nil
}

func (r securityReplica) Snapshot() ([]byte, error) {
	return json.Marshal(securitySnapshot{Version: r.s.sec.Version(), Definitions: r.s.sec.Export()})
}

func (r securityReplica) Restore(data []byte) error {
	if data == nil {
		return nil
	}
	var snap securitySnapshot
	if err := json.Unmarshal(data, &snap); err != nil || snap.Definitions == nil {
		return fmt.Errorf("security snapshot: undecodable: %v", err)
	}
	before := r.s.securityView()
	if err := r.s.sec.RestoreReplicated(snap.Version, snap.Definitions); err != nil {
		return err
	}
	r.s.securityReplaced(before)
	return nil
}

// securityView is what of the security state the broker acts on when
// another member changes it: the vhosts and their policies.
type securityView map[string][]security.PolicyDef

func (s *Server) securityView() securityView {
	view := securityView{}
	for _, name := range s.sec.VHostNames() {
		view[name] = append(s.sec.Policies(name, false), s.sec.Policies(name, true)...)
	}
	return view
}

// securityReplaced carries out what a replicated security change means
// for the broker: a vhost gone is deleted with everything in it, and the
// vhosts whose policies changed have them applied again.
func (s *Server) securityReplaced(before securityView) {
	after := s.securityView()
	for name, policies := range before {
		now, kept := after[name]
		switch {
		case !kept:
			if err := s.dropVHost(name); err != nil {
				s.logger.Error("cluster: deleting a vhost the cluster deleted", "vhost", name, "err", err)
			}
		case !reflect.DeepEqual(policies, now):
			if v := s.vhost(name); v != nil {
				v.reapplyPolicies()
			}
		}
	}
}

// exchangeChange is a replicated exchange declaration or deletion, or a
// binding between two exchanges made or removed.
type exchangeChange struct {
	VHost    string  `json:"vhost"`
	Kind     DefKind `json:"kind"`
	Exchange string  `json:"exchange"`
	Type     string  `json:"type,omitempty"`
	Durable  bool    `json:"durable,omitempty"`
	Internal bool    `json:"internal,omitempty"`
	// Destination and RoutingKey are a binding's to an exchange; Queue
	// is a binding's to a replicated quorum queue, with RoutingKey.
	Destination string `json:"destination,omitempty"`
	Queue       string `json:"queue,omitempty"`
	RoutingKey  string `json:"routing_key,omitempty"`
	// Arguments are an AMQP field table, encoded as AMQP encodes it, so
	// that its values keep their types.
	Arguments []byte `json:"arguments,omitempty"`
}

func (c *exchangeChange) defChange() (DefChange, error) {
	ch := DefChange{Kind: c.Kind, Exchange: c.Exchange, Type: c.Type, Durable: c.Durable, Internal: c.Internal,
		Destination: c.Destination, ToExchange: c.Destination != "", RoutingKey: c.RoutingKey}
	if c.Queue != "" {
		ch.Destination, ch.ToExchange = c.Queue, false
	}
	if len(c.Arguments) > 0 {
		t, _, err := amqp.ReadTable(c.Arguments)
		if err != nil {
			return ch, err
		}
		ch.Arguments = t
	}
	return ch, nil
}

func newExchangeChange(vhost string, ch *DefChange) exchangeChange {
	c := exchangeChange{VHost: vhost, Kind: ch.Kind, Exchange: ch.Exchange, Type: ch.Type, Durable: ch.Durable, Internal: ch.Internal}
	switch {
	case ch.ToExchange:
		c.Destination, c.RoutingKey = ch.Destination, ch.RoutingKey
	case ch.Kind == Bind || ch.Kind == Unbind:
		c.Queue, c.RoutingKey = ch.Destination, ch.RoutingKey
	}
	if len(ch.Arguments) > 0 {
		c.Arguments = amqp.AppendTable(nil, ch.Arguments)
	}
	return c
}

// replicatedExchange reports whether x's definition replicates.
func replicatedExchange(x *Exchange) bool {
	return x.Name != "" && !reservedName(x.Name) && !x.AutoDelete
}

// replicatedBinding reports whether a binding from src to dst, two
// exchanges, replicates: both are on every member (replicated, or
// built in) and neither is auto-delete, whose bindings decide its fate
// on its own node.
func replicatedBinding(src, dst *Exchange) bool {
	return src != nil && dst != nil && src.Name != "" && dst.Name != "" && !src.AutoDelete && !dst.AutoDelete
}

// replicatedQueueBinding reports whether a binding from src to q
// replicates: q is a replicated queue (on every member) and src
// is on every member and not auto-delete.
func replicatedQueueBinding(src *Exchange, q *Queue) bool {
	return src != nil && q != nil && src.Name != "" && !src.AutoDelete && replicatedQueue(q)
}

// replicates reports whether a change made with o goes through the
// cluster rather than being made here: not one the cluster's log is
// applying, recovery is reading back, or the broker makes for its own
// reasons.
func (s *Server) replicates(o *applyOpts) Replicator {
	if o.stored || o.replicated || o.internal() {
		return nil
	}
	return s.replicating()
}

// replicateExchange hands an exchange change of vhost v, validated here,
// to the cluster and returns its verdict once this node has applied it.
// No broker lock may be held: the apply takes them.
func (s *Server) replicateExchange(r Replicator, v *VHost, ch *DefChange) error {
	return replicateChange(r, ReplicaExchanges, ch.method(), newExchangeChange(v.name, ch))
}

// replicateChange hands change, of the part kind, to the cluster for a
// client's method m and returns the part's verdict once this node has
// applied it, or 541 when the cluster did not take it.
func replicateChange(r Replicator, kind byte, m amqp.Method, change any) error {
	b, err := json.Marshal(change)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), replicateTimeout)
	defer cancel()
	if err := r.Replicate(ctx, kind, b); err != nil {
		var ae *amqpError
		if errors.As(err, &ae) {
			return err
		}
		return protoErr(amqp.InternalError, m, "the cluster did not take the change: %v", noMajority(err))
	}
	return nil
}

type exchangeReplica struct{ s *Server }

func (r exchangeReplica) Apply(index uint64, payload []byte) error {
	var c exchangeChange
	if err := json.Unmarshal(payload, &c); err != nil {
		return fmt.Errorf("exchange change %d: undecodable: %v", index, err)
	}
	ch, err := c.defChange()
	if err != nil {
		return fmt.Errorf("exchange change %d: arguments: %v", index, err)
	}
	v := r.s.vhost(c.VHost)
	if v == nil {
		return protoErr(amqp.NotFound, ch.method(), "no vhost '%s'", c.VHost)
	}
	if c.Queue != "" && v.keptAfter(c.Queue, index) {
		return nil // a binding of its predecessor's: see keptAfter
	}
	_, err = v.Apply(ch, fromCluster())
	return err
}

// Snapshot is every replicated exchange of every vhost, as declarations.
func (r exchangeReplica) Snapshot() ([]byte, error) {
	var all []exchangeChange
	for _, v := range r.s.VHosts() {
		for _, x := range v.Exchanges() {
			if replicatedExchange(x) {
				all = append(all, newExchangeChange(v.name, &DefChange{Kind: ExchangeDeclare, Exchange: x.Name,
					Type: x.Kind, Durable: x.Durable, Internal: x.Internal, Arguments: x.Args}))
			}
		}
		all = append(all, replicatedBindings(v)...)
	}
	return json.Marshal(all)
}

// replicatedQueueBindings are v's bindings to replicated quorum queues,
// as Bind changes.
func replicatedQueueBindings(v *VHost) []exchangeChange {
	return bindingChanges(v, func(x *Exchange, b *binding) bool { return b.q != nil && replicatedQueueBinding(x, b.q) })
}

// replicatedBindings are v's bindings between exchanges that replicate,
// as Bind changes.
func replicatedBindings(v *VHost) []exchangeChange {
	return bindingChanges(v, func(x *Exchange, b *binding) bool { return b.x != nil && replicatedBinding(x, b.x) })
}

// bindingChanges are v's bindings that keep selects, as Bind changes.
func bindingChanges(v *VHost, keep func(*Exchange, *binding) bool) []exchangeChange {
	var out []exchangeChange
	for _, x := range v.Exchanges() {
		for _, b := range x.bindingList() {
			if !keep(x, b) {
				continue
			}
			ch := DefChange{Kind: Bind, Exchange: x.Name, RoutingKey: b.key, Arguments: b.args}
			if b.x != nil {
				ch.Destination, ch.ToExchange = b.x.Name, true
			} else {
				ch.Destination = b.q.Name
			}
			out = append(out, newExchangeChange(v.name, &ch))
		}
	}
	return out
}

// Restore makes the replicated exchanges and the bindings between them
// those of the snapshot: it deletes the others and declares the missing
// ones (an inequivalent exchange is deleted and declared again), then
// removes the bindings the snapshot has not and makes the ones it has.
func (r exchangeReplica) Restore(data []byte) error {
	if data == nil {
		return nil
	}
	var all []exchangeChange
	if err := json.Unmarshal(data, &all); err != nil {
		return fmt.Errorf("exchange snapshot: undecodable: %v", err)
	}
	want := map[string]map[string]DefChange{}
	binds := map[string][]exchangeChange{} // by vhost
	for i := range all {
		ch, err := all[i].defChange()
		if err != nil {
			return fmt.Errorf("exchange snapshot: %s: %v", all[i].Exchange, err)
		}
		if ch.Kind == Bind {
			binds[all[i].VHost] = append(binds[all[i].VHost], all[i])
			continue
		}
		if want[all[i].VHost] == nil {
			want[all[i].VHost] = map[string]DefChange{}
		}
		want[all[i].VHost][ch.Exchange] = ch
	}
	var first error
	keep := func(err error) {
		if err != nil && first == nil {
			first = err
		}
	}
	for _, v := range r.s.VHosts() { // the security part is restored first
		wanted := want[v.name]
		for _, x := range v.Exchanges() {
			ch, ok := wanted[x.Name]
			if replicatedExchange(x) && (!ok || x.equivalent(&ch, v.name) != nil) {
				_, err := v.Apply(DefChange{Kind: ExchangeDelete, Exchange: x.Name}, fromCluster())
				keep(err)
			}
		}
		for _, name := range slices.Sorted(maps.Keys(wanted)) {
			_, err := v.Apply(wanted[name], fromCluster())
			keep(err)
		}
		keep(restoreBindings(v, binds[v.name], replicatedBindings))
	}
	return first
}

// restoreBindings makes v's replicated bindings of one sort (current
// lists them: between exchanges, or to quorum queues) those of want.
func restoreBindings(v *VHost, want []exchangeChange, current func(*VHost) []exchangeChange) error {
	key := func(c exchangeChange) string {
		b, _ := json.Marshal(c)
		return string(b)
	}
	wanted := map[string]bool{}
	for _, c := range want {
		wanted[key(c)] = true
	}
	var first error
	for _, c := range current(v) {
		if !wanted[key(c)] {
			ch, _ := c.defChange()
			ch.Kind = Unbind
			if _, err := v.Apply(ch, fromCluster()); err != nil && first == nil {
				first = err
			}
		}
		delete(wanted, key(c)) // already there
	}
	for _, c := range want {
		if !wanted[key(c)] {
			continue
		}
		ch, err := c.defChange()
		if err == nil {
			_, err = v.Apply(ch, fromCluster())
		}
		if err != nil && first == nil {
			first = err
		}
	}
	return first
}
