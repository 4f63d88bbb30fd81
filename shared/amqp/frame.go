package amqp

import (
	"encoding/binary"
	"fmt"
	"io"
	"slices"
	"sync/atomic"
)

// AbsoluteMaxFrame is the largest frame (header, payload and frame-end
// octet) a FrameReader accepts when no frame_max has been set with
// SetMaxFrame.
const AbsoluteMaxFrame = 128 << 20

// frameOverhead is the size of a frame's header (type, channel, size) plus
// its frame-end octet.
const frameOverhead = 8

// largeKeep is the largest buffer a FrameReader keeps for frames that do not
// fit in its bufio.Reader; a larger one is dropped at the next ReadFrame.
const largeKeep = 1 << 20

// Frame is one frame read off the wire.
type Frame struct {
	// Type is FrameMethod, FrameHeader, FrameBody or FrameHeartbeat.
	Type uint8
	// Channel is the channel number.
	Channel uint16
	// Payload aliases the reader's buffer and is valid only until the next
	// ReadFrame.
	Payload []byte
}

// FrameReader reads frames from a connection through its own read buffer.
// It is not safe for concurrent use.
type FrameReader struct {
	br   *readBuffer
	max  uint32
	big  []byte // buffer for frames larger than br's buffer
	sink BodySink
}

// BodySink lets the owner of a FrameReader take body frames straight into
// its own buffers: a large body's bytes then go from the socket to where
// they stay, without passing through the reader's buffer.
type BodySink interface {
	// BodyBuffer returns where the payload of the body frame just
	// announced belongs: exactly size bytes, or nil to have ReadFrame
	// return it in the reader's own buffer as usual. It is called once
	// the frame's header has passed the size checks, before its payload
	// is read; the returned bytes are overwritten even if the frame then
	// turns out malformed (a connection error).
	BodyBuffer(channel uint16, size int) []byte
}

// SetBodySink makes ReadFrame read body frames of at most MaxSinkFrame
// payload bytes into what s.BodyBuffer returns (nil: none). Such a frame's
// Payload is then that slice.
func (fr *FrameReader) SetBodySink(s BodySink) { fr.sink = s }

// MaxSinkFrame is the largest body frame payload ReadFrame asks a BodySink
// for; larger frames are read as usual.
const MaxSinkFrame = largeKeep

// NewFrameReader returns a FrameReader reading from r through a buffer of
// up to bufSize bytes (at least FrameMinSize). The buffer starts small and
// grows only while reads keep filling it, so an idle connection costs a few
// KiB and a busy one reads in large batches. Frames up to bufSize bytes are
// returned without copying; larger ones are copied into a reused buffer.
func NewFrameReader(r io.Reader, bufSize int) *FrameReader {
	if bufSize < FrameMinSize {
		bufSize = FrameMinSize
	}
	return &FrameReader{br: &readBuffer{rd: r, max: bufSize}}
}

// initialReadBuffer is a new connection's read buffer: enough for the
// handshake and for a connection that stays idle.
const initialReadBuffer = 2048

// readBuffer is a bufio.Reader whose buffer grows on demand, from
// initialReadBuffer up to max.
type readBuffer struct {
	rd   io.Reader
	buf  []byte
	r, w int
	max  int
	full bool // the last read filled all free space: grow before the next
	err  error
	// reads counts reads from rd, so a caller can tell whether a frame
	// came from a read just made or from what an earlier one buffered;
	// bytes counts what they returned. Atomics: others read them (a
	// connection's statistics).
	reads, bytes atomic.Uint64
}

func (b *readBuffer) Buffered() int { return b.w - b.r }

// Size is the most a Peek can return.
func (b *readBuffer) Size() int { return b.max }

// fill reads at least once, first making room for need bytes from b.r.
func (b *readBuffer) fill(need int) {
	if b.r > 0 {
		copy(b.buf, b.buf[b.r:b.w])
		b.w -= b.r
		b.r = 0
	}
	if size := len(b.buf); need > size || b.full || size == 0 {
		size = min(max(2*size, need, initialReadBuffer), b.max)
		if size > len(b.buf) {
			nb := make([]byte, size)
			copy(nb, b.buf[:b.w])
			b.buf = nb
		}
	}
	b.reads.Add(1)
	n, err := b.rd.Read(b.buf[b.w:])
	b.bytes.Add(uint64(max(n, 0)))
	b.full = n > 0 && b.w+n == len(b.buf)
	b.w += n
	if err != nil {
		b.err = err
	}
}

