package cluster

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// roundTrip encodes m from node 1 to node 2 in version v and decodes it.
func roundTrip(t *testing.T, v byte, m *pb.Message) *pb.Message {
	t.Helper()
	enc := wireEncoder{self: 1, peer: 2, version: v}
	b, err := enc.append(nil, m)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != enc.size(m) {
		t.Fatalf("size %d, encoded %d bytes: %v", enc.size(m), len(b), m)
	}
	out, err := (wireDecoder{self: 2, peer: 1, version: v}).decode(b)
	if err != nil {
		t.Fatalf("decode %v: %v", m, err)
	}
	return out
}

// TestWireRoundTrip: every field, its presence (nil apart from 0, which
// raftpb's pointers keep) and what the compact form leaves to protobuf
// come back as they were, in both versions.
func TestWireRoundTrip(t *testing.T) {
	u := proto.Uint64
	typ := func(t pb.MessageType) *pb.MessageType { return &t }
	etyp := func(t pb.EntryType) *pb.EntryType { return &t }
	msgs := map[string]*pb.Message{
		"empty":         {},
		"heartbeat":     {Type: typ(pb.MsgHeartbeat), To: u(2), From: u(1), Term: u(7), Commit: u(1 << 40)},
		"quiesce":       {Type: typ(pb.MsgHeartbeatResp), To: u(2), From: u(1), Term: u(7), Context: []byte(quiesceContext)},
		"empty context": {Type: typ(pb.MsgHeartbeat), To: u(2), From: u(1), Context: []byte{}},
		"zeros are set": {Type: typ(pb.MsgHup), To: u(0), From: u(0), Term: u(0), LogTerm: u(0), Index: u(0), Commit: u(0), Vote: u(0), Reject: proto.Bool(false), RejectHint: u(0)},
		"other ids":     {Type: typ(pb.MsgVote), To: u(9), From: u(math.MaxUint64), Term: u(3), LogTerm: u(2), Index: u(100), Vote: u(1)},
		"reject":        {Type: typ(pb.MsgAppResp), To: u(2), From: u(1), Term: u(3), Index: u(5), Reject: proto.Bool(true), RejectHint: u(4), LogTerm: u(2)},
		"forget leader": {Type: typ(pb.MsgForgetLeader), To: u(2)},
		"entries": {Type: typ(pb.MsgApp), To: u(2), From: u(1), Term: u(3), LogTerm: u(3), Index: u(10), Commit: u(9), Entries: []*pb.Entry{
			{Term: u(3), Index: u(11), Type: etyp(pb.EntryNormal), Data: []byte("a publish")},
			{Term: u(3), Index: u(12)},                 // raft's empty entry: no data, no type
			{Term: u(3), Index: u(13), Data: []byte{}}, // data set and empty
			{Type: etyp(pb.EntryConfChangeV2), Data: bytes.Repeat([]byte{0xff}, 300)},
			{},
		}},
		"snapshot": {Type: typ(pb.MsgSnap), To: u(2), From: u(1), Term: u(4), Snapshot: &pb.Snapshot{Data: []byte("state"),
			Metadata: &pb.SnapshotMetadata{Index: u(50), Term: u(4), ConfState: &pb.ConfState{Voters: []uint64{1, 2, 3}}}}},
		"responses": {Type: typ(pb.MsgStorageAppend), To: u(2), Responses: []*pb.Message{{Type: typ(pb.MsgStorageAppendResp), To: u(1)}}},
	}
	for name, m := range msgs {
		for v := byte(1); v <= helloVersion; v++ {
			if out := roundTrip(t, v, m); !proto.Equal(m, out) {
				t.Errorf("%s, version %d: sent %v, got %v", name, v, m, out)
			}
		}
	}
	// The point of version 2.
	hb := msgs["heartbeat"]
	if v1, v2 := (wireEncoder{1, 2, 1}).size(hb), (wireEncoder{1, 2, 2}).size(hb); v2 > 10 || v2 >= v1 {
		t.Errorf("a heartbeat takes %d bytes in version 2, %d in version 1", v2, v1)
	}
}

// TestWireDecodedOwnsItsBytes: a decoded message shares nothing with the
// frame, which the reader reuses.
func TestWireDecodedOwnsItsBytes(t *testing.T) {
	m := &pb.Message{Type: pb.MsgApp.Enum(), Context: []byte("ctx"), Entries: []*pb.Entry{{Data: []byte("one")}, {Data: []byte("two")}}}
	b, _ := (wireEncoder{1, 2, 2}).append(nil, m)
	out, err := (wireDecoder{2, 1, 2}).decode(b)
	if err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] = 0
	}
	if string(out.Context) != "ctx" || string(out.Entries[0].Data) != "one" || string(out.Entries[1].Data) != "two" {
		t.Fatalf("decoded message changed with the frame: %v", out)
	}
	// Appending to one entry's data must not write over the next one's.
	_ = append(out.Entries[0].Data, 'X')
	if string(out.Entries[1].Data) != "two" {
		t.Fatalf("entries' data overlap: %q", out.Entries[1].Data)
	}
}

