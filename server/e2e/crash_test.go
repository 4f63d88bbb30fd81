// Package e2e runs the built amqp-server binary and checks what survives a
// kill -9.
package e2e

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/amqp-go/amqp-go/server/servertest"
	amqp "github.com/rabbitmq/amqp091-go"
)

// broker is one run of the binary.
type broker struct {
	cmd  *exec.Cmd
	url  string
	logs *strings.Builder
	mu   *sync.Mutex
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *strings.Builder
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// startBroker runs the binary on dataDir and waits until it accepts AMQP.
func startBroker(t *testing.T, dataDir string, port int) *broker {
	t.Helper()
	b := &broker{logs: &strings.Builder{}, mu: &sync.Mutex{}}
	b.cmd = exec.Command(servertest.Binary(t), "run")
	b.cmd.Env = append(os.Environ(),
		fmt.Sprintf("AMQP_NETWORK_ADDRESS=127.0.0.1:%d", port), "AMQP_STORAGE_PATH="+dataDir,
		// Management on any free port: 15672 may be another server's.
		"AMQP_MANAGEMENT_PORT=0")
	b.cmd.Stderr = lockedWriter{b.mu, b.logs}
	b.cmd.Stdout = lockedWriter{b.mu, b.logs}
	// A test binary killed by its timeout must not leave servers behind.
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.cmd.Process.Kill(); _ = b.cmd.Wait() })
	b.url = fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", port)
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := amqp.Dial(b.url)
		if err == nil {
			c.Close()
			return b
		}
		if time.Now().After(deadline) {
			t.Fatalf("broker did not start: %v\n%s", err, b.log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (b *broker) log() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.logs.String()
}

// kill9 kills the broker without letting it flush anything.
func (b *broker) kill9(t *testing.T) {
	t.Helper()
	if err := b.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = b.cmd.Wait()
}

func dial(t *testing.T, url string) (*amqp.Connection, *amqp.Channel) {
	t.Helper()
	c, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ch, err := c.Channel()
	if err != nil {
		t.Fatal(err)
	}
	return c, ch
}

// publishConfirmed publishes bodies persistently and waits for every confirm.
func publishConfirmed(t *testing.T, ch *amqp.Channel, queue string, bodies []string) {
	t.Helper()
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, len(bodies)+1))
	for _, b := range bodies {
		if err := ch.Publish("", queue, false, false, amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte(b)}); err != nil {
			t.Fatal(err)
		}
	}
	for range bodies {
		select {
		case c := <-confirms:
			if !c.Ack {
				t.Fatalf("publish %d nacked", c.DeliveryTag)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("timed out waiting for confirms")
		}
	}
}

// drain consumes everything in queue (no-ack) until it stays empty.
func drain(t *testing.T, ch *amqp.Channel, queue string) []amqp.Delivery {
	t.Helper()
	var out []amqp.Delivery
	drainEach(t, ch, queue, func(d amqp.Delivery) { out = append(out, d) })
	return out
}

// drainEach is drain handing each message to each as it arrives.
func drainEach(t *testing.T, ch *amqp.Channel, queue string, each func(amqp.Delivery)) {
	t.Helper()
	for {
		d, ok, err := ch.Get(queue, true)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return
		}
		each(d)
	}
}

func bodies(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%05d", prefix, i)
	}
	return out
}

