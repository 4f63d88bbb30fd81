package cli_test

import (
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// engine.consumertimeout reaches the broker: a delivery left unacked past
// it closes the channel with RabbitMQ's 406, and the log says why.
func TestConsumerTimeoutKey(t *testing.T) {
	cases := []struct {
		name string
		args []string
		env  []string
		want string
	}{
		{"flag", []string{"run", "--engine-consumertimeout", "300ms"}, nil, "300 ms"},
		{"env", []string{"run"}, []string{"AMQP_ENGINE_CONSUMERTIMEOUT=250ms"}, "250 ms"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := start(t, tc.args, tc.env...)
			c := dial(t, p.url)
			ch, err := c.Channel()
			if err != nil {
				t.Fatal(err)
			}
			q, err := ch.QueueDeclare("", false, false, true, false, nil)
			if err != nil {
				t.Fatal(err)
			}
			closed := ch.NotifyClose(make(chan *amqp.Error, 1))
			if err := ch.Publish("", q.Name, false, false, amqp.Publishing{Body: []byte("x")}); err != nil {
				t.Fatal(err)
			}
			ds, err := ch.Consume(q.Name, "", false, false, false, false, nil)
			if err != nil {
				t.Fatal(err)
			}
			<-ds
			select {
			case e := <-closed:
				want := "PRECONDITION_FAILED - delivery acknowledgement on channel 1 timed out. Timeout value used: " + tc.want +
					". This timeout value can be configured, see consumers doc guide to learn more"
				if e == nil || e.Code != 406 || e.Reason != want {
					t.Fatalf("want 406 %q, got %v", want, e)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("channel not closed")
			}
			eventually(t, "the timeout in the log", func() bool {
				return strings.Contains(p.stderr.String(), "consumer timed out waiting for a delivery acknowledgement")
			})
		})
	}
}
