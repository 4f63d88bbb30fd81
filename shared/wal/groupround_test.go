package wal

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// gatedFS holds a segment file's Syncs, once hold is called, until
// release, so that appends pile up behind a commit round.
type gatedFS struct {
	*MemFS
	entered chan struct{} // receives when a held Sync is waiting
	mu      sync.Mutex
	gate    chan struct{} // (mu) closed: Syncs go through
}

func (g *gatedFS) hold() {
	g.mu.Lock()
	g.gate = make(chan struct{})
	g.mu.Unlock()
}

func (g *gatedFS) release() {
	g.mu.Lock()
	close(g.gate)
	g.mu.Unlock()
}

type gatedFile struct {
	File
	fs *gatedFS
}

func (g *gatedFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	f, err := g.MemFS.OpenFile(name, flag, perm)
	if err != nil || !strings.HasSuffix(name, ".wal") {
		return f, err
	}
	return gatedFile{f, g}, nil
}

func (f gatedFile) Sync() error {
	f.fs.mu.Lock()
	gate := f.fs.gate
	f.fs.mu.Unlock()
	select {
	case <-gate:
	default:
		f.fs.entered <- struct{}{}
		<-gate
	}
	return f.File.Sync()
}

// While one round's fsync runs, the batches that fill behind it (here
// several, each closed at MaxBatchBytes) are written and fsynced together
// in the next round, with their callbacks in order; if that fsync fails,
// every one of them gets the error.
func TestPendingBatchesShareOneFsync(t *testing.T) {
	for _, fail := range []bool{false, true} {
		t.Run(fmt.Sprint("fail=", fail), func(t *testing.T) {
			g := &gatedFS{MemFS: NewMemFS(), entered: make(chan struct{}, 1), gate: make(chan struct{})}
			close(g.gate)
			l, _, err := Open(Options{Dir: "/data", FS: g, MaxBatchBytes: 4096})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			before := l.Stats()
			g.hold()

			body := strings.Repeat("x", 1000)
			done := make(chan error, 64)
			var order []uint64
			put := func(name string) {
				m := testMsg(name, 1)
				m.Body = []byte(body)
				if _, err := l.Append(m, func(err error) { order = append(order, m.ID); done <- err }); err != nil {
					t.Fatal(err)
				}
			}
			put("first")
			select {
			case <-g.entered:
			case <-time.After(10 * time.Second):
				t.Fatal("the first round never reached its fsync")
			}
			const behind = 20 // about 5 batches of 4 KiB
			for i := 0; i < behind; i++ {
				put(fmt.Sprint(i))
			}
			if fail {
				g.FailSyncs(errors.New("disk on fire"))
			}
			g.release()
			var errs int
			for i := 0; i < behind+1; i++ {
				select {
				case err := <-done:
					if err != nil {
						errs++
					}
				case <-time.After(10 * time.Second):
					t.Fatalf("only %d of %d callbacks", i, behind+1)
				}
			}
			for i := 1; i < len(order); i++ {
				if order[i] != order[i-1]+1 {
					t.Fatalf("callbacks out of order: %v", order)
				}
			}
			s := l.Stats()
			if fail {
				if errs != behind+1 {
					t.Fatalf("%d callbacks failed, want all %d", errs, behind+1)
				}
				return
			}
			if errs != 0 {
				t.Fatalf("%d callbacks failed", errs)
			}
			if got := s.Fsyncs - before.Fsyncs; got != 2 {
				t.Fatalf("%d fsyncs for one round and the %d records behind it, want 2", got, behind)
			}
			if got := s.Batches - before.Batches; got != 2 {
				t.Fatalf("%d commit rounds, want 2", got)
			}
		})
	}
}
