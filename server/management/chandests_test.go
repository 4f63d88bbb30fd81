package management_test

import (
	"fmt"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// destTraffic is one channel's traffic whose per-exchange and per-queue
// counts RabbitMQ 3.10.8 (rates_mode detailed) gives exactly as checked in
// TestChannelDestinations (run on the side node with amqp091-go): to the
// default exchange 5 publishes to pq1 and 5 to pq2; to amq.direct 5
// routed to pq1, 5 mandatory unroutable (returned) and one unroutable
// dropped, all confirmed; a get of pq2 acked, one with no ack, one of the
// empty pq3; pq1's 10 consumed,
// the even ones acked, the first odd one nacked with requeue (so
// redelivered), the other odd ones nacked without.
func destTraffic(t *testing.T, ch *amqp.Channel) {
	t.Helper()
	for _, q := range []string{"pq1", "pq2", "pq3"} {
		if _, err := ch.QueueDeclare(q, false, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := ch.QueueBind("pq1", "k", "amq.direct", false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 32))
	pub := func(x, key string, mandatory bool) {
		if err := ch.Publish(x, key, mandatory, false, amqp.Publishing{Body: []byte(key)}); err != nil {
			t.Fatal(err)
		}
	}
	for range 5 {
		pub("", "pq1", false)
		pub("amq.direct", "k", false)
		pub("amq.direct", "nope", true)
		pub("", "pq2", false)
	}
	pub("amq.direct", "nope", false)
	awaitAcks(t, confirms, 21)
	got, ok, err := ch.Get("pq2", false)
	if !ok || err != nil {
		t.Fatal("get pq2", ok, err)
	}
	if err := got.Ack(false); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := ch.Get("pq2", true); !ok || err != nil {
		t.Fatal("get pq2 no ack", ok, err)
	}
	if _, ok, err := ch.Get("pq3", false); ok || err != nil {
		t.Fatal("get pq3", ok, err)
	}
	ds, err := ch.Consume("pq1", "ctag", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		var d amqp.Delivery
		select {
		case d = <-ds:
		case <-time.After(10 * time.Second):
			t.Fatal("no delivery", i)
		}
		if i%2 == 0 {
			err = d.Ack(false)
		} else {
			err = d.Nack(false, i == 1)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// One channel's publishes (per exchange) and deliveries (per queue) count
// what RabbitMQ counts for the same traffic, with rates; a deleted
// queue's entry goes.
func TestChannelDestinations(t *testing.T) {
	a := startAPI(t)
	_, ch := dial(t, a.amqp)
	destTraffic(t, ch)
	l := pollList(t, a, "guest", "guest", "/channels", func(l []map[string]any) bool { return len(l) == 1 })
	path := "/channels/" + urlPathEscape(l[0]["name"].(string))
	wantPub := map[string]string{
		"":           "publish=10 confirm=10 return_unroutable=0 drop_unroutable=0",
		"amq.direct": "publish=11 confirm=11 return_unroutable=5 drop_unroutable=1",
	}
	wantDel := map[string]string{
		"pq1": "deliver=11 deliver_no_ack=0 get=0 get_no_ack=0 get_empty=0 redeliver=1 ack=5 deliver_get=11",
		"pq2": "deliver=0 deliver_no_ack=0 get=1 get_no_ack=1 get_empty=0 redeliver=0 ack=1 deliver_get=2",
		"pq3": "deliver=0 deliver_no_ack=0 get=0 get_no_ack=0 get_empty=1 redeliver=0 ack=0 deliver_get=0",
	}
	pubKeys := []string{"publish", "confirm", "return_unroutable", "drop_unroutable"}
	delKeys := []string{"deliver", "deliver_no_ack", "get", "get_no_ack", "get_empty", "redeliver", "ack", "deliver_get"}
	counts := func(m map[string]any, field string, keys []string) (string, string) {
		st, _ := m["stats"].(map[string]any)
		s := ""
		for i, k := range keys {
			if _, ok := st[k+"_details"].(map[string]any)["rate"].(float64); !ok {
				s += "(no rate) "
			}
			if i > 0 {
				s += " "
			}
			s += fmt.Sprintf("%s=%v", k, st[k])
		}
		obj, _ := m[field].(map[string]any)
		if obj["vhost"] != "/" {
			s += " vhost " + fmt.Sprint(obj["vhost"])
		}
		name, _ := obj["name"].(string)
		return name, s
	}
	check := func(c map[string]any, wantPub, wantDel map[string]string) []string {
		var diffs []string
		for field, want := range map[string]map[string]string{"publishes": wantPub, "deliveries": wantDel} {
			keys, of := pubKeys, "exchange"
			if field == "deliveries" {
				keys, of = delKeys, "queue"
			}
			l, _ := c[field].([]any)
			got := map[string]string{}
			for _, e := range l {
				m, _ := e.(map[string]any)
				name, s := counts(m, of, keys)
				got[name] = s
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				diffs = append(diffs, fmt.Sprintf("%s: %v, want %v", field, got, want))
			}
		}
		return diffs
	}
	var c map[string]any
	var diffs []string
	deadline := time.Now().Add(10 * time.Second)
	for {
		c = a.guest("GET", path, "").obj(t)
		if diffs = check(c, wantPub, wantDel); diffs == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, d := range diffs {
		t.Error(d)
	}
	if cd, _ := c["consumer_details"].([]any); len(cd) != 1 {
		t.Errorf("consumer_details %v", c["consumer_details"])
	}

	// The shape of RabbitMQ's channel detail in rates_mode detailed
	// (testdata/detailed, recorded by scripts/record-channel-detail-fixtures).
	paths := map[string]string{"publisher-channel": path, "consumer-channel": path}
	notReported := []string{"idle_since"} // present only while idle (TestIdleSince)
	matchFixtures(t, a, filepath.Join("testdata", "detailed"), paths,
		map[string][]string{"publisher-channel": notReported, "consumer-channel": notReported})

	if _, err := ch.QueueDelete("pq2", false, false, false); err != nil {
		t.Fatal(err)
	}
	delete(wantDel, "pq2")
	for {
		c = a.guest("GET", path, "").obj(t)
		if diffs = check(c, wantPub, wantDel); diffs == nil {
			break
		}
		if time.Now().After(deadline.Add(10 * time.Second)) {
			t.Fatalf("after deleting pq2: %v", diffs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A channel's per-exchange publish rate is above 0 while it publishes
// there and back to 0 once it has stopped for a sampling interval (100 ms
// here), while other channels publish and read the channel concurrently
// (run with -race).
func TestChannelDestinationRates(t *testing.T) {
	a := startAPI(t)
	_, ch := dial(t, a.amqp)
	if _, err := ch.QueueDeclare("rq", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	l := pollList(t, a, "guest", "guest", "/channels", func(l []map[string]any) bool { return len(l) == 1 })
	path := "/channels/" + urlPathEscape(l[0]["name"].(string))
	rateOf := func(c map[string]any) float64 {
		ps, _ := c["publishes"].([]any)
		if len(ps) != 1 {
			return -1
		}
		return num(ps[0].(map[string]any), "stats.publish_details.rate")
	}
	stop := publishEvery(ch, "rq")
	deadline := time.Now().Add(10 * time.Second)
	for rateOf(a.guest("GET", path, "").obj(t)) <= 0 {
		if time.Now().After(deadline) {
			t.Fatal("publish rate stayed 0")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for rateOf(a.guest("GET", path, "").obj(t)) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("publish rate did not return to 0")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// idle_since appears on a channel and a queue once their counters have
// stayed still for a second, in RabbitMQ 3.10's format, no earlier than
// their last activity, and goes at their next activity; every queue,
// channel and connection has a garbage_collection object of integers.
func TestIdleSince(t *testing.T) {
	a := startAPI(t)
	_, ch := dial(t, a.amqp)
	if _, err := ch.QueueDeclare("iq", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	format := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d$`)
	publish := func() time.Time {
		t.Helper()
		before := time.Now()
		if err := ch.Publish("", "iq", false, false, amqp.Publishing{Body: []byte("m")}); err != nil {
			t.Fatal(err)
		}
		return before
	}
	// idleSince polls path (an object, or a list of one) until ok holds
	// for its idle_since ("" when absent).
	idleSince := func(path string, ok func(string) bool) map[string]any {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			var m map[string]any
			switch v := a.guest("GET", path, "").json(t).(type) {
			case map[string]any:
				m = v
			case []any:
				if len(v) == 1 {
					m, _ = v[0].(map[string]any)
				}
			}
			s, _ := m["idle_since"].(string)
			if m != nil && ok(s) {
				return m
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: idle_since %q", path, s)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	for _, path := range []string{"/queues/%2F/iq", "/channels"} {
		active := publish()
		pollQueue(t, a, "/queues/%2F/iq", func(m map[string]any) bool { return m["messages"] != nil })
		m := idleSince(path, func(s string) bool { return s != "" })
		s := m["idle_since"].(string)
		if !format.MatchString(s) {
			t.Errorf("%s: idle_since %q", path, s)
		}
		since, err := time.Parse("2006-01-02T15:04:05.000-07:00", s)
		if err != nil || since.Before(active.Truncate(time.Millisecond)) || since.After(time.Now()) {
			t.Errorf("%s: idle since %v (%v), active at %v", path, since, err, active)
		}
		publish()
		idleSince(path, func(s string) bool { return s == "" })
	}
	for _, path := range []string{"/queues/%2F/iq", "/channels", "/connections"} {
		var m map[string]any
		switch v := a.guest("GET", path, "").json(t).(type) {
		case map[string]any:
			m = v
		case []any:
			m, _ = v[0].(map[string]any)
		}
		gc, _ := m["garbage_collection"].(map[string]any)
		for _, k := range []string{"fullsweep_after", "max_heap_size", "min_bin_vheap_size", "min_heap_size", "minor_gcs"} {
			if v, ok := gc[k].(float64); !ok || v != float64(int64(v)) {
				t.Errorf("%s: garbage_collection.%s %v", path, k, gc[k])
			}
		}
	}
}