// takeErr returns and clears a pending read error, as bufio does, so a
// timed-out read can be retried.
func (b *readBuffer) takeErr() error {
	err := b.err
	b.err = nil
	return err
}

// Peek returns the next n bytes (n <= max) without consuming them.
func (b *readBuffer) Peek(n int) ([]byte, error) {
	for b.w-b.r < n {
		if b.err != nil {
			return b.buf[b.r:b.w], b.takeErr()
		}
		b.fill(n)
	}
	return b.buf[b.r : b.r+n], nil
}

// Discard drops n buffered bytes.
func (b *readBuffer) Discard(n int) (int, error) {
	b.r += n
	if b.r == b.w {
		b.r, b.w = 0, 0
	}
	return n, nil
}

// Read serves buffered bytes first, then reads straight into p.
func (b *readBuffer) Read(p []byte) (int, error) {
	if b.r < b.w {
		n := copy(p, b.buf[b.r:b.w])
		_, _ = b.Discard(n)
		return n, nil
	}
	if b.err != nil {
		return 0, b.takeErr()
	}
	b.reads.Add(1)
	n, err := b.rd.Read(p)
	b.bytes.Add(uint64(max(n, 0)))
	return n, err
}

// SetMaxFrame sets the largest frame ReadFrame accepts: n is the negotiated
// frame_max, the total frame size including the 7-octet header and the
// frame-end octet. 0 means no negotiated limit; AbsoluteMaxFrame still
// applies. A frame over the limit is rejected from its header, before its
// payload is read or any memory is allocated for it.
func (fr *FrameReader) SetMaxFrame(n uint32) { fr.max = n }

// Reads returns how many reads the FrameReader has made from its reader:
// when it has not changed over a ReadFrame, the frame was already buffered
// (a caller reading the clock once a read, not once a frame, uses it).
// Safe to call from any goroutine.
func (fr *FrameReader) Reads() uint64 { return fr.br.reads.Load() }

// ReadBytes returns how many bytes the FrameReader has read from its
// reader. Safe to call from any goroutine.
func (fr *FrameReader) ReadBytes() uint64 { return fr.br.bytes.Load() }

// Buffered returns the number of bytes already read from the connection and
// buffered, i.e. readable without blocking. A server can flush its writes
// when this reaches 0.
func (fr *FrameReader) Buffered() int { return fr.br.Buffered() }

