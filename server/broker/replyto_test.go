package broker_test

import (
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

func TestDirectReplyTo(t *testing.T) {
	url := brokerURL(t)
	rpcq := uname(t, "rpc")
	cleanupQueues(t, url, rpcq)

	// The responder.
	sconn := openConn(t, url)
	sch := openChan(t, sconn)
	if _, err := sch.QueueDeclare(rpcq, false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	reqs, err := sch.Consume(rpcq, "", true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}

	// The client: probe, consume the pseudo-queue, send a request.
	cconn := openConn(t, url)
	cch := openChan(t, cconn)
	if _, err := cch.QueueDeclarePassive("amq.rabbitmq.reply-to", false, false, false, false, nil); err != nil {
		t.Fatalf("passive declare of amq.rabbitmq.reply-to: %v", err)
	}
	replies, err := cch.Consume("amq.rabbitmq.reply-to", "", true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	publish(t, cch, "", rpcq, amqp.Publishing{ReplyTo: "amq.rabbitmq.reply-to", CorrelationId: "c-1", Body: []byte("ping")})

	var req amqp.Delivery
	select {
	case req = <-reqs:
	case <-time.After(5 * time.Second):
		t.Fatal("no request")
	}
	if !strings.HasPrefix(req.ReplyTo, "amq.rabbitmq.reply-to.") {
		t.Fatalf("reply_to %q was not rewritten to the client's reply name", req.ReplyTo)
	}
	publish(t, sch, "", req.ReplyTo, amqp.Publishing{CorrelationId: req.CorrelationId, Body: []byte("pong")})
	select {
	case r := <-replies:
		if string(r.Body) != "pong" || r.CorrelationId != "c-1" {
			t.Fatalf("reply %q correlation %q", r.Body, r.CorrelationId)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no reply")
	}
}

func TestDirectReplyToErrors(t *testing.T) {
	url := brokerURL(t)
	conn := openConn(t, url)
	_, err := openChan(t, conn).Consume("amq.rabbitmq.reply-to", "", false, false, false, false, nil)
	wantErr(t, err, 406, "PRECONDITION_FAILED - reply consumer cannot acknowledge")

	ch := openChan(t, conn)
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	publish(t, ch, "", "nowhere", amqp.Publishing{ReplyTo: "amq.rabbitmq.reply-to"})
	wantErr(t, waitClose(t, closed), 406, "PRECONDITION_FAILED - fast reply consumer does not exist")
}
