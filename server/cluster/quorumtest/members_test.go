package quorumtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/amqp-go/amqp-go/server/management"
	amqp "github.com/rabbitmq/amqp091-go"
)

// api calls nd's management API as user (password: the name; guest's is
// guest) and returns the status and body.
func api(t *testing.T, nd *node, user, method, path string, body any) (int, string) {
	t.Helper()
	h := management.New(management.Options{Server: nd.srv, Node: nd.name, Cluster: nd.cl.Status})
	defer h.Close()
	var b []byte
	if body != nil {
		var err error
		if b, err = json.Marshal(body); err != nil {
			t.Fatal(err)
		}
	}
	req := httptest.NewRequest(method, path, bytes.NewReader(b))
	req.RemoteAddr = "127.0.0.1:40000"
	req.SetBasicAuth(user, user)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w.Code, w.Body.String()
}

// groupOf is queue's group's members on nd, by node name.
func groupOf(t *testing.T, nd *node, nodes []*node, queue string) []string {
	t.Helper()
	q := nd.srv.VHost("/").Queue(queue)
	if q == nil {
		return nil
	}
	_, ids, _ := q.QuorumGroup()
	var names []string
	for _, id := range ids {
		for _, o := range nodes {
			if o.self.ID == id {
				names = append(names, o.name)
			}
		}
	}
	slices.Sort(names)
	return names
}

// waitGroup waits until queue's group is want on every node of in, then
// checks that it stays so for hold (several rounds of the leaders' watch,
// which must not undo a shape made by hand).
func waitGroup(t *testing.T, in, nodes []*node, queue string, want []string, hold time.Duration) {
	t.Helper()
	slices.Sort(want)
	for _, nd := range in {
		waitFor(t, 15*time.Second, fmt.Sprintf("%s's group on %s", queue, nd.name), func() error {
			if got := groupOf(t, nd, nodes, queue); !slices.Equal(got, want) {
				return fmt.Errorf("members %v, want %v", got, want)
			}
			return nil
		})
	}
	for end := time.Now().Add(hold); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		for _, nd := range in {
			if got := groupOf(t, nd, nodes, queue); !slices.Equal(got, want) {
				t.Fatalf("%s: %s's group became %v, want %v to stay", nd.name, queue, got, want)
			}
		}
	}
}

// declareSized declares quorum queue name with x-quorum-initial-group-size
// size on nd and waits until every member has it.
func declareSized(t *testing.T, nodes []*node, nd *node, name string, size int) {
	t.Helper()
	args := amqp.Table{"x-queue-type": "quorum", "x-quorum-initial-group-size": int32(size)}
	waitFor(t, 15*time.Second, "declare "+name, func() error {
		_, ch := dial(t, nd.url)
		_, err := ch.QueueDeclare(name, true, false, false, false, args)
		return err
	})
	for _, o := range nodes {
		waitFor(t, 10*time.Second, name+" on "+o.name, func() error {
			if len(groupOf(t, o, nodes, name)) != size {
				return fmt.Errorf("group %v", groupOf(t, o, nodes, name))
			}
			return nil
		})
	}
}

// without is names but name.
func without(names []string, name string) []string {
	return slices.DeleteFunc(slices.Clone(names), func(n string) bool { return n == name })
}

