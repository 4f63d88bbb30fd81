package amqp

import (
	"encoding/binary"
	"strconv"
)

// Presence bits of the basic class content properties, in wire order. Bit 0
// (0x0001) is the continuation bit, bit 1 (0x0002) is unused.
const (
	FlagContentType     uint16 = 0x8000
	FlagContentEncoding uint16 = 0x4000
	FlagHeaders         uint16 = 0x2000
	FlagDeliveryMode    uint16 = 0x1000
	FlagPriority        uint16 = 0x0800
	FlagCorrelationID   uint16 = 0x0400
	FlagReplyTo         uint16 = 0x0200
	FlagExpiration      uint16 = 0x0100
	FlagMessageID       uint16 = 0x0080
	FlagTimestamp       uint16 = 0x0040
	FlagType            uint16 = 0x0020
	FlagUserID          uint16 = 0x0010
	FlagAppID           uint16 = 0x0008
	FlagClusterID       uint16 = 0x0004
)

// flagContinuation marks that another property flags word follows.
const flagContinuation uint16 = 0x0001

// Properties are the basic class content properties.
type Properties struct {
	// Flags holds the presence bits (FlagContentType, ...) exactly as in the
	// first flags word on the wire, except the continuation bit. Decode sets
	// it; Append writes the fields whose bits are set, whatever their
	// values, and no others.
	Flags uint16

	ContentType, ContentEncoding string
	Headers                      Table
	DeliveryMode, Priority       uint8
	CorrelationID, ReplyTo       string
	Expiration, MessageID        string
	Timestamp                    uint64
	Type, UserID, AppID          string
	// ClusterID is the deprecated cluster-id property (called "reserved" in
	// the spec XML).
	ClusterID string
}

// Decode decodes raw, the property flags word(s) followed by the property
// list as in a content header, into p, replacing all of p's fields. A set
// continuation bit chains further flags words: these are accepted only if
// they are zero (there are no further properties in 0-9-1). Errors are of
// type *DecodeError; nothing in p aliases raw.
func (p *Properties) Decode(raw []byte) error {
	*p = Properties{}
	return walkProperties(raw, p)
}

// validateProperties checks raw exactly as Decode does without building the
// properties, and so without allocating.
func validateProperties(raw []byte) error {
	return walkProperties(raw, nil)
}

// walkProperties parses raw, storing the fields into p unless p is nil.
func walkProperties(raw []byte, p *Properties) error {
	if len(raw) < 2 {
		return &DecodeError{ClassID: ClassBasic, Reason: "truncated property flags"}
	}
	flags := binary.BigEndian.Uint16(raw)
	d := decoder{b: raw, off: 2}
	for w := flags; w&flagContinuation != 0; {
		if len(raw)-d.off < 2 {
			return &DecodeError{ClassID: ClassBasic, Reason: "truncated property flags continuation word"}
		}
		w = binary.BigEndian.Uint16(raw[d.off:])
		d.off += 2
		if w&^flagContinuation != 0 {
			return &DecodeError{ClassID: ClassBasic, Reason: "unknown property flags 0x" + strconv.FormatUint(uint64(w), 16) + " in continuation word"}
		}
	}
	if p == nil {
		p = &Properties{} // does not escape; only its string fields are written
		return walkInto(&d, flags, p, false)
	}
	p.Flags = flags &^ flagContinuation
	return walkInto(&d, flags, p, true)
}

func walkInto(d *decoder, flags uint16, p *Properties, build bool) error {
	str := func(field string) string {
		if build {
			return d.shortstr(field)
		}
		d.skipShortstr(field)
		return ""
	}
	if flags&FlagContentType != 0 {
		p.ContentType = str("content-type")
	}
	if flags&FlagContentEncoding != 0 {
		p.ContentEncoding = str("content-encoding")
	}
	if flags&FlagHeaders != 0 && d.reason == "" {
		if build {
			p.Headers = d.table("headers")
		} else {
			n, err := skipTable(d.b[d.off:], 0)
			if err != nil {
				d.reason = "table argument headers: " + err.(*DecodeError).Reason
			}
			d.off += n
		}
	}
	if flags&FlagDeliveryMode != 0 {
		p.DeliveryMode = d.octet("delivery-mode")
	}
	if flags&FlagPriority != 0 {
		p.Priority = d.octet("priority")
	}
	if flags&FlagCorrelationID != 0 {
		p.CorrelationID = str("correlation-id")
	}
	if flags&FlagReplyTo != 0 {
		p.ReplyTo = str("reply-to")
	}
	if flags&FlagExpiration != 0 {
		p.Expiration = str("expiration")
	}
	if flags&FlagMessageID != 0 {
		p.MessageID = str("message-id")
	}
	if flags&FlagTimestamp != 0 {
		p.Timestamp = d.longlong("timestamp")
	}
	if flags&FlagType != 0 {
		p.Type = str("type")
	}
	if flags&FlagUserID != 0 {
		p.UserID = str("user-id")
	}
	if flags&FlagAppID != 0 {
		p.AppID = str("app-id")
	}
	if flags&FlagClusterID != 0 {
		p.ClusterID = str("cluster-id")
	}
	return d.finish(ClassBasic, 0)
}

