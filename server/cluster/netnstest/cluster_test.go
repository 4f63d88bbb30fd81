package netnstest_test

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/amqp-go/amqp-go/server/cluster"
	"github.com/amqp-go/amqp-go/server/cluster/netnstest"
	"github.com/amqp-go/amqp-go/server/servertest"
)

// clusterNode is one amqp-server process of a cluster, in its own
// namespace, restartable with the same data directory.
type clusterNode struct {
	i    int
	name string
	dir  string
	env  []string
	cmd  *exec.Cmd
	logs *servertest.LogBuffer
	api  string // http://addr:15672/api
}

// startClusterNodes starts one amqp-server per namespace of n, each with
// the others as cluster.peers, and waits until each answers its API.
func startClusterNodes(t *testing.T, n *netnstest.Net) []*clusterNode {
	return startNodes(t, n, n.Nodes, peersOf(n.Nodes))
}

// peersOf is cluster.peers naming nds.
func peersOf(nds []netnstest.Node) string {
	var peers []string
	for _, nd := range nds {
		peers = append(peers, fmt.Sprintf("amqp%d=%s", nd.Index, net.JoinHostPort(nd.Addr, "25672")))
	}
	return strings.Join(peers, ",")
}

// startNodes starts one amqp-server in each namespace of nds with
// cluster.peers set to peers and extra in the environment; they are
// killed when the test ends, and their logs shown if it failed.
func startNodes(t *testing.T, n *netnstest.Net, nds []netnstest.Node, peers string, extra ...string) []*clusterNode {
	var nodes []*clusterNode
	for _, nd := range nds {
		cn := &clusterNode{i: nd.Index, name: fmt.Sprintf("amqp%d", nd.Index), dir: t.TempDir(),
			api: "http://" + net.JoinHostPort(nd.Addr, "15672") + "/api"}
		cn.env = append(os.Environ(),
			"AMQP_NETWORK_ADDRESS="+net.JoinHostPort(nd.Addr, "5672"), "AMQP_STORAGE_PATH="+cn.dir,
			"AMQP_MANAGEMENT_ADDRESS="+nd.Addr, "AMQP_MANAGEMENT_PORT=15672",
			// guest may log in from the bridge, which is not loopback.
			"AMQP_SECURITY_LOOPBACKUSERS=none",
			"AMQP_CLUSTER_NAME=netns", "AMQP_CLUSTER_NODENAME="+cn.name,
			"AMQP_CLUSTER_ADDRESS="+net.JoinHostPort(nd.Addr, "25672"), "AMQP_CLUSTER_PEERS="+peers)
		cn.env = append(cn.env, extra...)
		nodes = append(nodes, cn)
	}
	for _, cn := range nodes {
		cn.start(t, n)
	}
	t.Cleanup(func() {
		for _, cn := range nodes {
			cn.kill()
		}
		if t.Failed() {
			for _, cn := range nodes {
				t.Logf("%s's log:\n%s", cn.name, cn.logs)
			}
		}
	})
	return nodes
}

func (cn *clusterNode) start(t *testing.T, n *netnstest.Net) {
	t.Helper()
	if cn.logs == nil {
		cn.logs = &servertest.LogBuffer{}
	}
	cn.cmd = n.Command(cn.i, servertest.Binary(t), "run")
	cn.cmd.Env = cn.env
	cn.cmd.Stdout, cn.cmd.Stderr = cn.logs, cn.logs
	cn.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cn.cmd.Start(); err != nil {
		t.Fatal(err)
	}
}

// kill kills the process with SIGKILL (a crash) and reaps it.
func (cn *clusterNode) kill() {
	if cn.cmd == nil {
		return
	}
	_ = cn.cmd.Process.Kill()
	_ = cn.cmd.Wait()
	cn.cmd = nil
}

var apiClient = &http.Client{Timeout: time.Second}

