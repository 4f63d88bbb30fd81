package broker

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/amqp-go/amqp-go/server/store"
	"github.com/amqp-go/amqp-go/shared/amqp"
)

// queuePolicy is what a queue's x- arguments ask of it: message TTL,
// dead-lettering and a length limit.
type queuePolicy struct {
	ttl           int64 // x-message-ttl in ms; -1: none
	dlx           string
	hasDLX        bool
	dlrk          string
	hasDLRK       bool
	maxLen        int   // x-max-length; -1: none
	maxLenBytes   int64 // x-max-length-bytes (ready bodies); -1: none
	expires       int64 // x-expires in ms; 0: none
	maxPriority   int   // x-max-priority; 0: not a priority queue
	singleActive  bool  // x-single-active-consumer
	rejectPublish bool
	// rejectPublishDLX: x-overflow reject-publish-dlx, which also sets
	// rejectPublish; the refused message is dead-lettered too.
	rejectPublishDLX bool
	// consumerTimeout is x-consumer-timeout in ms (-1: none), for the
	// queue's deliveries; a consumer's own argument overrides it.
	consumerTimeout int64
	// quorum: x-queue-type quorum, with its delivery limit (-1: none) and
	// dead-letter strategy (x-dead-letter-strategy: true for
	// at-least-once).
	quorum        bool
	deliveryLimit int64
	atLeastOnce   bool
	// balanced: x-queue-leader-locator balanced (or its old names random
	// and least-leaders); otherwise client-local, RabbitMQ's default.
	balanced bool
}

// defaultDeliveryLimit is a quorum queue's x-delivery-limit when none is
// given: RabbitMQ 4.0's default (3.10 had none).
const defaultDeliveryLimit = 20

// typeArgs are, by queue type, the arguments RabbitMQ knows but refuses
// for that type ("invalid arg ... of queue type rabbit_..._queue").
var typeArgs = map[bool][]string{
	false: {"x-delivery-limit", "x-dead-letter-strategy", "x-quorum-initial-group-size", "x-queue-leader-locator",
		"x-max-in-memory-length", "x-max-in-memory-bytes", "x-max-age", "x-stream-max-segment-size-bytes", "x-initial-cluster-size"},
	true: {"x-max-priority", "x-queue-mode", "x-queue-version", "x-queue-master-locator", "x-max-age",
		"x-stream-max-segment-size-bytes", "x-initial-cluster-size"},
}

// queueTypeModule is a queue type as RabbitMQ's texts name it.
func queueTypeModule(quorum bool) string {
	if quorum {
		return "rabbit_quorum_queue"
	}
	return "rabbit_classic_queue"
}

// isQuorum reports whether args declare a quorum queue.
func isQuorum(args amqp.Table) bool {
	s, ok := args["x-queue-type"].(string)
	return ok && s == queueTypeQuorum
}

