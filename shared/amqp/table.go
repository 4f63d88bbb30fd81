package amqp

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"time"
)

// Table is an AMQP field table. Values are of the Go types listed at
// ReadFieldValue; AppendFieldValue lists the Go types it can encode.
type Table map[string]any

// Decimal is an AMQP decimal value ('D'): Value / 10^Scale.
type Decimal struct {
	Scale uint8
	Value int32
}

// MaxTableDepth is how deeply tables and arrays may nest inside one another
// when decoding. Deeper input is rejected, so hostile input cannot exhaust
// the stack.
const MaxTableDepth = 128

func tableErr(format string, args ...any) error {
	return &DecodeError{Reason: fmt.Sprintf(format, args...)}
}

// ReadTable reads a field table (32-bit length, then name/value pairs) from
// the start of b and returns it with the number of bytes consumed. An empty
// table decodes as a nil Table. Lengths are checked against the remaining
// input before anything is allocated and nesting is limited to
// MaxTableDepth. Errors are of type *DecodeError. Nothing in the result
// aliases b.
func ReadTable(b []byte) (t Table, n int, err error) {
	return readTable(b, 0)
}

func readTable(b []byte, depth int) (Table, int, error) {
	if depth > MaxTableDepth {
		return nil, 0, tableErr("field tables nested deeper than %d", MaxTableDepth)
	}
	if len(b) < 4 {
		return nil, 0, tableErr("truncated field table length")
	}
	size := binary.BigEndian.Uint32(b)
	if uint64(size) > uint64(len(b)-4) {
		return nil, 0, tableErr("field table length %d exceeds the %d remaining octets", size, len(b)-4)
	}
	body := b[4 : 4+int(size)]
	if len(body) == 0 {
		return nil, 4, nil
	}
	t := make(Table)
	for off := 0; off < len(body); {
		klen := int(body[off])
		off++
		if len(body)-off < klen {
			return nil, 0, tableErr("truncated field table key")
		}
		key := string(body[off : off+klen])
		off += klen
		v, vn, err := readFieldValue(body[off:], depth)
		if err != nil {
			return nil, 0, err
		}
		off += vn
		t[key] = v
	}
	return t, 4 + int(size), nil
}

// ReadArray reads a field array (32-bit length, then values) from the start
// of b and returns it with the number of bytes consumed. An empty array
// decodes as a nil slice. Errors are of type *DecodeError.
func ReadArray(b []byte) ([]any, int, error) {
	return readArray(b, 0)
}

func readArray(b []byte, depth int) ([]any, int, error) {
	if depth > MaxTableDepth {
		return nil, 0, tableErr("field arrays nested deeper than %d", MaxTableDepth)
	}
	if len(b) < 4 {
		return nil, 0, tableErr("truncated field array length")
	}
	size := binary.BigEndian.Uint32(b)
	if uint64(size) > uint64(len(b)-4) {
		return nil, 0, tableErr("field array length %d exceeds the %d remaining octets", size, len(b)-4)
	}
	body := b[4 : 4+int(size)]
	var a []any
	for off := 0; off < len(body); {
		v, vn, err := readFieldValue(body[off:], depth)
		if err != nil {
			return nil, 0, err
		}
		off += vn
		a = append(a, v)
	}
	return a, 4 + int(size), nil
}

// ReadFieldValue reads one field value (type octet, then the value) from the
// start of b and returns it with the number of bytes consumed. Wire types map
// to Go types exactly as in github.com/rabbitmq/amqp091-go, plus the RabbitMQ
// unsigned types 'u' and 'i':
//
//	't' bool        'b' int8      'B' uint8     's' int16     'u' uint16
//	'I' int32       'i' uint32    'l' int64     'f' float32   'd' float64
//	'D' Decimal     'S' string    'x' []byte    'A' []any     'T' time.Time (UTC, whole seconds)
//	'F' Table       'V' nil
//
// Errors are of type *DecodeError.
func ReadFieldValue(b []byte) (any, int, error) {
	return readFieldValue(b, 0)
}

