package broker_test

import (
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/amqp-go/amqp-go/server/broker"
	"github.com/amqp-go/amqp-go/server/security"
	"github.com/amqp-go/amqp-go/server/servertest"
	amqp "github.com/rabbitmq/amqp091-go"
)

// policyAdmin sets and clears policies on the broker under test: ours
// in-process, or RabbitMQ through rabbitmqctl (BROKER_TEST_CTL).
type policyAdmin interface {
	set(t *testing.T, operator bool, name, pattern, applyTo string, priority int, def string)
	clear(t *testing.T, operator bool, name string)
}

type serverPolicies struct{ s *broker.Server }

func (a serverPolicies) set(t *testing.T, operator bool, name, pattern, applyTo string, priority int, def string) {
	t.Helper()
	d := json.NewDecoder(strings.NewReader(def))
	d.UseNumber()
	p := security.PolicyDef{VHost: "/", Name: name, Pattern: pattern, ApplyTo: applyTo, Priority: priority}
	if err := d.Decode(&p.Definition); err != nil {
		t.Fatal(err)
	}
	if _, err := a.s.PutPolicy(p, operator); err != nil {
		t.Fatalf("put policy %s: %v", name, err)
	}
}

func (a serverPolicies) clear(t *testing.T, operator bool, name string) {
	t.Helper()
	if err := a.s.DeletePolicy("/", name, operator); err != nil {
		t.Fatalf("delete policy %s: %v", name, err)
	}
}

type ctlPolicies struct{ ctlAdmin }

func (a ctlPolicies) set(t *testing.T, operator bool, name, pattern, applyTo string, priority int, def string) {
	cmd := "set_policy"
	if operator {
		cmd = "set_operator_policy"
	}
	a.ctl(t, cmd, "-p", "/", "--priority", strconv.Itoa(priority), "--apply-to", applyTo, name, pattern, def)
}

func (a ctlPolicies) clear(t *testing.T, operator bool, name string) {
	cmd := "clear_policy"
	if operator {
		cmd = "clear_operator_policy"
	}
	a.ctl(t, cmd, "-p", "/", name)
}

// policyBroker is a broker URL and the way to set its policies; against
// RabbitMQ it needs BROKER_TEST_CTL. Policies set through setPolicy are
// cleared when the test ends.
func policyBroker(t *testing.T) (string, policyAdmin) {
	t.Helper()
	if u := os.Getenv("BROKER_TEST_URL"); u != "" {
		cmd := strings.Fields(os.Getenv("BROKER_TEST_CTL"))
		if len(cmd) == 0 {
			t.Skip("BROKER_TEST_URL is set without BROKER_TEST_CTL, the rabbitmqctl command to set policies with")
		}
		return u, ctlPolicies{ctlAdmin{cmd}}
	}
	s, u := servertest.StartServer(t, broker.Config{})
	return u, serverPolicies{s}
}

// setPolicy sets a policy (an operator policy with operator) on "/" for
// the rest of the test.
func setPolicy(t *testing.T, a policyAdmin, operator bool, name, pattern, applyTo string, priority int, def string) {
	t.Helper()
	a.set(t, operator, name, pattern, applyTo, priority, def)
	t.Cleanup(func() { a.clear(t, operator, name) })
}

// deathOf is a dead-lettered message's first x-death entry.
func deathOf(t *testing.T, d amqp.Delivery) amqp.Table {
	t.Helper()
	deaths, _ := d.Headers["x-death"].([]any)
	if len(deaths) == 0 {
		t.Fatalf("no x-death on %q: %v", d.Body, d.Headers)
	}
	return deaths[0].(amqp.Table)
}

