package amqp

import (
	"bytes"
	"errors"
	"io"
	"os"
	"runtime"
	"strings"
	"testing"
)

func TestReadFrameKinds(t *testing.T) {
	var stream []byte
	stream = AppendMethodFrame(stream, 1, &BasicPublish{Exchange: "amq.direct", RoutingKey: "rk"})
	props := (&Properties{Flags: FlagContentType | FlagDeliveryMode, ContentType: "text/plain", DeliveryMode: 2}).Append(nil)
	stream = AppendHeaderFrame(stream, 1, ClassBasic, 5, props)
	stream = AppendBodyFrames(stream, 1, []byte("hello"), 0)
	stream = AppendHeartbeatFrame(stream)
	stream = AppendFrame(stream, FrameBody, 65535, nil)

	for _, bufSize := range []int{0, 16, 4096, 1 << 16} {
		fr := NewFrameReader(bytes.NewReader(stream), bufSize)
		f, err := fr.ReadFrame()
		if err != nil || f.Type != FrameMethod || f.Channel != 1 {
			t.Fatalf("method frame: %+v %v", f, err)
		}
		m, err := DecodeMethod(f.Payload)
		if err != nil || m.(*BasicPublish).Exchange != "amq.direct" {
			t.Fatalf("decode: %#v %v", m, err)
		}
		if fr.Buffered() == 0 {
			t.Errorf("Buffered() = 0 with frames left in a small stream")
		}

		f, err = fr.ReadFrame()
		if err != nil || f.Type != FrameHeader || f.Channel != 1 {
			t.Fatalf("header frame: %+v %v", f, err)
		}
		h, err := ParseContentHeader(f.Payload)
		if err != nil {
			t.Fatal(err)
		}
		if h.ClassID != ClassBasic || h.Weight != 0 || h.BodySize != 5 || !bytes.Equal(h.RawProperties, props) {
			t.Errorf("content header %+v", h)
		}

		f, err = fr.ReadFrame()
		if err != nil || f.Type != FrameBody || string(f.Payload) != "hello" {
			t.Fatalf("body frame: %+v %v", f, err)
		}
		f, err = fr.ReadFrame()
		if err != nil || f.Type != FrameHeartbeat || f.Channel != 0 || len(f.Payload) != 0 {
			t.Fatalf("heartbeat frame: %+v %v", f, err)
		}
		f, err = fr.ReadFrame()
		if err != nil || f.Type != FrameBody || f.Channel != 65535 || len(f.Payload) != 0 {
			t.Fatalf("empty body frame: %+v %v", f, err)
		}
		if fr.Buffered() != 0 {
			t.Errorf("Buffered() = %d at end", fr.Buffered())
		}
		if _, err := fr.ReadFrame(); err != io.EOF {
			t.Fatalf("at end: %v, want io.EOF", err)
		}
	}
}

func TestReadFrameLargerThanBuffer(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789"), 300_000) // 3 MB: exercises the chunked path
	stream := AppendFrame(nil, FrameBody, 3, body)
	stream = AppendFrame(stream, FrameBody, 3, body[:10000])
	stream = AppendHeartbeatFrame(stream)
	fr := NewFrameReader(bytes.NewReader(stream), 4096)
	f, err := fr.ReadFrame()
	if err != nil || !bytes.Equal(f.Payload, body) {
		t.Fatalf("large frame: %v (len %d)", err, len(f.Payload))
	}
	f, err = fr.ReadFrame()
	if err != nil || !bytes.Equal(f.Payload, body[:10000]) {
		t.Fatalf("second large frame: %v (len %d)", err, len(f.Payload))
	}
	if f, err = fr.ReadFrame(); err != nil || f.Type != FrameHeartbeat {
		t.Fatalf("heartbeat after large frames: %+v %v", f, err)
	}
}

