package management_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/amqp-go/amqp-go/server/security"
	amqp "github.com/rabbitmq/amqp091-go"
)

// TestPolicyFieldsMatchRabbitMQ makes the policy fixtures' objects
// (scripts/record-management-fixtures, testdata/policies/) and compares
// field names and types with RabbitMQ 3.10.8's replies, and the values
// RabbitMQ works out: the policies as listed, a queue's policy, operator
// policy and merged definition, an exchange's policy.
func TestPolicyFieldsMatchRabbitMQ(t *testing.T) {
	a := startAPI(t)
	want(t, "zpol", a.guest("PUT", "/policies/%2F/zpol", `{"pattern":"^zq","definition":{"message-ttl":60000,"max-length":100},"priority":1,"apply-to":"queues"}`), 201)
	want(t, "zop", a.guest("PUT", "/operator-policies/%2F/zop", `{"pattern":"^zq","definition":{"max-length":50},"apply-to":"queues"}`), 201)
	want(t, "zxpol", a.guest("PUT", "/policies/%2F/zxpol", `{"pattern":"^zx","definition":{"alternate-exchange":"amq.fanout"},"apply-to":"exchanges"}`), 201)
	want(t, "zq1", a.guest("PUT", "/queues/%2F/zq1", `{"durable":true,"arguments":{"x-max-length":10}}`), 201)
	want(t, "zx1", a.guest("PUT", "/exchanges/%2F/zx1", `{"type":"direct","durable":true}`), 201)
	paths := map[string]string{
		"policies": "/policies", "vhost-policies": "/policies/%2F", "policy": "/policies/%2F/zpol",
		"operator-policies": "/operator-policies", "operator-policy": "/operator-policies/%2F/zop",
		"queue": "/queues/%2F/zq1", "exchange": "/exchanges/%2F/zx1",
	}
	notReported := map[string][]string{
		"queue":    {"backing_queue_status", "idle_since"},
		"exchange": {"message_stats"},
	}
	// Values compared as well: lists as sets (RabbitMQ's order is its
	// table's; ours is by name).
	sameValues := map[string][]string{
		"policies": nil, "vhost-policies": nil, "policy": nil, "operator-policies": nil, "operator-policy": nil,
		"queue":    {"policy", "operator_policy", "effective_policy_definition", "arguments"},
		"exchange": {"policy"},
	}
	dir := filepath.Join("testdata", "policies")
	matchFixtures(t, a, dir, paths, notReported)
	for name, path := range paths {
		b, err := os.ReadFile(filepath.Join(dir, "rabbitmq-"+name+".json"))
		if err != nil {
			t.Fatal(err)
		}
		var theirs any
		if err := json.Unmarshal(b, &theirs); err != nil {
			t.Fatal(name, err)
		}
		ours := a.guest("GET", path, "").json(t)
		keys := sameValues[name]
		if keys == nil {
			if canonical(t, theirs) != canonical(t, ours) {
				t.Errorf("%s: ours %s, RabbitMQ's %s", name, canonical(t, ours), canonical(t, theirs))
			}
			continue
		}
		for _, k := range keys {
			tv, ov := theirs.(map[string]any)[k], ours.(map[string]any)[k]
			if canonical(t, tv) != canonical(t, ov) {
				t.Errorf("%s.%s: ours %s, RabbitMQ's %s", name, k, canonical(t, ov), canonical(t, tv))
			}
		}
	}
}