func readFieldValue(b []byte, depth int) (any, int, error) {
	if len(b) < 1 {
		return nil, 0, tableErr("truncated field value type")
	}
	typ := b[0]
	p := b[1:]
	need := fixedSize(typ)
	if need > 0 && len(p) < need {
		return nil, 0, tableErr("truncated field value of type %q", typ)
	}
	switch typ {
	case 't':
		return p[0] != 0, 2, nil
	case 'b':
		return int8(p[0]), 2, nil
	case 'B':
		return p[0], 2, nil
	case 's':
		return int16(binary.BigEndian.Uint16(p)), 3, nil
	case 'u':
		return binary.BigEndian.Uint16(p), 3, nil
	case 'I':
		return int32(binary.BigEndian.Uint32(p)), 5, nil
	case 'i':
		return binary.BigEndian.Uint32(p), 5, nil
	case 'l':
		return int64(binary.BigEndian.Uint64(p)), 9, nil
	case 'f':
		return math.Float32frombits(binary.BigEndian.Uint32(p)), 5, nil
	case 'd':
		return math.Float64frombits(binary.BigEndian.Uint64(p)), 9, nil
	case 'D':
		return Decimal{Scale: p[0], Value: int32(binary.BigEndian.Uint32(p[1:]))}, 6, nil
	case 'T':
		return time.Unix(int64(binary.BigEndian.Uint64(p)), 0).UTC(), 9, nil
	case 'V':
		return nil, 1, nil
	case 'S', 'x':
		if len(p) < 4 {
			return nil, 0, tableErr("truncated field value of type %q", typ)
		}
		n := binary.BigEndian.Uint32(p)
		if uint64(n) > uint64(len(p)-4) {
			return nil, 0, tableErr("field value of type %q: length %d exceeds the %d remaining octets", typ, n, len(p)-4)
		}
		if typ == 'S' {
			return string(p[4 : 4+int(n)]), 5 + int(n), nil
		}
		return slices.Clone(p[4 : 4+int(n) : 4+int(n)]), 5 + int(n), nil
	case 'A':
		a, n, err := readArray(p, depth+1)
		if err != nil {
			return nil, 0, err
		}
		return a, 1 + n, nil
	case 'F':
		t, n, err := readTable(p, depth+1)
		if err != nil {
			return nil, 0, err
		}
		return t, 1 + n, nil
	}
	return nil, 0, tableErr("unknown field value type %q", typ)
}

// fixedSize returns the size of a fixed-size value of wire type typ, or 0.
func fixedSize(typ byte) int {
	switch typ {
	case 't', 'b', 'B':
		return 1
	case 's', 'u':
		return 2
	case 'I', 'i', 'f':
		return 4
	case 'l', 'd', 'T':
		return 8
	case 'D':
		return 5
	}
	return 0
}

// skipTable validates a field table at the start of b without building it,
// with exactly the checks of readTable, and returns its encoded size.
func skipTable(b []byte, depth int) (int, error) {
	if depth > MaxTableDepth {
		return 0, tableErr("field tables nested deeper than %d", MaxTableDepth)
	}
	if len(b) < 4 {
		return 0, tableErr("truncated field table length")
	}
	size := binary.BigEndian.Uint32(b)
	if uint64(size) > uint64(len(b)-4) {
		return 0, tableErr("field table length %d exceeds the %d remaining octets", size, len(b)-4)
	}
	body := b[4 : 4+int(size)]
	for off := 0; off < len(body); {
		klen := int(body[off])
		off++
		if len(body)-off < klen {
			return 0, tableErr("truncated field table key")
		}
		off += klen
		vn, err := skipFieldValue(body[off:], depth)
		if err != nil {
			return 0, err
		}
		off += vn
	}
	return 4 + int(size), nil
}

func skipArray(b []byte, depth int) (int, error) {
	if depth > MaxTableDepth {
		return 0, tableErr("field arrays nested deeper than %d", MaxTableDepth)
	}
	if len(b) < 4 {
		return 0, tableErr("truncated field array length")
	}
	size := binary.BigEndian.Uint32(b)
	if uint64(size) > uint64(len(b)-4) {
		return 0, tableErr("field array length %d exceeds the %d remaining octets", size, len(b)-4)
	}
	body := b[4 : 4+int(size)]
	for off := 0; off < len(body); {
		vn, err := skipFieldValue(body[off:], depth)
		if err != nil {
			return 0, err
		}
		off += vn
	}
	return 4 + int(size), nil
}

func skipFieldValue(b []byte, depth int) (int, error) {
	if len(b) < 1 {
		return 0, tableErr("truncated field value type")
	}
	typ := b[0]
	p := b[1:]
	if need := fixedSize(typ); need > 0 {
		if len(p) < need {
			return 0, tableErr("truncated field value of type %q", typ)
		}
		return 1 + need, nil
	}
	switch typ {
	case 'V':
		return 1, nil
	case 'S', 'x':
		if len(p) < 4 {
			return 0, tableErr("truncated field value of type %q", typ)
		}
		n := binary.BigEndian.Uint32(p)
		if uint64(n) > uint64(len(p)-4) {
			return 0, tableErr("field value of type %q: length %d exceeds the %d remaining octets", typ, n, len(p)-4)
		}
		return 5 + int(n), nil
	case 'A':
		n, err := skipArray(p, depth+1)
		return 1 + n, err
	case 'F':
		n, err := skipTable(p, depth+1)
		return 1 + n, err
	}
	return 0, tableErr("unknown field value type %q", typ)
}

// AppendTable appends t as a field table (32-bit length, then name/value
// pairs) with keys in sorted order, so equal tables encode identically. A nil
// Table encodes as an empty table. Keys longer than 255 bytes are truncated
// (see ValidateTable). It panics on a value AppendFieldValue cannot encode.
func AppendTable(dst []byte, t Table) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	switch len(t) {
	case 0:
	case 1:
		for k, v := range t {
			dst = appendShortstr(dst, k)
			dst = AppendFieldValue(dst, v)
		}
	default:
		var buf [16]string
		keys := buf[:0]
		for k := range t {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			dst = appendShortstr(dst, k)
			dst = AppendFieldValue(dst, t[k])
		}
	}
	binary.BigEndian.PutUint32(dst[start:], uint32(len(dst)-start-4))
	return dst
}

