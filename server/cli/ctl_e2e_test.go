package cli_test

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// ctlResult is one run of amqp-server ctl.
type ctlResult struct {
	out, err string
	code     int
}

// ctl runs the binary's ctl command against the API at base (an
// http:// URL; "" for the default) with args, as guest unless args say
// otherwise.
func ctl(t *testing.T, base string, args ...string) ctlResult {
	t.Helper()
	full := []string{"ctl"}
	if base != "" {
		full = append(full, "--url", base)
	}
	cmd := exec.Command(binary, append(full, args...)...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AMQP_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	var out, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return ctlResult{out.String(), stderr.String(), code}
}

// ok fails unless the run succeeded, and returns its output.
func (r ctlResult) ok(t *testing.T, what string) string {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("%s: exit %d\nstdout: %s\nstderr: %s", what, r.code, r.out, r.err)
	}
	return r.out
}

// fails checks the exit code and that stderr says want.
func (r ctlResult) fails(t *testing.T, what string, code int, want string) {
	t.Helper()
	if r.code != code || !strings.Contains(r.err, want) {
		t.Errorf("%s: exit %d, stderr %q; want exit %d and %q", what, r.code, r.err, code, want)
	}
}

// table parses a table's output: the header's fields and each row's,
// split on runs of two or more spaces (the tabwriter's padding).
func table(t *testing.T, out string) (header []string, rows [][]string) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	split := func(l string) []string {
		var f []string
		for _, c := range strings.Split(l, "  ") {
			if c = strings.TrimSpace(c); c != "" {
				f = append(f, c)
			}
		}
		return f
	}
	header = split(lines[0])
	for _, l := range lines[1:] {
		rows = append(rows, split(l))
	}
	return header, rows
}

// row returns the table row whose first cell is first.
func row(rows [][]string, first string) []string {
	for _, r := range rows {
		if len(r) > 0 && r[0] == first {
			return r
		}
	}
	return nil
}

// ctlServer starts the server (env: more variables) and returns it with
// its API's base URL, once the API's line is logged: the AMQP listener,
// which start waits for, accepts before the management API is up.
func ctlServer(t *testing.T, env ...string) (*proc, string) {
	t.Helper()
	p := start(t, []string{"run"}, env...)
	return p, "http://" + managementAddr(t, p, false)
}