// canonical is v as sorted JSON, a list's elements sorted too.
func canonical(t *testing.T, v any) string {
	t.Helper()
	if l, ok := v.([]any); ok {
		parts := make([]string, len(l))
		for i, e := range l {
			parts[i] = canonical(t, e)
		}
		sort.Strings(parts)
		return "[" + strings.Join(parts, ",") + "]"
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestPolicyEndpoints: 201 then 204, RabbitMQ's refusals (checked against
// 3.10.8 with curl), the tag rules, delete, and a policy's effect on an
// existing queue through the API.
func TestPolicyEndpoints(t *testing.T) {
	a := startAPI(t)
	s := a.srv
	addUser(t, s, "mgmt", allOnRoot, "management")
	addUser(t, s, "pm", allOnRoot, "policymaker")
	addUser(t, s, "mon", allOnRoot, "monitoring")
	addUser(t, s, "pmn", nil, "policymaker")

	const p1 = `{"pattern":"^q","definition":{"message-ttl":1000},"priority":1,"apply-to":"queues"}`
	want(t, "create", a.guest("PUT", "/policies/%2F/p1", p1), 201)
	want(t, "update", a.guest("PUT", "/policies/%2F/p1", p1), 204)
	got := a.guest("GET", "/policies/%2F/p1", "")
	want(t, "get", got, 200)
	if g := canonical(t, got.json(t)); g != `{"apply-to":"queues","definition":{"message-ttl":1000},"name":"p1","pattern":"^q","priority":1,"vhost":"/"}` {
		t.Errorf("get: %s", g)
	}
	want(t, "defaults", a.guest("PUT", "/policies/%2F/p2", `{"pattern":"^z","definition":{"expires":5}}`), 201)
	if g := a.guest("GET", "/policies/%2F/p2", "").obj(t); g["apply-to"] != "all" || g["priority"] != 0.0 {
		t.Errorf("defaults: %v", g)
	}
	want(t, "missing", a.guest("GET", "/policies/%2F/nope", ""), 404, "Object Not Found", "Not Found")
	want(t, "delete missing", a.guest("DELETE", "/policies/%2F/nope", ""), 404, "Object Not Found", "Not Found")

	bad := func(what, path, body, reason string) {
		t.Helper()
		want(t, what, a.guest("PUT", path, body), 400, "bad_request", reason)
	}
	bad("ttl text", "/policies/%2F/b", `{"pattern":"q","definition":{"message-ttl":"abc"}}`,
		"Validation failed\n\n&lt;&lt;\"abc\"&gt;&gt; is not a valid message TTL\n")
	bad("unknown key", "/policies/%2F/b", `{"pattern":"q","definition":{"foo":"bar","message-ttl":5}}`,
		"Validation failed\n\n[{&lt;&lt;\"foo\"&gt;&gt;,&lt;&lt;\"bar\"&gt;&gt;}] are not recognised policy settings\n")
	bad("empty", "/policies/%2F/b", `{"pattern":"q","definition":{}}`, "Validation failed\n\nno policy provided\n")
	bad("apply-to", "/policies/%2F/b", `{"pattern":"q","definition":{"message-ttl":5},"apply-to":"foo"}`,
		"Validation failed\n\napply-to 'foo' unrecognised; should be 'queues', 'exchanges' or 'all'\n")
	bad("priority", "/policies/%2F/b", `{"pattern":"q","definition":{"message-ttl":5},"priority":"3"}`,
		"Validation failed\n\npriority should be a number, actually was &lt;&lt;\"3\"&gt;&gt;\n")
	bad("no pattern", "/policies/%2F/b", `{"definition":{"message-ttl":5}}`, "[{key_missing,pattern}]")
	bad("no definition", "/policies/%2F/b", `{"pattern":"q"}`, "[{key_missing,definition}]")
	bad("sac", "/policies/%2F/b", `{"pattern":"q","definition":{"single-active-consumer":true}}`,
		"Validation failed\n\n[{&lt;&lt;\"single-active-consumer\"&gt;&gt;,true}] are not recognised policy settings\n")
	bad("pcre", "/policies/%2F/b", `{"pattern":"(?<=a)b","definition":{"message-ttl":5}}`,
		"Validation failed\n\npattern should be regular expression but is invalid: invalid named capture: `(?&lt;=a)b` (Go's RE2 syntax; PCRE's look-around and back-references are not supported)\n")
	bad("operator key", "/operator-policies/%2F/b", `{"pattern":"q","definition":{"dead-letter-exchange":"x"}}`,
		"Validation failed\n\n[{<<\"dead-letter-exchange\">>,<<\"x\">>}] are not recognised policy settings\n")
	want(t, "no vhost", a.guest("PUT", "/policies/nov/b", `{"pattern":"q","definition":{"message-ttl":5}}`), 404,
		"not_found", "vhost_not_found")

	// Tags: every management user lists the policies of its vhosts; one
	// policy needs policymaker (or administrator) and vhost access;
	// operator policies, administrator.
	for _, u := range []string{"mgmt", "pm", "mon"} {
		r := a.do(u, "pw", "GET", "/policies", "")
		want(t, u+" lists", r, 200)
		if n := len(r.list(t)); n != 2 {
			t.Errorf("%s lists %d policies", u, n)
		}
		want(t, u+" lists operator policies", a.do(u, "pw", "GET", "/operator-policies/%2F", ""), 200)
	}
	obj := []any{"not_authorised", "User not authorised to access object"}
	for _, u := range []string{"mgmt", "mon", "pmn"} {
		want(t, u+" gets", a.do(u, "pw", "GET", "/policies/%2F/p1", ""), 401, obj...)
		want(t, u+" puts", a.do(u, "pw", "PUT", "/policies/%2F/px", p1), 401, obj...)
		want(t, u+" deletes", a.do(u, "pw", "DELETE", "/policies/%2F/p1", ""), 401, obj...)
	}
	if r := a.do("pmn", "pw", "GET", "/policies", ""); len(r.list(t)) != 0 {
		t.Errorf("pmn lists %s", r.body)
	}
	want(t, "pmn lists /", a.do("pmn", "pw", "GET", "/policies/%2F", ""), 401,
		"not_authorised", "User not authorised to access virtual host")
	want(t, "pm gets", a.do("pm", "pw", "GET", "/policies/%2F/p1", ""), 200)
	want(t, "pm puts", a.do("pm", "pw", "PUT", "/policies/%2F/px", `{"pattern":"^px","definition":{"expires":9}}`), 201)
	want(t, "pm deletes", a.do("pm", "pw", "DELETE", "/policies/%2F/px", ""), 204)
	notAdmin := []any{"not_authorised", "Not administrator user"}
	for _, u := range []string{"mgmt", "pm", "mon"} {
		want(t, u+" puts an operator policy", a.do(u, "pw", "PUT", "/operator-policies/%2F/o", p1), 401, notAdmin...)
		want(t, u+" gets an operator policy", a.do(u, "pw", "GET", "/operator-policies/%2F/o", ""), 401, notAdmin...)
	}

	// Effect: an operator policy set through the API caps a queue that
	// already holds messages, at once; deleting it lifts the cap for
	// later messages.
	conn, ch := dial(t, a.amqp)
	defer conn.Close()
	if _, err := ch.QueueDeclare("capped", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	for range 6 {
		if err := ch.Publish("", "capped", false, false, amqp.Publishing{Body: []byte("m")}); err != nil {
			t.Fatal(err)
		}
	}
	pollQueue(t, a, "/queues/%2F/capped", func(m map[string]any) bool { return m["messages"] == 6.0 })
	want(t, "cap", a.guest("PUT", "/operator-policies/%2F/cap", `{"pattern":"^capped$","definition":{"max-length":2},"apply-to":"queues"}`), 201)
	q := a.guest("GET", "/queues/%2F/capped", "").obj(t)
	if q["messages"] != 2.0 || q["operator_policy"] != "cap" || q["policy"] != nil {
		t.Errorf("capped queue: messages %v operator_policy %v policy %v", q["messages"], q["operator_policy"], q["policy"])
	}
	want(t, "uncap", a.guest("DELETE", "/operator-policies/%2F/cap", ""), 204)
	for range 3 {
		if err := ch.Publish("", "capped", false, false, amqp.Publishing{Body: []byte("m")}); err != nil {
			t.Fatal(err)
		}
	}
	pollQueue(t, a, "/queues/%2F/capped", func(m map[string]any) bool { return m["messages"] == 5.0 })

	// The policies are in the definitions, operator policies as
	// RabbitMQ's operator_policy parameters.
	d, err := security.ReadDefinitions(strings.NewReader(string(a.guest("GET", "/definitions", "").body)))
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Policies) != 2 {
		t.Errorf("definitions' policies: %+v", d.Policies)
	}

	// An import (RabbitMQ's format) applies its policies to the queues
	// that exist; a bad one is refused whole.
	want(t, "import", a.guest("POST", "/definitions", `{"policies":[{"vhost":"/","name":"imp","pattern":"^capped$",
		"apply-to":"queues","definition":{"max-length":1},"priority":0}],
		"parameters":[{"vhost":"/","component":"operator_policy","name":"impop",
		"value":{"pattern":"^capped$","definition":{"message-ttl":60000},"priority":0,"apply-to":"queues"}}]}`), 204)
	q = a.guest("GET", "/queues/%2F/capped", "").obj(t)
	if q["messages"] != 1.0 || q["policy"] != "imp" || q["operator_policy"] != "impop" {
		t.Errorf("after the import: messages %v policy %v operator_policy %v", q["messages"], q["policy"], q["operator_policy"])
	}
	want(t, "bad import", a.guest("POST", "/definitions", `{"policies":[{"vhost":"/","name":"bad","pattern":"x",
		"definition":{"max-length":"ten"}}]}`), 400, "bad_request",
		`policies: policy 'bad' in vhost '/': <<"ten">> is not a valid maximum length`)
	want(t, "not imported", a.guest("GET", "/policies/%2F/bad", ""), 404)
}
