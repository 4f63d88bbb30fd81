package broker_test

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/amqp-go/amqp-go/server/servertest"
	"github.com/amqp-go/amqp-go/shared/amqp"
	amqp091 "github.com/rabbitmq/amqp091-go"
)

// hostileURL is the broker under test: ours in-process, or the one named by
// BROKER_TEST_URL (RabbitMQ, to check the expectations themselves).
func hostileURL(t *testing.T) string {
	if u := os.Getenv("BROKER_TEST_URL"); u != "" {
		return u
	}
	return servertest.Start(t)
}

// hostileConn is a hand-driven AMQP client for sending what real clients never
// would.
type hostileConn struct {
	t  *testing.T
	nc net.Conn
	fr *amqp.FrameReader
}

func hostileDial(t *testing.T, brokerURL string) *hostileConn {
	t.Helper()
	u, err := url.Parse(brokerURL)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	return &hostileConn{t: t, nc: nc, fr: amqp.NewFrameReader(nc, 4096)}
}

func (r *hostileConn) write(b []byte) {
	r.t.Helper()
	if _, err := r.nc.Write(b); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

func (r *hostileConn) method(ch uint16, m amqp.Method) { r.write(amqp.AppendMethodFrame(nil, ch, m)) }

// next reads the next method, skipping heartbeats.
func (r *hostileConn) next() amqp.Method {
	r.t.Helper()
	for {
		f, err := r.fr.ReadFrame()
		if err != nil {
			r.t.Fatalf("read: %v", err)
		}
		if f.Type == amqp.FrameHeartbeat {
			continue
		}
		if f.Type != amqp.FrameMethod {
			r.t.Fatalf("want a method frame, got type %d", f.Type)
		}
		m, err := amqp.DecodeMethod(f.Payload)
		if err != nil {
			r.t.Fatalf("decode: %v", err)
		}
		return m
	}
}

// open performs the handshake and opens channel 1.
func (r *hostileConn) open() {
	r.t.Helper()
	r.write(amqp.ProtocolHeader)
	if _, ok := r.next().(*amqp.ConnectionStart); !ok {
		r.t.Fatal("want connection.start")
	}
	r.method(0, &amqp.ConnectionStartOk{Mechanism: "PLAIN", Response: "\x00guest\x00guest", Locale: "en_US",
		ClientProperties: amqp.Table{"capabilities": amqp.Table{"authentication_failure_close": true}}})
	tune, ok := r.next().(*amqp.ConnectionTune)
	if !ok {
		r.t.Fatal("want connection.tune")
	}
	r.method(0, &amqp.ConnectionTuneOk{ChannelMax: tune.ChannelMax, FrameMax: tune.FrameMax, Heartbeat: 0})
	r.method(0, &amqp.ConnectionOpen{VirtualHost: "/"})
	if _, ok := r.next().(*amqp.ConnectionOpenOk); !ok {
		r.t.Fatal("want connection.open-ok")
	}
	r.method(1, &amqp.ChannelOpen{})
	if _, ok := r.next().(*amqp.ChannelOpenOk); !ok {
		r.t.Fatal("want channel.open-ok")
	}
}

// expectClose reads until connection.close and checks its reply code.
func (r *hostileConn) expectConnectionClose(code uint16) *amqp.ConnectionClose {
	r.t.Helper()
	for {
		m := r.next()
		if cc, ok := m.(*amqp.ConnectionClose); ok {
			if cc.ReplyCode != code {
				r.t.Fatalf("connection.close code %d (%q), want %d", cc.ReplyCode, cc.ReplyText, code)
			}
			r.method(0, &amqp.ConnectionCloseOk{})
			return cc
		}
	}
}

// expectEOF asserts the server closes the socket.
func (r *hostileConn) expectEOF() {
	r.t.Helper()
	_ = r.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 512)
	for {
		_, err := r.nc.Read(buf)
		if err == io.EOF || hostileIsReset(err) {
			return
		}
		if err != nil {
			r.t.Fatalf("want the server to close the socket, got %v", err)
		}
	}
}

func hostileIsReset(err error) bool {
	var oe *net.OpError
	return err != nil && (bytes.Contains([]byte(err.Error()), []byte("connection reset")) || (hostileOpErr(err, &oe) && !oe.Timeout()))
}

func hostileOpErr(err error, oe **net.OpError) bool {
	e, ok := err.(*net.OpError)
	if ok {
		*oe = e
	}
	return ok
}

