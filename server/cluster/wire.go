package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// The compact message encoding of wire version 2. Protobuf-go costs a
// reflection walk and an allocation per field on either side, and it
// carried the sender and receiver ids in every message, which the
// connection already names. In version 2 a message in a frame is
//
//	type (1 byte), presence (uvarint: one bit per field set, below),
//	then each set field in bit order: ids, term, log term, index,
//	commit, vote and reject hint as uvarints; context and entries as a
//	length (uvarint) and their bytes; an entry as its own presence byte,
//	term, index, type (uvarints) and data (length, bytes)
//
// with one exception: a type byte of wireProto is followed by the
// message in protobuf, for what the compact form does not cover (a
// snapshot, storage messages' responses). Field presence is kept
// exactly (nil apart from 0), since raftpb's fields are pointers.
//
// A heartbeat and its response are 3 to 8 bytes this way, instead of
// about 20, and one round's heartbeats of every group that a node leads
// go to a peer in one frame: per pair of nodes they are coalesced into
// one write, and on the other side decoded without protobuf.
const wireProto = 0xff

// The presence bits of a compact message.
const (
	hasTo         = 1 << iota // To is set
	toExplicit                // ... and is not the receiver: its value follows
	hasFrom                   // From is set
	fromExplicit              // ... and is not the sender: its value follows
	hasTerm                   //
	hasLogTerm                //
	hasIndex                  //
	hasCommit                 //
	hasVote                   //
	hasReject                 // Reject is set
	rejectTrue                // ... to true
	hasRejectHint             //
	hasContext                // Context is not nil
	hasEntries                // there are entries
)

// The presence bits of a compact entry.
const (
	entryTerm = 1 << iota
	entryIndex
	entryType
	entryData // Data is not nil
)

// compactable reports whether m has the compact encoding.
func compactable(m *pb.Message) bool {
	if m.Snapshot != nil || len(m.Responses) > 0 || m.Type == nil || *m.Type < 0 || *m.Type >= wireProto || len(m.ProtoReflect().GetUnknown()) > 0 {
		return false
	}
	for _, e := range m.Entries {
		if len(e.ProtoReflect().GetUnknown()) > 0 {
			return false // a field of a newer raft: protobuf keeps it
		}
	}
	return true
}

// wireEncoder encodes messages for one connection: from this node (self)
// to peer, in the connection's wire version.
type wireEncoder struct {
	self, peer uint64
	version    byte
}

// size is m's encoded size.
func (e wireEncoder) size(m *pb.Message) int {
	if e.version < 2 || !compactable(m) {
		n := proto.Size(m)
		if e.version >= 2 {
			n++
		}
		return n
	}
	mask, n := e.presence(m)
	n += 1 + uvarintLen(mask)
	for _, ent := range m.Entries {
		n += entrySize(ent)
	}
	return n
}

// presence is m's presence bits and the size of its fields other than
// the entries themselves.
func (e wireEncoder) presence(m *pb.Message) (mask uint64, n int) {
	if m.To != nil {
		mask |= hasTo
		if *m.To != e.peer {
			mask |= toExplicit
			n += uvarintLen(*m.To)
		}
	}
	if m.From != nil {
		mask |= hasFrom
		if *m.From != e.self {
			mask |= fromExplicit
			n += uvarintLen(*m.From)
		}
	}
	for _, f := range [...]struct {
		bit uint64
		v   *uint64
	}{{hasTerm, m.Term}, {hasLogTerm, m.LogTerm}, {hasIndex, m.Index}, {hasCommit, m.Commit}, {hasVote, m.Vote}, {hasRejectHint, m.RejectHint}} {
		if f.v != nil {
			mask |= f.bit
			n += uvarintLen(*f.v)
		}
	}
	if m.Reject != nil {
		mask |= hasReject
		if *m.Reject {
			mask |= rejectTrue
		}
	}
	if m.Context != nil {
		mask |= hasContext
		n += uvarintLen(uint64(len(m.Context))) + len(m.Context)
	}
	if len(m.Entries) > 0 {
		mask |= hasEntries
		n += uvarintLen(uint64(len(m.Entries)))
	}
	return mask, n
}

