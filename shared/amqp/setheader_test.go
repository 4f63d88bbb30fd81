package amqp

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"reflect"
	"testing"
)

// withCount decodes raw with x-delivery-count set as RabbitMQ sets it, the
// expected result of AppendWithLongHeader.
func withCount(t *testing.T, raw []byte, n int64) Properties {
	t.Helper()
	var p Properties
	if err := p.Decode(raw); err != nil {
		t.Fatal(err)
	}
	if p.Headers == nil {
		p.Headers = Table{}
	}
	p.Headers["x-delivery-count"] = n
	p.Flags |= FlagHeaders
	return p
}

func TestAppendWithLongHeader(t *testing.T) {
	full := fullProperties()
	cases := map[string]Properties{
		"none":        {},
		"no headers":  {Flags: FlagDeliveryMode | FlagTimestamp | FlagContentType, DeliveryMode: 2, Timestamp: 7, ContentType: "text/plain"},
		"all":         full,
		"empty table": {Flags: FlagHeaders | FlagAppID, Headers: Table{}, AppID: "a"},
		"replaced":    {Flags: FlagHeaders, Headers: Table{"x-delivery-count": "forged", "a": int32(1)}},
	}
	for name, p := range cases {
		t.Run(name, func(t *testing.T) {
			raw := p.Append(nil)
			prefix := []byte("keep")
			out, ok := AppendWithLongHeader(append([]byte(nil), prefix...), raw, "x-delivery-count", 3)
			if !ok {
				t.Fatal("refused well-formed properties")
			}
			if !bytes.HasPrefix(out, prefix) {
				t.Fatal("dst's bytes were not kept")
			}
			out = out[len(prefix):]
			if err := validateProperties(out); err != nil {
				t.Fatal(err)
			}
			var got Properties
			if err := got.Decode(out); err != nil {
				t.Fatal(err)
			}
			if want := withCount(t, raw, 3); !reflect.DeepEqual(got, want) {
				t.Errorf("got  %#v\nwant %#v", got, want)
			}
		})
	}
}

// table encodes name/value pairs in the order given (AppendTable sorts).
func table(pairs ...any) []byte {
	var body []byte
	for i := 0; i < len(pairs); i += 2 {
		body = appendShortstr(body, pairs[i].(string))
		body = AppendFieldValue(body, pairs[i+1])
	}
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
}

// TestAppendWithLongHeaderSorts: the entries come out sorted by name,
// stably (a repeated name keeps its order, its first is the one replaced),
// as RabbitMQ's set_table_value (keystore, then keysort) leaves them.
func TestAppendWithLongHeaderSorts(t *testing.T) {
	raw := binary.BigEndian.AppendUint16(nil, FlagHeaders|FlagPriority)
	raw = append(raw, table("zeta", int32(1), "x-delivery-count", int32(9), "alpha", "a", "dup", int32(1), "dup", int32(2), "x-delivery-count", int32(8))...)
	raw = append(raw, 4) // priority
	out, ok := AppendWithLongHeader(nil, raw, "x-delivery-count", 1)
	if !ok {
		t.Fatal("refused")
	}
	want := binary.BigEndian.AppendUint16(nil, FlagHeaders|FlagPriority)
	want = append(want, table("alpha", "a", "dup", int32(1), "dup", int32(2), "x-delivery-count", int64(1), "x-delivery-count", int32(8), "zeta", int32(1))...)
	want = append(want, 4)
	if !bytes.Equal(out, want) {
		t.Errorf("got  %q\nwant %q", out, want)
	}
}

func TestAppendWithLongHeaderMalformed(t *testing.T) {
	good := fullProperties()
	raw := good.Append(nil)
	for _, bad := range [][]byte{nil, {0x20}, {0x20, 0, 0, 0, 0, 9}, raw[:20], {0x20, 0, 0, 0, 0, 3, 1, 'k', 'Q'}} {
		dst := []byte("d")
		out, ok := AppendWithLongHeader(dst, bad, "x-delivery-count", 1)
		if ok || !bytes.Equal(out, dst) {
			t.Errorf("%q: ok %v, out %q", bad, ok, out)
		}
	}
}

// TestAppendWithLongHeaderAllocations: with room in dst and a small table,
// a redelivery's rewrite allocates nothing.
func TestAppendWithLongHeaderAllocations(t *testing.T) {
	p := fullProperties()
	raw := p.Append(nil)
	dst := make([]byte, 0, 4096)
	if n := testing.AllocsPerRun(100, func() {
		dst, _ = AppendWithLongHeader(dst[:0], raw, "x-delivery-count", 2)
	}); n != 0 {
		t.Errorf("%v allocations", n)
	}
}

// TestAppendHeaderFrameWithLongHeader: the frame parses back as a content
// header of the body size with the rewritten properties.
func TestAppendHeaderFrameWithLongHeader(t *testing.T) {
	p := fullProperties()
	raw := p.Append(nil)
	frame, ok := AppendHeaderFrameWithLongHeader([]byte("x"), 7, 1234, raw, "x-delivery-count", 5)
	if !ok {
		t.Fatal("refused")
	}
	f, err := NewFrameReader(bytes.NewReader(frame[1:]), 0).ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	h, err := ParseContentHeader(f.Payload)
	if err != nil || f.Type != FrameHeader || f.Channel != 7 || h.BodySize != 1234 || h.ClassID != ClassBasic {
		t.Fatalf("%+v %+v %v", f, h, err)
	}
	var got Properties
	if err := got.Decode(h.RawProperties); err != nil {
		t.Fatal(err)
	}
	if want := withCount(t, raw, 5); !reflect.DeepEqual(got, want) {
		t.Errorf("got  %#v\nwant %#v", got, want)
	}
	if out, ok := AppendHeaderFrameWithLongHeader([]byte("x"), 7, 1, []byte{0x20}, "x-delivery-count", 5); ok || string(out) != "x" {
		t.Errorf("malformed: %v %q", ok, out)
	}
}

func TestPeekTimestamp(t *testing.T) {
	p := fullProperties()
	raw := p.Append(nil)
	if ts, ok := PeekTimestamp(raw); !ok || ts != 1700000000 {
		t.Errorf("PeekTimestamp = %d, %v", ts, ok)
	}
	p.Flags &^= FlagTimestamp
	if _, ok := PeekTimestamp(p.Append(nil)); ok {
		t.Error("timestamp found where there is none")
	}
	if _, ok := PeekTimestamp(raw[:len(raw)-36]); ok {
		t.Error("timestamp read from truncated properties")
	}
}

// FuzzAppendWithLongHeader: for any properties the broker accepts, the
// rewrite is well-formed and decodes as the input with the header set.
func FuzzAppendWithLongHeader(f *testing.F) {
	full := fullProperties()
	f.Add(full.Append(nil), int64(1))
	f.Add([]byte{0, 0}, int64(0))
	f.Add([]byte{0x20, 0, 0, 0, 0}, int64(-1))
	f.Fuzz(func(t *testing.T, raw []byte, n int64) {
		if validateProperties(raw) != nil {
			return
		}
		out, ok := AppendWithLongHeader(nil, raw, "x-delivery-count", n)
		if !ok {
			t.Fatal("refused valid properties")
		}
		var got Properties
		if err := got.Decode(out); err != nil {
			t.Fatal(err)
		}
		// Compared as printed: a float header may be NaN, which
		// reflect.DeepEqual finds unequal to itself; %#v sorts map keys.
		if want := withCount(t, raw, n); fmt.Sprintf("%#v", got) != fmt.Sprintf("%#v", want) {
			t.Errorf("got  %#v\nwant %#v", got, want)
		}
	})
}