// TestPolicyLikeArguments: dead-lettering, message TTL and max-length set
// only by a policy behave as the same x-arguments: an expired message and
// one dropped from the head arrive at the dead-letter queue with the same
// x-death reason, queue and routing key.
func TestPolicyLikeArguments(t *testing.T) {
	url, admin := policyBroker(t)
	conn := openConn(t, url)
	ch := openChan(t, conn)
	dlq := uname(t, "dlq")
	declareQueue(t, url, ch, dlq)

	// observe runs the scenario on queue src and returns what it saw.
	observe := func(src string) []string {
		publish(t, ch, "", src, amqp.Publishing{Body: []byte("expires"), Expiration: "100000"})
		waitCount(t, conn, dlq, 1) // the queue's TTL (50 ms), not the message's, expired it
		var out []string
		d := getBody(t, ch, dlq, true)
		x := deathOf(t, d)
		out = append(out, string(d.Body), x["reason"].(string), d.RoutingKey)
		for _, b := range []string{"a", "b", "c"} {
			publish(t, ch, "", src, amqp.Publishing{Body: []byte(b)})
		}
		waitCount(t, conn, dlq, 1) // max-length 2: a is dropped from the head
		d = getBody(t, ch, dlq, true)
		x = deathOf(t, d)
		out = append(out, string(d.Body), x["reason"].(string), d.RoutingKey)
		if x["queue"] != src {
			t.Fatalf("x-death queue %v, want %s", x["queue"], src)
		}
		return out
	}
	byArgs := uname(t, "args")
	if _, err := ch.QueueDeclare(byArgs, false, false, false, false, amqp.Table{
		"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq,
		"x-message-ttl": int32(50), "x-max-length": int32(2),
	}); err != nil {
		t.Fatal(err)
	}
	cleanupQueues(t, url, byArgs)
	want := observe(byArgs)
	if _, err := ch.QueuePurge(byArgs, false); err != nil {
		t.Fatal(err)
	}

	byPolicy := uname(t, "policy")
	setPolicy(t, admin, false, uname(t, "p"), "^"+byPolicy+"$", "queues", 0,
		`{"dead-letter-exchange":"","dead-letter-routing-key":"`+dlq+`","message-ttl":50,"max-length":2}`)
	declareQueue(t, url, ch, byPolicy)
	got := observe(byPolicy)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("by policy %v, by arguments %v", got, want)
	}
	if want[1] != "expired" || want[4] != "maxlen" {
		t.Fatalf("reasons %v", want)
	}
}

// TestPolicyChangesExistingQueue: a max-length policy set on a queue that
// holds 10 messages drops it to the limit at once (dead-lettering what it
// drops, by a DLX of the same policy); clearing a TTL policy leaves later
// messages unexpired.
func TestPolicyChangesExistingQueue(t *testing.T) {
	url, admin := policyBroker(t)
	conn := openConn(t, url)
	ch := openChan(t, conn)
	q, dlq := uname(t, "q"), uname(t, "dlq")
	declareQueue(t, url, ch, q)
	declareQueue(t, url, ch, dlq)
	for i := range 10 {
		publish(t, ch, "", q, body(strconv.Itoa(i)))
	}
	waitCount(t, conn, q, 10)
	setPolicy(t, admin, false, uname(t, "len"), "^"+q+"$", "queues", 0,
		`{"max-length":3,"dead-letter-exchange":"","dead-letter-routing-key":"`+dlq+`"}`)
	waitCount(t, conn, q, 3)
	waitCount(t, conn, dlq, 7)
	if d := getBody(t, ch, q, true); string(d.Body) != "7" {
		t.Fatalf("head after the limit: %q, want 7", d.Body)
	}
	if d := getBody(t, ch, dlq, true); string(d.Body) != "0" || deathOf(t, d)["reason"] != "maxlen" {
		t.Fatalf("first dead-letter %q %v", d.Body, d.Headers)
	}

	tq := uname(t, "ttl")
	declareQueue(t, url, ch, tq)
	ttlName := uname(t, "ttlp")
	admin.set(t, false, ttlName, "^"+tq+"$", "queues", 0, `{"message-ttl":100}`)
	publish(t, ch, "", tq, body("under ttl"))
	waitCount(t, conn, tq, 0)
	admin.clear(t, false, ttlName)
	// A message of its own 300 ms TTL ahead of "kept" (RabbitMQ expires
	// at the head only) expiring shows that "kept" outlived the policy's
	// 100 ms.
	publish(t, ch, "", tq, amqp.Publishing{Body: []byte("own ttl"), Expiration: "300"})
	publish(t, ch, "", tq, body("kept"))
	waitCount(t, conn, tq, 2)
	waitCount(t, conn, tq, 1)
	if d := getBody(t, ch, tq, true); string(d.Body) != "kept" {
		t.Fatalf("left %q, want kept", d.Body)
	}
}