func entrySize(ent *pb.Entry) int {
	n := 1
	if ent.Term != nil {
		n += uvarintLen(*ent.Term)
	}
	if ent.Index != nil {
		n += uvarintLen(*ent.Index)
	}
	if ent.Type != nil {
		n += uvarintLen(uint64(*ent.Type))
	}
	if ent.Data != nil {
		n += uvarintLen(uint64(len(ent.Data))) + len(ent.Data)
	}
	return n
}

// append appends m, as size reported, to b.
func (e wireEncoder) append(b []byte, m *pb.Message) ([]byte, error) {
	if e.version < 2 || !compactable(m) {
		if e.version >= 2 {
			b = append(b, wireProto)
		}
		return (proto.MarshalOptions{}).MarshalAppend(b, m)
	}
	mask, _ := e.presence(m)
	b = append(b, byte(*m.Type))
	b = binary.AppendUvarint(b, mask)
	if mask&toExplicit != 0 {
		b = binary.AppendUvarint(b, *m.To)
	}
	if mask&fromExplicit != 0 {
		b = binary.AppendUvarint(b, *m.From)
	}
	for _, v := range [...]*uint64{m.Term, m.LogTerm, m.Index, m.Commit, m.Vote, m.RejectHint} {
		if v != nil {
			b = binary.AppendUvarint(b, *v)
		}
	}
	if mask&hasContext != 0 {
		b = binary.AppendUvarint(b, uint64(len(m.Context)))
		b = append(b, m.Context...)
	}
	if mask&hasEntries != 0 {
		b = binary.AppendUvarint(b, uint64(len(m.Entries)))
		for _, ent := range m.Entries {
			b = appendEntry(b, ent)
		}
	}
	return b, nil
}

func appendEntry(b []byte, ent *pb.Entry) []byte {
	var mask byte
	if ent.Term != nil {
		mask |= entryTerm
	}
	if ent.Index != nil {
		mask |= entryIndex
	}
	if ent.Type != nil {
		mask |= entryType
	}
	if ent.Data != nil {
		mask |= entryData
	}
	b = append(b, mask)
	if ent.Term != nil {
		b = binary.AppendUvarint(b, *ent.Term)
	}
	if ent.Index != nil {
		b = binary.AppendUvarint(b, *ent.Index)
	}
	if ent.Type != nil {
		b = binary.AppendUvarint(b, uint64(*ent.Type))
	}
	if ent.Data != nil {
		b = binary.AppendUvarint(b, uint64(len(ent.Data)))
		b = append(b, ent.Data...)
	}
	return b
}

// wireDecoder decodes the messages of one connection: from peer to this
// node (self), in the connection's wire version.
type wireDecoder struct {
	self, peer uint64
	version    byte
}

