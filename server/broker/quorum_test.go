package broker_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/amqp-go/amqp-go/server/broker"
	"github.com/amqp-go/amqp-go/server/servertest"
	amqp "github.com/rabbitmq/amqp091-go"
)

// quorum is a quorum queue's x-queue-type, with more arguments.
func quorum(more amqp.Table) amqp.Table {
	args := amqp.Table{"x-queue-type": "quorum"}
	for k, v := range more {
		args[k] = v
	}
	return args
}

// TestQuorumDeclareRefusals: what a quorum queue cannot be, and the
// arguments of one queue type given to the other, get RabbitMQ 3.10's
// 406 texts.
func TestQuorumDeclareRefusals(t *testing.T) {
	u := brokerURL(t)
	conn := openConn(t, u)
	for _, tc := range []struct {
		name                           string
		durable, exclusive, autoDelete bool
		args                           amqp.Table
		text                           string // %s: the queue's name
	}{
		{"non-durable", false, false, false, quorum(nil), "invalid property 'non-durable' for queue '%s' in vhost '/'"},
		{"exclusive", true, true, false, quorum(nil), "invalid property 'exclusive-owner' for queue '%s' in vhost '/'"},
		{"auto-delete", true, false, true, quorum(nil), "invalid property 'auto-delete' for queue '%s' in vhost '/'"},
		{"all three", false, true, true, quorum(nil), "invalid property 'auto-delete' for queue '%s' in vhost '/'"},
		{"max priority", true, false, false, quorum(amqp.Table{"x-max-priority": int32(5)}),
			"invalid arg 'x-max-priority' for queue '%s' in vhost '/' of queue type rabbit_quorum_queue"},
		{"queue mode", true, false, false, quorum(amqp.Table{"x-queue-mode": "lazy"}),
			"invalid arg 'x-queue-mode' for queue '%s' in vhost '/' of queue type rabbit_quorum_queue"},
		{"queue version", true, false, false, quorum(amqp.Table{"x-queue-version": int32(2)}),
			"invalid arg 'x-queue-version' for queue '%s' in vhost '/' of queue type rabbit_quorum_queue"},
		{"dead-letter strategy", true, false, false, quorum(amqp.Table{"x-dead-letter-strategy": "nope"}),
			"invalid arg 'x-dead-letter-strategy' for queue '%s' in vhost '/': invalid_dlx_strategy"},
		{"group size type", true, false, false, quorum(amqp.Table{"x-quorum-initial-group-size": "3"}),
			`invalid arg 'x-quorum-initial-group-size' for queue '%s' in vhost '/': "expected integer, got longstr"`},
		{"group size zero", true, false, false, quorum(amqp.Table{"x-quorum-initial-group-size": int32(0)}),
			"invalid arg 'x-quorum-initial-group-size' for queue '%s' in vhost '/': {value_zero,0}"},
		{"leader locator", true, false, false, quorum(amqp.Table{"x-queue-leader-locator": "nope"}),
			"invalid arg 'x-queue-leader-locator' for queue '%s' in vhost '/': invalid_queue_locator_arg"},
		{"leader locator type", true, false, false, quorum(amqp.Table{"x-queue-leader-locator": int32(5)}),
			"invalid arg 'x-queue-leader-locator' for queue '%s' in vhost '/': {unacceptable_type,signedint}"},
		{"in-memory length type", true, false, false, quorum(amqp.Table{"x-max-in-memory-length": "x"}),
			`invalid arg 'x-max-in-memory-length' for queue '%s' in vhost '/': "expected integer, got longstr"`},
		{"classic delivery limit", true, false, false, amqp.Table{"x-delivery-limit": int32(3)},
			"invalid arg 'x-delivery-limit' for queue '%s' in vhost '/' of queue type rabbit_classic_queue"},
		{"classic strategy", true, false, false, amqp.Table{"x-dead-letter-strategy": "at-most-once"},
			"invalid arg 'x-dead-letter-strategy' for queue '%s' in vhost '/' of queue type rabbit_classic_queue"},
		{"classic group size", true, false, false, amqp.Table{"x-quorum-initial-group-size": int32(3)},
			"invalid arg 'x-quorum-initial-group-size' for queue '%s' in vhost '/' of queue type rabbit_classic_queue"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := uname(t, "q")
			cleanupQueues(t, u, q)
			_, err := openChan(t, conn).QueueDeclare(q, tc.durable, tc.autoDelete, tc.exclusive, false, tc.args)
			wantErr(t, err, 406, "PRECONDITION_FAILED - "+fmt.Sprintf(tc.text, q))
		})
	}
	t.Run("server-named", func(t *testing.T) {
		_, err := openChan(t, conn).QueueDeclare("", true, false, false, false, quorum(nil))
		wantErr(t, err, 406, "PRECONDITION_FAILED - Cannot declare a server-named queue for type rabbit_quorum_queue")
	})
}