// TestWireRandom round-trips random messages.
func TestWireRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	opt := func() *uint64 {
		switch r.IntN(3) {
		case 0:
			return nil
		case 1:
			return proto.Uint64(r.Uint64N(3))
		}
		return proto.Uint64(r.Uint64() >> r.IntN(64))
	}
	for i := range 2000 {
		m := &pb.Message{To: opt(), From: opt(), Term: opt(), LogTerm: opt(), Index: opt(), Commit: opt(), Vote: opt(), RejectHint: opt()}
		if r.IntN(8) > 0 {
			m.Type = pb.MessageType(r.IntN(24)).Enum()
		}
		if r.IntN(3) == 0 {
			m.Reject = proto.Bool(r.IntN(2) == 0)
		}
		if r.IntN(3) == 0 {
			m.Context = make([]byte, r.IntN(20))
		}
		for range r.IntN(4) {
			e := &pb.Entry{Term: opt(), Index: opt()}
			if r.IntN(2) == 0 {
				e.Type = pb.EntryType(r.IntN(3)).Enum()
			}
			if r.IntN(3) > 0 {
				e.Data = make([]byte, r.IntN(2000))
				for j := range e.Data {
					e.Data[j] = byte(r.Uint32())
				}
			}
			m.Entries = append(m.Entries, e)
		}
		if out := roundTrip(t, 2, m); !proto.Equal(m, out) {
			t.Fatalf("message %d: sent %v, got %v", i, m, out)
		}
	}
}

// TestWireHostile: what a broken or hostile peer may send is an error,
// never a panic, and an entry count is checked against the bytes left
// before anything is allocated for it.
func TestWireHostile(t *testing.T) {
	dec := wireDecoder{2, 1, 2}
	good, _ := (wireEncoder{1, 2, 2}).append(nil, &pb.Message{Type: pb.MsgApp.Enum(), Term: proto.Uint64(1),
		Entries: []*pb.Entry{{Term: proto.Uint64(1), Data: []byte("x")}}})
	for n := range good {
		if _, err := dec.decode(good[:n]); err == nil {
			t.Errorf("%d of %d bytes decoded", n, len(good))
		}
	}
	hdr := func(rest ...byte) []byte {
		return append(binary.AppendUvarint([]byte{byte(pb.MsgApp)}, hasEntries), rest...)
	}
	for name, b := range map[string][]byte{
		"trailing bytes":  append(append([]byte{}, good...), 0),
		"unknown bit":     {byte(pb.MsgApp), 0x80, 0x80, 0x01},
		"billion entries": hdr(0x80, 0x94, 0xeb, 0xdc, 0x03),
		"zero entries":    hdr(0),
		"huge data":       hdr(1, entryData, 0xff, 0xff, 0xff, 0xff, 0x0f),
		"bad entry bits":  hdr(1, 0x10),
		"bad protobuf":    {wireProto, 0xff, 0xff},
	} {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		if _, err := dec.decode(b); err == nil {
			t.Errorf("%s: decoded", name)
		}
		runtime.ReadMemStats(&after)
		if n := after.TotalAlloc - before.TotalAlloc; n > 4<<10 {
			t.Errorf("%s: %d bytes allocated", name, n)
		}
	}
}

// FuzzWireDecode: no input panics, and what decodes encodes back to a
// message equal to it.
func FuzzWireDecode(f *testing.F) {
	for _, m := range []*pb.Message{
		{Type: pb.MsgHeartbeat.Enum(), To: proto.Uint64(2), From: proto.Uint64(1), Term: proto.Uint64(3)},
		{Type: pb.MsgApp.Enum(), Entries: []*pb.Entry{{Data: []byte("x")}, {}}},
		{Type: pb.MsgSnap.Enum(), Snapshot: &pb.Snapshot{Data: []byte("s")}},
	} {
		b, _ := (wireEncoder{1, 2, 2}).append(nil, m)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := (wireDecoder{2, 1, 2}).decode(b)
		if err != nil {
			return
		}
		if out := roundTrip(t, 2, m); !proto.Equal(m, out) {
			t.Fatalf("decoded %v, round trip %v", m, out)
		}
	})
}

// BenchmarkWire encodes and decodes a heartbeat and an append of eight
// 1 KB entries in each wire version.
func BenchmarkWire(b *testing.B) {
	app := &pb.Message{Type: pb.MsgApp.Enum(), To: proto.Uint64(2), From: proto.Uint64(1), Term: proto.Uint64(5),
		LogTerm: proto.Uint64(5), Index: proto.Uint64(123456), Commit: proto.Uint64(123450)}
	for i := range 8 {
		app.Entries = append(app.Entries, &pb.Entry{Term: proto.Uint64(5), Index: proto.Uint64(123457 + uint64(i)), Type: pb.EntryNormal.Enum(), Data: make([]byte, 1024)})
	}
	hb := &pb.Message{Type: pb.MsgHeartbeat.Enum(), To: proto.Uint64(2), From: proto.Uint64(1), Term: proto.Uint64(5), Commit: proto.Uint64(123450)}
	for _, c := range []struct {
		name string
		m    *pb.Message
	}{{"heartbeat", hb}, {"append8x1KB", app}} {
		for v := byte(1); v <= helloVersion; v++ {
			enc, dec := wireEncoder{1, 2, v}, wireDecoder{2, 1, v}
			var buf []byte
			b.Run(fmt.Sprintf("%s/v%d/encode", c.name, v), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					_ = enc.size(c.m)
					buf, _ = enc.append(buf[:0], c.m)
				}
			})
			b.Run(fmt.Sprintf("%s/v%d/decode", c.name, v), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := dec.decode(buf); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
