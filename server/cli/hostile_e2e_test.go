package cli_test

// Faults a hostile or careless client could cause, each tried on the built
// binary: descriptors running out, memory reserved for content never sent,
// large frames before tune, a consumer that stops reading, and an alarm
// that outlives the memory that raised it.

import (
	"fmt"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/amqp-go/amqp-go/server/servertest"
	wire "github.com/amqp-go/amqp-go/shared/amqp"
	amqp "github.com/rabbitmq/amqp091-go"
)

// openFDs counts the process's open file descriptors.
func openFDs(t *testing.T, pid int) int {
	t.Helper()
	es, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(es)
}

// countLines counts log lines matching re.
func countLines(log string, re string) int {
	return len(regexp.MustCompile(re).FindAllStringIndex(log, -1))
}

// holdSockets opens n TCP connections that send the protocol header and
// then nothing, so each holds a server descriptor until the handshake
// times out or the test closes them.
func holdSockets(t *testing.T, port, n int) []net.Conn {
	t.Helper()
	var cs []net.Conn
	for range n {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
		if err != nil {
			break // the accept backlog is full: enough
		}
		_, _ = c.Write(wire.ProtocolHeader)
		cs = append(cs, c)
	}
	t.Cleanup(func() {
		for _, c := range cs {
			c.Close()
		}
	})
	return cs
}

// Under `ulimit -n 256`, the default connection limit comes from the
// open-file limit, is logged, and refuses connections past it while the
// server keeps serving.
func TestFDLimitDerivesMaxConnections(t *testing.T) {
	p := startShell(t, t.TempDir(), freePort(t), "ulimit -n 256", []string{"run", "--storage-backend", "memory"})
	eventually(t, "the listening log line", func() bool {
		return strings.Contains(p.stderr.String(), "max_connections=128")
	})
	began := time.Now()
	cs := holdSockets(t, p.port, 300)
	eventually(t, "refusals past the limit", func() bool {
		return strings.Contains(p.stderr.String(), "connection refused: connection limit reached")
	})
	for _, c := range cs {
		c.Close()
	}
	var c *amqp.Connection
	eventually(t, "a connection after the flood", func() bool {
		var err error
		c, err = amqp.Dial(p.url)
		return err == nil
	})
	c.Close()
	if n, secs := countLines(p.stderr.String(), "connection refused: connection limit reached"), time.Since(began).Seconds(); float64(n) > secs+1 {
		t.Errorf("%d refusal log lines in %.1f s: not rate-limited", n, secs)
	}
	if p.stop(syscall.SIGTERM) != 0 {
		t.Errorf("exit code not 0\n%s", p.stderr)
	}
}

// With a connection limit above what the descriptors allow, accept fails
// with EMFILE: the server backs off and retries, logging at most once a
// second, and serves again once descriptors are free.
func TestAcceptSurvivesEMFILE(t *testing.T) {
	p := startShell(t, t.TempDir(), freePort(t), "ulimit -n 256",
		[]string{"run", "--storage-backend", "memory", "--network-maxconnections", "1000"})
	began := time.Now()
	cs := holdSockets(t, p.port, 300)
	eventually(t, "accept to fail with EMFILE", func() bool {
		return strings.Contains(p.stderr.String(), "too many open files")
	})
	select {
	case <-p.exited:
		t.Fatalf("the server exited: %v\n%s", p.err, p.stderr)
	default:
	}
	for _, c := range cs {
		c.Close()
	}
	var c *amqp.Connection
	eventually(t, "a connection once descriptors are free", func() bool {
		var err error
		c, err = amqp.Dial(p.url)
		return err == nil
	})
	roundTrip(t, p.url)
	c.Close()
	if n, secs := countLines(p.stderr.String(), "accept failed; retrying"), time.Since(began).Seconds(); float64(n) > secs+1 {
		t.Errorf("%d accept-error log lines in %.1f s: not rate-limited", n, secs)
	}
}

