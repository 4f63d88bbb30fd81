package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// scanBufSize is the size of one sequential read while scanning.
const scanBufSize = 4 << 20

// segScanner gives windowed access to a segment file with large
// sequential reads. It is used by one goroutine at a time.
type segScanner struct {
	f      File
	size   int64
	buf    []byte
	bufOff int64
	n      int
	// mapFiles: scanSegment maps an OS file instead of reading it, and
	// mapped is that mapping, the whole file, while it scans.
	mapFiles bool
	mapped   []byte
	// known says which record types and versions are valid; nil means
	// knownVersion, the message log's.
	known func(RecordType, uint8) bool
}

func (s *segScanner) knows(t RecordType, v uint8) bool {
	if s.known != nil {
		return s.known(t, v)
	}
	return knownVersion(t, v)
}

func (s *segScanner) reset(f File, size int64) {
	s.f, s.size, s.bufOff, s.n = f, size, 0, 0
	if want := min(int64(scanBufSize), max(size, 4096)); int64(len(s.buf)) < want {
		s.buf = make([]byte, want)
	}
}

// at returns bytes [off, off+need) of the file. The caller has checked
// that they lie within the file; need is at most MaxRecordSize.
func (s *segScanner) at(off int64, need int) ([]byte, error) {
	if s.mapped != nil {
		if off < 0 || off+int64(need) > int64(len(s.mapped)) {
			return nil, io.ErrUnexpectedEOF
		}
		return s.mapped[off : off+int64(need) : off+int64(need)], nil
	}
	if off >= s.bufOff && off+int64(need) <= s.bufOff+int64(s.n) {
		i := int(off - s.bufOff)
		return s.buf[i : i+need], nil
	}
	if need > len(s.buf) {
		s.buf = make([]byte, need)
	}
	want := int64(len(s.buf))
	if rem := s.size - off; rem < want {
		want = rem
	}
	n, err := s.f.ReadAt(s.buf[:want], off)
	if err != nil && !(errors.Is(err, io.EOF) && int64(n) == want) {
		s.n = 0
		return nil, err
	}
	s.bufOff, s.n = off, n
	if n < need {
		return nil, io.ErrUnexpectedEOF
	}
	return s.buf[:need], nil
}

// scannedRecord is one record whose CRC verified. payload is only valid
// until the next scanner call.
type scannedRecord struct {
	off     int64
	size    uint32
	typ     RecordType
	ver     uint8
	payload []byte
}

// check validates the record at off. On failure it returns a reason, and
// for a sane length with a bad checksum the unverified record in r.
func (s *segScanner) check(off int64, r *scannedRecord) (ok bool, reason string, err error) {
	if off+RecordHeaderSize > s.size {
		return false, "truncated record header", nil
	}
	h, err := s.at(off, RecordHeaderSize)
	if err != nil {
		return false, "", err
	}
	length := int64(binary.LittleEndian.Uint32(h))
	sum := binary.LittleEndian.Uint32(h[4:])
	if length < 2 {
		return false, fmt.Sprintf("invalid record length %d", length), nil
	}
	if length > MaxRecordSize-RecordHeaderSize || off+RecordHeaderSize+length > s.size {
		return false, fmt.Sprintf("record length %d exceeds file (size %d)", length, s.size), nil
	}
	b, err := s.at(off, int(RecordHeaderSize+length))
	if err != nil {
		return false, "", err
	}
	body := b[RecordHeaderSize:]
	*r = scannedRecord{off: off, size: uint32(RecordHeaderSize + length), typ: RecordType(body[0]), ver: body[1], payload: body[2:]}
	if crc32.Checksum(body, castagnoli) != sum {
		return false, "checksum mismatch", nil
	}
	if !s.knows(r.typ, r.ver) {
		return false, fmt.Sprintf("unknown record type %d version %d", r.typ, r.ver), nil
	}
	return true, "", nil
}

