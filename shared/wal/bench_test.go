package wal

import (
	"testing"
	"time"
)

// BenchmarkAppendGroupCommit measures confirmed appends of 1 KB messages
// from many parallel appenders, each waiting for its confirm, with a real
// fdatasync per batch on the OS file system.
func BenchmarkAppendGroupCommit(b *testing.B) {
	l, _, err := Open(Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	body := make([]byte, 1024)
	b.ReportAllocs()
	b.SetBytes(1024)
	b.SetParallelism(16)
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		ch := make(chan error, 1)
		done := func(err error) { ch <- err }
		m := &Message{Queues: []uint64{1}, Exchange: "x", RoutingKey: "k", Properties: []byte{0x10, 0, 2}, Body: body}
		for pb.Next() {
			if _, err := l.Append(m, done); err != nil {
				b.Error(err)
				return
			}
			if err := <-ch; err != nil {
				b.Error(err)
				return
			}
		}
	})
	el := time.Since(start)
	s := l.Stats()
	b.ReportMetric(float64(s.AppendedRecords)/el.Seconds(), "msg/s")
	b.ReportMetric(float64(s.AppendedRecords)/float64(max(s.Fsyncs, 1)), "msgs/fsync")
}

// BenchmarkRecover measures the recovery scan of 1 KB messages from a warm
// page cache.
func BenchmarkRecover(b *testing.B) {
	dir := b.TempDir()
	const n = 200_000
	l, _, err := Open(Options{Dir: dir, Sync: SyncNever})
	if err != nil {
		b.Fatal(err)
	}
	body := make([]byte, 1024)
	var refs []Ref
	for i := 0; i < n; i++ {
		m := &Message{Queues: []uint64{uint64(1 + i%4)}, Exchange: "x", RoutingKey: "k", Properties: []byte{0x10, 0, 2}, Body: body}
		p, err := l.Append(m, nil)
		if err != nil {
			b.Fatal(err)
		}
		if i%2 == 0 && m.Queues[0] == 1 {
			refs = append(refs, Ref{ID: m.ID, Segment: p.Segment})
		}
	}
	l.Ack(1, refs, nil)
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
	r, err := OpenReader(dir)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		rec, err := r.Recover()
		if err != nil || rec.Messages != n {
			b.Fatalf("recover: %v %d", err, rec.Messages)
		}
	}
	b.ReportMetric(float64(n*b.N)/time.Since(start).Seconds(), "msg/s")
}
