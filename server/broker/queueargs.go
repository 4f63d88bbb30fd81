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
}

// parsePolicy validates the arguments RabbitMQ validates, with its texts.
func parsePolicy(m amqp.Method, vhost, queue string, args amqp.Table) (queuePolicy, error) {
	p := queuePolicy{ttl: -1, maxLen: -1, maxLenBytes: -1, consumerTimeout: -1}
	fail := func(arg, detail string) error {
		return protoErr(amqp.PreconditionFailed, m, "invalid arg '%s' for queue '%s' in vhost '%s': %s", arg, queue, vhost, detail)
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
		case s == queueTypeClassic:
		case s == "quorum" || s == "stream":
			// RabbitMQ's types that we do not implement: a clear refusal,
			// never a classic queue in their place.
			return p, fail("x-queue-type", erlangQuoted("queue type '"+s+"' is not supported by this server yet"))
		default:
			return p, fail("x-queue-type", erlangQuoted("unsupported queue type '"+s+"'"))
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

// queueTypeClassic is the one x-queue-type this server implements.
const queueTypeClassic = "classic"

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