// TestPolicyPrecedence: the highest-priority policy applies alone; an
// operator policy caps a policy's max-length (the lower wins) and a
// queue's own x-max-length below both wins; the queue's own DLX wins over
// the policy's.
func TestPolicyPrecedence(t *testing.T) {
	url, admin := policyBroker(t)
	conn := openConn(t, url)
	ch := openChan(t, conn)
	prefix := uname(t, "prec")
	setPolicy(t, admin, false, prefix+"-low", "^"+prefix, "queues", 1, `{"max-length":1}`)
	setPolicy(t, admin, false, prefix+"-high", "^"+prefix, "queues", 2, `{"max-length":5}`)
	fill := func(q string, n int) {
		for i := range n {
			publish(t, ch, "", q, body(strconv.Itoa(i)))
		}
	}
	q1 := prefix + "-1"
	declareQueue(t, url, ch, q1)
	fill(q1, 8)
	waitCount(t, conn, q1, 5) // the priority-2 policy, not the priority-1 one

	setPolicy(t, admin, true, prefix+"-cap", "^"+prefix, "queues", 0, `{"max-length":3}`)
	waitCount(t, conn, q1, 3) // capped by the operator policy at once

	q2 := prefix + "-2"
	if _, err := ch.QueueDeclare(q2, false, false, false, false, amqp.Table{"x-max-length": int32(2)}); err != nil {
		t.Fatal(err)
	}
	cleanupQueues(t, url, q2)
	fill(q2, 6)
	waitCount(t, conn, q2, 2)

	// The argument's dead-letter exchange wins over the policy's.
	argDLQ, polDLQ := prefix+"-argdlq", prefix+"-poldlq"
	declareQueue(t, url, ch, argDLQ)
	declareQueue(t, url, ch, polDLQ)
	dq := uname(t, "dlxq")
	setPolicy(t, admin, false, uname(t, "dlxp"), "^"+dq+"$", "queues", 0,
		`{"dead-letter-exchange":"","dead-letter-routing-key":"`+polDLQ+`","message-ttl":10}`)
	if _, err := ch.QueueDeclare(dq, false, false, false, false, amqp.Table{
		"x-dead-letter-exchange": "", "x-dead-letter-routing-key": argDLQ}); err != nil {
		t.Fatal(err)
	}
	cleanupQueues(t, url, dq)
	publish(t, ch, "", dq, body("x"))
	waitCount(t, conn, argDLQ, 1) // the policy's TTL still applies
	if n, _ := queueCounts(t, conn, polDLQ); n != 0 {
		t.Fatalf("policy's dead-letter queue got %d", n)
	}
}