// pollCtl runs ctl until cond holds on its output, failing after 10 s.
func pollCtl(t *testing.T, base string, cond func(string) bool, args ...string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := ctl(t, base, args...)
		if r.code == 0 && cond(r.out) {
			return r.out
		}
		if time.Now().After(deadline) {
			t.Fatalf("ctl %v: timed out; last exit %d\n%s%s", args, r.code, r.out, r.err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ctl list with rabbitmqctl's default columns, chosen columns and JSON,
// for every kind.
func TestCtlList(t *testing.T) {
	p, base := ctlServer(t)
	conn, err := amqp.DialConfig(p.url, amqp.Config{Properties: amqp.Table{"connection_name": "lister"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("q1", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.ExchangeDeclare("x1", "topic", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind("q1", "k.#", "x1", false, nil); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := ch.Publish("x1", "k.a", false, false, amqp.Publishing{Body: []byte("m")}); err != nil {
			t.Fatal(err)
		}
	}
	cch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("q2", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := cch.Qos(7, 0, false); err != nil {
		t.Fatal(err)
	}
	if _, err := cch.Consume("q2", "tag-1", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}

	out := pollCtl(t, base, func(s string) bool {
		_, rows := table(t, s)
		r := row(rows, "q1")
		return len(r) == 2 && r[1] == "2"
	}, "list", "queues")
	header, rows := table(t, out)
	if strings.Join(header, ",") != "name,messages" || len(rows) != 2 || strings.Join(row(rows, "q2"), ",") != "q2,0" {
		t.Errorf("list queues:\n%s", out)
	}

	r := ctl(t, base, "list", "queues", "--format", "json", "--columns", "name,durable,messages_ready,arguments")
	var qs []map[string]any
	if err := json.Unmarshal([]byte(r.ok(t, "queues json")), &qs); err != nil || len(qs) != 2 {
		t.Fatalf("queues json: %v\n%s", err, r.out)
	}
	if q := qs[0]; q["name"] != "q1" || q["durable"] != true || q["messages_ready"] != 2.0 || len(q) != 4 {
		t.Errorf("queues json: %v", qs)
	}

	out = ctl(t, base, "list", "exchanges").ok(t, "exchanges")
	header, rows = table(t, out)
	if strings.Join(header, ",") != "name,type" || strings.Join(row(rows, "x1"), ",") != "x1,topic" ||
		strings.Join(row(rows, "amq.fanout"), ",") != "amq.fanout,fanout" {
		t.Errorf("list exchanges:\n%s", out)
	}

	out = ctl(t, base, "list", "bindings").ok(t, "bindings")
	header, rows = table(t, out)
	if strings.Join(header, ",") != "source_name,source_kind,destination_name,destination_kind,routing_key,arguments" ||
		strings.Join(row(rows, "x1"), ",") != "x1,exchange,q1,queue,k.#,{}" {
		t.Errorf("list bindings:\n%s", out)
	}

	out = ctl(t, base, "list", "connections", "--columns", "user,peer_host,state,vhost,client_properties.connection_name").ok(t, "connections")
	header, rows = table(t, out)
	if len(rows) != 1 || strings.Join(rows[0], ",") != "guest,127.0.0.1,running,/,lister" ||
		header[4] != "client_properties.connection_name" {
		t.Errorf("list connections:\n%s", out)
	}

	out = pollCtl(t, base, func(s string) bool { return strings.Count(s, "\n") == 3 }, "list", "channels")
	header, rows = table(t, out)
	if strings.Join(header, ",") != "pid,user,consumer_count,messages_unacknowledged" {
		t.Errorf("list channels:\n%s", out)
	}
	counts := ""
	for _, r := range rows {
		if len(r) != 4 || !strings.Contains(r[0], " -> ") || r[1] != "guest" {
			t.Errorf("list channels row %q", r)
		}
		counts += r[2]
	}
	if counts != "01" {
		t.Errorf("channels' consumer counts %q:\n%s", counts, out)
	}

	out = ctl(t, base, "list", "consumers", "--format", "json").ok(t, "consumers")
	var cs []map[string]any
	if err := json.Unmarshal([]byte(out), &cs); err != nil || len(cs) != 1 {
		t.Fatalf("consumers: %v\n%s", err, out)
	}
	c := cs[0]
	if c["queue_name"] != "q2" || c["consumer_tag"] != "tag-1" || c["ack_required"] != true || c["prefetch_count"] != 7.0 ||
		c["active"] != true || !strings.HasSuffix(c["channel_pid"].(string), " (2)") || len(c) != 7 {
		t.Errorf("consumers: %v", c)
	}

	out = ctl(t, base, "list", "users").ok(t, "users")
	header, rows = table(t, out)
	if strings.Join(header, ",") != "user,tags" || strings.Join(row(rows, "guest"), ",") != "guest,administrator" {
		t.Errorf("list users:\n%s", out)
	}
	out = ctl(t, base, "list", "vhosts").ok(t, "vhosts")
	if out != "name\n/\n" {
		t.Errorf("list vhosts: %q", out)
	}
	out = ctl(t, base, "list", "permissions").ok(t, "permissions")
	header, rows = table(t, out)
	if strings.Join(header, ",") != "user,configure,write,read" || strings.Join(row(rows, "guest"), ",") != "guest,.*,.*,.*" {
		t.Errorf("list permissions:\n%s", out)
	}
	ctl(t, base, "list", "queues", "--vhost", "nope").fails(t, "missing vhost", 70, "no vhost 'nope'")
	ctl(t, base, "list", "widgets").fails(t, "unknown kind", 64, `cannot list "widgets"`)
	ctl(t, base, "list", "queues", "--format", "xml").fails(t, "bad format", 64, `--format "xml"`)
}

// Users, tags, passwords, vhosts and permissions, checked by logging in
// over AMQP.
func TestCtlUsersAndPermissions(t *testing.T) {
	p, base := ctlServer(t)
	ctl(t, base, "add-user", "--tags", "management", "alice", "pw1").ok(t, "add-user")
	ctl(t, base, "add-user", "alice", "other").fails(t, "add-user twice", 70, "user 'alice' already exists")
	ctl(t, base, "add-vhost", "v1").ok(t, "add-vhost")
	ctl(t, base, "add-vhost", "v1").fails(t, "add-vhost twice", 70, "vhost 'v1' already exists")
	ctl(t, base, "set-permissions", "--vhost", "v1", "alice", "^a", ".*", "^r").ok(t, "set-permissions")
	out := ctl(t, base, "list", "permissions", "-p", "v1").ok(t, "permissions")
	if _, rows := table(t, out); strings.Join(row(rows, "alice"), ",") != "alice,^a,.*,^r" {
		t.Errorf("permissions in v1:\n%s", out)
	}
	aliceURL := func(pw string) string {
		return strings.Replace(p.url, "guest:guest", "alice:"+pw, 1) + "v1"
	}
	login := func(pw string) error {
		c, err := amqp.Dial(aliceURL(pw))
		if err == nil {
			c.Close()
		}
		return err
	}
	if err := login("pw1"); err != nil {
		t.Fatalf("alice with pw1: %v", err)
	}
	// New tags keep the password.
	ctl(t, base, "set-user-tags", "alice", "monitoring", "policymaker").ok(t, "set-user-tags")
	out = ctl(t, base, "list", "users", "--format", "json").ok(t, "users")
	var us []map[string]any
	if err := json.Unmarshal([]byte(out), &us); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, u := range us {
		if u["user"] == "alice" {
			found = true
			if tags, _ := json.Marshal(u["tags"]); string(tags) != `["monitoring","policymaker"]` {
				t.Errorf("alice's tags %s", tags)
			}
		}
	}
	if !found {
		t.Errorf("no alice in %s", out)
	}
	if err := login("pw1"); err != nil {
		t.Fatalf("alice with pw1 after set-user-tags: %v", err)
	}
	ctl(t, base, "change-password", "alice", "pw2").ok(t, "change-password")
	if err := login("pw2"); err != nil {
		t.Fatalf("alice with pw2: %v", err)
	}
	if err := login("pw1"); err == nil {
		t.Fatal("alice still logs in with pw1")
	}
	ctl(t, base, "change-password", "bob", "x").fails(t, "change-password of nobody", 70, "user 'bob' does not exist")
	ctl(t, base, "clear-permissions", "--vhost", "v1", "alice").ok(t, "clear-permissions")
	if err := login("pw2"); err == nil {
		t.Fatal("alice opens v1 without permissions")
	}
	ctl(t, base, "clear-permissions", "--vhost", "v1", "alice").fails(t, "clear twice", 70, "user 'alice' has no permissions in vhost 'v1'")
	ctl(t, base, "delete-vhost", "v1").ok(t, "delete-vhost")
	ctl(t, base, "delete-vhost", "v1").fails(t, "delete-vhost twice", 70, "vhost 'v1' does not exist")
	ctl(t, base, "delete-user", "alice").ok(t, "delete-user")
	ctl(t, base, "delete-user", "alice").fails(t, "delete-user twice", 70, "user 'alice' does not exist")
	ctl(t, base, "set-permissions", "alice", ".*").fails(t, "usage", 64, "usage: amqp-server ctl set-permissions")
	ctl(t, base, "set-permissions", "alice", ".*", ".*", ".*", "--vhost", "v1").fails(t, "flag after the arguments", 64,
		"--vhost must come before the arguments")
}

// purge-queue, delete-queue and close-connection act on what a client sees.
func TestCtlQueuesAndConnections(t *testing.T) {
	p, base := ctlServer(t)
	conn, err := amqp.DialConfig(p.url, amqp.Config{Properties: amqp.Table{"connection_name": "victim"}})
	if err != nil {
		t.Fatal(err)
	}
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("work", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := ch.Publish("", "work", false, false, amqp.Publishing{Body: []byte("m")}); err != nil {
			t.Fatal(err)
		}
	}
	pollCtl(t, base, func(s string) bool { return strings.Contains(s, "work  3") }, "list", "queues")
	ctl(t, base, "purge-queue", "work").ok(t, "purge")
	if q, err := ch.QueueDeclarePassive("work", false, false, false, false, nil); err != nil || q.Messages != 0 {
		t.Fatalf("after purge: %+v %v", q, err)
	}
	ctl(t, base, "purge-queue", "nothing").fails(t, "purge missing", 70, "no queue 'nothing' in vhost '/'")
	if err := ch.Publish("", "work", false, false, amqp.Publishing{Body: []byte("m")}); err != nil {
		t.Fatal(err)
	}
	pollCtl(t, base, func(s string) bool { return strings.Contains(s, "work  1") }, "list", "queues")
	ctl(t, base, "delete-queue", "--if-empty", "work").fails(t, "delete non-empty", 70, "400")
	ctl(t, base, "delete-queue", "work").ok(t, "delete")
	if out := ctl(t, base, "list", "queues").ok(t, "queues"); out != "name  messages\n" {
		t.Errorf("queues after delete: %q", out)
	}
	ctl(t, base, "delete-queue", "work").fails(t, "delete twice", 70, "no queue 'work' in vhost '/'")

	out := ctl(t, base, "list", "connections", "--columns", "name,client_properties.connection_name", "--format", "json").ok(t, "connections")
	var cs []map[string]string
	if err := json.Unmarshal([]byte(out), &cs); err != nil || len(cs) != 1 || cs[0]["client_properties.connection_name"] != "victim" {
		t.Fatalf("connections: %v %s", err, out)
	}
	ctl(t, base, "close-connection", cs[0]["name"], "go away").ok(t, "close-connection")
	select {
	case e := <-closed:
		if e == nil || e.Code != 320 || e.Reason != "CONNECTION_FORCED - go away" {
			t.Errorf("closed with %v", e)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("connection not closed")
	}
	ctl(t, base, "close-connection", cs[0]["name"]).fails(t, "close twice", 70, "no connection '"+cs[0]["name"]+"'")
}

// export-definitions and import-definitions through the API, status, and
// the errors for an unreachable API and a refused login.
func TestCtlDefinitionsStatusErrors(t *testing.T) {
	p, base := ctlServer(t)
	ch, err := dial(t, p.url).Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("kept", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "defs.json")
	ctl(t, base, "export-definitions", file).ok(t, "export")
	var defs struct {
		Queues []struct{ Name string } `json:"queues"`
		Users  []map[string]any        `json:"users"`
	}
	b, err := os.ReadFile(file)
	if err != nil || json.Unmarshal(b, &defs) != nil || len(defs.Queues) != 1 || defs.Queues[0].Name != "kept" {
		t.Fatalf("exported: %v %s", err, b)
	}
	in := filepath.Join(t.TempDir(), "in.json")
	if err := os.WriteFile(in, []byte(`{"users":[{"name":"imported","password_hash":"","tags":""}],"queues":[{"name":"from-file","vhost":"/","durable":true,"auto_delete":false,"arguments":{}}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	ctl(t, base, "import-definitions", in).ok(t, "import")
	if _, err := ch.QueueDeclarePassive("from-file", true, false, false, false, nil); err != nil {
		t.Fatalf("imported queue: %v", err)
	}
	if _, rows := table(t, ctl(t, base, "list", "users").ok(t, "users")); row(rows, "imported") == nil {
		t.Error("imported user not listed")
	}
	if err := os.WriteFile(in, []byte(`{"queues": [`), 0o600); err != nil {
		t.Fatal(err)
	}
	ctl(t, base, "import-definitions", in).fails(t, "bad JSON", 70, "is not JSON")

	out := ctl(t, base, "status").ok(t, "status")
	for _, want := range []string{"Status of node amqp-go@", "Product: AMQP-Go ", "Alarms: (none)",
		"amqp on ", ":" + itoa(p.port), "queues: 2"} {
		if !strings.Contains(out, want) {
			t.Errorf("status has no %q:\n%s", want, out)
		}
	}

	ctl(t, base, "--password", "wrong", "status").fails(t, "bad password", 77, "refused (401")
	ctl(t, "http://127.0.0.1:1", "status").fails(t, "unreachable", 69, "cannot reach the management API at http://127.0.0.1:1")
	ctl(t, "ftp://x", "status").fails(t, "bad url", 64, "is not an http://")
}

// set-policy and clear-policy speak RabbitMQ's /api/policies/{vhost}/{name}:
// against our server, or the API at CTL_TEST_URL (RabbitMQ's, e.g.
// http://127.0.0.1:35696 from PLUGINS=rabbitmq_management
// scripts/rabbitmq-peer start 5696; guest/guest, no policies in /).
func TestCtlPolicies(t *testing.T) {
	base := os.Getenv("CTL_TEST_URL")
	if base == "" {
		_, base = ctlServer(t)
		if st, _ := managementCall(t, strings.TrimPrefix(base, "http://"), "GET", "/policies", ""); st == 404 {
			t.Skip("this server has no /api/policies yet")
		}
	}
	ctl(t, base, "set-policy", "--priority", "3", "--apply-to", "queues", "ttl", "^t\\.", `{"message-ttl":60000}`).ok(t, "set-policy")
	out := ctl(t, base, "list", "policies", "--format", "json").ok(t, "policies")
	var ps []map[string]any
	if err := json.Unmarshal([]byte(out), &ps); err != nil || len(ps) != 1 {
		t.Fatalf("policies: %v %s", err, out)
	}
	def, _ := json.Marshal(ps[0]["definition"])
	if ps[0]["name"] != "ttl" || ps[0]["vhost"] != "/" || ps[0]["pattern"] != `^t\.` || ps[0]["apply-to"] != "queues" ||
		ps[0]["priority"] != 3.0 || string(def) != `{"message-ttl":60000}` {
		t.Errorf("policy %v", ps[0])
	}
	ctl(t, base, "set-policy", "bad", ".*", "{not json").fails(t, "bad definition", 64, "not a JSON object")
	ctl(t, base, "clear-policy", "ttl").ok(t, "clear-policy")
	if out := ctl(t, base, "list", "policies").ok(t, "policies"); strings.Count(out, "\n") != 1 {
		t.Errorf("policies after clear: %q", out)
	}
	ctl(t, base, "clear-policy", "ttl").fails(t, "clear twice", 70, "policy 'ttl' does not exist in vhost '/'")
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}
