package broker_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

const lockedText = "' in vhost '/'. It could be originally declared on another connection or the exclusive property value does not match that of the original declaration."

func TestQueueServerNamed(t *testing.T) {
	_, ch := dial(t, brokerURL(t))
	seen := map[string]bool{}
	for i := 0; i < 5; i++ {
		q, err := ch.QueueDeclare("", false, true, true, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(q.Name, "amq.gen-") || len(q.Name) <= len("amq.gen-") || seen[q.Name] {
			t.Fatalf("server-named queue %q", q.Name)
		}
		seen[q.Name] = true
		if q.Messages != 0 || q.Consumers != 0 {
			t.Fatalf("fresh queue counts %+v", q)
		}
	}
}

func TestQueuePassive(t *testing.T) {
	u := brokerURL(t)
	conn, ch := dial(t, u)
	name := uname(t, "q")
	_, err := ch.QueueDeclarePassive(name, false, false, false, false, nil)
	wantErr(t, err, 404, "NOT_FOUND - no queue '"+name+"' in vhost '/'")
	ch = openChan(t, conn)
	declareQueue(t, u, ch, name)
	// Passive ignores the flags.
	if _, err := ch.QueueDeclarePassive(name, true, true, false, false, nil); err != nil {
		t.Fatalf("passive on an existing queue: %v", err)
	}
}

func TestQueueDurableEquivalence(t *testing.T) {
	u := brokerURL(t)
	conn, ch := dial(t, u)
	name := uname(t, "durable")
	if _, err := ch.QueueDeclare(name, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	cleanupQueues(t, u, name)
	if _, err := ch.QueueDeclare(name, true, false, false, false, nil); err != nil {
		t.Fatalf("equivalent redeclare: %v", err)
	}
	for _, tc := range []struct {
		name                string
		durable, auto, excl bool
		args                amqp.Table
		text                string
	}{
		{"durable", false, false, false, nil, "PRECONDITION_FAILED - inequivalent arg 'durable' for queue '" + name + "' in vhost '/': received 'false' but current is 'true'"},
		{"auto_delete", true, true, false, nil, "PRECONDITION_FAILED - inequivalent arg 'auto_delete' for queue '" + name + "' in vhost '/': received 'true' but current is 'false'"},
		{"x-max-length", true, false, false, amqp.Table{"x-max-length": int32(10)}, "PRECONDITION_FAILED - inequivalent arg 'x-max-length' for queue '" + name + "' in vhost '/': received the value '10' of type 'signedint' but current is none"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ch := openChan(t, conn)
			_, err := ch.QueueDeclare(name, tc.durable, tc.auto, tc.excl, false, tc.args)
			wantErr(t, err, 406, tc.text)
		})
	}
}

func TestQueueExclusive(t *testing.T) {
	u := brokerURL(t)
	owner := openConn(t, u)
	och := openChan(t, owner)
	name := uname(t, "excl")
	if _, err := och.QueueDeclare(name, false, false, true, false, nil); err != nil {
		t.Fatal(err)
	}
	publish(t, och, "", name, body("mine"))
	other := openConn(t, u)
	locked := "RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '" + name + lockedText
	for opName, do := range map[string]func(ch *amqp.Channel) error{
		"declare": func(ch *amqp.Channel) error {
			_, err := ch.QueueDeclare(name, false, false, true, false, nil)
			return err
		},
		"passive": func(ch *amqp.Channel) error {
			_, err := ch.QueueDeclarePassive(name, false, false, true, false, nil)
			return err
		},
		"consume": func(ch *amqp.Channel) error {
			_, err := ch.Consume(name, "", false, false, false, false, nil)
			return err
		},
		"get": func(ch *amqp.Channel) error {
			_, _, err := ch.Get(name, false)
			return err
		},
		"purge": func(ch *amqp.Channel) error {
			_, err := ch.QueuePurge(name, false)
			return err
		},
		"delete": func(ch *amqp.Channel) error {
			_, err := ch.QueueDelete(name, false, false, false)
			return err
		},
		"bind": func(ch *amqp.Channel) error { return ch.QueueBind(name, "k", "amq.direct", false, nil) },
	} {
		t.Run(opName, func(t *testing.T) {
			wantErr(t, do(openChan(t, other)), 405, locked)
		})
	}
	// The owner still uses it; when the owner goes, so does the queue.
	if d := getBody(t, och, name, true); string(d.Body) != "mine" {
		t.Fatalf("got %q", d.Body)
	}
	owner.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ch := openChan(t, other)
		_, err := ch.QueueDeclarePassive(name, false, false, false, false, nil)
		if e, ok := err.(*amqp.Error); ok && e.Code == 404 {
			break
		}
		ch.Close()
		if time.Now().After(deadline) {
			t.Fatalf("exclusive queue survived its connection: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestQueueAutoDelete(t *testing.T) {
	u := brokerURL(t)
	conn, ch := dial(t, u)
	name := uname(t, "ad")
	if _, err := ch.QueueDeclare(name, false, true, false, false, nil); err != nil {
		t.Fatal(err)
	}
	cleanupQueues(t, u, name)
	// Never consumed from: it stays.
	if _, c := queueCounts(t, conn, name); c != 0 {
		t.Fatalf("consumers %d", c)
	}
	if _, err := ch.Consume(name, "c1", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.Consume(name, "c2", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, c := queueCounts(t, conn, name); c != 2 {
		t.Fatalf("consumers %d, want 2", c)
	}
	if err := ch.Cancel("c1", false); err != nil {
		t.Fatal(err)
	}
	if _, c := queueCounts(t, conn, name); c != 1 {
		t.Fatalf("consumers %d, want 1", c)
	}
	if err := ch.Cancel("c2", false); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		ch := openChan(t, conn)
		_, err := ch.QueueDeclarePassive(name, false, true, false, false, nil)
		if err != nil {
			wantErr(t, err, 404, "NOT_FOUND - no queue '"+name+"' in vhost '/'")
			break
		}
		ch.Close()
		if time.Now().After(deadline) {
			t.Fatal("auto-delete queue survived its last consumer")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestQueueDeclareOkCounts(t *testing.T) {
	u := brokerURL(t)
	conn, ch := dial(t, u)
	name := uname(t, "counts")
	declareQueue(t, u, ch, name)
	for i := 0; i < 3; i++ {
		publish(t, ch, "", name, body(fmt.Sprint(i)))
	}
	waitCount(t, conn, name, 3)
	q, err := ch.QueueDeclare(name, false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if q.Messages != 3 || q.Consumers != 0 {
		t.Fatalf("declare-ok %+v, want 3 messages 0 consumers", q)
	}
	// An unacked message is not counted; a consumer is.
	d := getBody(t, ch, name, false)
	cch := openChan(t, conn)
	if err := cch.Qos(1, 0, false); err != nil {
		t.Fatal(err)
	}
	ds, err := cch.Consume(name, "counter", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	recv(t, ds) // takes one more, which its prefetch then holds
	q, err = ch.QueueDeclare(name, false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if q.Messages != 1 || q.Consumers != 1 {
		t.Fatalf("declare-ok %+v, want 1 message 1 consumer", q)
	}
	_ = d
}

func TestQueueBindUnbind(t *testing.T) {
	u := brokerURL(t)
	conn, ch := dial(t, u)
	q := tempQueue(t, ch)
	if err := ch.QueueBind(q, "k", "amq.direct", false, nil); err != nil {
		t.Fatal(err)
	}
	publish(t, ch, "amq.direct", "k", body("bound"))
	if got := drain(t, ch, q); !sameStrings(got, []string{"bound"}) {
		t.Fatalf("got %q", got)
	}
	if err := ch.QueueUnbind(q, "k", "amq.direct", nil); err != nil {
		t.Fatal(err)
	}
	// Unbinding what is not bound is fine.
	if err := ch.QueueUnbind(q, "k", "amq.direct", nil); err != nil {
		t.Fatalf("second unbind: %v", err)
	}
	publish(t, ch, "amq.direct", "k", body("unbound"))
	if got := drain(t, ch, q); len(got) != 0 {
		t.Fatalf("got %q after unbind", got)
	}
	missing := uname(t, "none")
	t.Run("missing queue", func(t *testing.T) {
		err := openChan(t, conn).QueueBind(missing, "k", "amq.direct", false, nil)
		wantErr(t, err, 404, "NOT_FOUND - no queue '"+missing+"' in vhost '/'")
	})
	t.Run("missing exchange", func(t *testing.T) {
		err := openChan(t, conn).QueueBind(q, "k", missing, false, nil)
		wantErr(t, err, 404, "NOT_FOUND - no exchange '"+missing+"' in vhost '/'")
	})
	t.Run("both missing: exchange reported", func(t *testing.T) {
		err := openChan(t, conn).QueueBind(missing, "k", missing+"-x", false, nil)
		wantErr(t, err, 404, "NOT_FOUND - no exchange '"+missing+"-x' in vhost '/'")
	})
	t.Run("default exchange checked before exclusivity", func(t *testing.T) {
		other := openConn(t, u)
		err := openChan(t, other).QueueBind(q, "k", "", false, nil)
		wantErr(t, err, 403, "ACCESS_REFUSED - operation not permitted on the default exchange")
	})
	t.Run("missing exchange checked before exclusivity", func(t *testing.T) {
		other := openConn(t, u)
		err := openChan(t, other).QueueBind(q, "k", missing, false, nil)
		wantErr(t, err, 404, "NOT_FOUND - no exchange '"+missing+"' in vhost '/'")
	})
}

func TestQueuePurge(t *testing.T) {
	u := brokerURL(t)
	conn, ch := dial(t, u)
	name := uname(t, "purge")
	declareQueue(t, u, ch, name)
	for i := 0; i < 4; i++ {
		publish(t, ch, "", name, body(fmt.Sprint(i)))
	}
	waitCount(t, conn, name, 4)
	d := getBody(t, ch, name, false) // unacked: not purged
	n, err := ch.QueuePurge(name, false)
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Fatalf("purged %d, want 3", n)
	}
	if err := d.Nack(false, true); err != nil {
		t.Fatal(err)
	}
	waitCount(t, conn, name, 1)
	_, err = ch.QueuePurge(uname(t, "none"), false)
	wantErr(t, err, 404, "NOT_FOUND - no queue '"+uname(t, "none")+"' in vhost '/'")
}

func TestQueueDelete(t *testing.T) {
	u := brokerURL(t)
	conn, ch := dial(t, u)
	name := uname(t, "del")
	declareQueue(t, u, ch, name)
	for i := 0; i < 2; i++ {
		publish(t, ch, "", name, body(fmt.Sprint(i)))
	}
	waitCount(t, conn, name, 2)
	_, err := ch.QueueDelete(name, false, true, false)
	wantErr(t, err, 406, "PRECONDITION_FAILED - queue '"+name+"' in vhost '/' not empty")

	ch = openChan(t, conn)
	cch := openChan(t, conn)
	if _, err := cch.Consume(name, "user", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	_, err = ch.QueueDelete(name, true, false, false)
	wantErr(t, err, 406, "PRECONDITION_FAILED - queue '"+name+"' in vhost '/' in use")
	cch.Close() // the consumer's unacked messages go back

	ch = openChan(t, conn)
	waitCount(t, conn, name, 2)
	n, err := ch.QueueDelete(name, true, false, false)
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Fatalf("delete-ok message count %d, want 2", n)
	}
	_, err = ch.QueueDeclarePassive(name, false, false, false, false, nil)
	wantErr(t, err, 404, "NOT_FOUND - no queue '"+name+"' in vhost '/'")
	// Deleting a missing queue is not an error.
	ch = openChan(t, conn)
	if n, err := ch.QueueDelete(name, false, false, false); err != nil || n != 0 {
		t.Fatalf("delete of a missing queue: %d %v", n, err)
	}
}

func TestQueueExclusiveMismatchSameConnection(t *testing.T) {
	u := brokerURL(t)
	conn, ch := dial(t, u)
	excl := uname(t, "excl")
	if _, err := ch.QueueDeclare(excl, false, false, true, false, nil); err != nil {
		t.Fatal(err)
	}
	plain := declareQueue(t, u, ch, uname(t, "plain")).Name
	// The owner redeclaring without exclusive, or anyone redeclaring a
	// plain queue as exclusive, is refused as a lock, not an inequivalence.
	_, err := openChan(t, conn).QueueDeclare(excl, false, false, false, false, nil)
	wantErr(t, err, 405, replyText("RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '"+excl+lockedText))
	_, err = openChan(t, conn).QueueDeclare(plain, false, false, true, false, nil)
	wantErr(t, err, 405, replyText("RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '"+plain+lockedText))
}

func TestQueueConsumeMissing(t *testing.T) {
	_, ch := dial(t, brokerURL(t))
	name := uname(t, "none")
	_, err := ch.Consume(name, "", false, false, false, false, nil)
	wantErr(t, err, 404, "NOT_FOUND - no queue '"+name+"' in vhost '/'")
}
