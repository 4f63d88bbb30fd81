package management_test

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// pollList reads a list until ok holds for it, failing after 10 s.
func pollList(t *testing.T, a *api, user, pass, path string, ok func([]map[string]any) bool) []map[string]any {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := a.do(user, pass, "GET", path, "")
		var l []map[string]any
		if r.status == 200 && json.Unmarshal(r.body, &l) == nil && ok(l) {
			return l
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: timed out; last %d %s", path, r.status, r.body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// byName returns the list's items keyed by a string field.
func byField(l []map[string]any, field string) map[string]map[string]any {
	out := map[string]map[string]any{}
	for _, m := range l {
		if s, ok := m[field].(string); ok {
			out[s] = m
		}
	}
	return out
}

// num reads a dotted numeric field (JSON numbers are float64).
func num(m map[string]any, path string) float64 {
	var v any = m
	for _, k := range strings.Split(path, ".") {
		mm, _ := v.(map[string]any)
		v = mm[k]
	}
	f, _ := v.(float64)
	return f
}

// channelsFixture is a connection with three channels: a consumer with
// prefetch 3 holding two deliveries unacked, a confirming publisher, and
// a transaction with one publish and nothing committed.
type channelsFixture struct {
	conn                 *amqp.Connection
	consume, pub, txChan *amqp.Channel
}

func newChannelsFixture(t *testing.T, a *api) *channelsFixture {
	t.Helper()
	conn, err := amqp.DialConfig(a.amqp, amqp.Config{Properties: amqp.Table{"connection_name": "chans"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	f := &channelsFixture{conn: conn}
	open := func() *amqp.Channel {
		ch, err := conn.Channel()
		if err != nil {
			t.Fatal(err)
		}
		return ch
	}
	f.consume, f.pub, f.txChan = open(), open(), open()
	if _, err := f.consume.QueueDeclare("cq", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := f.consume.Qos(3, 0, false); err != nil {
		t.Fatal(err)
	}
	deliveries, err := f.consume.Consume("cq", "ctag1", false, false, false, false, amqp.Table{"x-priority": int32(5)})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.pub.Confirm(false); err != nil {
		t.Fatal(err)
	}
	confirms := f.pub.NotifyPublish(make(chan amqp.Confirmation, 3))
	for range 2 {
		if err := f.pub.Publish("", "cq", false, false, amqp.Publishing{Body: []byte("m")}); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.pub.Publish("", "nowhere", false, false, amqp.Publishing{Body: []byte("dropped")}); err != nil {
		t.Fatal(err)
	}
	awaitAcks(t, confirms, 3) // the unroutable one is confirmed too
	for range 2 {
		select {
		case <-deliveries:
		case <-time.After(10 * time.Second):
			t.Fatal("no delivery")
		}
	}
	if err := f.txChan.Tx(); err != nil {
		t.Fatal(err)
	}
	if err := f.txChan.Publish("", "cq", false, false, amqp.Publishing{Body: []byte("tx")}); err != nil {
		t.Fatal(err)
	}
	return f
}

// GET /api/channels, /api/vhosts/{v}/channels, /api/connections/{c}/channels,
// /api/channels/{name}, /api/consumers[/{v}] and a queue's consumer_details,
// on a real connection's channels.
func TestChannelsAndConsumers(t *testing.T) {
	a := startAPI(t)
	addUser(t, a.srv, "mgmt", allOnRoot, "management")
	f := newChannelsFixture(t, a)

	// Three channels of "chans", until the tx publish shows.
	l := pollList(t, a, "guest", "guest", "/channels", func(l []map[string]any) bool {
		for _, m := range l {
			if m["transactional"] == true && m["messages_uncommitted"] == 1.0 {
				return true
			}
		}
		return false
	})
	if len(l) != 3 {
		t.Fatalf("%d channels: %v", len(l), l)
	}
	chans := map[float64]map[string]any{}
	var connName string
	for _, m := range l {
		chans[num(m, "number")] = m
		cd := m["connection_details"].(map[string]any)
		connName = cd["name"].(string)
		if m["name"] != connName+" ("+jsonNum(m["number"])+")" || m["user"] != "guest" || m["vhost"] != "/" ||
			m["state"] != "running" || cd["peer_host"] != "127.0.0.1" || num(cd, "peer_port") == 0 {
			t.Errorf("channel %v", m)
		}
	}
	if !strings.HasSuffix(connName, " -> "+a.srv.Addr().String()) {
		t.Errorf("connection name %q", connName)
	}
	c1, c2, c3 := chans[1], chans[2], chans[3]
	if c1 == nil || c2 == nil || c3 == nil {
		t.Fatalf("channel numbers: %v", l)
	}
	for _, c := range []struct {
		m     map[string]any
		field string
		want  any
	}{
		{c1, "prefetch_count", 3.0}, {c1, "global_prefetch_count", 0.0}, {c1, "consumer_count", 1.0},
		{c1, "messages_unacknowledged", 2.0}, {c1, "confirm", false}, {c1, "transactional", false},
		{c2, "confirm", true}, {c2, "messages_unconfirmed", 0.0}, {c2, "consumer_count", 0.0},
		{c3, "transactional", true}, {c3, "messages_uncommitted", 1.0}, {c3, "acks_uncommitted", 0.0},
	} {
		if c.m[c.field] != c.want {
			t.Errorf("channel %v: %s = %v, want %v", c.m["number"], c.field, c.m[c.field], c.want)
		}
	}
	for _, c := range []struct {
		m     map[string]any
		field string
		want  float64
	}{
		{c1, "message_stats.deliver", 2}, {c1, "message_stats.deliver_get", 2}, {c1, "message_stats.ack", 0},
		{c2, "message_stats.publish", 3}, {c2, "message_stats.confirm", 3}, {c2, "message_stats.drop_unroutable", 1},
		{c3, "message_stats.publish", 1},
	} {
		if got := num(c.m, c.field); got != c.want {
			t.Errorf("channel %v: %s = %v, want %v", c.m["number"], c.field, got, c.want)
		}
	}

	// The connection counts them.
	cr := a.guest("GET", "/connections/"+urlPathEscape(connName), "")
	want(t, "connection", cr, 200)
	if n := cr.obj(t)["channels"]; n != 3.0 {
		t.Errorf("connection's channels: %v", n)
	}
	if cl := a.guest("GET", "/connections", "").list(t); len(cl) != 1 || cl[0].(map[string]any)["channels"] != 3.0 {
		t.Errorf("connections list: %v", cl)
	}

	// The same three through the vhost and the connection.
	for _, p := range []string{"/vhosts/%2F/channels", "/connections/" + urlPathEscape(connName) + "/channels"} {
		r := a.guest("GET", p, "")
		want(t, p, r, 200)
		if n := len(r.list(t)); n != 3 {
			t.Errorf("%s: %d channels", p, n)
		}
	}
	for _, p := range []string{"/vhosts/nope/channels", "/connections/nope/channels", "/channels/nope"} {
		want(t, p, a.guest("GET", p, ""), 404, "Object Not Found", "Not Found")
	}

	// One channel, with its consumer.
	one := a.guest("GET", "/channels/"+urlPathEscape(c1["name"].(string)), "")
	want(t, "one channel", one, 200)
	om := one.obj(t)
	cds, _ := om["consumer_details"].([]any)
	if om["name"] != c1["name"] || len(cds) != 1 || cds[0].(map[string]any)["consumer_tag"] != "ctag1" {
		t.Errorf("one channel: %s", one.body)
	}

	// The consumer, in every list.
	checkConsumer := func(what string, m map[string]any) {
		t.Helper()
		cd := m["channel_details"].(map[string]any)
		q := m["queue"].(map[string]any)
		args, _ := json.Marshal(m["arguments"])
		if m["consumer_tag"] != "ctag1" || q["name"] != "cq" || q["vhost"] != "/" || m["ack_required"] != true ||
			m["exclusive"] != false || m["prefetch_count"] != 3.0 || m["active"] != true || m["activity_status"] != "up" ||
			string(args) != `{"x-priority":5}` || cd["name"] != c1["name"] || cd["number"] != 1.0 ||
			cd["connection_name"] != connName || cd["user"] != "guest" || cd["peer_host"] != "127.0.0.1" {
			t.Errorf("%s: consumer %v", what, m)
		}
	}
	for _, p := range []string{"/consumers", "/consumers/%2F"} {
		r := a.guest("GET", p, "")
		want(t, p, r, 200)
		cl := r.list(t)
		if len(cl) != 1 {
			t.Fatalf("%s: %s", p, r.body)
		}
		checkConsumer(p, cl[0].(map[string]any))
	}
	want(t, "consumers of a missing vhost", a.guest("GET", "/consumers/nope", ""), 404)
	qm := a.guest("GET", "/queues/%2F/cq", "").obj(t)
	if qcd, _ := qm["consumer_details"].([]any); len(qcd) != 1 {
		t.Errorf("queue consumer_details: %v", qm["consumer_details"])
	} else {
		checkConsumer("queue", qcd[0].(map[string]any))
	}

	// A management user sees neither guest's channels nor its consumers'
	// channel by name, but sees the consumers of its vhost, as in RabbitMQ.
	if r := a.do("mgmt", "pw", "GET", "/channels", ""); r.status != 200 || len(r.list(t)) != 0 {
		t.Errorf("mgmt's channels: %d %s", r.status, r.body)
	}
	want(t, "mgmt reads guest's channel", a.do("mgmt", "pw", "GET", "/channels/"+urlPathEscape(c1["name"].(string)), ""), 404)
	if r := a.do("mgmt", "pw", "GET", "/consumers/%2F", ""); r.status != 200 || len(r.list(t)) != 1 {
		t.Errorf("mgmt's consumers: %d %s", r.status, r.body)
	}
	want(t, "POST", a.guest("POST", "/channels", "{}"), 405)

	// Commit, ack and cancel: the counts follow.
	if err := f.txChan.TxCommit(); err != nil {
		t.Fatal(err)
	}
	if err := f.consume.Cancel("ctag1", false); err != nil {
		t.Fatal(err)
	}
	l = pollList(t, a, "guest", "guest", "/channels", func(l []map[string]any) bool {
		for _, m := range l {
			if m["number"] == 1.0 && m["consumer_count"] == 0.0 {
				return true
			}
		}
		return false
	})
	for _, m := range l {
		if m["number"] == 3.0 && m["messages_uncommitted"] != 0.0 {
			t.Errorf("after commit: %v", m)
		}
	}
	pollList(t, a, "guest", "guest", "/consumers", func(l []map[string]any) bool { return len(l) == 0 })
	f.conn.Close()
	pollList(t, a, "guest", "guest", "/channels", func(l []map[string]any) bool { return len(l) == 0 })
}

// Single active consumer: the active one is single_active, the other
// waiting, and the queue names the active one.
func TestChannelsSingleActiveConsumer(t *testing.T) {
	a := startAPI(t)
	_, ch := dial(t, a.amqp)
	if _, err := ch.QueueDeclare("sac", false, false, false, false, amqp.Table{"x-single-active-consumer": true}); err != nil {
		t.Fatal(err)
	}
	for _, tag := range []string{"first", "second"} {
		if _, err := ch.Consume("sac", tag, false, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
	}
	l := pollList(t, a, "guest", "guest", "/consumers", func(l []map[string]any) bool { return len(l) == 2 })
	m := byField(l, "consumer_tag")
	if m["first"]["active"] != true || m["first"]["activity_status"] != "single_active" ||
		m["second"]["active"] != false || m["second"]["activity_status"] != "waiting" {
		t.Errorf("consumers: %v", l)
	}
	if q := a.guest("GET", "/queues/%2F/sac", "").obj(t); q["single_active_consumer_tag"] != "first" {
		t.Errorf("single_active_consumer_tag %v", q["single_active_consumer_tag"])
	}
	if err := ch.Cancel("first", false); err != nil {
		t.Fatal(err)
	}
	l = pollList(t, a, "guest", "guest", "/consumers", func(l []map[string]any) bool { return len(l) == 1 })
	if l[0]["consumer_tag"] != "second" || l[0]["active"] != true {
		t.Errorf("after the active one left: %v", l)
	}
}

// Field names and JSON types of channels and consumers match RabbitMQ
// 3.10.8's (testdata/consumed/, recorded by
// scripts/record-management-fixtures while perftest ran), but for those
// listed as not reported.
func TestChannelsFieldsMatchRabbitMQ(t *testing.T) {
	a := startAPI(t)
	f := newChannelsFixture(t, a)
	l := pollList(t, a, "guest", "guest", "/channels", func(l []map[string]any) bool { return len(l) == 3 })
	var chanName string
	for _, m := range l {
		if m["number"] == 1.0 {
			chanName = m["name"].(string)
		}
	}
	connName := strings.TrimSuffix(chanName, " (1)")
	notReported := []string{"idle_since", "*.idle_since", "backing_queue_status"}
	paths := map[string]string{
		"channels": "/channels", "vhost-channels": "/vhosts/%2F/channels", "channel": "/channels/" + urlPathEscape(chanName),
		"consumers": "/consumers", "vhost-consumers": "/consumers/%2F", "queue": "/queues/%2F/cq",
		"connection-channels": "/connections/" + urlPathEscape(connName) + "/channels",
	}
	skip := map[string][]string{}
	for name := range paths {
		skip[name] = notReported
	}
	matchFixtures(t, a, filepath.Join("testdata", "consumed"), paths, skip)
	f.conn.Close()
}

// jsonNum formats a JSON number that is an integer.
func jsonNum(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// A channel's message rates: above 0 while it publishes, back to 0 once
// it has stopped for a sampling interval (100 ms here).
func TestChannelsRates(t *testing.T) {
	a := startAPI(t)
	_, ch := dial(t, a.amqp)
	if _, err := ch.QueueDeclare("rated", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	rateOf := func(l []map[string]any) float64 {
		if len(l) != 1 {
			return -1
		}
		return num(l[0], "message_stats.publish_details.rate")
	}
	stop := publishEvery(ch, "rated")
	l := pollList(t, a, "guest", "guest", "/channels", func(l []map[string]any) bool { return rateOf(l) > 0 })
	published := num(l[0], "message_stats.publish")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if r := rateOf(l); r > published*10 {
		t.Errorf("rate %v for %v messages in at most 10 s", r, published)
	}
	pollList(t, a, "guest", "guest", "/channels", func(l []map[string]any) bool { return rateOf(l) == 0 })
}

// publishEvery publishes to queue through the default exchange every
// millisecond until stop, which returns the first publish error.
func publishEvery(ch *amqp.Channel, queue string) (stop func() error) {
	quit := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		for {
			select {
			case <-quit:
				done <- nil
				return
			default:
			}
			if err := ch.Publish("", queue, false, false, amqp.Publishing{Body: []byte("m")}); err != nil {
				done <- err
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	return func() error {
		close(quit)
		return <-done
	}
}

// awaitAcks waits up to 10 s for each of n confirms, failing on a nack.
func awaitAcks(t *testing.T, confirms <-chan amqp.Confirmation, n int) {
	t.Helper()
	for range n {
		select {
		case c := <-confirms:
			if !c.Ack {
				t.Fatalf("nacked %v", c)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no confirm")
		}
	}
}
