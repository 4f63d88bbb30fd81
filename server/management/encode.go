package management

import (
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"unicode/utf8"
)

// appendJSON appends v as JSON, as encoding/json would write it (object
// keys sorted), without reflection for the values items hold: a listing
// of 10,000 queues is some 600,000 values, and encoding/json's map
// encoder spent most of the time there. Other types go to encoding/json.
func appendJSON(dst []byte, v any) ([]byte, error) {
	var e encoder
	return e.append(dst, v)
}

// encoder remembers the sorted keys of the objects it wrote: the items of
// a listing share a few shapes, and sorting each one's 60 keys anew was a
// third of encoding 10,000 queues.
type encoder struct {
	orders []keyOrder
}

// keyOrder is an object shape: its keys sorted, and each one written as
// JSON with its colon (what writing the keys cost as much again).
type keyOrder struct {
	keys   []string
	quoted [][]byte
}

// sortedKeys returns m's keys in order, reusing a remembered order with
// the same keys.
func (e *encoder) sortedKeys(m map[string]any) *keyOrder {
	for i := range e.orders {
		o := &e.orders[i]
		if len(o.keys) != len(m) {
			continue
		}
		same := true
		for _, k := range o.keys {
			if _, ok := m[k]; !ok {
				same = false
				break
			}
		}
		if same {
			return o
		}
	}
	o := keyOrder{keys: make([]string, 0, len(m))}
	for k := range m {
		o.keys = append(o.keys, k)
	}
	slices.Sort(o.keys)
	for _, k := range o.keys {
		o.quoted = append(o.quoted, append(appendString(nil, k), ':'))
	}
	if len(e.orders) < 8 {
		e.orders = append(e.orders, o)
	}
	return &o
}

func (e *encoder) append(dst []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(dst, "null"...), nil
	case bool:
		return strconv.AppendBool(dst, x), nil
	case string:
		return appendString(dst, x), nil
	case int:
		return strconv.AppendInt(dst, int64(x), 10), nil
	case int64:
		return strconv.AppendInt(dst, x, 10), nil
	case uint64:
		return strconv.AppendUint(dst, x, 10), nil
	case float64:
		return appendFloat(dst, x), nil
	case details:
		dst = append(dst, `{"rate":`...)
		return append(appendFloat(dst, x.Rate), '}'), nil
	case gcStats:
		return append(dst, gcJSON...), nil
	case rangeDetails: // some 200 a queue in a listing with samples
		dst = append(dst, `{"rate":`...)
		dst = append(appendFloat(dst, x.Rate), `,"samples":[`...)
		for i, p := range x.Samples {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = strconv.AppendUint(append(dst, `{"sample":`...), p.Sample, 10)
			dst = append(strconv.AppendInt(append(dst, `,"timestamp":`...), p.Timestamp, 10), '}')
		}
		dst = append(dst, ']')
		if x.AvgRate != nil {
			dst = appendFloat(append(dst, `,"avg_rate":`...), *x.AvgRate)
		}
		if x.Avg != nil {
			dst = appendFloat(append(dst, `,"avg":`...), *x.Avg)
		}
		return append(dst, '}'), nil
	case map[string]any:
		o := e.sortedKeys(x)
		dst = append(dst, '{')
		var err error
		for i, k := range o.keys {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, o.quoted[i]...)
			if dst, err = e.append(dst, x[k]); err != nil {
				return dst, err
			}
		}
		return append(dst, '}'), nil
	case []item:
		dst = append(dst, '[')
		var err error
		for i, it := range x {
			if i > 0 {
				dst = append(dst, ',')
			}
			if dst, err = e.append(dst, it); err != nil {
				return dst, err
			}
		}
		return append(dst, ']'), nil
	}
	b, err := json.Marshal(v)
	return append(dst, b...), err
}

// appendFloat writes a float as encoding/json does for the values seen
// here; NaN and infinities, which JSON lacks, as 0.
func appendFloat(dst []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(dst, '0')
	}
	if f == math.Trunc(f) && math.Abs(f) < 1e21 {
		return strconv.AppendFloat(dst, f, 'f', -1, 64)
	}
	return strconv.AppendFloat(dst, f, 'g', -1, 64)
}

// appendString writes a JSON string: quotes, backslashes and control
// characters escaped; invalid UTF-8 goes to encoding/json, which
// replaces it.
func appendString(dst []byte, s string) []byte {
	if !utf8.ValidString(s) {
		b, _ := json.Marshal(s)
		return append(dst, b...)
	}
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0 // s[start:i] is plain: appended in one piece
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '"' && c != '\\' && c >= 0x20 {
			continue
		}
		dst = append(dst, s[start:i]...)
		if c < 0x20 {
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		} else {
			dst = append(dst, '\\', c)
		}
		start = i + 1
	}
	return append(append(dst, s[start:]...), '"')
}