func wantFrameError(t *testing.T, err error, contains string) {
	t.Helper()
	var fe *FrameError
	if !errors.As(err, &fe) {
		t.Fatalf("err = %v (%T), want *FrameError", err, err)
	}
	if fe.Code != FrameErrorCode {
		t.Errorf("code %d, want 501", fe.Code)
	}
	if !strings.HasPrefix(fe.Text, "FRAME_ERROR - ") || !strings.Contains(fe.Text, contains) {
		t.Errorf("text %q, want FRAME_ERROR prefix and %q", fe.Text, contains)
	}
	if fe.Error() != fe.Text {
		t.Errorf("Error() = %q", fe.Error())
	}
}

func TestReadFrameErrors(t *testing.T) {
	good := AppendMethodFrame(nil, 1, &BasicQos{PrefetchCount: 10})

	t.Run("bad frame end", func(t *testing.T) {
		bad := bytes.Clone(good)
		bad[len(bad)-1] = 0x00
		_, err := NewFrameReader(bytes.NewReader(bad), 0).ReadFrame()
		wantFrameError(t, err, "frame end")
	})
	t.Run("bad frame end, large path", func(t *testing.T) {
		bad := AppendFrame(nil, FrameBody, 1, make([]byte, 10000))
		bad[len(bad)-1] = 'x'
		_, err := NewFrameReader(bytes.NewReader(bad), 4096).ReadFrame()
		wantFrameError(t, err, "frame end")
	})
	t.Run("unknown type", func(t *testing.T) {
		bad := bytes.Clone(good)
		bad[0] = 4
		_, err := NewFrameReader(bytes.NewReader(bad), 0).ReadFrame()
		wantFrameError(t, err, "unknown frame type 4")
	})
	t.Run("protocol header as frame", func(t *testing.T) {
		_, err := NewFrameReader(bytes.NewReader(append(bytes.Clone(ProtocolHeader), 0, 0, 0, 0)), 0).ReadFrame()
		wantFrameError(t, err, "unknown frame type 65")
	})
	t.Run("over frame_max", func(t *testing.T) {
		frame := AppendFrame(nil, FrameBody, 1, make([]byte, 200000))
		fr := NewFrameReader(bytes.NewReader(frame), 0)
		fr.SetMaxFrame(131072)
		_, err := fr.ReadFrame()
		wantFrameError(t, err, "frame size 200008 > frame_max 131072")
	})
	t.Run("exactly frame_max", func(t *testing.T) {
		frame := AppendFrame(nil, FrameBody, 1, make([]byte, 4096-8))
		fr := NewFrameReader(bytes.NewReader(frame), 0)
		fr.SetMaxFrame(4096)
		if _, err := fr.ReadFrame(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("over absolute max", func(t *testing.T) {
		hdr := []byte{FrameBody, 0, 1, 0x7F, 0xFF, 0xFF, 0xFF}
		_, err := NewFrameReader(bytes.NewReader(hdr), 0).ReadFrame()
		wantFrameError(t, err, "frame size")
	})
}

// endlessReader serves a frame header claiming a huge payload, then zeros for
// ever, counting what is read.
type endlessReader struct {
	hdr []byte
	n   int
}

func (r *endlessReader) Read(p []byte) (int, error) {
	if len(r.hdr) > 0 {
		n := copy(p, r.hdr)
		r.hdr = r.hdr[n:]
		return n, nil
	}
	clear(p)
	r.n += len(p)
	return len(p), nil
}

func TestHostileSizeRejectedBeforeAllocating(t *testing.T) {
	// A header claiming a 4 GB payload must fail from the header alone.
	for _, limit := range []uint32{0, 131072} {
		r := &endlessReader{hdr: []byte{FrameMethod, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF}}
		fr := NewFrameReader(r, 4096)
		fr.SetMaxFrame(limit)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := fr.ReadFrame()
		runtime.ReadMemStats(&after)
		wantFrameError(t, err, "frame size 4294967303")
		if r.n > 8192 {
			t.Errorf("limit %d: read %d payload bytes before rejecting", limit, r.n)
		}
		// Only the error and its text are allocated.
		if n := after.TotalAlloc - before.TotalAlloc; n > 64<<10 {
			t.Errorf("limit %d: %d bytes allocated", limit, n)
		}
	}
}

func TestReadFrameShortReads(t *testing.T) {
	good := AppendMethodFrame(nil, 1, &BasicQos{PrefetchCount: 10})
	big := AppendFrame(nil, FrameBody, 1, make([]byte, 10000))
	tests := []struct {
		name  string
		input []byte
		want  error
	}{
		{"empty", nil, io.EOF},
		{"partial header", good[:3], io.ErrUnexpectedEOF},
		{"partial payload", good[:10], io.ErrUnexpectedEOF},
		{"missing frame end", good[:len(good)-1], io.ErrUnexpectedEOF},
		{"partial large payload", big[:5000], io.ErrUnexpectedEOF},
		{"large, header only", big[:7], io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewFrameReader(bytes.NewReader(tt.input), 4096).ReadFrame()
			if err != tt.want {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

// timeoutReader returns its chunks one per Read, with a timeout error between
// them.
type timeoutReader struct {
	chunks [][]byte
	fail   bool
}

func (r *timeoutReader) Read(p []byte) (int, error) {
	if r.fail {
		r.fail = false
		return 0, os.ErrDeadlineExceeded
	}
	if len(r.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.chunks[0])
	r.chunks = r.chunks[1:]
	r.fail = true
	return n, nil
}

func TestReadFrameTimeoutIsResumable(t *testing.T) {
	frame := AppendMethodFrame(nil, 1, &BasicAck{DeliveryTag: 42})
	r := &timeoutReader{chunks: [][]byte{frame[:3], frame[3:12], frame[12:]}}
	fr := NewFrameReader(r, 0)
	timeouts := 0
	for {
		f, err := fr.ReadFrame()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			timeouts++
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		m, err := DecodeMethod(f.Payload)
		if err != nil || m.(*BasicAck).DeliveryTag != 42 {
			t.Fatalf("%#v %v", m, err)
		}
		break
	}
	if timeouts == 0 {
		t.Error("timeouts were not returned unchanged")
	}
}

func TestAppendBodyFrames(t *testing.T) {
	body := bytes.Repeat([]byte("abcdefgh"), 2000) // 16000 bytes
	tests := []struct {
		frameMax uint32
		frames   int
	}{
		{0, 1},
		{131072, 1},
		{4096, 4},     // 4088-byte chunks: 4088*3=12264, remainder 3736
		{16008, 1},    // exactly fits
		{16007, 2},    // one byte over
		{100, 4},      // below FrameMinSize: treated as 4096
		{1 << 31, 1},  // large
		{4096 + 8, 4}, // 4096-byte chunks: 16000/4096 = 3.9
		{8000 + 8, 2}, // two equal halves
		{5333 + 8, 4}, // 5333*3 = 15999, one byte left
		{FrameMinSize, 4},
	}
	for _, tt := range tests {
		out := AppendBodyFrames([]byte("prefix"), 9, body, tt.frameMax)
		if string(out[:6]) != "prefix" {
			t.Fatal("prefix clobbered")
		}
		fr := NewFrameReader(bytes.NewReader(out[6:]), 0)
		var got []byte
		n := 0
		for {
			f, err := fr.ReadFrame()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			limit := tt.frameMax
			if limit != 0 && limit < FrameMinSize {
				limit = FrameMinSize
			}
			if f.Type != FrameBody || f.Channel != 9 || (limit != 0 && uint32(len(f.Payload))+8 > limit) {
				t.Errorf("frameMax %d: bad frame type %d channel %d size %d", tt.frameMax, f.Type, f.Channel, len(f.Payload))
			}
			got = append(got, f.Payload...)
			n++
		}
		if n != tt.frames || !bytes.Equal(got, body) {
			t.Errorf("frameMax %d: %d frames (want %d), body equal %v", tt.frameMax, n, tt.frames, bytes.Equal(got, body))
		}
	}
	if out := AppendBodyFrames(nil, 1, nil, 4096); len(out) != 0 {
		t.Errorf("empty body produced %x", out)
	}
}

func TestAppendFrameBytes(t *testing.T) {
	if got := AppendHeartbeatFrame(nil); !bytes.Equal(got, []byte{8, 0, 0, 0, 0, 0, 0, 0xCE}) {
		t.Errorf("heartbeat %x", got)
	}
	got := AppendHeaderFrame(nil, 2, ClassBasic, 0x1234, []byte{0x10, 0x00, 0x02})
	want := unhex(t, "02 0002 0000000F 003C 0000 0000000000001234 1000 02 CE")
	if !bytes.Equal(got, want) {
		t.Errorf("header frame\n got %x\nwant %x", got, want)
	}
	p := &Properties{Flags: FlagDeliveryMode, DeliveryMode: 2}
	if got := AppendHeaderFrameProps(nil, 2, 0x1234, p); !bytes.Equal(got, want) {
		t.Errorf("AppendHeaderFrameProps\n got %x\nwant %x", got, want)
	}
	if got := AppendFrame(nil, FrameBody, 0x0102, []byte("hi")); !bytes.Equal(got, unhex(t, "03 0102 00000002 6869 CE")) {
		t.Errorf("body frame %x", got)
	}
}

func TestContentHeaderErrors(t *testing.T) {
	good := AppendHeaderFrame(nil, 1, ClassBasic, 10, (&Properties{Flags: FlagHeaders, Headers: Table{"a": "b"}}).Append(nil))
	payload := good[7 : len(good)-1]
	for i := 0; i < len(payload); i++ {
		_, err := ParseContentHeader(payload[:i])
		var de *DecodeError
		if !errors.As(err, &de) {
			t.Fatalf("prefix %d: err = %v, want *DecodeError", i, err)
		}
		if i >= 2 && de.ClassID != ClassBasic {
			t.Errorf("prefix %d: ClassID %d", i, de.ClassID)
		}
	}
	// A broken table inside the headers property is caught.
	bad := bytes.Clone(payload)
	bad[len(bad)-6] = 'Z' // the 'S' type tag of "b"
	if _, err := ParseContentHeader(bad); err == nil {
		t.Error("broken headers table accepted")
	}
	if _, err := ParseContentHeader(payload); err != nil {
		t.Error(err)
	}
}

func TestFrameWritersDoNotAllocate(t *testing.T) {
	buf := make([]byte, 0, 1<<16)
	deliver := &BasicDeliver{ConsumerTag: "ctag-1", DeliveryTag: 99, Exchange: "amq.topic", RoutingKey: "a.b.c"}
	props := []byte{0x10, 0x00, 0x02}
	body := make([]byte, 10000)
	allocs := testing.AllocsPerRun(100, func() {
		b := AppendMethodFrame(buf[:0], 1, deliver)
		b = AppendHeaderFrame(b, 1, ClassBasic, uint64(len(body)), props)
		b = AppendBodyFrames(b, 1, body, 4096)
		_ = AppendHeartbeatFrame(b)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per run", allocs)
	}
}

func TestReadFrameDoesNotAllocate(t *testing.T) {
	frame := AppendMethodFrame(nil, 1, &BasicPublish{Exchange: "x", RoutingKey: "y"})
	frame = AppendHeaderFrame(frame, 1, ClassBasic, 100, []byte{0, 0})
	frame = AppendBodyFrames(frame, 1, make([]byte, 100), 0)
	r := bytes.NewReader(frame)
	fr := NewFrameReader(r, 0)
	allocs := testing.AllocsPerRun(100, func() {
		r.Reset(frame)
		for i := 0; i < 3; i++ {
			if _, err := fr.ReadFrame(); err != nil {
				t.Fatal(err)
			}
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per run", allocs)
	}
}
