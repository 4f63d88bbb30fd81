package broker

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/amqp-go/amqp-go/server/security"
	"github.com/amqp-go/amqp-go/shared/amqp"
)

// Policies, as RabbitMQ 3.10 has them: a vhost's policies and operator
// policies are kept in the security store (persisted with it, exported and
// imported in RabbitMQ's definitions format); the broker validates them
// and applies the highest-priority match to each queue and exchange, when
// it is declared and whenever a policy is set or cleared.
//
// A queue's effective settings merge its own arguments with the policy's
// definition, as RabbitMQ's classic queues do: for expires, message-ttl,
// max-length and max-length-bytes the smaller value wins; for
// dead-letter-exchange, dead-letter-routing-key, overflow and queue-mode
// the argument wins. The policy's value is itself the smaller of the
// policy's and the operator policy's for those four numeric keys. An
// exchange's alternate-exchange argument wins over the policy's.

// The apply-to values of RabbitMQ 3.10.
const (
	applyQueues    = "queues"
	applyExchanges = "exchanges"
	applyAll       = "all"
)

// PolicyError is a policy RabbitMQ would refuse; Text is what follows
// "Validation failed" in its reply.
type PolicyError struct{ Text string }

func (e *PolicyError) Error() string { return e.Text }

func policyErr(format string, a ...any) error { return &PolicyError{fmt.Sprintf(format, a...)} }

// policyKey is one definition key RabbitMQ 3.10 accepts: its check (nil:
// accepted and not acted on here, like the ha-* keys) and whether an
// operator policy may set it.
type policyKey struct {
	check    func(v any) bool
	operator bool
	what     string // "~p is not a valid WHAT"
}

func nonNegativeInt(v any) bool { n, ok := jsonInt(v); return ok && n >= 0 }
func positiveInt(v any) bool    { n, ok := jsonInt(v); return ok && n >= 1 }
func isString(v any) bool       { _, ok := v.(string); return ok }
func oneOf(words ...string) func(any) bool {
	return func(v any) bool { s, ok := v.(string); return ok && slices.Contains(words, s) }
}

// policyKeys are the keys RabbitMQ 3.10 validates, with its texts, and
// consumer-timeout from 3.12.
var policyKeys = map[string]policyKey{
	"message-ttl":             {nonNegativeInt, true, "message TTL"},
	"expires":                 {positiveInt, true, "queue expiry"},
	"max-length":              {nonNegativeInt, true, "maximum length"},
	"max-length-bytes":        {nonNegativeInt, true, "maximum length in bytes"},
	"dead-letter-exchange":    {isString, false, "dead letter exchange name"},
	"dead-letter-routing-key": {isString, false, "dead letter routing key"},
	"alternate-exchange":      {isString, false, "alternate exchange name"},
	"overflow":                {oneOf("drop-head", "reject-publish", "reject-publish-dlx"), false, "overflow value"},
	"queue-mode":              {oneOf("default", "lazy"), false, "queue-mode value"},
	"consumer-timeout":        {nonNegativeInt, false, "consumer timeout"},
	"dead-letter-strategy":    {oneOf("at-most-once", "at-least-once"), false, "dead letter strategy"},
	// Accepted, as RabbitMQ does, and not acted on: mirroring, streams
	// and federation are not implemented, and of quorum queues' keys
	// only delivery-limit and dead-letter-strategy apply (queuePolicyFor).
	"ha-mode": {}, "ha-params": {}, "ha-sync-mode": {}, "ha-sync-batch-size": {}, "ha-promote-on-shutdown": {},
	"ha-promote-on-failure": {}, "queue-master-locator": {}, "queue-version": {},
	"max-in-memory-length": {nil, true, ""}, "max-in-memory-bytes": {nil, true, ""}, "delivery-limit": {nil, true, ""},
	"federation-upstream-set": {}, "federation-upstream": {}, "max-age": {}, "stream-max-segment-size-bytes": {},
	"queue-leader-locator": {}, "initial-cluster-size": {},
}

