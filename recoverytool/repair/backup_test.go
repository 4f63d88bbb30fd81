package repair

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/amqp-go/amqp-go/shared/wal"
)

// checkBackup checks that dir/backup holds exactly one run directory with
// byte-identical copies (from before, a snapshot taken before the run) of
// exactly the files of dir that the run changed or removed, and that out
// names that directory. It returns the run directory.
func checkBackup(t *testing.T, dir string, before map[string]string, out string) string {
	t.Helper()
	runs, err := os.ReadDir(filepath.Join(dir, BackupDir))
	if err != nil || len(runs) != 1 || !runs[0].IsDir() {
		t.Fatalf("backup runs: %v %v", runs, err)
	}
	run := filepath.Join(dir, BackupDir, runs[0].Name())
	if !strings.Contains(out, run) {
		t.Fatalf("report does not name the backup %s:\n%s", run, out)
	}
	// Backups hold message bodies: the owner's alone.
	for _, d := range []string{filepath.Join(dir, BackupDir), run} {
		st, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != wal.DirMode {
			t.Errorf("backup directory %s is %v, want %v", d, st.Mode().Perm(), wal.DirMode)
		}
	}
	var changed []string
	for p, data := range before {
		if filepath.Dir(p) != dir {
			continue // quarantine, earlier backups
		}
		if now, err := os.ReadFile(p); err != nil || string(now) != data {
			changed = append(changed, filepath.Base(p))
		}
	}
	if len(changed) == 0 {
		t.Fatal("the run changed nothing")
	}
	ents, err := os.ReadDir(run)
	if err != nil {
		t.Fatal(err)
	}
	var saved []string
	for _, e := range ents {
		saved = append(saved, e.Name())
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm() != wal.FileMode {
			t.Errorf("backup %s is %v, want %v", e.Name(), info.Mode().Perm(), wal.FileMode)
		}
		b, err := os.ReadFile(filepath.Join(run, e.Name()))
		if orig, ok := before[filepath.Join(dir, e.Name())]; err != nil || !ok || string(b) != orig {
			t.Fatalf("backup %s is not the original (%v, known %v)", e.Name(), err, ok)
		}
	}
	slices.Sort(changed)
	if !slices.Equal(saved, changed) {
		t.Fatalf("backed up %v, changed %v", saved, changed)
	}
	return run
}

func noBackupDir(t *testing.T, dir string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(dir, BackupDir)); !os.IsNotExist(err) {
		t.Fatalf("%s exists (%v)", filepath.Join(dir, BackupDir), err)
	}
}

// sparseStore writes a log whose early segments are mostly acked.
func sparseStore(t *testing.T, dir string) *store {
	s := &store{dir: dir, msgs: map[uint64]*wal.Message{}, pos: map[uint64]wal.Position{}}
	l, _ := s.open(t)
	refs := s.add(t, l, 30, 1)
	l.Ack(1, refs[:27], nil)
	s.add(t, l, 2, 1)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return s
}

// corruptStore writes a log with a corrupt record in segment 1 and a torn
// tail in the last segment.
func corruptStore(t *testing.T, dir string) *store {
	s := &store{dir: dir, msgs: map[uint64]*wal.Message{}, pos: map[uint64]wal.Position{}}
	l, _ := s.open(t)
	s.add(t, l, 20, 1)
	l.Close()
	p := s.pos[2]
	flip(t, filepath.Join(dir, wal.SegmentFileName(p.Segment)), p.Offset+40)
	last := s.pos[20]
	f, _ := os.OpenFile(filepath.Join(dir, wal.SegmentFileName(last.Segment)), os.O_APPEND|os.O_WRONLY, 0)
	f.Write([]byte{0x40, 0, 0, 0, 9, 9})
	f.Close()
	return s
}

func TestBackupFlags(t *testing.T) {
	for _, tc := range []struct {
		name  string
		build func(*testing.T, string) *store
		args  []string
	}{
		{"repair", corruptStore, []string{"repair"}},
		{"compact", sparseStore, []string{"compact"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// --dry-run: nothing written, no backup.
			s := tc.build(t, t.TempDir())
			before := snapshot(t, s.dir)
			out, errs, code := run(t, append(tc.args, "--dir", s.dir, "--dry-run")...)
			if code != 0 || !strings.Contains(out, "would change") || strings.Contains(out, "backed up") {
				t.Fatalf("dry run exit %d: %s %s", code, out, errs)
			}
			if !maps.Equal(before, snapshot(t, s.dir)) {
				t.Fatal("dry run changed files")
			}
			noBackupDir(t, s.dir)

			// Default: a byte-identical backup of every changed file.
			out, errs, code = run(t, append(tc.args, "--dir", s.dir)...)
			if code != 0 {
				t.Fatalf("exit %d: %s %s", code, out, errs)
			}
			checkBackup(t, s.dir, before, out)
			if out, _, code := run(t, "verify", "--dir", s.dir); code != 0 {
				t.Fatalf("verify after %s: %s", tc.name, out)
			}

			// --no-backup: the same changes, no backup.
			s = tc.build(t, t.TempDir())
			want := snapshot(t, s.dir)
			out, errs, code = run(t, append(tc.args, "--dir", s.dir, "--no-backup")...)
			if code != 0 || !strings.Contains(out, "no backup kept (--no-backup)") {
				t.Fatalf("--no-backup exit %d: %s %s", code, out, errs)
			}
			noBackupDir(t, s.dir)
			if maps.Equal(want, snapshot(t, s.dir)) {
				t.Fatal("--no-backup changed nothing")
			}
		})
	}
}

