package amqp

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// testSink hands out room for body frames on channel 1 only, and records
// what it was asked for.
type testSink struct {
	buf   []byte
	asked []int
}

func (s *testSink) BodyBuffer(channel uint16, size int) []byte {
	s.asked = append(s.asked, size)
	if channel != 1 {
		return nil
	}
	n := len(s.buf)
	s.buf = append(s.buf, make([]byte, size)...)
	return s.buf[n : n+size]
}

// Body frames go into the sink's buffer whether they are all buffered,
// partly buffered or larger than the read buffer, and arriving one byte
// per read; the frames around them (other channels, other types, an empty
// body frame, one over MaxSinkFrame) are read as usual and stay in step.
func TestBodySink(t *testing.T) {
	body := func(n int, c byte) []byte { return bytes.Repeat([]byte{c}, n) }
	var stream []byte
	stream = AppendFrame(stream, FrameBody, 1, body(100, 'a'))  // small
	stream = AppendFrame(stream, FrameBody, 2, body(50, 'b'))   // another channel: not the sink's
	stream = AppendFrame(stream, FrameBody, 1, body(9000, 'c')) // larger than the read buffer
	stream = AppendHeartbeatFrame(stream)
	stream = AppendFrame(stream, FrameBody, 1, nil) // empty: never asked
	stream = AppendFrame(stream, FrameBody, 1, body(MaxSinkFrame+1, 'd'))
	stream = AppendFrame(stream, FrameBody, 1, body(1, 'e'))
	want := append(append(body(100, 'a'), body(9000, 'c')...), body(1, 'e')...)
	for _, r := range []struct {
		name string
		rd   io.Reader
	}{{"whole", bytes.NewReader(stream)}, {"one byte a read", iotest.OneByteReader(bytes.NewReader(stream))}} {
		t.Run(r.name, func(t *testing.T) {
			s := &testSink{}
			fr := NewFrameReader(r.rd, 4096)
			fr.SetBodySink(s)
			var inSink []byte
			for i := 0; ; i++ {
				f, err := fr.ReadFrame()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("frame %d: %v", i, err)
				}
				if f.Type == FrameBody && f.Channel == 1 && len(f.Payload) > 0 && len(f.Payload) <= MaxSinkFrame {
					if &f.Payload[0] != &s.buf[len(inSink)] {
						t.Fatalf("frame %d: payload not in the sink's buffer", i)
					}
					inSink = append(inSink, f.Payload...)
				} else if f.Type == FrameBody && len(f.Payload) > 0 && f.Payload[0] != 'b' && f.Payload[0] != 'd' {
					t.Fatalf("frame %d: unexpected payload %q…", i, f.Payload[:1])
				}
			}
			if !bytes.Equal(inSink, want) || !bytes.Equal(s.buf, want) {
				t.Fatalf("sink got %d bytes, want %d", len(inSink), len(want))
			}
			if len(s.asked) != 4 || s.asked[0] != 100 || s.asked[1] != 50 || s.asked[2] != 9000 || s.asked[3] != 1 {
				t.Errorf("sink asked for %v, want [100 50 9000 1]", s.asked)
			}
		})
	}
}

// A body frame read into the sink is checked like any other: a wrong
// frame-end octet is a frame error and a stream cut in the middle is
// io.ErrUnexpectedEOF, both when the frame is all buffered and when it is
// read straight from the connection; a frame over frame_max is refused
// before the sink is asked.
func TestBodySinkErrors(t *testing.T) {
	for _, n := range []int{100, 9000} {
		frame := AppendFrame(nil, FrameBody, 1, bytes.Repeat([]byte{'x'}, n))
		bad := bytes.Clone(frame)
		bad[len(bad)-1] = 0
		fr := NewFrameReader(bytes.NewReader(bad), 4096)
		fr.SetBodySink(&testSink{})
		_, err := fr.ReadFrame()
		wantFrameError(t, err, "frame end")
		for _, cut := range []int{len(frame) - 1, len(frame) - 5, 10} {
			fr := NewFrameReader(bytes.NewReader(frame[:cut]), 4096)
			fr.SetBodySink(&testSink{})
			if _, err := fr.ReadFrame(); !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("%d-byte frame cut at %d: %v, want io.ErrUnexpectedEOF", n, cut, err)
			}
		}
		s := &testSink{}
		fr = NewFrameReader(bytes.NewReader(frame), 4096)
		fr.SetBodySink(s)
		fr.SetMaxFrame(uint32(len(frame) - 1))
		_, err = fr.ReadFrame()
		wantFrameError(t, err, "frame_max")
		if len(s.asked) != 0 {
			t.Errorf("sink asked for %v before the frame_max check", s.asked)
		}
	}
}
