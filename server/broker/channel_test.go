package broker_test

import (
	"testing"
	"time"

	wire "github.com/amqp-go/amqp-go/shared/amqp"
	amqp "github.com/rabbitmq/amqp091-go"
)

func TestChannelOpenClose(t *testing.T) {
	conn := openConn(t, brokerURL(t))
	for i := 0; i < 3; i++ {
		ch := openChan(t, conn)
		closed := ch.NotifyClose(make(chan *amqp.Error, 1))
		if err := ch.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
		if e, ok := <-closed; ok && e != nil {
			t.Fatalf("graceful channel close reported %v", e)
		}
	}
	// Raw: a closed channel number can be opened again.
	r, _ := rawHandshake(t, brokerURL(t), rawOpts{})
	r.openChannel(1)
	r.send(1, &wire.ChannelClose{ReplyCode: 200, ReplyText: "bye"})
	if ch, m := r.readMethod(); ch != 1 || m.MethodName() != "channel.close-ok" {
		t.Fatalf("got %s on %d", m.MethodName(), ch)
	}
	r.openChannel(1)
}

func TestChannelFlow(t *testing.T) {
	u := brokerURL(t)
	t.Run("active=true", func(t *testing.T) {
		_, ch := dial(t, u)
		if err := ch.Flow(true); err != nil {
			t.Fatalf("flow(true): %v", err)
		}
		q := tempQueue(t, ch)
		publish(t, ch, "", q, body("after flow"))
		if d := getBody(t, ch, q, true); string(d.Body) != "after flow" {
			t.Fatalf("got %q", d.Body)
		}
	})
	t.Run("active=false", func(t *testing.T) {
		// RabbitMQ 3.x does not implement client-initiated flow control:
		// channel.flow active=false is a connection exception.
		conn, ch := dial(t, u)
		closed := conn.NotifyClose(make(chan *amqp.Error, 1))
		err := ch.Flow(false)
		wantErr(t, err, 540, "NOT_IMPLEMENTED - active=false")
		wantClose(t, closed, 540, "NOT_IMPLEMENTED - active=false")
	})
}