// Append appends the property flags (p.Flags without the continuation bit)
// and the properties whose flags are set, in spec order. Short strings longer
// than 255 bytes are truncated; a set FlagHeaders with nil Headers encodes an
// empty table. It panics if Headers holds a value AppendTable cannot encode.
func (p *Properties) Append(dst []byte) []byte {
	f := p.Flags &^ flagContinuation
	dst = binary.BigEndian.AppendUint16(dst, f)
	if f&FlagContentType != 0 {
		dst = appendShortstr(dst, p.ContentType)
	}
	if f&FlagContentEncoding != 0 {
		dst = appendShortstr(dst, p.ContentEncoding)
	}
	if f&FlagHeaders != 0 {
		dst = AppendTable(dst, p.Headers)
	}
	if f&FlagDeliveryMode != 0 {
		dst = append(dst, p.DeliveryMode)
	}
	if f&FlagPriority != 0 {
		dst = append(dst, p.Priority)
	}
	if f&FlagCorrelationID != 0 {
		dst = appendShortstr(dst, p.CorrelationID)
	}
	if f&FlagReplyTo != 0 {
		dst = appendShortstr(dst, p.ReplyTo)
	}
	if f&FlagExpiration != 0 {
		dst = appendShortstr(dst, p.Expiration)
	}
	if f&FlagMessageID != 0 {
		dst = appendShortstr(dst, p.MessageID)
	}
	if f&FlagTimestamp != 0 {
		dst = binary.BigEndian.AppendUint64(dst, p.Timestamp)
	}
	if f&FlagType != 0 {
		dst = appendShortstr(dst, p.Type)
	}
	if f&FlagUserID != 0 {
		dst = appendShortstr(dst, p.UserID)
	}
	if f&FlagAppID != 0 {
		dst = appendShortstr(dst, p.AppID)
	}
	if f&FlagClusterID != 0 {
		dst = appendShortstr(dst, p.ClusterID)
	}
	return dst
}

// PeekDeliveryMode returns the delivery-mode property of raw (property flags
// and list, as in ContentHeader.RawProperties) without decoding the rest:
// it skips the content-type and content-encoding strings and the headers
// table by their lengths. It returns 0 if the property is absent or raw is
// too short to hold it.
func PeekDeliveryMode(raw []byte) uint8 {
	if len(raw) < 2 || binary.BigEndian.Uint16(raw)&FlagDeliveryMode == 0 {
		return 0
	}
	off, ok := fieldOffset(raw, FlagDeliveryMode)
	if !ok || off >= len(raw) {
		return 0
	}
	return raw[off]
}

// ContentHeader is a parsed content header frame payload.
type ContentHeader struct {
	ClassID  uint16
	Weight   uint16
	BodySize uint64
	// RawProperties is the property flags and property list exactly as on
	// the wire; it aliases the payload passed to ParseContentHeader.
	RawProperties []byte
}

// ParseContentHeader parses a content header frame payload. It checks that
// the properties are well-formed basic properties (the only content class in
// 0-9-1), as Properties.Decode would, but without building them and without
// allocating, so broken tables are caught here. Errors are *DecodeError with
// ClassID set to the header's class (when present) and MethodID 0.
func ParseContentHeader(payload []byte) (ContentHeader, error) {
	if len(payload) < 14 {
		var classID uint16
		if len(payload) >= 2 {
			classID = binary.BigEndian.Uint16(payload)
		}
		return ContentHeader{}, &DecodeError{ClassID: classID,
			Reason: "content header payload of " + strconv.Itoa(len(payload)) + " octets is shorter than 14 octets"}
	}
	h := ContentHeader{
		ClassID:       binary.BigEndian.Uint16(payload),
		Weight:        binary.BigEndian.Uint16(payload[2:]),
		BodySize:      binary.BigEndian.Uint64(payload[4:]),
		RawProperties: payload[12:],
	}
	if err := validateProperties(h.RawProperties); err != nil {
		if de, ok := err.(*DecodeError); ok {
			de.ClassID = h.ClassID
		}
		return ContentHeader{}, err
	}
	return h, nil
}