// On four members, a queue of group size 3 is shaped by hand as
// RabbitMQ's rabbitmq-queues add_member and delete_member shape it,
// through the management API: the fourth node added, the group is four
// and stays four (the leaders' watch does not undo it), and it serves
// the messages confirmed before as a member; a member deleted (the
// leader, then others) is not added back; the last one is refused; and
// the refusals have RabbitMQ's status codes.
func TestQuorumQueueMembers(t *testing.T) {
	nodes := startCluster(t, 4)
	declareSized(t, nodes, nodes[0], "qm", 3)
	group := groupOf(t, nodes[0], nodes, "qm")
	var outside *node
	for _, nd := range nodes {
		if !slices.Contains(group, nd.name) {
			outside = nd
		}
	}
	acked := publishConfirmed(t, nodes[1].url, "qm", 0, 50)
	if len(acked) != 50 {
		t.Fatalf("%d of 50 confirmed", len(acked))
	}

	// Asked of a member outside the group.
	path := "/api/queues/quorum/%2F/qm/replicas/"
	if code, body := api(t, outside, "guest", "POST", path+"add", map[string]string{"node": outside.name}); code != 204 {
		t.Fatalf("add %s: %d %s", outside.name, code, body)
	}
	all := append(slices.Clone(group), outside.name)
	waitGroup(t, nodes, nodes, "qm", all, 3*time.Second)
	if code, body := api(t, nodes[0], "guest", "POST", path+"add", map[string]string{"node": outside.name}); code != 204 {
		t.Fatalf("add %s again (no change): %d %s", outside.name, code, body)
	}
	_, ch := dial(t, outside.url)
	consumeInOrder(t, ch, "qm", acked, "the added member")
	ch.Close()
	if st := queueState(t, outside, "qm"); len(st["members"].([]any)) != 4 {
		t.Fatalf("/api/queues on %s: members %v", outside.name, st["members"])
	}

	// The leader deleted, asked of another member: the group is three
	// again, for good.
	lead := leaderOf(t, nodes, "qm")
	var asked *node
	for _, nd := range nodes {
		if nd != lead {
			asked = nd
		}
	}
	if code, body := api(t, asked, "guest", "DELETE", path+"delete", map[string]string{"node": lead.name}); code != 202 {
		t.Fatalf("delete %s: %d %s", lead.name, code, body)
	}
	all = without(all, lead.name)
	waitGroup(t, slices.DeleteFunc(slices.Clone(nodes), func(nd *node) bool { return nd == lead }), nodes, "qm", all, 3*time.Second)
	acked = publishConfirmed(t, lead.url, "qm", 50, 20) // forwarded by the deleted member
	if len(acked) != 20 {
		t.Fatalf("%d of 20 confirmed through the deleted member", len(acked))
	}
	// Down to one, then the last is refused.
	for len(all) > 1 {
		gone := all[len(all)-1]
		if code, body := api(t, nodes[0], "guest", "DELETE", path+"delete", map[string]string{"node": gone}); code != 202 {
			t.Fatalf("delete %s: %d %s", gone, code, body)
		}
		all = all[:len(all)-1]
		waitGroup(t, nodes, nodes, "qm", all, 0)
	}
	if code, body := api(t, nodes[0], "guest", "DELETE", path+"delete", map[string]string{"node": all[0]}); code != 503 || !strings.Contains(body, "cannot be removed") {
		t.Fatalf("delete the last member %s: %d %s", all[0], code, body)
	}
	waitGroup(t, nodes, nodes, "qm", all, 2*time.Second)
	_, ch = dial(t, nodes[3].url)
	consumeInOrder(t, ch, "qm", acked, "a node, with one member left")

	// Refusals, as RabbitMQ's management API answers them.
	_, ch = dial(t, nodes[0].url)
	if _, err := ch.QueueDeclare("cq", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	for _, nd := range nodes {
		waitFor(t, 10*time.Second, "cq on "+nd.name, func() error { _, _, err := passive(nd.url, "cq"); return err })
	}
	if code, body := api(t, nodes[0], "guest", "PUT", "/api/users/bob", map[string]string{"password": "bob", "tags": "management"}); code/100 != 2 {
		t.Fatalf("PUT user bob: %d %s", code, body)
	}
	waitFor(t, 10*time.Second, "bob on "+nodes[2].name, func() error {
		if code, _ := api(t, nodes[2], "bob", "GET", "/api/whoami", nil); code != 200 {
			return fmt.Errorf("GET /api/whoami as bob: %d", code)
		}
		return nil
	})
	grow := map[string]string{"vhost_pattern": ".*", "queue_pattern": ".*", "strategy": "all"}
	for _, c := range []struct {
		user, method, path string
		body               any
		code               int
		reason             string
	}{
		{"guest", "POST", "/api/queues/quorum/%2F/nope/replicas/add", map[string]string{"node": "amqp1"}, 404, "Not Found"},
		{"guest", "DELETE", "/api/queues/quorum/%2F/nope/replicas/delete", map[string]string{"node": "amqp1"}, 404, "Not Found"},
		{"guest", "POST", "/api/queues/quorum/%2F/cq/replicas/add", map[string]string{"node": "amqp2"}, 503, "is not a quorum queue"},
		{"guest", "POST", "/api/queues/quorum/%2F/qm/replicas/add", map[string]string{"node": "amqp9"}, 503, "is not a running member"},
		{"guest", "POST", "/api/queues/quorum/%2F/qm/replicas/add", map[string]string{}, 400, "node is needed"},
		{"guest", "GET", "/api/queues/quorum/%2F/qm/replicas/add", nil, 405, "Method Not Allowed"},
		{"guest", "POST", "/api/queues/quorum/replicas/on/amqp9/grow", grow, 404, "Not Found"},
		{"guest", "POST", "/api/queues/quorum/replicas/on/amqp2/grow", map[string]string{"strategy": "all"}, 400, "key_missing"},
		{"guest", "POST", "/api/queues/quorum/replicas/on/amqp2/grow", map[string]string{"vhost_pattern": ".*", "queue_pattern": ".*", "strategy": "odd"}, 400, "not recognised"},
		{"bob", "POST", "/api/queues/quorum/%2F/qm/replicas/add", map[string]string{"node": "amqp2"}, 401, "Not administrator user"},
		{"bob", "DELETE", "/api/queues/quorum/%2F/qm/replicas/delete", map[string]string{"node": "amqp2"}, 401, "Not administrator user"},
		{"bob", "POST", "/api/queues/quorum/replicas/on/amqp2/grow", grow, 401, "Not administrator user"},
		{"bob", "DELETE", "/api/queues/quorum/replicas/on/amqp2/shrink", nil, 401, "Not administrator user"},
	} {
		if code, body := api(t, nodes[1], c.user, c.method, c.path, c.body); code != c.code || !strings.Contains(body, c.reason) {
			t.Errorf("%s %s %s as %s: %d %s, want %d %q", c.method, c.path, c.body, c.user, code, body, c.code, c.reason)
		}
	}
}

// report is grow's or shrink's ?report=true answer, by queue.
func report(t *testing.T, nd *node, method, path string, body any) map[string]string {
	t.Helper()
	code, out := api(t, nd, "guest", method, path+"?report=true", body)
	var rows []struct {
		Name   string `json:"name"`
		Size   int    `json:"size"`
		Result string `json:"result"`
	}
	if code != 200 || json.Unmarshal([]byte(out), &rows) != nil {
		t.Fatalf("%s %s: %d %s", method, path, code, out)
	}
	got := map[string]string{}
	for _, r := range rows {
		got[r.Name] = fmt.Sprintf("%d %s", r.Size, r.Result)
	}
	return got
}

// Grow and shrink over several queues, as rabbitmq-queues grow and
// shrink: grow's even strategy adds a node only to groups of an even
// size, its patterns choose the queues; shrink removes a node from every
// group it is in but the one it is the last member of; the groups stay
// as shaped, and a queue whose leader was shrunk away goes on.
func TestQuorumQueueGrowShrink(t *testing.T) {
	nodes := startCluster(t, 3)
	sizes := map[string]int{"g1": 2, "g2": 2, "g3": 1}
	for _, name := range []string{"g1", "g2", "g3"} {
		declareSized(t, nodes, nodes[0], name, sizes[name])
	}
	groups := map[string][]string{}
	for name := range sizes {
		groups[name] = groupOf(t, nodes[0], nodes, name)
	}
	var x *node // outside g1's group
	for _, nd := range nodes {
		if !slices.Contains(groups["g1"], nd.name) {
			x = nd
		}
	}
	want := map[string]string{}
	for name, g := range groups {
		if !slices.Contains(g, x.name) && len(g)%2 == 0 {
			want[name] = fmt.Sprintf("%d ok", len(g)+1)
			groups[name] = append(slices.Clone(g), x.name)
		}
	}
	got := report(t, nodes[1], "POST", "/api/queues/quorum/replicas/on/"+x.name+"/grow",
		map[string]string{"vhost_pattern": "^/$", "queue_pattern": "^g", "strategy": "even"})
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("grow %s even: %v, want %v", x.name, got, want)
	}
	for name, g := range groups {
		waitGroup(t, nodes, nodes, name, g, 0)
	}

	// Every node into g1 and g2 (RabbitMQ's 204 without the report).
	for _, nd := range nodes {
		if code, body := api(t, nodes[2], "guest", "POST", "/api/queues/quorum/replicas/on/"+nd.name+"/grow",
			map[string]string{"vhost_pattern": ".*", "queue_pattern": "^g[12]$", "strategy": "all"}); code != 204 {
			t.Fatalf("grow %s all: %d %s", nd.name, code, body)
		}
	}
	all := []string{"amqp1", "amqp2", "amqp3"}
	waitGroup(t, nodes, nodes, "g1", all, 0)
	waitGroup(t, nodes, nodes, "g2", all, 0)

	// nodes[0] leads all three, and is g3's only member.
	got = report(t, nodes[2], "DELETE", "/api/queues/quorum/replicas/on/"+nodes[0].name+"/shrink", nil)
	want = map[string]string{"g1": "2 ok", "g2": "2 ok", "g3": "1 error: the last member of queue 'g3' in vhost '/' cannot be removed"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("shrink %s: %v, want %v", nodes[0].name, got, want)
	}
	rest := without(all, nodes[0].name)
	waitGroup(t, nodes, nodes, "g1", rest, 0)
	waitGroup(t, nodes, nodes, "g2", rest, 2*time.Second)
	waitGroup(t, nodes, nodes, "g3", []string{nodes[0].name}, 0)
	if code, body := api(t, nodes[1], "guest", "DELETE", "/api/queues/quorum/replicas/on/"+nodes[0].name+"/shrink", nil); code != 202 {
		t.Fatalf("shrink %s again: %d %s", nodes[0].name, code, body)
	}
	acked := publishConfirmed(t, nodes[0].url, "g1", 0, 20)
	if len(acked) != 20 {
		t.Fatalf("%d of 20 confirmed", len(acked))
	}
	_, ch := dial(t, nodes[1].url)
	consumeInOrder(t, ch, "g1", acked, nodes[1].name)
}