// ReadFrame reads the next frame. Frame-level protocol violations (unknown
// frame type, frame larger than the limit, wrong frame-end octet) return
// *FrameError with Code FrameErrorCode. I/O errors are returned unchanged,
// except that a connection closed in the middle of a frame yields
// io.ErrUnexpectedEOF (io.EOF means it closed between frames). An error that
// occurs before any of a frame has been consumed, such as a read deadline
// expiring while waiting for the rest of a frame that fits in the buffer,
// leaves the reader intact, so ReadFrame may be called again.
func (fr *FrameReader) ReadFrame() (Frame, error) {
	if cap(fr.big) > largeKeep {
		fr.big = nil
	}
	hdr, err := fr.br.Peek(7)
	if err != nil {
		if err == io.EOF && len(hdr) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return Frame{}, err
	}
	typ := hdr[0]
	channel := binary.BigEndian.Uint16(hdr[1:])
	size := binary.BigEndian.Uint32(hdr[3:])
	switch typ {
	case FrameMethod, FrameHeader, FrameBody, FrameHeartbeat:
	default:
		return Frame{}, &FrameError{Code: FrameErrorCode, Text: fmt.Sprintf(
			"FRAME_ERROR - unknown frame type %d (channel %d, payload size %d)", typ, channel, size)}
	}
	total := uint64(size) + frameOverhead
	if fr.max != 0 && total > uint64(fr.max) {
		return Frame{}, &FrameError{Code: FrameErrorCode, Text: fmt.Sprintf(
			"FRAME_ERROR - frame size %d > frame_max %d (type %d, channel %d)", total, fr.max, typ, channel)}
	}
	if total > AbsoluteMaxFrame {
		return Frame{}, &FrameError{Code: FrameErrorCode, Text: fmt.Sprintf(
			"FRAME_ERROR - frame size %d > maximum frame size %d (type %d, channel %d)", total, AbsoluteMaxFrame, typ, channel)}
	}

	if typ == FrameBody && fr.sink != nil && size > 0 && size <= MaxSinkFrame {
		if dst := fr.sink.BodyBuffer(channel, int(size)); len(dst) == int(size) {
			return fr.readInto(dst, typ, channel, size)
		}
	}
	var payload []byte
	if total <= uint64(fr.br.Size()) {
		buf, err := fr.br.Peek(int(total))
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return Frame{}, err
		}
		if end := buf[total-1]; end != FrameEnd {
			return Frame{}, badFrameEnd(end, typ, channel, size)
		}
		// Discard cannot fail: the bytes are buffered.
		_, _ = fr.br.Discard(int(total))
		payload = buf[7 : 7+size : 7+size]
	} else {
		_, _ = fr.br.Discard(7)
		buf, err := fr.readLarge(int(size) + 1)
		if err != nil {
			return Frame{}, err
		}
		if end := buf[size]; end != FrameEnd {
			return Frame{}, badFrameEnd(end, typ, channel, size)
		}
		payload = buf[:size:size]
	}
	return Frame{Type: typ, Channel: channel, Payload: payload}, nil
}

// readInto reads the payload of the frame whose header is next in the
// buffer into dst (len(dst) == size): the buffered part is copied, the rest
// read from the connection straight into dst. A frame that is all
// buffered is checked before anything is consumed, as in ReadFrame.
func (fr *FrameReader) readInto(dst []byte, typ uint8, channel uint16, size uint32) (Frame, error) {
	total := int(size) + frameOverhead
	if fr.br.Buffered() >= total {
		buf, _ := fr.br.Peek(total) // buffered: cannot fail
		if end := buf[total-1]; end != FrameEnd {
			return Frame{}, badFrameEnd(end, typ, channel, size)
		}
		copy(dst, buf[7:7+size])
		_, _ = fr.br.Discard(total)
		return Frame{Type: typ, Channel: channel, Payload: dst}, nil
	}
	_, _ = fr.br.Discard(7)
	// readBuffer.Read serves what is buffered, then reads into dst.
	if _, err := io.ReadFull(fr.br, dst); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return Frame{}, err
	}
	end, err := fr.br.Peek(1)
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return Frame{}, err
	}
	if end[0] != FrameEnd {
		return Frame{}, badFrameEnd(end[0], typ, channel, size)
	}
	_, _ = fr.br.Discard(1)
	return Frame{Type: typ, Channel: channel, Payload: dst}, nil
}

func badFrameEnd(end, typ uint8, channel uint16, size uint32) error {
	return &FrameError{Code: FrameErrorCode, Text: fmt.Sprintf(
		"FRAME_ERROR - invalid frame end octet 0x%02X, expected 0x%02X (type %d, channel %d, payload size %d)",
		end, FrameEnd, typ, channel, size)}
}

