package broker_test

import (
	"testing"
	"time"

	"github.com/amqp-go/amqp-go/server/broker"
	"github.com/amqp-go/amqp-go/server/servertest"
	amqp "github.com/rabbitmq/amqp091-go"
)

// (*VHost).QueueStats after known traffic: counts, counters and ages (the
// rates are checked through /metrics/per-object, server/telemetry).
func TestQueueStatsAPI(t *testing.T) {
	s, url := servertest.StartServer(t, broker.Config{})
	if s.VHost("nope") != nil {
		t.Fatal("a vhost that does not exist")
	}
	v := s.VHost("/")
	if _, ok := v.QueueStats("missing"); ok {
		t.Fatal("stats of a missing queue")
	}
	ch := openChan(t, openConn(t, url))
	if _, err := ch.QueueDeclare("st", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		publish(t, ch, "", "st", amqp.Publishing{Body: []byte("1234"), Timestamp: time.Unix(1700000000, 0)})
	}
	d := getBody(t, ch, "st", false)
	if err := d.Nack(false, true); err != nil {
		t.Fatal(err)
	}
	getBody(t, ch, "st", false) // redelivered, left unacked
	var st broker.QueueStats
	deadline := time.Now().Add(10 * time.Second)
	for {
		var ok bool
		if st, ok = v.QueueStats("st"); !ok {
			t.Fatal("no stats")
		}
		if st.Unacked == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not settled: %+v", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
	c := st.Counters
	if st.Ready != 2 || st.ReadyBytes != 8 || st.UnackedBytes != 4 || c.Published != 3 || c.Delivered != 2 ||
		c.Got != 2 || c.Redelivered != 1 || c.Acked != 0 || !st.HasHeadTimestamp || st.HeadTimestamp != 1700000000 {
		t.Errorf("stats %+v", st)
	}
	if st.HeadAge <= 0 || st.HeadAge > time.Minute || st.OldestUnackedAge <= 0 || st.OldestUnackedAge > st.HeadAge {
		t.Errorf("ages: head %v, oldest unacked %v", st.HeadAge, st.OldestUnackedAge)
	}
	if all := s.QueueStats(); len(all) != 1 || all[0].Name != "st" || all[0].VHost != "/" {
		t.Errorf("QueueStats %+v", all)
	}
}
