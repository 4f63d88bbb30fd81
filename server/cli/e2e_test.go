package cli_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/amqp-go/amqp-go/server/servertest"
	amqp "github.com/rabbitmq/amqp091-go"
)

var binary string

func TestMain(m *testing.M) {
	if os.Getenv(remoteGuestURL) != "" {
		os.Exit(m.Run()) // the remote client needs no server binary
	}
	dir, err := os.MkdirTemp("", "amqp-server-e2e")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "amqp-server")
	out, err := exec.Command("go", "build", "-o", binary, "../cmd/amqp-server").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building amqp-server: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// proc is a running amqp-server.
type proc struct {
	t      *testing.T
	cmd    *exec.Cmd
	dir    string
	port   int
	url    string
	stderr *syncBuffer
	exited chan struct{}
	err    error
}

// syncBuffer collects a process's output for the tests to read.
type syncBuffer = servertest.LogBuffer

// baseEnv is the test's environment without AMQP_ variables, plus the
// paths of dir and the given variables.
func baseEnv(dir string, port int, extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AMQP_") {
			env = append(env, kv)
		}
	}
	env = append(env, "AMQP_STORAGE_PATH="+filepath.Join(dir, "data"),
		fmt.Sprintf("AMQP_NETWORK_ADDRESS=127.0.0.1:%d", port), fmt.Sprintf("AMQP_NETWORK_PORT=%d", port),
		// The management API is on by default: any free port, so that
		// servers of tests running in parallel do not share 15672.
		"AMQP_MANAGEMENT_PORT=0")
	return append(env, extra...)
}

// start runs the binary in a temp dir on a free port and waits until it
// accepts connections.
func start(t *testing.T, args []string, env ...string) *proc {
	t.Helper()
	dir := t.TempDir()
	return startIn(t, dir, freePort(t), args, env...)
}

func startIn(t *testing.T, dir string, port int, args []string, env ...string) *proc {
	t.Helper()
	return startShell(t, dir, port, "", args, env...)
}

// startShell is startIn with the binary started by sh after the shell
// commands in prefix ("ulimit -n 256", "umask 000"), if any.
func startShell(t *testing.T, dir string, port int, prefix string, args []string, env ...string) *proc {
	t.Helper()
	p := &proc{t: t, dir: dir, port: port, stderr: &syncBuffer{}, exited: make(chan struct{})}
	p.url = fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", port)
	if prefix == "" {
		p.cmd = exec.Command(binary, args...)
	} else {
		p.cmd = exec.Command("sh", append([]string{"-c", prefix + ` && exec "$@"`, "sh", binary}, args...)...)
	}
	p.cmd.Dir = dir
	p.cmd.Env = baseEnv(dir, port, env...)
	p.cmd.Stderr = p.stderr
	p.cmd.Stdout = p.stderr
	// A test binary killed by its timeout must not leave servers behind.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			p.cmd.Process.Kill()
			<-p.exited
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
			return p
		}
		select {
		case <-p.exited:
			t.Fatalf("amqp-server exited: %v\n%s", p.err, p.stderr)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("amqp-server did not listen on %d\n%s", port, p.stderr)
		}
	}
}

// stop sends sig and returns the exit code.
func (p *proc) stop(sig syscall.Signal) int {
	p.t.Helper()
	p.cmd.Process.Signal(sig)
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		p.t.Fatalf("amqp-server did not exit after %v\n%s", sig, p.stderr)
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	return 0
}

func dial(t *testing.T, url string) *amqp.Connection {
	t.Helper()
	c, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func eventually(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// roundTrip publishes one message with a confirm and gets it back.
func roundTrip(t *testing.T, url string) {
	t.Helper()
	c := dial(t, url)
	ch, err := c.Channel()
	if err != nil {
		t.Fatal(err)
	}
	q, err := ch.QueueDeclare("", false, false, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	dc, err := ch.PublishWithDeferredConfirm("", q.Name, false, false, amqp.Publishing{Body: []byte("hello")})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := dc.WaitContext(context.Background()); !ok || err != nil {
		t.Fatalf("confirm: %v %v", ok, err)
	}
	m, ok, err := ch.Get(q.Name, true)
	if err != nil || !ok || string(m.Body) != "hello" {
		t.Fatalf("get: %v %v %q", ok, err, m.Body)
	}
	c.Close()
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s\n%s", url, resp.Status, b)
	}
	return string(b)
}

// readmeBlock returns the fenced block after the line containing marker.
func readmeBlock(t *testing.T, marker string) string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, marker)
	if i < 0 {
		t.Fatalf("README.md has no %q", marker)
	}
	s = s[i:]
	start := strings.Index(s, "```")
	s = s[start:]
	s = s[strings.Index(s, "\n")+1:]
	return s[:strings.Index(s, "```")]
}