// readLarge reads n bytes into fr.big. The buffer grows at most 1 MiB (or
// doubles) per read, so a peer that announces a large frame but does not send
// it cannot make the reader allocate the whole announced size up front.
func (fr *FrameReader) readLarge(n int) ([]byte, error) {
	b := fr.big[:0]
	for len(b) < n {
		chunk := n - len(b)
		if step := max(len(b), largeKeep); chunk > step && cap(b)-len(b) < chunk {
			chunk = step
		}
		b = slices.Grow(b, chunk)
		m, err := io.ReadFull(fr.br, b[len(b):len(b)+chunk])
		b = b[:len(b)+m]
		if err != nil {
			fr.big = b[:0]
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
	fr.big = b[:0]
	return b, nil
}

// appendFrameHeader appends a frame header with a zero size and returns the
// offset of the size field.
func appendFrameHeader(dst []byte, typ uint8, channel uint16) ([]byte, int) {
	dst = append(dst, typ, byte(channel>>8), byte(channel), 0, 0, 0, 0)
	return dst, len(dst) - 4
}

// finishFrame back-patches the size at sizeAt and appends the frame end.
func finishFrame(dst []byte, sizeAt int) []byte {
	binary.BigEndian.PutUint32(dst[sizeAt:], uint32(len(dst)-sizeAt-4))
	return append(dst, FrameEnd)
}

// AppendFrame appends a complete frame of type typ with the given payload.
func AppendFrame(dst []byte, typ uint8, channel uint16, payload []byte) []byte {
	dst = append(dst, typ, byte(channel>>8), byte(channel))
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(payload)))
	dst = append(dst, payload...)
	return append(dst, FrameEnd)
}

// AppendMethodFrame appends a method frame carrying m: header, class and
// method IDs, arguments and frame end. The size is back-patched, so nothing
// is allocated when dst has enough capacity.
func AppendMethodFrame(dst []byte, channel uint16, m Method) []byte {
	dst, sizeAt := appendFrameHeader(dst, FrameMethod, channel)
	dst = binary.BigEndian.AppendUint16(dst, m.ClassID())
	dst = binary.BigEndian.AppendUint16(dst, m.MethodID())
	dst = m.AppendArgs(dst)
	return finishFrame(dst, sizeAt)
}

// AppendHeaderFrame appends a content header frame with weight 0. rawProps
// is the property flags and property list exactly as on the wire (e.g.
// ContentHeader.RawProperties or the output of Properties.Append).
func AppendHeaderFrame(dst []byte, channel uint16, classID uint16, bodySize uint64, rawProps []byte) []byte {
	dst = append(dst, FrameHeader, byte(channel>>8), byte(channel))
	dst = binary.BigEndian.AppendUint32(dst, uint32(12+len(rawProps)))
	dst = binary.BigEndian.AppendUint16(dst, classID)
	dst = append(dst, 0, 0) // weight
	dst = binary.BigEndian.AppendUint64(dst, bodySize)
	dst = append(dst, rawProps...)
	return append(dst, FrameEnd)
}

// AppendHeaderFrameProps appends a basic-class content header frame with
// weight 0 whose properties are p, encoded in place by p.Append.
func AppendHeaderFrameProps(dst []byte, channel uint16, bodySize uint64, p *Properties) []byte {
	dst, sizeAt := appendFrameHeader(dst, FrameHeader, channel)
	dst = binary.BigEndian.AppendUint16(dst, ClassBasic)
	dst = append(dst, 0, 0) // weight
	dst = binary.BigEndian.AppendUint64(dst, bodySize)
	dst = p.Append(dst)
	return finishFrame(dst, sizeAt)
}

// AppendBodyFrames appends body as content body frames of at most frameMax
// bytes each (header and frame end included). frameMax 0 means one frame
// for the whole body; a non-zero frameMax below FrameMinSize is treated as
// FrameMinSize. An empty body appends no frame.
func AppendBodyFrames(dst []byte, channel uint16, body []byte, frameMax uint32) []byte {
	if len(body) == 0 {
		return dst
	}
	chunk := len(body)
	if frameMax != 0 {
		if frameMax < FrameMinSize {
			frameMax = FrameMinSize
		}
		chunk = min(chunk, int(frameMax-frameOverhead))
	}
	frames := (len(body) + chunk - 1) / chunk
	dst = slices.Grow(dst, len(body)+frames*frameOverhead)
	for len(body) > 0 {
		n := min(chunk, len(body))
		dst = AppendFrame(dst, FrameBody, channel, body[:n])
		body = body[n:]
	}
	return dst
}

// AppendHeartbeatFrame appends a heartbeat frame (channel 0, empty payload).
func AppendHeartbeatFrame(dst []byte) []byte {
	return append(dst, FrameHeartbeat, 0, 0, 0, 0, 0, 0, FrameEnd)
}
