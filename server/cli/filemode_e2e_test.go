package cli_test

import (
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/amqp-go/amqp-go/shared/wal"
	amqp "github.com/rabbitmq/amqp091-go"
)

// startUmask0 runs the binary as startIn does, but through a shell that
// first sets the umask to 000, so that any file the server does not give an
// explicit mode comes out world-readable.
func startUmask0(t *testing.T, dir string, port int) *proc {
	t.Helper()
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	real := binary
	wrapper := filepath.Join(dir, "umask0.sh")
	script := "#!" + sh + "\numask 000\nexec '" + real + "' \"$@\"\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	// startIn runs binary; no test in this package runs in parallel, so
	// swapping it for the wrapper while this one starts is safe.
	binary = wrapper
	defer func() { binary = real }()
	return startIn(t, dir, port, []string{"run"})
}

// Everything under the data directory, made under a umask of 000 by a
// publish of a persistent message and a restart, is the owner's alone:
// directories 0700, files 0600 (the segment log, its LOCK and VERSION, and
// Badger's definitions store, which has no mode option of its own).
func TestDataFilesArePrivate(t *testing.T) {
	dir, port := t.TempDir(), freePort(t)
	p := startUmask0(t, dir, port)
	ch, err := dial(t, p.url).Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("private", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.ExchangeDeclare("private.x", "topic", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind("private", "#", "private.x", false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	dc, err := ch.PublishWithDeferredConfirm("private.x", "k", false, false,
		amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte("secret")})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := dc.WaitContext(context.Background()); !ok || err != nil {
		t.Fatalf("confirm: %v %v", ok, err)
	}
	if code := p.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code %d\n%s", code, p.stderr)
	}

	// The restart reopens both stores (Badger writes its LOCK anew) and
	// starts a new segment.
	p = startUmask0(t, dir, port)
	ch, err = dial(t, p.url).Channel()
	if err != nil {
		t.Fatal(err)
	}
	if m, ok, err := ch.Get("private", false); err != nil || !ok || string(m.Body) != "secret" {
		t.Fatalf("after restart: %v %v %q", ok, err, m.Body)
	}

	data := filepath.Join(dir, "data")
	checkPrivate(t, data, "running", false)
	for _, want := range []string{"messages/LOCK", "messages/VERSION", "definitions/MANIFEST"} {
		if !strings.Contains(walkNames(t, data), want) {
			t.Errorf("no %s under the data directory", want)
		}
	}

	// Badger writes its memtable out as a new table on close: only the
	// directory's default ACL makes that file private. Where the file
	// system has no ACLs the exception is such files in definitions/,
	// inside a directory only the owner can enter.
	if code := p.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code %d\n%s", code, p.stderr)
	}
	probe := t.TempDir()
	acl := wal.PrivateFiles(probe) == nil
	if !acl {
		t.Log("no default ACLs here: files Badger makes after its open keep the umask's mode")
	}
	checkPrivate(t, data, "stopped", !acl)
}

// checkPrivate checks that every directory under data is 0700 and every
// file 0600 (with badgerLate, files in definitions/ may differ).
func checkPrivate(t *testing.T, data, when string, badgerLate bool) {
	t.Helper()
	var files, dirs int
	err := filepath.WalkDir(data, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(filepath.Dir(data), path)
		mode := info.Mode().Perm()
		switch {
		case d.IsDir():
			dirs++
			if mode != 0o700 {
				t.Errorf("%s: directory %s is %04o, want 0700", when, rel, mode)
			}
		case info.Mode().IsRegular():
			files++
			if mode != 0o600 && !(badgerLate && filepath.Base(filepath.Dir(path)) == "definitions") {
				t.Errorf("%s: file %s is %04o, want 0600", when, rel, mode)
			}
		default:
			t.Errorf("%s: %s is %v, not a file or directory", when, rel, info.Mode())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %d directories and %d files under %s", when, dirs, files, data)
}

// walkNames lists the paths under root relative to it, one a line.
func walkNames(t *testing.T, root string) string {
	t.Helper()
	var b strings.Builder
	_ = filepath.WalkDir(root, func(path string, _ fs.DirEntry, err error) error {
		if err == nil {
			rel, _ := filepath.Rel(root, path)
			b.WriteString(filepath.ToSlash(rel) + "\n")
		}
		return nil
	})
	return b.String()
}
