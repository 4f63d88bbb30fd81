package amqp

import (
	"encoding/binary"
	"strconv"
)

// appendShortstr appends s as a short string. A short string holds at most
// 255 bytes: longer strings are truncated to their first 255 bytes (which may
// split a multi-byte UTF-8 sequence) so that the frame stays well-formed.
func appendShortstr(dst []byte, s string) []byte {
	if len(s) > 255 {
		s = s[:255]
	}
	dst = append(dst, byte(len(s)))
	return append(dst, s...)
}

// appendLongstr appends s as a long string (32-bit length prefix).
func appendLongstr(dst []byte, s string) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(s)))
	return append(dst, s...)
}

// decoder reads method arguments with a sticky error: after the first
// failure every read returns a zero value, and finish reports the failure.
type decoder struct {
	b      []byte
	off    int
	reason string
	// share makes shortstr return substrings of one copy of b (made on the
	// first non-empty string) instead of one allocation per string. The
	// generator sets it only for methods without tables and long strings,
	// whose arguments are small, so the shared copy pins little memory.
	share  bool
	shared string
}

func (d *decoder) fail(field, what string) {
	if d.reason == "" {
		d.reason = "truncated " + what + " argument " + field
	}
}

func (d *decoder) octet(field string) uint8 {
	if d.reason != "" || len(d.b)-d.off < 1 {
		d.fail(field, "octet")
		return 0
	}
	v := d.b[d.off]
	d.off++
	return v
}

func (d *decoder) short(field string) uint16 {
	if d.reason != "" || len(d.b)-d.off < 2 {
		d.fail(field, "short")
		return 0
	}
	v := binary.BigEndian.Uint16(d.b[d.off:])
	d.off += 2
	return v
}

func (d *decoder) long(field string) uint32 {
	if d.reason != "" || len(d.b)-d.off < 4 {
		d.fail(field, "long")
		return 0
	}
	v := binary.BigEndian.Uint32(d.b[d.off:])
	d.off += 4
	return v
}

func (d *decoder) longlong(field string) uint64 {
	if d.reason != "" || len(d.b)-d.off < 8 {
		d.fail(field, "longlong")
		return 0
	}
	v := binary.BigEndian.Uint64(d.b[d.off:])
	d.off += 8
	return v
}

func (d *decoder) shortstr(field string) string {
	if d.reason != "" || len(d.b)-d.off < 1 {
		d.fail(field, "shortstr")
		return ""
	}
	n := int(d.b[d.off])
	if len(d.b)-d.off-1 < n {
		d.fail(field, "shortstr")
		return ""
	}
	var s string
	switch {
	case n == 0:
	case d.share:
		if d.shared == "" {
			d.shared = string(d.b)
		}
		s = d.shared[d.off+1 : d.off+1+n]
	default:
		s = string(d.b[d.off+1 : d.off+1+n])
	}
	d.off += 1 + n
	return s
}

func (d *decoder) longstr(field string) string {
	if d.reason != "" || len(d.b)-d.off < 4 {
		d.fail(field, "longstr")
		return ""
	}
	n := binary.BigEndian.Uint32(d.b[d.off:])
	if uint64(len(d.b)-d.off-4) < uint64(n) {
		d.fail(field, "longstr")
		return ""
	}
	s := string(d.b[d.off+4 : d.off+4+int(n)])
	d.off += 4 + int(n)
	return s
}

func (d *decoder) table(field string) Table {
	if d.reason != "" {
		return nil
	}
	t, n, err := ReadTable(d.b[d.off:])
	if err != nil {
		reason := err.Error()
		if de, ok := err.(*DecodeError); ok {
			reason = de.Reason
		}
		d.reason = "table argument " + field + ": " + reason
		return nil
	}
	d.off += n
	return t
}

// finish returns the first failure, or an error if bytes are left over.
func (d *decoder) finish(classID, methodID uint16) error {
	if d.reason == "" && d.off != len(d.b) {
		d.reason = strconv.Itoa(len(d.b)-d.off) + " trailing octets after the arguments"
	}
	if d.reason != "" {
		return &DecodeError{ClassID: classID, MethodID: methodID, Reason: d.reason}
	}
	return nil
}

func (d *decoder) skipShortstr(field string) {
	if d.reason != "" || len(d.b)-d.off < 1 || len(d.b)-d.off-1 < int(d.b[d.off]) {
		d.fail(field, "shortstr")
		return
	}
	d.off += 1 + int(d.b[d.off])
}