// The README's configuration examples start the server, with their paths
// and ports redirected by environment variables (which override the file).
func TestReadmeExamples(t *testing.T) {
	for _, name := range []string{"minimal", "production"} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := filepath.Join(dir, "amqp-server.yaml")
			if err := os.WriteFile(cfg, []byte(readmeBlock(t, "<!-- example: "+name+" -->")), 0o644); err != nil {
				t.Fatal(err)
			}
			tport := freePort(t)
			p := startIn(t, dir, freePort(t), []string{"run", "--config", cfg},
				"AMQP_SERVER_LOGFILE="+filepath.Join(dir, "log", "amqp-server.log"),
				"AMQP_SERVER_PIDFILE="+filepath.Join(dir, "amqp-server.pid"),
				"AMQP_TELEMETRY_PORT="+strconv.Itoa(tport))
			roundTrip(t, p.url)
			if name == "production" {
				if !strings.Contains(httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/health", tport)), `"status":"ok"`) {
					t.Error("health not ok")
				}
				if _, err := os.Stat(filepath.Join(dir, "amqp-server.pid")); err != nil {
					t.Error(err)
				}
				logs, _ := os.ReadFile(filepath.Join(dir, "log", "amqp-server.log"))
				if !bytes.Contains(logs, []byte(`"msg":"connection opened"`)) {
					t.Errorf("log file lacks JSON connection lines:\n%s", logs)
				}
			}
			if code := p.stop(syscall.SIGTERM); code != 0 {
				t.Fatalf("exit code %d\n%s", code, p.stderr)
			}
		})
	}
}

