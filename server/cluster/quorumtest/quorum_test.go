// Package quorumtest runs replicated quorum queues on in-process brokers
// that form a real cluster over loopback TCP (cluster.Service), with
// amqp091-go clients: what a user of a three-node cluster observes.
// Partitions and kill -9 are in ../netnstest, across namespaces.
package quorumtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/amqp-go/amqp-go/server/broker"
	"github.com/amqp-go/amqp-go/server/cluster"
	"github.com/amqp-go/amqp-go/server/config"
	"github.com/amqp-go/amqp-go/server/servertest"
	amqp "github.com/rabbitmq/amqp091-go"
)

// node is one member: a broker serving AMQP and its cluster.Service.
type node struct {
	name          string
	self          cluster.Peer
	peers         []cluster.Peer
	dir           string
	snapshotEvery uint64
	join          bool   // start as a node joining peers (not among them)
	dataDir       string // the broker's store, kept across restarts ("": a new one each start)
	srv           *broker.Server
	url           string
	cl            *cluster.Service
	closeOnce     sync.Once
}

// leave stops the member's cluster service (its broker goes on, cut off).
func (nd *node) leave() { nd.closeOnce.Do(func() { _ = nd.cl.Close() }) }

// groups is the Service as the broker uses it (as amqp-server run's).
type groups struct{ *cluster.Service }

func (g groups) AddGroupOnLoop(id uint64, peers []uint64, sm broker.GroupMachine) error {
	return g.Service.AddGroupOnLoop(id, peers, sm)
}

// startCluster starts n members that form one cluster, snapshotting
// their groups every snapshotEvery entries (0: the default).
func startCluster(t *testing.T, n int, snapshotEvery ...uint64) []*node {
	t.Helper()
	var peers []cluster.Peer
	var lns []net.Listener
	for i := range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		name := "amqp" + strconv.Itoa(i+1)
		peers = append(peers, cluster.Peer{ID: config.NodeID(name), Name: name, Address: ln.Addr().String()})
	}
	var every uint64
	if len(snapshotEvery) > 0 {
		every = snapshotEvery[0]
	}
	var nodes []*node
	for i := range n {
		nd := &node{name: peers[i].Name, peers: peers, self: peers[i], dir: t.TempDir(), snapshotEvery: every}
		nd.start(t, lns[i])
		nodes = append(nodes, nd)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := nodes[0].cl.Status(context.Background())
		if err == nil && st.Metadata.Leader != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no metadata leader in 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nodes
}

