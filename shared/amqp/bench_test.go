package amqp

import (
	"testing"
)

// loopReader serves the same bytes for ever.
type loopReader struct {
	data []byte
	off  int
}

func (r *loopReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], r.data[r.off:])
		n += c
		r.off = (r.off + c) % len(r.data)
	}
	return n, nil
}

func BenchmarkReadFrame(b *testing.B) {
	var stream []byte
	stream = AppendMethodFrame(stream, 1, &BasicPublish{Exchange: "amq.direct", RoutingKey: "perf.test"})
	stream = AppendHeaderFrame(stream, 1, ClassBasic, 1024, (&Properties{Flags: FlagDeliveryMode, DeliveryMode: 2}).Append(nil))
	stream = AppendBodyFrames(stream, 1, make([]byte, 1024), 131072)
	fr := NewFrameReader(&loopReader{data: stream}, 64<<10)
	b.SetBytes(int64(len(stream)) / 3)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := fr.ReadFrame(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendMethodFrame(b *testing.B) {
	m := &BasicDeliver{ConsumerTag: "amq.ctag-abcdefghijklmnop", DeliveryTag: 123456, Redelivered: false, Exchange: "amq.direct", RoutingKey: "perf.test"}
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendMethodFrame(buf[:0], 1, m)
	}
}

func BenchmarkAppendDeliveryFrames(b *testing.B) {
	m := &BasicDeliver{ConsumerTag: "amq.ctag-abcdefghijklmnop", DeliveryTag: 123456, Exchange: "amq.direct", RoutingKey: "perf.test"}
	props := (&Properties{Flags: FlagDeliveryMode | FlagContentType, ContentType: "application/json", DeliveryMode: 2}).Append(nil)
	body := make([]byte, 1024)
	buf := make([]byte, 0, 8192)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendMethodFrame(buf[:0], 1, m)
		buf = AppendHeaderFrame(buf, 1, ClassBasic, uint64(len(body)), props)
		buf = AppendBodyFrames(buf, 1, body, 131072)
	}
}

func BenchmarkDecodeBasicPublish(b *testing.B) {
	frame := AppendMethodFrame(nil, 1, &BasicPublish{Exchange: "amq.direct", RoutingKey: "perf.test", Mandatory: true})
	payload := frame[7 : len(frame)-1]
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeMethod(payload); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeBasicPublishReuse(b *testing.B) {
	frame := AppendMethodFrame(nil, 1, &BasicPublish{Exchange: "amq.direct", RoutingKey: "perf.test", Mandatory: true})
	args := frame[11 : len(frame)-1]
	var m BasicPublish
	b.ReportAllocs()
	for b.Loop() {
		if err := m.DecodeArgs(args); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPropertiesDecode(b *testing.B) {
	full := fullProperties()
	raw := full.Append(nil)
	var p Properties
	b.ReportAllocs()
	for b.Loop() {
		if err := p.Decode(raw); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPropertiesDecodeNoHeaders(b *testing.B) {
	raw := (&Properties{Flags: FlagContentType | FlagDeliveryMode, ContentType: "application/json", DeliveryMode: 2}).Append(nil)
	var p Properties
	b.ReportAllocs()
	for b.Loop() {
		if err := p.Decode(raw); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseContentHeader(b *testing.B) {
	full := fullProperties()
	h := AppendHeaderFrame(nil, 1, ClassBasic, 1024, full.Append(nil))
	payload := h[7 : len(h)-1]
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseContentHeader(payload); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPeekDeliveryMode(b *testing.B) {
	full := fullProperties()
	raw := full.Append(nil)
	b.ReportAllocs()
	for b.Loop() {
		if PeekDeliveryMode(raw) != 2 {
			b.Fatal("wrong")
		}
	}
}

func BenchmarkAppendTable(b *testing.B) {
	tab := Table{"x-max-length": int64(10), "x-queue-type": "classic", "x-message-ttl": int32(1000), "x-dead-letter-exchange": "dlx"}
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendTable(buf[:0], tab)
	}
}