// A shape sticks across restarts, from the metadata log and from its
// snapshots: the member deleted from a group, restarted, serves the queue
// by forwarding and is not added back; a member of the group restarted
// comes back to the same group.
func TestQuorumQueueShapeRestarts(t *testing.T) {
	nodes := startCluster(t, 3, 16)
	declareSized(t, nodes, nodes[0], "qs", 3)
	out := nodes[2]
	if code, body := api(t, nodes[1], "guest", "DELETE", "/api/queues/quorum/%2F/qs/replicas/delete", map[string]string{"node": out.name}); code != 202 {
		t.Fatalf("delete %s: %d %s", out.name, code, body)
	}
	in := []string{nodes[0].name, nodes[1].name}
	waitGroup(t, nodes[:2], nodes, "qs", in, 0)
	// Enough metadata entries after the shape for every member to
	// snapshot the metadata past it.
	_, ch := dial(t, nodes[0].url)
	for i := range 40 {
		if err := ch.ExchangeDeclare(fmt.Sprintf("x%d", i), "fanout", true, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
	}
	acked := publishConfirmed(t, nodes[0].url, "qs", 0, 30)
	for _, nd := range []*node{out, nodes[1]} {
		nd.leave()
		if err := nd.srv.Close(); err != nil {
			t.Fatal(err)
		}
		nd.start(t, nil)
		waitFor(t, 15*time.Second, "qs on the restarted "+nd.name, func() error {
			n, _, err := passive(nd.url, "qs")
			if err == nil && n != len(acked) {
				err = fmt.Errorf("%d messages, want %d", n, len(acked))
			}
			return err
		})
		waitGroup(t, nodes[:2], nodes, "qs", in, 2*time.Second)
	}
	acked = append(acked, publishConfirmed(t, out.url, "qs", 30, 20)...)
	if len(acked) != 50 {
		t.Fatalf("%d of 50 confirmed", len(acked))
	}
	_, ch = dial(t, out.url)
	consumeInOrder(t, ch, "qs", acked, "the restarted member outside the group")
}

// Shape changes asked of two nodes at once, each computed from the same
// members, both take effect: two members added at once, then both
// deleted at once (before, the one applied last won, and the other's
// caller timed out waiting for its change).
func TestQuorumQueueConcurrentShapes(t *testing.T) {
	nodes := startCluster(t, 4)
	declareSized(t, nodes, nodes[0], "qs", 2)
	group := groupOf(t, nodes[0], nodes, "qs")
	var inside, outside []*node
	for _, nd := range nodes {
		if slices.Contains(group, nd.name) {
			inside = append(inside, nd)
		} else {
			outside = append(outside, nd)
		}
	}
	at := func(what string, f func(nd, member *node) error) {
		t.Helper()
		errs := make(chan error, 2)
		for i, o := range outside {
			asker := inside[i] // members, which wait until they see the change made
			go func() { errs <- f(asker, o) }()
		}
		for range 2 {
			if err := <-errs; err != nil {
				t.Fatalf("%s: %v", what, err)
			}
		}
	}
	at("add", func(nd, member *node) error {
		return nd.srv.AddQuorumMember(context.Background(), "/", "qs", member.self.ID)
	})
	all := append(slices.Clone(group), outside[0].name, outside[1].name)
	waitGroup(t, nodes, nodes, "qs", all, 2*time.Second)
	at("delete", func(nd, member *node) error {
		return nd.srv.DeleteQuorumMember(context.Background(), "/", "qs", member.self.ID)
	})
	waitGroup(t, nodes, nodes, "qs", group, 2*time.Second)
}
