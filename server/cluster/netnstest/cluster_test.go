package netnstest_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/amqp-go/amqp-go/server/cluster"
	"github.com/amqp-go/amqp-go/server/cluster/netnstest"
	"github.com/amqp-go/amqp-go/server/servertest"
	"github.com/amqp-go/amqp-go/server/tlsconf/tlstest"
	amqp091 "github.com/rabbitmq/amqp091-go"
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

// stop stops the process with SIGTERM (a graceful shutdown) and reaps
// it, killing it if it has not exited within 20 s.
func (cn *clusterNode) stop(t *testing.T) {
	t.Helper()
	if cn.cmd == nil {
		return
	}
	_ = cn.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cn.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = cn.cmd.Process.Kill()
		<-done
		t.Errorf("%s did not stop within 20s of SIGTERM", cn.name)
	}
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
// the fourth has a user made before it joined, and one made through it
// reaches the others;
// the fourth leaves (ctl cluster leave: a DELETE on its own API) and
// the other three agree, with the three as members.
func TestClusterMembershipAcrossNamespaces(t *testing.T) {
	n := netnstest.New(t, 4)
	first := n.Nodes[:3]
	nodes := startNodes(t, n, first, peersOf(first))
	start := time.Now()
	a := waitExact(t, nodes, 15*time.Second, "formation")
	t.Logf("three formed: leader %s, term %d, after %v", a.leader, a.term, time.Since(start).Round(time.Millisecond))

	// A definition made before the fourth joins: it must have it after.
	nodes[0].api2xx(t, http.MethodPut, "/users/early", `{"password":"e4rly","tags":""}`)
	nodes[0].api2xx(t, http.MethodPut, "/permissions/%2F/early", `{"configure":".*","write":".*","read":".*"}`)

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
	early := waitDial(t, joiner.amqpURL(n, "early", "e4rly", "/"), 10*time.Second, "a user made before "+joiner.name+" joined, logging in on it")
	early.Close()
	// And one made through the new member reaches the others.
	joiner.api2xx(t, http.MethodPut, "/users/late", `{"password":"l4te","tags":""}`)
	joiner.api2xx(t, http.MethodPut, "/permissions/%2F/late", `{"configure":".*","write":".*","read":".*"}`)
	late := waitDial(t, nodes[0].amqpURL(n, "late", "l4te", "/"), 5*time.Second, "a user made on "+joiner.name+", logging in on "+nodes[0].name)
	late.Close()

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

// api sends an API request to cn and wants a 2xx status.
func (cn *clusterNode) api2xx(t *testing.T, method, path, body string) {
	t.Helper()
	resp, err := cn.call(method, path, body)
	if err != nil {
		t.Fatalf("%s %s on %s: %v", method, path, cn.name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("%s %s on %s: %s %s", method, path, cn.name, resp.Status, b)
	}
}

// amqpURL is cn's AMQP URL for user:password and vhost (escaped).
func (cn *clusterNode) amqpURL(n *netnstest.Net, user, password, vhost string) string {
	i := slices.IndexFunc(n.Nodes, func(nd netnstest.Node) bool { return nd.Index == cn.i })
	return fmt.Sprintf("amqp://%s:%s@%s/%s", user, password, net.JoinHostPort(n.Nodes[i].Addr, "5672"), url.PathEscape(vhost))
}

// waitDial dials url until it connects, failing after within.
func waitDial(t *testing.T, url string, within time.Duration, what string) *amqp091.Connection {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		c, err := amqp091.Dial(url)
		if err == nil {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v after %v", what, err, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// channelOn opens a connection to url and a channel on it; the caller
// closes the connection.
func channelOn(t *testing.T, url string) (*amqp091.Connection, *amqp091.Channel) {
	t.Helper()
	c, err := amqp091.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	ch, err := c.Channel()
	if err != nil {
		c.Close()
		t.Fatal(err)
	}
	return c, ch
}

// passiveExchange reports whether exchange name exists in / on the node
// at url (a passive declare on a channel of its own).
func passiveExchange(t *testing.T, url, name string) bool {
	t.Helper()
	c, ch := channelOn(t, url)
	defer c.Close()
	err := ch.ExchangeDeclarePassive(name, "topic", true, false, false, false, nil)
	var ae *amqp091.Error
	if err != nil && (!errors.As(err, &ae) || ae.Code != amqp091.NotFound) {
		t.Fatalf("passive declare of %s: %v", name, err)
	}
	return err == nil
}

// waitExchange waits until exchange name exists (or, with gone, does not)
// on the node at url.
func waitExchange(t *testing.T, url, name string, exists bool, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for passiveExchange(t, url, name) != exists {
		if time.Now().After(deadline) {
			t.Fatalf("%s: exchange %s exists %v after 5s, want %v", what, name, !exists, exists)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitRoutes waits until a mandatory publish to exchange with key, on
// the node at url, reaches (or, with routed false, is returned unroutable
// from) a queue of its own bound to dest.
func waitRoutes(t *testing.T, url, exchange, key, dest string, routed bool, what string) {
	t.Helper()
	c, ch := channelOn(t, url)
	defer c.Close()
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(q.Name, "", dest, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	returns := ch.NotifyReturn(make(chan amqp091.Return, 100))
	deadline := time.Now().Add(5 * time.Second)
	for {
		dc, err := ch.PublishWithDeferredConfirm(exchange, key, true, false, amqp091.Publishing{Body: []byte("routed?")})
		if err != nil {
			t.Fatal(err)
		}
		if !dc.Wait() {
			t.Fatal("publish nacked")
		}
		returned := false // a return comes before the confirm
		for len(returns) > 0 {
			<-returns
			returned = true
		}
		if !returned == routed {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: a publish to %s with key %s routed %v after 5s, want %v", what, exchange, key, !returned, routed)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestClusterDefinitionsAcrossNamespaces is the issue's "a definition
// made on one node is visible on all", across three amqp-server processes
// in three namespaces: a vhost, a user and a permission made through one
// node's API let the user log in on another; an exchange declared over
// AMQP on one node exists on the others, and an inequivalent declaration
// on a third gets RabbitMQ's 406; a binding between two exchanges made on
// one node routes on another, until it is removed on a third; deleting
// the user on one node closes
// its connection on another (320); a node killed with kill -9 learns on
// restart what changed while it was down; a cut node's change fails, the
// majority's goes on, and after the heal the cut node has it.
func TestClusterDefinitionsAcrossNamespaces(t *testing.T) {
	n := netnstest.New(t, 3)
	// The API on every address: a cut node's is reached from inside its
	// namespace, on 127.0.0.1.
	nodes := startNodes(t, n, n.Nodes, peersOf(n.Nodes), "AMQP_MANAGEMENT_ADDRESS=0.0.0.0")
	a := waitAgree(t, nodes, 15*time.Second, "formation")
	t.Logf("formed: leader %s, term %d", a.leader, a.term)
	n0, n1, n2 := nodes[0], nodes[1], nodes[2]

	start := time.Now()
	n0.api2xx(t, http.MethodPut, "/vhosts/v1", "")
	n0.api2xx(t, http.MethodPut, "/users/alice", `{"password":"s3cret","tags":"administrator"}`)
	n0.api2xx(t, http.MethodPut, "/permissions/v1/alice", `{"configure":".*","write":".*","read":".*"}`)
	alice := waitDial(t, n2.amqpURL(n, "alice", "s3cret", "v1"), 5*time.Second, "alice logging in on "+n2.name)
	t.Logf("vhost, user and permission made on %s; alice logs in on %s after %v", n0.name, n2.name, time.Since(start).Round(time.Millisecond))

	guest1 := n1.amqpURL(n, "guest", "guest", "/")
	c1 := waitDial(t, guest1, time.Second, "guest on "+n1.name)
	defer c1.Close()
	ch1, err := c1.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch1.ExchangeDeclare("ex.replicated", "topic", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	guest0, guest2 := n0.amqpURL(n, "guest", "guest", "/"), n2.amqpURL(n, "guest", "guest", "/")
	waitExchange(t, guest2, "ex.replicated", true, "declared on "+n1.name+", seen on "+n2.name)
	c0 := waitDial(t, guest0, time.Second, "guest on "+n0.name)
	defer c0.Close()
	ch0, err := c0.Channel()
	if err != nil {
		t.Fatal(err)
	}
	err = ch0.ExchangeDeclare("ex.replicated", "fanout", true, false, false, false, nil)
	want := "PRECONDITION_FAILED - inequivalent arg 'type' for exchange 'ex.replicated' in vhost '/': received 'fanout' but current is 'topic'"
	var ae *amqp091.Error
	if !errors.As(err, &ae) || ae.Code != amqp091.PreconditionFailed || ae.Reason != want {
		t.Fatalf("an inequivalent declaration on %s: %v, want 406 %q", n0.name, err, want)
	}

	// A binding between two exchanges, made on one node, routes on
	// another; removed on a third, it routes there no more.
	if err := ch1.ExchangeDeclare("ex.dest", "fanout", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch1.ExchangeBind("ex.dest", "k.#", "ex.replicated", false, nil); err != nil {
		t.Fatal(err)
	}
	waitRoutes(t, guest2, "ex.replicated", "k.x", "ex.dest", true, "bound on "+n1.name+", routing on "+n2.name)
	ch0, err = c0.Channel() // the 406 closed the first
	if err != nil {
		t.Fatal(err)
	}
	if err := ch0.ExchangeUnbind("ex.dest", "k.#", "ex.replicated", false, nil); err != nil {
		t.Fatal(err)
	}
	waitRoutes(t, guest2, "ex.replicated", "k.x", "ex.dest", false, "unbound on "+n0.name+", not routing on "+n2.name)

	// A quorum queue declared on one node is on every node.
	_, qch := channelOn(t, guest0)
	if _, err = qch.QueueDeclare("qq", true, false, false, false, amqp091.Table{"x-queue-type": "quorum"}); err != nil {
		t.Fatalf("a quorum queue declared in a cluster: %v", err)
	}
	_, qch2 := channelOn(t, guest2)
	if _, err = qch2.QueueDeclarePassive("qq", true, false, false, false, amqp091.Table{"x-queue-type": "quorum"}); err != nil {
		t.Fatalf("the quorum queue declared on %s, on %s: %v", n0.name, n2.name, err)
	}

	closed := alice.NotifyClose(make(chan *amqp091.Error, 1))
	n1.api2xx(t, http.MethodDelete, "/users/alice", "")
	select {
	case e := <-closed:
		if e == nil || e.Code != amqp091.ConnectionForced || e.Reason != "CONNECTION_FORCED - user 'alice' is deleted" {
			t.Fatalf("alice's connection on %s closed with %v", n2.name, e)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("alice, deleted on %s, still connected to %s after 5s", n1.name, n2.name)
	}

	ch2 := waitDial(t, guest2, time.Second, "guest on "+n2.name)
	defer ch2.Close()
	ch, err := ch2.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.ExchangeDelete("ex.replicated", false, false); err != nil {
		t.Fatal(err)
	}
	waitExchange(t, guest0, "ex.replicated", false, "deleted on "+n2.name+", gone from "+n0.name)

	// kill -9 a node; a user made meanwhile is there once it restarts.
	n2.kill()
	n0.api2xx(t, http.MethodPut, "/users/bob", `{"password":"b0b","tags":""}`)
	n0.api2xx(t, http.MethodPut, "/permissions/%2F/bob", `{"configure":".*","write":".*","read":".*"}`)
	n2.start(t, n)
	start = time.Now()
	bob := waitDial(t, n2.amqpURL(n, "bob", "b0b", "/"), 15*time.Second, "bob logging in on the restarted "+n2.name)
	bob.Close()
	t.Logf("%s, restarted, has bob after %v", n2.name, time.Since(start).Round(time.Millisecond))

	// Cut a node: its change fails; the majority's goes on and reaches
	// it after the heal.
	waitAgree(t, nodes, 15*time.Second, "before the cut")
	n.Cut(n2.i)
	start = time.Now()
	out, err := n.Command(n2.i, servertest.Binary(t), "ctl", "--url", "http://127.0.0.1:15672", "--timeout", "30s",
		"add-user", "dave", "d").CombinedOutput()
	if err == nil || !bytes.Contains(out, []byte("503 service_unavailable")) {
		t.Fatalf("a user made on the cut %s: %v, %s; want a 503 failure", n2.name, err, out)
	}
	t.Logf("the cut %s refused a change after %v: %s", n2.name, time.Since(start).Round(time.Millisecond), bytes.TrimSpace(out))
	n0.api2xx(t, http.MethodPut, "/users/carol", `{"password":"c4rol","tags":""}`)
	n0.api2xx(t, http.MethodPut, "/permissions/%2F/carol", `{"configure":".*","write":".*","read":".*"}`)
	n.Heal(n2.i)
	start = time.Now()
	carol := waitDial(t, n2.amqpURL(n, "carol", "c4rol", "/"), 15*time.Second, "carol logging in on the healed "+n2.name)
	carol.Close()
	t.Logf("healed %s has carol after %v", n2.name, time.Since(start).Round(time.Millisecond))
	for _, cn := range nodes {
		if c, err := amqp091.Dial(cn.amqpURL(n, "dave", "d", "/")); err == nil {
			c.Close()
			t.Fatalf("dave, refused on the cut node, logs in on %s", cn.name)
		}
	}
}

// TestClusterTLSAcrossNamespaces: three amqp-server processes in three
// namespaces with inter-node TLS (cluster.tls*), the third's certificate
// signed by another CA: the first two form a cluster over TLS; the third
// is refused at the TLS handshake, by both of them, and never reached.
func TestClusterTLSAcrossNamespaces(t *testing.T) {
	n := netnstest.New(t, 3)
	dir := t.TempDir()
	ca, other := tlstest.NewCA(t, dir, "cluster"), tlstest.NewCA(t, dir, "other")
	var nodes []*clusterNode
	for i, nd := range n.Nodes {
		signer := ca
		if i == 2 {
			signer = other
		}
		is := signer.Peer(fmt.Sprintf("amqp%d", nd.Index))
		nodes = append(nodes, startNodes(t, n, n.Nodes[i:i+1], peersOf(n.Nodes),
			"AMQP_CLUSTER_TLSCERTFILE="+is.CertFile, "AMQP_CLUSTER_TLSKEYFILE="+is.KeyFile, "AMQP_CLUSTER_TLSCAFILE="+ca.CAFile)...)
	}
	pair, stranger := nodes[:2], nodes[2]
	deadline := time.Now().Add(15 * time.Second)
	for {
		a, why := agree(pair, false)
		reached := false
		for _, cn := range pair {
			if st, err := cn.status(); err == nil {
				for _, m := range st.Members {
					reached = reached || m.Name == stranger.name && m.Reachable
				}
			}
		}
		if reached {
			t.Fatalf("%s, whose certificate another CA signed, is reachable", stranger.name)
		}
		if why == "" && a.leader != "" && pair[0].logs.Contains("TLS handshake") && pair[1].logs.Contains("TLS handshake") {
			for _, line := range strings.Split(pair[0].logs.String(), "\n") {
				if strings.Contains(line, "TLS handshake") {
					t.Logf("%s: %s", pair[0].name, line)
					break
				}
			}
			t.Logf("%s and %s formed over TLS (leader %s, term %d); %s refused", pair[0].name, pair[1].name, a.leader, a.term, stranger.name)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 15s: %q (leader %q), TLS refusals logged: %v %v", why, a.leader,
				pair[0].logs.Contains("TLS handshake"), pair[1].logs.Contains("TLS handshake"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestClusterRollingRestartAcrossNamespaces: three amqp-server processes
// in three namespaces, each stopped (SIGTERM) and started again in turn,
// waiting for it to rejoin before the next, while a client keeps making
// users through whichever other node it reaches, retrying a change that
// fails. A stopping leader hands its leadership over, so no change waits
// for an election (none takes 2 s); every user a node acknowledged is on
// every node at the end.
func TestClusterRollingRestartAcrossNamespaces(t *testing.T) {
	n := netnstest.New(t, 3)
	nodes := startClusterNodes(t, n)
	waitAgree(t, nodes, 15*time.Second, "formation")

	var mu sync.Mutex
	var made []string
	restarting := ""
	stop := make(chan struct{})
	var longest time.Duration
	loopDone := make(chan struct{})
	go func() {
		defer close(loopDone)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			name := fmt.Sprintf("rolling-%d", i)
			start := time.Now()
			for try := 0; ; try++ {
				mu.Lock()
				skip := restarting
				mu.Unlock()
				cn := nodes[(i+try)%len(nodes)]
				if cn.name == skip {
					continue
				}
				resp, err := cn.call(http.MethodPut, "/users/"+name, `{"password":"p","tags":""}`)
				if err == nil {
					resp.Body.Close()
					if resp.StatusCode/100 == 2 {
						break
					}
				}
				select {
				case <-stop:
					return
				case <-time.After(100 * time.Millisecond):
				}
			}
			mu.Lock()
			made = append(made, name)
			longest = max(longest, time.Since(start))
			mu.Unlock()
		}
	}()
	for _, cn := range nodes {
		mu.Lock()
		restarting = cn.name
		mu.Unlock()
		start := time.Now()
		cn.stop(t)
		stopped := time.Since(start)
		cn.start(t, n)
		a := waitAgree(t, nodes, 20*time.Second, "after restarting "+cn.name)
		t.Logf("%s stopped in %v, restarted and rejoined in %v: %s leads in term %d", cn.name, stopped.Round(time.Millisecond),
			time.Since(start).Round(time.Millisecond), a.leader, a.term)
		mu.Lock()
		restarting = ""
		mu.Unlock()
	}
	close(stop)
	<-loopDone
	mu.Lock()
	defer mu.Unlock()
	if len(made) < 10 {
		t.Fatalf("only %d users made during the rolling restart", len(made))
	}
	if longest > 2*time.Second {
		// A stopping leader hands its leadership over (Service.HandOver),
		// and a change in flight is proposed again to the new one at once.
		t.Errorf("a change took %v to go through: a restart was not a hand-over", longest)
	}
	for _, cn := range nodes {
		deadline := time.Now().Add(10 * time.Second)
		for {
			missing := ""
			for _, name := range made {
				resp, err := cn.call(http.MethodGet, "/users/"+name, "")
				if err != nil || resp.StatusCode != http.StatusOK {
					missing = name
				}
				if err == nil {
					resp.Body.Close()
				}
				if missing != "" {
					break
				}
			}
			if missing == "" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s has no user %s, which a node acknowledged", cn.name, missing)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	t.Logf("%d users made through the rolling restart, the slowest in %v; all on every node", len(made), longest.Round(time.Millisecond))
}
