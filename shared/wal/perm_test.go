package wal

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func wantMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Mode().Perm(); got != want {
		t.Errorf("%s is %04o, want %04o", filepath.Base(path), got, want)
	}
}

// A log directory an older version left open to others (0755, files 0644)
// is the owner's alone once the log has opened it; what the log makes is
// too.
func TestOpenMakesLogPrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "messages")
	l, _, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	names, err := OSFS{}.ReadDir(dir)
	if err != nil || len(names) < 3 {
		t.Fatalf("log files %v %v", names, err)
	}
	for _, n := range names {
		if err := os.Chmod(filepath.Join(dir, n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	l, _, err = Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	wantMode(t, dir, DirMode)
	names, _ = OSFS{}.ReadDir(dir)
	for _, n := range names {
		wantMode(t, filepath.Join(dir, n), FileMode)
	}
}

// Under a default ACL from PrivateFiles a file created 0666 comes out
// FileMode and a directory DirMode, whatever the umask.
func TestPrivateFiles(t *testing.T) {
	dir := t.TempDir()
	if err := MkdirPrivate(dir); err != nil {
		t.Fatal(err)
	}
	wantMode(t, dir, DirMode)
	if err := PrivateFiles(dir); errors.Is(err, ErrNoPrivateFiles) {
		t.Skip(err)
	} else if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "wide"), os.O_CREATE|os.O_WRONLY, 0o666)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	wantMode(t, filepath.Join(dir, "wide"), FileMode)
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o777); err != nil {
		t.Fatal(err)
	}
	wantMode(t, filepath.Join(dir, "sub"), DirMode)
}

// OpenPrivate and ChmodFiles narrow files that exist already.
func TestOpenPrivateAndChmodFiles(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	for _, p := range []string{a, b} {
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f, err := OpenPrivate(a, os.O_RDWR)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	wantMode(t, a, FileMode)
	wantMode(t, b, 0o644)
	if err := ChmodFiles(dir); err != nil {
		t.Fatal(err)
	}
	wantMode(t, b, FileMode)
}