// TestQuorumRedeclare: a quorum queue redeclared as classic, or with
// another delivery limit, is inequivalent, with RabbitMQ 3.10's texts.
func TestQuorumRedeclare(t *testing.T) {
	u := brokerURL(t)
	conn := openConn(t, u)
	q := uname(t, "q")
	cleanupQueues(t, u, q)
	if _, err := openChan(t, conn).QueueDeclare(q, true, false, false, false, quorum(nil)); err != nil {
		t.Fatal(err)
	}
	if _, err := openChan(t, conn).QueueDeclare(q, true, false, false, false, quorum(nil)); err != nil {
		t.Fatalf("an equivalent redeclare: %v", err)
	}
	_, err := openChan(t, conn).QueueDeclare(q, true, false, false, false, nil)
	wantErr(t, err, 406, "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue '"+q+
		"' in vhost '/': received none but current is the value 'quorum' of type 'longstr'")
	_, err = openChan(t, conn).QueueDeclare(q, true, false, false, false, amqp.Table{"x-queue-type": "classic"})
	wantErr(t, err, 406, "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue '"+q+
		"' in vhost '/': received 'classic' but current is 'quorum'")
	_, err = openChan(t, conn).QueueDeclare(q, true, false, false, false, quorum(amqp.Table{"x-delivery-limit": int32(5)}))
	wantErr(t, err, 406, "PRECONDITION_FAILED - inequivalent arg 'x-delivery-limit' for queue '"+q+
		"' in vhost '/': received the value '5' of type 'signedint' but current is none")
}

