package broker_test

import (
	"testing"

	"github.com/amqp-go/amqp-go/server/broker"
	"github.com/amqp-go/amqp-go/server/servertest"
	amqp "github.com/rabbitmq/amqp091-go"
)

// A connection's socket counters (the management API's recv_oct, recv_cnt,
// send_oct, send_cnt) follow what the client sends and receives: a 100 KB
// body published counts at least its bytes in, and delivered back, at
// least its bytes out.
func TestConnectionCounters(t *testing.T) {
	s, url := servertest.StartServer(t, broker.Config{})
	conn := openConn(t, url)
	ch := openChan(t, conn)
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	counters := func() broker.ConnCounters {
		cs := s.Connections()
		if len(cs) != 1 {
			t.Fatalf("%d connections, want 1", len(cs))
		}
		return cs[0].Counters()
	}
	before := counters()
	if before.RecvOct == 0 || before.RecvCnt == 0 || before.SendOct == 0 || before.SendCnt == 0 {
		t.Fatalf("after the handshake and a declare: %+v", before)
	}
	body := make([]byte, 100_000)
	publish(t, ch, "", q.Name, amqp.Publishing{Body: body})
	got := receive(t, ch, q.Name, 1)
	if len(got[0].d.Body) != len(body) {
		t.Fatalf("got a %d-byte body back", len(got[0].d.Body))
	}
	var after broker.ConnCounters
	waitFor(t, "the delivery's bytes counted as sent", func() bool {
		after = counters()
		return after.SendOct-before.SendOct >= uint64(len(body))
	})
	if d := after.RecvOct - before.RecvOct; d < uint64(len(body)) {
		t.Fatalf("recv_oct grew by %d for a %d-byte publish", d, len(body))
	}
	if after.RecvCnt <= before.RecvCnt || after.SendCnt <= before.SendCnt {
		t.Fatalf("reads %d -> %d, writes %d -> %d", before.RecvCnt, after.RecvCnt, before.SendCnt, after.SendCnt)
	}
}