// CheckPolicy validates p as RabbitMQ's set_policy does (an operator
// policy with operator) and fills in its defaults (apply-to all). The
// pattern must be a Go (RE2) regular expression: PCRE's look-around and
// back-references, which RabbitMQ accepts, are refused.
func CheckPolicy(p *security.PolicyDef, operator bool) error {
	if _, err := regexp.Compile(p.Pattern); err != nil {
		return policyErr("pattern should be regular expression but is invalid: %s (Go's RE2 syntax; PCRE's look-around and back-references are not supported)", regexpReason(err))
	}
	if p.ApplyTo == "" {
		p.ApplyTo = applyAll
	}
	switch p.ApplyTo {
	case applyQueues, applyExchanges, applyAll:
	default:
		return policyErr("apply-to '%s' unrecognised; should be 'queues', 'exchanges' or 'all'", p.ApplyTo)
	}
	if len(p.Definition) == 0 {
		return policyErr("no policy provided")
	}
	var unknown []string
	for _, k := range slices.Sorted(maps.Keys(p.Definition)) {
		v := p.Definition[k]
		pk, known := policyKeys[k]
		if !known || operator && !pk.operator {
			unknown = append(unknown, fmt.Sprintf("{%s,%s}", ErlangTerm(k), ErlangTerm(v)))
			continue
		}
		if pk.check != nil && !pk.check(v) {
			return policyErr("%s is not a valid %s", ErlangTerm(v), pk.what)
		}
	}
	if len(unknown) > 0 {
		return policyErr("[%s] are not recognised policy settings", strings.Join(unknown, ","))
	}
	return nil
}

// regexpReason is a compile error without Go's "error parsing regexp: ".
func regexpReason(err error) string {
	return strings.TrimPrefix(err.Error(), "error parsing regexp: ")
}

// ErlangTerm renders a JSON value as RabbitMQ's ~p prints the term its
// JSON decoder makes of it.
func ErlangTerm(v any) string {
	switch x := v.(type) {
	case string:
		return `<<"` + x + `">>`
	case json.Number:
		return x.String()
	case bool:
		return fmt.Sprint(x)
	case nil:
		return "null"
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = ErlangTerm(e)
		}
		return "[" + strings.Join(parts, ",") + "]"
	case map[string]any:
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(x)) {
			parts = append(parts, ErlangTerm(k)+" => "+ErlangTerm(x[k]))
		}
		return "#{" + strings.Join(parts, ",") + "}"
	}
	return fmt.Sprint(v)
}

// jsonInt reads an integer from a policy definition: a json.Number that
// is an integer, or a Go integer.
func jsonInt(v any) (int64, bool) {
	switch x := v.(type) {
	case json.Number:
		n, err := x.Int64()
		return n, err == nil
	case int64:
		return x, true
	case int:
		return int64(x), true
	case float64:
		if x == float64(int64(x)) {
			return int64(x), true
		}
	}
	return 0, false
}

// compiledPolicy is a stored policy with its pattern compiled.
type compiledPolicy struct {
	security.PolicyDef
	re *regexp.Regexp
}

// matches reports whether p applies to an object of kind (applyQueues or
// applyExchanges) named name.
func (p *compiledPolicy) matches(kind, name string) bool {
	return (p.ApplyTo == applyAll || p.ApplyTo == "" || p.ApplyTo == kind) && p.re.MatchString(name)
}

// vhostPolicies are a vhost's policies and operator policies, highest
// priority first (then by name, so that a tie is settled the same way
// every time).
type vhostPolicies struct {
	user, operator []compiledPolicy
}

// best is the highest-priority policy of list matching, or nil.
func best(list []compiledPolicy, kind, name string) *compiledPolicy {
	for i := range list {
		if list[i].matches(kind, name) {
			return &list[i]
		}
	}
	return nil
}

// policyCache holds the compiled policies of every vhost for one
// generation of the security store; it is rebuilt when that changes.
type policyCache struct {
	mu     sync.Mutex
	gen    uint64
	vhosts map[string]*vhostPolicies
}

// policiesOf returns vhost's compiled policies as the security store now
// holds them. Locking: takes policyCache.mu, a leaf.
func (s *Server) policiesOf(vhost string) *vhostPolicies {
	c := &s.policies
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen := s.sec.Generation(); gen != c.gen || c.vhosts == nil {
		c.gen, c.vhosts = gen, map[string]*vhostPolicies{}
	}
	if vp := c.vhosts[vhost]; vp != nil {
		return vp
	}
	vp := &vhostPolicies{user: compilePolicies(s.sec.Policies(vhost, false)),
		operator: compilePolicies(s.sec.Policies(vhost, true))}
	c.vhosts[vhost] = vp
	return vp
}

func compilePolicies(defs []security.PolicyDef) []compiledPolicy {
	out := make([]compiledPolicy, 0, len(defs))
	for _, d := range defs {
		re, err := regexp.Compile(d.Pattern)
		if err != nil {
			continue // refused when set; a hand-edited store matches nothing
		}
		out = append(out, compiledPolicy{PolicyDef: d, re: re})
	}
	slices.SortStableFunc(out, func(a, b compiledPolicy) int {
		return cmp.Or(cmp.Compare(b.Priority, a.Priority), cmp.Compare(a.Name, b.Name))
	})
	return out
}

