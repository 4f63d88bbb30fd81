package broker_test

import (
	"bytes"
	"io"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/amqp-go/amqp-go/server/broker"
	"github.com/amqp-go/amqp-go/server/servertest"
	wire "github.com/amqp-go/amqp-go/shared/amqp"
	amqp "github.com/rabbitmq/amqp091-go"
)

func TestConnBadProtocolHeader(t *testing.T) {
	u := brokerURL(t)
	for _, hdr := range []string{
		"GET / HTTP/1.1\r\n\r\n",
		"AMQP\x00\x00\x0a\x00",
		"XXXXXXXX",
	} {
		t.Run(strings.NewReplacer("\r", "", "\n", "", "\x00", "0").Replace(hdr), func(t *testing.T) {
			r := rawDial(t, u)
			r.write([]byte(hdr))
			_ = r.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
			got, err := io.ReadAll(r.nc)
			if err != nil && !servertest.Closed(err) {
				t.Fatalf("read: %v", err)
			}
			if !bytes.Equal(got, []byte("AMQP\x00\x00\x09\x01")) {
				t.Fatalf("got %q, want the server's protocol header and EOF", got)
			}
		})
	}
}

func TestConnSASLMechanisms(t *testing.T) {
	u := brokerURL(t)
	pu, _ := url.Parse(u)
	pass, _ := pu.User.Password()
	for _, auth := range []amqp.Authentication{
		&amqp.PlainAuth{Username: pu.User.Username(), Password: pass},
		&amqp.AMQPlainAuth{Username: pu.User.Username(), Password: pass},
	} {
		t.Run(auth.Mechanism(), func(t *testing.T) {
			conn, err := amqp.DialConfig(u, amqp.Config{SASL: []amqp.Authentication{auth}})
			if err != nil {
				t.Fatalf("dial with %s: %v", auth.Mechanism(), err)
			}
			defer conn.Close()
			ch := openChan(t, conn)
			q := tempQueue(t, ch)
			publish(t, ch, "", q, body("sasl"))
			if d := getBody(t, ch, q, true); string(d.Body) != "sasl" {
				t.Fatalf("got %q", d.Body)
			}
		})
	}
	t.Run("mechanisms", func(t *testing.T) {
		r := rawDial(t, u)
		r.write(wire.ProtocolHeader)
		_, m := r.readMethod()
		start := m.(*wire.ConnectionStart)
		mechs := strings.Fields(start.Mechanisms)
		for _, want := range []string{"PLAIN", "AMQPLAIN"} {
			found := false
			for _, m := range mechs {
				found = found || m == want
			}
			if !found {
				t.Errorf("mechanisms %q lack %s", start.Mechanisms, want)
			}
		}
		if start.VersionMajor != 0 || start.VersionMinor != 9 {
			t.Errorf("version %d.%d", start.VersionMajor, start.VersionMinor)
		}
	})
}

func TestConnBadPassword(t *testing.T) {
	u := brokerURL(t)
	pu, _ := url.Parse(u)
	t.Run("client", func(t *testing.T) {
		bad := *pu
		bad.User = url.UserPassword(pu.User.Username(), "wrong-password")
		_, err := amqp.Dial(bad.String())
		if e := amqpErr(t, err); e.Code != amqp.AccessRefused {
			t.Fatalf("want 403, got %v", e)
		}
	})
	t.Run("authentication_failure_close", func(t *testing.T) {
		// A client advertising authentication_failure_close is told why.
		r := rawDial(t, u)
		r.write(wire.ProtocolHeader)
		r.readMethod()
		r.send(0, &wire.ConnectionStartOk{
			ClientProperties: wire.Table{"capabilities": wire.Table{"authentication_failure_close": true}},
			Mechanism:        "PLAIN", Response: "\x00" + pu.User.Username() + "\x00wrong-password", Locale: "en_US"})
		r.expectConnClose(403, "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. For details see the broker logfile.")
	})
	t.Run("no capability: socket closes", func(t *testing.T) {
		r := rawDial(t, u)
		r.write(wire.ProtocolHeader)
		r.readMethod()
		r.send(0, &wire.ConnectionStartOk{ClientProperties: wire.Table{},
			Mechanism: "PLAIN", Response: "\x00" + pu.User.Username() + "\x00wrong-password", Locale: "en_US"})
		r.expectEOF(5 * time.Second)
	})
}

