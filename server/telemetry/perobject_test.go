package telemetry

import (
	"bufio"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/amqp-go/amqp-go/server/broker"
	"github.com/amqp-go/amqp-go/server/servertest"
	amqp "github.com/rabbitmq/amqp091-go"
)

// scrape returns the series of a text exposition: the part before the
// value (name and labels, as written) to the value.
func scrape(t *testing.T, url string) map[string]string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	out := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if l == "" || l[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		out[l[:i]] = l[i+1:]
	}
	return out
}

func num(t *testing.T, m map[string]string, series string) float64 {
	t.Helper()
	v, ok := m[series]
	if !ok {
		t.Fatalf("no series %s", series)
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		t.Fatalf("%s = %q", series, v)
	}
	return f
}

// poll scrapes until ok holds for the scrape, failing after 10 s.
func poll(t *testing.T, url, what string, ok func(map[string]string) bool) map[string]string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		m := scrape(t, url)
		if ok(m) {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// After a known traffic pattern, /metrics/per-object has exact counts and
// counters under RabbitMQ's names, plausible ages, and rates that rise
// while messages flow and fall back to 0 once they stop.
func TestPerObjectAfterKnownTraffic(t *testing.T) {
	s, url := servertest.StartServer(t, broker.Config{StatsInterval: 100 * time.Millisecond})
	hs := httptest.NewServer(Handler(Options{Server: s}))
	defer hs.Close()
	po := hs.URL + "/metrics/per-object"

	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	odd := `q"x\y` // escaped in labels
	for _, q := range []string{"po", odd, "flow"} {
		if _, err := ch.QueueDeclare(q, false, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	acks := ch.NotifyPublish(make(chan amqp.Confirmation, 1))
	publish := func(q string) {
		t.Helper()
		err := ch.Publish("", q, false, false, amqp.Publishing{Body: []byte("hello"), Timestamp: time.Unix(1700000000, 0)})
		if err != nil {
			t.Fatal(err)
		}
		if c := <-acks; !c.Ack {
			t.Fatal("nack")
		}
	}
	for range 10 {
		publish("po")
	}
	get := func(q string, noAck bool) amqp.Delivery {
		t.Helper()
		d, ok, err := ch.Get(q, noAck)
		if err != nil || !ok {
			t.Fatalf("get %s: %v %v", q, ok, err)
		}
		return d
	}
	if err := get("po", false).Ack(false); err != nil {
		t.Fatal(err)
	}
	get("po", true)
	if err := get("po", false).Nack(false, true); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := ch.Get(odd, false); ok || err != nil {
		t.Fatalf("get on an empty queue: %v %v", ok, err)
	}
	cch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := cch.Qos(2, 0, false); err != nil {
		t.Fatal(err)
	}
	ds, err := cch.Consume("po", "", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		<-ds // left unacked
	}

	label := `{vhost="/",queue="po"}`
	want := map[string]float64{
		"rabbitmq_queue_messages_ready": 6, "rabbitmq_queue_messages_unacked": 2, "rabbitmq_queue_messages": 8,
		"rabbitmq_queue_consumers": 1, "rabbitmq_queue_messages_ready_bytes": 30,
		"rabbitmq_queue_messages_unacked_bytes": 10, "rabbitmq_queue_messages_bytes": 40,
		"rabbitmq_queue_head_message_timestamp": 1700000000,
		"rabbitmq_channel_get_ack_total":        2, "rabbitmq_channel_get_total": 1,
		"rabbitmq_channel_messages_delivered_ack_total": 2, "rabbitmq_channel_messages_delivered_total": 0,
		"rabbitmq_channel_messages_redelivered_total": 1, "rabbitmq_channel_messages_acked_total": 1,
		"rabbitmq_channel_get_empty_total": 0,
	}
	m := poll(t, po, "the counts", func(m map[string]string) bool {
		v, ok := m["rabbitmq_queue_messages_unacked"+label]
		return ok && v == "2"
	})
	for name, v := range want {
		if got := num(t, m, name+label); got != v {
			t.Errorf("%s%s = %v, want %v", name, label, got, v)
		}
	}
	if got := num(t, m, `rabbitmq_queue_messages_published_total{queue_vhost="/",queue="po"}`); got != 10 {
		t.Errorf("published %v, want 10", got)
	}
	if got := num(t, m, `rabbitmq_channel_get_empty_total{vhost="/",queue="q\"x\\y"}`); got != 1 {
		t.Errorf("get-empty on %s: %v, want 1", odd, got)
	}
	if _, ok := m[`rabbitmq_queue_head_message_timestamp{vhost="/",queue="flow"}`]; ok {
		t.Error("a head timestamp for an empty queue")
	}
	if got := num(t, m, "rabbitmq_queues"); got != 3 {
		t.Errorf("rabbitmq_queues %v", got)
	}
	for _, age := range []string{"amqp_queue_head_message_age_seconds", "amqp_queue_oldest_unacked_age_seconds"} {
		if got := num(t, m, age+label); got <= 0 || got > 60 {
			t.Errorf("%s = %v, want a few ms to s", age, got)
		}
		if got := num(t, m, age+`{vhost="/",queue="flow"}`); got != 0 {
			t.Errorf("%s of an empty queue = %v", age, got)
		}
	}

	// Rates: publish into flow while polling; then stop.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		pch, err := conn.Channel()
		if err != nil {
			t.Error(err)
			return
		}
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			if err := pch.Publish("", "flow", false, false, amqp.Publishing{Body: []byte("f")}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	rate := func(m map[string]string) float64 { return num(t, m, `amqp_queue_publish_rate{vhost="/",queue="flow"}`) }
	poll(t, po, "a publish rate while publishing", func(m map[string]string) bool { return rate(m) > 0 })
	close(stop)
	wg.Wait()
	m = poll(t, po, "the publish rate back to 0", func(m map[string]string) bool { return rate(m) == 0 })
	if got := num(t, m, `rabbitmq_queue_messages_published_total{queue_vhost="/",queue="flow"}`); got < 1 {
		t.Errorf("flow published %v", got)
	}
	for _, r := range []string{"amqp_queue_deliver_get_rate", "amqp_queue_redeliver_rate", "amqp_queue_ack_rate"} {
		if got := num(t, m, r+label); got != 0 {
			t.Errorf("%s of an idle queue = %v", r, got)
		}
	}
}

// Every per-queue family is in README.md, and /metrics has none of them.
func TestPerObjectFamiliesDocumented(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range queueFamilies {
		if !strings.Contains(string(readme), "`"+f.name) {
			t.Errorf("README.md does not document %s", f.name)
		}
	}
	s, _ := servertest.StartServer(t, broker.Config{})
	hs := httptest.NewServer(Handler(Options{Server: s}))
	defer hs.Close()
	for series := range scrape(t, hs.URL+"/metrics") {
		if strings.Contains(series, "queue=") {
			t.Errorf("per-queue series on /metrics: %s", series)
		}
	}
}