// parsePolicy validates the arguments RabbitMQ validates, with its texts.
func parsePolicy(m amqp.Method, vhost, queue string, args amqp.Table) (queuePolicy, error) {
	p := queuePolicy{ttl: -1, maxLen: -1, maxLenBytes: -1, consumerTimeout: -1, quorum: isQuorum(args)}
	fail := func(arg, detail string) error {
		return protoErr(amqp.PreconditionFailed, m, "invalid arg '%s' for queue '%s' in vhost '%s': %s", arg, queue, vhost, detail)
	}
	for _, arg := range typeArgs[p.quorum] {
		if _, given := args[arg]; given {
			return p, protoErr(amqp.PreconditionFailed, m, "invalid arg '%s' for queue '%s' in vhost '%s' of queue type %s",
				arg, queue, vhost, queueTypeModule(p.quorum))
		}
	}
	// intArg reads an integer argument; zeroOK false refuses 0, max < 0
	// means no upper bound.
	intArg := func(arg string, zeroOK bool, max int64, dst func(int64)) error {
		v, ok := args[arg]
		if !ok {
			return nil
		}
		n, isInt := asInt(v)
		switch {
		case !isInt:
			return fail(arg, erlangQuoted("expected integer, got "+fieldTypeName(v)))
		case n < 0:
			return fail(arg, fmt.Sprintf("{value_negative,%d}", n))
		case n == 0 && !zeroOK:
			return fail(arg, "{value_zero,0}")
		case max >= 0 && n > max:
			return fail(arg, fmt.Sprintf("{max_value_exceeded,%d}", n))
		}
		dst(n)
		return nil
	}
	strArg := func(arg string, dst func(string)) error {
		v, ok := args[arg]
		if !ok {
			return nil
		}
		s, isStr := v.(string)
		if !isStr {
			return fail(arg, "{unacceptable_type,"+fieldTypeName(v)+"}")
		}
		dst(s)
		return nil
	}
	for _, err := range []error{
		intArg("x-message-ttl", true, -1, func(n int64) { p.ttl = n }),
		intArg("x-max-length", true, -1, func(n int64) { p.maxLen = int(n) }),
		intArg("x-max-length-bytes", true, -1, func(n int64) { p.maxLenBytes = n }),
		intArg("x-expires", false, -1, func(n int64) { p.expires = n }),
		intArg("x-max-priority", true, 255, func(n int64) { p.maxPriority = int(n) }),
		intArg("x-consumer-timeout", true, -1, func(n int64) { p.consumerTimeout = n }),
		strArg("x-dead-letter-exchange", func(s string) { p.dlx, p.hasDLX = s, true }),
		strArg("x-dead-letter-routing-key", func(s string) { p.dlrk, p.hasDLRK = s, true }),
	} {
		if err != nil {
			return p, err
		}
	}
	if p.hasDLRK && !p.hasDLX {
		return p, fail("x-dead-letter-routing-key", "Key x-dead-letter-exchange should also be set")
	}
	if v, ok := args["x-overflow"]; ok {
		switch s, _ := v.(string); s {
		case "drop-head":
		case "reject-publish":
			p.rejectPublish = true
		case "reject-publish-dlx":
			p.rejectPublish, p.rejectPublishDLX = true, true
		default:
			return p, fail("x-overflow", "{unknown_overflow,"+fieldText(v)+"}")
		}
	}
	// Queues always page to the log beyond a bounded memory budget, so
	// both modes (and both classic queue versions) behave as "lazy".
	if v, ok := args["x-queue-mode"]; ok {
		s, isStr := v.(string)
		switch {
		case !isStr:
			return p, fail("x-queue-mode", "{unacceptable_type,"+fieldTypeName(v)+"}")
		case s != "default" && s != "lazy":
			return p, fail("x-queue-mode", erlangQuoted("unsupported queue mode '"+s+"'"))
		}
	}
	var version int64
	if err := intArg("x-queue-version", true, -1, func(n int64) { version = n }); err != nil {
		return p, err
	}
	if _, ok := args["x-queue-version"]; ok && version != 1 && version != 2 {
		return p, fail("x-queue-version", erlangQuoted(fmt.Sprintf("unsupported queue version '%d'", version)))
	}
	if v, ok := args["x-queue-type"]; ok {
		s, isStr := v.(string)
		switch {
		case !isStr:
			return p, fail("x-queue-type", "{unacceptable_type,"+fieldTypeName(v)+"}")
		case s == queueTypeClassic || s == queueTypeQuorum:
		case s == "stream":
			// RabbitMQ's type that we do not implement: a clear refusal,
			// never a classic queue in its place.
			return p, fail("x-queue-type", erlangQuoted("queue type '"+s+"' is not supported by this server yet"))
		default:
			return p, fail("x-queue-type", erlangQuoted("unsupported queue type '"+s+"'"))
		}
	}
	if p.quorum {
		if err := p.parseQuorum(args, fail, intArg); err != nil {
			return p, err
		}
	}
	if v, ok := args["x-single-active-consumer"]; ok {
		b, isBool := v.(bool)
		if !isBool {
			return p, fail("x-single-active-consumer", "{unacceptable_type,"+fieldTypeName(v)+"}")
		}
		p.singleActive = b
	}
	return p, nil
}