func TestConfirmedMessagesSurviveKill9(t *testing.T) {
	dataDir, port := t.TempDir(), freePort(t)
	b := startBroker(t, dataDir, port)
	_, ch := dial(t, b.url)
	if _, err := ch.QueueDeclare("orders", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	want := bodies("m", 3000)
	publishConfirmed(t, ch, "orders", want)
	// Transient messages and non-durable queues must not come back.
	if _, err := ch.QueueDeclare("scratch", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.Publish("", "orders", false, false, amqp.Publishing{Body: []byte("transient")}); err != nil {
		t.Fatal(err)
	}
	b.kill9(t)

	b = startBroker(t, dataDir, port)
	_, ch = dial(t, b.url)
	if _, err := ch.QueueDeclarePassive("scratch", false, false, false, false, nil); err == nil {
		t.Fatal("non-durable queue 'scratch' survived the restart")
	}
	_, ch = dial(t, b.url)
	got := drain(t, ch, "orders")
	if len(got) != len(want) {
		t.Fatalf("recovered %d messages, want %d\n%s", len(got), len(want), b.log())
	}
	for i, d := range got {
		if string(d.Body) != want[i] {
			t.Fatalf("message %d is %q, want %q (order or content changed)", i, d.Body, want[i])
		}
		if d.DeliveryMode != amqp.Persistent {
			t.Fatalf("message %d lost its properties: %+v", i, d)
		}
	}
	if !strings.Contains(b.log(), "msg=recovered") {
		t.Fatalf("no recovery line in the log:\n%s", b.log())
	}
}

func TestAckedNeverReturnUnackedReturnRedelivered(t *testing.T) {
	dataDir, port := t.TempDir(), freePort(t)
	b := startBroker(t, dataDir, port)
	_, ch := dial(t, b.url)
	if _, err := ch.QueueDeclare("work", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	all := bodies("w", 1000)
	publishConfirmed(t, ch, "work", all)

	_, cch := dial(t, b.url)
	if err := cch.Qos(1000, 0, false); err != nil {
		t.Fatal(err)
	}
	ds, err := cch.Consume("work", "", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []amqp.Delivery
	for len(got) < len(all) {
		select {
		case d := <-ds:
			got = append(got, d)
		case <-time.After(10 * time.Second):
			t.Fatalf("received %d of %d", len(got), len(all))
		}
	}
	// Ack the first 600 (one multiple ack and some singles), keep the rest.
	if err := got[499].Ack(true); err != nil {
		t.Fatal(err)
	}
	for _, d := range got[500:600] {
		if err := d.Ack(false); err != nil {
			t.Fatal(err)
		}
	}
	// The log is ordered: once a message published after the acks on the
	// same connection is confirmed, the ack records before it are durable.
	if _, err := cch.QueueDeclare("marker", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	publishConfirmed(t, cch, "marker", []string{"marker"})
	b.kill9(t)

	b = startBroker(t, dataDir, port)
	_, ch = dial(t, b.url)
	back := drain(t, ch, "work")
	if len(back) != 400 {
		t.Fatalf("%d messages came back, want the 400 unacked\n%s", len(back), b.log())
	}
	for i, d := range back {
		if string(d.Body) != all[600+i] {
			t.Fatalf("message %d is %q, want %q", i, d.Body, all[600+i])
		}
		if !d.Redelivered {
			t.Fatalf("message %q came back without redelivered", d.Body)
		}
	}
}

func TestMidLogCorruptionRefusesOnlyTheAffectedQueue(t *testing.T) {
	dataDir, port := t.TempDir(), freePort(t)
	b := startBroker(t, dataDir, port)
	_, ch := dial(t, b.url)
	for _, q := range []string{"damaged", "intact"} {
		if _, err := ch.QueueDeclare(q, true, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
	}
	publishConfirmed(t, ch, "damaged", bodies("d", 10))
	b.kill9(t)
	// The restart opens a new segment, so segment 1 is no longer the tail.
	b = startBroker(t, dataDir, port)
	_, ch = dial(t, b.url)
	publishConfirmed(t, ch, "intact", bodies("i", 10))
	b.kill9(t)

	// Flip the last body byte of segment 1's first record.
	seg := filepath.Join(dataDir, "messages", "00000000000000000001.wal")
	data, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	const segHeader, recHeader = 32, 8
	n := int(data[segHeader]) | int(data[segHeader+1])<<8 | int(data[segHeader+2])<<16 | int(data[segHeader+3])<<24
	off := segHeader + recHeader + n - 1
	data[off] ^= 0xff
	if err := os.WriteFile(seg, data, 0o644); err != nil {
		t.Fatal(err)
	}

	b = startBroker(t, dataDir, port)
	_, ch = dial(t, b.url)
	if got := drain(t, ch, "intact"); len(got) != 10 {
		t.Fatalf("intact queue has %d messages, want 10", len(got))
	}
	_, err = ch.QueueDeclarePassive("damaged", true, false, false, false, nil)
	var ae *amqp.Error
	if !errorAs(err, &ae) || ae.Code != 404 || !strings.Contains(ae.Reason, "unavailable") {
		t.Fatalf("damaged queue: want 404 unavailable, got %v", err)
	}
	logs := b.log()
	if !strings.Contains(logs, "corruption") || !strings.Contains(logs, "00000000000000000001.wal") || !strings.Contains(logs, "damaged") {
		t.Fatalf("the log does not name the file and queue:\n%s", logs)
	}
}

func errorAs(err error, target **amqp.Error) bool { return errors.As(err, target) }

func TestCommittedTransactionSurvivesKill9(t *testing.T) {
	dataDir, port := t.TempDir(), freePort(t)
	b := startBroker(t, dataDir, port)
	_, ch := dial(t, b.url)
	if _, err := ch.QueueDeclare("ledger", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.Tx(); err != nil {
		t.Fatal(err)
	}
	want := bodies("tx", 200)
	for _, body := range want {
		if err := ch.Publish("", "ledger", false, false, amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte(body)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := ch.TxCommit(); err != nil {
		t.Fatal(err)
	}
	b.kill9(t)
	b = startBroker(t, dataDir, port)
	_, ch = dial(t, b.url)
	if got := drain(t, ch, "ledger"); len(got) != len(want) {
		t.Fatalf("%d committed messages survived, want %d", len(got), len(want))
	}
}

// After a crash, messages a consumer had received come back flagged
// redelivered, and a backlog no consumer had reached comes back unflagged
// (the delivered bound, storage.offsetcheckpointinterval).
func TestRedeliveredFlagAfterKill9(t *testing.T) {
	dataDir, port := t.TempDir(), freePort(t)
	b := startBroker(t, dataDir, port)
	_, ch := dial(t, b.url)
	if _, err := ch.QueueDeclare("jobs", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	all := bodies("j", 1000)
	publishConfirmed(t, ch, "jobs", all)
	_, cch := dial(t, b.url)
	if err := cch.Qos(10, 0, false); err != nil {
		t.Fatal(err)
	}
	ds, err := cch.Consume("jobs", "", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		select {
		case <-ds:
		case <-time.After(10 * time.Second):
			t.Fatal("no delivery")
		}
	}
	b.kill9(t)

	b = startBroker(t, dataDir, port)
	_, ch = dial(t, b.url)
	back := drain(t, ch, "jobs")
	if len(back) != len(all) {
		t.Fatalf("%d messages came back, want %d", len(back), len(all))
	}
	for i, d := range back {
		if string(d.Body) != all[i] {
			t.Fatalf("message %d is %q, want %q", i, d.Body, all[i])
		}
		if i < 10 && !d.Redelivered {
			t.Fatalf("message %d had been delivered but came back without redelivered", i)
		}
		if i >= 500 && d.Redelivered {
			t.Fatalf("message %d was never delivered but came back flagged redelivered", i)
		}
	}
}
