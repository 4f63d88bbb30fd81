package management_test

import (
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
)

// An exchange's message_stats as RabbitMQ 3.10.8 shows them (checked with
// the same publishes against it): publish_in counts messages published to
// the exchange, publish_out the queues they reached (a fanout to three
// queues, one of them also reached through an exchange-to-exchange
// binding, counts three a message); an exchange reached only through a
// binding from another, or never published to, has no message_stats; an
// unroutable publish counts in but not out. Rates follow once the
// exchange has been read twice a stats interval apart.
func TestExchangeMessageStats(t *testing.T) {
	a := startAPI(t)
	conn, ch := dial(t, a.amqp)
	defer conn.Close()
	for _, x := range [][2]string{{"xf", "fanout"}, {"xd", "direct"}, {"xe2e", "fanout"}} {
		if err := ch.ExchangeDeclare(x[0], x[1], false, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, q := range []string{"q1", "q2", "q3"} {
		if _, err := ch.QueueDeclare(q, false, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
		if err := ch.QueueBind(q, "", "xf", false, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := ch.ExchangeBind("xe2e", "", "xf", false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind("q1", "", "xe2e", false, nil); err != nil {
		t.Fatal(err)
	}
	a.guest("GET", "/exchanges/%2F/xf", "") // the first sample, for the rates
	for range 2 {
		if err := ch.Publish("xf", "", false, false, amqp.Publishing{Body: []byte("m")}); err != nil {
			t.Fatal(err)
		}
	}
	if err := ch.Publish("xd", "nowhere", false, false, amqp.Publishing{Body: []byte("u")}); err != nil {
		t.Fatal(err)
	}
	pollQueue(t, a, "/queues/%2F/q3", func(m map[string]any) bool { return m["messages"] == 2.0 })
	if q1 := a.guest("GET", "/queues/%2F/q1", "").obj(t); q1["messages"] != 2.0 {
		t.Errorf("q1 holds %v messages, want 2: reached twice, a message is queued once", q1["messages"])
	}
	pollQueue(t, a, "/exchanges/%2F/xd", func(m map[string]any) bool { return m["message_stats"] != nil })

	// Each read samples; a stats interval (100 ms here) after the first,
	// the rates follow.
	xf := pollQueue(t, a, "/exchanges/%2F/xf", func(m map[string]any) bool {
		ms, _ := m["message_stats"].(map[string]any)
		d, _ := ms["publish_in_details"].(map[string]any)
		r, _ := d["rate"].(float64)
		return r > 0
	})
	ms, _ := xf["message_stats"].(map[string]any)
	if ms["publish_in"] != 2.0 || ms["publish_out"] != 6.0 {
		t.Errorf("xf message_stats %v, want publish_in 2 and publish_out 6", ms)
	}
	xd := a.guest("GET", "/exchanges/%2F/xd", "").obj(t)
	ms, _ = xd["message_stats"].(map[string]any)
	if _, out := ms["publish_out"]; ms["publish_in"] != 1.0 || out {
		t.Errorf("xd message_stats %v, want publish_in 1 and no publish_out", ms)
	}
	for _, x := range a.guest("GET", "/exchanges/%2F", "").list(t) {
		x := x.(map[string]any)
		if name := x["name"]; name != "xf" && name != "xd" && x["message_stats"] != nil {
			t.Errorf("exchange %q has message_stats %v; only xf and xd were published to", name, x["message_stats"])
		}
	}
}