// decode decodes one message's bytes. The message shares nothing with
// b: its entries' data are copied, all of a message's into one buffer.
func (d wireDecoder) decode(b []byte) (*pb.Message, error) {
	if d.version < 2 || (len(b) > 0 && b[0] == wireProto) {
		if d.version >= 2 {
			b = b[1:]
		}
		m := &pb.Message{}
		if err := proto.Unmarshal(b, m); err != nil {
			return nil, err
		}
		return m, nil
	}
	r := wireReader{b: b}
	typ := pb.MessageType(r.byte())
	mask := r.uvarint()
	if mask >= hasEntries<<1 {
		return nil, fmt.Errorf("unknown presence bits %#x", mask)
	}
	// One allocation for the message's scalars, which raftpb keeps
	// behind pointers.
	var s struct {
		m      pb.Message
		typ    pb.MessageType
		reject bool
		v      [8]uint64 // to, from, term, log term, index, commit, vote, reject hint
	}
	p := &s // escapes: the message points into it
	m := &p.m
	p.typ = typ
	m.Type = &p.typ
	if mask&hasTo != 0 {
		p.v[0] = d.self
		if mask&toExplicit != 0 {
			p.v[0] = r.uvarint()
		}
		m.To = &p.v[0]
	}
	if mask&hasFrom != 0 {
		p.v[1] = d.peer
		if mask&fromExplicit != 0 {
			p.v[1] = r.uvarint()
		}
		m.From = &p.v[1]
	}
	for i, f := range [...]struct {
		bit uint64
		dst **uint64
	}{{hasTerm, &m.Term}, {hasLogTerm, &m.LogTerm}, {hasIndex, &m.Index}, {hasCommit, &m.Commit}, {hasVote, &m.Vote}, {hasRejectHint, &m.RejectHint}} {
		if mask&f.bit != 0 {
			p.v[2+i] = r.uvarint()
			*f.dst = &p.v[2+i]
		}
	}
	if mask&hasReject != 0 {
		p.reject = mask&rejectTrue != 0
		m.Reject = &p.reject
	}
	if mask&hasContext != 0 {
		m.Context = append([]byte{}, r.bytes()...)
	}
	if mask&hasEntries != 0 {
		if err := d.entries(&r, m); err != nil {
			return nil, err
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	if len(r.b) != 0 {
		return nil, fmt.Errorf("%d bytes after the message", len(r.b))
	}
	return m, nil
}

// entries decodes a message's entries into m, in two passes: the first
// checks them and counts their data, so that the second allocates once
// for the entries and once for all their data.
func (d wireDecoder) entries(r *wireReader, m *pb.Message) error {
	n := r.uvarint()
	if r.err != nil {
		return r.err
	}
	// Every entry takes at least one byte: cap the count by what is left
	// before allocating for it.
	if n == 0 || n > uint64(len(r.b)) {
		return fmt.Errorf("bad entry count %d", n)
	}
	scan := *r
	var data int
	for range n {
		mask := scan.byte()
		if mask >= entryData<<1 {
			return fmt.Errorf("unknown entry presence bits %#x", mask)
		}
		for _, bit := range [...]byte{entryTerm, entryIndex, entryType} {
			if mask&bit != 0 {
				scan.uvarint()
			}
		}
		if mask&entryData != 0 {
			data += len(scan.bytes())
		}
		if scan.err != nil {
			return scan.err
		}
	}
	type entry struct {
		e   pb.Entry
		typ pb.EntryType
		v   [2]uint64 // term, index
	}
	slab := make([]entry, n)
	buf := make([]byte, 0, data)
	m.Entries = make([]*pb.Entry, n)
	for i := range slab {
		s := &slab[i]
		ent := &s.e
		mask := r.byte()
		if mask&entryTerm != 0 {
			s.v[0] = r.uvarint()
			ent.Term = &s.v[0]
		}
		if mask&entryIndex != 0 {
			s.v[1] = r.uvarint()
			ent.Index = &s.v[1]
		}
		if mask&entryType != 0 {
			t := r.uvarint()
			if t > 0xffff {
				return fmt.Errorf("bad entry type %d", t)
			}
			s.typ = pb.EntryType(t)
			ent.Type = &s.typ
		}
		if mask&entryData != 0 {
			b := r.bytes()
			start := len(buf)
			buf = append(buf, b...)
			ent.Data = buf[start:len(buf):len(buf)]
		}
		m.Entries[i] = ent
	}
	return r.err
}

// wireReader reads a compact message; the first error sticks, and reads
// after it return zeros.
type wireReader struct {
	b   []byte
	err error
}

var errShort = errors.New("message cut short")

func (r *wireReader) byte() byte {
	if r.err != nil || len(r.b) == 0 {
		r.err = errShort
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *wireReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errors.New("bad varint")
		return 0
	}
	r.b = r.b[n:]
	return v
}

// bytes reads a length and that many bytes, which alias the frame.
func (r *wireReader) bytes() []byte {
	n := r.uvarint()
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.err = errShort
		return nil
	}
	b := r.b[:n:n]
	r.b = r.b[n:]
	return b
}

// uvarintLen is the length of v as a uvarint.
func uvarintLen(v uint64) int { return (bits.Len64(v|1) + 6) / 7 }