// AppendArray appends a as a field array (32-bit length, then values). It
// panics on a value AppendFieldValue cannot encode.
func AppendArray(dst []byte, a []any) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	for _, v := range a {
		dst = AppendFieldValue(dst, v)
	}
	binary.BigEndian.PutUint32(dst[start:], uint32(len(dst)-start-4))
	return dst
}

// AppendFieldValue appends v as a field value (type octet, then the value).
// It encodes every type ReadFieldValue returns as the same wire type, so
// decoded tables re-encode unchanged, and mirrors
// github.com/rabbitmq/amqp091-go's encoder for the other Go types:
//
//	bool 't'        int8 'b'      uint8 'B'     int16 's'     uint16 'u'
//	int32 'I'       uint32 'i'    int64 'l'     float32 'f'   float64 'd'
//	Decimal 'D'     string 'S'    []byte 'x'    []any 'A'     time.Time 'T' (Unix seconds)
//	Table, map[string]any 'F'     nil 'V'
//	int 'I' like amqp091-go when it fits in an int32, otherwise 'l'
//	    (amqp091-go would silently truncate it to 32 bits)
//
// Use int64 for values that RabbitMQ sends as 'l' (e.g. the x-death count).
// Any other Go type makes AppendFieldValue panic: only the server builds
// tables from Go values, and ValidateTable checks a table beforehand.
func AppendFieldValue(dst []byte, v any) []byte {
	switch v := v.(type) {
	case nil:
		return append(dst, 'V')
	case bool:
		if v {
			return append(dst, 't', 1)
		}
		return append(dst, 't', 0)
	case int8:
		return append(dst, 'b', byte(v))
	case uint8:
		return append(dst, 'B', v)
	case int16:
		return binary.BigEndian.AppendUint16(append(dst, 's'), uint16(v))
	case uint16:
		return binary.BigEndian.AppendUint16(append(dst, 'u'), v)
	case int32:
		return binary.BigEndian.AppendUint32(append(dst, 'I'), uint32(v))
	case uint32:
		return binary.BigEndian.AppendUint32(append(dst, 'i'), v)
	case int:
		if v >= math.MinInt32 && v <= math.MaxInt32 {
			return binary.BigEndian.AppendUint32(append(dst, 'I'), uint32(int32(v)))
		}
		return binary.BigEndian.AppendUint64(append(dst, 'l'), uint64(v))
	case int64:
		return binary.BigEndian.AppendUint64(append(dst, 'l'), uint64(v))
	case float32:
		return binary.BigEndian.AppendUint32(append(dst, 'f'), math.Float32bits(v))
	case float64:
		return binary.BigEndian.AppendUint64(append(dst, 'd'), math.Float64bits(v))
	case Decimal:
		return binary.BigEndian.AppendUint32(append(dst, 'D', v.Scale), uint32(v.Value))
	case string:
		return appendLongstr(append(dst, 'S'), v)
	case []byte:
		dst = binary.BigEndian.AppendUint32(append(dst, 'x'), uint32(len(v)))
		return append(dst, v...)
	case []any:
		return AppendArray(append(dst, 'A'), v)
	case time.Time:
		return binary.BigEndian.AppendUint64(append(dst, 'T'), uint64(v.Unix()))
	case Table:
		return AppendTable(append(dst, 'F'), v)
	case map[string]any:
		return AppendTable(append(dst, 'F'), Table(v))
	}
	panic(fmt.Sprintf("amqp: AppendFieldValue: cannot encode a field value of Go type %T", v))
}

// ValidateTable reports the first problem that would keep AppendTable from
// encoding t faithfully: a value of a Go type AppendFieldValue cannot encode,
// a key longer than 255 bytes, or nesting deeper than MaxTableDepth.
func ValidateTable(t Table) error {
	return validateTable(t, 0)
}

func validateTable(t Table, depth int) error {
	if depth > MaxTableDepth {
		return fmt.Errorf("amqp: field tables nested deeper than %d", MaxTableDepth)
	}
	for k, v := range t {
		if len(k) > 255 {
			return fmt.Errorf("amqp: field table key of %d bytes is longer than 255 bytes: %.40q", len(k), k)
		}
		if err := validateValue(v, depth); err != nil {
			return fmt.Errorf("%w (key %q)", err, k)
		}
	}
	return nil
}

func validateValue(v any, depth int) error {
	switch v := v.(type) {
	case nil, bool, int8, uint8, int16, uint16, int32, uint32, int, int64,
		float32, float64, Decimal, string, []byte, time.Time:
		return nil
	case []any:
		if depth+1 > MaxTableDepth {
			return fmt.Errorf("amqp: field arrays nested deeper than %d", MaxTableDepth)
		}
		for _, e := range v {
			if err := validateValue(e, depth+1); err != nil {
				return err
			}
		}
		return nil
	case Table:
		return validateTable(v, depth+1)
	case map[string]any:
		return validateTable(Table(v), depth+1)
	}
	return fmt.Errorf("amqp: cannot encode a field value of Go type %T", v)
}
