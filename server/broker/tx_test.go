package broker_test

import (
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
)

func TestTxCommitPublishes(t *testing.T) {
	u := brokerURL(t)
	conn, ch := dial(t, u)
	q := declareQueue(t, u, ch, uname(t, "q")).Name
	if err := ch.Tx(); err != nil {
		t.Fatal(err)
	}
	publishN(t, ch, q, 3)
	// Invisible until commit.
	if n, _ := queueCounts(t, conn, q); n != 0 {
		t.Fatalf("%d messages visible before commit", n)
	}
	if err := ch.TxCommit(); err != nil {
		t.Fatal(err)
	}
	waitCount(t, conn, q, 3)
	// The channel stays transactional: the next publish also waits.
	publish(t, ch, "", q, body("3"))
	if n, _ := queueCounts(t, conn, q); n != 3 {
		t.Fatalf("%d messages before the second commit, want 3", n)
	}
	if err := ch.TxCommit(); err != nil {
		t.Fatal(err)
	}
	waitCount(t, conn, q, 4)
}

func TestTxRollbackPublishes(t *testing.T) {
	u := brokerURL(t)
	conn, ch := dial(t, u)
	q := declareQueue(t, u, ch, uname(t, "q")).Name
	if err := ch.Tx(); err != nil {
		t.Fatal(err)
	}
	publishN(t, ch, q, 3)
	if err := ch.TxRollback(); err != nil {
		t.Fatal(err)
	}
	if err := ch.TxCommit(); err != nil { // commits nothing
		t.Fatal(err)
	}
	if n, _ := queueCounts(t, conn, q); n != 0 {
		t.Fatalf("%d messages after rollback", n)
	}
	// Closing a channel with an open transaction discards it too.
	publishN(t, ch, q, 2)
	ch.Close()
	if n, _ := queueCounts(t, conn, q); n != 0 {
		t.Fatalf("%d messages after closing an uncommitted channel", n)
	}
}

func TestTxAcks(t *testing.T) {
	u := brokerURL(t)
	conn := openConn(t, u)
	pch := openChan(t, conn)
	q := declareQueue(t, u, pch, uname(t, "q")).Name

	t.Run("ack applied at commit", func(t *testing.T) {
		publishN(t, pch, q, 2)
		waitCount(t, conn, q, 2)
		ch := openChan(t, conn)
		if err := ch.Tx(); err != nil {
			t.Fatal(err)
		}
		d1 := getBody(t, ch, q, false)
		d2 := getBody(t, ch, q, false)
		if err := d2.Ack(true); err != nil {
			t.Fatal(err)
		}
		if err := ch.TxCommit(); err != nil {
			t.Fatal(err)
		}
		_ = d1
		// Acked for good: closing the channel requeues nothing.
		ch.Close()
		if n, _ := queueCounts(t, conn, q); n != 0 {
			t.Fatalf("%d messages back after committed acks", n)
		}
	})
	t.Run("rolled-back ack leaves the message unacked", func(t *testing.T) {
		publishN(t, pch, q, 2)
		waitCount(t, conn, q, 2)
		ch := openChan(t, conn)
		if err := ch.Tx(); err != nil {
			t.Fatal(err)
		}
		d1 := getBody(t, ch, q, false)
		d2 := getBody(t, ch, q, false)
		if err := d1.Ack(false); err != nil {
			t.Fatal(err)
		}
		if err := d2.Nack(false, false); err != nil {
			t.Fatal(err)
		}
		if err := ch.TxRollback(); err != nil {
			t.Fatal(err)
		}
		// Still unacked: not ready, and the same tags can be acked again.
		if n, _ := queueCounts(t, conn, q); n != 0 {
			t.Fatalf("%d ready after rollback, want 0 (unacked)", n)
		}
		if err := d2.Ack(false); err != nil {
			t.Fatal(err)
		}
		if err := ch.TxCommit(); err != nil {
			t.Fatalf("commit of an ack for a rolled-back tag: %v", err)
		}
		// d1 is still unacked: closing the channel requeues exactly it.
		ch.Close()
		waitCount(t, conn, q, 1)
		d := getBody(t, pch, q, true)
		if string(d.Body) != string(d1.Body) || !d.Redelivered {
			t.Fatalf("got %q redelivered=%v, want %q redelivered", d.Body, d.Redelivered, d1.Body)
		}
	})
	t.Run("nack with requeue applied at commit", func(t *testing.T) {
		publishN(t, pch, q, 1)
		waitCount(t, conn, q, 1)
		ch := openChan(t, conn)
		if err := ch.Tx(); err != nil {
			t.Fatal(err)
		}
		d := getBody(t, ch, q, false)
		if err := d.Nack(false, true); err != nil {
			t.Fatal(err)
		}
		if n, _ := queueCounts(t, conn, q); n != 0 {
			t.Fatalf("requeued before commit")
		}
		if err := ch.TxCommit(); err != nil {
			t.Fatal(err)
		}
		waitCount(t, conn, q, 1)
		if _, err := pch.QueuePurge(q, false); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("unknown tag inside tx", func(t *testing.T) {
		ch := openChan(t, conn)
		if err := ch.Tx(); err != nil {
			t.Fatal(err)
		}
		closed := ch.NotifyClose(make(chan *amqp.Error, 1))
		_ = ch.Ack(99, false)
		wantClose(t, closed, 406, "PRECONDITION_FAILED - unknown delivery tag 99")
	})
}

func TestTxNotSelected(t *testing.T) {
	u := brokerURL(t)
	conn := openConn(t, u)
	wantErr(t, openChan(t, conn).TxCommit(), 406, "PRECONDITION_FAILED - channel is not transactional")
	wantErr(t, openChan(t, conn).TxRollback(), 406, "PRECONDITION_FAILED - channel is not transactional")
}
