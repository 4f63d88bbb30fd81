package management_test

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/amqp-go/amqp-go/server/security"
	amqp "github.com/rabbitmq/amqp091-go"
)

const rangeQuery = "lengths_age=10&lengths_incr=1&msg_rates_age=10&msg_rates_incr=1"

// samplesOf is a *_details object's samples, newest first.
func samplesOf(t *testing.T, d any) []map[string]any {
	t.Helper()
	m, ok := d.(map[string]any)
	if !ok {
		t.Fatalf("details %v", d)
	}
	l, ok := m["samples"].([]any)
	if !ok {
		t.Fatalf("no samples in %v", m)
	}
	out := make([]map[string]any, len(l))
	for i, s := range l {
		out[i] = s.(map[string]any)
	}
	return out
}

// checkSamples checks a details object's samples: n of them, newest
// first, incr apart on multiples of incr, the newest within incr of now,
// with avg and avg_rate as RabbitMQ computes them.
func checkSamples(t *testing.T, what string, d any, n int, incr int64) {
	t.Helper()
	s := samplesOf(t, d)
	if len(s) != n {
		t.Fatalf("%s: %d samples, want %d", what, len(s), n)
	}
	now := time.Now().UnixMilli()
	sum := 0.0
	for i, p := range s {
		ts := int64(p["timestamp"].(float64))
		if ts%incr != 0 {
			t.Errorf("%s: sample %d at %d, not on a multiple of %d", what, i, ts, incr)
		}
		if i == 0 && (ts > now || ts < now-2*incr) {
			t.Errorf("%s: newest sample at %d, now %d", what, ts, now)
		}
		if i > 0 {
			if prev := int64(s[i-1]["timestamp"].(float64)); prev-ts != incr {
				t.Errorf("%s: samples %d and %d are %d ms apart", what, i-1, i, prev-ts)
			}
		}
		sum += p["sample"].(float64)
	}
	m := d.(map[string]any)
	newest, oldest := s[0]["sample"].(float64), s[n-1]["sample"].(float64)
	if avg := m["avg"].(float64); math.Abs(avg-sum/float64(n)) > 1e-9 {
		t.Errorf("%s: avg %v, samples' mean %v", what, avg, sum/float64(n))
	}
	wantRate := (newest - oldest) * 1000 / float64(int64(n-1)*incr)
	if ar := m["avg_rate"].(float64); math.Abs(ar-wantRate) > 1e-9 {
		t.Errorf("%s: avg_rate %v, want %v", what, ar, wantRate)
	}
}