// SIGTERM with publishers and consumers running: clients get 320
// CONNECTION_FORCED, every confirmed message was routed, and the process
// exits 0.
func TestSIGTERMUnderLoad(t *testing.T) {
	p := start(t, []string{"run"})
	setup := dial(t, p.url)
	sch, _ := setup.Channel()
	if _, err := sch.QueueDeclare("load", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	var confirmed atomic.Int64
	var wg sync.WaitGroup
	closes := make(chan *amqp.Error, 8)
	for i := 0; i < 3; i++ {
		c := dial(t, p.url)
		closes2 := c.NotifyClose(make(chan *amqp.Error, 1))
		go func() { closes <- <-closes2 }()
		ch, err := c.Channel()
		if err != nil {
			t.Fatal(err)
		}
		ch.Confirm(false)
		acks := ch.NotifyPublish(make(chan amqp.Confirmation, 1<<16))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				if err := ch.Publish("", "load", false, false, amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte("m")}); err != nil {
					return
				}
			}
		}()
		go func() {
			for a := range acks {
				if a.Ack {
					confirmed.Add(1)
				}
			}
		}()
	}
	eventually(t, "confirms under load", func() bool { return confirmed.Load() > 2000 })
	if code := p.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code %d\n%s", code, p.stderr)
	}
	wg.Wait()
	for i := 0; i < 3; i++ {
		select {
		case e := <-closes:
			if e == nil || e.Code != amqp.ConnectionForced {
				t.Errorf("connection closed with %v, want 320 CONNECTION_FORCED", e)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no connection.close")
		}
	}
	if !strings.Contains(p.stderr.String(), "msg=stopped") {
		t.Errorf("no clean stop in the log:\n%s", p.stderr)
	}
	// Every confirmed message is still there after the restart.
	want := confirmed.Load()
	p = startIn(t, p.dir, p.port, []string{"run"})
	ch, _ := dial(t, p.url).Channel()
	q, err := ch.QueueDeclarePassive("load", true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if int64(q.Messages) < want {
		t.Fatalf("%d messages after the restart, but %d were confirmed", q.Messages, want)
	}
}

func TestPIDFileAndDaemon(t *testing.T) {
	dir := t.TempDir()
	pidfile := filepath.Join(dir, "amqp.pid")
	port := freePort(t)
	cmd := exec.Command(binary, "run", "--daemonize", "--pidfile", pidfile, "--log-file", filepath.Join(dir, "amqp.log"))
	cmd.Dir = dir
	cmd.Env = baseEnv(dir, port)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("daemonize: %v\n%s", err, out)
	}
	b, err := os.ReadFile(pidfile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if !strings.Contains(string(out), fmt.Sprintf("pid %d", pid)) {
		t.Errorf("parent said %q, pidfile has %d", out, pid)
	}
	if sid := session(pid); sid != pid {
		t.Errorf("daemon session %d, want its own (%d)", sid, pid)
	}
	roundTrip(t, fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", port))

	// A second instance on the same pidfile is refused, daemonized or not.
	for _, args := range [][]string{{"run", "--daemonize", "--pidfile", pidfile}, {"run", "--pidfile", pidfile}} {
		cmd := exec.Command(binary, args...)
		cmd.Dir = dir
		cmd.Env = baseEnv(dir, freePort(t))
		out, err := cmd.CombinedOutput()
		want := fmt.Sprintf("already running: another amqp-server (pid %d) holds it", pid)
		if err == nil || !strings.Contains(string(out), want) {
			t.Errorf("%v: %v\n%s\nwant %q", args, err, out, want)
		}
	}

	syscall.Kill(pid, syscall.SIGTERM)
	eventually(t, "pidfile removed", func() bool { _, err := os.Stat(pidfile); return os.IsNotExist(err) })
	eventually(t, "daemon exit", func() bool { return syscall.Kill(pid, 0) != nil })
}

// Exact counters after known traffic.
func TestMetricsAfterKnownTraffic(t *testing.T) {
	tport := freePort(t)
	p := start(t, []string{"--enable-telemetry", "--telemetry-port", strconv.Itoa(tport), "--telemetry-pprof"})
	c := dial(t, p.url)
	ch, _ := c.Channel()
	for _, q := range []string{"m1", "m2"} {
		if _, err := ch.QueueDeclare(q, false, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
	}
	ch.Confirm(false)
	acks := ch.NotifyPublish(make(chan amqp.Confirmation, 20))
	for i := 0; i < 10; i++ {
		ch.Publish("", "m1", false, false, amqp.Publishing{Body: []byte("x")})
	}
	for i := 0; i < 3; i++ {
		ch.Publish("", "m2", false, false, amqp.Publishing{Body: []byte("y")})
	}
	for i := 0; i < 13; i++ {
		if a := <-acks; !a.Ack {
			t.Fatal("nack")
		}
	}
	// m1: prefetch 6, 4 acked, so all 10 delivered and 6 unacked;
	// m2: 1 basic.get left unacked, 2 ready.
	cch, _ := c.Channel()
	cch.Qos(6, 0, false)
	ds, _ := cch.Consume("m1", "", false, false, false, false, nil)
	var got []amqp.Delivery
	for len(got) < 6 {
		got = append(got, <-ds)
	}
	for _, d := range got[:4] {
		d.Ack(false)
	}
	if _, ok, err := ch.Get("m2", false); !ok || err != nil {
		t.Fatal(ok, err)
	}
	want := map[string]string{
		"rabbitmq_connections": "1", "rabbitmq_channels": "2", "rabbitmq_queues": "2",
		`rabbitmq_global_messages_received_total{protocol="amqp091"}`:     "13",
		`rabbitmq_global_messages_confirmed_total{protocol="amqp091"}`:    "13",
		`rabbitmq_global_messages_delivered_total{protocol="amqp091"}`:    "11",
		`rabbitmq_global_messages_acknowledged_total{protocol="amqp091"}`: "4",
		"rabbitmq_queue_messages_ready":                                   "2", "rabbitmq_queue_messages_unacked": "7", "rabbitmq_queue_messages": "9",
	}
	// Acking 4 gives the consumer credit for the other 4 in m1.
	for len(got) < 10 {
		got = append(got, <-ds)
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", tport)
	// Acks settle in the queues just after the broker counts them.
	var m map[string]string
	deadline := time.Now().Add(10 * time.Second)
	for {
		m = metrics(t, base+"/metrics")
		var diffs []string
		for k, v := range want {
			if m[k] != v {
				diffs = append(diffs, fmt.Sprintf("%s = %q, want %s", k, m[k], v))
			}
		}
		if len(diffs) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(strings.Join(diffs, "\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, ok := m[`rabbitmq_queue_messages_ready{vhost="/",queue="m1"}`]; ok {
		t.Error("per-queue series on /metrics")
	}
	readme, _ := os.ReadFile("../../README.md")
	for name := range m {
		family := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name[:strings.IndexAny(name+"{", "{")], "_bucket"), "_sum"), "_count")
		if strings.HasPrefix(family, "rabbitmq_") || strings.HasPrefix(family, "amqp_") {
			if !bytes.Contains(readme, []byte("`"+family)) {
				t.Errorf("README.md does not document %s", family)
			}
		}
	}
	if _, ok := m["go_goroutines"]; !ok {
		t.Error("no Go runtime metrics")
	}
	// The message log: one persistent message to a durable queue is
	// written and fsynced before its confirm.
	if _, err := ch.QueueDeclare("m3", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	ch.Publish("", "m3", false, false, amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte("z")})
	if a := <-acks; !a.Ack {
		t.Fatal("nack")
	}
	m = metrics(t, base+"/metrics")
	for _, k := range []string{"amqp_wal_written_bytes_total", "amqp_wal_fsync_duration_seconds_count", "amqp_wal_batches_total", "amqp_wal_segments"} {
		if v, err := strconv.ParseFloat(m[k], 64); err != nil || v < 1 {
			t.Errorf("%s = %q after a confirmed persistent publish, want at least 1", k, m[k])
		}
	}
	po := metrics(t, base+"/metrics/per-object")
	for k, v := range map[string]string{
		`rabbitmq_queue_messages_ready{vhost="/",queue="m1"}`:   "0",
		`rabbitmq_queue_messages_unacked{vhost="/",queue="m1"}`: "6",
		`rabbitmq_queue_messages{vhost="/",queue="m1"}`:         "6",
		`rabbitmq_queue_messages_ready{vhost="/",queue="m2"}`:   "2",
	} {
		if po[k] != v {
			t.Errorf("per-object %s = %q, want %s", k, po[k], v)
		}
	}
	if !strings.Contains(httpGet(t, base+"/debug/pprof/"), "goroutine") {
		t.Error("no pprof index")
	}
	if !strings.Contains(httpGet(t, base+"/health"), `"status":"ok"`) {
		t.Error("health")
	}
	// Telemetry binds loopback by default.
	if !strings.Contains(p.stderr.String(), fmt.Sprintf("telemetry listening\" address=127.0.0.1:%d", tport)) {
		t.Errorf("telemetry not on 127.0.0.1:\n%s", p.stderr)
	}
}

// session is the session id of pid, from /proc/PID/stat.
func session(pid int) int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	s := string(b)
	f := strings.Fields(s[strings.LastIndex(s, ")")+1:])
	if len(f) < 4 {
		return -1
	}
	sid, _ := strconv.Atoi(f[3])
	return sid
}

var metricLine = regexp.MustCompile(`^(\S+) (\S+)$`)

func metrics(t *testing.T, url string) map[string]string {
	out := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(httpGet(t, url)))
	for sc.Scan() {
		if m := metricLine.FindStringSubmatch(sc.Text()); m != nil {
			out[m[1]] = m[2]
		}
	}
	return out
}

func rss(t *testing.T, pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// A publisher outrunning its consumer with a 96 MiB memory limit gets
// connection.blocked; the server's RSS stays under the limit plus a 56 MiB
// margin (what arrives between two 20ms measurements, the consumer's
// prefetch window and output buffer, and memory the Go runtime has not yet
// returned to the OS), and
// the consumer keeps draining until the alarm clears.
func TestMemoryAlarmBlocksPublisher(t *testing.T) {
	const limit, margin = 96 << 20, 56 << 20
	// The memory backend keeps the baseline RSS (Badger's caches) out of
	// a limit this small.
	p := start(t, []string{"run", "--storage-backend", "memory", "--server-memorylimitbytes", strconv.Itoa(limit), "--server-resourcecheckinterval", "20ms"})
	pub := dial(t, p.url)
	blocked := pub.NotifyBlocked(make(chan amqp.Blocking, 4))
	pch, _ := pub.Channel()
	pch.QueueDeclare("big", false, false, false, false, nil)
	var maxRSS atomic.Int64
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			if r := rss(t, p.cmd.Process.Pid); r > maxRSS.Load() {
				maxRSS.Store(r)
			}
		}
	}()
	body := bytes.Repeat([]byte("x"), 64<<10)
	pubStop := make(chan struct{})
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		for {
			select {
			case <-pubStop:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			err := pch.PublishWithContext(ctx, "", "big", false, false, amqp.Publishing{Body: body})
			cancel()
			if err != nil && !errors.Is(err, context.DeadlineExceeded) {
				return
			}
		}
	}()
	var b amqp.Blocking
	select {
	case b = <-blocked:
	case <-time.After(30 * time.Second):
		t.Fatalf("no connection.blocked; max RSS %d MiB\n%s", maxRSS.Load()>>20, p.stderr)
	}
	if !b.Active || b.Reason != "low on memory" {
		t.Fatalf("got %+v", b)
	}
	// A slow consumer on another connection keeps draining; the alarm
	// clears once memory falls back under the limit.
	con := dial(t, p.url)
	cch, _ := con.Channel()
	cch.Qos(100, 0, false)
	ds, err := cch.Consume("big", "", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	var unblocked bool
	for !unblocked {
		select {
		case d := <-ds:
			d.Ack(false)
			n++
		case b := <-blocked:
			unblocked = !b.Active
		case <-time.After(30 * time.Second):
			t.Fatalf("consumer stalled after %d; max RSS %d MiB", n, maxRSS.Load()>>20)
		}
	}
	// Stop the publisher while the consumer keeps draining: a publish in
	// flight completes only when no alarm holds the connection, and closing
	// the connection waits for it.
	close(pubStop)
	for stopped := false; !stopped; {
		select {
		case <-pubDone:
			stopped = true
		case d := <-ds:
			d.Ack(false)
			n++
		case <-time.After(30 * time.Second):
			t.Fatalf("publisher did not stop; max RSS %d MiB", maxRSS.Load()>>20)
		}
	}
	// Close the publisher while the consumer still drains: like RabbitMQ,
	// the broker does not read a blocked publisher, so its close is read
	// only once the alarm clears.
	closed := make(chan error, 1)
	go func() { closed <- pub.Close() }()
	for done := false; !done; {
		select {
		case <-closed:
			done = true
		case d := <-ds:
			d.Ack(false)
			n++
		case <-time.After(30 * time.Second):
			t.Fatalf("publisher's close never went through; max RSS %d MiB", maxRSS.Load()>>20)
		}
	}
	if n == 0 {
		t.Error("the consumer got nothing while the publisher was blocked")
	}
	if m := maxRSS.Load(); m > limit+margin {
		t.Errorf("RSS reached %d MiB, over the %d MiB limit plus %d MiB", m>>20, limit>>20, margin>>20)
	}
	t.Logf("max RSS %d MiB (limit %d MiB); consumed %d while blocked", maxRSS.Load()>>20, limit>>20, n)
}

// A disk free-space limit above what is free raises the disk alarm at once.
// (connection.blocked itself, sent right after connection.open-ok, can
// reach amqp091-go before NotifyBlocked is registered, so the test reads
// the alarm from the metrics and the log.)
func TestDiskAlarm(t *testing.T) {
	tport := freePort(t)
	p := start(t, []string{"run", "--enable-telemetry", "--telemetry-port", strconv.Itoa(tport)},
		"AMQP_SERVER_DISKFREELIMIT=9223372036854775807")
	m := metrics(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", tport))
	if m["rabbitmq_alarms_free_disk_space_watermark"] != "1" || m["rabbitmq_disk_space_available_limit_bytes"] != "9.223372036854776e+18" {
		t.Errorf("disk alarm metrics: %q %q", m["rabbitmq_alarms_free_disk_space_watermark"], m["rabbitmq_disk_space_available_limit_bytes"])
	}
	if !strings.Contains(p.stderr.String(), `msg="resource alarm raised: blocking publishers" reason="low on disk"`) {
		t.Errorf("no alarm in the log:\n%s", p.stderr)
	}
}

// server.gcpercent sets the garbage collector's GOGC, as the Go collector
// on /metrics reports it; the GOGC variable, when set, wins.
func TestGCPercent(t *testing.T) {
	for _, c := range []struct {
		env  []string
		want string
	}{
		{[]string{"AMQP_SERVER_GCPERCENT=400"}, "400"},
		{[]string{"AMQP_SERVER_GCPERCENT=400", "GOGC=250"}, "250"},
	} {
		tport := freePort(t)
		p := start(t, []string{"run", "--enable-telemetry", "--telemetry-port", strconv.Itoa(tport)}, c.env...)
		m := metrics(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", tport))
		if got := m["go_gc_gogc_percent"]; got != c.want {
			t.Errorf("%v: go_gc_gogc_percent %q, want %s", c.env, got, c.want)
		}
		p.stop(syscall.SIGTERM)
	}
}

// network.heartbeat, channelmax and framemax reach connection.tune;
// maxconnections refuses the connection past the limit.
func TestNetworkKeys(t *testing.T) {
	p := start(t, []string{"run", "--network-channelmax", "7"}, "AMQP_NETWORK_HEARTBEAT=3", "AMQP_NETWORK_FRAMEMAX=8192", "AMQP_NETWORK_MAXCONNECTIONS=1")
	// start's readiness probe may still hold the only slot for a moment.
	var c *amqp.Connection
	eventually(t, "the first connection", func() bool {
		var err error
		c, err = amqp.DialConfig(p.url, amqp.Config{})
		return err == nil
	})
	defer c.Close()
	if c.Config.ChannelMax != 7 || c.Config.FrameSize != 8192 || c.Config.Heartbeat != 3*time.Second {
		t.Errorf("negotiated channel_max %d frame_max %d heartbeat %v", c.Config.ChannelMax, c.Config.FrameSize, c.Config.Heartbeat)
	}
	if c2, err := amqp.Dial(p.url); err == nil {
		c2.Close()
		t.Error("second connection accepted with maxconnections 1")
	}
	ch, err := c.Channel()
	if err != nil {
		t.Fatalf("first connection broken: %v\n%s", err, p.stderr.String())
	}
	ch.Close()
}

func TestConfigErrorStopsStartup(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "bad.yaml")
	os.WriteFile(cfg, []byte("network:\n  port: 99999\n"), 0o644)
	cmd := exec.Command(binary, "run", "--config", cfg)
	cmd.Env = baseEnv(dir, freePort(t))
	out, err := cmd.CombinedOutput()
	want := "amqp-server: " + cfg + ":2: network.port: out of range: 99999 (allowed: an integer from 0 to 65535)\n"
	if err == nil || cmd.ProcessState.ExitCode() != 1 || string(out) != want {
		t.Errorf("got %v %q, want exit 1 %q", err, out, want)
	}
}

// generate-config (command and classic flag) writes the defaults; the file
// starts the server; version and --version print version, commit and Go.
func TestGenerateConfigAndVersion(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{{"generate-config", "a.yaml"}, {"--generate-config", "b.json"}} {
		cmd := exec.Command(binary, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v: %v %s", args, err, out)
		}
	}
	sample, _ := os.ReadFile("../../config.sample.yaml")
	if a, _ := os.ReadFile(filepath.Join(dir, "a.yaml")); !bytes.Equal(a, sample) {
		t.Error("generate-config output differs from config.sample.yaml")
	}
	p := startIn(t, dir, freePort(t), []string{"--config", "b.json"})
	roundTrip(t, p.url)
	if code := p.stop(syscall.SIGINT); code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, args := range [][]string{{"version"}, {"--version"}} {
		out, err := exec.Command(binary, args...).CombinedOutput()
		if err != nil || !regexp.MustCompile(`^amqp-server \S+ \(commit \S+, go1\.\S+\)\n$`).Match(out) {
			t.Errorf("%v: %v %q", args, err, out)
		}
	}
}

// JSON logs at debug level into logfile, reopened on SIGHUP after rotation;
// connection open and close carry peer, user and vhost.
func TestLogFileReopenOnSIGHUP(t *testing.T) {
	dir := t.TempDir()
	logf := filepath.Join(dir, "amqp.log")
	p := startIn(t, dir, freePort(t), []string{"run", "--log-file", logf, "--server-logformat", "json", "--log-level", "debug"})
	c := dial(t, p.url)
	c.Close()
	eventually(t, "close logged", func() bool {
		b, _ := os.ReadFile(logf)
		return bytes.Contains(b, []byte(`"msg":"connection closed"`))
	})
	b, _ := os.ReadFile(logf)
	if !regexp.MustCompile(`"level":"INFO","msg":"connection opened","peer":"127\.0\.0\.1:\d+","user":"guest","vhost":"/"`).Match(b) {
		t.Errorf("no connection line with peer, user, vhost:\n%s", b)
	}
	if err := os.Rename(logf, logf+".1"); err != nil {
		t.Fatal(err)
	}
	p.cmd.Process.Signal(syscall.SIGHUP)
	eventually(t, "log reopened", func() bool {
		b, _ := os.ReadFile(logf)
		return bytes.Contains(b, []byte(`"msg":"log file reopened"`))
	})
	if code := p.stop(syscall.SIGTERM); code != 0 {
		t.Fatal(code)
	}
}

// storage.persistent: false keeps definitions but not messages across a
// restart; the default keeps both.
func TestStoragePersistentKey(t *testing.T) {
	for _, persistent := range []bool{true, false} {
		t.Run(fmt.Sprintf("persistent=%v", persistent), func(t *testing.T) {
			dir, port := t.TempDir(), freePort(t)
			args := []string{"run", fmt.Sprintf("--storage-persistent=%v", persistent)}
			p := startIn(t, dir, port, args)
			c := dial(t, p.url)
			ch, _ := c.Channel()
			if _, err := ch.QueueDeclare("keep", true, false, false, false, nil); err != nil {
				t.Fatal(err)
			}
			ch.Confirm(false)
			acks := ch.NotifyPublish(make(chan amqp.Confirmation, 1))
			ch.Publish("", "keep", false, false, amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte("m")})
			if a := <-acks; !a.Ack {
				t.Fatal("nack")
			}
			c.Close()
			if code := p.stop(syscall.SIGTERM); code != 0 {
				t.Fatalf("exit %d", code)
			}
			p = startIn(t, dir, port, args)
			c = dial(t, p.url)
			ch, _ = c.Channel()
			q, err := ch.QueueDeclarePassive("keep", true, false, false, false, nil)
			if err != nil {
				t.Fatalf("durable queue lost: %v", err)
			}
			want := 0
			if persistent {
				want = 1
			}
			if q.Messages != want {
				t.Fatalf("%d messages after restart, want %d", q.Messages, want)
			}
		})
	}
}

// storage.fsync and engine.walbatchtimeout reach the message log: "always"
// writes each record as its own batch; a batch timeout gathers quick
// publishes into one batch (and delays their confirms by about as much).
func TestLogSyncKeys(t *testing.T) {
	cases := []struct {
		name  string
		args  []string
		check func(t *testing.T, batches float64, took time.Duration)
	}{
		{"fsync always", []string{"--storage-fsync", "always"}, func(t *testing.T, batches float64, _ time.Duration) {
			if batches < 20 {
				t.Errorf("%v batches for 20 persistent publishes, want one each", batches)
			}
		}},
		{"walbatchtimeout", []string{"--engine-walbatchtimeout", "300ms"}, func(t *testing.T, batches float64, took time.Duration) {
			if batches > 3 {
				t.Errorf("%v batches for 20 quick publishes with a 300ms batch timeout", batches)
			}
			if took < 250*time.Millisecond {
				t.Errorf("confirms after %v, want the batch held open ~300ms", took)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tport := freePort(t)
			args := append([]string{"run", "--enable-telemetry", "--telemetry-port", strconv.Itoa(tport)}, tc.args...)
			p := start(t, args)
			c := dial(t, p.url)
			ch, _ := c.Channel()
			if _, err := ch.QueueDeclare("d", true, false, false, false, nil); err != nil {
				t.Fatal(err)
			}
			ch.Confirm(false)
			acks := ch.NotifyPublish(make(chan amqp.Confirmation, 20))
			base := fmt.Sprintf("http://127.0.0.1:%d/metrics", tport)
			before, _ := strconv.ParseFloat(metrics(t, base)["amqp_wal_batches_total"], 64)
			t0 := time.Now()
			for i := 0; i < 20; i++ {
				ch.Publish("", "d", false, false, amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte("x")})
			}
			for i := 0; i < 20; i++ {
				if a := <-acks; !a.Ack {
					t.Fatal("nack")
				}
			}
			took := time.Since(t0)
			after, _ := strconv.ParseFloat(metrics(t, base)["amqp_wal_batches_total"], 64)
			tc.check(t, after-before, took)
		})
	}
}
