package repair

import (
	"bytes"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/amqp-go/amqp-go/shared/wal"
)

type store struct {
	dir  string
	msgs map[uint64]*wal.Message
	pos  map[uint64]wal.Position
	meta bool // add gives every other message metadata
}

func newStore(t *testing.T) *store {
	return &store{dir: t.TempDir(), msgs: map[uint64]*wal.Message{}, pos: map[uint64]wal.Position{}}
}

func (s *store) open(t *testing.T) (*wal.Log, *wal.Recovered) {
	t.Helper()
	l, rec, err := wal.Open(wal.Options{Dir: s.dir, SegmentSize: 2 << 10})
	if err != nil {
		t.Fatal(err)
	}
	return l, rec
}

func (s *store) add(t *testing.T, l *wal.Log, n int, queues ...uint64) []wal.Ref {
	t.Helper()
	var refs []wal.Ref
	for i := 0; i < n; i++ {
		m := &wal.Message{Queues: queues, Exchange: "ex", RoutingKey: fmt.Sprint("rk", len(s.msgs)),
			Properties: []byte{0x10, 0, 2}, Body: bytes.Repeat([]byte{byte('a' + len(s.msgs)%26)}, 200)}
		if n := int64(len(s.msgs)); s.meta && n%2 == 1 {
			// Every other record is version 2: compaction must keep its
			// metadata, also when it rewrites the record.
			m.Meta = wal.Meta{Timestamp: 1_700_000_000_000_000_000 + n, Expires: 1_800_000_000_000_000_000, Priority: uint8(n % 10)}
		}
		p, err := l.Append(m, nil)
		if err != nil {
			t.Fatal(err)
		}
		c := *m
		s.msgs[m.ID], s.pos[m.ID] = &c, p
		refs = append(refs, wal.Ref{ID: m.ID, Segment: p.Segment})
	}
	return refs
}

func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, _ := os.ReadFile(p)
			out[p] = string(b)
		}
		return nil
	})
	return out
}

func run(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Run(append([]string{"recovery-tool"}, args...), &out, &errb)
	return out.String(), errb.String(), code
}

