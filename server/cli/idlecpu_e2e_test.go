package cli_test

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// The idle cost (issue 12): the built binary's own CPU (utime + stime from
// /proc) over a window with nothing to do, once with 1,000 durable queues
// and once with 500 open connections that negotiated 60 s heartbeats.
// IDLE_CPU_SECONDS sets the window (default 10; docs/performance.md used
// 60) and IDLE_CONNS the connections (scripts/bench's B7 opens 5,000;
// mind ulimit -n). The queues' bound, 0.5 % of a core, is above RabbitMQ
// 3.10.8's 0.28 % only by the noise of a short window on a shared machine
// (we measured 0.05-0.07 %); the connections' is 0.5 % or 0.0002 % per
// connection (1 % for 5,000, where RabbitMQ 3.10.8 takes 2.2 % and we
// 0.53 %). A queue or connection that keeps a timer ticking costs more.
func TestIdleCPU(t *testing.T) {
	window := 10 * time.Second
	if s := os.Getenv("IDLE_CPU_SECONDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("IDLE_CPU_SECONDS=%q", s)
		}
		window = time.Duration(n) * time.Second
	}
	conns := 500
	if s := os.Getenv("IDLE_CONNS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("IDLE_CONNS=%q", s)
		}
		conns = n
	}
	const bound = 0.5 // % of a core
	t.Run("queues", func(t *testing.T) {
		p := start(t, []string{"run", "--management-enabled=false"})
		c := dial(t, p.url)
		ch, err := c.Channel()
		if err != nil {
			t.Fatal(err)
		}
		for i := range 1000 {
			if _, err := ch.QueueDeclare(fmt.Sprintf("idle-%d", i), true, false, false, false, nil); err != nil {
				t.Fatal(err)
			}
		}
		c.Close()
		pct := idleCPU(t, p, window)
		t.Logf("1,000 idle durable queues: %.3f %% of a core over %v", pct, window)
		if pct > bound {
			t.Errorf("1,000 idle durable queues take %.3f %% of a core, want at most %.1f %%", pct, bound)
		}
	})
	t.Run("connections", func(t *testing.T) {
		p := start(t, []string{"run", "--management-enabled=false"})
		for i := range conns {
			c, err := amqp.DialConfig(p.url, amqp.Config{Heartbeat: 60 * time.Second, Locale: "en_US"})
			if err != nil {
				t.Fatalf("connection %d: %v", i, err)
			}
			t.Cleanup(func() { c.Close() })
			if _, err := c.Channel(); err != nil {
				t.Fatal(err)
			}
		}
		pct := idleCPU(t, p, window)
		t.Logf("%d idle connections, heartbeat 60 s: %.3f %% of a core over %v", conns, pct, window)
		if b := max(bound, 0.0002*float64(conns)); pct > b {
			t.Errorf("%d idle connections take %.3f %% of a core, want at most %.2f %%", conns, pct, b)
		}
	})
}

// idleCPU settles for 2 s, then returns the server's CPU over window as a
// percentage of one core.
func idleCPU(t *testing.T, p *proc, window time.Duration) float64 {
	t.Helper()
	settle := time.NewTimer(2 * time.Second)
	<-settle.C
	cpu0, t0 := procCPU(t, p.cmd.Process.Pid), time.Now()
	tm := time.NewTimer(window)
	select {
	case <-tm.C:
	case <-p.exited:
		t.Fatalf("amqp-server exited: %v\n%s", p.err, p.stderr)
	}
	cpu1, t1 := procCPU(t, p.cmd.Process.Pid), time.Now()
	return 100 * float64(cpu1-cpu0) / float64(t1.Sub(t0))
}

// procCPU is pid's utime + stime from /proc/pid/stat.
func procCPU(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	// Fields after the command name, which is in parentheses: state is
	// field 3, utime 14 and stime 15, in clock ticks (100 a second on
	// Linux).
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 13 {
		t.Fatalf("short /proc/%d/stat: %q", pid, b)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("/proc/%d/stat: %q", pid, b)
	}
	return time.Duration(ut+st) * 10 * time.Millisecond
}
