package bench

import (
	"encoding/binary"
	"errors"
)

// HeaderSize is the number of bytes every message body starts with:
// sequence (8), producer tag (4) and send timestamp in UnixNano (8).
const HeaderSize = 20

// ErrShortBody is returned by DecodeHeader for bodies shorter than HeaderSize.
var ErrShortBody = errors.New("perftest: message body shorter than header")

// EncodeHeader writes the perftest header into b, which must be at least
// HeaderSize bytes long. It does not allocate.
func EncodeHeader(b []byte, seq uint64, producer uint32, sentUnixNano int64) {
	_ = b[HeaderSize-1]
	binary.BigEndian.PutUint64(b[0:8], seq)
	binary.BigEndian.PutUint32(b[8:12], producer)
	binary.BigEndian.PutUint64(b[12:20], uint64(sentUnixNano))
}

// DecodeHeader reads the perftest header from the start of b.
func DecodeHeader(b []byte) (seq uint64, producer uint32, sentUnixNano int64, err error) {
	if len(b) < HeaderSize {
		return 0, 0, 0, ErrShortBody
	}
	return binary.BigEndian.Uint64(b[0:8]), binary.BigEndian.Uint32(b[8:12]),
		int64(binary.BigEndian.Uint64(b[12:20])), nil
}

// producerTag combines a per-run tag (high 16 bits) with a producer index
// (low 16 bits), so that consumers can tell this run's messages from stale
// ones left in a queue by an earlier run.
func producerTag(runTag uint16, index int) uint32 {
	return uint32(runTag)<<16 | uint32(uint16(index))
}

// splitProducerTag is the inverse of producerTag.
func splitProducerTag(tag uint32) (runTag uint16, index int) {
	return uint16(tag >> 16), int(uint16(tag))
}
