package bench

import (
	"errors"
	"testing"
)

func TestHeaderRoundTrip(t *testing.T) {
	b := make([]byte, 64)
	EncodeHeader(b, 1<<40+7, producerTag(0xBEEF, 3), -5)
	seq, tag, ts, err := DecodeHeader(b)
	if err != nil || seq != 1<<40+7 || ts != -5 {
		t.Fatalf("got seq=%d tag=%x ts=%d err=%v", seq, tag, ts, err)
	}
	run, idx := splitProducerTag(tag)
	if run != 0xBEEF || idx != 3 {
		t.Fatalf("split tag: run=%x idx=%d", run, idx)
	}
	if _, _, _, err := DecodeHeader(b[:HeaderSize-1]); !errors.Is(err, ErrShortBody) {
		t.Fatalf("short body: err=%v", err)
	}
}

func TestEncodeHeaderDoesNotAllocate(t *testing.T) {
	b := make([]byte, HeaderSize)
	if n := testing.AllocsPerRun(100, func() { EncodeHeader(b, 1, 2, 3) }); n != 0 {
		t.Fatalf("EncodeHeader allocates %v times", n)
	}
}
