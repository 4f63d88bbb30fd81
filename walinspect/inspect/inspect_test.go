package inspect

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/amqp-go/amqp-go/shared/amqp"
	"github.com/amqp-go/amqp-go/shared/wal"
)

// buildStore writes 30 messages over several segments to queues 1 and 2,
// acks the first 10 of queue 1 and drops queue 3; it returns the
// positions of the messages.
func buildStore(t *testing.T) (string, []wal.Position) {
	t.Helper()
	return buildStoreIn(t, t.TempDir())
}

// buildStoreIn is buildStore in dir (created if needed).
func buildStoreIn(t *testing.T, dir string) (string, []wal.Position) {
	t.Helper()
	l, _, err := wal.Open(wal.Options{Dir: dir, SegmentSize: 2 << 10})
	if err != nil {
		t.Fatal(err)
	}
	props := (&amqp.Properties{Flags: amqp.FlagDeliveryMode | amqp.FlagContentType, DeliveryMode: 2, ContentType: "text/plain"}).Append(nil)
	var poss []wal.Position
	var refs []wal.Ref
	for i := 0; i < 30; i++ {
		m := &wal.Message{Queues: []uint64{1, 2}, Exchange: "ex", RoutingKey: "rk", Properties: props, Body: bytes.Repeat([]byte("b"), 200)}
		p, err := l.Append(m, nil)
		if err != nil {
			t.Fatal(err)
		}
		poss = append(poss, p)
		if i < 10 {
			refs = append(refs, wal.Ref{ID: m.ID, Segment: p.Segment})
		}
	}
	if _, err := l.Append(&wal.Message{Queues: []uint64{3}, Body: []byte("x")}, nil); err != nil {
		t.Fatal(err)
	}
	l.Ack(1, refs, nil)
	l.DropQueue(3, nil)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, poss
}

func run(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Run(append([]string{"walinspect"}, args...), &out, &errb)
	return out.String(), errb.String(), code
}

func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[off] ^= 0xff
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestDumpSegments(t *testing.T) {
	dir, _ := buildStore(t)
	out, errs, code := run(t, "dump", "segments", "--dir", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 3 || !strings.HasPrefix(lines[0], "00000000000000000001.wal size=") || !strings.Contains(lines[0], "checksum=ok") {
		t.Fatalf("output:\n%s", out)
	}
	out, _, code = run(t, "dump", "segments", "--dir", dir, "--json")
	var segs []SegmentSummary
	if err := json.Unmarshal([]byte(out), &segs); err != nil || code != 0 {
		t.Fatalf("json: %v\n%s", err, out)
	}
	msgs, refs, live := 0, 0, 0
	for _, s := range segs {
		msgs += s.Messages
		refs += s.Refs
		live += s.Live
		if s.Checksum != "ok" {
			t.Fatalf("segment %+v", s)
		}
	}
	if segs[0].FirstID != 1 || msgs != 31 || refs != 61 || live != 50 {
		t.Fatalf("first=%d msgs=%d refs=%d live=%d", segs[0].FirstID, msgs, refs, live)
	}
}

func TestDumpRecords(t *testing.T) {
	dir, poss := buildStore(t)
	out, errs, code := run(t, "dump", "records", "--dir", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	want := fmt.Sprintf("%s@%d message size=", wal.SegmentFileName(poss[0].Segment), poss[0].Offset)
	if !strings.Contains(out, want) || !strings.Contains(out, `delivery_mode=2 content_type="text/plain"`) ||
		!strings.Contains(out, "ack size=") || !strings.Contains(out, "drop-queue size=") {
		t.Fatalf("output lacks %q or ack/drop lines:\n%s", want, out)
	}
	out, _, _ = run(t, "dump", "records", "--dir", dir, "--json")
	var types = map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var r RecordInfo
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		types[r.Type]++
		if r.Type == "message" && r.ID == 5 && (r.Properties == nil || r.Properties.DeliveryMode != 2 || r.BodySize != 200) {
			t.Fatalf("record %+v", r)
		}
		if r.Type == "ack" && len(r.IDs) != 10 {
			t.Fatalf("ack %+v", r)
		}
	}
	if types["message"] != 31 || types["ack"] != 1 || types["drop-queue"] != 1 {
		t.Fatalf("types %v", types)
	}
}

func TestVerify(t *testing.T) {
	dir, poss := buildStore(t)
	out, _, code := run(t, "verify", "--dir", dir)
	if code != 0 || !strings.HasPrefix(out, "OK:") {
		t.Fatalf("clean verify exit %d:\n%s", code, out)
	}
	p := poss[3]
	seg := filepath.Join(dir, wal.SegmentFileName(p.Segment))
	flipByte(t, seg, p.Offset+40)
	out, _, code = run(t, "verify", "--dir", dir)
	want := fmt.Sprintf("CORRUPT %s@%d", filepath.Base(seg), p.Offset)
	if code != ExitCorrupt || !strings.Contains(out, want) || !strings.Contains(out, "queues [1 2]") {
		t.Fatalf("exit %d, want line %q:\n%s", code, want, out)
	}
	out, _, code = run(t, "verify", "--dir", dir, "--json")
	var res VerifyResult
	if err := json.Unmarshal([]byte(out), &res); err != nil || code != ExitCorrupt || !res.Corrupt || len(res.Problems) != 1 || res.Problems[0].Offset != p.Offset {
		t.Fatalf("json %v exit %d: %s", err, code, out)
	}
	if _, _, code := run(t, "verify", "--dir", filepath.Join(dir, "missing")); code != ExitError {
		t.Fatalf("missing dir exit %d", code)
	}
}

func TestTornTailIsNotCorruption(t *testing.T) {
	dir, _ := buildStore(t)
	r, _ := wal.OpenReader(dir)
	segs := r.Segments()
	last := segs[len(segs)-1].Path
	f, err := os.OpenFile(last, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte{200, 0, 0, 0, 1, 2, 3})
	f.Close()
	out, _, code := run(t, "verify", "--dir", dir)
	if code != 0 || !strings.Contains(out, "TORN TAIL") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	out, _, _ = run(t, "dump", "segments", "--dir", dir)
	if !strings.Contains(out, "checksum=torn-tail") {
		t.Fatalf("segments:\n%s", out)
	}
}

// TestBinary builds the real binary once and runs it.
func TestBinary(t *testing.T) {
	dir, poss := buildStore(t)
	bin := filepath.Join(t.TempDir(), "walinspect")
	build := exec.Command("go", "build", "-o", bin, "github.com/amqp-go/amqp-go/walinspect/cmd/walinspect")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "verify", "--dir", dir).CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "OK:") {
		t.Fatalf("verify: %v\n%s", err, out)
	}
	flipByte(t, filepath.Join(dir, wal.SegmentFileName(poss[0].Segment)), poss[0].Offset+20)
	cmd := exec.Command(bin, "verify", "--dir", dir)
	out, err = cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "CORRUPT") {
		t.Fatalf("verify of corrupt store: %v\n%s", err, out)
	}
}