// appliedPolicy is what the policies make of a queue: its merged
// settings and, for the management API, the policies that apply and
// their merged definition.
type appliedPolicy struct {
	queuePolicy
	policy, operator string
	definition       map[string]any
}

// numericPolicyKeys are the keys an operator policy caps: the smaller of
// the two values wins.
var numericPolicyKeys = []string{"message-ttl", "expires", "max-length", "max-length-bytes"}

// queuePolicyFor merges the queue's own settings (from its arguments)
// with the policies of vp that match it.
func (vp *vhostPolicies) queuePolicyFor(name string, args amqp.Table, own queuePolicy) *appliedPolicy {
	ap := &appliedPolicy{queuePolicy: own, definition: map[string]any{}}
	if p := best(vp.user, applyQueues, name); p != nil {
		ap.policy = p.Name
		for k, v := range p.Definition {
			ap.definition[k] = v
		}
	}
	if op := best(vp.operator, applyQueues, name); op != nil {
		ap.operator = op.Name
		for k, v := range op.Definition {
			cur, ok := ap.definition[k]
			if !ok || !slices.Contains(numericPolicyKeys, k) {
				ap.definition[k] = v
				continue
			}
			a, _ := jsonInt(cur)
			if b, _ := jsonInt(v); b < a {
				ap.definition[k] = v
			}
		}
	}
	def := ap.definition
	// minOf: the argument and the policy's value, the smaller winning.
	minOf := func(key string, has bool, cur int64, set func(int64)) {
		if n, ok := jsonInt(def[key]); ok && (!has || n < cur) {
			set(n)
		}
	}
	p := &ap.queuePolicy
	minOf("message-ttl", p.ttl >= 0, p.ttl, func(n int64) { p.ttl = n })
	minOf("max-length", p.maxLen >= 0, int64(p.maxLen), func(n int64) { p.maxLen = int(n) })
	minOf("max-length-bytes", p.maxLenBytes >= 0, p.maxLenBytes, func(n int64) { p.maxLenBytes = n })
	minOf("expires", p.expires > 0, p.expires, func(n int64) { p.expires = n })
	minOf("consumer-timeout", p.consumerTimeout >= 0, p.consumerTimeout, func(n int64) { p.consumerTimeout = n })
	if p.quorum {
		// A quorum queue's delivery limit: the smaller of the argument's and
		// the policy's, as RabbitMQ takes it; the default only without
		// either (a negative value is no limit, and the smallest).
		if n, ok := jsonInt(def["delivery-limit"]); ok {
			if arg, given := asInt(args["x-delivery-limit"]); given && arg < n {
				n = arg
			}
			p.deliveryLimit = max(n, -1)
		}
	}
	// The argument wins for the others.
	if s, ok := def["dead-letter-exchange"].(string); ok && !hasArg(args, argDLX) {
		p.dlx, p.hasDLX = s, true
	}
	if s, ok := def["dead-letter-routing-key"].(string); ok && !hasArg(args, "x-dead-letter-routing-key") {
		p.dlrk, p.hasDLRK = s, true
	}
	if s, ok := def["overflow"].(string); ok && !hasArg(args, "x-overflow") {
		p.rejectPublish, p.rejectPublishDLX = s != "drop-head", s == "reject-publish-dlx"
	}
	if s, ok := def["dead-letter-strategy"].(string); ok && !hasArg(args, "x-dead-letter-strategy") {
		p.atLeastOnce = s == "at-least-once"
	}
	return ap
}

func hasArg(args amqp.Table, k string) bool { _, ok := args[k]; return ok }

// exchangePolicy is what the policies make of an exchange.
type exchangePolicy struct {
	policy    string
	alternate string // the policy's alternate-exchange ("": none)
}

// exchangePolicyFor is the policy of vp that applies to exchange name.
func (vp *vhostPolicies) exchangePolicyFor(name string) *exchangePolicy {
	p := best(vp.user, applyExchanges, name)
	if p == nil {
		return nil
	}
	ep := &exchangePolicy{policy: p.Name}
	ep.alternate, _ = p.Definition[argAlternate].(string)
	return ep
}

// ErrPolicyNotFound is a delete of a policy that does not exist.
var ErrPolicyNotFound = errors.New("no such policy")

// PutPolicy validates and stores p (an operator policy with operator) and
// applies the vhost's policies again to its queues and exchanges; created
// is true for a new policy. The vhost must exist (security.ErrNotFound).
func (s *Server) PutPolicy(p security.PolicyDef, operator bool) (created bool, err error) {
	if err := CheckPolicy(&p, operator); err != nil {
		return false, err
	}
	v := s.vhost(p.VHost)
	if v == nil {
		return false, fmt.Errorf("vhost '%s': %w", p.VHost, security.ErrNotFound)
	}
	if created, err = s.sec.PutPolicy(p, operator); err != nil {
		return false, err
	}
	s.policiesChanged(v)
	return created, nil
}

