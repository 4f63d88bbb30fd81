package broker_test

import (
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// getWithin polls basic.get until a message arrives or the deadline passes.
func getWithin(t *testing.T, ch *amqp.Channel, q string, d time.Duration) (amqp.Delivery, bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		m, ok, err := ch.Get(q, true)
		if err != nil {
			t.Fatal(err)
		}
		if ok || time.Now().After(deadline) {
			return m, ok
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestMessageTTLExpiresAndDeadLetters(t *testing.T) {
	url := brokerURL(t)
	conn := openConn(t, url)
	ch := openChan(t, conn)
	dlq := uname(t, "dlq")
	src := uname(t, "src")
	cleanupQueues(t, url, dlq, src)
	if _, err := ch.QueueDeclare(dlq, false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare(src, false, false, false, false, amqp.Table{
		"x-message-ttl": int32(50), "x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq,
	}); err != nil {
		t.Fatal(err)
	}
	publish(t, ch, "", src, amqp.Publishing{Body: []byte("old"), Headers: amqp.Table{"h": "v"}})
	// A per-message expiration shorter than the queue's wins.
	publish(t, ch, "", src, amqp.Publishing{Body: []byte("short"), Expiration: "10"})

	first, ok := getWithin(t, ch, dlq, 5*time.Second)
	if !ok {
		t.Fatal("nothing was dead-lettered")
	}
	second, ok := getWithin(t, ch, dlq, 5*time.Second)
	if !ok {
		t.Fatal("only one message was dead-lettered")
	}
	got := map[string]amqp.Delivery{string(first.Body): first, string(second.Body): second}
	old, short := got["old"], got["short"]
	if old.Body == nil || short.Body == nil {
		t.Fatalf("dead-lettered %q and %q", first.Body, second.Body)
	}
	deaths, _ := old.Headers["x-death"].([]interface{})
	if len(deaths) != 1 {
		t.Fatalf("x-death = %#v", old.Headers["x-death"])
	}
	d := deaths[0].(amqp.Table)
	if d["reason"] != "expired" || d["queue"] != src || d["count"] != int64(1) || d["exchange"] != "" {
		t.Fatalf("x-death entry %#v", d)
	}
	if rk, _ := d["routing-keys"].([]interface{}); len(rk) != 1 || rk[0] != src {
		t.Fatalf("routing-keys %#v", d["routing-keys"])
	}
	if old.Headers["h"] != "v" || old.Headers["x-first-death-reason"] != "expired" {
		t.Fatalf("headers %#v", old.Headers)
	}
	sd := short.Headers["x-death"].([]interface{})[0].(amqp.Table)
	if sd["original-expiration"] != "10" || short.Expiration != "" {
		t.Fatalf("per-message TTL: x-death %#v, expiration %q", sd, short.Expiration)
	}
	if _, ok, _ := ch.Get(src, true); ok {
		t.Fatal("an expired message was still delivered")
	}
}

func TestRejectDeadLettersAndMaxLength(t *testing.T) {
	url := brokerURL(t)
	conn := openConn(t, url)
	ch := openChan(t, conn)
	dlx, dlq, src := uname(t, "dlx"), uname(t, "dlq"), uname(t, "src")
	cleanupQueues(t, url, dlq, src)
	cleanupExchanges(t, url, dlx)
	if err := ch.ExchangeDeclare(dlx, "fanout", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare(dlq, false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(dlq, "", dlx, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare(src, false, false, false, false, amqp.Table{
		"x-dead-letter-exchange": dlx, "x-max-length": int32(2),
	}); err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{"a", "b", "c"} { // "a" overflows
		publish(t, ch, "", src, body(b))
	}
	m, ok := getWithin(t, ch, dlq, 5*time.Second)
	if !ok || string(m.Body) != "a" || m.Headers["x-death"].([]interface{})[0].(amqp.Table)["reason"] != "maxlen" {
		t.Fatalf("maxlen dead-letter: ok=%v %q %#v", ok, m.Body, m.Headers)
	}
	d, ok, err := ch.Get(src, false)
	if err != nil || !ok || string(d.Body) != "b" {
		t.Fatalf("get: %v %v %q", err, ok, d.Body)
	}
	if err := d.Reject(false); err != nil {
		t.Fatal(err)
	}
	m, ok = getWithin(t, ch, dlq, 5*time.Second)
	if !ok || string(m.Body) != "b" || m.Headers["x-death"].([]interface{})[0].(amqp.Table)["reason"] != "rejected" {
		t.Fatalf("reject dead-letter: ok=%v %q %#v", ok, m.Body, m.Headers)
	}
}

func TestInvalidQueueArguments(t *testing.T) {
	url := brokerURL(t)
	conn := openConn(t, url)
	ch := openChan(t, conn)
	q := uname(t, "q")
	cleanupQueues(t, url, q)
	_, err := ch.QueueDeclare(q, false, false, false, false, amqp.Table{"x-message-ttl": int32(-1)})
	wantErr(t, err, 406, "PRECONDITION_FAILED - invalid arg 'x-message-ttl' for queue '"+q+"' in vhost '/': {value_negative,-1}")
}

// Beyond RabbitMQ, which expires per-message TTLs only at the head: a short
// TTL behind a long one, or behind a message that never expires, is
// dead-lettered on time and never delivered.
func TestTTLExpiresAnywhereInTheQueue(t *testing.T) {
	inProcessOnly(t, "RabbitMQ expires per-message TTLs only at the head of a classic queue")
	url := brokerURL(t)
	conn := openConn(t, url)
	ch := openChan(t, conn)
	dlq, src := uname(t, "dlq"), uname(t, "src")
	if _, err := ch.QueueDeclare(dlq, false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare(src, false, false, false, false, amqp.Table{
		"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq,
	}); err != nil {
		t.Fatal(err)
	}
	publish(t, ch, "", src, amqp.Publishing{Body: []byte("long"), Expiration: "60000"})
	publish(t, ch, "", src, amqp.Publishing{Body: []byte("forever")})
	publish(t, ch, "", src, amqp.Publishing{Body: []byte("short"), Expiration: "20"})
	m, ok := getWithin(t, ch, dlq, 5*time.Second)
	if !ok || string(m.Body) != "short" {
		t.Fatalf("dead-lettered %q (%v), want the short one", m.Body, ok)
	}
	for _, want := range []string{"long", "forever"} {
		m, ok, err := ch.Get(src, true)
		if err != nil || !ok || string(m.Body) != want {
			t.Fatalf("get: %q %v %v, want %q", m.Body, ok, err, want)
		}
	}
	if _, ok, _ := ch.Get(src, true); ok {
		t.Fatal("the expired message was delivered")
	}
}
