package amqp

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"
)

// methodSeeds are encoded method payloads used as fuzz seeds.
func methodSeeds() [][]byte {
	var seeds [][]byte
	for i, m := range allMethods() {
		if i%2 == 0 {
			fill(m, i)
		}
		frame := AppendMethodFrame(nil, 1, m)
		seeds = append(seeds, frame[7:len(frame)-1])
	}
	return seeds
}

func FuzzDecodeMethod(f *testing.F) {
	for _, s := range methodSeeds() {
		f.Add(s)
	}
	f.Add([]byte{0, 60, 0, 40})
	f.Add([]byte{0, 50, 0, 10, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF})
	f.Fuzz(func(t *testing.T, payload []byte) {
		m, err := DecodeMethod(payload)
		if err != nil {
			var de *DecodeError
			var ue *UnknownMethodError
			if !errors.As(err, &de) && !errors.As(err, &ue) {
				t.Fatalf("error of type %T: %v", err, err)
			}
			_ = err.Error()
			return
		}
		enc := AppendMethodFrame(nil, 0, m)
		m2, err := DecodeMethod(enc[7 : len(enc)-1])
		if err != nil {
			t.Fatalf("re-decode of %#v: %v", m, err)
		}
		enc2 := AppendMethodFrame(nil, 0, m2)
		if !bytes.Equal(enc, enc2) {
			t.Fatalf("re-encoding differs:\n%x\n%x", enc, enc2)
		}
		if !containsNaN(m) && !reflect.DeepEqual(m, m2) {
			t.Fatalf("re-decoded value differs:\n%#v\n%#v", m, m2)
		}
	})
}

// containsNaN reports whether v holds a NaN float anywhere (NaN != NaN, so
// reflect.DeepEqual cannot compare such values).
func containsNaN(v any) bool {
	var walk func(reflect.Value) bool
	walk = func(v reflect.Value) bool {
		switch v.Kind() {
		case reflect.Float32, reflect.Float64:
			return v.Float() != v.Float()
		case reflect.Interface, reflect.Pointer:
			return !v.IsNil() && walk(v.Elem())
		case reflect.Slice, reflect.Array:
			for i := 0; i < v.Len(); i++ {
				if walk(v.Index(i)) {
					return true
				}
			}
		case reflect.Map:
			it := v.MapRange()
			for it.Next() {
				if walk(it.Value()) {
					return true
				}
			}
		case reflect.Struct:
			for i := 0; i < v.NumField(); i++ {
				if v.Type().Field(i).IsExported() && walk(v.Field(i)) {
					return true
				}
			}
		}
		return false
	}
	return walk(reflect.ValueOf(v))
}

func FuzzReadTable(f *testing.F) {
	f.Add(AppendTable(nil, Table{"a": int32(1), "b": "x", "c": []any{true, nil}, "d": Table{"e": 1.5}}))
	f.Add(AppendTable(nil, Table{"t": int64(-1), "x": []byte{1}, "D": Decimal{1, 2}, "f": float32(2), "u": uint16(3), "i": uint32(4)}))
	f.Add([]byte{0, 0, 0, 0})
	f.Add([]byte{0, 0, 0, 3, 1, 'k', 'V'})
	f.Add([]byte{0, 0, 0, 7, 1, 'k', 'F', 0, 0, 0, 0})
	f.Add([]byte{0, 0, 0, 7, 1, 'k', 'S', 0xFF, 0xFF, 0xFF, 0xFF})
	f.Fuzz(func(t *testing.T, b []byte) {
		tab, n, err := ReadTable(b)
		sn, serr := skipTable(b, 0)
		if (err == nil) != (serr == nil) {
			t.Fatalf("ReadTable err %v, skipTable err %v", err, serr)
		}
		if err != nil {
			if _, ok := err.(*DecodeError); !ok {
				t.Fatalf("error of type %T", err)
			}
			return
		}
		if n != sn || n > len(b) || n < 4 {
			t.Fatalf("consumed %d, skip %d, input %d", n, sn, len(b))
		}
		if err := ValidateTable(tab); err != nil {
			t.Fatalf("decoded table does not validate: %v", err)
		}
		enc := AppendTable(nil, tab)
		tab2, n2, err := ReadTable(enc)
		if err != nil || n2 != len(enc) {
			t.Fatalf("re-decode: %v (%d of %d)", err, n2, len(enc))
		}
		if enc2 := AppendTable(nil, tab2); !bytes.Equal(enc, enc2) {
			t.Fatalf("re-encoding differs:\n%x\n%x", enc, enc2)
		}
		if !containsNaN(tab) && !reflect.DeepEqual(tab, tab2) {
			t.Fatalf("re-decoded table differs:\n%#v\n%#v", tab, tab2)
		}
	})
}

