package netnstest_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/amqp-go/amqp-go/server/cluster/netnstest"
	"github.com/amqp-go/amqp-go/server/servertest"
	amqp "github.com/rabbitmq/amqp091-go"
)

// startBroker runs amqp-server in node i's namespace on its address and
// returns the address once a client in the root namespace can log in.
func startBroker(t *testing.T, n *netnstest.Net, i int) (addr string, logs *servertest.LogBuffer) {
	t.Helper()
	bin := servertest.Binary(t)
	addr = net.JoinHostPort(n.Node(i).Addr, "5672")
	logs = &servertest.LogBuffer{}
	cmd := n.Command(i, bin, "run")
	cmd.Env = append(os.Environ(),
		"AMQP_NETWORK_ADDRESS="+addr, "AMQP_STORAGE_PATH="+t.TempDir(),
		"AMQP_MANAGEMENT_ENABLED=false",
		// guest may log in from the bridge, which is not loopback.
		"AMQP_SECURITY_LOOPBACKUSERS=none")
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := dial(addr, time.Second)
		if err == nil {
			c.Close()
			return addr, logs
		}
		if time.Now().After(deadline) {
			t.Fatalf("broker in %s did not start: %v\n%s", n.Node(i).Namespace, err, logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// dial connects with a dial timeout and a 1 s heartbeat, so that a cut
// link shows as a closed connection within a few seconds.
func dial(addr string, timeout time.Duration) (*amqp.Connection, error) {
	return amqp.DialConfig("amqp://guest:guest@"+addr+"/", amqp.Config{
		Heartbeat: time.Second,
		Dial:      amqp.DefaultDial(timeout),
	})
}

// roundTrip declares a queue, publishes body and reads it back.
func roundTrip(t *testing.T, c *amqp.Connection, body string) {
	t.Helper()
	ch, err := c.Channel()
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ch.PublishWithContext(ctx, "", q.Name, false, false, amqp.Publishing{Body: []byte(body)}); err != nil {
		t.Fatal(err)
	}
	deliveries, err := ch.Consume(q.Name, "", true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-deliveries:
		if string(d.Body) != body {
			t.Fatalf("got %q, want %q", d.Body, body)
		}
	case <-ctx.Done():
		t.Fatal("no delivery within 5s")
	}
}

// TestCutAndHeal runs the broker in a namespace, talks to it across the
// bridge, cuts the link (the open connection dies of missed heartbeats,
// new dials time out) and heals it (dials work again).
func TestCutAndHeal(t *testing.T) {
	n := netnstest.New(t, 1)
	addr, logs := startBroker(t, n, 1)
	c, err := dial(addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	roundTrip(t, c, "before the cut")
	closed := c.NotifyClose(make(chan *amqp.Error, 1))

	n.Cut(1)
	select {
	case err := <-closed:
		t.Logf("connection closed after the cut: %v", err)
	case <-time.After(15 * time.Second):
		t.Fatal("connection still open 15s after its link was cut")
	}
	start := time.Now()
	if c2, err := dial(addr, 300*time.Millisecond); err == nil {
		c2.Close()
		t.Fatal("dialed a node whose link is cut")
	} else if d := time.Since(start); d < 250*time.Millisecond {
		t.Fatalf("dial failed after %v (%v), want a timeout", d, err)
	}

	n.Heal(1)
	deadline := time.Now().Add(15 * time.Second)
	for {
		c3, err := dial(addr, 300*time.Millisecond)
		if err == nil {
			roundTrip(t, c3, "after the heal")
			c3.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no connection 15s after the heal: %v\n%s", err, logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// connectRTT is the shortest of k TCP handshakes to addr: one round trip.
func connectRTT(t *testing.T, addr string, k int) time.Duration {
	t.Helper()
	best := time.Duration(1<<63 - 1)
	for range k {
		start := time.Now()
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		best = min(best, time.Since(start))
		c.Close()
	}
	return best
}

// TestNetemDelay checks that netem on the node's link adds its delay to
// the round trip, and that clearing it takes it away.
func TestNetemDelay(t *testing.T) {
	n := netnstest.New(t, 1)
	n.RequireNetem()
	addr, _ := startBroker(t, n, 1)
	base := connectRTT(t, addr, 5)

	n.Netem(1, "delay", "50ms")
	delayed := connectRTT(t, addr, 5)
	t.Logf("connect RTT %v without netem, %v with delay 50ms", base, delayed)
	if added := delayed - base; added < 45*time.Millisecond || added > 500*time.Millisecond {
		t.Fatalf("netem delay 50ms added %v to the round trip", added)
	}
	c, err := dial(addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, c, "over a slow link")
	c.Close()

	n.NetemClear(1)
	if cleared := connectRTT(t, addr, 5); cleared > base+20*time.Millisecond {
		t.Fatalf("RTT %v after netem-clear, %v before", cleared, base)
	}
}

// TestNodesReachEachOther checks node-to-node traffic over the bridge,
// which the host's iptables must not filter.
func TestNodesReachEachOther(t *testing.T) {
	n := netnstest.New(t, 2)
	addr, _ := startBroker(t, n, 1)
	// A TCP handshake from node 2 to node 1 with bash's /dev/tcp.
	out, err := n.Command(2, "bash", "-c", "exec 3<>/dev/tcp/"+strings.Replace(addr, ":", "/", 1)).CombinedOutput()
	if err != nil {
		t.Fatalf("node 2 cannot reach %s: %v %s", addr, err, out)
	}
}

// TestStaleRunRemoved leaves a run behind as a killed test would (its
// owner is gone) and checks that the next New removes it.
func TestStaleRunRemoved(t *testing.T) {
	netnstest.SkipUnlessAble(t)
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	script, _ := netnstest.Script()
	up := exec.Command(script, "up", "1")
	up.Env = append(os.Environ(), fmt.Sprintf("AMQC_OWNER=%d", dead.Process.Pid))
	out, err := up.Output()
	if err != nil {
		t.Fatalf("netns up: %v", err)
	}
	stale := strings.Fields(strings.Split(string(out), "\n")[1])[2]
	// Mark the stale namespace: New may reuse its name, never the namespace.
	if out, err := exec.Command("ip", "-n", stale, "link", "set", "lo", "alias", "stale-marker").CombinedOutput(); err != nil {
		t.Fatalf("marking %s: %v %s", stale, err, out)
	}
	netnstest.New(t, 1)
	out, _ = exec.Command("ip", "-n", stale, "-d", "link", "show", "lo").CombinedOutput()
	if strings.Contains(string(out), "stale-marker") {
		t.Fatalf("stale namespace %s survived New", stale)
	}
}