// TestDataDir: --dir may name the server's data directory; the tool then
// reads DATA/messages and says so on stderr, except with --json.
func TestDataDir(t *testing.T) {
	data := t.TempDir()
	logDir := filepath.Join(data, wal.DataSubdir)
	buildStoreIn(t, logDir)
	if err := os.Mkdir(filepath.Join(data, "definitions"), 0o755); err != nil {
		t.Fatal(err)
	}
	flipByte(t, filepath.Join(logDir, wal.SegmentFileName(1)), wal.SegmentHeaderSize+30) // verify exits 1 on both forms
	for _, cmd := range [][]string{{"dump", "segments"}, {"dump", "records"}, {"verify"}} {
		for _, js := range []bool{false, true} {
			args := cmd
			if js {
				args = append(args[:len(args):len(args)], "--json")
			}
			wantOut, wantErr, wantCode := run(t, append(args, "--dir", logDir)...)
			if wantErr != "" || wantOut == "" {
				t.Fatalf("%v --dir %s: stderr %q, stdout %q", args, logDir, wantErr, wantOut)
			}
			out, errs, code := run(t, append(args, "--dir", data)...)
			if out != wantOut || code != wantCode {
				t.Fatalf("%v --dir DATA: exit %d (want %d), output differs:\n%s\nwant:\n%s", args, code, wantCode, out, wantOut)
			}
			wantErr = "walinspect: using the segment log in " + logDir + "\n"
			if js {
				wantErr = ""
			}
			if errs != wantErr {
				t.Fatalf("%v --dir DATA: stderr %q, want %q", args, errs, wantErr)
			}
		}
	}
}

func TestLogDir(t *testing.T) {
	data := t.TempDir()
	sub := filepath.Join(data, wal.DataSubdir)
	if d, ok := wal.LogDir(data); d != data || ok {
		t.Fatalf("no messages dir: %s %v", d, ok)
	}
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if d, ok := wal.LogDir(data); d != data || ok {
		t.Fatalf("empty messages dir: %s %v", d, ok)
	}
	os.WriteFile(filepath.Join(sub, wal.SegmentFileName(7)), nil, 0o644) // segments without VERSION
	if d, ok := wal.LogDir(data); d != sub || !ok {
		t.Fatalf("messages dir with a segment: %s %v", d, ok)
	}
	os.Remove(filepath.Join(sub, wal.SegmentFileName(7)))
	os.WriteFile(filepath.Join(sub, wal.VersionFile), []byte("amqp-go-wal 1\n"), 0o644)
	if d, ok := wal.LogDir(data); d != sub || !ok {
		t.Fatalf("messages dir with VERSION: %s %v", d, ok)
	}
	if d, ok := wal.LogDir(sub); d != sub || ok {
		t.Fatalf("the log dir itself: %s %v", d, ok)
	}
}

// TestDumpRecordMeta: a version 2 message record's metadata is dumped, in
// text as UTC times and in JSON as unix ns; a version 1 record has none.
func TestDumpRecordMeta(t *testing.T) {
	dir := t.TempDir()
	l, _, err := wal.Open(wal.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	meta := wal.Meta{Timestamp: 1_700_000_000_000_000_000, Expires: 1_700_000_060_500_000_000, Priority: 5}
	for _, m := range []*wal.Message{{Queues: []uint64{1}, Body: []byte("old")}, {Queues: []uint64{1}, Body: []byte("new"), Meta: meta}} {
		if _, err := l.Append(m, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	out, errs, code := run(t, "dump", "records", "--dir", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	want := " meta{timestamp=2023-11-14T22:13:20Z expires=2023-11-14T22:14:20.5Z priority=5}"
	if len(lines) != 2 || strings.Contains(lines[0], "meta{") || !strings.HasSuffix(lines[1], want) {
		t.Fatalf("output lacks %q on the second line only:\n%s", want, out)
	}
	out, _, _ = run(t, "dump", "records", "--dir", dir, "--json")
	var got []RecordInfo
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var r RecordInfo
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		got = append(got, r)
	}
	if len(got) != 2 || got[0].Version != 1 || got[0].Meta != nil || got[1].Version != 2 ||
		*got[1].Meta != (MetaInfo{Timestamp: meta.Timestamp, Expires: meta.Expires, Priority: 5}) {
		t.Fatalf("records %+v", got)
	}
}
