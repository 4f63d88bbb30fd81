package cli_test

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
)

// remoteGuestURL, when set, makes this test binary the remote client of
// TestRemoteGuestRefused (run inside the test's network namespace).
const remoteGuestURL = "AMQP_TEST_REMOTE_GUEST_URL"

// netnsPeer makes a network namespace joined to this one by a veth pair:
// hostIP is our end, and commands run with "ip netns exec NAME" see the
// server from peerIP, a non-loopback address. It skips without root or ip.
func netnsPeer(t *testing.T) (name, hostIP string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to make a network namespace (CI runs as root)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs ip (iproute2)")
	}
	id := os.Getpid() % 100000
	name = fmt.Sprintf("amqpt%d", id)
	host, peer := fmt.Sprintf("vah%d", id), fmt.Sprintf("vbh%d", id)
	hostIP = "10.231.7.1"
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Skipf("ip %s: %v %s", strings.Join(args, " "), err, out)
		}
	}
	run("netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	run("link", "add", host, "type", "veth", "peer", "name", peer)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", host).Run() })
	run("link", "set", peer, "netns", name)
	run("addr", "add", hostIP+"/30", "dev", host)
	run("link", "set", host, "up")
	run("netns", "exec", name, "ip", "addr", "add", "10.231.7.2/30", "dev", peer)
	run("netns", "exec", name, "ip", "link", "set", peer, "up")
	return name, hostIP
}

// guest may log in only over loopback, as RabbitMQ's loopback_users: from
// another host the client gets RabbitMQ's 403, and the log says why.
func TestRemoteGuestRefused(t *testing.T) {
	ns, hostIP := netnsPeer(t)
	port := freePort(t)
	p := startIn(t, t.TempDir(), port, []string{"run", "--storage-backend", "memory"},
		fmt.Sprintf("AMQP_NETWORK_ADDRESS=:%d", port))
	cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run", "^TestRemoteGuestClient$", "-test.v")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=amqp://guest:guest@%s:%d/", remoteGuestURL, hostIP, port))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("remote client: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "refused: Exception (403)") {
		t.Fatalf("the remote guest was not refused with 403:\n%s", out)
	}
	eventually(t, "the reason in the log", func() bool {
		return strings.Contains(p.stderr.String(), "user 'guest' can only connect via localhost")
	})
	roundTrip(t, p.url) // loopback still works
}

// TestRemoteGuestClient is the remote side of TestRemoteGuestRefused.
func TestRemoteGuestClient(t *testing.T) {
	url := os.Getenv(remoteGuestURL)
	if url == "" {
		t.Skip("run by TestRemoteGuestRefused inside its network namespace")
	}
	c, err := amqp.Dial(url)
	if err == nil {
		c.Close()
		t.Fatal("guest logged in from another host")
	}
	t.Logf("refused: %v", err)
}