func TestChannelExceptionIsolated(t *testing.T) {
	u := brokerURL(t)
	conn := openConn(t, u)
	connClosed := conn.NotifyClose(make(chan *amqp.Error, 1))
	ch1 := openChan(t, conn)
	ch2 := openChan(t, conn)
	q := tempQueue(t, ch2)
	ds, err := ch2.Consume(q, "c", true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	missing := uname(t, "missing")
	_, err = ch1.QueueDeclarePassive(missing, false, false, false, false, nil)
	wantErr(t, err, 404, "NOT_FOUND - no queue '"+missing+"' in vhost '/'")
	if _, err := ch1.QueueDeclare("", false, true, true, false, nil); err != amqp.ErrClosed {
		t.Fatalf("closed channel used: %v", err)
	}
	// The sibling channel and its consumer carry on.
	publish(t, ch2, "", q, body("still here"))
	if d := recv(t, ds); string(d.Body) != "still here" {
		t.Fatalf("got %q", d.Body)
	}
	// And new channels open on the connection.
	ch3 := openChan(t, conn)
	if _, err := ch3.QueueDeclare("", false, true, true, false, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-connClosed:
		t.Fatalf("connection closed: %v", e)
	default:
	}
}

// TestReplyCodesClient covers exceptions a normal client can provoke.
func TestReplyCodesClient(t *testing.T) {
	u := brokerURL(t)
	owner := openConn(t, u)
	och := openChan(t, owner)
	excl, err := och.QueueDeclare(uname(t, "excl"), false, false, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	shared := uname(t, "shared")
	declareQueue(t, u, och, shared)
	if _, err := och.Consume(shared, "exclusive-consumer", false, true, false, false, nil); err != nil {
		t.Fatal(err)
	}
	x := uname(t, "x")
	if err := och.ExchangeDeclare(x, "direct", false, true, false, false, nil); err != nil {
		t.Fatal(err)
	}
	cleanupExchanges(t, u, x)

	cases := []struct {
		name string
		hard bool
		code int
		text string
		do   func(ch *amqp.Channel) error
	}{
		{"403 reserved exchange name", false, 403, "ACCESS_REFUSED - exchange name 'amq.test' contains reserved prefix 'amq.*'",
			func(ch *amqp.Channel) error {
				return ch.ExchangeDeclare("amq.test", "direct", false, false, false, false, nil)
			}},
		{"403 reserved queue name", false, 403, "ACCESS_REFUSED - queue name 'amq.test' contains reserved prefix 'amq.*'",
			func(ch *amqp.Channel) error {
				_, err := ch.QueueDeclare("amq.test", false, false, false, false, nil)
				return err
			}},
		{"403 bind to default exchange", false, 403, "ACCESS_REFUSED - operation not permitted on the default exchange",
			func(ch *amqp.Channel) error { return ch.QueueBind(shared, "k", "", false, nil) }},
		{"403 exclusive consumer", false, 403, "ACCESS_REFUSED - queue '" + shared + "' in vhost '/' in exclusive use",
			func(ch *amqp.Channel) error {
				_, err := ch.Consume(shared, "", false, false, false, false, nil)
				return err
			}},
		{"404 queue", false, 404, "NOT_FOUND - no queue 'nope-" + runID + "' in vhost '/'",
			func(ch *amqp.Channel) error {
				_, err := ch.QueueDeclarePassive("nope-"+runID, false, false, false, false, nil)
				return err
			}},
		{"404 exchange", false, 404, "NOT_FOUND - no exchange 'nope-" + runID + "' in vhost '/'",
			func(ch *amqp.Channel) error {
				return ch.ExchangeDeclarePassive("nope-"+runID, "direct", false, false, false, false, nil)
			}},
		{"405 exclusive queue", false, 405, "RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '" + excl.Name +
			"' in vhost '/'. It could be originally declared on another connection or the exclusive property value does not match that of the original declaration.",
			func(ch *amqp.Channel) error {
				_, err := ch.QueueDeclarePassive(excl.Name, false, false, true, false, nil)
				return err
			}},
		{"406 inequivalent type", false, 406, "PRECONDITION_FAILED - inequivalent arg 'type' for exchange '" + x + "' in vhost '/': received 'fanout' but current is 'direct'",
			func(ch *amqp.Channel) error { return ch.ExchangeDeclare(x, "fanout", false, true, false, false, nil) }},
		{"406 unknown delivery tag", false, 406, "PRECONDITION_FAILED - unknown delivery tag 7",
			func(ch *amqp.Channel) error {
				// basic.ack has no reply: the channel close tells (a round
				// trip here would race the client's own close handling).
				return ch.Ack(7, false)
			}},
		{"406 tx.commit without tx.select", false, 406, "PRECONDITION_FAILED - channel is not transactional",
			func(ch *amqp.Channel) error { return ch.TxCommit() }},
		{"503 unknown exchange type", true, 503, "COMMAND_INVALID - unknown exchange type 'x-nonesuch'",
			func(ch *amqp.Channel) error {
				return ch.ExchangeDeclare(uname(t, "bad-type"), "x-nonesuch", false, true, false, false, nil)
			}},
		{"530 reused consumer tag", true, 530, "NOT_ALLOWED - attempt to reuse consumer tag 'dup'",
			func(ch *amqp.Channel) error {
				q, err := ch.QueueDeclare("", false, true, true, false, nil)
				if err != nil {
					return err
				}
				if _, err := ch.Consume(q.Name, "dup", false, false, false, false, nil); err != nil {
					return err
				}
				_, err = ch.Consume(q.Name, "dup", false, false, false, false, nil)
				return err
			}},
		{"540 prefetch_size", true, 540, "NOT_IMPLEMENTED - prefetch_size!=0 (1000)",
			func(ch *amqp.Channel) error { return ch.Qos(0, 1000, false) }},
		{"540 recover requeue=false", true, 540, "NOT_IMPLEMENTED - requeue=false",
			func(ch *amqp.Channel) error { return ch.Recover(false) }}, //lint:ignore SA1019 basic.recover is part of the protocol under test
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			conn := openConn(t, u)
			connClosed := conn.NotifyClose(make(chan *amqp.Error, 1))
			ch := openChan(t, conn)
			chClosed := ch.NotifyClose(make(chan *amqp.Error, 1))
			err := tc.do(ch)
			if err == nil {
				// Some methods are asynchronous; the close tells.
				e := waitClose(t, chClosed)
				err = e
			}
			wantErr(t, err, tc.code, tc.text)
			if tc.hard {
				wantClose(t, connClosed, tc.code, tc.text)
				return
			}
			// A soft error leaves the connection usable.
			ch2 := openChan(t, conn)
			if _, err := ch2.QueueDeclare("", false, true, true, false, nil); err != nil {
				t.Fatalf("connection unusable after a channel error: %v", err)
			}
		})
	}
}