// hostileStillServes proves the broker keeps working for other clients.
func hostileStillServes(t *testing.T, brokerURL string) {
	t.Helper()
	conn, err := amqp091.Dial(brokerURL)
	if err != nil {
		t.Fatalf("broker stopped serving: %v", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.Publish("", q.Name, false, false, amqp091.Publishing{Body: []byte("ok")}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		d, ok, err := ch.Get(q.Name, true)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			if string(d.Body) != "ok" {
				t.Fatalf("got %q", d.Body)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("message not delivered")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func hostileFrame(typ uint8, ch uint16, payload []byte, end byte) []byte {
	b := []byte{typ}
	b = binary.BigEndian.AppendUint16(b, ch)
	b = binary.BigEndian.AppendUint32(b, uint32(len(payload)))
	b = append(b, payload...)
	return append(b, end)
}

func hostilePublish(ch uint16, q string) []byte {
	return amqp.AppendMethodFrame(nil, ch, &amqp.BasicPublish{RoutingKey: q})
}

func hostileHeader(ch uint16, size uint64) []byte {
	props := (&amqp.Properties{}).Append(nil)
	return amqp.AppendHeaderFrame(nil, ch, amqp.ClassBasic, size, props)
}

func TestHostileInput(t *testing.T) {
	brokerURL := hostileURL(t)
	cases := []struct {
		name string
		// send writes the hostile bytes after the handshake (or instead of
		// it, if raw is set).
		raw  bool
		send func(r *hostileConn)
		// code is the connection.close reply code; 0 means the server
		// answers with its protocol header and closes.
		code uint16
		// notRabbit says why RabbitMQ itself fails the case, if it does.
		notRabbit string
	}{
		{name: "garbage instead of a header", raw: true, send: func(r *hostileConn) {
			r.write([]byte("GET / HTTP/1.1\r\n\r\n"))
		}},
		{name: "garbage after the handshake", send: func(r *hostileConn) {
			r.write(bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef}, 8))
		}, code: amqp.FrameErrorCode},
		{name: "wrong frame end", send: func(r *hostileConn) {
			r.write(hostileFrame(amqp.FrameHeartbeat, 0, nil, 0x00))
		}, code: amqp.FrameErrorCode},
		{name: "oversized frame", send: func(r *hostileConn) {
			b := hostileFrame(amqp.FrameBody, 1, nil, amqp.FrameEnd)
			binary.BigEndian.PutUint32(b[3:], 1<<30) // claims 1 GiB; never sent
			r.write(b[:7])
		}, code: amqp.FrameErrorCode},
		{name: "body longer than its header says", notRabbit: "RabbitMQ 3.x waits forever for a negative remainder", send: func(r *hostileConn) {
			r.write(hostilePublish(1, "nowhere"))
			r.write(hostileHeader(1, 4))
			r.write(hostileFrame(amqp.FrameBody, 1, []byte("too long"), amqp.FrameEnd))
		}, code: amqp.FrameErrorCode},
		{name: "channel method on channel 0", send: func(r *hostileConn) {
			r.method(0, &amqp.QueueDeclare{Queue: "x"})
		}, code: amqp.ChannelError},
		{name: "content with no method", send: func(r *hostileConn) {
			r.write(hostileHeader(1, 4))
		}, code: amqp.UnexpectedFrame},
		{name: "body with no method", send: func(r *hostileConn) {
			r.write(hostileFrame(amqp.FrameBody, 1, []byte("data"), amqp.FrameEnd))
		}, code: amqp.UnexpectedFrame},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.notRabbit != "" && os.Getenv("BROKER_TEST_URL") != "" {
				t.Skip(tc.notRabbit)
			}
			r := hostileDial(t, brokerURL)
			if tc.raw {
				tc.send(r)
				got := make([]byte, 8)
				if _, err := io.ReadFull(r.nc, got); err != nil {
					t.Fatalf("want the server's protocol header, got %v", err)
				}
				if !bytes.Equal(got, amqp.ProtocolHeader) {
					t.Fatalf("got %q, want %q", got, amqp.ProtocolHeader)
				}
				r.expectEOF()
			} else {
				r.open()
				tc.send(r)
				cc := r.expectConnectionClose(tc.code)
				t.Logf("reply: %d %s", cc.ReplyCode, cc.ReplyText)
				r.expectEOF()
			}
			hostileStillServes(t, brokerURL)
		})
	}
}