// DeletePolicy removes a policy (an operator policy with operator) and
// applies the vhost's remaining policies again; ErrPolicyNotFound if it
// has none of that name.
func (s *Server) DeletePolicy(vhost, name string, operator bool) error {
	v := s.vhost(vhost)
	if v == nil {
		return ErrPolicyNotFound
	}
	if err := s.sec.DeletePolicy(vhost, name, operator); err != nil {
		if errors.Is(err, security.ErrNotFound) {
			return ErrPolicyNotFound
		}
		return err
	}
	s.policiesChanged(v)
	return nil
}

// policiesChanged applies v's policies again after this node changed
// them; in a cluster the change's apply has done so already, here as on
// every member (securityReplaced).
func (s *Server) policiesChanged(v *VHost) {
	if s.replicating() == nil {
		v.reapplyPolicies()
	}
}

// Policies are vhost's policies (operator policies with operator), sorted
// by name.
func (s *Server) Policies(vhost string, operator bool) []security.PolicyDef {
	return s.sec.Policies(vhost, operator)
}

// reapplyPolicies gives every queue and exchange of v the policies the
// security store now holds. Settings are worked out under v.defsMu (so no
// declare is missed: one after it finds the new policies itself) and
// pushed into the queues after it is released, since a queue's new limits
// may dead-letter messages (a publish). v.policyMu keeps two rounds from
// crossing, so the last to be stored is the last applied.
//
// Locking: takes v.policyMu, then v.defsMu (released), then each queue's
// queue.Classic.mu in turn; called holding no broker lock.
func (v *VHost) reapplyPolicies() {
	v.policyMu.Lock()
	defer v.policyMu.Unlock()
	vp := v.server.policiesOf(v.name)
	type queueUpdate struct {
		q  *Queue
		ap *appliedPolicy
	}
	var updates []queueUpdate
	v.defsMu.Lock()
	for _, q := range v.queues {
		updates = append(updates, queueUpdate{q, vp.queuePolicyFor(q.Name, q.Args, q.own)})
	}
	for _, x := range v.exchanges {
		x.setPolicy(vp.exchangePolicyFor(x.Name))
	}
	v.defsMu.Unlock()
	for _, u := range updates {
		u.q.applyPolicy(u.ap)
	}
}

// applyPolicy makes ap the queue's settings; the core's (limits,
// dead-lettering, expiry) change through its command path, which drops
// what a lower limit leaves over at once.
func (q *Queue) applyPolicy(ap *appliedPolicy) {
	old := q.eff.Swap(ap)
	if c := ap.core(); c != old.core() {
		q.cq.SetPolicy(c)
	}
}

// settings are the queue's effective settings: its arguments merged with
// the policies that apply to it.
func (q *Queue) settings() *queuePolicy { return &q.eff.Load().queuePolicy }

// PolicyInfo is the queue's policy and operator policy ("" for none) and
// their merged definition, as the management API shows them.
func (q *Queue) PolicyInfo() (policy, operator string, definition map[string]any) {
	ap := q.eff.Load()
	return ap.policy, ap.operator, ap.definition
}

// setPolicy records the policy that applies to x (nil: none).
func (x *Exchange) setPolicy(ep *exchangePolicy) { x.policy.Store(ep) }

// Policy is the name of the policy that applies to x ("" for none).
func (x *Exchange) Policy() string {
	if ep := x.policy.Load(); ep != nil {
		return ep.policy
	}
	return ""
}

// alternateName is x's alternate exchange: its argument, else its
// policy's ("": none).
func (x *Exchange) alternateName() string {
	if x.alternate != "" {
		return x.alternate
	}
	if ep := x.policy.Load(); ep != nil {
		return ep.alternate
	}
	return ""
}

// checkImportedPolicies validates the policies and operator policies of d
// before anything of it is imported.
func checkImportedPolicies(d *security.Definitions) error {
	ops, err := d.OperatorPolicies()
	if err != nil {
		return err
	}
	for i, list := range [][]security.PolicyDef{d.Policies, ops} {
		for j := range list {
			p := &list[j]
			if err := CheckPolicy(p, i == 1); err != nil {
				return fmt.Errorf("policies: policy '%s' in vhost '%s': %w", p.Name, p.VHost, err)
			}
		}
	}
	return nil
}

// reapplyAllPolicies applies the stored policies again in every vhost
// (after an import).
func (s *Server) reapplyAllPolicies() {
	for _, v := range s.vhostSnapshot() {
		v.reapplyPolicies()
	}
}
