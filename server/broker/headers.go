package broker

import (
	"bytes"
	"strings"

	"github.com/amqp-go/amqp-go/shared/amqp"
)

// headersRouter matches message headers against binding arguments, as
// RabbitMQ's headers exchange does.
type headersRouter struct{ all []*binding }

func (r *headersRouter) add(b *binding)    { r.all = append(r.all, b) }
func (r *headersRouter) remove(b *binding) { r.all = removeBinding(r.all, b) }

func (r *headersRouter) route(_ *Message, p *lazyProps, out []*binding) []*binding {
	if len(r.all) == 0 {
		return out
	}
	h := p.get()
	for _, b := range r.all {
		if b.match.matches(h) {
			out = append(out, b)
		}
	}
	return out
}

// headersMatch is a compiled x-match rule.
type headersMatch struct {
	any    bool // any rather than all
	withX  bool // x- prefixed keys take part
	fields amqp.Table
}

// compileHeadersMatch validates a binding's x-match argument.
func compileHeadersMatch(args amqp.Table) (*headersMatch, error) {
	hm := &headersMatch{fields: args}
	if v, ok := args["x-match"]; ok {
		s, isStr := v.(string)
		switch {
		case isStr && s == "all":
		case isStr && s == "any":
			hm.any = true
		case isStr && s == "all-with-x":
			hm.withX = true
		case isStr && s == "any-with-x":
			hm.any, hm.withX = true, true
		default:
			return nil, protoErr(amqp.PreconditionFailed, nil,
				"Invalid x-match field value %s; expected all, any, all-with-x, or any-with-x", fieldText(v))
		}
	}
	return hm, nil
}

func (hm *headersMatch) matches(h amqp.Table) bool {
	for k, want := range hm.fields {
		if k == "x-match" || (!hm.withX && strings.HasPrefix(k, "x-")) {
			continue
		}
		got, ok := h[k]
		hit := ok && (want == nil || fieldEqual(want, got))
		if hm.any && hit {
			return true
		}
		if !hm.any && !hit {
			return false
		}
	}
	// all over no fields matches everything; any over none matches nothing.
	return !hm.any
}

// fieldEqual compares field values by RabbitMQ's type classes: integers by
// value whatever their width, floats likewise, everything else by type and
// value.
func fieldEqual(a, b any) bool {
	if ai, ok := asInt(a); ok {
		bi, ok := asInt(b)
		return ok && ai == bi
	}
	if af, ok := asFloat(a); ok {
		bf, ok := asFloat(b)
		return ok && af == bf
	}
	switch av := a.(type) {
	case []byte:
		bv, ok := b.([]byte)
		return ok && bytes.Equal(av, bv)
	case string:
		bv, ok := b.(string)
		return ok && av == bv
	case bool:
		bv, ok := b.(bool)
		return ok && av == bv
	case nil:
		return b == nil
	}
	return string(amqp.AppendFieldValue(nil, a)) == string(amqp.AppendFieldValue(nil, b))
}

func asInt(v any) (int64, bool) {
	switch x := v.(type) {
	case int8:
		return int64(x), true
	case uint8:
		return int64(x), true
	case int16:
		return int64(x), true
	case uint16:
		return int64(x), true
	case int32:
		return int64(x), true
	case uint32:
		return int64(x), true
	case int64:
		return x, true
	case int:
		return int64(x), true
	}
	return 0, false
}

func asFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case float32:
		return float64(x), true
	case float64:
		return x, true
	}
	return 0, false
}