// The x-queue-types this server implements: classic, and quorum with
// quorum queues' semantics on a single node (not replicated yet).
const (
	queueTypeClassic = "classic"
	queueTypeQuorum  = "quorum"
)

// parseQuorum reads a quorum queue's own arguments, as RabbitMQ 3.10
// does: x-delivery-limit (an integer; a negative one is no limit, and
// RabbitMQ ignores one that is not an integer), x-dead-letter-strategy,
// x-quorum-initial-group-size (checked; one node has a group of one),
// x-queue-leader-locator and the in-memory limits (checked, and with one
// node nothing to act on).
func (p *queuePolicy) parseQuorum(args amqp.Table, fail func(arg, detail string) error,
	intArg func(arg string, zeroOK bool, max int64, dst func(int64)) error) error {
	p.deliveryLimit = defaultDeliveryLimit
	if n, isInt := asInt(args["x-delivery-limit"]); isInt {
		p.deliveryLimit = max(n, -1)
	}
	if v, ok := args["x-dead-letter-strategy"]; ok {
		switch s, _ := v.(string); s {
		case "at-most-once":
		case "at-least-once":
			p.atLeastOnce = true
		default:
			return fail("x-dead-letter-strategy", "invalid_dlx_strategy")
		}
	}
	if v, ok := args["x-queue-leader-locator"]; ok {
		switch s, isStr := v.(string); {
		case !isStr:
			return fail("x-queue-leader-locator", "{unacceptable_type,"+fieldTypeName(v)+"}")
		case s != "client-local" && s != "balanced" && s != "random" && s != "least-leaders":
			return fail("x-queue-leader-locator", "invalid_queue_locator_arg")
		default:
			p.balanced = s != "client-local"
		}
	}
	for _, err := range []error{
		intArg("x-quorum-initial-group-size", false, -1, func(int64) {}),
		intArg("x-max-in-memory-length", true, -1, func(int64) {}),
		intArg("x-max-in-memory-bytes", true, -1, func(int64) {}),
	} {
		if err != nil {
			return err
		}
	}
	return nil
}

// erlangQuoted is a string as RabbitMQ's ~p prints it in argument errors.
func erlangQuoted(s string) string {
	if q, ok := erlangString([]byte(s)); ok {
		return q
	}
	return `"` + s + `"`
}

// expiryFor returns when a message pushed now expires (0: never): the
// smaller of the queue's TTL (ttl, -1: none) and the message's expiration
// property.
func expiryFor(ttl int64, m *Message, now int64) int64 {
	if m.hasTTL && (ttl < 0 || m.ttl < ttl) {
		ttl = m.ttl
	}
	if ttl < 0 {
		return 0
	}
	return now + ttl*int64(time.Millisecond)
}

// recoveredExpiry is when a recovered message expires (0: never): the
// smaller of its own deadline and the queue's TTL from its publish time.
func (q *Queue) recoveredExpiry(meta store.Meta) int64 {
	expires := meta.Expires
	if ttl := q.settings().ttl; ttl >= 0 {
		if byQueue := meta.Timestamp + ttl*int64(time.Millisecond); expires == 0 || byQueue < expires {
			expires = byQueue
		}
	}
	return expires
}

// messageTTL reads the expiration property (milliseconds as a string).
func messageTTL(p *amqp.Properties) (int64, bool) {
	if p.Flags&amqp.FlagExpiration == 0 {
		return 0, false
	}
	n, err := strconv.ParseInt(p.Expiration, 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

// errQueueFull nacks a publish refused by a full reject-publish queue.
var errQueueFull = errors.New("queue full (x-overflow reject-publish)")