// TestQuorumDeliveryLimit: a quorum queue's message carries
// x-delivery-count from its first delivery (0, then 1, 2); requeued after
// x-delivery-limit + 1 deliveries it is dead-lettered with reason
// delivery_limit, without that header, as RabbitMQ 3.10 does.
func TestQuorumDeliveryLimit(t *testing.T) {
	u := brokerURL(t)
	conn := openConn(t, u)
	ch := openChan(t, conn)
	poison, dead, dlx := uname(t, "poison"), uname(t, "dead"), uname(t, "dlx")
	cleanupQueues(t, u, poison, dead)
	t.Cleanup(func() { _ = openChan(t, openConn(t, u)).ExchangeDelete(dlx, false, false) })
	if err := ch.ExchangeDeclare(dlx, "fanout", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare(dead, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(dead, "", dlx, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare(poison, true, false, false, false,
		quorum(amqp.Table{"x-delivery-limit": int32(2), "x-dead-letter-exchange": dlx})); err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	dc, err := ch.PublishWithDeferredConfirm("", poison, false, false,
		amqp.Publishing{DeliveryMode: amqp.Persistent, Headers: amqp.Table{"h": int32(1)}, Body: []byte("p")})
	if err != nil || !dc.Wait() {
		t.Fatalf("publish: %v", err)
	}
	for i := range int64(3) {
		m := getPolling(t, ch, poison)
		if n, ok := m.Headers["x-delivery-count"].(int64); !ok || n != i || m.Redelivered != (i > 0) {
			t.Fatalf("delivery %d: x-delivery-count %v, redelivered %v; want %d, %v", i, m.Headers["x-delivery-count"], m.Redelivered, i, i > 0)
		}
		if err := m.Nack(false, true); err != nil {
			t.Fatal(err)
		}
	}
	d, ok := getWithin(t, ch, dead, 5*time.Second)
	if !ok {
		t.Fatal("nothing dead-lettered after 5s")
	}
	if _, ok := d.Headers["x-delivery-count"]; ok {
		t.Errorf("the dead-lettered copy has x-delivery-count: %v", d.Headers)
	}
	deaths, _ := d.Headers["x-death"].([]any)
	if len(deaths) != 1 || d.Headers["x-first-death-reason"] != "delivery_limit" {
		t.Fatalf("x-death %v, x-first-death-reason %v", d.Headers["x-death"], d.Headers["x-first-death-reason"])
	}
	death, _ := deaths[0].(amqp.Table)
	if death["reason"] != "delivery_limit" || death["queue"] != poison || death["count"] != int64(1) {
		t.Fatalf("x-death entry %v", death)
	}
	if _, ok, err := ch.Get(poison, true); err != nil || ok {
		t.Fatalf("the poison queue still holds the message: %v %v", ok, err)
	}
}

// TestQuorumDefaultDeliveryLimit: without x-delivery-limit a quorum
// queue has RabbitMQ 4.0's default of 20: the 21st requeue drops the
// message (no dead-letter exchange). RabbitMQ 3.10 had no default.
func TestQuorumDefaultDeliveryLimit(t *testing.T) {
	inProcessOnly(t, "RabbitMQ 3.10's quorum queues have no default delivery limit (4.0's is 20)")
	u := brokerURL(t)
	conn := openConn(t, u)
	ch := openChan(t, conn)
	q := uname(t, "q")
	cleanupQueues(t, u, q)
	if _, err := ch.QueueDeclare(q, true, false, false, false, quorum(nil)); err != nil {
		t.Fatal(err)
	}
	if err := ch.Publish("", q, false, false, amqp.Publishing{Body: []byte("p")}); err != nil {
		t.Fatal(err)
	}
	for i := range 21 {
		m := getPolling(t, ch, q)
		if err := m.Nack(false, true); err != nil {
			t.Fatalf("delivery %d: %v", i, err)
		}
	}
	if _, ok, err := ch.Get(q, true); err != nil || ok {
		t.Fatalf("after 21 deliveries the message is still there: %v %v", ok, err)
	}
}

// getPolling gets one message from q to be acked, polling for up to 5 s.
func getPolling(t *testing.T, ch *amqp.Channel, q string) amqp.Delivery {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		m, ok, err := ch.Get(q, false)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("no message in %s after 5s", q)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestQuorumRestart: a quorum queue and its persistent messages survive a
// restart, still a quorum queue with its delivery limit.
func TestQuorumRestart(t *testing.T) {
	inProcessOnly(t, "restarts the server")
	dir := t.TempDir()
	s, url := servertest.StartServer(t, broker.Config{DataDir: dir})
	ch := openChan(t, openConn(t, url))
	args := quorum(amqp.Table{"x-delivery-limit": int32(3)})
	if _, err := ch.QueueDeclare("qq", true, false, false, false, args); err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	dc, err := ch.PublishWithDeferredConfirm("", "qq", false, false, amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte("kept")})
	if err != nil || !dc.Wait() {
		t.Fatalf("publish: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, url = servertest.StartServer(t, broker.Config{DataDir: dir})
	if q := s.VHost("/").Queue("qq"); q == nil || q.Type() != "quorum" {
		t.Fatalf("after the restart: queue %v", q)
	}
	ch = openChan(t, openConn(t, url))
	if _, err := ch.QueueDeclare("qq", true, false, false, false, args); err != nil {
		t.Fatalf("an equivalent redeclare after the restart: %v", err)
	}
	m := getPolling(t, ch, "qq")
	if string(m.Body) != "kept" {
		t.Fatalf("body %q", m.Body)
	}
	if _, ok := m.Headers["x-delivery-count"]; !ok {
		t.Fatalf("no x-delivery-count: %v", m.Headers)
	}
}

// TestQuorumDeliveryLimitPolicy: a policy's delivery-limit applies to a
// quorum queue without the argument, and the smaller of the two applies
// with it.
func TestQuorumDeliveryLimitPolicy(t *testing.T) {
	inProcessOnly(t, "sets a policy through the broker")
	s, url := servertest.StartServer(t, broker.Config{})
	serverPolicies{s}.set(t, false, "limits", `^lim\.`, "queues", 0, `{"delivery-limit": 1}`)
	ch := openChan(t, openConn(t, url))
	for _, tc := range []struct {
		name       string
		args       amqp.Table
		deliveries int // before the message is gone
	}{
		{"lim.policy", quorum(nil), 2},
		{"lim.smaller-arg", quorum(amqp.Table{"x-delivery-limit": int32(0)}), 1},
		{"lim.larger-arg", quorum(amqp.Table{"x-delivery-limit": int32(5)}), 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ch.QueueDeclare(tc.name, true, false, false, false, tc.args); err != nil {
				t.Fatal(err)
			}
			if err := ch.Publish("", tc.name, false, false, amqp.Publishing{Body: []byte("p")}); err != nil {
				t.Fatal(err)
			}
			for range tc.deliveries {
				if err := getPolling(t, ch, tc.name).Nack(false, true); err != nil {
					t.Fatal(err)
				}
			}
			if m, ok, err := ch.Get(tc.name, true); err != nil || ok {
				t.Fatalf("after %d deliveries: %v %v %v", tc.deliveries, ok, err, m.Headers)
			}
		})
	}
}

// TestQuorumKeepsTransient: a quorum queue keeps even transient messages
// in the log, as RabbitMQ's writes every message to its log: after a
// restart it has them, while a durable classic queue the same publishes
// went to has not.
func TestQuorumKeepsTransient(t *testing.T) {
	inProcessOnly(t, "restarts the server")
	dir := t.TempDir()
	s, url := servertest.StartServer(t, broker.Config{DataDir: dir})
	ch := openChan(t, openConn(t, url))
	if _, err := ch.QueueDeclare("qt", true, false, false, false, quorum(nil)); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("ct", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"qt", "ct"} {
		if err := ch.QueueBind(q, "", "amq.fanout", false, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{"one", "two"} {
		dc, err := ch.PublishWithDeferredConfirm("amq.fanout", "", false, false, amqp.Publishing{DeliveryMode: amqp.Transient, Body: []byte(b)})
		if err != nil || !dc.Wait() {
			t.Fatalf("publish: %v", err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	_, url = servertest.StartServer(t, broker.Config{DataDir: dir})
	ch = openChan(t, openConn(t, url))
	for q, want := range map[string]int{"qt": 2, "ct": 0} {
		st, err := ch.QueueDeclarePassive(q, true, false, false, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		if st.Messages != want {
			t.Errorf("%s after the restart: %d messages, want %d", q, st.Messages, want)
		}
	}
	for _, want := range []string{"one", "two"} {
		if m := getPolling(t, ch, "qt"); string(m.Body) != want {
			t.Fatalf("body %q, want %q", m.Body, want)
		}
	}
}

// TestQuorumGlobalQos: a consumer of a quorum queue on a channel with a
// channel-wide prefetch (basic.qos global) closes the connection with
// RabbitMQ 3.10's 540; a global prefetch of 0, and a consumer priority,
// are accepted.
func TestQuorumGlobalQos(t *testing.T) {
	u := brokerURL(t)
	q := uname(t, "q")
	cleanupQueues(t, u, q)
	conn := openConn(t, u)
	if _, err := openChan(t, conn).QueueDeclare(q, true, false, false, false, quorum(nil)); err != nil {
		t.Fatal(err)
	}
	ok := openChan(t, conn)
	if err := ok.Qos(0, 0, true); err != nil {
		t.Fatal(err)
	}
	if _, err := ok.Consume(q, "", false, false, false, false, amqp.Table{"x-priority": int32(5)}); err != nil {
		t.Fatalf("global prefetch 0, a consumer priority: %v", err)
	}
	bad := openConn(t, u)
	ch := openChan(t, bad)
	if err := ch.Qos(10, 0, true); err != nil {
		t.Fatal(err)
	}
	closed := bad.NotifyClose(make(chan *amqp.Error, 1))
	_, err := ch.Consume(q, "", false, false, false, false, nil)
	want := "NOT_IMPLEMENTED - queue '" + q + "' in vhost '/' does not support global qos"
	if e, isAMQP := err.(*amqp.Error); !isAMQP || e.Code != 540 || e.Reason != want {
		t.Fatalf("consume with a global prefetch: %v, want 540 %q", err, want)
	}
	select {
	case e := <-closed:
		if e == nil || e.Code != 540 {
			t.Fatalf("the connection closed with %v, want 540", e)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the connection is still open after 5s")
	}
}

// publishConfirm publishes body to queue on ch (in confirm mode) and
// reports whether it was acked.
func publishConfirm(t *testing.T, ch *amqp.Channel, queue, body string) bool {
	t.Helper()
	dc, err := ch.PublishWithDeferredConfirm("", queue, false, false, amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte(body)})
	if err != nil {
		t.Fatal(err)
	}
	return dc.Wait()
}

// TestQuorumDeadLetterAtLeastOnce: on a single node too, a quorum
// queue's dead-letter at least once (x-dead-letter-strategy
// at-least-once, reject-publish) that its target refuses (full) is held,
// in the source's limit, and arrives once the target has room; at most
// once, the same dead-letter is lost.
func TestQuorumDeadLetterAtLeastOnce(t *testing.T) {
	inProcessOnly(t, "RabbitMQ republishes an unconfirmed dead-letter after dead_letter_worker_publisher_confirm_timeout, minutes by default")
	u := brokerURL(t)
	ch := openChan(t, openConn(t, u))
	dlx, target, most, least := uname(t, "dlx"), uname(t, "target"), uname(t, "most"), uname(t, "least")
	cleanupQueues(t, u, target, most, least)
	if err := ch.ExchangeDeclare(dlx, "fanout", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare(target, true, false, false, false, amqp.Table{"x-max-length": int32(1), "x-overflow": "reject-publish"}); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(target, "", dlx, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	if !publishConfirm(t, ch, target, "filler") {
		t.Fatal("filler nacked")
	}
	for q, strategy := range map[string]string{most: "at-most-once", least: "at-least-once"} {
		if _, err := ch.QueueDeclare(q, true, false, false, false, quorum(amqp.Table{"x-dead-letter-exchange": dlx,
			"x-dead-letter-strategy": strategy, "x-overflow": "reject-publish", "x-max-length": int32(1)})); err != nil {
			t.Fatal(err)
		}
		if !publishConfirm(t, ch, q, "m-"+strategy) {
			t.Fatalf("m-%s nacked", strategy)
		}
		if err := getPolling(t, ch, q).Nack(false, false); err != nil {
			t.Fatal(err)
		}
	}
	// The held one fills its queue; the other queue has room.
	deadline := time.Now().Add(5 * time.Second)
	for publishConfirm(t, ch, least, "over") {
		if time.Now().After(deadline) {
			t.Fatal("the at-least-once queue takes publishes: its dead-letter is not held")
		}
		if _, ok, err := ch.Get(least, true); err != nil || !ok {
			t.Fatalf("get back the admitted one: %v %v", ok, err)
		}
	}
	if !publishConfirm(t, ch, most, "room") {
		t.Fatal("the at-most-once queue is full: its dead-letter was kept")
	}
	if d, ok, err := ch.Get(target, true); err != nil || !ok || string(d.Body) != "filler" {
		t.Fatalf("the filler: %q %v %v", d.Body, ok, err)
	}
	d, ok := getWithin(t, ch, target, 15*time.Second)
	if !ok {
		t.Fatal("the held dead-letter did not arrive in 15 s")
	}
	deaths, _ := d.Headers["x-death"].([]any)
	var death amqp.Table
	if len(deaths) > 0 {
		death, _ = deaths[0].(amqp.Table)
	}
	if string(d.Body) != "m-at-least-once" || death["reason"] != "rejected" || death["queue"] != least {
		t.Fatalf("the target got %q with x-death %v", d.Body, d.Headers["x-death"])
	}
	deadline = time.Now().Add(5 * time.Second)
	for !publishConfirm(t, ch, least, "after") {
		if time.Now().After(deadline) {
			t.Fatal("the at-least-once queue still full after its dead-letter was confirmed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if d, ok, err := ch.Get(target, true); err != nil || ok {
		t.Fatalf("the target got a second message %q (%v)", d.Body, err)
	}
}