func TestBackupRunDirsAreNeverReused(t *testing.T) {
	dir := t.TempDir()
	seg := filepath.Join(dir, wal.SegmentFileName(1))
	os.WriteFile(seg, []byte("one"), 0o644)
	start := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	var dirs []string
	for i := 0; i < 3; i++ {
		rep := &Report{}
		b := newBackup(dir, Options{}, rep)
		b.start = start
		if err := b.save(seg); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(seg, []byte(fmt.Sprint("changed", i)), 0o644)
		if err := b.save(seg); err != nil { // a second change in the same run keeps the first copy
			t.Fatal(err)
		}
		if len(rep.BackedUp) != 1 {
			t.Fatalf("backed up %v", rep.BackedUp)
		}
		dirs = append(dirs, rep.Backup)
	}
	want := filepath.Join(dir, BackupDir, "20300102T030405Z")
	if !slices.Equal(dirs, []string{want, want + "-1", want + "-2"}) {
		t.Fatalf("run dirs %v", dirs)
	}
	for i, d := range dirs {
		b, _ := os.ReadFile(filepath.Join(d, filepath.Base(seg)))
		wantB := "one"
		if i > 0 {
			wantB = fmt.Sprint("changed", i-1)
		}
		if string(b) != wantB {
			t.Fatalf("%s: %q, want %q", d, b, wantB)
		}
	}
	rep := &Report{}
	for _, o := range []Options{{DryRun: true}, {NoBackup: true}} {
		if err := newBackup(dir, o, rep).save(seg); err != nil || rep.Backup != "" {
			t.Fatalf("%+v: %v %q", o, err, rep.Backup)
		}
	}
}

// TestDataDir: --dir may name the server's data directory; the tool then
// works on DATA/messages, takes DATA/messages/LOCK and backs up into
// DATA/messages/backup.
func TestDataDir(t *testing.T) {
	data := t.TempDir()
	logDir := filepath.Join(data, wal.DataSubdir)
	if err := os.Mkdir(filepath.Join(data, "definitions"), 0o755); err != nil {
		t.Fatal(err)
	}
	s := &store{dir: logDir, msgs: map[uint64]*wal.Message{}, pos: map[uint64]wal.Position{}}
	l, _ := s.open(t) // a live server holds DATA/messages/LOCK
	s.add(t, l, 20, 1)
	for _, args := range [][]string{{"verify"}, {"repair"}, {"compact", "--dry-run"}} {
		_, errs, code := run(t, append(args, "--dir", data)...)
		if code != ExitProblem || !strings.Contains(errs, "locked by a running server") {
			t.Fatalf("%v on a locked data dir: exit %d, stderr %q", args, code, errs)
		}
	}
	l.Close()
	out, errs, code := run(t, "verify", "--dir", data)
	if code != 0 || !strings.HasPrefix(out, "OK: ") || errs != "recovery-tool: using the segment log in "+logDir+"\n" {
		t.Fatalf("verify exit %d: %s %q", code, out, errs)
	}
	if _, err := os.Stat(filepath.Join(data, wal.LockFile)); !os.IsNotExist(err) {
		t.Fatalf("DATA/LOCK: %v", err)
	}

	p := s.pos[5]
	flip(t, filepath.Join(logDir, wal.SegmentFileName(p.Segment)), p.Offset+40)
	before := snapshot(t, logDir)
	out, errs, code = run(t, "repair", "--dir", data, "--json")
	var rep Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 0 || errs != "" {
		t.Fatalf("repair --json exit %d, %v: %s %q", code, err, out, errs)
	}
	runDir := checkBackup(t, logDir, before, out)
	if rep.Backup != runDir || !slices.Equal(rep.BackedUp, []string{wal.SegmentFileName(p.Segment)}) {
		t.Fatalf("report backup %q %v, want %q", rep.Backup, rep.BackedUp, runDir)
	}
	if ents, _ := os.ReadDir(data); len(ents) != 2 {
		t.Fatalf("data dir holds %v, want only messages and definitions", ents)
	}
	s.checkRecovered(t, map[uint64][]uint64{1: ids(1, 20, func(i uint64) bool { return i == 5 })})
}