func FuzzProperties(f *testing.F) {
	full := fullProperties()
	f.Add(full.Append(nil))
	f.Add((&Properties{Flags: FlagDeliveryMode, DeliveryMode: 2}).Append(nil))
	f.Add((&Properties{Flags: FlagHeaders | FlagDeliveryMode, Headers: Table{"a": "b"}, DeliveryMode: 1}).Append(nil))
	f.Add([]byte{0x10, 0x01, 0x00, 0x00, 0x02})
	f.Add([]byte{0x00, 0x00})
	f.Fuzz(func(t *testing.T, raw []byte) {
		var p Properties
		err := p.Decode(raw)
		if verr := validateProperties(raw); (verr == nil) != (err == nil) {
			t.Fatalf("Decode err %v, validate err %v", err, verr)
		}
		peek := PeekDeliveryMode(raw)
		if len(raw) >= 2 {
			h := append([]byte{0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, raw...)
			if _, herr := ParseContentHeader(h); (herr == nil) != (err == nil) {
				t.Fatalf("ParseContentHeader err %v, Decode err %v", herr, err)
			}
		}
		if err != nil {
			if _, ok := err.(*DecodeError); !ok {
				t.Fatalf("error of type %T", err)
			}
			return
		}
		if peek != p.DeliveryMode {
			t.Fatalf("PeekDeliveryMode %d, Decode %d", peek, p.DeliveryMode)
		}
		if p.Flags != (uint16(raw[0])<<8|uint16(raw[1]))&^1 {
			t.Fatalf("flags %04x not preserved from %x", p.Flags, raw[:2])
		}
		enc := p.Append(nil)
		var q Properties
		if err := q.Decode(enc); err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if enc2 := q.Append(nil); !bytes.Equal(enc, enc2) {
			t.Fatalf("re-encoding differs:\n%x\n%x", enc, enc2)
		}
		if !containsNaN(p) && !reflect.DeepEqual(p, q) {
			t.Fatalf("re-decoded properties differ:\n%#v\n%#v", p, q)
		}
	})
}

// fuzzMaxInput, fuzzMaxFrame and fuzzMinBuffer bound what FuzzReadFrame
// feeds the reader, so that it runs tens of thousands of inputs a second
// instead of a few hundred.
//
// A frame larger than the read buffer is read into a buffer that grows by up
// to 1 MiB at a time, whatever the input holds, so with no limit every
// mutated size field cost a megabyte allocation (about 1 ms). A frame_max of
// 0 (no limit) or above fuzzMaxFrame is therefore replaced by fuzzMaxFrame,
// which is larger than any input: every frame an input can hold is accepted
// exactly as without a limit, and one claiming more still fails (with a
// FrameError from its header rather than io.ErrUnexpectedEOF at the end of the
// input). Reading with no limit and AbsoluteMaxFrame are covered by
// TestReadFrameErrors and TestHostileSizeRejectedBeforeAllocating.
//
// The minimizer's cost grows with the square of an input's length, and frames
// larger than NewFrameReader's smallest buffer (FrameMinSize) took inputs of
// over 4 KiB, so each new one stalled the fuzzer for up to a minute. A bufSize
// below FrameMinSize therefore gives a reader whose buffer really is that
// small (at least fuzzMinBuffer, which holds a frame header): the same code
// paths, frames that do not fit the buffer included, are reached with inputs
// of a few hundred bytes, and longer inputs are skipped.
const (
	fuzzMaxInput  = 1 << 10
	fuzzMaxFrame  = 2 * fuzzMaxInput
	fuzzMinBuffer = frameOverhead
)

func FuzzReadFrame(f *testing.F) {
	var stream []byte
	stream = AppendMethodFrame(stream, 1, &BasicPublish{Exchange: "x", RoutingKey: "y"})
	stream = AppendHeaderFrame(stream, 1, ClassBasic, 3, (&Properties{Flags: FlagDeliveryMode, DeliveryMode: 2}).Append(nil))
	stream = AppendBodyFrames(stream, 1, []byte("abc"), 0)
	stream = AppendHeartbeatFrame(stream)
	f.Add(stream, uint32(0), uint16(4096))
	f.Add(stream, uint32(0), uint16(16))
	f.Add(AppendFrame(nil, FrameBody, 1, make([]byte, 300)), uint32(1024), uint16(256))
	f.Add(AppendFrame(nil, FrameBody, 1, make([]byte, 300)), uint32(256), uint16(256))
	f.Add([]byte{1, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xCE}, uint32(0), uint16(0))
	f.Add([]byte("AMQP\x00\x00\x09\x01"), uint32(0), uint16(0))
	f.Fuzz(func(t *testing.T, input []byte, frameMax uint32, bufSize uint16) {
		if len(input) > fuzzMaxInput {
			return
		}
		if frameMax == 0 || frameMax > fuzzMaxFrame {
			frameMax = fuzzMaxFrame
		}
		var fr *FrameReader
		if bufSize >= FrameMinSize {
			fr = NewFrameReader(bytes.NewReader(input), int(bufSize))
		} else {
			fr = &FrameReader{br: &readBuffer{rd: bytes.NewReader(input), max: max(int(bufSize), fuzzMinBuffer)}}
		}
		fr.SetMaxFrame(frameMax)
		consumed := 0
		for i := 0; ; i++ {
			fr2, err := fr.ReadFrame()
			if err == io.EOF {
				if consumed != len(input) {
					t.Fatalf("EOF after %d of %d bytes", consumed, len(input))
				}
				return
			}
			if err != nil {
				var fe *FrameError
				if err != io.ErrUnexpectedEOF && !errors.As(err, &fe) {
					t.Fatalf("error of type %T: %v", err, err)
				}
				if fe != nil && fe.Code != FrameErrorCode {
					t.Fatalf("code %d", fe.Code)
				}
				return
			}
			total := len(fr2.Payload) + 8
			if uint32(total) > frameMax {
				t.Fatalf("frame of %d bytes accepted with frame_max %d", total, frameMax)
			}
			// The frame re-encodes to exactly the bytes it was read from.
			enc := AppendFrame(nil, fr2.Type, fr2.Channel, fr2.Payload)
			if !bytes.Equal(enc, input[consumed:consumed+total]) {
				t.Fatalf("frame %d re-encodes differently", i)
			}
			consumed += total
			// Decoding the payload must not panic either.
			switch fr2.Type {
			case FrameMethod:
				_, _ = DecodeMethod(fr2.Payload)
			case FrameHeader:
				_, _ = ParseContentHeader(fr2.Payload)
			}
		}
	})
}
