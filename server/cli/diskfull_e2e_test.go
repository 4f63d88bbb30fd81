package cli_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// smallDisk mounts a tmpfs of the given size for the test, or skips the
// test where that is not allowed (not root, no CAP_SYS_ADMIN).
func smallDisk(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs (CI runs as root)")
	}
	mnt := filepath.Join(t.TempDir(), "disk")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", mnt).Run() })
	return mnt
}

// fillDisk writes path until the disk is full.
func fillDisk(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 1<<20)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling the disk: %v", err)
			}
			return
		}
	}
}

// wantResourceError asserts a 506 channel error that names the disk.
func wantResourceError(t *testing.T, what string, err error) {
	t.Helper()
	var ae *amqp.Error
	if !errors.As(err, &ae) || ae.Code != 506 || !strings.Contains(ae.Reason, "low on disk") {
		t.Fatalf("%s on a full disk: want 506 naming the disk alarm, got %v", what, err)
	}
	t.Logf("%s: %d %s", what, ae.Code, ae.Reason)
}

// On a full disk (a small tmpfs), durable declares, binds and deletes get
// 506 RESOURCE_ERROR instead of a Badger write that would kill the process
// with SIGBUS; transient ones go on; once space is freed everything works
// again and what was confirmed survives a restart. A start on a full disk
// is refused with a clear message.
func TestFullDisk(t *testing.T) {
	mnt := smallDisk(t, "160m")
	data := filepath.Join(mnt, "data")
	env := []string{"AMQP_STORAGE_PATH=" + data, "AMQP_SERVER_RESOURCECHECKINTERVAL=20ms"}
	port := freePort(t)
	p := startIn(t, t.TempDir(), port, []string{"run"}, env...)

	c := dial(t, p.url)
	ch, err := c.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("kept", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		dc, err := ch.PublishWithDeferredConfirm("", "kept", false, false,
			amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte{byte(i)}})
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := dc.WaitContext(context.Background()); !ok || err != nil {
			t.Fatalf("confirm %d: %v %v", i, ok, err)
		}
	}

	// A connection that has published is not read during an alarm (as
	// RabbitMQ's); definitions come from one that has not.
	admin := dial(t, p.url)
	filler := filepath.Join(mnt, "filler")
	fillDisk(t, filler)
	eventually(t, "the disk alarm", func() bool {
		return strings.Contains(p.stderr.String(), `reason="low on disk"`)
	})
	try := func(what string, f func(ch *amqp.Channel) error) {
		t.Helper()
		ch, err := admin.Channel()
		if err != nil {
			t.Fatal(err)
		}
		wantResourceError(t, what, f(ch))
	}
	try("durable queue.declare", func(ch *amqp.Channel) error {
		_, err := ch.QueueDeclare("new", true, false, false, false, nil)
		return err
	})
	try("durable exchange.declare", func(ch *amqp.Channel) error {
		return ch.ExchangeDeclare("new-x", "direct", true, false, false, false, nil)
	})
	try("durable queue.bind", func(ch *amqp.Channel) error {
		return ch.QueueBind("kept", "k", "amq.direct", false, nil)
	})
	try("durable queue.delete", func(ch *amqp.Channel) error {
		_, err := ch.QueueDelete("kept", false, false, false)
		return err
	})
	tch, err := admin.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tch.QueueDeclare("", false, false, true, false, nil); err != nil {
		t.Errorf("a transient declare on a full disk: %v", err)
	}
	select {
	case <-p.exited:
		t.Fatalf("the server died on a full disk: %v\n%s", p.err, p.stderr)
	default:
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the alarm to clear", func() bool {
		return strings.Contains(p.stderr.String(), "resource alarm cleared")
	})
	nch, err := admin.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nch.QueueDeclare("new", true, false, false, false, nil); err != nil {
		t.Fatalf("durable declare after space was freed: %v", err)
	}
	admin.Close()
	c.Close()
	if code := p.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("exit %d\n%s", code, p.stderr)
	}

	p = startIn(t, t.TempDir(), port, []string{"run"}, env...)
	c = dial(t, p.url)
	ch, err = c.Channel()
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]int{"kept": 50, "new": 0} {
		q, err := ch.QueueDeclarePassive(name, true, false, false, false, nil)
		if err != nil || q.Messages != want {
			t.Fatalf("after the restart, queue %s: %+v %v (want %d messages)", name, q, err, want)
		}
	}
	c.Close()
	if code := p.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("exit %d\n%s", code, p.stderr)
	}

	fillDisk(t, filler)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "run")
	cmd.Env = baseEnv(t.TempDir(), port, env...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() == 0 {
		t.Fatalf("start on a full disk: want a non-zero exit, got %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "free some space") || !strings.Contains(string(out), data) {
		t.Errorf("start on a full disk: the message does not say what is wrong:\n%s", out)
	}
	t.Logf("start on a full disk: %s", strings.TrimSpace(string(out)))
}
