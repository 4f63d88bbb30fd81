package quorumtest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// lockedText is RabbitMQ's 405 for another connection's exclusive queue.
func lockedText(queue string) string {
	return fmt.Sprintf("RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '%s' in vhost '/'. It could be originally declared on another connection or the exclusive property value does not match that of the original declaration.", queue)
}

// wantLocked fails unless err is RabbitMQ's 405 for queue.
func wantLocked(t *testing.T, what string, err error, queue string) {
	t.Helper()
	var ae *amqp.Error
	if !errors.As(err, &ae) || ae.Code != 405 || ae.Reason != lockedText(queue) {
		t.Fatalf("%s: %v; want 405 %q", what, err, lockedText(queue))
	}
}

// publishReturned publishes body to queue through the default exchange
// on url, mandatory, with confirms, and reports whether it was returned
// (unroutable) and whether it was confirmed.
func publishReturned(t *testing.T, url, queue, body string) (returned, acked bool) {
	t.Helper()
	_, ch := dial(t, url)
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	rets := ch.NotifyReturn(make(chan amqp.Return, 1))
	dc, err := ch.PublishWithDeferredConfirm("", queue, true, false, amqp.Publishing{Body: []byte(body)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	acked, err = dc.WaitContext(ctx)
	if err != nil {
		t.Fatalf("confirm of %s: %v", body, err)
	}
	select {
	case <-rets:
		returned = true
	default: // the return comes before the confirm
	}
	return returned, acked
}

// The RPC pattern across members, as RabbitMQ's cluster runs it: a
// client's server-named exclusive reply queue on one member gets the
// replies a server on another publishes to it; other connections, on
// any member, get RabbitMQ's 405 for a declare (passive, or of a named
// one), a consume, a bind and a delete; the owner's connection closing deletes it from every member,
// after which another connection declares the name again, elsewhere.
func TestExclusiveQueueAcrossMembers(t *testing.T) {
	nodes := startCluster(t, 3)
	owner, server, other := nodes[0], nodes[1], nodes[2]
	oconn, och := dial(t, owner.url)
	var name string
	waitFor(t, 15*time.Second, "declare on "+owner.name, func() error {
		q, err := och.QueueDeclare("", false, true, true, false, nil)
		if err != nil {
			_, och = dial(t, owner.url)
		}
		name = q.Name
		return err
	})
	for _, nd := range nodes {
		waitFor(t, 10*time.Second, name+" on "+nd.name, func() error {
			if q := nd.srv.VHost("/").Queue(name); q == nil {
				return errors.New("not listed")
			}
			return nil
		})
	}
	if h := queueOn(t, other, name); !h.Remote() || h.HomeNode() != owner.name {
		t.Fatalf("%s on %s: remote %v, home %q; want remote, homed on %s", name, other.name, h.Remote(), h.HomeNode(), owner.name)
	}
	ds, err := och.Consume(name, "", true, true, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if returned, acked := publishReturned(t, server.url, name, "reply-1"); returned || !acked {
		t.Fatalf("reply published on %s: returned %v, acked %v; want routed and acked", server.name, returned, acked)
	}
	select {
	case d := <-ds:
		if string(d.Body) != "reply-1" {
			t.Fatalf("got %q, want reply-1", d.Body)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no reply on %s", owner.name)
	}

	for _, nd := range []*node{owner, server, other} {
		_, ch := dial(t, nd.url)
		_, err := ch.QueueDeclarePassive(name, false, true, true, false, nil)
		wantLocked(t, "passive declare on "+nd.name, err, name)
		_, ch = dial(t, nd.url)
		_, err = ch.Consume(name, "", true, false, false, false, nil)
		wantLocked(t, "consume on "+nd.name, err, name)
		_, ch = dial(t, nd.url)
		wantLocked(t, "bind on "+nd.name, ch.QueueBind(name, "k", "amq.direct", false, nil), name)
		_, ch = dial(t, nd.url)
		_, err = ch.QueueDelete(name, false, false, false)
		wantLocked(t, "delete on "+nd.name, err, name)
	}

	// A named exclusive queue is locked cluster-wide too.
	if _, err := och.QueueDeclare("rpc-named", false, false, true, false, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "rpc-named on "+other.name, func() error {
		if other.srv.VHost("/").Queue("rpc-named") == nil {
			return errors.New("not listed")
		}
		return nil
	})
	for _, nd := range nodes {
		_, ch := dial(t, nd.url)
		_, err = ch.QueueDeclare("rpc-named", false, false, true, false, nil)
		wantLocked(t, "declare rpc-named on "+nd.name, err, "rpc-named")
	}

	oconn.Close()
	for _, nd := range nodes {
		for _, q := range []string{name, "rpc-named"} {
			waitFor(t, 10*time.Second, q+" gone from "+nd.name, func() error {
				if nd.srv.VHost("/").Queue(q) != nil {
					return errors.New("still listed")
				}
				_, _, err := passive(nd.url, q)
				var ae *amqp.Error
				if !errors.As(err, &ae) || ae.Code != 404 {
					return fmt.Errorf("passive declare: %v; want 404", err)
				}
				return nil
			})
		}
	}
	if returned, _ := publishReturned(t, server.url, name, "reply-2"); !returned {
		t.Fatalf("a publish to the deleted %s was not returned", name)
	}
	// The name is free again, for a connection on another member.
	_, ch := dial(t, other.url)
	if _, err := ch.QueueDeclare("rpc-named", false, false, true, false, nil); err != nil {
		t.Fatalf("declare rpc-named again on %s: %v", other.name, err)
	}
	waitFor(t, 10*time.Second, "rpc-named homed on "+other.name, func() error {
		q := owner.srv.VHost("/").Queue("rpc-named")
		if q == nil || q.HomeNode() != other.name {
			return errors.New("not listed with its new home")
		}
		return nil
	})
}

// A transient (non-durable) classic queue is the cluster's, homed on the
// member it was declared on, and does not outlive that member's start,
// as RabbitMQ's do not: publishes from another member reach it; with its
// home node stopped, it goes from the others (the metadata leader's
// doing), and, restarted, the home node does not bring it back. A
// durable queue homed there stays, with its messages.
func TestTransientQueueGoesWithHome(t *testing.T) {
	nodes, home := startWithHome(t)
	waitFor(t, 15*time.Second, "declare on the home node", func() error {
		_, ch := dial(t, home.url)
		if _, err := ch.QueueDeclare("tq", false, false, false, false, nil); err != nil {
			return err
		}
		_, err := ch.QueueDeclare("dq", true, false, false, false, nil)
		return err
	})
	for _, nd := range nodes {
		for _, q := range []string{"tq", "dq"} {
			waitFor(t, 10*time.Second, q+" on "+nd.name, func() error { _, _, err := passive(nd.url, q); return err })
		}
	}
	if returned, acked := publishReturned(t, nodes[0].url, "tq", "t1"); returned || !acked {
		t.Fatalf("publish to tq on %s: returned %v, acked %v", nodes[0].name, returned, acked)
	}
	if acked := publishConfirmed(t, nodes[0].url, "dq", 0, 3); len(acked) != 3 {
		t.Fatalf("%d of 3 confirmed to dq", len(acked))
	}
	waitMessages(t, nodes[1], "tq", 1)

	home.stop(t)
	// Until the cluster deletes it, a consume says its home is down (not
	// that it is durable); after, that there is no such queue.
	_, ch := dial(t, nodes[1].url)
	_, err := ch.Consume("tq", "", false, false, false, false, nil)
	var ae *amqp.Error
	down := fmt.Sprintf("NOT_FOUND - home node '%s' of queue 'tq' in vhost '/' is down or inaccessible", home.name)
	if !errors.As(err, &ae) || ae.Code != 404 || ae.Reason != down && ae.Reason != "NOT_FOUND - no queue 'tq' in vhost '/'" {
		t.Fatalf("consume tq with its home down: %v; want 404 %q or no queue", err, down)
	}
	for _, nd := range nodes[:2] {
		waitFor(t, 20*time.Second, "tq gone from "+nd.name, func() error {
			if nd.srv.VHost("/").Queue("tq") != nil {
				return errors.New("still listed")
			}
			return nil
		})
		if nd.srv.VHost("/").Queue("dq") == nil {
			t.Fatalf("dq, durable, gone from %s while its home is down", nd.name)
		}
	}
	home.start(t, nil)
	caughtUp(t, nodes[0], home)
	for _, nd := range nodes {
		waitMessages(t, nd, "dq", 3)
		if nd.srv.VHost("/").Queue("tq") != nil {
			t.Fatalf("tq back on %s after its home's restart", nd.name)
		}
	}
}

// A home node that restarts before the others judge it gone deletes its
// former transient and exclusive queues itself, from every member.
func TestTransientQueueHomeRestartsQuickly(t *testing.T) {
	nodes, home := startWithHome(t)
	waitFor(t, 15*time.Second, "declare on the home node", func() error {
		c, ch := dial(t, home.url)
		if _, err := ch.QueueDeclare("tq2", false, false, false, false, nil); err != nil {
			return err
		}
		_, err := ch.QueueDeclare("xq2", false, false, true, false, nil)
		c.Close() // xq2 goes with it, but tq2 stays
		return err
	})
	waitFor(t, 10*time.Second, "tq2 on "+nodes[0].name, func() error { _, _, err := passive(nodes[0].url, "tq2"); return err })
	home.stop(t)
	home.start(t, nil)
	for _, nd := range nodes {
		waitFor(t, 20*time.Second, "tq2 gone from "+nd.name, func() error {
			if nd.srv.VHost("/").Queue("tq2") != nil || nd.srv.VHost("/").Queue("xq2") != nil {
				return errors.New("still listed")
			}
			return nil
		})
	}
}
