package raftlog

import (
	"testing"

	"github.com/amqp-go/amqp-go/shared/wal"
)

// FuzzReplay feeds arbitrary payloads, as records whose CRC verified, to
// replay: a malformed one must be an error, never a panic.
func FuzzReplay(f *testing.F) {
	f.Add(uint8(0), appendEntriesRecord(nil, 1, index(5).terms(1, 2))[wal.RecordHeaderSize+2:])
	f.Add(uint8(1), []byte{1, 2, 3, 4})
	f.Add(uint8(3), []byte{1, 9, 1})
	f.Fuzz(func(t *testing.T, kind uint8, payload []byte) {
		l := &Log{groups: map[uint64]*Storage{}, segMax: map[uint64]map[uint64]uint64{}}
		typ := wal.RecordRaftEntries + wal.RecordType(kind%4)
		// Twice: the second lands on the state the first left.
		for range 2 {
			_ = l.replay(&wal.LogRecord{Segment: 1, Type: typ, Version: 1, Payload: payload})
		}
		for _, s := range l.groups {
			first, _ := s.FirstIndex()
			last, _ := s.LastIndex()
			_, _ = s.Term(first - 1)
			_, _ = s.Entries(first, min(last+1, first+4), 1<<20)
		}
	})
}