// start starts the member's broker and cluster service on ln (nil: a new
// listener on its address, a restart), with its Raft log in nd.dir.
func (nd *node) start(t *testing.T, ln net.Listener) {
	t.Helper()
	if ln == nil {
		var err error
		deadline := time.Now().Add(5 * time.Second)
		for ln, err = net.Listen("tcp", nd.self.Address); err != nil; ln, err = net.Listen("tcp", nd.self.Address) {
			if time.Now().After(deadline) {
				t.Fatal(err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	srv, url := servertest.StartServer(t, broker.Config{DataDir: nd.dataDir})
	nd.srv, nd.url, nd.closeOnce = srv, url, sync.Once{}
	parts := map[byte]cluster.Replicated{}
	for kind, r := range srv.Replicas() {
		parts[kind] = r
	}
	var w io.Writer = io.Discard
	if os.Getenv("BROKER_TEST_LOG") != "" {
		w = os.Stderr
	}
	// QQ_SYNC=1 fsyncs the Raft logs, as amqp-server does.
	cl, err := cluster.Open(cluster.ServiceConfig{Cluster: "qq", Self: nd.self, Members: nd.peers, Join: nd.join, Listener: ln,
		Dir: nd.dir, NoSync: os.Getenv("QQ_SYNC") == "", TickInterval: testTick(), Replicated: parts, SnapshotEvery: nd.snapshotEvery,
		OnOpen: func(s *cluster.Service) { srv.UseGroups(groups{s}) }, OnLink: srv.ServeLink,
		Logger: slog.New(slog.NewTextHandler(w, nil)).With("node", nd.name)})
	if err != nil {
		t.Fatal(err)
	}
	nd.cl = cl
	t.Cleanup(nd.leave) // before the broker's close
	srv.Replicate(cl)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() { _ = srv.OfferDefinitions(ctx) }()
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

var quorumArgs = amqp.Table{"x-queue-type": "quorum"}

// declareEverywhere declares a quorum queue on nd and waits until every
// member has it.
func declareEverywhere(t *testing.T, nodes []*node, nd *node, name string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, ch := dial(t, nd.url)
		_, err := ch.QueueDeclare(name, true, false, false, false, quorumArgs)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("declare %s on %s: %v", name, nd.name, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, other := range nodes {
		// Each member applies the declaration in its own time.
		waitFor(t, 10*time.Second, name+" on "+other.name, func() error { _, _, err := passive(other.url, name); return err })
	}
}

// publishConfirmed publishes n messages on url and waits for each
// confirm; it returns the bodies that were acked.
func publishConfirmed(t *testing.T, url, queue string, from, n int) []string {
	t.Helper()
	_, ch := dial(t, url)
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	var acked []string
	for i := from; i < from+n; i++ {
		body := fmt.Sprintf("m%05d", i)
		dc, err := ch.PublishWithDeferredConfirm("", queue, false, false, amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte(body)})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		ok, err := dc.WaitContext(ctx)
		cancel()
		if err != nil {
			t.Fatalf("confirm of %s: %v", body, err)
		}
		if ok {
			acked = append(acked, body)
		}
	}
	return acked
}

// A quorum queue declared on one member is on every member; messages
// published with confirms on a second are delivered, in order, to a
// consumer on the third, acked there, and gone from every member.
func TestQuorumQueueAcrossMembers(t *testing.T) {
	nodes := startCluster(t, 3)
	declareEverywhere(t, nodes, nodes[0], "qq1")
	acked := publishConfirmed(t, nodes[1].url, "qq1", 0, 300)
	if len(acked) != 300 {
		t.Fatalf("%d of 300 confirmed", len(acked))
	}
	_, ch := dial(t, nodes[2].url)
	if err := ch.Qos(20, 0, false); err != nil {
		t.Fatal(err)
	}
	consumeInOrder(t, ch, "qq1", acked, nodes[2].name)
	deadline := time.Now().Add(10 * time.Second)
	for _, nd := range nodes {
		_, ch := dial(t, nd.url)
		for {
			q, err := ch.QueueDeclarePassive("qq1", true, false, false, false, quorumArgs)
			if err != nil {
				t.Fatal(err)
			}
			if q.Messages == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s still has %d messages ready", nd.name, q.Messages)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// leaderOf finds the member leading queue's group, as the first member
// that knows one says.
func leaderOf(t *testing.T, nodes []*node, queue string) *node {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, nd := range nodes {
			for _, q := range nd.srv.VHost("/").Queues() {
				if q.Name != queue {
					continue
				}
				if lead, _, _ := q.QuorumGroup(); lead != 0 {
					for _, l := range nodes {
						if config.NodeID(l.name) == lead {
							return l
						}
					}
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no leader for %s in 10s", queue)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The leader of a quorum queue leaves under confirmed publishing and an
// acking consumer, both on the other members: a new leader is elected,
// publishing goes on, and every confirmed message is delivered.
func TestQuorumQueueLeaderLeaves(t *testing.T) {
	nodes := startCluster(t, 3)
	declareEverywhere(t, nodes, nodes[0], "qq2")
	lead := leaderOf(t, nodes, "qq2")
	var others []*node
	for _, nd := range nodes {
		if nd != lead {
			others = append(others, nd)
		}
	}
	pub, sub := others[0], others[1]
	t.Logf("leader %s; publishing on %s, consuming on %s", lead.name, pub.name, sub.name)

	var mu sync.Mutex
	got := map[string]int{}
	_, cch := dial(t, sub.url)
	if err := cch.Qos(20, 0, false); err != nil {
		t.Fatal(err)
	}
	ds, err := cch.Consume("qq2", "", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for d := range ds {
			mu.Lock()
			got[string(d.Body)]++
			mu.Unlock()
			_ = d.Ack(false)
		}
	}()
	confirmed := publishConfirmed(t, pub.url, "qq2", 0, 200)
	left := time.Now()
	lead.leave()
	after := publishConfirmed(t, pub.url, "qq2", 200, 200)
	t.Logf("%d confirmed before the leader left, %d of 200 after, in %v", len(confirmed), len(after), time.Since(left))
	if len(after) == 0 {
		t.Fatal("nothing confirmed after the leader left")
	}
	newLead := leaderOf(t, others, "qq2")
	if newLead == lead {
		t.Fatalf("%s still leads after it left", lead.name)
	}
	confirmed = append(confirmed, after...)
	deadline := time.Now().Add(15 * time.Second)
	for {
		mu.Lock()
		missing := 0
		for _, b := range confirmed {
			if got[b] == 0 {
				missing++
			}
		}
		mu.Unlock()
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d confirmed messages never delivered", missing, len(confirmed))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// leaders counts the quorum queues each member leads, as nd knows them.
func leaders(nd *node, nodes []*node) map[string]int {
	byID := map[uint64]string{}
	for _, l := range nodes {
		byID[config.NodeID(l.name)] = l.name
	}
	counts := map[string]int{}
	for _, q := range nd.srv.VHost("/").Queues() {
		if lead, _, ok := q.QuorumGroup(); ok {
			counts[byID[lead]]++
		}
	}
	return counts
}

// Leaders are placed as RabbitMQ's locators place them: client-local
// (the default) on the member the client declared on, balanced on the
// member leading the fewest; a rebalance then evens them out.
func TestQuorumQueueLeaderPlacement(t *testing.T) {
	nodes := startCluster(t, 3)
	for i := range 6 {
		declareEverywhere(t, nodes, nodes[0], fmt.Sprintf("local%d", i))
	}
	if got := leaders(nodes[0], nodes); got["amqp1"] != 6 {
		t.Fatalf("client-local: leaders %v, want all 6 on amqp1", got)
	}
	moved, err := nodes[1].srv.RebalanceQuorumQueues(context.Background())
	if err != nil || moved != 4 {
		t.Fatalf("rebalance: %d moved, %v; want 4", moved, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := leaders(nodes[2], nodes)
		if got["amqp1"] == 2 && got["amqp2"] == 2 && got["amqp3"] == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after a rebalance: leaders %v, want 2 each", got)
		}
		time.Sleep(10 * time.Millisecond)
	}
	_, ch := dial(t, nodes[0].url)
	for i := range 3 {
		name := fmt.Sprintf("balanced%d", i)
		if _, err := ch.QueueDeclare(name, true, false, false, false, amqp.Table{"x-queue-type": "quorum", "x-queue-leader-locator": "balanced"}); err != nil {
			t.Fatal(err)
		}
	}
	got := leaders(nodes[0], nodes)
	if got["amqp1"] != 3 || got["amqp2"] != 3 || got["amqp3"] != 3 {
		t.Fatalf("balanced: leaders %v, want 3 each", got)
	}
}

// A member that stops and starts again, while the others took messages
// and compacted their logs, catches up (from a snapshot of the queue's
// group) and serves every message, in order, to a consumer of its own.
func TestQuorumQueueMemberRestarts(t *testing.T) {
	nodes := startCluster(t, 3, 64)
	declareEverywhere(t, nodes, nodes[0], "qq3")
	acked := publishConfirmed(t, nodes[1].url, "qq3", 0, 150)
	gone := nodes[2]
	gone.leave()
	if err := gone.srv.Close(); err != nil {
		t.Fatal(err)
	}
	acked = append(acked, publishConfirmed(t, nodes[1].url, "qq3", 150, 250)...)
	if len(acked) != 400 {
		t.Fatalf("%d of 400 confirmed", len(acked))
	}
	// 250 consumed meanwhile: the others' logs are compacted well past
	// what the stopped member has, so it needs a snapshot.
	_, cch := dial(t, nodes[0].url)
	for i := range 250 {
		deadline := time.Now().Add(10 * time.Second)
		for {
			d, ok, err := cch.Get("qq3", false)
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				if string(d.Body) != acked[i] {
					t.Fatalf("get %d: %q, want %q", i, d.Body, acked[i])
				}
				if err := d.Ack(false); err != nil {
					t.Fatal(err)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("get %d: empty for 10s", i)
			}
		}
	}
	acked = acked[250:]
	gone.start(t, nil)
	var ch *amqp.Channel
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, c := dial(t, gone.url)
		q, err := c.QueueDeclarePassive("qq3", true, false, false, false, quorumArgs)
		if err == nil && q.Messages == len(acked) {
			ch = c
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the restarted %s: %+v, %v; want %d messages", gone.name, q, err, len(acked))
		}
		time.Sleep(20 * time.Millisecond)
	}
	consumeInOrder(t, ch, "qq3", acked, "the restarted member")
}

// consumeInOrder consumes queue on ch, acking, and fails unless want
// comes, in order, first deliveries all.
func consumeInOrder(t *testing.T, ch *amqp.Channel, queue string, want []string, where string) {
	t.Helper()
	ds, err := ch.Consume(queue, "", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, w := range want {
		select {
		case d := <-ds:
			if string(d.Body) != w || d.Redelivered {
				t.Fatalf("delivery %d on %s: %q (redelivered %v), want %q", i, where, d.Body, d.Redelivered, w)
			}
			if err := d.Ack(false); err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("delivery %d of %d on %s: none in 10s", i, len(want), where)
		}
	}
}

// A replicated quorum queue's TTL and delivery limit work as on one
// node: an expired message and one requeued past x-delivery-limit are
// dead-lettered, once, into another quorum queue, bound on a third
// member, from which a consumer on any member gets them with RabbitMQ's
// x-death reasons.
func TestQuorumQueueTTLAndDeliveryLimit(t *testing.T) {
	nodes := startCluster(t, 3)
	declareEverywhere(t, nodes, nodes[0], "dead")
	// Bound on a member that will lead neither queue: the binding is on
	// every member, the leaders' too, which dead-letter.
	_, bch := dial(t, nodes[2].url)
	if err := bch.QueueBind("dead", "#", "amq.topic", false, nil); err != nil {
		t.Fatal(err)
	}
	_, ch := dial(t, nodes[1].url)
	args := amqp.Table{"x-queue-type": "quorum", "x-message-ttl": int32(200), "x-delivery-limit": int32(1),
		"x-dead-letter-exchange": "amq.topic"}
	if _, err := ch.QueueDeclare("ttl", true, false, false, false, args); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("poison", true, false, false, false, amqp.Table{"x-queue-type": "quorum",
		"x-delivery-limit": int32(1), "x-dead-letter-exchange": "amq.topic"}); err != nil {
		t.Fatal(err)
	}
	publishConfirmed(t, nodes[2].url, "ttl", 0, 1)
	publishConfirmed(t, nodes[2].url, "poison", 1, 1)
	_, pch := dial(t, nodes[2].url)
	for i := 0; i < 2; i++ {
		var d amqp.Delivery
		deadline := time.Now().Add(5 * time.Second)
		for ok := false; !ok; {
			var err error
			if d, ok, err = pch.Get("poison", false); err != nil {
				t.Fatal(err)
			}
			if !ok && time.Now().After(deadline) {
				t.Fatalf("poison get %d: empty for 5s", i)
			}
		}
		if err := d.Nack(false, true); err != nil {
			t.Fatal(err)
		}
	}
	_, dch := dial(t, nodes[0].url)
	ds, err := dch.Consume("dead", "", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	reasons := map[string]string{}
	for len(reasons) < 2 {
		select {
		case d := <-ds:
			deaths, _ := d.Headers["x-death"].([]any)
			if len(deaths) == 0 {
				t.Fatalf("dead-lettered %q without x-death: %v", d.Body, d.Headers)
			}
			death, _ := deaths[0].(amqp.Table)
			if _, seen := reasons[string(d.Body)]; seen {
				t.Fatalf("%q dead-lettered twice", d.Body)
			}
			reasons[string(d.Body)] = fmt.Sprint(death["queue"], ":", death["reason"])
			_ = d.Ack(false)
		case <-time.After(10 * time.Second):
			t.Fatalf("dead-lettered so far: %v", reasons)
		}
	}
	if reasons["m00000"] != "ttl:expired" || reasons["m00001"] != "poison:delivery_limit" {
		t.Fatalf("x-death: %v, want m00000 ttl:expired, m00001 poison:delivery_limit", reasons)
	}
	select {
	case d := <-ds:
		t.Fatalf("a third dead letter: %q", d.Body)
	case <-time.After(300 * time.Millisecond):
	}
}

// A quorum queue's group follows the cluster's membership up to its size
// (3): a fourth node that joins is not added to the full group, and
// serves publishers and consumers by forwarding to it; once a member is
// removed from the cluster (and so from the group), the fourth joins the
// group, is caught up, and serves them as a member.
func TestQuorumQueueFollowsMembership(t *testing.T) {
	nodes := startCluster(t, 3)
	declareEverywhere(t, nodes, nodes[0], "qq4")
	acked := publishConfirmed(t, nodes[1].url, "qq4", 0, 100)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fourth := &node{name: "amqp4", self: cluster.Peer{ID: config.NodeID("amqp4"), Name: "amqp4", Address: ln.Addr().String()},
		peers: nodes[0].peers, dir: t.TempDir(), join: true}
	fourth.start(t, ln)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := nodes[1].cl.AddMember(ctx, fourth.self); err != nil {
		t.Fatal(err)
	}
	waitMembers := func(nd *node, want int, with uint64) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			for _, q := range nd.srv.VHost("/").Queues() {
				if _, members, ok := q.QuorumGroup(); ok && q.Name == "qq4" && len(members) == want && (with == 0 || slices.Contains(members, with)) {
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: qq4's group never had %d members (with %x)", nd.name, want, with)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// The group is full (3, the default size): the new member forwards
	// its clients' publishes and consumes to it.
	waitMembers(fourth, 3, 0)
	waitFor(t, 10*time.Second, "qq4 on amqp4", func() error { _, _, err := passive(fourth.url, "qq4"); return err })
	acked = append(acked, publishConfirmed(t, fourth.url, "qq4", 100, 50)...)
	_, ch := dial(t, fourth.url)
	consumeInOrder(t, ch, "qq4", acked, "the new member, outside the group")
	ch.Close() // its consumer, with nothing unacked, goes
	waitFor(t, 10*time.Second, "the forwarded consumer gone", func() error {
		if _, c, err := passive(nodes[0].url, "qq4"); err != nil || c != 0 {
			return fmt.Errorf("%d consumers, %v", c, err)
		}
		return nil
	})
	if err := nodes[0].cl.RemoveMember(ctx, "amqp3"); err != nil {
		t.Fatal(err)
	}
	// One short: the member outside joins it.
	waitMembers(nodes[0], 3, fourth.self.ID)
	waitMembers(fourth, 3, fourth.self.ID)
	acked = publishConfirmed(t, fourth.url, "qq4", 150, 50)
	_, ch = dial(t, fourth.url)
	consumeInOrder(t, ch, "qq4", acked, "the new member, in the group")
}

// x-quorum-initial-group-size 2 on three members: the group is the
// declaring node and one other; the third, outside it, serves the queue
// all the same by forwarding: confirmed publishes, a consumer, acks and
// a requeue, basic.get and purge there, and nothing acked comes back.
func TestQuorumQueueGroupSize(t *testing.T) {
	nodes := startCluster(t, 3)
	args := amqp.Table{"x-queue-type": "quorum", "x-quorum-initial-group-size": int32(2)}
	waitFor(t, 15*time.Second, "declare", func() error {
		_, ch := dial(t, nodes[0].url)
		_, err := ch.QueueDeclare("qgs", true, false, false, false, args)
		return err
	})
	var outside *node
	waitFor(t, 10*time.Second, "the group on every member", func() error {
		outside = nil
		for _, nd := range nodes {
			q := nd.srv.VHost("/").Queue("qgs")
			if q == nil {
				return fmt.Errorf("no qgs on %s", nd.name)
			}
			_, members, _ := q.QuorumGroup()
			if len(members) != 2 || !slices.Contains(members, nodes[0].self.ID) {
				return fmt.Errorf("%s: members %v", nd.name, members)
			}
			if !slices.Contains(members, nd.self.ID) {
				outside = nd
			}
		}
		if outside == nil {
			return errors.New("no member outside the group")
		}
		return nil
	})
	acked := publishConfirmed(t, outside.url, "qgs", 0, 100)
	if len(acked) != 100 {
		t.Fatalf("%d of 100 confirmed through %s, outside the group", len(acked), outside.name)
	}
	_, ch := dial(t, outside.url)
	if err := ch.Qos(10, 0, false); err != nil {
		t.Fatal(err)
	}
	consumeInOrder(t, ch, "qgs", acked[:60], outside.name)
	ch.Close()
	_, gch := dial(t, outside.url)
	m, ok, err := gch.Get("qgs", false)
	if err != nil || !ok || string(m.Body) != acked[60] {
		t.Fatalf("get on %s: %q ok %v err %v, want %s", outside.name, m.Body, ok, err, acked[60])
	}
	if err := m.Nack(false, true); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the requeued message again", func() error {
		m, ok, err = gch.Get("qgs", false)
		if err == nil && !ok {
			err = errors.New("empty")
		}
		return err
	})
	if string(m.Body) != acked[60] || !m.Redelivered || m.Headers["x-delivery-count"] == nil {
		t.Fatalf("after the requeue: %q redelivered %v headers %v", m.Body, m.Redelivered, m.Headers)
	}
	if err := m.Ack(false); err != nil {
		t.Fatal(err)
	}
	if n, err := gch.QueuePurge("qgs", false); err != nil || n != 39 {
		t.Fatalf("purge on %s: %d, %v; want 39", outside.name, n, err)
	}
	for _, nd := range nodes {
		waitFor(t, 5*time.Second, "empty on "+nd.name, func() error {
			n, _, err := passive(nd.url, "qgs")
			if err == nil && n != 0 {
				err = fmt.Errorf("%d messages", n)
			}
			return err
		})
	}
}

// Idle quorum queues' groups go quiet (no ticks, no heartbeats), and wake
// for traffic; when the node leading quiet groups leaves (gracefully: it
// hands their leadership over, quiet or not), they go on. A leader killed
// while its group is quiet is netnstest's TestClusterQuorumQuietLeaderKill9.
func TestQuorumQueueQuietGroups(t *testing.T) {
	nodes := startCluster(t, 3)
	for i := range 4 {
		declareEverywhere(t, nodes, nodes[0], fmt.Sprintf("quiet%d", i))
	}
	waitQuiet := func(nds []*node, want int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for _, nd := range nds {
			for {
				q, _ := nd.cl.QuietGroups()
				if q == want {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s: %d quiet groups, want %d", nd.name, q, want)
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
	}
	waitQuiet(nodes, 4)
	acked := publishConfirmed(t, nodes[1].url, "quiet0", 0, 10)
	waitQuiet(nodes, 4) // quiet again after the traffic
	start := time.Now()
	nodes[0].leave() // led all four
	acked = append(acked, publishConfirmed(t, nodes[2].url, "quiet0", 10, 10)...)
	t.Logf("a publish to a quiet group whose leader left was confirmed after %v", time.Since(start).Round(time.Millisecond))
	if len(acked) != 20 {
		t.Fatalf("%d of 20 confirmed", len(acked))
	}
	if l := leaderOf(t, nodes[1:], "quiet3"); l == nodes[0] {
		t.Fatal("a quiet group untouched since its leader left has it still")
	}
	_, ch := dial(t, nodes[1].url)
	consumeInOrder(t, ch, "quiet0", acked, nodes[1].name)
}

// testTick is the members' Raft tick: 10 ms (elections in 100-200 ms),
// or amqp-server's 100 ms with QQ_TICK=default.
func testTick() time.Duration {
	if os.Getenv("QQ_TICK") == "default" {
		return 100 * time.Millisecond
	}
	return 10 * time.Millisecond
}

// x-expires on a replicated quorum queue: unused (no consumer, no get,
// no declare) for its time, it is deleted on every member; a declare
// counts as a use on whichever member it is made.
func TestQuorumQueueExpires(t *testing.T) {
	nodes := startCluster(t, 3)
	args := amqp.Table{"x-queue-type": "quorum", "x-expires": int32(1500)}
	var declared time.Time
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, ch := dial(t, nodes[0].url)
		if _, err := ch.QueueDeclare("qq-expires", true, false, false, false, args); err == nil {
			declared = time.Now()
			break
		} else if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, nd := range nodes {
		for nd.srv.VHost("/").Queue("qq-expires") == nil {
			if time.Now().After(deadline) {
				t.Fatalf("%s never had the queue", nd.name)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	exists := func(nd *node) bool {
		_, ch := dial(t, nd.url)
		_, err := ch.QueueDeclarePassive("qq-expires", true, false, false, false, args)
		return err == nil
	}
	// Declared again (passively: a use too) on another member every
	// 300 ms for 3 s: twice its x-expires, and it stays.
	var last time.Time
	for time.Since(declared) < 3*time.Second {
		last = time.Now()
		if !exists(nodes[1]) {
			t.Fatalf("gone %v after its declare, though declared every 300 ms", time.Since(declared))
		}
		time.Sleep(300 * time.Millisecond)
	}
	// Looked for in each broker, not declared: a passive declare is a
	// use.
	for _, nd := range nodes {
		deadline := time.Now().Add(10 * time.Second)
		for nd.srv.VHost("/").Queue("qq-expires") != nil {
			if time.Now().After(deadline) {
				t.Fatalf("%s still has the queue %v after its last use", nd.name, time.Since(last))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if gone := time.Since(last); gone < 1500*time.Millisecond {
		t.Fatalf("gone %v after its last use, before its x-expires of 1.5 s", gone)
	}
}