// Content headers that declare 128 MiB bodies reserve nothing: 100 of them
// leave RSS low and raise no alarm, and another publisher still gets its
// confirms.
func TestHeaderFloodReservesNothing(t *testing.T) {
	p := start(t, []string{"run", "--storage-backend", "memory", "--server-memorylimitbytes", strconv.Itoa(256 << 20),
		"--server-resourcecheckinterval", "20ms"})
	before := rss(t, p.cmd.Process.Pid)
	r, _ := servertest.RawHandshake(t, p.url, servertest.RawOptions{})
	var flood []byte
	for id := uint16(1); id <= 100; id++ {
		flood = wire.AppendMethodFrame(flood, id, &wire.ChannelOpen{})
		flood = wire.AppendMethodFrame(flood, id, &wire.BasicPublish{RoutingKey: "nowhere"})
		flood = wire.AppendHeaderFrameProps(flood, id, 128<<20, &wire.Properties{})
	}
	r.Write(flood)
	for range 100 {
		if _, m := r.ReadMethod(); m.MethodName() != "channel.open-ok" {
			t.Fatalf("want channel.open-ok, got %s", m.MethodName())
		}
	}
	// Another publisher gets confirms while the flood's channels wait.
	for range 3 {
		roundTrip(t, p.url)
	}
	if grew := rss(t, p.cmd.Process.Pid) - before; grew > 64<<20 {
		t.Errorf("RSS grew by %d MiB for 100 headers", grew>>20)
	}
	if strings.Contains(p.stderr.String(), "resource alarm raised") {
		t.Errorf("headers alone raised an alarm:\n%s", p.stderr)
	}
}

