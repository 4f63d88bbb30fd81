package broker

import (
	"bytes"
	"strings"
	"time"

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
				"Invalid x-match field value %s; expected all, any, all-with-x, or any-with-x", erlangText(v))
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
		hit := ok && (want == nil || headerValueEqual(want, got))
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

// erlangText renders a field value as RabbitMQ's ~tp does in reply texts:
// strings as Erlang binaries.
func erlangText(v any) string {
	switch x := v.(type) {
	case string:
		return "<<\"" + x + "\">>"
	case []byte:
		return "<<\"" + string(x) + "\">>"
	}
	return fieldText(v)
}

// headerValueEqual compares a binding value with a message header value as
// RabbitMQ's headers exchange does (Erlang ==, types ignored): numbers by
// value across integer, float and timestamp types, longstr and byte arrays
// by content; anything else as fieldEqual.
func headerValueEqual(a, b any) bool {
	if ai, af, ok := asNumber(a); ok {
		bi, bf, ok := asNumber(b)
		switch {
		case !ok:
			return false
		case af == nil && bf == nil:
			return ai == bi
		case af != nil && bf != nil:
			return *af == *bf
		case af != nil:
			return *af == float64(bi)
		default:
			return float64(ai) == *bf
		}
	}
	if as, ok := asText(a); ok {
		bs, ok := asText(b)
		return ok && as == bs
	}
	return fieldEqual(a, b)
}

// asNumber returns an integer (f nil) or a float value.
func asNumber(v any) (i int64, f *float64, ok bool) {
	if i, ok := asInt(v); ok {
		return i, nil, true
	}
	if t, ok := v.(time.Time); ok {
		return t.Unix(), nil, true
	}
	if x, ok := asFloat(v); ok {
		return 0, &x, true
	}
	return 0, nil, false
}

func asText(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case []byte:
		return string(x), true
	}
	return "", false
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
