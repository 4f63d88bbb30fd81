package broker_test

import (
	"bytes"
	"encoding/binary"
	"io"
	"os"
	"testing"
	"time"

	"github.com/amqp-go/amqp-go/shared/amqp"
	amqp091 "github.com/rabbitmq/amqp091-go"
)

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
	u := brokerURL(t)
	cases := []struct {
		name string
		// send writes the hostile bytes after the handshake (or instead of
		// it, if raw is set).
		raw  bool
		send func(r *rawConn)
		// code is the connection.close reply code; 0 means the server
		// answers with its protocol header and closes.
		code uint16
		// notRabbit says why RabbitMQ itself fails the case, if it does.
		notRabbit string
	}{
		{name: "garbage instead of a header", raw: true, send: func(r *rawConn) {
			r.write([]byte("GET / HTTP/1.1\r\n\r\n"))
		}},
		{name: "garbage after the handshake", send: func(r *rawConn) {
			r.write(bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef}, 8))
		}, code: amqp.FrameErrorCode},
		{name: "wrong frame end", send: func(r *rawConn) {
			r.write(hostileFrame(amqp.FrameHeartbeat, 0, nil, 0x00))
		}, code: amqp.FrameErrorCode},
		{name: "oversized frame", send: func(r *rawConn) {
			b := hostileFrame(amqp.FrameBody, 1, nil, amqp.FrameEnd)
			binary.BigEndian.PutUint32(b[3:], 1<<30) // claims 1 GiB; never sent
			r.write(b[:7])
		}, code: amqp.FrameErrorCode},
		{name: "body longer than its header says", notRabbit: "RabbitMQ 3.x waits forever for a negative remainder", send: func(r *rawConn) {
			r.write(hostilePublish(1, "nowhere"))
			r.write(hostileHeader(1, 4))
			r.write(hostileFrame(amqp.FrameBody, 1, []byte("too long"), amqp.FrameEnd))
		}, code: amqp.FrameErrorCode},
		{name: "channel method on channel 0", send: func(r *rawConn) {
			r.send(0, &amqp.QueueDeclare{Queue: "x"})
		}, code: amqp.ChannelError},
		{name: "content with no method", send: func(r *rawConn) {
			r.write(hostileHeader(1, 4))
		}, code: amqp.UnexpectedFrame},
		{name: "body with no method", send: func(r *rawConn) {
			r.write(hostileFrame(amqp.FrameBody, 1, []byte("data"), amqp.FrameEnd))
		}, code: amqp.UnexpectedFrame},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.notRabbit != "" && os.Getenv("BROKER_TEST_URL") != "" {
				t.Skip(tc.notRabbit)
			}
			if tc.raw {
				r := rawDial(t, u)
				tc.send(r)
				got := make([]byte, 8)
				_ = r.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
				if _, err := io.ReadFull(r.nc, got); err != nil {
					t.Fatalf("want the server's protocol header, got %v", err)
				}
				if !bytes.Equal(got, amqp.ProtocolHeader) {
					t.Fatalf("got %q, want %q", got, amqp.ProtocolHeader)
				}
				r.expectEOF(5 * time.Second)
			} else {
				r, _ := rawHandshake(t, u, rawOpts{})
				r.openChannel(1)
				tc.send(r)
				r.expectConnClose(tc.code, "") // logs the text, answers close-ok, expects EOF
			}
			hostileStillServes(t, u)
		})
	}
}