// A client that buffers real body bytes past the memory limit raises the
// alarm; once it disconnects, while blocked and unread, the memory is
// released and the alarm clears, and publishers get confirms again.
//
// The client sends in rounds, each ended by a basic.qos whose reply proves
// the server read the round; a round left unanswered means the alarm holds
// the connection with at most that round unread. (A client whose FIN
// queues behind more unsent data than our receive window takes is noticed
// only when its kernel gives up on it, as with RabbitMQ.)
func TestMemoryAlarmClearsAfterFloodDisconnects(t *testing.T) {
	const limit = 160 << 20
	p := start(t, []string{"run", "--storage-backend", "memory", "--server-memorylimitbytes", strconv.Itoa(limit),
		"--server-resourcecheckinterval", "20ms"})
	r, _ := servertest.RawHandshake(t, p.url, servertest.RawOptions{})
	// 8 channels, each declaring 64 MiB, 8 x 64 MiB being well over the
	// limit; channel 9 answers the probes.
	const channels, declared, probe = 8, 64 << 20, 9
	chunk := make([]byte, 8<<10)
	for id := uint16(1); id <= probe; id++ {
		r.OpenChannel(id)
		if id != probe {
			b := wire.AppendMethodFrame(nil, id, &wire.BasicPublish{RoutingKey: "nowhere"})
			r.Write(wire.AppendHeaderFrameProps(b, id, declared, &wire.Properties{}))
		}
	}
	held := false
	for sent := 0; !held; sent += len(chunk) {
		if sent >= declared {
			t.Fatalf("not held after %d MiB buffered\n%s", channels*sent>>20, p.stderr)
		}
		var round []byte
		for id := uint16(1); id < probe; id++ {
			round = wire.AppendBodyFrames(round, id, chunk, 128<<10)
		}
		r.Write(wire.AppendMethodFrame(round, probe, &wire.BasicQos{PrefetchCount: 1}))
		f, err := r.ReadFrame(time.Second)
		held = err != nil
		if err == nil && f.Channel != probe {
			t.Fatalf("unexpected frame on channel %d", f.Channel)
		}
	}
	eventually(t, "the alarm in the log", func() bool {
		return strings.Contains(p.stderr.String(), "resource alarm raised")
	})
	r.NC.Close()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(p.stderr.String(), "resource alarm cleared") {
		if time.Now().After(deadline) {
			t.Fatalf("the alarm stayed raised after the client left; RSS %d MiB\n%s", rss(t, p.cmd.Process.Pid)>>20, p.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	roundTrip(t, p.url)
}

// Before tune-ok, frames are capped at 4,096 bytes, as RabbitMQ's
// frame_min_size: a client announcing a larger one is closed at once,
// without the server waiting for (and buffering) its payload.
func TestPreTuneFrameCap(t *testing.T) {
	p := start(t, []string{"run", "--storage-backend", "memory", "--network-framemax", "1048576"})
	r := servertest.RawDial(t, p.url, servertest.RawOptions{})
	r.Write(wire.ProtocolHeader)
	if _, m := r.ReadMethod(); m.MethodName() != "connection.start" {
		t.Fatalf("want connection.start, got %s", m.MethodName())
	}
	// A method frame header announcing 128 KiB, and a little of it.
	hdr := []byte{wire.FrameMethod, 0, 0, 0, 2, 0, 0}
	r.Write(append(hdr, make([]byte, 100)...))
	f, err := r.ReadFrame(2 * time.Second)
	if err != nil {
		t.Fatalf("no answer to an oversized pre-tune frame: %v", err)
	}
	m, err := wire.DecodeMethod(f.Payload)
	if err != nil {
		t.Fatal(err)
	}
	cl, ok := m.(*wire.ConnectionClose)
	if !ok || cl.ReplyCode != wire.FrameErrorCode {
		t.Fatalf("want connection.close 501, got %s %+v", m.MethodName(), m)
	}
	t.Logf("%d %s", cl.ReplyCode, cl.ReplyText)
	r.Send(0, &wire.ConnectionCloseOk{})
	r.ExpectEOF(3 * time.Second)
}

// network.maxhandshakes bounds connections still in the handshake: past
// it a socket is closed at accept, the refusal is logged, and once the
// handshakes end a client logs in again.
func TestMaxHandshakes(t *testing.T) {
	p := start(t, []string{"run", "--storage-backend", "memory", "--network-maxhandshakes", "20"})
	cs := holdSockets(t, p.port, 20)
	extra := servertest.RawDial(t, p.url, servertest.RawOptions{})
	deadline := time.Now().Add(5 * time.Second)
	for {
		// A refused socket is closed at accept; one accepted before the
		// others registered would get connection.start: retry then.
		extra.Write(wire.ProtocolHeader)
		if err := extra.WaitEOF(time.Second); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a socket past maxhandshakes was not closed at accept")
		}
		extra = servertest.RawDial(t, p.url, servertest.RawOptions{})
	}
	eventually(t, "the refusal in the log", func() bool {
		return strings.Contains(p.stderr.String(), "too many handshakes in progress")
	})
	for _, c := range cs {
		c.Close()
	}
	eventually(t, "a login once the handshakes ended", func() bool {
		c, err := amqp.Dial(p.url)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// A consumer that stops reading loses its socket within
// network.sendtimeout: the server's descriptor for it is closed, and the
// client sees the connection end once it reads again.
func TestSendTimeoutClosesStuckConsumer(t *testing.T) {
	const timeout = 1 * time.Second
	p := start(t, []string{"run", "--storage-backend", "memory", "--network-sendtimeout", timeout.String(),
		"--network-writebuffersize", "8192"})
	c := dial(t, p.url)
	ch, _ := c.Channel()
	if _, err := ch.QueueDeclare("stuck", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, 64<<10)
	for range 200 {
		if err := ch.Publish("", "stuck", false, false, amqp.Publishing{Body: body}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "200 messages queued", func() bool {
		q, err := ch.QueueDeclarePassive("stuck", false, false, false, false, nil)
		return err == nil && q.Messages == 200
	})
	baseline := openFDs(t, p.cmd.Process.Pid)
	r, _ := servertest.RawHandshake(t, p.url, servertest.RawOptions{RecvBuffer: 4096})
	r.OpenChannel(1)
	r.Send(1, &wire.BasicConsume{Queue: "stuck", NoAck: true})
	began := time.Now()
	// The client reads nothing more; the server's writes block once both
	// socket buffers are full, and the send timeout closes the socket.
	deadline := began.Add(timeout + 5*time.Second)
	for openFDs(t, p.cmd.Process.Pid) > baseline {
		if time.Now().After(deadline) {
			t.Fatalf("the stuck consumer's socket is still open after %v\n%s", time.Since(began), p.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("socket closed %v after the consumer stopped reading", time.Since(began).Round(time.Millisecond))
	eventually(t, "the timeout in the log", func() bool {
		return strings.Contains(p.stderr.String(), "client stopped reading")
	})
	if err := r.WaitEOF(30 * time.Second); err != nil {
		t.Errorf("the client did not see the connection end: %v", err)
	}
	roundTrip(t, p.url)
}
