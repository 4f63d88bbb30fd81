package wal

import (
	"errors"
	"path/filepath"
	"testing"
)

func recordOf(t RecordType, payload string) []byte {
	b, start := StartRecord(nil, t)
	return EndRecord(append(b, payload...), start)
}

func openRecordLog(t *testing.T, fsys FS) (*RecordLog, []string, *TornTail, error) {
	t.Helper()
	var got []string
	l, torn, err := OpenRecordLog(RecordLogOptions{Dir: "r", FS: fsys}, func(r *LogRecord) error {
		got = append(got, string(r.Payload))
		return nil
	})
	return l, got, torn, err
}

// TestRecordLog writes records across segments, replays them in order,
// removes a segment, and shows that a half-created last segment (a crash
// during Roll) is removed while a damaged earlier one fails the open.
func TestRecordLog(t *testing.T) {
	fsys := NewMemFS()
	l, got, _, err := openRecordLog(t, fsys)
	if err != nil || len(got) != 0 {
		t.Fatalf("open: %v %v", got, err)
	}
	if _, err := l.Write(recordOf(RecordRaftEntries, "x")); err == nil {
		t.Fatal("Write before Roll succeeded")
	}
	if err := l.Roll(recordOf(RecordRaftHardState, "cp1")); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Write(append(recordOf(RecordRaftEntries, "a"), recordOf(RecordRaftCompact, "b")...)); err != nil {
		t.Fatal(err)
	}
	if err := l.Roll(recordOf(RecordRaftHardState, "cp2")); err != nil {
		t.Fatal(err)
	}
	if seg, err := l.Write(recordOf(RecordRaftEntries, "c")); err != nil || seg != 2 {
		t.Fatalf("Write = %d, %v; want segment 2", seg, err)
	}
	if err := l.Remove([]uint64{2}); err == nil {
		t.Fatal("removed the active segment")
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l, got, torn, err := openRecordLog(t, fsys)
	if err != nil || torn != nil || len(got) != 5 || got[0] != "cp1" || got[4] != "c" {
		t.Fatalf("reopen: %q %+v %v", got, torn, err)
	}
	if err := l.Roll(nil); err != nil {
		t.Fatal(err)
	}
	if err := l.Remove([]uint64{1}); err != nil {
		t.Fatal(err)
	}
	if segs := l.Segments(); len(segs) != 2 || segs[0] != 2 || segs[1] != 3 {
		t.Fatalf("segments %v, want [2 3]", segs)
	}
	l.Close()

	// A crash while creating segment 4: a few bytes of its header.
	fsys.WriteFile(filepath.Join("r", SegmentFileName(4)), []byte("AMQP"))
	l, got, torn, err = openRecordLog(t, fsys)
	if err != nil || torn == nil || len(got) != 2 {
		t.Fatalf("open after a torn roll: %q %+v %v", got, torn, err)
	}
	if segs := l.Segments(); len(segs) != 2 {
		t.Fatalf("segments %v after a torn roll", segs)
	}
	if err := l.Roll(nil); err != nil {
		t.Fatal(err) // number 5: 4 is not reused
	}
	l.Close()

	// Segment 2's header damaged, with segments after it: corruption.
	p := filepath.Join("r", SegmentFileName(2))
	b, _ := fsys.ReadFile(p)
	b[0] ^= 1
	fsys.WriteFile(p, b)
	var ce *CorruptionError
	if _, _, _, err := openRecordLog(t, fsys); !errors.As(err, &ce) || ce.Segment != 2 {
		t.Fatalf("open with a damaged middle segment: %v", err)
	}
}

// TestRecordLogRejectsMessageRecords: a message record in a Raft log
// directory is corruption, like a Raft record in a message log.
func TestRecordLogRejectsMessageRecords(t *testing.T) {
	fsys := NewMemFS()
	l, _, _, err := openRecordLog(t, fsys)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Roll(nil); err != nil {
		t.Fatal(err)
	}
	msg := AppendMessageRecord(nil, &Message{ID: 1, Queues: []uint64{1}, Body: []byte("m")})
	if _, err := l.Write(append(msg, recordOf(RecordRaftEntries, "after")...)); err != nil {
		t.Fatal(err)
	}
	l.Close()
	if _, _, _, err := openRecordLog(t, fsys); err == nil {
		t.Fatal("a message record in a Raft log was accepted")
	}
}

// TestRollCountsNoCheckpoint: a checkpoint larger than a segment (a Raft
// snapshot of a big queue) does not make the next write roll again; the
// records written after it do, once they reach SegmentSize. (Counting the
// checkpoint rolled at every write, each new segment another copy of the
// snapshot, until the disk was full.)
func TestRollCountsNoCheckpoint(t *testing.T) {
	l, _, err := OpenRecordLog(RecordLogOptions{Dir: "r", FS: NewMemFS(), SegmentSize: 1 << 10}, func(*LogRecord) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Roll(recordOf(RecordRaftSnapshot, string(make([]byte, 8<<10)))); err != nil {
		t.Fatal(err)
	}
	if l.ShouldRoll() {
		t.Fatal("a segment holding only its 8 KiB checkpoint should roll before 1 KiB more")
	}
	if _, err := l.Write(recordOf(RecordRaftEntries, string(make([]byte, 1<<10)))); err != nil {
		t.Fatal(err)
	}
	if !l.ShouldRoll() {
		t.Fatal("1 KiB written after the checkpoint: the segment should roll")
	}
}
