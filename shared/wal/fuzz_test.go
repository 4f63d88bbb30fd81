package wal

import (
	"testing"
)

// FuzzRecover feeds arbitrary segment contents to recovery: it must never
// panic or over-allocate, and every recovered entry must read back.
func FuzzRecover(f *testing.F) {
	valid := AppendSegmentHeader(nil, SegmentHeader{Number: 1, MinNextID: 1})
	valid = AppendMessageRecord(valid, &Message{ID: 1, Queues: []uint64{1, 2}, Exchange: "e", Body: []byte("hello")})
	valid = AppendMessageRecord(valid, &Message{ID: 2, Queues: []uint64{2}, Body: []byte("meta"),
		Meta: Meta{Timestamp: 1 << 60, Expires: 1 << 61, Due: 3, Priority: 9}})
	valid = AppendAckRecord(valid, 2, []Ref{{ID: 1, Segment: 1}})
	valid = AppendDropRecord(valid, 1, 2)
	f.Add(valid, false)
	f.Add(valid[:len(valid)-3], true)
	f.Add(append(append([]byte{}, valid[:40]...), 0xff, 0xff, 0xff, 0x7f), false)
	f.Fuzz(func(t *testing.T, data []byte, twoSegs bool) {
		fsys := NewMemFS()
		fsys.MkdirAll("/d", 0o755)
		fsys.WriteFile("/d/VERSION", []byte(versionContent))
		fsys.WriteFile("/d/"+SegmentFileName(1), data)
		if twoSegs {
			fsys.WriteFile("/d/"+SegmentFileName(2), valid)
		}
		r, err := OpenReaderFS(fsys, "/d")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.Recover(); err != nil {
			t.Fatal(err)
		}
		l, rec, err := Open(Options{Dir: "/d", FS: fsys})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		for _, q := range rec.Queues {
			for _, e := range q.Entries {
				m, err := l.ReadMessage(e.Pos)
				if err != nil || m.Meta != e.Meta || uint32(len(m.Body)) != e.BodySize {
					t.Fatalf("entry %+v: %+v, %v", e, m, err)
				}
			}
		}
	})
}