// TestReplyCodesRaw covers exceptions only a misbehaving client can provoke.
func TestReplyCodesRaw(t *testing.T) {
	u := brokerURL(t)
	publishFrame := wire.AppendMethodFrame(nil, 1, &wire.BasicPublish{RoutingKey: "x"})
	cases := []struct {
		name string
		code uint16
		text string
		do   func(r *rawConn)
	}{
		{"504 second channel.open", 504, "CHANNEL_ERROR - second 'channel.open' seen", func(r *rawConn) {
			r.openChannel(1)
			r.send(1, &wire.ChannelOpen{})
		}},
		{"504 method on an unopened channel", 504, "CHANNEL_ERROR - expected 'channel.open'", func(r *rawConn) {
			r.send(3, &wire.QueueDeclare{Queue: "x"})
		}},
		{"505 body frame without publish", 505, "UNEXPECTED_FRAME - expected method frame, got non method frame instead", func(r *rawConn) {
			r.openChannel(1)
			r.write(wire.AppendFrame(nil, wire.FrameBody, 1, []byte("stray")))
		}},
		{"505 method instead of content header", 505, "UNEXPECTED_FRAME - expected content header for class 60, got non content header frame instead", func(r *rawConn) {
			r.openChannel(1)
			r.write(publishFrame)
			r.send(1, &wire.QueueDeclare{Queue: "x"})
		}},
		{"501 bad frame end", 501, "", func(r *rawConn) {
			r.openChannel(1)
			b := wire.AppendMethodFrame(nil, 1, &wire.QueueDeclare{Exclusive: true})
			b[len(b)-1] = 0
			r.write(b)
		}},
		{"504 non-connection method on channel 0", 504, "CHANNEL_ERROR - unexpected method in connection state running", func(r *rawConn) {
			r.send(0, &wire.QueueDeclare{Queue: "x"})
		}},
		{"540 immediate", 540, "NOT_IMPLEMENTED - immediate=true", func(r *rawConn) {
			r.openChannel(1)
			r.publish(1, &wire.BasicPublish{RoutingKey: "x", Immediate: true}, []byte("x"))
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := rawHandshake(t, u, rawOpts{})
			tc.do(r)
			r.expectConnClose(tc.code, tc.text)
		})
	}
}

func TestConnectionExceptionClosesChannels(t *testing.T) {
	conn := openConn(t, brokerURL(t))
	chans := make([]<-chan *amqp.Error, 3)
	var first *amqp.Channel
	for i := range chans {
		ch := openChan(t, conn)
		if first == nil {
			first = ch
		}
		chans[i] = ch.NotifyClose(make(chan *amqp.Error, 1))
	}
	if err := first.Qos(0, 1, false); err == nil {
		t.Fatal("qos with prefetch_size succeeded")
	}
	for _, c := range chans {
		select {
		case <-c:
		case <-time.After(5 * time.Second):
			t.Fatal("channel outlived its connection")
		}
	}
}
