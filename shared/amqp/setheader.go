package amqp

import (
	"bytes"
	"encoding/binary"
	"slices"
)

// fieldOffset returns where the property of flag starts in raw (property
// flags and list, as in ContentHeader.RawProperties), or where it would
// start if its flag is clear, skipping the properties before it by their
// lengths. ok is false if raw is too short to hold what comes before it.
func fieldOffset(raw []byte, flag uint16) (off int, ok bool) {
	if len(raw) < 2 {
		return 0, false
	}
	flags := binary.BigEndian.Uint16(raw)
	off = 2
	for w := flags; w&flagContinuation != 0; {
		if len(raw)-off < 2 {
			return 0, false
		}
		w = binary.BigEndian.Uint16(raw[off:])
		off += 2
	}
	for f := FlagContentType; f > flag; f >>= 1 {
		if flags&f == 0 {
			continue
		}
		switch f {
		case FlagHeaders:
			if len(raw)-off < 4 {
				return 0, false
			}
			n := binary.BigEndian.Uint32(raw[off:])
			if uint64(n) > uint64(len(raw)-off-4) {
				return 0, false
			}
			off += 4 + int(n)
		case FlagDeliveryMode, FlagPriority:
			off++
		case FlagTimestamp:
			off += 8
		default: // the short strings
			if off >= len(raw) {
				return 0, false
			}
			off += 1 + int(raw[off])
		}
	}
	return off, off <= len(raw)
}

// PeekTimestamp returns the timestamp property of raw (property flags and
// list) without decoding the rest; ok is false if it is absent or raw is
// too short to hold it.
func PeekTimestamp(raw []byte) (ts uint64, ok bool) {
	if len(raw) < 2 || binary.BigEndian.Uint16(raw)&FlagTimestamp == 0 {
		return 0, false
	}
	off, ok := fieldOffset(raw, FlagTimestamp)
	if !ok || len(raw)-off < 8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(raw[off:]), true
}

// headerEntry is one name/value pair of a headers table: its name, and
// where the whole pair is in the properties it was read from (start -1 for
// the entry being set).
type headerEntry struct {
	name       []byte
	start, end int
}

// compareName compares b and s bytewise, as bytes.Compare.
func compareName(b []byte, s string) int {
	for i := 0; i < len(b) && i < len(s); i++ {
		if b[i] != s[i] {
			return int(b[i]) - int(s[i])
		}
	}
	return len(b) - len(s)
}

// AppendWithLongHeader appends raw (property flags and list, as in
// ContentHeader.RawProperties) to dst with the header name set to the
// signed 64-bit integer v (field type 'l', RabbitMQ's long), as RabbitMQ's
// rabbit_basic:add_header sets x-delivery-count: the first entry of that
// name has its value replaced, or one is added; the table's entries then
// come out sorted by name (a stable sort on the bytes, as Erlang's
// lists:keysort); a headers property is added where raw has none. The other
// properties are copied byte for byte. raw must be well-formed, as
// ParseContentHeader checks it: where it is not, ok is false and dst is
// returned as it was.
func AppendWithLongHeader(dst, raw []byte, name string, v int64) (out []byte, ok bool) {
	if len(raw) < 2 || len(name) > 255 {
		return dst, false
	}
	flags := binary.BigEndian.Uint16(raw)
	at, ok := fieldOffset(raw, FlagHeaders)
	if !ok {
		return dst, false
	}
	// The table's entries, and where the properties after it start.
	var stack [16]headerEntry
	entries := stack[:0]
	rest := at
	if flags&FlagHeaders != 0 {
		if len(raw)-at < 4 {
			return dst, false
		}
		size := binary.BigEndian.Uint32(raw[at:])
		if uint64(size) > uint64(len(raw)-at-4) {
			return dst, false
		}
		rest = at + 4 + int(size)
		for off := at + 4; off < rest; {
			klen := int(raw[off])
			voff := off + 1 + klen
			if voff > rest {
				return dst, false
			}
			n, err := skipFieldValue(raw[voff:rest], 0)
			if err != nil {
				return dst, false
			}
			entries = append(entries, headerEntry{name: raw[off+1 : voff], start: off, end: voff + n})
			off = voff + n
		}
	}
	replaced := false
	for i, e := range entries {
		if string(e.name) == name {
			entries[i].start = -1
			replaced = true
			break
		}
	}
	if !replaced {
		entries = append(entries, headerEntry{start: -1})
	}
	// The entry being set is named by name (a []byte copy would escape).
	slices.SortStableFunc(entries, func(a, b headerEntry) int {
		switch {
		case a.start < 0:
			return -compareName(b.name, name)
		case b.start < 0:
			return compareName(a.name, name)
		}
		return bytes.Compare(a.name, b.name)
	})

	start := len(dst)
	dst = binary.BigEndian.AppendUint16(dst, flags|FlagHeaders)
	dst = append(dst, raw[2:at]...)
	sizeAt := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	for _, e := range entries {
		if e.start >= 0 {
			dst = append(dst, raw[e.start:e.end]...)
			continue
		}
		dst = appendShortstr(dst, name)
		dst = append(dst, 'l')
		dst = binary.BigEndian.AppendUint64(dst, uint64(v))
	}
	size := len(dst) - sizeAt - 4
	if uint64(size) > 0xffffffff {
		return dst[:start], false
	}
	binary.BigEndian.PutUint32(dst[sizeAt:], uint32(size))
	return append(dst, raw[rest:]...), true
}

// AppendHeaderFrameWithLongHeader appends a basic-class content header
// frame (weight 0) whose properties are raw with the header name set to v,
// as AppendWithLongHeader sets it; ok is false, and dst is returned as it
// was, where raw is malformed.
func AppendHeaderFrameWithLongHeader(dst []byte, channel uint16, bodySize uint64, raw []byte, name string, v int64) (out []byte, ok bool) {
	start := len(dst)
	dst, sizeAt := appendFrameHeader(dst, FrameHeader, channel)
	dst = binary.BigEndian.AppendUint16(dst, ClassBasic)
	dst = append(dst, 0, 0) // weight
	dst = binary.BigEndian.AppendUint64(dst, bodySize)
	if dst, ok = AppendWithLongHeader(dst, raw, name, v); !ok {
		return dst[:start], false
	}
	return finishFrame(dst, sizeAt), true
}
