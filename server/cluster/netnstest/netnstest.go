// Package netnstest gives a Go test its own network: a bridge and one
// network namespace per node, made by the repository's
// scripts/cluster/netns, so that cutting a node's link or delaying its
// packets is a real partition or a real slow link.
//
// It needs root and iproute2 (ip, tc); New skips the test with the reason
// when either is missing. Everything New creates is removed by t.Cleanup,
// and runs left behind by a killed test are removed by the next New.
package netnstest

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// Net is one run of the harness: a bridge in the root namespace (address
// 10.231.Run.254) and nodes 1..n. Its methods call t.Fatal on failure and
// must be called from the test's goroutine.
type Net struct {
	t      testing.TB
	script string
	Run    int
	Nodes  []Node // Nodes[i-1] is node i
}

// Node is one namespace of a Net.
type Node struct {
	Index     int
	Namespace string // the name ip netns knows it by
	Addr      string // its IPv4 address, reachable from the root namespace
}

// Script returns the path of scripts/cluster/netns in this repository.
func Script() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", fmt.Errorf("netnstest: cannot locate the package's source")
	}
	p := filepath.Join(filepath.Dir(file), "..", "..", "..", "scripts", "cluster", "netns")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("netnstest: harness script: %w", err)
	}
	return p, nil
}

// Skip reports why this machine cannot run namespace tests, or "".
func Skip() string {
	if os.Geteuid() != 0 {
		return "network namespace tests need root (ip netns add)"
	}
	for _, c := range []string{"ip", "tc"} {
		if _, err := exec.LookPath(c); err != nil {
			return "network namespace tests need iproute2: " + c + " is not on PATH"
		}
	}
	if _, err := Script(); err != nil {
		return err.Error()
	}
	return ""
}

// RequiredEnv names the environment variable that, set (CI sets it),
// turns SkipUnlessAble's skip into a failure: a CI machine that cannot
// run the namespace tests must say so rather than pass without them.
const RequiredEnv = "NETNS_TESTS_REQUIRED"

// SkipUnlessAble skips t when Skip says this machine cannot run namespace
// tests, or fails it if RequiredEnv is set.
func SkipUnlessAble(t testing.TB) {
	t.Helper()
	if why := Skip(); why != "" {
		if os.Getenv(RequiredEnv) != "" {
			t.Fatalf("%s (%s is set, so this is a failure)", why, RequiredEnv)
		}
		t.Skip(why)
	}
}

// New creates n nodes, or skips the test when SkipUnlessAble says so.
func New(t testing.TB, n int) *Net {
	t.Helper()
	SkipUnlessAble(t)
	script, _ := Script()
	cmd := exec.Command(script, "up", strconv.Itoa(n))
	cmd.Env = append(os.Environ(), "AMQC_OWNER="+strconv.Itoa(os.Getpid()))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("netns up %d: %v\n%s", n, err, stderr(err))
	}
	nt := &Net{t: t, script: script}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 1 && strings.HasPrefix(f[0], "AMQC_RUN="):
			nt.Run, err = strconv.Atoi(strings.TrimPrefix(f[0], "AMQC_RUN="))
		case len(f) == 4 && f[0] == "node":
			var i int
			i, err = strconv.Atoi(f[1])
			nt.Nodes = append(nt.Nodes, Node{Index: i, Namespace: f[2], Addr: f[3]})
		}
		if err != nil {
			t.Fatalf("netns up: bad output %q", out)
		}
	}
	if nt.Run == 0 {
		t.Fatalf("netns up: no run number in %q", out)
	}
	t.Cleanup(func() {
		if _, err := nt.script1("down"); err != nil {
			t.Errorf("netns down: %v", err)
		}
	})
	if len(nt.Nodes) != n {
		t.Fatalf("netns up %d: %d nodes in %q", n, len(nt.Nodes), out)
	}
	return nt
}

func stderr(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}

func (n *Net) script1(args ...string) (string, error) {
	cmd := exec.Command(n.script, args...)
	cmd.Env = append(os.Environ(), "AMQC_RUN="+strconv.Itoa(n.Run))
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("netns %s: %v: %s", strings.Join(args, " "), err, stderr(err))
	}
	return string(out), nil
}

func (n *Net) must(args ...string) {
	n.t.Helper()
	if _, err := n.script1(args...); err != nil {
		n.t.Fatal(err)
	}
}

// Node returns node i (1-based).
func (n *Net) Node(i int) Node { return n.Nodes[i-1] }

// Cut sets node i's link down: nothing reaches it or leaves it.
func (n *Net) Cut(i int) { n.t.Helper(); n.must("cut", strconv.Itoa(i)) }

// Heal sets node i's link up again.
func (n *Net) Heal(i int) { n.t.Helper(); n.must("heal", strconv.Itoa(i)) }

// Netem applies tc netem args (such as "delay", "50ms") to what node i
// sends.
func (n *Net) Netem(i int, args ...string) { n.t.Helper(); n.qdisc("netem", i, args) }

// NetemIn applies tc netem args to what node i receives.
func (n *Net) NetemIn(i int, args ...string) { n.t.Helper(); n.qdisc("netem-in", i, args) }

// Shape makes what node i sends go through a token bucket (tc tbf args,
// such as "rate", "4mbit", "burst", "16kb", "latency", "400ms"): a slow
// link, real to the kernel, where netem is missing.
func (n *Net) Shape(i int, args ...string) { n.t.Helper(); n.qdisc("shape", i, args) }

// ShapeIn is Shape for what node i receives.
func (n *Net) ShapeIn(i int, args ...string) { n.t.Helper(); n.qdisc("shape-in", i, args) }

// qdisc runs the harness's qdisc command cmd (netem, netem-in, shape,
// shape-in) for node i with args.
func (n *Net) qdisc(cmd string, i int, args []string) {
	n.t.Helper()
	n.must(append([]string{cmd, strconv.Itoa(i)}, args...)...)
}

// NetemClear removes node i's netem (or Shape) in both directions.
func (n *Net) NetemClear(i int) { n.t.Helper(); n.must("netem-clear", strconv.Itoa(i)) }

// Command returns a command that runs name in node i's namespace (through
// ip netns exec, which execs it: the process is name itself).
func (n *Net) Command(i int, name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.Node(i).Namespace, name}, args...)...)
}

// RequireNetem skips the test when the kernel has no netem qdisc
// (sch_netem), which minimal VM kernels leave out. It probes on node 1's
// loopback, which no test traffic uses.
func (n *Net) RequireNetem() {
	n.t.Helper()
	ns := n.Node(1).Namespace
	out, err := exec.Command("tc", "-n", ns, "qdisc", "replace", "dev", "lo", "root", "netem", "delay", "0ms").CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "unknown") {
			n.t.Skipf("the kernel has no netem qdisc (sch_netem): %s", strings.TrimSpace(string(out)))
		}
		n.t.Fatalf("tc netem probe: %v: %s", err, out)
	}
	if out, err := exec.Command("tc", "-n", ns, "qdisc", "del", "dev", "lo", "root").CombinedOutput(); err != nil {
		n.t.Fatalf("tc netem probe cleanup: %v: %s", err, out)
	}
}