// The overview and a queue, asked with the range parameters, give
// RabbitMQ's samples of the server's own history: the right count and
// spacing, and values that follow the traffic (publishes, then a
// consumer's deliveries and acks).
func TestRangeSamples(t *testing.T) {
	a := startAPI(t)
	_, ch := dial(t, a.amqp)
	if _, err := ch.QueueDeclare("s1", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	// The queue is followed from its first read with a range on.
	checkSamples(t, "s1 before traffic", a.guest("GET", "/queues/%2F/s1?"+rangeQuery, "").obj(t)["messages_details"], 11, 1000)
	for i := range 5 {
		if err := ch.Publish("", "s1", false, false, amqp.Publishing{Body: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	// The newest sample shows the 5 messages once a sampling round has run.
	o := pollQueue(t, a, "/overview?"+rangeQuery, func(m map[string]any) bool {
		qt := m["queue_totals"].(map[string]any)
		ms := m["message_stats"].(map[string]any)
		return samplesOf(t, qt["messages_details"])[0]["sample"] == 5.0 &&
			samplesOf(t, ms["publish_details"])[0]["sample"] == 5.0
	})
	qt := o["queue_totals"].(map[string]any)
	for _, k := range []string{"messages_details", "messages_ready_details", "messages_unacknowledged_details"} {
		checkSamples(t, "overview "+k, qt[k], 11, 1000)
	}
	ms := o["message_stats"].(map[string]any)
	for _, k := range []string{"publish_details", "deliver_get_details", "ack_details", "confirm_details", "disk_reads_details"} {
		checkSamples(t, "overview "+k, ms[k], 11, 1000)
	}
	checkSamples(t, "overview churn", o["churn_rates"].(map[string]any)["queue_created_details"], 11, 1000)

	// A consumer takes and acks them: the queue's history shows the
	// publishes, and then the length falling back to 0 and the acks.
	msgs, err := ch.Consume("s1", "", true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		<-msgs
	}
	q := pollQueue(t, a, "/queues/%2F/s1?"+rangeQuery, func(m map[string]any) bool {
		qs := m["message_stats"].(map[string]any)
		return samplesOf(t, m["messages_details"])[0]["sample"] == 0.0 &&
			samplesOf(t, qs["deliver_get_details"])[0]["sample"] == 5.0
	})
	checkSamples(t, "s1 messages", q["messages_details"], 11, 1000)
	sawFive := false
	for _, p := range samplesOf(t, q["messages_details"]) {
		sawFive = sawFive || p["sample"] == 5.0
	}
	if !sawFive {
		t.Errorf("s1's length history lacks the 5 messages: %v", q["messages_details"])
	}
	qms := q["message_stats"].(map[string]any)
	for _, k := range []string{"publish_details", "deliver_get_details", "deliver_no_ack_details", "get_empty_details"} {
		checkSamples(t, "s1 "+k, qms[k], 11, 1000)
	}
	if s := samplesOf(t, qms["publish_details"]); s[0]["sample"] != 5.0 {
		t.Errorf("s1 publish samples %v", s)
	}
	// The list takes them too, and other spans give other counts.
	l := a.guest("GET", "/queues?lengths_age=30&lengths_incr=5", "").list(t)
	checkSamples(t, "queues list", l[0].(map[string]any)["messages_ready_details"], 7, 5000)
	if _, ok := l[0].(map[string]any)["message_stats"].(map[string]any)["publish_details"].(map[string]any)["samples"]; ok {
		t.Error("msg_rates samples without msg_rates_age")
	}
	// Without the parameters, no samples.
	if d := a.guest("GET", "/queues/%2F/s1", "").obj(t)["messages_details"].(map[string]any); len(d) != 1 {
		t.Errorf("details without a range: %v", d)
	}
	want(t, "bad incr", a.guest("GET", "/overview?lengths_age=10&lengths_incr=0", ""), 400)
	want(t, "huge incr", a.guest("GET", "/overview?lengths_age=9223372036854775807&lengths_incr=9223372036854775807", ""), 400)
	// Sorting reads the details' rate and averages: an empty s2's mean
	// length is below s1's.
	if _, err := ch.QueueDeclare("s2", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	sorted := a.guest("GET", "/queues?"+rangeQuery+"&sort=messages_details.avg", "").list(t)
	if len(sorted) != 2 || sorted[0].(map[string]any)["name"] != "s2" {
		names := []any{}
		for _, q := range sorted {
			names = append(names, q.(map[string]any)["name"])
		}
		t.Errorf("sorted by messages_details.avg: %v, want s2 first", names)
	}
	want(t, "too many points", a.guest("GET", "/overview?lengths_age=100000&lengths_incr=1", ""), 400)
}

// The replies with ranges have RabbitMQ 3.10.8's fields and types, the
// samples' included (testdata/samples, recorded by
// scripts/record-samples-fixtures).
func TestRangeFieldsMatchRabbitMQ(t *testing.T) {
	a := startAPI(t)
	// Named, as perftest's connection in the fixture is (user_provided_name).
	ch, err := uiDial(t, a.amqp, "range-fields").Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("s1", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := ch.Publish("", "s1", false, false, amqp.Publishing{Body: []byte("m")}); err != nil {
			t.Fatal(err)
		}
	}
	pollQueue(t, a, "/queues/%2F/s1", func(m map[string]any) bool { return m["messages"] == 3.0 })
	// The channel consumes too, so that its message_stats has both sides
	// (RabbitMQ's first channel is perftest's consumer).
	if _, ok, err := ch.Get("s1", true); !ok || err != nil {
		t.Fatal(ok, err)
	}
	q := "?lengths_age=60&lengths_incr=5&msg_rates_age=60&msg_rates_incr=5&data_rates_age=60&data_rates_incr=5"
	paths := map[string]string{"overview": "/overview" + q, "queue": "/queues/%2F/s1" + q, "queues": "/queues" + q,
		"nodes": "/nodes" + q, "exchange": "/exchanges/%2F/amq.default" + q,
		"vhosts": "/vhosts" + q, "vhost": "/vhosts/%2F" + q, "channels": "/channels" + q, "connections": "/connections" + q}
	notReported := map[string][]string{
		"overview": {"sample_retention_policies.global", "listeners.socket_opts"},
		"queue":    {"backing_queue_status", "idle_since"},
		"queues":   {"backing_queue_status", "idle_since"},
		"nodes": {"io_*", "mnesia_*", "msg_store_*", "queue_index_*", "gc_*", "context_switches*", "metrics_gc_queue_length",
			"ra_open_file_metrics", "db_dir", "channel_*", "connection_*", "queue_created*", "queue_declared*", "queue_deleted*"},
		"vhosts": {"message_stats.confirm*", "message_stats.drop_unroutable*", "message_stats.return_unroutable*"},
		"vhost":  {"message_stats.confirm*", "message_stats.drop_unroutable*", "message_stats.return_unroutable*"},
		// Connections keep no history: their byte counters' details have
		// the current rate only, not data_rates' samples and averages.
		"connections": {"recv_oct_details.*", "send_oct_details.*", "reductions_details.*"},
	}
	matchFixtures(t, a, "testdata/samples", paths, notReported)
}

// newest is the newest sample of message_stats' key_details in m.
func newest(t *testing.T, m map[string]any, key string) any {
	t.Helper()
	ms, ok := m["message_stats"].(map[string]any)
	if !ok || ms[key+"_details"] == nil {
		return nil
	}
	return samplesOf(t, ms[key+"_details"])[0]["sample"]
}

// Exchanges, channels and vhosts take the range parameters too, their
// samples following the traffic.
func TestRangeSamplesExchangesChannelsVHosts(t *testing.T) {
	a := startAPI(t)
	_, ch := dial(t, a.amqp)
	if err := ch.ExchangeDeclare("x1", "direct", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("q1", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind("q1", "k", "x1", false, nil); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		if err := ch.Publish("x1", "k", false, false, amqp.Publishing{Body: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	x := pollQueue(t, a, "/exchanges/%2F/x1?"+rangeQuery, func(m map[string]any) bool {
		return newest(t, m, "publish_in") == 4.0 && newest(t, m, "publish_out") == 4.0
	})
	for _, k := range []string{"publish_in_details", "publish_out_details"} {
		checkSamples(t, "x1 "+k, x["message_stats"].(map[string]any)[k], 11, 1000)
	}
	c := pollList(t, a, "guest", "guest", "/channels?"+rangeQuery, func(l []map[string]any) bool {
		return len(l) == 1 && newest(t, l[0], "publish") == 4.0
	})[0]
	for _, k := range []string{"publish_details", "confirm_details", "drop_unroutable_details"} {
		checkSamples(t, "channel "+k, c["message_stats"].(map[string]any)[k], 11, 1000)
	}
	v := pollQueue(t, a, "/vhosts/%2F?"+rangeQuery, func(m map[string]any) bool {
		return samplesOf(t, m["messages_details"])[0]["sample"] == 4.0 && newest(t, m, "publish") == 4.0
	})
	checkSamples(t, "vhost messages", v["messages_details"], 11, 1000)
	checkSamples(t, "vhost publish", v["message_stats"].(map[string]any)["publish_details"], 11, 1000)
	l := a.guest("GET", "/vhosts?"+rangeQuery, "").list(t)
	checkSamples(t, "vhosts list", l[0].(map[string]any)["messages_ready_details"], 11, 1000)
}

// The overview's samples sum the vhosts its user sees: a management user
// of v2 alone sees v2's queued messages, not those of /.
func TestRangeSamplesPerUserVHosts(t *testing.T) {
	a := startAPI(t)
	want(t, "v2", a.guest("PUT", "/vhosts/v2", ""), 201)
	addUser(t, a.srv, "v2user", &security.Permission{VHost: "v2", Configure: ".*", Write: ".*", Read: ".*"}, "management")
	want(t, "q in /", a.guest("PUT", "/queues/%2F/root-q", `{"durable":true}`), 201)
	want(t, "q in v2", a.guest("PUT", "/queues/v2/v2-q", `{"durable":true}`), 201)
	publish := func(vhost, q string, n int) {
		for range n {
			want(t, "publish", a.guest("POST", "/exchanges/"+vhost+"/amq.default/publish",
				`{"properties":{},"routing_key":"`+q+`","payload":"m","payload_encoding":"string"}`), 200)
		}
	}
	publish("%2F", "root-q", 5)
	publish("v2", "v2-q", 2)
	newestQueued := func(user string) any {
		r := a.do(user, map[string]string{"guest": "guest", "v2user": "pw"}[user], "GET", "/overview?"+rangeQuery, "")
		return samplesOf(t, r.obj(t)["queue_totals"].(map[string]any)["messages_details"])[0]["sample"]
	}
	deadline := time.Now().Add(10 * time.Second)
	for newestQueued("guest") != 7.0 {
		if time.Now().After(deadline) {
			t.Fatalf("guest's overview samples: newest %v, want 7", newestQueued("guest"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := newestQueued("v2user"); got != 2.0 {
		t.Errorf("v2user's overview samples: newest %v, want v2's 2", got)
	}
}
