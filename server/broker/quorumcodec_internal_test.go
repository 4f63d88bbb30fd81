package broker

import (
	"bytes"
	"testing"
)

// A message decoded from a quorum queue's log entry shares the entry's
// bytes (no copy per member), and growing its properties or body, as a
// redelivery's headers do, copies rather than writing over the entry.
func TestQuorumCodecDecodesInPlace(t *testing.T) {
	m := &Message{}
	m.Exchange, m.RoutingKey, m.Properties, m.Body, m.Persistent, m.Timestamp = "x", "rk", []byte{1, 2, 3}, []byte("hello"), true, 7
	entry := quorumCodec{}.AppendHandle(nil, qhandle{msg: m})
	kept := bytes.Clone(entry)
	h, err := quorumCodec{}.DecodeHandle(entry)
	if err != nil {
		t.Fatal(err)
	}
	got := h.msg
	if got.Exchange != "x" || got.RoutingKey != "rk" || !bytes.Equal(got.Properties, m.Properties) || string(got.Body) != "hello" ||
		!got.Persistent || got.Timestamp != 7 {
		t.Fatalf("decoded %+v", got)
	}
	if cap(got.Properties) != len(got.Properties) || cap(got.Body) != len(got.Body) {
		t.Fatalf("capacities %d/%d and %d/%d: an append would write into the entry", cap(got.Properties), len(got.Properties), cap(got.Body), len(got.Body))
	}
	if &got.Body[0] != &entry[bytes.Index(entry, []byte("hello"))] {
		t.Fatal("the body is a copy, not the entry's bytes")
	}
	got.Properties = append(got.Properties, 9, 9, 9, 9, 9, 9, 9, 9)
	got.Body = append(got.Body, " world"...)
	if !bytes.Equal(entry, kept) {
		t.Fatal("appending to the decoded message changed the log entry")
	}
}
