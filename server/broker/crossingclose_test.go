package broker_test

import (
	"testing"

	wire "github.com/amqp-go/amqp-go/shared/amqp"
)

// A client channel.close crossing the server's channel.close (amqp091-go's
// TestChannelExceptionWithCloseIssue43): the server answers it with close-ok
// and keeps the channel until the client's close-ok for its own
// channel.close, which must not be taken for a frame on an unopened channel.
func TestCrossingChannelCloseKeepsConnection(t *testing.T) {
	url := brokerURL(t)
	r, _ := rawHandshake(t, url, rawOpts{})
	r.openChannel(1)
	r.openChannel(2)

	r.publish(1, &wire.BasicPublish{Exchange: uname(t, "missing")}, []byte("x"))
	r.send(1, &wire.ChannelClose{ReplyCode: 200, ReplyText: "bye"})
	var gotClose, gotCloseOk bool
	for !gotClose || !gotCloseOk {
		ch, m := r.readMethod()
		if ch != 1 {
			t.Fatalf("unexpected %s on channel %d", m.MethodName(), ch)
		}
		switch m := m.(type) {
		case *wire.ChannelClose:
			if m.ReplyCode != 404 {
				t.Fatalf("want channel.close 404, got %d %q", m.ReplyCode, m.ReplyText)
			}
			gotClose = true
		case *wire.ChannelCloseOk:
			gotCloseOk = true
		default:
			t.Fatalf("unexpected %s on channel 1", m.MethodName())
		}
	}
	r.send(1, &wire.ChannelCloseOk{})

	x := uname(t, "x")
	cleanupExchanges(t, url, x)
	r.send(2, &wire.ExchangeDeclare{Exchange: x, Type: "direct"})
	if ch, m := r.readMethod(); ch != 2 {
		t.Fatalf("want exchange.declare-ok on channel 2, got %s on %d", m.MethodName(), ch)
	} else if _, ok := m.(*wire.ExchangeDeclareOk); !ok {
		t.Fatalf("want exchange.declare-ok, got %s %+v", m.MethodName(), m)
	}

	// Channel 1 is gone once close-ok arrived: it can be opened again.
	r.openChannel(1)
}
