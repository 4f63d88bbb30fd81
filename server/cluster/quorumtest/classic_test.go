package quorumtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/amqp-go/amqp-go/server/broker"
	"github.com/amqp-go/amqp-go/server/management"
	"github.com/amqp-go/amqp-go/server/servertest"
	amqp "github.com/rabbitmq/amqp091-go"
)

// waitFor polls f until it returns nil, failing the test with its last
// error after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// passive declares queue passively on url and returns its message and
// consumer counts, or the channel's error.
func passive(url, queue string) (messages, consumers int, err error) {
	c, err := amqp.Dial(url)
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	ch, err := c.Channel()
	if err != nil {
		return 0, 0, err
	}
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	if err != nil {
		return 0, 0, err
	}
	return q.Messages, q.Consumers, nil
}

// A durable classic queue declared on one member is listed by every
// member and reached through its home node: publishes confirmed on a
// second are consumed, in order, on a third, acked there and gone; a
// binding made on another member routes into it; basic.get, requeue,
// purge and delete work from any member.
func TestClassicQueueAcrossMembers(t *testing.T) {
	nodes := startCluster(t, 3)
	home, pub, sub := nodes[0], nodes[1], nodes[2]
	declareDurableOn(t, home, "cq", nodes...)
	if h := queueOn(t, sub, "cq"); !h.Remote() || h.HomeNode() != home.name {
		t.Fatalf("cq on %s: remote %v, home %q; want remote, homed on %s", sub.name, h.Remote(), h.HomeNode(), home.name)
	}
	acked := publishConfirmed(t, pub.url, "cq", 0, 200)
	if len(acked) != 200 {
		t.Fatalf("%d of 200 confirmed through %s", len(acked), pub.name)
	}
	waitFor(t, 5*time.Second, "counts on "+sub.name, func() error {
		n, _, err := passive(sub.url, "cq")
		if err == nil && n != 200 {
			err = fmt.Errorf("%d messages, want 200", n)
		}
		return err
	})
	_, cch := dial(t, sub.url)
	if err := cch.Qos(10, 0, false); err != nil {
		t.Fatal(err)
	}
	consumeInOrder(t, cch, "cq", acked, sub.name)
	waitFor(t, 5*time.Second, "empty at home", func() error {
		n, c, err := passive(home.url, "cq")
		if err == nil && (n != 0 || c != 1) {
			err = fmt.Errorf("%d messages and %d consumers, want 0 and 1", n, c)
		}
		return err
	})
	cch.Close()
	waitFor(t, 5*time.Second, "consumer gone at home", func() error {
		_, c, err := passive(home.url, "cq")
		if err == nil && c != 0 {
			err = fmt.Errorf("%d consumers, want 0", c)
		}
		return err
	})

	// basic.get from a member, a requeue, and the redelivery.
	publishConfirmed(t, home.url, "cq", 1000, 1)
	_, gch := dial(t, pub.url)
	m, ok, err := gch.Get("cq", false)
	if err != nil || !ok || string(m.Body) != "m01000" || m.Redelivered {
		t.Fatalf("get on %s: %q ok %v redelivered %v err %v", pub.name, m.Body, ok, m.Redelivered, err)
	}
	if err := m.Nack(false, true); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "get after requeue", func() error {
		m, ok, err = gch.Get("cq", false)
		if err == nil && !ok {
			err = errors.New("empty")
		}
		return err
	})
	if string(m.Body) != "m01000" || !m.Redelivered {
		t.Fatalf("get after requeue: %q redelivered %v", m.Body, m.Redelivered)
	}
	if err := m.Ack(false); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := gch.Get("cq", true); err != nil || ok {
		t.Fatalf("get on an emptied queue: ok %v err %v", ok, err)
	}

	// A binding made on one member routes publishes on another.
	_, xch := dial(t, pub.url)
	if err := xch.ExchangeDeclare("cx", "direct", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "bind on "+sub.name, func() error {
		_, bch := dial(t, sub.url)
		return bch.QueueBind("cq", "k", "cx", false, nil)
	})
	publishRouted(t, home, "cx", "k", 5, sub.name)
	waitFor(t, 5*time.Second, "routed through cx", func() error {
		n, _, err := passive(pub.url, "cq")
		if err == nil && n != 5 {
			err = fmt.Errorf("%d messages, want 5", n)
		}
		return err
	})
	_, pch := dial(t, sub.url)
	if n, err := pch.QueuePurge("cq", false); err != nil || n != 5 {
		t.Fatalf("purge on %s: %d, %v; want 5", sub.name, n, err)
	}
	if _, err := pch.QueueDelete("cq", false, false, false); err != nil {
		t.Fatal(err)
	}
	for _, nd := range nodes {
		waitFor(t, 10*time.Second, "cq deleted on "+nd.name, func() error {
			if _, _, err := passive(nd.url, "cq"); err == nil {
				return errors.New("still there")
			}
			return nil
		})
	}
}

