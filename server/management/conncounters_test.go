package management_test

import (
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
)

// A connection's recv_oct, send_oct and their rates follow its traffic,
// with its client's connection_name as user_provided_name, as in RabbitMQ.
func TestConnectionByteCounters(t *testing.T) {
	a := startAPI(t)
	conn := uiDial(t, a.amqp, "bytes")
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	body := make([]byte, 100_000)
	// Published while the API samples, so that a rate shows.
	l := pollList(t, a, "guest", "guest", "/connections", func(l []map[string]any) bool {
		if err := ch.Publish("", q.Name, false, false, amqp.Publishing{Body: body}); err != nil {
			t.Fatal(err)
		}
		if len(l) != 1 {
			return false
		}
		recv, _ := l[0]["recv_oct"].(float64)
		details, _ := l[0]["recv_oct_details"].(map[string]any)
		rate, _ := details["rate"].(float64)
		return recv > 2*float64(len(body)) && rate > 0
	})
	c := l[0]
	if c["user_provided_name"] != "bytes" {
		t.Errorf("user_provided_name %v, want bytes", c["user_provided_name"])
	}
	for _, k := range []string{"recv_cnt", "send_oct", "send_cnt"} {
		if v, _ := c[k].(float64); v <= 0 {
			t.Errorf("%s = %v, want more than 0", k, c[k])
		}
	}
	if _, ok := c["send_pend"].(float64); !ok {
		t.Errorf("send_pend %v, want a number", c["send_pend"])
	}
	if details, _ := c["send_oct_details"].(map[string]any); details == nil || details["rate"] == nil {
		t.Errorf("send_oct_details %v", c["send_oct_details"])
	}
}