// status is the node's GET /api/cluster-status.
func (cn *clusterNode) status() (cluster.Status, error) {
	resp, err := cn.call(http.MethodGet, "/cluster-status", "")

	if err != nil {
		return cluster.Status{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return cluster.Status{}, fmt.Errorf("%s", resp.Status)
	}
	var st cluster.Status
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// call sends an API request as guest, body (JSON) if not empty.
func (cn *clusterNode) call(method, path, body string) (*http.Response, error) {
	req, err := http.NewRequest(method, cn.api+path, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.SetBasicAuth("guest", "guest")
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	return membershipClient.Do(req)
}

// change sends a membership change and wants 204.
func (cn *clusterNode) change(t *testing.T, method, path, body string) {
	t.Helper()
	resp, err := cn.call(method, path, body)
	if err != nil {
		t.Fatalf("%s %s on %s: %v", method, path, cn.name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("%s %s on %s: %s %s", method, path, cn.name, resp.Status, b)
	}
}

// membershipClient waits for a membership change (the API's bound is 15 s).
var membershipClient = &http.Client{Timeout: 20 * time.Second}

// agreement is what a set of nodes agree on.
type agreement struct {
	leader string
	term   uint64
}

// agree returns the leader and term that all of nodes report, each
// reaching every other of nodes, or why they do not agree.
// With exact, each must also have exactly nodes as members.
func agree(nodes []*clusterNode, exact bool) (agreement, string) {
	var a agreement
	in := map[string]bool{}
	for _, cn := range nodes {
		in[cn.name] = true
	}
	for k, cn := range nodes {
		st, err := cn.status()
		if err != nil {
			return a, fmt.Sprintf("%s: %v", cn.name, err)
		}
		if st.Metadata.Leader == "" {
			return a, cn.name + " has no leader"
		}
		if k == 0 {
			a = agreement{st.Metadata.Leader, st.Metadata.Term}
		} else if a != (agreement{st.Metadata.Leader, st.Metadata.Term}) {
			return a, fmt.Sprintf("%s sees leader %s in term %d, %s sees %s in term %d",
				nodes[0].name, a.leader, a.term, cn.name, st.Metadata.Leader, st.Metadata.Term)
		}
		for _, m := range st.Members {
			if in[m.Name] && !m.Reachable {
				return a, fmt.Sprintf("%s does not reach %s", cn.name, m.Name)
			}
		}
		if exact {
			var names []string
			for _, m := range st.Members {
				names = append(names, m.Name)
			}
			if len(names) != len(nodes) || !st.Member || !allIn(names, in) {
				return a, fmt.Sprintf("%s has members %v (a member itself: %v), want exactly the nodes asked", cn.name, names, st.Member)
			}
		}
	}
	if !in[a.leader] {
		return a, "the leader " + a.leader + " is not among the nodes asked"
	}
	return a, ""
}

// waitAgree polls nodes until they agree on a leader (not one of not)
// or the deadline passes.
func waitAgree(t *testing.T, nodes []*clusterNode, within time.Duration, what string) agreement {
	t.Helper()
	return waitAgreement(t, nodes, within, what, false)
}

func waitAgreement(t *testing.T, nodes []*clusterNode, within time.Duration, what string, exact bool) agreement {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		a, why := agree(nodes, exact)
		if why == "" {
			return a
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no agreement after %v: %s", what, within, why)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitNodes polls cn's GET /api/nodes until it lists exactly the nodes
// of want, each running as want says.
func waitNodes(t *testing.T, cn *clusterNode, want map[string]bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := map[string]bool{}
		var items []map[string]any
		req, err := http.NewRequest(http.MethodGet, cn.api+"/nodes", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.SetBasicAuth("guest", "guest")
		if resp, err := apiClient.Do(req); err == nil {
			_ = json.NewDecoder(resp.Body).Decode(&items)
			resp.Body.Close()
		}
		for _, it := range items {
			name, _ := it["name"].(string)
			got[name], _ = it["running"].(bool)
		}
		if maps.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s's /api/nodes: running %v, want %v", cn.name, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func allIn(names []string, in map[string]bool) bool {
	for _, n := range names {
		if !in[n] {
			return false
		}
	}
	return true
}

func without(nodes []*clusterNode, name string) []*clusterNode {
	var out []*clusterNode
	for _, cn := range nodes {
		if cn.name != name {
			out = append(out, cn)
		}
	}
	return out
}

func byName(nodes []*clusterNode, name string) *clusterNode {
	for _, cn := range nodes {
		if cn.name == name {
			return cn
		}
	}
	return nil
}

// TestClusterAcrossNamespaces runs three amqp-server processes, one per
// namespace, as a cluster: they elect a metadata leader; a kill -9 of the
// leader gives a new one within 5 s (the election timeout is 10 to 20
// ticks of 100 ms: 1 to 2 s); the killed node restarts from its raft log
// and rejoins; a cut follower leaves the other two with their leader; on
// the heal all three agree again, on the same leader and term.
func TestClusterAcrossNamespaces(t *testing.T) {
	n := netnstest.New(t, 3)
	nodes := startClusterNodes(t, n)
	start := time.Now()
	a := waitAgree(t, nodes, 15*time.Second, "formation")
	t.Logf("formed: leader %s, term %d, after %v", a.leader, a.term, time.Since(start).Round(time.Millisecond))

	// Kill -9 the leader.
	dead := byName(nodes, a.leader)
	dead.kill()
	start = time.Now()
	rest := without(nodes, dead.name)
	b := waitAgree(t, rest, 5*time.Second, "after killing the leader "+dead.name)
	t.Logf("killed %s: %s leads in term %d after %v", dead.name, b.leader, b.term, time.Since(start).Round(time.Millisecond))
	waitNodes(t, rest[0], map[string]bool{dead.name: false, rest[0].name: true, rest[1].name: true})

	// Restart it: it rejoins from its log, as a follower of the new leader.
	dead.start(t, n)
	start = time.Now()
	c := waitAgree(t, nodes, 15*time.Second, "after restarting "+dead.name)
	t.Logf("%s rejoined after %v: %s leads in term %d", dead.name, time.Since(start).Round(time.Millisecond), c.leader, c.term)

	// Cut a follower's link: the other two keep their leader, through
	// more than an election timeout, until they see the follower gone.
	var cut *clusterNode
	for _, cn := range nodes {
		if cn.name != c.leader {
			cut = cn
		}
	}
	n.Cut(cut.i)
	rest = without(nodes, cut.name)
	start = time.Now()
	for {
		a, why := agree(rest, false)
		if why != "" || a != c {
			t.Fatalf("%s cut: the others lost their leader after %v: %s (leader %s, term %d; was %s, %d)",
				cut.name, time.Since(start), why, a.leader, a.term, c.leader, c.term)
		}
		st, err := byName(rest, c.leader).status()
		if err != nil {
			t.Fatal(err)
		}
		gone := false
		for _, m := range st.Members {
			gone = gone || m.Name == cut.name && !m.Reachable
		}
		if gone && time.Since(start) > 2500*time.Millisecond {
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("%s cut: the leader still reports it reachable after 10s", cut.name)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("%s cut: %s kept leading in term %d for %v", cut.name, c.leader, c.term, time.Since(start).Round(time.Millisecond))

	// Heal: all three agree again, on the same leader and term (with
	// PreVote, the cut follower's failed elections did not raise it).
	n.Heal(cut.i)
	start = time.Now()
	d := waitAgree(t, nodes, 10*time.Second, "after healing "+cut.name)
	if d != c {
		t.Errorf("after the heal: leader %s in term %d, want %s in term %d", d.leader, d.term, c.leader, c.term)
	}
	t.Logf("healed %s: all agree after %v", cut.name, time.Since(start).Round(time.Millisecond))
}

// TestClusterMembershipAcrossNamespaces is the formation test
// for membership: three amqp-server processes in three namespaces form a
// cluster; a fourth, started with cluster.join and the three as its
// peers, is added through a follower's API (what ctl cluster join does);
// all four agree on the leader and term, each with all four as members;
// the fourth leaves (ctl cluster leave: a DELETE on its own API) and
// the other three agree, with the three as members.
func TestClusterMembershipAcrossNamespaces(t *testing.T) {
	n := netnstest.New(t, 4)
	first := n.Nodes[:3]
	nodes := startNodes(t, n, first, peersOf(first))
	start := time.Now()
	a := waitExact(t, nodes, 15*time.Second, "formation")
	t.Logf("three formed: leader %s, term %d, after %v", a.leader, a.term, time.Since(start).Round(time.Millisecond))

	joiner := startNodes(t, n, n.Nodes[3:], peersOf(first), "AMQP_CLUSTER_JOIN=true")[0]
	all := append(slices.Clone(nodes), joiner)
	var via *clusterNode
	for _, cn := range nodes {
		if cn.name != a.leader {
			via = cn
		}
	}
	start = time.Now()
	deadline := time.Now().Add(10 * time.Second)
	for { // the joiner's API comes up while we wait
		if st, err := joiner.status(); err == nil && !st.Member {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("%s before it is added: %+v, %v", joiner.name, st, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	via.change(t, http.MethodPost, "/cluster-members",
		fmt.Sprintf(`{"name":%q,"address":%q}`, joiner.name, net.JoinHostPort(n.Nodes[3].Addr, "25672")))
	b := waitExact(t, all, 10*time.Second, "after "+joiner.name+" joined")
	t.Logf("%s joined through %s: all four agree on %s in term %d after %v", joiner.name, via.name, b.leader, b.term, time.Since(start).Round(time.Millisecond))

	start = time.Now()
	joiner.change(t, http.MethodDelete, "/cluster-members/"+joiner.name, "")
	c := waitExact(t, nodes, 10*time.Second, "after "+joiner.name+" left")
	t.Logf("%s left: the three agree on %s in term %d after %v", joiner.name, c.leader, c.term, time.Since(start).Round(time.Millisecond))
}

// waitExact is waitAgree with each node having exactly nodes as members.
func waitExact(t *testing.T, nodes []*clusterNode, within time.Duration, what string) agreement {
	t.Helper()
	return waitAgreement(t, nodes, within, what, true)
}