// resync looks for the first offset >= from holding a valid record.
// It returns -1 if there is none.
func (s *segScanner) resync(from int64) (int64, error) {
	var r scannedRecord
	for off := from; off+RecordHeaderSize+2 <= s.size; off++ {
		// Cheap pre-filter before the CRC: plausible length, type, version.
		h, err := s.at(off, RecordHeaderSize+2)
		if err != nil {
			return -1, err
		}
		length := int64(binary.LittleEndian.Uint32(h))
		if length < 2 || off+RecordHeaderSize+length > s.size || !s.knows(RecordType(h[8]), h[9]) {
			continue
		}
		ok, _, err := s.check(off, &r)
		if err != nil {
			return -1, err
		}
		if ok {
			return off, nil
		}
	}
	return -1, nil
}

// badRegion describes an unreadable stretch of a segment.
type badRegion struct {
	off    int64
	reason string
	resync int64    // next valid record, or -1 if none until end of file
	queues []uint64 // queues named by the bad record, if decodable
}

// scanSegment walks a segment file: onRec for every valid record, onBad
// for every bad region (after which scanning resumes at the next valid
// record). It returns the decoded header (zero if unreadable).
func (s *segScanner) scanSegment(f File, size int64, onRec func(*scannedRecord) error, onBad func(*badRegion) error) (SegmentHeader, error) {
	s.reset(f, size)
	if of, ok := f.(osFile); ok && s.mapFiles && size > 0 {
		// Reading a segment copied it out of the page cache a second time
		// (a fifth of recovering a million messages); on failure, read.
		if data, unmap, err := mapReadOnly(of.File, size); err == nil {
			s.mapped = data
			defer func() {
				s.mapped = nil
				_ = unmap()
			}()
		}
	}
	var hdr SegmentHeader
	off := int64(SegmentHeaderSize)
	var hdrErr error
	if size < SegmentHeaderSize {
		hdrErr = errors.New("short segment header")
	} else {
		b, err := s.at(0, SegmentHeaderSize)
		if err != nil {
			return hdr, err
		}
		hdr, hdrErr = decodeSegmentHeader(b)
	}
	if hdrErr != nil {
		next, err := s.resync(SegmentHeaderSize)
		if err != nil {
			return hdr, err
		}
		if err := onBad(&badRegion{off: 0, reason: hdrErr.Error(), resync: next}); err != nil {
			return hdr, err
		}
		if next < 0 {
			return hdr, nil
		}
		off = next
	}
	var r scannedRecord
	for off < size {
		ok, reason, err := s.check(off, &r)
		if err != nil {
			return hdr, err
		}
		if ok {
			if err := onRec(&r); err != nil {
				return hdr, err
			}
			off += int64(r.size)
			continue
		}
		bad := &badRegion{off: off, reason: reason}
		// The header was sane but the body is not: remember which queues
		// it names (unverified) before resynchronising moves the window.
		var hintEnd int64 = -1
		if reason == "checksum mismatch" {
			hintEnd = off + int64(r.size)
			bad.queues = hintQueues(r.typ, r.ver, r.payload)
		}
		if bad.resync, err = s.resync(off + 1); err != nil {
			return hdr, err
		}
		if bad.resync != hintEnd {
			// The damage spans more than the one record we could read.
			bad.queues = nil
		}
		if err := onBad(bad); err != nil {
			return hdr, err
		}
		if bad.resync < 0 {
			break
		}
		off = bad.resync
	}
	return hdr, nil
}

// hintQueues extracts the queue ids of an unverified record, best effort.
func hintQueues(t RecordType, ver uint8, p []byte) []uint64 {
	switch t {
	case RecordMessage:
		if _, qs, _, _, err := decodeMessageHead(p, ver, nil); err == nil {
			return qs
		}
	case RecordAck:
		if q, _, err := decodeAck(p, nil); err == nil {
			return []uint64{q}
		}
	case RecordDropQueue:
		if q, _, err := decodeDrop(p); err == nil {
			return []uint64{q}
		}
	}
	return nil
}