func TestConnCapabilities(t *testing.T) {
	conn := openConn(t, brokerURL(t))
	caps, ok := conn.Properties["capabilities"].(amqp.Table)
	if !ok {
		t.Fatalf("no capabilities table in %v", conn.Properties)
	}
	for _, c := range []string{"publisher_confirms", "exchange_exchange_bindings", "basic.nack",
		"consumer_cancel_notify", "connection.blocked", "authentication_failure_close", "per_consumer_qos"} {
		if caps[c] != true {
			t.Errorf("capability %s = %v, want true", c, caps[c])
		}
	}
	for _, k := range []string{"product", "version", "platform"} {
		if _, ok := conn.Properties[k].(string); !ok {
			t.Errorf("server property %s missing", k)
		}
	}
}

func TestConnTuneNegotiation(t *testing.T) {
	u := brokerURL(t)
	t.Run("server tune", func(t *testing.T) {
		r := rawDial(t, u)
		r.write(wire.ProtocolHeader)
		r.readMethod()
		pu, _ := url.Parse(u)
		pass, _ := pu.User.Password()
		r.send(0, &wire.ConnectionStartOk{ClientProperties: wire.Table{}, Mechanism: "PLAIN",
			Response: "\x00" + pu.User.Username() + "\x00" + pass, Locale: "en_US"})
		_, m := r.readMethod()
		tune := m.(*wire.ConnectionTune)
		if tune.ChannelMax != 2047 || tune.FrameMax != 131072 || tune.Heartbeat != 60 {
			t.Fatalf("tune = %+v, want channel_max 2047, frame_max 131072, heartbeat 60", tune)
		}
	})
	t.Run("client lowers", func(t *testing.T) {
		conn, err := amqp.DialConfig(u, amqp.Config{ChannelMax: 10, FrameSize: 4096, Heartbeat: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if conn.Config.ChannelMax != 10 || conn.Config.FrameSize != 4096 || conn.Config.Heartbeat != 5*time.Second {
			t.Fatalf("negotiated %d/%d/%v", conn.Config.ChannelMax, conn.Config.FrameSize, conn.Config.Heartbeat)
		}
		// A body much larger than frame_max crosses in many frames both ways.
		ch := openChan(t, conn)
		q := tempQueue(t, ch)
		big := make([]byte, 100_000)
		for i := range big {
			big[i] = byte(i * 7)
		}
		publish(t, ch, "", q, amqp.Publishing{Body: big})
		ds, err := ch.Consume(q, "", true, false, false, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		if d := recv(t, ds); !bytes.Equal(d.Body, big) {
			t.Fatalf("body of %d bytes came back as %d bytes or altered", len(big), len(d.Body))
		}
	})
}

func TestConnFrameMaxOnTheWire(t *testing.T) {
	u := brokerURL(t)
	r := rawDial(t, u)
	pu, _ := url.Parse(u)
	pass, _ := pu.User.Password()
	r.write(wire.ProtocolHeader)
	r.readMethod()
	r.send(0, &wire.ConnectionStartOk{ClientProperties: wire.Table{}, Mechanism: "PLAIN",
		Response: "\x00" + pu.User.Username() + "\x00" + pass, Locale: "en_US"})
	r.readMethod()
	r.send(0, &wire.ConnectionTuneOk{ChannelMax: 10, FrameMax: 4096})
	r.send(0, &wire.ConnectionOpen{VirtualHost: "/"})
	r.readMethod()
	r.openChannel(1)
	r.send(1, &wire.QueueDeclare{Exclusive: true})
	_, m := r.readMethod()
	q := m.(*wire.QueueDeclareOk).Queue
	payload := bytes.Repeat([]byte("x"), 10000)
	r.publish(1, &wire.BasicPublish{RoutingKey: q}, payload)
	r.send(1, &wire.BasicGet{Queue: q, NoAck: true})
	_, m = r.readMethod()
	if _, ok := m.(*wire.BasicGetOk); !ok {
		t.Fatalf("want get-ok, got %s", m.MethodName())
	}
	var sizes []int
	total := 0
	for total < len(payload) {
		f, err := r.readFrame(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		switch f.Type {
		case wire.FrameHeader:
		case wire.FrameBody:
			sizes = append(sizes, len(f.Payload))
			total += len(f.Payload)
		default:
			t.Fatalf("unexpected frame type %d", f.Type)
		}
	}
	for _, s := range sizes {
		if s+8 > 4096 {
			t.Fatalf("body frame of %d payload bytes exceeds frame_max 4096 (%v)", s, sizes)
		}
	}
	if len(sizes) != 3 {
		t.Fatalf("body frames %v, want 3", sizes)
	}
}

func TestConnHeartbeatsSent(t *testing.T) {
	r, _ := rawHandshake(t, brokerURL(t), rawOpts{heartbeat: 1})
	// Keep our side alive so the server has no reason to close.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		tk := time.NewTicker(300 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
				_, _ = r.nc.Write(wire.AppendHeartbeatFrame(nil))
			}
		}
	}()
	deadline := time.Now().Add(4 * time.Second)
	beats := 0
	for beats < 2 {
		f, err := r.readFrame(time.Until(deadline))
		if err != nil {
			t.Fatalf("after %d heartbeats: %v", beats, err)
		}
		if f.Type == wire.FrameHeartbeat {
			if f.Channel != 0 || len(f.Payload) != 0 {
				t.Fatalf("bad heartbeat frame %+v", f)
			}
			beats++
		}
	}
}

func TestConnHeartbeatTimeout(t *testing.T) {
	r, _ := rawHandshake(t, brokerURL(t), rawOpts{heartbeat: 1})
	start := time.Now()
	// Silent: we read (heartbeats arrive) but never write.
	r.expectEOF(6 * time.Second)
	if el := time.Since(start); el > 4*time.Second {
		t.Fatalf("closed after %v, want about 2-3 heartbeats", el)
	}
}

func TestConnCloseClient(t *testing.T) {
	u := brokerURL(t)
	conn, err := amqp.Dial(u)
	if err != nil {
		t.Fatal(err)
	}
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	openChan(t, conn)
	if err := conn.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	select {
	case e, ok := <-closed:
		if ok && e != nil {
			t.Fatalf("graceful close reported %v", e)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("NotifyClose not closed")
	}
	if !conn.IsClosed() {
		t.Fatal("connection not closed")
	}

	// Raw: connection.close is answered with close-ok and the socket closes.
	r, _ := rawHandshake(t, u, rawOpts{})
	r.send(0, &wire.ConnectionClose{ReplyCode: 200, ReplyText: "bye"})
	_, m := r.readMethod()
	if _, ok := m.(*wire.ConnectionCloseOk); !ok {
		t.Fatalf("want close-ok, got %s", m.MethodName())
	}
	// RabbitMQ leaves closing the socket to the client, which received
	// close-ok; nothing else may arrive.
	if f, err := r.readFrame(200 * time.Millisecond); err == nil {
		t.Fatalf("frame type %d after close-ok", f.Type)
	}
}

func TestConnCloseServerHardError(t *testing.T) {
	conn := openConn(t, brokerURL(t))
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	ch1 := openChan(t, conn)
	ch2 := openChan(t, conn)
	ch2closed := ch2.NotifyClose(make(chan *amqp.Error, 1))
	if err := ch1.Publish("", "x", false, true, body("imm")); err != nil {
		t.Fatal(err)
	}
	e := waitClose(t, closed)
	if e.Code != 540 || e.Reason != "NOT_IMPLEMENTED - immediate=true" || !e.Server {
		t.Fatalf("got %+v", e)
	}
	// Every channel goes with the connection.
	waitClose(t, ch2closed)
	if _, err := conn.Channel(); err == nil {
		t.Fatal("channel opened on a closed connection")
	}
}

func TestConnUnknownVhost(t *testing.T) {
	u := brokerURL(t)
	r, _ := rawHandshake(t, u, rawOpts{vhost: "no-such-vhost"})
	r.expectConnClose(530, "NOT_ALLOWED - vhost no-such-vhost not found")

	pu, _ := url.Parse(u)
	pu.Path = "/no-such-vhost"
	if _, err := amqp.Dial(pu.String()); err == nil {
		t.Fatal("dial to an unknown vhost succeeded")
	}
}

func TestConnBlockedNotification(t *testing.T) {
	inProcessOnly(t, "raises a resource alarm with Server.SetAlarm")
	srv, u := servertest.StartServer(t, broker.Config{})
	conn := openConn(t, u)
	blocked := conn.NotifyBlocked(make(chan amqp.Blocking, 4))
	ch := openChan(t, conn)
	plain, _ := rawHandshake(t, u, rawOpts{})                                                       // advertises nothing
	capable, _ := rawHandshake(t, u, rawOpts{capabilities: wire.Table{"connection.blocked": true}}) // raw but capable
	plain.openChannel(1)
	capable.openChannel(1)
	// Cleanups run last-in first-out: clear the alarm before closing the
	// connections, which a blocked broker no longer reads.
	t.Cleanup(func() { srv.SetAlarm("", false) })

	// RabbitMQ tells a connection it is blocked when it publishes during an
	// alarm (checked against RabbitMQ 3.10 with rabbitmqctl
	// set_vm_memory_high_watermark); ours may tell it earlier. Publishing
	// covers both.
	srv.SetAlarm("low on memory", true)
	publish(t, ch, "", "nowhere", body("x"))
	capable.publish(1, &wire.BasicPublish{RoutingKey: "nowhere"}, []byte("x"))
	plain.publish(1, &wire.BasicPublish{RoutingKey: "nowhere"}, []byte("x"))
	select {
	case b := <-blocked:
		if !b.Active || b.Reason != "low on memory" {
			t.Fatalf("got %+v", b)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no connection.blocked")
	}
	if _, m := capable.readMethod(); m.MethodName() != "connection.blocked" || m.(*wire.ConnectionBlocked).Reason != "low on memory" {
		t.Fatalf("capable raw client got %s %+v", m.MethodName(), m)
	}
	// A client that does not advertise the capability hears nothing.
	if f, err := plain.readFrame(200 * time.Millisecond); err == nil && f.Type != wire.FrameHeartbeat {
		t.Fatalf("plain client got frame type %d", f.Type)
	}
	// A capable client connecting and publishing during the alarm is told.
	late, _ := rawHandshake(t, u, rawOpts{capabilities: wire.Table{"connection.blocked": true}})
	late.send(1, &wire.ChannelOpen{})
	late.publish(1, &wire.BasicPublish{RoutingKey: "nowhere"}, []byte("x"))
	seen := map[string]bool{}
	for len(seen) < 2 { // in either order
		_, m := late.readMethod()
		if name := m.MethodName(); name != "connection.blocked" && name != "channel.open-ok" || seen[name] {
			t.Fatalf("late client got %s", name)
		}
		seen[m.MethodName()] = true
	}

	srv.SetAlarm("", false)
	select {
	case b := <-blocked:
		if b.Active {
			t.Fatalf("got %+v, want unblocked", b)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no connection.unblocked")
	}
	for _, r := range []*rawConn{capable, late} {
		if _, m := r.readMethod(); m.MethodName() != "connection.unblocked" {
			t.Fatalf("capable raw client got %s", m.MethodName())
		}
	}
	if f, err := plain.readFrame(200 * time.Millisecond); err == nil && f.Type != wire.FrameHeartbeat {
		t.Fatalf("plain client got frame type %d", f.Type)
	}
	// The plain client's connection still works.
	plain.openChannel(2)
}