// TestPolicyAlternateExchange: an exchange's alternate-exchange set by a
// policy takes what its bindings do not route, and stops when the policy
// is cleared.
func TestPolicyAlternateExchange(t *testing.T) {
	url, admin := policyBroker(t)
	conn := openConn(t, url)
	ch := openChan(t, conn)
	x, ae, q := uname(t, "x"), uname(t, "ae"), uname(t, "q")
	for _, name := range []string{x, ae} {
		if err := ch.ExchangeDeclare(name, "fanout", false, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
	}
	cleanupExchanges(t, url, x, ae)
	declareQueue(t, url, ch, q)
	if err := ch.QueueBind(q, "", ae, false, nil); err != nil {
		t.Fatal(err)
	}
	name := uname(t, "aep")
	admin.set(t, false, name, "^"+x+"$", "exchanges", 0, `{"alternate-exchange":"`+ae+`"}`)
	publish(t, ch, x, "", body("via ae"))
	waitCount(t, conn, q, 1)
	admin.clear(t, false, name)
	// Unroutable now: a mandatory publish comes back.
	returns := ch.NotifyReturn(make(chan amqp.Return, 1))
	if err := ch.Publish(x, "", true, false, body("returned")); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-returns:
		if string(r.Body) != "returned" {
			t.Fatalf("returned %q", r.Body)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no basic.return after the policy was cleared")
	}
	if n, _ := queueCounts(t, conn, q); n != 1 {
		t.Fatalf("alternate queue holds %d, want 1", n)
	}
}

// TestPolicyRestartAndDefinitions: policies and operator policies survive
// a restart on the file store and apply to the recovered queue, and a
// definitions export carries them (policies, operator_policy parameters)
// into another server, where they apply to a queue declared there.
func TestPolicyRestartAndDefinitions(t *testing.T) {
	inProcessOnly(t, "restarts the server")
	dir := t.TempDir()
	open := func() (*broker.Server, string) {
		s, u := servertest.StartServer(t, broker.Config{DataDir: dir})
		return s, u
	}
	s, u := open()
	admin := serverPolicies{s}
	admin.set(t, false, "len", "^keep", "queues", 3, `{"max-length":4,"message-ttl":60000}`)
	admin.set(t, true, "cap", "^keep", "queues", 0, `{"max-length":2}`)
	conn := openConn(t, u)
	ch := openChan(t, conn)
	if _, err := ch.QueueDeclare("keep", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		publish(t, ch, "", "keep", amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte(strconv.Itoa(i))})
	}
	waitCount(t, conn, "keep", 2)
	conn.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, u = open()
	if ps := s.Policies("/", false); len(ps) != 1 || ps[0].Name != "len" || ps[0].Priority != 3 || ps[0].ApplyTo != "queues" {
		t.Fatalf("policies after restart: %+v", ps)
	}
	if ps := s.Policies("/", true); len(ps) != 1 || ps[0].Name != "cap" {
		t.Fatalf("operator policies after restart: %+v", ps)
	}
	conn = openConn(t, u)
	ch = openChan(t, conn)
	for i := range 3 {
		publish(t, ch, "", "keep", body("new"+strconv.Itoa(i)))
	}
	waitCount(t, conn, "keep", 2) // the recovered queue is still capped

	d := s.ExportDefinitions()
	var b strings.Builder
	if err := security.WriteDefinitions(&b, d); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), `"component": "operator_policy"`) || len(d.Policies) != 1 {
		t.Fatalf("export lacks the policies:\n%s", b.String())
	}
	read, err := security.ReadDefinitions(strings.NewReader(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	s2, u2 := servertest.StartServer(t, broker.Config{})
	if err := s2.ImportDefinitions(read); err != nil {
		t.Fatal(err)
	}
	if ps := s2.Policies("/", true); len(ps) != 1 || ps[0].Definition["max-length"] != json.Number("2") {
		t.Fatalf("imported operator policies: %+v", ps)
	}
	conn2 := openConn(t, u2)
	ch2 := openChan(t, conn2)
	if _, err := ch2.QueueDeclare("keep-2", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		publish(t, ch2, "", "keep-2", body(strconv.Itoa(i)))
	}
	waitCount(t, conn2, "keep-2", 2)
	q := s2.VHost("/").Queue("keep-2")
	policy, operator, def := q.PolicyInfo()
	if policy != "len" || operator != "cap" || def["max-length"] != json.Number("2") || def["message-ttl"] != json.Number("60000") {
		t.Fatalf("policy info %q %q %v", policy, operator, def)
	}
}

// TestPolicyRefusals: definitions RabbitMQ refuses are refused with its
// texts, and patterns Go's RE2 cannot compile with a clear one.
func TestPolicyRefusals(t *testing.T) {
	inProcessOnly(t, "calls the server's policy API")
	s, _ := servertest.StartServer(t, broker.Config{})
	for _, c := range []struct {
		operator      bool
		pattern, def  string
		applyTo, want string
	}{
		{false, "q", `{"message-ttl":"abc"}`, "", `<<"abc">> is not a valid message TTL`},
		{false, "q", `{"foo":"bar","message-ttl":5}`, "", `[{<<"foo">>,<<"bar">>}] are not recognised policy settings`},
		{false, "q", `{}`, "", `no policy provided`},
		{false, "q", `{"expires":0}`, "", `0 is not a valid queue expiry`},
		{false, "q", `{"max-length":-1}`, "", `-1 is not a valid maximum length`},
		{false, "q", `{"max-length-bytes":1.5}`, "", `1.5 is not a valid maximum length in bytes`},
		{false, "q", `{"overflow":"x"}`, "", `<<"x">> is not a valid overflow value`},
		{false, "q", `{"dead-letter-exchange":5}`, "", `5 is not a valid dead letter exchange name`},
		{false, "q", `{"dead-letter-strategy":"twice"}`, "", `<<"twice">> is not a valid dead letter strategy`},
		{false, "q", `{"single-active-consumer":true}`, "", `[{<<"single-active-consumer">>,true}] are not recognised policy settings`},
		{false, "q", `{"message-ttl":5}`, "classic_queues", `apply-to 'classic_queues' unrecognised; should be 'queues', 'exchanges' or 'all'`},
		{true, "q", `{"dead-letter-exchange":"x"}`, "", `[{<<"dead-letter-exchange">>,<<"x">>}] are not recognised policy settings`},
		{false, "(?<=a)b", `{"message-ttl":5}`, "", "pattern should be regular expression but is invalid: invalid named capture: `(?<=a)b` (Go's RE2 syntax; PCRE's look-around and back-references are not supported)"},
	} {
		d := json.NewDecoder(strings.NewReader(c.def))
		d.UseNumber()
		p := security.PolicyDef{VHost: "/", Name: "p", Pattern: c.pattern, ApplyTo: c.applyTo}
		if err := d.Decode(&p.Definition); err != nil {
			t.Fatal(err)
		}
		_, err := s.PutPolicy(p, c.operator)
		if err == nil || err.Error() != c.want {
			t.Errorf("%s %s: got %v, want %s", c.pattern, c.def, err, c.want)
		}
	}
	if len(s.Policies("/", false))+len(s.Policies("/", true)) != 0 {
		t.Fatal("a refused policy was stored")
	}
}

// TestPolicyExpiresExistingQueue: an expires policy set on an unused
// queue deletes it once that long has passed, as the argument would.
func TestPolicyExpiresExistingQueue(t *testing.T) {
	url, admin := policyBroker(t)
	conn := openConn(t, url)
	ch := openChan(t, conn)
	q := uname(t, "q")
	declareQueue(t, url, ch, q)
	setPolicy(t, admin, false, uname(t, "exp"), "^"+q+"$", "queues", 0, `{"expires":200}`)
	// A passive declare is a use, so polls are spaced wider than the expiry.
	deadline := time.Now().Add(10 * time.Second)
	for {
		pc := openChan(t, conn)
		_, err := pc.QueueDeclarePassive(q, false, false, false, false, nil)
		if err != nil {
			wantErr(t, err, 404, "NOT_FOUND - no queue '"+q+"' in vhost '/'")
			return
		}
		pc.Close()
		if time.Now().After(deadline) {
			t.Fatal("the queue did not expire")
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// TestPolicyConsumerTimeout: consumer-timeout (RabbitMQ 3.12's key; 3.10
// refuses it) set by a policy times deliveries out as x-consumer-timeout.
func TestPolicyConsumerTimeout(t *testing.T) {
	inProcessOnly(t, "RabbitMQ 3.10 has no consumer-timeout policy key")
	url, admin := policyBroker(t)
	conn := openConn(t, url)
	ch := openChan(t, conn)
	q := uname(t, "q")
	declareQueue(t, url, ch, q)
	setPolicy(t, admin, false, uname(t, "ct"), "^"+q+"$", "queues", 0, `{"consumer-timeout":200}`)
	publish(t, ch, "", q, body("m"))
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	ds, err := ch.Consume(q, "", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	recv(t, ds)
	wantTimeoutClose(t, closed, 1, 200*time.Millisecond)
}