// checkRecovered opens the log and checks that exactly want (ids) are live
// in queue q, with their original content.
func (s *store) checkRecovered(t *testing.T, want map[uint64][]uint64) *wal.Recovered {
	t.Helper()
	l, rec := s.open(t)
	defer l.Close()
	if len(rec.Corruptions) != 0 || rec.TruncatedTail != nil {
		t.Fatalf("after repair: corruptions %v tail %+v", rec.Corruptions, rec.TruncatedTail)
	}
	for q, ids := range want {
		var got []uint64
		if rq := rec.Queues[q]; rq != nil {
			for _, e := range rq.Entries {
				got = append(got, e.ID)
				m, err := l.ReadMessage(e.Pos)
				if err != nil || !bytes.Equal(m.Body, s.msgs[e.ID].Body) || m.RoutingKey != s.msgs[e.ID].RoutingKey ||
					m.Meta != s.msgs[e.ID].Meta || e.Meta != m.Meta {
					t.Fatalf("queue %d id %d: %v", q, e.ID, err)
				}
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(ids) {
			t.Fatalf("queue %d live %v, want %v", q, got, ids)
		}
	}
	for q := range rec.Queues {
		if _, ok := want[q]; !ok {
			t.Fatalf("unexpected live queue %d", q)
		}
	}
	return rec
}

func ids(from, to uint64, skip func(uint64) bool) []uint64 {
	var out []uint64
	for i := from; i <= to; i++ {
		if skip == nil || !skip(i) {
			out = append(out, i)
		}
	}
	return out
}

func TestRefusesWhileLocked(t *testing.T) {
	s := newStore(t)
	l, _ := s.open(t)
	defer l.Close()
	for _, args := range [][]string{{"verify"}, {"repair"}, {"repair", "--dry-run"}, {"compact"}} {
		_, errs, code := run(t, append(args, "--dir", s.dir)...)
		if code != ExitProblem || !strings.Contains(errs, "locked by a running server") {
			t.Fatalf("%v: exit %d, stderr %q", args, code, errs)
		}
	}
}

func TestVerify(t *testing.T) {
	s := newStore(t)
	l, _ := s.open(t)
	s.add(t, l, 20, 1)
	l.Close()
	out, _, code := run(t, "verify", "--dir", s.dir)
	if code != 0 || !strings.HasPrefix(out, "OK:") {
		t.Fatalf("exit %d: %s", code, out)
	}
	p := s.pos[12]
	flip(t, filepath.Join(s.dir, wal.SegmentFileName(p.Segment)), p.Offset+50)
	out, _, code = run(t, "verify", "--dir", s.dir)
	if code != ExitProblem || !strings.Contains(out, fmt.Sprintf("at offset %d", p.Offset)) || !strings.Contains(out, "affected queues: [1]") {
		t.Fatalf("exit %d: %s", code, out)
	}
}

func flip(t *testing.T, path string, off int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[off] ^= 0x5a
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestRepairTornTail(t *testing.T) {
	s := newStore(t)
	l, _ := s.open(t)
	s.add(t, l, 12, 1)
	l.Close()
	r, _ := wal.OpenReader(s.dir)
	segs := r.Segments()
	last := segs[len(segs)-1]
	garbage := []byte{0x40, 0, 0, 0, 9, 9, 9, 9, 1, 1, 7}
	f, _ := os.OpenFile(last.Path, os.O_APPEND|os.O_WRONLY, 0)
	f.Write(garbage)
	f.Close()

	before := snapshot(t, s.dir)
	out, _, code := run(t, "repair", "--dir", s.dir, "--dry-run")
	if code != 0 || !strings.Contains(out, "would change") || !strings.Contains(out, "truncate torn tail") {
		t.Fatalf("dry run exit %d: %s", code, out)
	}
	if !maps.Equal(before, snapshot(t, s.dir)) {
		t.Fatal("dry run changed files")
	}
	out, _, code = run(t, "repair", "--dir", s.dir)
	if code != 0 || !strings.Contains(out, "changed") {
		t.Fatalf("exit %d: %s", code, out)
	}
	checkBackup(t, s.dir, before, out)
	q := filepath.Join(s.dir, QuarantineDir, fmt.Sprintf("%s.%012d.torn", filepath.Base(last.Path), last.Size))
	if b, err := os.ReadFile(q); err != nil || !bytes.Equal(b, garbage) {
		t.Fatalf("quarantine %s: %v %x", q, err, b)
	}
	if st, _ := os.Stat(last.Path); st.Size() != last.Size {
		t.Fatalf("not truncated: %d", st.Size())
	}
	s.checkRecovered(t, map[uint64][]uint64{1: ids(1, 12, nil)})
}

func TestRepairCorruption(t *testing.T) {
	s := newStore(t)
	l, _ := s.open(t)
	s.add(t, l, 30, 4, 5)
	l.Close()
	victim := s.pos[3] // segment 1
	seg := filepath.Join(s.dir, wal.SegmentFileName(victim.Segment))
	orig, _ := os.ReadFile(seg)
	flip(t, seg, victim.Offset+60)
	size := s.pos[4].Offset - victim.Offset

	before := snapshot(t, s.dir)
	out, _, code := run(t, "repair", "--dir", s.dir, "--dry-run", "--json")
	if code != 0 || !strings.Contains(out, `"kind": "quarantine"`) || !strings.Contains(out, `"dry_run": true`) {
		t.Fatalf("dry run exit %d: %s", code, out)
	}
	if !maps.Equal(before, snapshot(t, s.dir)) {
		t.Fatal("dry run changed files")
	}
	out, _, code = run(t, "repair", "--dir", s.dir)
	if code != 0 || !strings.Contains(out, "queues that may have lost messages or acks: [4 5]") {
		t.Fatalf("exit %d: %s", code, out)
	}
	checkBackup(t, s.dir, before, out)
	q := filepath.Join(s.dir, QuarantineDir, fmt.Sprintf("%s.%012d.corrupt", filepath.Base(seg), victim.Offset))
	b, err := os.ReadFile(q)
	if err != nil || int64(len(b)) != size {
		t.Fatalf("quarantine: %v, %d bytes, want %d", err, len(b), size)
	}
	b[60] ^= 0x5a
	if !bytes.Equal(b, orig[victim.Offset:victim.Offset+size]) {
		t.Fatal("quarantined bytes differ from the original record")
	}
	if out, _, code := run(t, "verify", "--dir", s.dir); code != 0 {
		t.Fatalf("verify after repair: %s", out)
	}
	want := ids(1, 30, func(i uint64) bool { return i == 3 })
	s.checkRecovered(t, map[uint64][]uint64{4: want, 5: want})
}

func TestCompact(t *testing.T) {
	s := newStore(t)
	s.meta = true
	l, _ := s.open(t)
	a := s.add(t, l, 9, 1, 2) // segment 1: live on queue 1, dead on queue 2
	b := s.add(t, l, 36, 3)   // segments 2..: mostly acked below
	s.add(t, l, 3, 6)         // queue 6 is dropped below
	l.Ack(2, a, nil)          // lands in a sparse later segment
	var acks []wal.Ref
	for i, r := range b {
		if i%9 != 0 {
			acks = append(acks, r)
		}
	}
	l.Ack(3, acks, nil)
	l.DropQueue(6, nil)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	wantQ3 := []uint64{}
	for i, r := range b {
		if i%9 == 0 {
			wantQ3 = append(wantQ3, r.ID)
		}
	}
	want := map[uint64][]uint64{1: ids(1, 9, nil), 3: wantQ3}
	recBefore := s.checkRecovered(t, want)

	before := snapshot(t, s.dir)
	out, _, code := run(t, "compact", "--dir", s.dir, "--dry-run")
	if code != 0 || !strings.Contains(out, "would change") {
		t.Fatalf("dry run exit %d: %s", code, out)
	}
	if !maps.Equal(before, snapshot(t, s.dir)) {
		t.Fatal("dry run changed files")
	}
	var sizeBefore int64
	for _, v := range before {
		sizeBefore += int64(len(v))
	}
	out, _, code = run(t, "compact", "--dir", s.dir)
	if code != 0 || !strings.Contains(out, "rewrite") {
		t.Fatalf("exit %d: %s", code, out)
	}
	backup := checkBackup(t, s.dir, before, out)
	var sizeAfter int64
	for p, v := range snapshot(t, s.dir) {
		if !strings.HasPrefix(p, backup+string(filepath.Separator)) {
			sizeAfter += int64(len(v))
		}
	}
	t.Logf("compact: %d -> %d bytes\n%s", sizeBefore, sizeAfter, out)
	if sizeAfter >= sizeBefore*2/3 {
		t.Fatalf("compaction saved too little: %d -> %d", sizeBefore, sizeAfter)
	}
	rec := s.checkRecovered(t, want) // queue 2 stays empty: re-emitted acks
	if rec.NextID < recBefore.NextID {
		t.Fatalf("NextID went back: %d < %d", rec.NextID, recBefore.NextID)
	}
	if out, _, code := run(t, "verify", "--dir", s.dir); code != 0 {
		t.Fatalf("verify after compact: %s", out)
	}
}

func TestBinaryRefusesWhileLocked(t *testing.T) {
	s := newStore(t)
	l, _ := s.open(t)
	defer l.Close()
	bin := filepath.Join(t.TempDir(), "recovery-tool")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/amqp-go/amqp-go/recoverytool/cmd/recovery-tool").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "repair", "--dir", s.dir).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "stop it first") {
		t.Fatalf("repair on a locked dir: %v\n%s", err, out)
	}
}

func TestRepairRebuildsVersionAndQuarantinesHeaderlessTail(t *testing.T) {
	s := newStore(t)
	l, _ := s.open(t)
	s.add(t, l, 5, 1)
	l.Close()
	os.Remove(filepath.Join(s.dir, wal.VersionFile))
	r, _ := wal.OpenReaderUnchecked(wal.OSFS{}, s.dir)
	segs := r.Segments()
	torn := filepath.Join(s.dir, wal.SegmentFileName(segs[len(segs)-1].Number+1))
	os.WriteFile(torn, []byte("AMQPW"), 0o644) // a crash while creating it

	before := snapshot(t, s.dir)
	if _, _, code := run(t, "repair", "--dir", s.dir, "--dry-run"); code != 0 {
		t.Fatalf("dry run exit %d", code)
	}
	if !maps.Equal(before, snapshot(t, s.dir)) {
		t.Fatal("dry run changed files")
	}
	out, errs, code := run(t, "repair", "--dir", s.dir)
	if code != 0 || !strings.Contains(out, "write-version") || !strings.Contains(out, "quarantine-file") {
		t.Fatalf("exit %d: %s %s", code, out, errs)
	}
	checkBackup(t, s.dir, before, out) // the moved segment; VERSION is new
	if _, err := os.Stat(torn); err == nil {
		t.Fatal("headerless segment still in place")
	}
	q := filepath.Join(s.dir, QuarantineDir, filepath.Base(torn)+".000000000000.torn")
	if b, err := os.ReadFile(q); err != nil || string(b) != "AMQPW" {
		t.Fatalf("quarantine: %v %q", err, b)
	}
	s.checkRecovered(t, map[uint64][]uint64{1: ids(1, 5, nil)})
}
