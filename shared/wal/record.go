package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// RecordType identifies the kind of a log record.
type RecordType uint8

// Record types. See doc.go for their payloads.
const (
	RecordMessage   RecordType = 1
	RecordAck       RecordType = 2
	RecordDropQueue RecordType = 3
	// The Raft log's records (a RecordLog of package raftlog), never
	// found in a message log.
	RecordRaftEntries   RecordType = 4
	RecordRaftHardState RecordType = 5
	RecordRaftSnapshot  RecordType = 6
	RecordRaftCompact   RecordType = 7
	RecordRaftDrop      RecordType = 8
)

// String returns the record type's name ("message", "ack", ...).
func (t RecordType) String() string {
	switch t {
	case RecordMessage:
		return "message"
	case RecordAck:
		return "ack"
	case RecordDropQueue:
		return "drop-queue"
	case RecordRaftEntries:
		return "raft-entries"
	case RecordRaftHardState:
		return "raft-hard-state"
	case RecordRaftSnapshot:
		return "raft-snapshot"
	case RecordRaftCompact:
		return "raft-compact"
	case RecordRaftDrop:
		return "raft-drop"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

const (
	// RecordHeaderSize is the size of a record's length and CRC fields.
	RecordHeaderSize = 8
	// recordVersion is the payload version of ack and drop-queue records,
	// and of message records without metadata.
	recordVersion = 1
	// messageVersionMeta is a message record with a metadata block (see
	// doc.go). Version 1 message records are still read and written.
	messageVersionMeta = 2
	// MaxRecordSize caps one record (header included). Larger lengths found
	// on disk are corruption and are never allocated.
	MaxRecordSize = 256 << 20
	// maxQueuesPerRecord bounds the queue list of one message record.
	maxQueuesPerRecord = 1 << 16
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

var errDecode = errors.New("wal: malformed record payload")

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

// knownVersion reports whether this package reads records of type t and
// version v.
func knownVersion(t RecordType, v uint8) bool {
	switch t {
	case RecordMessage:
		return v == recordVersion || v == messageVersionMeta
	case RecordAck, RecordDropQueue:
		return v == recordVersion
	}
	return false
}

// Metadata block flags: a set bit means its value follows, in bit order.
// Readers stop at the first bit they do not know and skip the rest of the
// block, so a later field can be added without a new version.
const (
	metaTimestamp = 1 << iota
	metaExpires
	metaDue
	metaPriority
)

// metaValues lists the fields of m in flag-bit order.
func metaValues(m *Meta) [4]uint64 {
	return [4]uint64{uint64(m.Timestamp), uint64(m.Expires), uint64(m.Due), uint64(m.Priority)}
}

// metaBlockSize is the size of m's block without its length prefix.
func metaBlockSize(m *Meta) (flags uint64, n int) {
	for i, v := range metaValues(m) {
		if v != 0 {
			flags |= 1 << i
			n += uvarintLen(v)
		}
	}
	return flags, n + uvarintLen(flags)
}

func appendMeta(buf []byte, m *Meta) []byte {
	flags, n := metaBlockSize(m)
	buf = binary.AppendUvarint(buf, uint64(n))
	buf = binary.AppendUvarint(buf, flags)
	for i, v := range metaValues(m) {
		if flags&(1<<i) != 0 {
			buf = binary.AppendUvarint(buf, v)
		}
	}
	return buf
}

func decodeMeta(block []byte) (Meta, error) {
	r := payloadReader{b: block}
	flags := r.uvarint()
	var v [4]uint64
	for i := range v {
		if flags&(1<<i) != 0 {
			v[i] = r.uvarint()
		}
	}
	if r.err || v[3] > 255 {
		return Meta{}, errDecode
	}
	return Meta{Timestamp: int64(v[0]), Expires: int64(v[1]), Due: int64(v[2]), Priority: uint8(v[3])}, nil
}

// knownRaftVersion is knownVersion of a RecordLog, which holds the Raft
// record types only: a message log and a Raft log never read each other's
// records as valid.
func knownRaftVersion(t RecordType, v uint8) bool {
	return t >= RecordRaftEntries && t <= RecordRaftDrop && v == recordVersion
}

// messageVersion is the record version AppendMessageRecord writes for m:
// the older, smaller one when there is no metadata to carry.
func messageVersion(m *Message) uint8 {
	if m.Meta == (Meta{}) {
		return recordVersion
	}
	return messageVersionMeta
}

// messageRecordSize returns the encoded size of m, header included.
func messageRecordSize(m *Message) int {
	n := RecordHeaderSize + 2 + uvarintLen(m.ID) + uvarintLen(uint64(len(m.Queues)))
	for _, q := range m.Queues {
		n += uvarintLen(q)
	}
	if messageVersion(m) == messageVersionMeta {
		_, mn := metaBlockSize(&m.Meta)
		n += uvarintLen(uint64(mn)) + mn
	}
	n += uvarintLen(uint64(len(m.Exchange))) + len(m.Exchange)
	n += uvarintLen(uint64(len(m.RoutingKey))) + len(m.RoutingKey)
	n += uvarintLen(uint64(len(m.Properties))) + len(m.Properties)
	return n + len(m.Body)
}

// beginRecord appends a record header placeholder plus type and version.
func beginRecord(buf []byte, t RecordType, ver uint8) ([]byte, int) {
	start := len(buf)
	buf = append(buf, 0, 0, 0, 0, 0, 0, 0, 0, byte(t), ver)
	return buf, start
}

// finishRecord fills in length and CRC of the record starting at start.
func finishRecord(buf []byte, start int) []byte {
	body := buf[start+RecordHeaderSize:]
	binary.LittleEndian.PutUint32(buf[start:], uint32(len(body)))
	binary.LittleEndian.PutUint32(buf[start+4:], crc32.Checksum(body, castagnoli))
	return buf
}

// AppendMessageRecord appends the encoded message record of m (with m.ID as
// set) to buf and returns the extended buffer: version 2 if m.Meta is set,
// else version 1.
func AppendMessageRecord(buf []byte, m *Message) []byte {
	buf, start := appendMessageHead(buf, m)
	buf = append(buf, m.Body...)
	return finishRecord(buf, start)
}

// appendMessageRecordHead appends m's message record without its body,
// which the caller writes right after: the header's length and CRC cover
// the body too.
func appendMessageRecordHead(buf []byte, m *Message) []byte {
	buf, start := appendMessageHead(buf, m)
	head := buf[start+RecordHeaderSize:]
	binary.LittleEndian.PutUint32(buf[start:], uint32(len(head)+len(m.Body)))
	crc := crc32.Update(crc32.Checksum(head, castagnoli), castagnoli, m.Body)
	binary.LittleEndian.PutUint32(buf[start+4:], crc)
	return buf
}

// appendMessageHead appends a message record's header placeholder and its
// fields up to the body, and returns where the record starts.
func appendMessageHead(buf []byte, m *Message) ([]byte, int) {
	ver := messageVersion(m)
	buf, start := beginRecord(buf, RecordMessage, ver)
	buf = binary.AppendUvarint(buf, m.ID)
	buf = binary.AppendUvarint(buf, uint64(len(m.Queues)))
	for _, q := range m.Queues {
		buf = binary.AppendUvarint(buf, q)
	}
	if ver == messageVersionMeta {
		buf = appendMeta(buf, &m.Meta)
	}
	buf = binary.AppendUvarint(buf, uint64(len(m.Exchange)))
	buf = append(buf, m.Exchange...)
	buf = binary.AppendUvarint(buf, uint64(len(m.RoutingKey)))
	buf = append(buf, m.RoutingKey...)
	buf = binary.AppendUvarint(buf, uint64(len(m.Properties)))
	buf = append(buf, m.Properties...)
	return buf, start
}

// AppendAckRecord appends an ack record for queue q to buf.
func AppendAckRecord(buf []byte, q uint64, refs []Ref) []byte {
	buf, start := beginRecord(buf, RecordAck, recordVersion)
	buf = binary.AppendUvarint(buf, q)
	buf = binary.AppendUvarint(buf, uint64(len(refs)))
	var pid, pseg uint64
	for _, r := range refs {
		buf = binary.AppendVarint(buf, int64(r.ID-pid))
		buf = binary.AppendVarint(buf, int64(r.Segment-pseg))
		pid, pseg = r.ID, r.Segment
	}
	return finishRecord(buf, start)
}

// AppendDropRecord appends a drop-queue record: every message of q with an
// ID below before is dead.
func AppendDropRecord(buf []byte, q, before uint64) []byte {
	buf, start := beginRecord(buf, RecordDropQueue, recordVersion)
	buf = binary.AppendUvarint(buf, q)
	buf = binary.AppendUvarint(buf, before)
	return finishRecord(buf, start)
}

func ackRecordSize(q uint64, refs []Ref) int {
	n := RecordHeaderSize + 2 + uvarintLen(q) + uvarintLen(uint64(len(refs)))
	var pid, pseg uint64
	for _, r := range refs {
		n += varintLen(int64(r.ID-pid)) + varintLen(int64(r.Segment-pseg))
		pid, pseg = r.ID, r.Segment
	}
	return n
}

func varintLen(x int64) int {
	ux := uint64(x) << 1
	if x < 0 {
		ux = ^ux
	}
	return uvarintLen(ux)
}

// payloadReader decodes varints from a payload without allocating.
type payloadReader struct {
	b   []byte
	err bool
}

func (r *payloadReader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = true
		r.b = nil
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *payloadReader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = true
		r.b = nil
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *payloadReader) bytes() []byte {
	n := r.uvarint()
	if r.err || n > uint64(len(r.b)) {
		r.err = true
		r.b = nil
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

// PayloadReader decodes the uvarints and length-prefixed byte strings of
// a record payload without allocating, for record types defined outside
// this package. After the first malformed field every read returns zero
// and Failed reports it.
type PayloadReader struct{ r payloadReader }

// NewPayloadReader reads p.
func NewPayloadReader(p []byte) *PayloadReader { return &PayloadReader{payloadReader{b: p}} }

// Uvarint reads an unsigned varint.
func (r *PayloadReader) Uvarint() uint64 { return r.r.uvarint() }

// Bytes reads a uvarint length and that many bytes, aliasing the payload.
func (r *PayloadReader) Bytes() []byte { return r.r.bytes() }

// Rest returns what has not been read.
func (r *PayloadReader) Rest() []byte { return r.r.b }

// Failed reports whether a field was malformed.
func (r *PayloadReader) Failed() bool { return r.r.err }

// decodeMessageHead decodes id, queue ids and (version 2) metadata of a
// message payload of version ver, appending queues to qs (no other
// allocation). rest is what follows.
func decodeMessageHead(p []byte, ver uint8, qs []uint64) (id uint64, queues []uint64, meta Meta, rest []byte, err error) {
	r := payloadReader{b: p}
	id = r.uvarint()
	n := r.uvarint()
	if r.err || n == 0 || n > maxQueuesPerRecord || n > uint64(len(r.b)) {
		return 0, qs, Meta{}, nil, errDecode
	}
	for i := uint64(0); i < n; i++ {
		qs = append(qs, r.uvarint())
	}
	if ver == messageVersionMeta {
		block := r.bytes()
		if !r.err {
			meta, err = decodeMeta(block)
		}
	}
	if r.err || err != nil {
		return 0, qs, Meta{}, nil, errDecode
	}
	return id, qs, meta, r.b, nil
}

// messageFields splits what follows the head into exchange, routing key,
// properties and body, all aliasing rest.
func messageFields(rest []byte) (ex, rk, props, body []byte, err error) {
	r := payloadReader{b: rest}
	ex = r.bytes()
	rk = r.bytes()
	props = r.bytes()
	if r.err {
		return nil, nil, nil, nil, errDecode
	}
	return ex, rk, props, r.b, nil
}

// decodeMessage decodes a message payload of version ver. With own the
// result owns its memory; without, its byte slices alias p.
func decodeMessage(p []byte, ver uint8, own bool) (*Message, error) {
	id, qs, meta, rest, err := decodeMessageHead(p, ver, nil)
	if err != nil {
		return nil, err
	}
	ex, rk, props, body, err := messageFields(rest)
	if err != nil {
		return nil, err
	}
	if own {
		// One allocation for properties and body together.
		blob := make([]byte, len(props)+len(body))
		copy(blob, props)
		copy(blob[len(props):], body)
		props, body = blob[:len(props):len(props)], blob[len(props):]
	}
	m := &Message{ID: id, Queues: qs, Exchange: string(ex), RoutingKey: string(rk), Properties: props, Body: body, Meta: meta}
	if len(props) == 0 {
		m.Properties = nil
	}
	return m, nil
}

// decodeAck calls fn for each ref of an ack payload.
func decodeAck(p []byte, fn func(q uint64, r Ref)) (q uint64, n int, err error) {
	r := payloadReader{b: p}
	q = r.uvarint()
	cnt := r.uvarint()
	if r.err || cnt > uint64(len(r.b)) {
		return 0, 0, errDecode
	}
	var id, seg uint64
	for i := uint64(0); i < cnt; i++ {
		id += uint64(r.varint())
		seg += uint64(r.varint())
		if r.err {
			return q, 0, errDecode
		}
		if fn != nil {
			fn(q, Ref{ID: id, Segment: seg})
		}
	}
	if len(r.b) != 0 {
		return q, 0, errDecode
	}
	return q, int(cnt), nil
}

// decodeDrop decodes a drop-queue payload.
func decodeDrop(p []byte) (q, before uint64, err error) {
	r := payloadReader{b: p}
	q = r.uvarint()
	before = r.uvarint()
	if r.err || len(r.b) != 0 {
		return 0, 0, errDecode
	}
	return q, before, nil
}

// Segment file header layout (little endian):
//
//	0  magic "AMQPWAL\x00"
//	8  format version uint32
//	12 segment number uint64
//	20 min next id uint64
//	28 crc32c of bytes [0,28) uint32
const (
	// SegmentHeaderSize is the size of a segment file's header.
	SegmentHeaderSize = 32
	segMagic          = "AMQPWAL\x00"
	// FormatVersion is the on-disk format version (also in Dir/VERSION).
	FormatVersion = 1
)

// SegmentHeader is the decoded header of a segment file.
type SegmentHeader struct {
	Number uint64 // segment number (also in the file name)
	// MinNextID: every message id assigned after this segment was created
	// is >= MinNextID; recovery never hands out a smaller id.
	MinNextID uint64
}

// AppendSegmentHeader appends an encoded segment header to buf.
func AppendSegmentHeader(buf []byte, h SegmentHeader) []byte {
	start := len(buf)
	buf = append(buf, segMagic...)
	buf = binary.LittleEndian.AppendUint32(buf, FormatVersion)
	buf = binary.LittleEndian.AppendUint64(buf, h.Number)
	buf = binary.LittleEndian.AppendUint64(buf, h.MinNextID)
	return binary.LittleEndian.AppendUint32(buf, crc32.Checksum(buf[start:], castagnoli))
}

func decodeSegmentHeader(b []byte) (SegmentHeader, error) {
	if len(b) < SegmentHeaderSize {
		return SegmentHeader{}, errors.New("short segment header")
	}
	if string(b[:8]) != segMagic {
		return SegmentHeader{}, errors.New("bad segment magic")
	}
	if crc32.Checksum(b[:28], castagnoli) != binary.LittleEndian.Uint32(b[28:]) {
		return SegmentHeader{}, errors.New("segment header checksum mismatch")
	}
	if v := binary.LittleEndian.Uint32(b[8:]); v != FormatVersion {
		return SegmentHeader{}, fmt.Errorf("unsupported segment format version %d", v)
	}
	return SegmentHeader{Number: binary.LittleEndian.Uint64(b[12:]), MinNextID: binary.LittleEndian.Uint64(b[20:])}, nil
}