// A binding made on a member just as the cluster's log declares its
// exchange there is made through the cluster all the same: the member
// first finds no such exchange (a binding of this node only, then), and
// by the time it takes the vhost's lock the exchange is there. The
// member is held between the two until the exchange, declared on
// another member meanwhile, has reached it. The queue's home node then
// routes through the binding.
func TestBindingAsItsExchangeArrives(t *testing.T) {
	nodes := startCluster(t, 3)
	home, pub, sub := nodes[0], nodes[1], nodes[2]
	declareDurableOn(t, home, "cq", sub)
	held := make(chan struct{}, 1)
	sub.srv.SetBeforeLocalChange(func() {
		select {
		case held <- struct{}{}:
		default:
		}
		deadline := time.Now().Add(10 * time.Second)
		for sub.srv.VHost("/").Exchange("cx") == nil && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
	})
	t.Cleanup(func() { sub.srv.SetBeforeLocalChange(nil) })
	bound := make(chan error, 1)
	go func() {
		c, err := amqp.Dial(sub.url)
		if err != nil {
			bound <- err
			return
		}
		defer c.Close()
		ch, err := c.Channel()
		if err == nil {
			err = ch.QueueBind("cq", "k", "cx", false, nil)
		}
		bound <- err
	}()
	select {
	case <-held:
	case err := <-bound:
		t.Fatalf("the bind on %s did not take the local path: %v", sub.name, err)
	case <-time.After(10 * time.Second):
		t.Fatalf("the bind on %s never reached the local path", sub.name)
	}
	_, xch := dial(t, pub.url)
	if err := xch.ExchangeDeclare("cx", "direct", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := <-bound; err != nil {
		t.Fatalf("bind on %s: %v", sub.name, err)
	}
	publishRouted(t, home, "cx", "k", 1, sub.name)
}

// declareDurableOn declares the durable classic queue name on home, until
// the cluster takes it, and waits until each of listing lists it.
func declareDurableOn(t *testing.T, home *node, name string, listing ...*node) {
	t.Helper()
	waitFor(t, 15*time.Second, "declare on the home node", func() error {
		_, ch := dial(t, home.url)
		_, err := ch.QueueDeclare(name, true, false, false, false, nil)
		return err
	})
	for _, nd := range listing {
		waitFor(t, 10*time.Second, name+" on "+nd.name, func() error { _, _, err := passive(nd.url, name); return err })
	}
}

// publishRouted publishes n messages to exchange x on nd, with key and
// confirms, once nd has x and then each until it is routed: mandatory,
// a message comes back while nd has not applied the binding made on the
// member boundOn, and is published again, for up to 20 s.
func publishRouted(t *testing.T, nd *node, x, key string, n int, boundOn string) {
	t.Helper()
	waitFor(t, 10*time.Second, x+" on "+nd.name, func() error {
		_, xch := dial(t, nd.url)
		return xch.ExchangeDeclarePassive(x, "direct", true, false, false, false, nil)
	})
	_, ch := dial(t, nd.url)
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	returns := ch.NotifyReturn(make(chan amqp.Return, n))
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; i < n; {
		if time.Now().After(deadline) {
			t.Fatalf("a mandatory publish to %s on %s still comes back after 20 s: it has not applied the binding made on %s", x, nd.name, boundOn)
		}
		dc, err := ch.PublishWithDeferredConfirm(x, key, true, false, amqp.Publishing{Body: fmt.Appendf(nil, "x%d", i)})
		if err != nil || !dc.Wait() {
			t.Fatalf("publish to %s on %s: %v", x, nd.name, err)
		}
		select {
		case <-returns:
			time.Sleep(20 * time.Millisecond)
		default:
			i++
		}
	}
}

// startWithHome starts three members, the third, the home node of the
// test's classic queues, restarted on a store of its own, so that its
// messages outlive its restarts.
func startWithHome(t *testing.T) (nodes []*node, home *node) {
	t.Helper()
	nodes = startCluster(t, 3)
	home = nodes[2]
	home.dataDir = t.TempDir()
	home.stop(t)
	home.start(t, nil)
	return nodes, home
}

// queueOn returns the broker's view of queue on nd.
func queueOn(t *testing.T, nd *node, queue string) interface {
	Remote() bool
	HomeNode() string
} {
	t.Helper()
	v := nd.srv.VHost("/")
	if v == nil {
		t.Fatal("no vhost /")
	}
	q := v.Queue(queue)
	if q == nil {
		t.Fatalf("no queue %s on %s", queue, nd.name)
	}
	return q
}

// While its home node is down, a classic queue is unavailable elsewhere:
// its consumers there are cancelled; a consume, a declare, a get, a purge
// and a delete answer RabbitMQ's 404; a publish is routed elsewhere only
// (mandatory: returned). What a member's consumer had
// unacked is not lost: back with the home node, it is delivered again,
// flagged redelivered, and nothing acked comes back.
func TestClassicQueueHomeDown(t *testing.T) {
	nodes, home := startWithHome(t)
	declareDurableOn(t, home, "hq", nodes[1])
	acked := publishConfirmed(t, nodes[0].url, "hq", 0, 10)
	if len(acked) != 10 {
		t.Fatalf("%d of 10 confirmed", len(acked))
	}
	conn, cch := dial(t, nodes[1].url)
	if err := cch.Qos(5, 0, false); err != nil {
		t.Fatal(err)
	}
	cancelled := cch.NotifyCancel(make(chan string, 1))
	ds, err := cch.Consume("hq", "c1", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []amqp.Delivery
	for len(got) < 5 {
		select {
		case d := <-ds:
			got = append(got, d)
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of 5 deliveries on %s", len(got), nodes[1].name)
		}
	}
	// The first two are acked, which lets two more come; five stay
	// unacked.
	if err := got[1].Ack(true); err != nil {
		t.Fatal(err)
	}
	for len(got) < 7 {
		select {
		case d := <-ds:
			got = append(got, d)
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of 7 deliveries on %s", len(got), nodes[1].name)
		}
	}
	waitFor(t, 5*time.Second, "acks at home", func() error {
		n, _, err := passive(home.url, "hq")
		if err == nil && n != 3 {
			err = fmt.Errorf("%d ready, want 3", n)
		}
		return err
	})

	home.stop(t)
	select {
	case tag := <-cancelled:
		if tag != "c1" {
			t.Fatalf("cancelled %q, want c1", tag)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no basic.cancel for the consumer of a queue whose home node went down")
	}
	_, ch := dial(t, nodes[1].url)
	_, err = ch.Consume("hq", "", false, false, false, false, nil)
	var ae *amqp.Error
	want := fmt.Sprintf("NOT_FOUND - home node '%s' of durable queue 'hq' in vhost '/' is down or inaccessible", home.name)
	if !errors.As(err, &ae) || ae.Code != 404 || ae.Reason != want {
		t.Fatalf("consume with the home node down: %v; want 404 %q", err, want)
	}
	// So do a passive declare, a get, a purge and a delete (RabbitMQ
	// 3.10's answers, checked against a two-node RabbitMQ cluster).
	for what, op := range map[string]func(ch *amqp.Channel) error{
		"passive declare": func(ch *amqp.Channel) error {
			_, err := ch.QueueDeclarePassive("hq", true, false, false, false, nil)
			return err
		},
		"get":    func(ch *amqp.Channel) error { _, _, err := ch.Get("hq", false); return err },
		"purge":  func(ch *amqp.Channel) error { _, err := ch.QueuePurge("hq", false); return err },
		"delete": func(ch *amqp.Channel) error { _, err := ch.QueueDelete("hq", false, false, false); return err },
	} {
		_, ch := dial(t, nodes[0].url)
		if err := op(ch); !errors.As(err, &ae) || ae.Code != 404 || ae.Reason != want {
			t.Fatalf("%s with the home node down: %v; want 404 %q", what, err, want)
		}
	}
	if st := queueState(t, nodes[1], "hq"); st["state"] != "down" || st["node"] != home.name {
		t.Fatalf("the management API on %s with the home node down: state %v, node %v; want down, %s", nodes[1].name, st["state"], st["node"], home.name)
	}
	// A publish routed only there is unroutable, as in RabbitMQ: a
	// mandatory one comes back (312), and the confirm is an ack.
	_, pch := dial(t, nodes[0].url)
	if err := pch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	returns := pch.NotifyReturn(make(chan amqp.Return, 1))
	dc, err := pch.PublishWithDeferredConfirm("", "hq", true, false, amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte("lost")})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	ok, err := dc.WaitContext(ctx)
	cancel()
	if err != nil || !ok {
		t.Fatalf("publish with the home node down: acked %v, err %v; want an ack", ok, err)
	}
	select {
	case r := <-returns:
		if r.ReplyCode != 312 || r.ReplyText != "NO_ROUTE" {
			t.Fatalf("returned %d %s, want 312 NO_ROUTE", r.ReplyCode, r.ReplyText)
		}
	default:
		t.Fatal("a mandatory publish to a queue whose home node is down did not come back")
	}
	conn.Close()

	home.start(t, nil)
	var rest []string
	waitFor(t, 20*time.Second, "hq back with its home node", func() error {
		_, ch := dial(t, nodes[1].url)
		ds, err := ch.Consume("hq", "", false, false, false, false, nil)
		if err != nil {
			return err
		}
		for len(rest) < 8 {
			select {
			case d := <-ds:
				// Those unacked must be flagged; the others may be
				// (a recovered message may have gone out before).
				if !d.Redelivered && strings.Contains("m00002 m00003 m00004 m00005 m00006", string(d.Body)) {
					t.Fatalf("%q, unacked before, is not flagged redelivered", d.Body)
				}
				rest = append(rest, string(d.Body))
				_ = d.Ack(false)
			case <-time.After(5 * time.Second):
				return fmt.Errorf("got %v after the restart", rest)
			}
		}
		return nil
	})
	if want := "m00002 m00003 m00004 m00005 m00006 m00007 m00008 m00009"; strings.Join(rest, " ") != want {
		t.Fatalf("after the restart: %v, want %s", rest, want)
	}
	if st := queueState(t, nodes[1], "hq"); st["state"] != "running" {
		t.Fatalf("the management API on %s with the home node back: state %v, want running", nodes[1].name, st["state"])
	}
}

// queueState is GET /api/queues/%2F/queue from a management API over nd's
// broker.
func queueState(t *testing.T, nd *node, queue string) map[string]any {
	t.Helper()
	code, body := apiGet(nd, "/api/queues/%2F/"+queue)
	var m map[string]any
	if code != 200 || json.Unmarshal(body, &m) != nil {
		t.Fatalf("GET /api/queues/%%2F/%s on %s: %d %s", queue, nd.name, code, body)
	}
	return m
}

// apiGet is GET path from a management API over nd's broker, as guest.
func apiGet(nd *node, path string) (int, []byte) {
	h := management.New(management.Options{Server: nd.srv, Node: nd.name, Cluster: nd.cl.Status})
	defer h.Close()
	req := httptest.NewRequest("GET", path, nil)
	req.RemoteAddr = "127.0.0.1:40000"
	req.SetBasicAuth("guest", "guest")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w.Code, w.Body.Bytes()
}

// stop stops nd, its cluster service and its broker.
func (nd *node) stop(t *testing.T) {
	t.Helper()
	nd.leave()
	if err := nd.srv.Close(); err != nil {
		t.Fatal(err)
	}
}

// declareBound declares the durable classic queue on nd, bound to the
// durable direct exchange cfx by its own name, and waits until every
// member of nodes has both.
func declareBound(t *testing.T, nodes []*node, nd *node, queue string) {
	t.Helper()
	waitFor(t, 15*time.Second, "declare "+queue+" on "+nd.name, func() error {
		_, ch := dial(t, nd.url)
		if err := ch.ExchangeDeclare("cfx", "direct", true, false, false, false, nil); err != nil {
			return err
		}
		if _, err := ch.QueueDeclare(queue, true, false, false, false, nil); err != nil {
			return err
		}
		return ch.QueueBind(queue, queue, "cfx", false, nil)
	})
	for _, other := range nodes {
		waitFor(t, 10*time.Second, queue+" bound on "+other.name, func() error {
			if _, _, err := passive(other.url, queue); err != nil {
				return err
			}
			if !boundTo(other, "cfx", queue) {
				return errors.New("not bound")
			}
			return nil
		})
	}
}

// boundTo reports whether queue is bound to exchange on nd.
func boundTo(nd *node, exchange, queue string) bool { return len(bindingKeys(nd, exchange, queue)) > 0 }

// queueGone waits until queue is gone from nd: a passive declare answers
// RabbitMQ's 404, the management API too, and no binding names it.
func queueGone(t *testing.T, nd *node, queue string) {
	t.Helper()
	want := fmt.Sprintf("NOT_FOUND - no queue '%s' in vhost '/'", queue)
	waitFor(t, 10*time.Second, queue+" gone from "+nd.name, func() error {
		_, _, err := passive(nd.url, queue)
		var ae *amqp.Error
		if !errors.As(err, &ae) || ae.Code != 404 || ae.Reason != want {
			return fmt.Errorf("passive declare: %v; want 404 %q", err, want)
		}
		if code, body := apiGet(nd, "/api/queues/%2F/"+queue); code != 404 {
			return fmt.Errorf("GET /api/queues/%%2F/%s: %d %s, want 404", queue, code, body)
		}
		if boundTo(nd, "cfx", queue) {
			return errors.New("still bound to cfx")
		}
		return nil
	})
}

// A member removed from the cluster for good takes the classic queues
// homed on it along, as RabbitMQ's forget_cluster_node does: forgotten
// while it is down, its queue and the queue's bindings are gone from the
// others, while a queue homed on another member stays with its messages
// and bindings. Down, not yet forgotten, it keeps them (listed, down).
// A member that leaves takes its own along too, on every member and on
// itself (RabbitMQ's reset).
func TestClassicQueueHomeForgotten(t *testing.T) {
	nodes := startCluster(t, 3)
	declareBound(t, nodes, nodes[2], "fq")
	declareBound(t, nodes, nodes[0], "kq")
	declareBound(t, nodes, nodes[1], "lq")
	if acked := publishConfirmed(t, nodes[1].url, "kq", 0, 3); len(acked) != 3 {
		t.Fatalf("%d of 3 confirmed", len(acked))
	}
	nodes[2].stop(t)
	// Down, it is only unavailable.
	waitFor(t, 10*time.Second, "fq down", func() error {
		if st := queueState(t, nodes[0], "fq"); st["state"] != "down" {
			return fmt.Errorf("state %v", st["state"])
		}
		return nil
	})
	if !boundTo(nodes[1], "cfx", "fq") {
		t.Fatal("fq lost its binding while its home node was down only")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := nodes[0].cl.RemoveMember(ctx, nodes[2].name); err != nil {
		t.Fatal(err)
	}
	for _, nd := range nodes[:2] {
		queueGone(t, nd, "fq")
		if n, _, err := passive(nd.url, "kq"); err != nil || n != 3 {
			t.Fatalf("kq on %s: %d messages, %v; want 3", nd.name, n, err)
		}
		if !boundTo(nd, "cfx", "kq") || !boundTo(nd, "cfx", "lq") {
			t.Fatalf("%s lost the bindings of queues homed on the remaining members", nd.name)
		}
	}

	// nodes[1] leaves: its queue goes, on nodes[0] and on itself.
	if err := nodes[1].cl.RemoveMember(ctx, nodes[1].name); err != nil {
		t.Fatal(err)
	}
	queueGone(t, nodes[0], "lq")
	queueGone(t, nodes[1], "lq")
	if n, _, err := passive(nodes[0].url, "kq"); err != nil || n != 3 {
		t.Fatalf("kq on %s: %d messages, %v; want 3", nodes[0].name, n, err)
	}
}

// A classic queue whose deletion the cluster committed while its home
// node was down is gone from the home node too once it is back, and
// stays gone: whether the home node catches up from the others' log
// (which has the deletion) or, that log compacted past what it has, from
// a snapshot (which does not name the queue). A durable queue of the
// home node's own, declared outside the cluster, stays, and so does, with
// its messages, one of the cluster's homed there that its own snapshot,
// older, does not name.
func TestClassicQueueDeletedWhileHomeDown(t *testing.T) {
	t.Run("log", func(t *testing.T) { testDeletedWhileHomeDown(t, 0) })
	t.Run("snapshot", func(t *testing.T) { testDeletedWhileHomeDown(t, 64) })
}

func testDeletedWhileHomeDown(t *testing.T, snapshotEvery uint64) {
	nodes := startCluster(t, 3, snapshotEvery)
	home := nodes[2]
	home.dataDir = t.TempDir()
	home.stop(t)
	// A queue of the home node's own: declared on its store alone,
	// outside the cluster.
	srv, url := servertest.StartServer(t, broker.Config{DataDir: home.dataDir})
	_, lch := dial(t, url)
	if _, err := lch.QueueDeclare("own", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	home.start(t, nil)
	fill := func(from int) {
		// Enough entries for every member to snapshot its log (twice:
		// the others compact theirs past what a stopped member has).
		_, xch := dial(t, nodes[0].url)
		for i := from; i < from+int(2*snapshotEvery); i++ {
			if err := xch.ExchangeDeclare(fmt.Sprintf("fill%d", i), "direct", true, false, false, false, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	fill(0)
	caughtUp(t, nodes[0], home)
	// Declared after the home node's snapshot, which does not name them,
	// and restored from it at its restart, before its log declares them.
	declareBound(t, nodes, home, "dq")
	declareBound(t, nodes, home, "kq")
	for _, q := range []string{"dq", "kq"} {
		if acked := publishConfirmed(t, nodes[0].url, q, 0, 5); len(acked) != 5 {
			t.Fatalf("%d of 5 confirmed to %s", len(acked), q)
		}
	}
	home.stop(t)
	home.start(t, nil)
	caughtUp(t, nodes[0], home)
	for _, q := range []string{"dq", "kq"} {
		waitMessages(t, nodes[0], q, 5)
	}
	home.stop(t)
	// A client's deletion needs the home node (404 while it is down, as
	// RabbitMQ's): this is the entry of one that a member proposed just
	// before the home node went down, committed by the others.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := nodes[0].cl.Replicate(ctx, broker.ReplicaQuorumQueues, []byte(`{"vhost":"/","queue":"dq","delete":true}`)); err != nil {
		t.Fatal(err)
	}
	for _, nd := range nodes[:2] {
		queueGone(t, nd, "dq")
	}
	fill(1000)
	home.start(t, nil)
	for range 2 { // and gone from its store: not back after another restart
		caughtUp(t, nodes[0], home)
		for _, nd := range nodes {
			queueGone(t, nd, "dq")
		}
		if _, _, err := passive(home.url, "own"); err != nil {
			t.Fatalf("the home node's own queue: %v", err)
		}
		waitMessages(t, nodes[1], "kq", 5)
		if !boundTo(nodes[1], "cfx", "kq") {
			t.Fatal("kq lost its binding")
		}
		home.stop(t)
		home.start(t, nil)
	}
}

// caughtUp waits until nd has applied the metadata log as far as from
// has now.
func caughtUp(t *testing.T, from, nd *node) {
	t.Helper()
	st, err := from.cl.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, nd.name+" caught up", func() error {
		s, err := nd.cl.Status(context.Background())
		if err == nil && s.Metadata.Applied < st.Metadata.Applied {
			err = fmt.Errorf("applied %d, want %d", s.Metadata.Applied, st.Metadata.Applied)
		}
		return err
	})
}

// waitMessages waits until a passive declare of queue on nd counts want
// messages.
func waitMessages(t *testing.T, nd *node, queue string, want int) {
	t.Helper()
	waitFor(t, 10*time.Second, queue+" on "+nd.name, func() error {
		n, _, err := passive(nd.url, queue)
		if err == nil && n != want {
			err = fmt.Errorf("%d messages, want %d", n, want)
		}
		return err
	})
}

// A classic queue deleted and declared again keeps the second one's
// messages and bindings, and none of the first one's, across its home
// node's restart, which applies the metadata log after its last snapshot
// again, the deletion among it, to the queue its store has back; and so
// when the home node was removed from the cluster and added again before
// it declared the queue (its removal among the entries applied again).
// On the way, a member whose link to the home node is in its retry
// window after the home node's restart makes the bindings from the log
// all the same.
func TestClassicQueueDeclaredAgainRestart(t *testing.T) {
	nodes, home := startWithHome(t)
	declareBound(t, nodes, home, "rq")
	publishConfirmed(t, nodes[0].url, "rq", 0, 2)
	_, ch := dial(t, home.url)
	if err := ch.QueueBind("rq", "first", "cfx", false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDelete("rq", false, false, false); err != nil {
		t.Fatal(err)
	}
	for _, nd := range nodes {
		queueGone(t, nd, "rq")
	}
	// Declared again, with 5 messages and its binding, across a restart.
	again := func() {
		t.Helper()
		declareBound(t, nodes, home, "rq")
		if acked := publishConfirmed(t, nodes[0].url, "rq", 0, 5); len(acked) != 5 {
			t.Fatalf("%d of 5 confirmed", len(acked))
		}
		home.stop(t)
		home.start(t, nil)
		caughtUp(t, nodes[0], home)
		waitMessages(t, nodes[0], "rq", 5)
		waitMessages(t, home, "rq", 5)
		for _, nd := range nodes {
			if keys := bindingKeys(nd, "cfx", "rq"); !slices.Equal(keys, []string{"rq"}) {
				t.Fatalf("rq's bindings to cfx on %s: %v, want [rq]", nd.name, keys)
			}
		}
	}
	again()

	// The home node leaves (and deletes rq), joins again as a new node,
	// and declares rq again: its log, from the others' first entry, has
	// its removal, which its restart applies again.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := home.cl.RemoveMember(ctx, home.name); err != nil {
		t.Fatal(err)
	}
	queueGone(t, nodes[0], "rq")
	home.stop(t)
	home.dir, home.join, home.peers = t.TempDir(), true, nodes[0].peers[:2]
	home.start(t, nil)
	if err := nodes[0].cl.AddMember(ctx, home.self); err != nil {
		t.Fatal(err)
	}
	caughtUp(t, nodes[0], home)
	queueGone(t, home, "rq")
	again()
}

// bindingKeys are the routing keys of queue's bindings to exchange on nd.
func bindingKeys(nd *node, exchange, queue string) []string {
	var keys []string
	for _, b := range nd.srv.VHost("/").Bindings() {
		if b.Source == exchange && !b.ToExchange && b.Destination == queue {
			keys = append(keys, b.RoutingKey)
		}
	}
	return keys
}

// A classic queue deleted and declared again with other arguments and
// flags while a member was down, and its entries compacted into a
// snapshot: the member, restored from it, has the new declaration (its
// record of the old one is not equivalent, so it is replaced rather than
// declared over, which a declaration's equivalence check refuses), and
// the queue's messages and binding.
func TestClassicQueueRedeclaredWhileMemberDown(t *testing.T) {
	nodes := startCluster(t, 3, 64)
	home, away := nodes[0], nodes[2]
	declareBound(t, nodes, home, "aq")
	away.stop(t)
	_, ch := dial(t, home.url)
	if _, err := ch.QueueDelete("aq", false, false, false); err != nil {
		t.Fatal(err)
	}
	args := amqp.Table{"x-max-length": int32(7), "x-message-ttl": int32(600000)}
	if _, err := ch.QueueDeclare("aq", true, true, false, false, args); err != nil { // now auto-delete too
		t.Fatal(err)
	}
	if err := ch.QueueBind("aq", "aq", "cfx", false, nil); err != nil {
		t.Fatal(err)
	}
	if acked := publishConfirmed(t, nodes[1].url, "aq", 0, 3); len(acked) != 3 {
		t.Fatalf("%d of 3 confirmed", len(acked))
	}
	_, xch := dial(t, home.url)
	for i := range 2 * 64 { // past two snapshots: the others compact past what the away one has
		if err := xch.ExchangeDeclare(fmt.Sprintf("fill%d", i), "direct", true, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
	}
	away.start(t, nil)
	caughtUp(t, home, away)
	waitFor(t, 10*time.Second, "aq as declared again on "+away.name, func() error {
		st := queueState(t, away, "aq")
		got, _ := json.Marshal(st["arguments"])
		if string(got) != `{"x-max-length":7,"x-message-ttl":600000}` || st["auto_delete"] != true {
			return fmt.Errorf("arguments %s, auto_delete %v", got, st["auto_delete"])
		}
		return nil
	})
	waitMessages(t, away, "aq", 3)
	if !boundTo(away, "cfx", "aq") {
		t.Fatal("aq lost its binding on " + away.name)
	}
}
