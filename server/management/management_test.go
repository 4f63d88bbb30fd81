package management_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/amqp-go/amqp-go/server/broker"
	"github.com/amqp-go/amqp-go/server/management"
	"github.com/amqp-go/amqp-go/server/security"
	"github.com/amqp-go/amqp-go/server/servertest"
	amqp "github.com/rabbitmq/amqp091-go"
)

// api is a broker with the management API, both on 127.0.0.1:0.
type api struct {
	t    *testing.T
	srv  *broker.Server
	amqp string // amqp:// URL
	base string // http://host:port/api
	h    *management.Handler
}

func startAPI(t *testing.T) *api {
	t.Helper()
	return startAPIWith(t, broker.Config{})
}

// startAPIWith is startAPI with a config of the caller's.
func startAPIWith(t *testing.T, cfg broker.Config) *api {
	t.Helper()
	cfg.StatsInterval = 100 * time.Millisecond
	srv, url := servertest.StartServer(t, cfg)
	h := management.New(management.Options{Server: srv, Node: "amqp-go@test",
		Listeners: []management.Listener{{Protocol: "amqp", Addr: srv.Addr()}}})
	svc, err := management.Serve("127.0.0.1:0", h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := svc.Close(5 * time.Second); err != nil {
			t.Errorf("close management: %v", err)
		}
	})
	return &api{t: t, srv: srv, amqp: url, base: "http://" + svc.Addr().String() + "/api", h: h}
}

// reply is one HTTP answer.
type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r reply) json(t *testing.T) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("not JSON (%d): %q", r.status, r.body)
	}
	return v
}

func (r reply) obj(t *testing.T) map[string]any {
	t.Helper()
	m, ok := r.json(t).(map[string]any)
	if !ok {
		t.Fatalf("not an object: %s", r.body)
	}
	return m
}

func (r reply) list(t *testing.T) []any {
	t.Helper()
	l, ok := r.json(t).([]any)
	if !ok {
		t.Fatalf("not a list: %s", r.body)
	}
	return l
}

// do sends method path (under /api, escaped as given) as user:pass.
func (a *api) do(user, pass, method, path, body string) reply {
	a.t.Helper()
	req, err := http.NewRequest(method, a.base+path, strings.NewReader(body))
	if err != nil {
		a.t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		a.t.Fatal(err)
	}
	return reply{resp.StatusCode, resp.Header, b}
}

// guest sends as guest, the administrator.
func (a *api) guest(method, path, body string) reply {
	a.t.Helper()
	return a.do("guest", "guest", method, path, body)
}

// want checks a reply's status and, for an error, RabbitMQ's body.
func want(t *testing.T, what string, r reply, status int, errBody ...any) {
	t.Helper()
	if r.status != status {
		t.Fatalf("%s: status %d, want %d (%s)", what, r.status, status, r.body)
	}
	if status >= 400 && status != 405 {
		if ct := r.header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s: Content-Type %q", what, ct)
		}
	}
	if len(errBody) == 2 {
		m := r.obj(t)
		got, _ := json.Marshal(m["reason"])
		exp, _ := json.Marshal(errBody[1])
		if m["error"] != errBody[0] || string(got) != string(exp) {
			t.Errorf("%s: %s, want error %v reason %s", what, r.body, errBody[0], exp)
		}
	}
}

func addUser(t *testing.T, s *broker.Server, name string, perms *security.Permission, tags ...string) {
	t.Helper()
	if err := s.Security().AddUser(name, "pw", tags...); err != nil {
		t.Fatal(err)
	}
	if perms != nil {
		p := *perms
		p.User = name
		if err := s.Security().SetPermissions(p); err != nil {
			t.Fatal(err)
		}
	}
}

var allOnRoot = &security.Permission{VHost: "/", Configure: ".*", Write: ".*", Read: ".*"}

// The auth matrix by tag: who may log in, who sees which vhost, who may
// change what; every refusal 401 with RabbitMQ's body.
func TestAuthMatrix(t *testing.T) {
	a := startAPI(t)
	s := a.srv
	if err := s.Security().PutVHost(security.VHost{Name: "v2"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Security().SetPermissions(security.Permission{User: "guest", VHost: "v2", Configure: ".*", Write: ".*", Read: ".*"}); err != nil {
		t.Fatal(err)
	}
	addUser(t, s, "mon", nil, "monitoring")
	addUser(t, s, "mgmt", allOnRoot, "management")
	addUser(t, s, "pm", allOnRoot, "policymaker")
	addUser(t, s, "own", &security.Permission{VHost: "/", Configure: "^own-", Write: ".*", Read: ".*"}, "management")
	addUser(t, s, "notag", allOnRoot)
	want(t, "v2 queue", a.guest("PUT", "/queues/v2/q2", `{}`), 201)

	for _, c := range []struct {
		user, pass string
		status     int
		err        []any
	}{
		{"guest", "guest", 200, nil},
		{"mon", "pw", 200, nil},
		{"mgmt", "pw", 200, nil},
		{"pm", "pw", 200, nil},
		{"notag", "pw", 401, []any{"not_authorised", "Not management user"}},
		{"guest", "bad", 401, []any{"not_authorized", "Login failed"}},
		{"nobody", "pw", 401, []any{"not_authorized", "Login failed"}},
	} {
		r := a.do(c.user, c.pass, "GET", "/overview", "")
		want(t, c.user+" overview", r, c.status, c.err...)
		r = a.do(c.user, c.pass, "GET", "/whoami", "")
		want(t, c.user+" whoami", r, c.status, c.err...)
		if c.status == 200 && r.obj(t)["name"] != c.user {
			t.Errorf("whoami as %s: %s", c.user, r.body)
		}
	}
	r := a.do("", "", "GET", "/overview", "")
	want(t, "no credentials", r, 401, "not_authorized", "Login failed")
	if r.header.Get("WWW-Authenticate") == "" {
		t.Error("401 without WWW-Authenticate")
	}
	if got := a.guest("GET", "/whoami", "").obj(t)["tags"]; fmt.Sprint(got) != "[administrator]" {
		t.Errorf("guest's tags %v, want an array [administrator]", got)
	}

	// Who sees v2 (guest and mon see all; mgmt has no permissions there).
	names := func(r reply) string {
		var out []string
		for _, it := range r.list(t) {
			m := it.(map[string]any)
			out = append(out, fmt.Sprint(m["vhost"], "/", m["name"]))
		}
		return strings.Join(out, ",")
	}
	want(t, "q1", a.guest("PUT", "/queues/%2F/q1", `{}`), 201)
	for user, exp := range map[string]string{"guest": "//q1,v2/q2", "mon": "//q1,v2/q2", "mgmt": "//q1"} {
		pass := "pw"
		if user == "guest" {
			pass = "guest"
		}
		r := a.do(user, pass, "GET", "/queues", "")
		want(t, user+" queues", r, 200)
		if got := names(r); got != exp {
			t.Errorf("%s sees %s, want %s", user, got, exp)
		}
	}
	want(t, "mgmt reads v2's queue", a.do("mgmt", "pw", "GET", "/queues/v2/q2", ""), 404, "Object Not Found", "Not Found")
	want(t, "mgmt lists v2", a.do("mgmt", "pw", "GET", "/queues/v2", ""), 404)

	// Changes: vhost access, then the user's configure permission.
	want(t, "mon declares", a.do("mon", "pw", "PUT", "/queues/%2F/m", `{}`), 401,
		"not_authorised", "User not authorised to access virtual host")
	want(t, "mgmt declares", a.do("mgmt", "pw", "PUT", "/queues/%2F/m", `{}`), 201)
	want(t, "mgmt in v2", a.do("mgmt", "pw", "PUT", "/queues/v2/m", `{}`), 401,
		"not_authorised", "User not authorised to access virtual host")
	want(t, "own outside its pattern", a.do("own", "pw", "PUT", "/queues/%2F/other", `{}`), 401,
		"not_authorised", "Access refused.")
	want(t, "own inside its pattern", a.do("own", "pw", "PUT", "/queues/%2F/own-1", `{}`), 201)
	want(t, "own deletes outside", a.do("own", "pw", "DELETE", "/queues/%2F/m", ""), 401,
		"not_authorised", "Access refused.")
	want(t, "notag deletes", a.do("notag", "pw", "DELETE", "/queues/%2F/m", ""), 401,
		"not_authorised", "Not management user")
}

// guest is loopback-only here as on AMQP: a request from another address
// is refused with RabbitMQ's reason (served in-process: tests talk only
// to 127.0.0.1).
func TestGuestLoopbackOnly(t *testing.T) {
	a := startAPI(t)
	addUser(t, a.srv, "admin2", allOnRoot, "administrator")
	for _, c := range []struct {
		user, pass, remote string
		status             int
	}{
		{"guest", "guest", "192.0.2.7:40000", 401},
		{"guest", "guest", "127.0.0.1:40000", 200},
		{"guest", "guest", "[::1]:40000", 200},
		{"admin2", "pw", "192.0.2.7:40000", 200},
	} {
		req := httptest.NewRequest("GET", "/api/overview", nil)
		req.RemoteAddr = c.remote
		req.SetBasicAuth(c.user, c.pass)
		w := httptest.NewRecorder()
		a.h.ServeHTTP(w, req)
		if w.Code != c.status {
			t.Errorf("%s from %s: %d, want %d (%s)", c.user, c.remote, w.Code, c.status, w.Body)
		}
		if c.status == 401 && !strings.Contains(w.Body.String(), `"reason":"User can only log in via localhost"`) {
			t.Errorf("%s from %s: %s", c.user, c.remote, w.Body)
		}
	}
}

// Vhost and object names arrive percent-encoded: / as %2F, in vhosts and
// in queue, exchange and binding names.
func TestEncodedPaths(t *testing.T) {
	a := startAPI(t)
	if err := a.srv.Security().PutVHost(security.VHost{Name: "a/b"}); err != nil {
		t.Fatal(err)
	}
	if err := a.srv.Security().SetPermissions(security.Permission{User: "guest", VHost: "a/b", Configure: ".*", Write: ".*", Read: ".*"}); err != nil {
		t.Fatal(err)
	}
	want(t, "PUT q/x in /", a.guest("PUT", "/queues/%2F/q%2Fx", `{"durable":true}`), 201)
	want(t, "PUT q in a/b", a.guest("PUT", "/queues/a%2Fb/q", `{}`), 201)
	want(t, "PUT x y in a/b", a.guest("PUT", "/exchanges/a%2Fb/x%20y", `{"type":"fanout"}`), 201)
	r := a.guest("GET", "/queues/%2F/q%2Fx", "")
	want(t, "GET q/x", r, 200)
	if m := r.obj(t); m["name"] != "q/x" || m["vhost"] != "/" || m["durable"] != true {
		t.Errorf("q/x: %s", r.body)
	}
	if m := a.guest("GET", "/queues/a%2Fb/q", "").obj(t); m["vhost"] != "a/b" {
		t.Errorf("a/b's q: %v", m)
	}
	if m := a.guest("GET", "/exchanges/a%2Fb/x%20y", "").obj(t); m["name"] != "x y" || m["type"] != "fanout" {
		t.Errorf("x y: %v", m)
	}
	want(t, "bind", a.guest("POST", "/bindings/a%2Fb/e/x%20y/q/q", `{"routing_key":"k/1"}`), 201)
	r = a.guest("GET", "/bindings/a%2Fb/e/x%20y/q/q", "")
	l := r.list(t)
	if len(l) != 1 || l[0].(map[string]any)["properties_key"] != "k%2F1" {
		t.Fatalf("bindings: %s", r.body)
	}
	if n := len(a.guest("GET", "/queues/a%2Fb", "").list(t)); n != 1 {
		t.Errorf("a/b has %d queues", n)
	}
	// The default vhost's listing has q/x only; a trailing slash is the
	// same list.
	if n := len(a.guest("GET", "/queues/%2F/", "").list(t)); n != 1 {
		t.Errorf("/ has %d queues", n)
	}
	want(t, "outside /api", a.guest("GET", "/apix", ""), 404)
	want(t, "unknown", a.guest("GET", "/nope", ""), 404, "Object Not Found", "Not Found")
}

// Lists page, filter, sort and trim as RabbitMQ's do.
func TestListParameters(t *testing.T) {
	a := startAPI(t)
	for _, n := range []string{"c", "a", "e", "b", "d"} {
		want(t, "PUT "+n, a.guest("PUT", "/queues/%2F/"+n, `{}`), 201)
	}
	names := func(items []any) string {
		var out []string
		for _, it := range items {
			out = append(out, it.(map[string]any)["name"].(string))
		}
		return strings.Join(out, "")
	}
	if got := names(a.guest("GET", "/queues", "").list(t)); got != "abcde" {
		t.Errorf("unpaged %s", got)
	}
	r := a.guest("GET", "/queues?page=2&page_size=2", "")
	want(t, "page 2", r, 200)
	p := r.obj(t)
	if names(p["items"].([]any)) != "cd" || p["page"] != 2.0 || p["page_count"] != 3.0 || p["page_size"] != 2.0 ||
		p["item_count"] != 2.0 || p["filtered_count"] != 5.0 || p["total_count"] != 5.0 {
		t.Errorf("page 2: %s", r.body)
	}
	if names(a.guest("GET", "/queues?page=3&page_size=2", "").obj(t)["items"].([]any)) != "e" {
		t.Error("last page")
	}
	want(t, "page 4", a.guest("GET", "/queues?page=4&page_size=2", ""), 400,
		"page_out_of_range", "Page out of range, page: 4 page size: 2, len: 5")
	want(t, "page x", a.guest("GET", "/queues?page=x", ""), 400, "bad_request", "Pagination parameters are invalid")
	want(t, "page_size 501", a.guest("GET", "/queues?page=1&page_size=501", ""), 400,
		"invalid_pagination_parameters", "Invalid pagination parameters: page number 1, page size 501")
	want(t, "page 0", a.guest("GET", "/queues?page=0", ""), 400,
		"invalid_pagination_parameters", "Invalid pagination parameters: page number 0, page size undefined")
	if n := len(a.guest("GET", "/queues?page_size=1&name=zz", "").list(t)); n != 5 {
		t.Errorf("without page, page_size and name are ignored (as in RabbitMQ): %d queues", n)
	}
	r = a.guest("GET", "/queues?page=1&name=zz", "")
	if b := string(r.body); b != `{"filtered_count":0,"item_count":0,"items":[],"page":1,"page_count":0,"page_size":100,"total_count":5}` {
		t.Errorf("no match: %s", b)
	}
	if got := names(a.guest("GET", "/queues?sort=name&sort_reverse=true", "").list(t)); got != "edcba" {
		t.Errorf("sort_reverse %s", got)
	}
	r = a.guest("GET", "/queues?name=B&page=1", "")
	if p := r.obj(t); names(p["items"].([]any)) != "b" || p["filtered_count"] != 1.0 || p["total_count"] != 5.0 {
		t.Errorf("name filter: %s", r.body)
	}
	if got := names(a.guest("GET", "/queues?page=1&name=%5E%5BAb%5D&use_regex=true", "").obj(t)["items"].([]any)); got != "ab" {
		t.Errorf("regex %s", got)
	}
	want(t, "bad regex", a.guest("GET", "/queues?page=1&name=(&use_regex=true", ""), 400, "bad_request", "Pagination parameters are invalid")
	l := a.guest("GET", "/queues?columns=name,message_stats.publish&page=1&page_size=1", "").obj(t)["items"].([]any)
	if b, _ := json.Marshal(l); string(b) != `[{"message_stats":{"publish":0},"name":"a"}]` {
		t.Errorf("columns: %s", b)
	}
}

// PUT answers 201 when it creates and 204 when the object existed; bad
// bodies, missing objects and inequivalent redeclares get RabbitMQ's
// codes and texts (recorded from RabbitMQ 3.10.8 with curl).
func TestWrites(t *testing.T) {
	a := startAPI(t)
	want(t, "PUT q1", a.guest("PUT", "/queues/%2F/q1", `{"durable":true,"auto_delete":false,"arguments":{"x-max-length":10}}`), 201)
	want(t, "PUT q1 again", a.guest("PUT", "/queues/%2F/q1", `{"durable":true,"arguments":{"x-max-length":10}}`), 204)
	want(t, "inequivalent", a.guest("PUT", "/queues/%2F/q1", `{"durable":false,"arguments":{"x-max-length":10}}`), 400,
		"bad_request", "inequivalent arg 'durable' for queue 'q1' in vhost '/': received 'false' but current is 'true'")
	if m := a.guest("GET", "/queues/%2F/q1", "").obj(t); fmt.Sprint(m["arguments"]) != "map[x-max-length:10]" {
		t.Errorf("arguments %v", m["arguments"])
	}
	want(t, "not json", a.guest("PUT", "/queues/%2F/q2", `{"durable":tru`), 400, "bad_request", "not_json")
	want(t, "array", a.guest("PUT", "/queues/%2F/q2", `[1]`), 400, "bad_request", "not_json")
	want(t, "not boolean", a.guest("PUT", "/queues/%2F/q2", `{"durable":"yes"}`), 400, "bad_request", []any{"not_boolean", "yes"})
	want(t, "bad arg", a.guest("PUT", "/queues/%2F/q3", `{"arguments":{"x-max-length":"a"}}`), 400, "bad_request",
		`invalid arg 'x-max-length' for queue 'q3' in vhost '/': "expected integer, got longstr"`)
	want(t, "no vhost", a.guest("PUT", "/queues/nov/q1", `{}`), 404, "not_found", "vhost_not_found")
	want(t, "empty body", a.guest("PUT", "/queues/%2F/q4", ``), 201)
	want(t, "too big", a.guest("PUT", "/queues/%2F/q5", `{"arguments":{"a":"`+strings.Repeat("x", 2<<20)+`"}}`), 413)
	want(t, "POST queue", a.guest("POST", "/queues/%2F/q1", ``), 405)

	want(t, "PUT x1", a.guest("PUT", "/exchanges/%2F/x1", `{"type":"direct","durable":true}`), 201)
	want(t, "PUT x1 again", a.guest("PUT", "/exchanges/%2F/x1", `{"type":"direct","durable":true}`), 204)
	want(t, "x1 fanout", a.guest("PUT", "/exchanges/%2F/x1", `{"type":"fanout","durable":true}`), 400, "bad_request",
		"inequivalent arg 'type' for exchange 'x1' in vhost '/': received 'fanout' but current is 'direct'")
	want(t, "bogus type", a.guest("PUT", "/exchanges/%2F/x2", `{"type":"bogus"}`), 400, "bad_request", "unknown exchange type 'bogus'")
	want(t, "amq.foo", a.guest("PUT", "/exchanges/%2F/amq.foo", `{"type":"direct"}`), 401, "not_authorised", "Access refused.")
	want(t, "DELETE amq.direct", a.guest("DELETE", "/exchanges/%2F/amq.direct", ``), 401, "not_authorised", "Access refused.")
	want(t, "DELETE missing x", a.guest("DELETE", "/exchanges/%2F/nox", ``), 404, "Object Not Found", "Not Found")

	r := a.guest("POST", "/bindings/%2F/e/x1/q/q1", `{"routing_key":"a b~c/d","arguments":{}}`)
	want(t, "bind", r, 201)
	if loc := r.header.Get("Location"); loc != "q1/a+b%7Ec%2Fd" {
		t.Errorf("Location %q", loc)
	}
	want(t, "bind missing x", a.guest("POST", "/bindings/%2F/e/nox/q/q1", `{"routing_key":"k"}`), 404,
		"not_found", "no exchange 'nox' in vhost '/'")
	want(t, "bind headers", a.guest("POST", "/bindings/%2F/e/amq.headers/q/q1", `{"arguments":{"x-match":"any","a":1}}`), 201)
	l := a.guest("GET", "/bindings/%2F", "").list(t)
	var keys []string
	for _, b := range l {
		m := b.(map[string]any)
		keys = append(keys, fmt.Sprint(m["source"], ">", m["destination"], ":", m["routing_key"]))
	}
	if strings.Join(keys, " ") != ">q1:q1 >q4:q4 amq.headers>q1: x1>q1:a b~c/d" {
		t.Errorf("bindings %v", keys)
	}
	var hdrKey string
	for _, b := range l {
		if m := b.(map[string]any); m["source"] == "amq.headers" {
			hdrKey = m["properties_key"].(string)
		}
	}
	if !strings.HasPrefix(hdrKey, "~") || len(hdrKey) < 2 {
		t.Errorf("headers binding's properties_key %q", hdrKey)
	}
	want(t, "GET binding", a.guest("GET", "/bindings/%2F/e/amq.headers/q/q1/"+hdrKey, ""), 200)
	want(t, "unbind headers", a.guest("DELETE", "/bindings/%2F/e/amq.headers/q/q1/"+hdrKey, ""), 204)
	// The key as listed, in the path as is (rabbitmqadmin) and escaped
	// once more (url.PathEscape).
	want(t, "unbind", a.guest("DELETE", "/bindings/%2F/e/x1/q/q1/a+b%7Ec%2Fd", ""), 204)
	want(t, "unbind again", a.guest("DELETE", "/bindings/%2F/e/x1/q/q1/a+b%7Ec%2Fd", ""), 404, "Object Not Found", "Not Found")
	want(t, "bind k", a.guest("POST", "/bindings/%2F/e/x1/q/q1", `{"routing_key":"k~"}`), 201)
	want(t, "unbind escaped", a.guest("DELETE", "/bindings/%2F/e/x1/q/q1/k%257E", ""), 204)

	// Purge and delete, with messages published over AMQP.
	_, ch := dial(t, a.amqp)
	for range 3 {
		if err := ch.Publish("", "q1", false, false, amqp.Publishing{Body: []byte("m")}); err != nil {
			t.Fatal(err)
		}
	}
	pollQueue(t, a, "/queues/%2F/q1", func(m map[string]any) bool { return m["messages"] == 3.0 })
	want(t, "DELETE if-empty", a.guest("DELETE", "/queues/%2F/q1?if-empty=true", ""), 400)
	want(t, "purge", a.guest("DELETE", "/queues/%2F/q1/contents", ""), 204)
	if m := a.guest("GET", "/queues/%2F/q1", "").obj(t); m["messages"] != 0.0 {
		t.Errorf("after purge: %v messages", m["messages"])
	}
	want(t, "purge missing", a.guest("DELETE", "/queues/%2F/nope/contents", ""), 404, "Object Not Found", "Not Found")
	want(t, "DELETE q1", a.guest("DELETE", "/queues/%2F/q1?if-empty=true", ""), 204)
	want(t, "DELETE q1 again", a.guest("DELETE", "/queues/%2F/q1", ""), 404, "Object Not Found", "Not Found")
	want(t, "DELETE x1", a.guest("DELETE", "/exchanges/%2F/x1", ""), 204)
	want(t, "GET x1", a.guest("GET", "/exchanges/%2F/x1", ""), 404)
}

// dial opens a connection and a channel, closed when the test ends.
func dial(t *testing.T, url string) (*amqp.Connection, *amqp.Channel) {
	t.Helper()
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	return conn, ch
}

// pollQueue reads a queue until ok holds, failing after 10 s.
func pollQueue(t *testing.T, a *api, path string, ok func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := a.guest("GET", path, "")
		if r.status == 200 {
			if m := r.obj(t); ok(m) {
				return m
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: timed out; last %d %s", path, r.status, r.body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A queue's counts and counters come from its QueueStats.
func TestQueueCounts(t *testing.T) {
	a := startAPI(t)
	_, ch := dial(t, a.amqp)
	if _, err := ch.QueueDeclare("c", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := ch.Publish("", "c", false, false, amqp.Publishing{Body: []byte("abcd"), Timestamp: time.Unix(1700000000, 0)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := ch.Qos(1, 0, false); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.Consume("c", "", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	m := pollQueue(t, a, "/queues/%2F/c", func(m map[string]any) bool {
		return m["messages_unacknowledged"] == 1.0 && m["messages_ready"] == 2.0
	})
	ms := m["message_stats"].(map[string]any)
	if m["messages"] != 3.0 || m["consumers"] != 1.0 || m["message_bytes"] != 12.0 || ms["publish"] != 3.0 ||
		ms["deliver"] != 1.0 || ms["deliver_get"] != 1.0 || m["head_message_timestamp"] != 1700000000.0 ||
		m["type"] != "classic" || m["durable"] != true || m["node"] != "amqp-go@test" {
		t.Errorf("queue c: %v", m)
	}
	if age, _ := m["oldest_unacked_age_seconds"].(float64); age < 0 || age > 60 {
		t.Errorf("oldest unacked age %v", m["oldest_unacked_age_seconds"])
	}
	o := a.guest("GET", "/overview", "").obj(t)
	ot := o["object_totals"].(map[string]any)
	qt := o["queue_totals"].(map[string]any)
	if ot["queues"] != 1.0 || ot["consumers"] != 1.0 || ot["connections"] != 1.0 || ot["channels"] != 1.0 ||
		ot["exchanges"] != 6.0 || qt["messages"] != 3.0 {
		t.Errorf("overview totals %v %v", ot, qt)
	}
}

// Field names and JSON types match RabbitMQ 3.10.8's replies for the same
// objects (testdata/rabbitmq-*.json, recorded by
// scripts/record-management-fixtures): every field RabbitMQ sends is here
// with the same type, but for those listed as not reported.
func TestFieldsMatchRabbitMQ(t *testing.T) {
	a := startAPI(t)
	// The fixture script's objects.
	if err := a.srv.Security().SetTopicPermissions(security.TopicPermission{User: "guest", VHost: "/", Exchange: "amq.topic", Write: ".*", Read: ".*"}); err != nil {
		t.Fatal(err)
	}
	want(t, "q1", a.guest("PUT", "/queues/%2F/q1", `{"durable":true,"auto_delete":false,"arguments":{}}`), 201)
	want(t, "x1", a.guest("PUT", "/exchanges/%2F/x1", `{"type":"direct","durable":true}`), 201)
	want(t, "bind", a.guest("POST", "/bindings/%2F/e/x1/q/q1", `{"routing_key":"k","arguments":{}}`), 201)
	conn, ch := dial(t, a.amqp)
	for i := range 2 {
		if err := ch.Publish("x1", "k", false, false, amqp.Publishing{Body: []byte(fmt.Sprint("m", i)), Timestamp: time.Unix(1700000000, 0)}); err != nil {
			t.Fatal(err)
		}
	}
	pollQueue(t, a, "/queues/%2F/q1", func(m map[string]any) bool { return m["messages"] == 2.0 })
	d, ok, err := ch.Get("q1", false)
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	if err := d.Nack(false, true); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	pollQueue(t, a, "/queues/%2F/q1", func(m map[string]any) bool { return m["messages_ready"] == 2.0 })

	// Fields we do not report (yet), by fixture; a dotted name is nested.
	notReported := map[string][]string{
		"overview":     {"sample_retention_policies.global", "listeners.socket_opts"},
		"queue":        {"backing_queue_status", "idle_since"},
		"queues":       {"backing_queue_status", "idle_since"},
		"queues-paged": {"items.backing_queue_status", "items.idle_since"},
		"nodes": {"io_*", "mnesia_*", "msg_store_*", "queue_index_*", "gc_*", "context_switches*", "metrics_gc_queue_length",
			"ra_open_file_metrics", "db_dir", "channel_*", "connection_*", "queue_created*", "queue_declared*", "queue_deleted*"},
		"vhosts": {"message_stats.confirm*", "message_stats.drop_unroutable*", "message_stats.return_unroutable*"},
	}
	paths := map[string]string{
		"overview": "/overview", "whoami": "/whoami", "extensions": "/extensions", "nodes": "/nodes",
		"vhosts": "/vhosts", "queues": "/queues", "queue": "/queues/%2F/q1", "queues-paged": "/queues?page=1&page_size=1",
		"exchanges": "/exchanges/%2F", "exchange": "/exchanges/%2F/x1", "bindings": "/bindings/%2F",
		"users": "/users", "permissions": "/permissions", "topic-permissions": "/topic-permissions",
	}
	matchFixtures(t, a, "testdata", paths, notReported)
}

// matchFixtures compares the shape of our reply to paths[NAME] with each
// RabbitMQ reply dir/rabbitmq-NAME.json (see compareShape), skipping the
// fields notReported[NAME]; every fixture must have a path.
func matchFixtures(t *testing.T, a *api, dir string, paths map[string]string, notReported map[string][]string) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "rabbitmq-*.json"))
	if err != nil || len(files) != len(paths) {
		t.Fatalf("fixtures %v %v", files, err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(f), "rabbitmq-"), ".json")
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var theirs any
		if err := json.Unmarshal(b, &theirs); err != nil {
			t.Fatal(f, err)
		}
		r := a.guest("GET", paths[name], "")
		want(t, name, r, 200)
		if ct := r.header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s: Content-Type %q", name, ct)
		}
		var diffs []string
		compareShape(name, "", theirs, r.json(t), notReported[name], &diffs)
		sort.Strings(diffs)
		for _, d := range diffs {
			t.Error(d)
		}
	}
}

// compareShape appends to diffs every field of theirs that ours lacks or
// has with another JSON type (null in theirs matches anything), into
// objects and the first element of arrays.
func compareShape(file, path string, theirs, ours any, skip []string, diffs *[]string) {
	for _, s := range skip {
		if ok, _ := filepath.Match(s, strings.TrimPrefix(path, ".")); ok {
			return
		}
	}
	if theirs == nil {
		return
	}
	if kind(theirs) != kind(ours) {
		*diffs = append(*diffs, fmt.Sprintf("%s: %s is %s here, %s in RabbitMQ", file, path, kind(ours), kind(theirs)))
		return
	}
	switch t := theirs.(type) {
	case map[string]any:
		o := ours.(map[string]any)
		for k, v := range t {
			p := path + "." + k
			if strings.Contains(path, "cluster_state") {
				continue // keyed by node name
			}
			ov, ok := o[k]
			if !ok {
				skipped := false
				for _, s := range skip {
					if m, _ := filepath.Match(s, strings.TrimPrefix(p, ".")); m {
						skipped = true
					}
				}
				if !skipped {
					*diffs = append(*diffs, fmt.Sprintf("%s: no %s", file, p))
				}
				continue
			}
			compareShape(file, p, v, ov, skip, diffs)
		}
	case []any:
		o := ours.([]any)
		if len(t) > 0 && len(o) > 0 {
			compareShape(file, path, t[0], o[0], skip, diffs)
		}
	}
}

func kind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case map[string]any:
		return "object"
	case []any:
		return "array"
	case string:
		return "string"
	case float64:
		return "number"
	case bool:
		return "boolean"
	}
	return fmt.Sprintf("%T", v)
}

// Health checks answer as RabbitMQ 3.10.8's (recorded with curl): 200
// ok, or 503 failed with the reason and what was looked for.
func TestHealthChecks(t *testing.T) {
	a := startAPI(t)
	_, amqpPort, _ := strings.Cut(a.srv.Addr().String(), "127.0.0.1:")
	_, httpPort, _ := strings.Cut(a.base, "127.0.0.1:")
	httpPort = strings.TrimSuffix(httpPort, "/api")
	for _, c := range []struct {
		path   string
		status int
		body   string
	}{
		{"/health/checks/alarms", 200, `{"status":"ok"}`},
		{"/health/checks/local-alarms", 200, `{"status":"ok"}`},
		{"/health/checks/virtual-hosts", 200, `{"status":"ok"}`},
		{"/health/checks/port-listener/" + amqpPort, 200, `{"port":` + amqpPort + `,"status":"ok"}`},
		{"/health/checks/port-listener/" + httpPort, 200, `{"port":` + httpPort + `,"status":"ok"}`},
		{"/health/checks/port-listener/1", 503, `{"missing":1,"ports":[` + amqpPort + `,` + httpPort + `],"reason":"No active listener","status":"failed"}`},
		{"/health/checks/port-listener/x", 400, `{"error":"bad_request","reason":"Invalid port"}`},
		{"/health/checks/protocol-listener/amqp091", 200, `{"protocol":"amqp","status":"ok"}`},
		{"/health/checks/protocol-listener/mqtt", 503, `{"missing":"mqtt","protocols":["amqp","http"],"reason":"No active listener","status":"failed"}`},
		{"/health/checks/nope", 404, ""},
	} {
		r := a.guest("GET", c.path, "")
		if r.status != c.status || c.body != "" && string(r.body) != c.body {
			t.Errorf("%s: %d %s, want %d %s", c.path, r.status, r.body, c.status, c.body)
		}
	}
	// RabbitMQ 3.10.8's texts, with its names of the resources.
	a.srv.SetAlarm("low on memory & low on disk", true)
	r := a.guest("GET", "/health/checks/alarms", "")
	if exp := `{"alarms":[{"node":"amqp-go@test","resource":"memory"},{"node":"amqp-go@test","resource":"disk space"}],"reason":"There are alarms in effect in the cluster","status":"failed"}`; r.status != 503 || string(r.body) != exp {
		t.Errorf("alarm: %d %s", r.status, r.body)
	}
	r = a.guest("GET", "/health/checks/local-alarms", "")
	if exp := `{"alarms":[{"node":"amqp-go@test","resource":"memory"},{"node":"amqp-go@test","resource":"disk space"}],"reason":"There are alarms in effect on the node","status":"failed"}`; r.status != 503 || string(r.body) != exp {
		t.Errorf("local alarm: %d %s", r.status, r.body)
	}
	r = a.guest("GET", "/nodes", "")
	if n := r.list(t)[0].(map[string]any); n["mem_alarm"] != true || n["disk_free_alarm"] != true {
		t.Errorf("/api/nodes with both alarms: mem_alarm %v, disk_free_alarm %v", n["mem_alarm"], n["disk_free_alarm"])
	}
	a.srv.SetAlarm("", false)
	want(t, "alarm cleared", a.guest("GET", "/health/checks/alarms", ""), 200)
}

// A queue's bindings and an exchange's as source or destination.
func TestObjectBindings(t *testing.T) {
	a := startAPI(t)
	want(t, "q", a.guest("PUT", "/queues/%2F/q", `{}`), 201)
	want(t, "x", a.guest("PUT", "/exchanges/%2F/x", `{"type":"fanout"}`), 201)
	want(t, "x->q", a.guest("POST", "/bindings/%2F/e/x/q/q", `{"routing_key":"k"}`), 201)
	want(t, "amq.fanout->x", a.guest("POST", "/bindings/%2F/e/amq.fanout/e/x", `{}`), 201)
	keys := func(r reply) string {
		var out []string
		for _, b := range r.list(t) {
			m := b.(map[string]any)
			out = append(out, fmt.Sprint(m["source"], ">", m["destination"], "(", m["destination_type"], ")"))
		}
		return strings.Join(out, " ")
	}
	for path, exp := range map[string]string{
		"/queues/%2F/q/bindings":                    ">q(queue) x>q(queue)",
		"/exchanges/%2F/x/bindings/source":          "x>q(queue)",
		"/exchanges/%2F/x/bindings/destination":     "amq.fanout>x(exchange)",
		"/exchanges/%2F/amq.fanout/bindings/source": "amq.fanout>x(exchange)",
		"/exchanges/%2F/amq.direct/bindings/source": "",
	} {
		r := a.guest("GET", path, "")
		want(t, path, r, 200)
		if got := keys(r); got != exp {
			t.Errorf("%s: %s, want %s", path, got, exp)
		}
	}
	want(t, "missing queue", a.guest("GET", "/queues/%2F/nope/bindings", ""), 404)
	want(t, "missing exchange", a.guest("GET", "/exchanges/%2F/nope/bindings/source", ""), 404)
}

// Users, permissions and topic permissions: administrators only, the
// codes and texts of RabbitMQ 3.10.8 (recorded with curl), and the effect
// on AMQP logins.
func TestUsersAndPermissions(t *testing.T) {
	a := startAPI(t)
	want(t, "no tags", a.guest("PUT", "/users/u1", `{"password":"pw"}`), 400, "bad_request", "tags_not_present")
	want(t, "new user", a.guest("PUT", "/users/u1", `{"password":"pw","tags":"management"}`), 201)
	want(t, "same user", a.guest("PUT", "/users/u1", `{"password":"pw","tags":"management,monitoring"}`), 204)
	want(t, "array tags", a.guest("PUT", "/users/u2", `{"password":"pw","tags":["monitoring"]}`), 201)
	want(t, "no password", a.guest("PUT", "/users/u3", `{"password_hash":"","tags":""}`), 201)
	r := a.guest("GET", "/users/u1", "")
	want(t, "GET u1", r, 200)
	if m := r.obj(t); fmt.Sprint(m["tags"]) != "[management monitoring]" || m["hashing_algorithm"] != "rabbit_password_hashing_sha256" ||
		m["password_hash"] == "" || fmt.Sprint(m["limits"]) != "map[]" {
		t.Errorf("u1: %s", r.body)
	}
	if m := a.guest("GET", "/users/u3", "").obj(t); m["password_hash"] != "" || fmt.Sprint(m["tags"]) != "[]" {
		t.Errorf("u3: %v", m)
	}
	want(t, "GET missing", a.guest("GET", "/users/nope", ""), 404, "Object Not Found", "Not Found")
	want(t, "not admin", a.do("u1", "pw", "GET", "/users", ""), 401, "not_authorised", "Not administrator user")
	want(t, "not admin permissions", a.do("u1", "pw", "GET", "/permissions", ""), 401, "not_authorised", "Not administrator user")
	if n := len(a.guest("GET", "/users", "").list(t)); n != 4 {
		t.Errorf("%d users", n)
	}

	all := `{"configure":".*","write":".*","read":".*"}`
	want(t, "permit", a.guest("PUT", "/permissions/%2F/u1", all), 201)
	want(t, "permit again", a.guest("PUT", "/permissions/%2F/u1", all), 204)
	want(t, "missing user", a.guest("PUT", "/permissions/%2F/nope", all), 400, "bad_request", "vhost_or_user_not_found")
	want(t, "missing vhost", a.guest("PUT", "/permissions/nov/u1", all), 400, "bad_request", "vhost_or_user_not_found")
	want(t, "missing keys", a.guest("PUT", "/permissions/%2F/u2", `{"configure":".*"}`), 400,
		"bad_request", "[{key_missing,write},{key_missing,read}]")
	want(t, "bad regexp", a.guest("PUT", "/permissions/%2F/u2", `{"configure":"(","write":"","read":""}`), 400)
	r = a.guest("GET", "/permissions/%2F/u1", "")
	if b := string(r.body); b != `{"configure":".*","read":".*","user":"u1","vhost":"/","write":".*"}` {
		t.Errorf("u1's permission: %s", b)
	}
	want(t, "no permission", a.guest("GET", "/permissions/%2F/u2", ""), 404)
	for path, n := range map[string]int{"/permissions": 2, "/users/u1/permissions": 1, "/vhosts/%2F/permissions": 2, "/users/u2/permissions": 0} {
		if got := len(a.guest("GET", path, "").list(t)); got != n {
			t.Errorf("%s: %d, want %d", path, got, n)
		}
	}
	// The API's user logs in over AMQP with the API's permission.
	conn, err := amqp.Dial(strings.Replace(a.amqp, "guest:guest", "u1:pw", 1))
	if err != nil {
		t.Fatalf("u1 over AMQP: %v", err)
	}
	conn.Close()
	want(t, "revoke", a.guest("DELETE", "/permissions/%2F/u1", ""), 204)
	want(t, "revoke again", a.guest("DELETE", "/permissions/%2F/u1", ""), 404, "Object Not Found", "Not Found")
	if c, err := amqp.Dial(strings.Replace(a.amqp, "guest:guest", "u1:pw", 1)); err == nil {
		c.Close()
		t.Error("u1 opened / without a permission")
	}

	topic := `{"exchange":"amq.topic","write":"^a","read":".*"}`
	want(t, "topic", a.guest("PUT", "/topic-permissions/%2F/u1", topic), 201)
	want(t, "topic again", a.guest("PUT", "/topic-permissions/%2F/u1", topic), 204)
	want(t, "topic missing exchange", a.guest("PUT", "/topic-permissions/%2F/u1", `{"write":".*","read":".*"}`), 400,
		"bad_request", "[{key_missing,exchange}]")
	r = a.guest("GET", "/topic-permissions/%2F/u1", "")
	if b := string(r.body); b != `[{"exchange":"amq.topic","read":".*","user":"u1","vhost":"/","write":"^a"}]` {
		t.Errorf("topic permissions: %s", b)
	}
	if n := len(a.guest("GET", "/users/u2/topic-permissions", "").list(t)); n != 0 {
		t.Errorf("u2 has %d topic permissions", n)
	}
	want(t, "clear topic", a.guest("DELETE", "/topic-permissions/%2F/u1", ""), 204)
	want(t, "clear topic again", a.guest("DELETE", "/topic-permissions/%2F/u1", ""), 404)

	want(t, "delete user", a.guest("DELETE", "/users/u1", ""), 204)
	want(t, "delete user again", a.guest("DELETE", "/users/u1", ""), 404, "Object Not Found", "Not Found")
	want(t, "deleted user logs in", a.do("u1", "pw", "GET", "/overview", ""), 401, "not_authorized", "Login failed")
}

// Vhosts are made, updated and deleted as in RabbitMQ 3.10.8 (recorded
// with curl): the maker gets every permission, an update replaces the
// metadata, a delete takes the vhost's queues and closes its
// connections with 320.
func TestVHostPutDelete(t *testing.T) {
	a := startAPI(t)
	addUser(t, a.srv, "mon", nil, "monitoring")
	want(t, "not admin", a.do("mon", "pw", "PUT", "/vhosts/v9", `{}`), 401, "not_authorised", "Not administrator user")
	want(t, "PUT v9", a.guest("PUT", "/vhosts/v9", `{"description":"d","tags":"a,b"}`), 201)
	if m := a.guest("GET", "/vhosts/v9", "").obj(t); m["description"] != "d" || fmt.Sprint(m["tags"]) != "[a b]" {
		t.Errorf("v9: %v", m)
	}
	if l := a.guest("GET", "/vhosts/v9/permissions", "").list(t); len(l) != 1 || l[0].(map[string]any)["user"] != "guest" {
		t.Errorf("v9's permissions: %v", l)
	}
	want(t, "PUT v9 again", a.guest("PUT", "/vhosts/v9", `{"description":"e"}`), 204)
	if m := a.guest("GET", "/vhosts/v9", "").obj(t); m["description"] != "e" || fmt.Sprint(m["tags"]) != "[]" {
		t.Errorf("v9 updated: %v", m)
	}
	want(t, "tracing", a.guest("PUT", "/vhosts/v10", `{"tracing":"x"}`), 400, "bad_request", []any{"not_boolean", "x"})
	want(t, "queue in v9", a.guest("PUT", "/queues/v9/q", `{"durable":true}`), 201)
	conn, err := amqp.Dial(strings.TrimSuffix(a.amqp, "/") + "/v9")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	want(t, "DELETE v9", a.guest("DELETE", "/vhosts/v9", ""), 204)
	select {
	case e := <-closed:
		if e == nil || e.Code != 320 {
			t.Errorf("v9's connection closed with %v, want 320", e)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("v9's connection still open")
	}
	want(t, "GET v9", a.guest("GET", "/vhosts/v9", ""), 404)
	want(t, "v9's queue", a.guest("GET", "/queues/v9/q", ""), 404)
	want(t, "DELETE v9 again", a.guest("DELETE", "/vhosts/v9", ""), 404, "Object Not Found", "Not Found")
}

// Connections are listed as amqp091-go's recovery tests find them (GET
// /api/connections/, client_properties.connection_name, then DELETE
// /api/connections/{url.PathEscape(name)}) and closed with 320 and the
// X-Reason header, or RabbitMQ's "Closed via management plugin".
func TestConnections(t *testing.T) {
	a := startAPI(t)
	addUser(t, a.srv, "mgmt", allOnRoot, "management")
	dialNamed := func(user, name string) (*amqp.Connection, chan *amqp.Error) {
		url := strings.Replace(a.amqp, "guest:guest", user, 1)
		c, err := amqp.DialConfig(url, amqp.Config{Properties: amqp.Table{"connection_name": name}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c, c.NotifyClose(make(chan *amqp.Error, 1))
	}
	_, closed1 := dialNamed("guest:guest", "first")
	_, closed2 := dialNamed("guest:guest", "second")
	_, _ = dialNamed("mgmt:pw", "mine")

	// find polls the list until a connection of that connection_name shows.
	find := func(user, pass, cname string) map[string]any {
		deadline := time.Now().Add(10 * time.Second)
		for {
			r := a.do(user, pass, "GET", "/connections/", "")
			want(t, "connections", r, 200)
			for _, it := range r.list(t) {
				m := it.(map[string]any)
				if cp, _ := m["client_properties"].(map[string]any); cp["connection_name"] == cname {
					return m
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: no connection %s in %s", user, cname, r.body)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	m := find("guest", "guest", "first")
	for _, k := range []string{"name", "node", "protocol", "user", "connected_at", "client_properties", "vhost",
		"peer_host", "peer_port", "host", "port", "auth_mechanism", "ssl", "timeout", "frame_max", "channel_max"} {
		if _, ok := m[k]; !ok {
			t.Errorf("connection has no %s: %v", k, m)
		}
	}
	name := m["name"].(string)
	if !strings.Contains(name, " -> "+a.srv.Addr().String()) || m["user"] != "guest" || m["vhost"] != "/" ||
		m["protocol"] != "AMQP 0-9-1" || m["auth_mechanism"] != "PLAIN" || m["ssl"] != false {
		t.Errorf("connection: %v", m)
	}
	if n := len(a.do("mgmt", "pw", "GET", "/connections", "").list(t)); n != 1 {
		t.Errorf("mgmt sees %d connections, want its own", n)
	}
	if n := len(a.guest("GET", "/vhosts/%2F/connections", "").list(t)); n != 3 {
		t.Errorf("/'s connections: %d", n)
	}
	want(t, "GET one", a.guest("GET", "/connections/"+urlPathEscape(name), ""), 200)
	want(t, "mgmt deletes guest's", a.do("mgmt", "pw", "DELETE", "/connections/"+urlPathEscape(name), ""), 404)

	req, _ := http.NewRequest("DELETE", a.base+"/connections/"+urlPathEscape(name), nil)
	req.SetBasicAuth("guest", "guest")
	req.Header.Set("X-Reason", "bye")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 204 {
		t.Fatalf("DELETE: %d", resp.StatusCode)
	}
	select {
	case e := <-closed1:
		if e == nil || e.Code != 320 || e.Reason != "CONNECTION_FORCED - bye" {
			t.Errorf("closed with %v, want 320 CONNECTION_FORCED - bye", e)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("connection not closed")
	}
	second := find("guest", "guest", "second")["name"].(string)
	want(t, "DELETE second", a.guest("DELETE", "/connections/"+urlPathEscape(second), ""), 204)
	select {
	case e := <-closed2:
		if e == nil || e.Code != 320 || e.Reason != "CONNECTION_FORCED - Closed via management plugin" {
			t.Errorf("closed with %v", e)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("second connection not closed")
	}
	want(t, "DELETE gone", a.guest("DELETE", "/connections/"+urlPathEscape(second), ""), 404)
}

// urlPathEscape is url.PathEscape, as amqp091-go's tests escape names.
func urlPathEscape(s string) string { return url.PathEscape(s) }

// Definitions export and import, whole and per vhost, as RabbitMQ 3.10.8
// answers them (recorded with curl). On a data directory whatever
// BROKER_TEST_STORE says: the export has the stored durable queues, and
// the memory store stores none.
func TestDefinitions(t *testing.T) {
	a := startAPIWith(t, broker.Config{DataDir: t.TempDir()})
	addUser(t, a.srv, "mon", nil, "monitoring")
	want(t, "not admin", a.do("mon", "pw", "GET", "/definitions", ""), 401, "not_authorised", "Not administrator user")
	want(t, "q", a.guest("PUT", "/queues/%2F/dq", `{"durable":true}`), 201)
	d := a.guest("GET", "/definitions", "").obj(t)
	if fmt.Sprint(d["rabbitmq_version"]) != "3.10.8" || len(d["users"].([]any)) != 2 || len(d["queues"].([]any)) != 1 {
		t.Errorf("export: %v", d)
	}
	imp := `{"users":[{"name":"imp","password_hash":"","tags":["management"]}],` +
		`"permissions":[{"user":"imp","vhost":"/","configure":".*","write":".*","read":".*"}],` +
		`"queues":[{"name":"iq","vhost":"/","durable":true,"auto_delete":false,"arguments":{}}]}`
	want(t, "import", a.guest("POST", "/definitions", imp), 204)
	want(t, "imported queue", a.guest("GET", "/queues/%2F/iq", ""), 200)
	want(t, "imported user", a.guest("GET", "/users/imp", ""), 200)
	want(t, "bad json", a.guest("POST", "/definitions", `nope`), 400, "bad_request", "failed_to_parse_json")
	want(t, "bad import", a.guest("POST", "/definitions", `{"queues":[{"name":"x","vhost":"nov","durable":true}]}`), 400)

	per := a.guest("GET", "/definitions/%2F", "")
	want(t, "per vhost", per, 200)
	pm := per.obj(t)
	qs := pm["queues"].([]any)
	if len(qs) != 2 || pm["users"] != nil {
		t.Fatalf("per-vhost export: %s", per.body)
	}
	if _, ok := qs[0].(map[string]any)["vhost"]; ok {
		t.Errorf("per-vhost queue keeps its vhost: %v", qs[0])
	}
	want(t, "v2", a.guest("PUT", "/vhosts/v2", `{}`), 201)
	want(t, "import into v2", a.guest("POST", "/definitions/v2", string(per.body)), 204)
	if n := len(a.guest("GET", "/queues/v2", "").list(t)); n != 2 {
		t.Errorf("v2 has %d queues after the import", n)
	}
	want(t, "missing vhost", a.guest("GET", "/definitions/nov", ""), 400, "bad_request", "vhost_not_found")
}

// Publishing through the API reaches queues as a client's publish does,
// with RabbitMQ 3.10.8's replies (recorded with curl).
func TestPublish(t *testing.T) {
	a := startAPI(t)
	want(t, "pq", a.guest("PUT", "/queues/%2F/pq", `{}`), 201)
	pub := func(x, body string) reply { return a.guest("POST", "/exchanges/%2F/"+x+"/publish", body) }
	r := pub("amq.default", `{"properties":{"delivery_mode":2,"timestamp":1700000000,"content_type":"text/plain","headers":{"a":1,"b":"s"}},"routing_key":"pq","payload":"aGk=","payload_encoding":"base64"}`)
	if want(t, "publish", r, 200); string(r.body) != `{"routed":true}` {
		t.Errorf("publish: %s", r.body)
	}
	if r := pub("amq.direct", `{"properties":{},"routing_key":"none","payload":"x","payload_encoding":"string"}`); string(r.body) != `{"routed":false}` {
		t.Errorf("unroutable: %s", r.body)
	}
	want(t, "missing key", pub("amq.direct", `{"routing_key":"k","payload":"x","payload_encoding":"string"}`), 400,
		"bad_request", "[{key_missing,properties}]")
	want(t, "not base64", pub("amq.direct", `{"properties":{},"routing_key":"k","payload":"%%%","payload_encoding":"base64"}`), 400,
		"bad_request", []any{"not_base64", "%%%"})
	want(t, "encoding", pub("amq.direct", `{"properties":{},"routing_key":"k","payload":"x","payload_encoding":"zz"}`), 400,
		"bad_request", []any{"unsupported_encoding", "zz"})
	want(t, "not int", pub("amq.direct", `{"properties":{"priority":"x"},"routing_key":"k","payload":"x","payload_encoding":"string"}`), 400,
		"bad_request", []any{"not_int", "priority"})
	want(t, "user_id", pub("amq.direct", `{"properties":{"user_id":"bob"},"routing_key":"k","payload":"x","payload_encoding":"string"}`), 400,
		"bad_request", "406 PRECONDITION_FAILED - user_id property set to 'bob' but authenticated user was 'guest'")
	want(t, "no exchange", pub("nox", `{"properties":{},"routing_key":"k","payload":"x","payload_encoding":"string"}`), 400,
		"bad_request", "404 NOT_FOUND - no exchange 'nox' in vhost '/'")

	_, ch := dial(t, a.amqp)
	d, ok, err := ch.Get("pq", true)
	if err != nil || !ok {
		t.Fatalf("get: %v %v", ok, err)
	}
	if string(d.Body) != "hi" || d.DeliveryMode != 2 || d.ContentType != "text/plain" || d.Timestamp.Unix() != 1700000000 ||
		d.Headers["a"] != int64(1) || d.Headers["b"] != "s" || d.RoutingKey != "pq" {
		t.Errorf("delivered %+v", d)
	}
	if m := a.guest("GET", "/queues/%2F/pq", "").obj(t); m["message_stats"].(map[string]any)["publish"] != 1.0 {
		t.Errorf("publish count %v", m["message_stats"])
	}
}

// Getting messages through the API: a peek gives them back redelivered,
// ack_requeue_false removes them, reject_requeue_false dead-letters them;
// replies as RabbitMQ 3.10.8's (recorded with curl).
func TestGetMessages(t *testing.T) {
	a := startAPI(t)
	want(t, "dlq", a.guest("PUT", "/queues/%2F/dlq", `{}`), 201)
	want(t, "gq", a.guest("PUT", "/queues/%2F/gq", `{"arguments":{"x-dead-letter-exchange":"","x-dead-letter-routing-key":"dlq"}}`), 201)
	_, ch := dial(t, a.amqp)
	for _, p := range []amqp.Publishing{{Body: []byte("plain")},
		{Body: []byte{0xff}, DeliveryMode: 2, Timestamp: time.Unix(5, 0), Headers: amqp.Table{"a": int32(1)}},
		{Body: []byte("third")}} {
		if err := ch.Publish("", "gq", false, false, p); err != nil {
			t.Fatal(err)
		}
	}
	pollQueue(t, a, "/queues/%2F/gq", func(m map[string]any) bool { return m["messages"] == 3.0 })
	get := func(body string) reply { return a.guest("POST", "/queues/%2F/gq/get", body) }

	r := get(`{"count":2,"ackmode":"ack_requeue_true","encoding":"auto","truncate":3}`)
	want(t, "peek", r, 200)
	exp := `[{"exchange":"","message_count":2,"payload":"pla","payload_bytes":5,"payload_encoding":"string","properties":[],"redelivered":false,"routing_key":"gq"},` +
		`{"exchange":"","message_count":1,"payload":"/w==","payload_bytes":1,"payload_encoding":"base64","properties":{"delivery_mode":2,"headers":{"a":1},"timestamp":5},"redelivered":false,"routing_key":"gq"}]`
	if string(r.body) != exp {
		t.Errorf("peek:\n%s\nwant\n%s", r.body, exp)
	}
	if m := pollQueue(t, a, "/queues/%2F/gq", func(m map[string]any) bool { return m["messages_ready"] == 3.0 }); m["messages_unacknowledged"] != 0.0 {
		t.Errorf("after a peek: %v unacked", m["messages_unacknowledged"])
	}
	r = get(`{"count":"1","ackmode":"ack_requeue_false","encoding":"base64"}`) // a string, as rabbitmqadmin sends it
	if l := r.list(t); len(l) != 1 || l[0].(map[string]any)["payload"] != "cGxhaW4=" || l[0].(map[string]any)["redelivered"] != true {
		t.Errorf("ack: %s", r.body)
	}
	r = get(`{"count":1,"ackmode":"reject_requeue_false","encoding":"auto"}`)
	want(t, "reject", r, 200)
	pollQueue(t, a, "/queues/%2F/dlq", func(m map[string]any) bool { return m["messages"] == 1.0 })
	pollQueue(t, a, "/queues/%2F/gq", func(m map[string]any) bool { return m["messages"] == 1.0 })
	if l := a.guest("POST", "/queues/%2F/dlq/get", `{"count":9,"ackmode":"ack_requeue_false","encoding":"auto"}`).list(t); len(l) != 1 {
		t.Errorf("dlq: %v", l)
	}
	if l := a.guest("POST", "/queues/%2F/dlq/get", `{"count":1,"ackmode":"ack_requeue_true","encoding":"auto"}`).list(t); len(l) != 0 {
		t.Errorf("empty dlq: %v", l)
	}

	want(t, "missing key", get(`{"count":1,"ackmode":"ack_requeue_true"}`), 400, "bad_request", "[{key_missing,encoding}]")
	want(t, "encoding", get(`{"count":1,"ackmode":"ack_requeue_true","encoding":"zz"}`), 400,
		"bad_request", "Unsupported encoding. Please use auto or base64.")
	want(t, "count", get(`{"count":"x","ackmode":"ack_requeue_true","encoding":"auto"}`), 400, "bad_request", []any{"not_integer", "x"})
	want(t, "ackmode", get(`{"count":1,"ackmode":"bogus","encoding":"auto"}`), 400)
	want(t, "missing queue", a.guest("POST", "/queues/%2F/nope/get", `{"count":1,"ackmode":"ack_requeue_true","encoding":"auto"}`), 404,
		"not_found", "NOT_FOUND - no queue 'nope' in vhost '/'")
}

// Vhost and user limits and the aliveness test, as RabbitMQ 3.10.8
// answers them (recorded with curl); a limit set here is enforced.
func TestLimitsAndAliveness(t *testing.T) {
	a := startAPI(t)
	want(t, "vhost limit", a.guest("PUT", "/vhost-limits/%2F/max-queues", `{"value":1}`), 204)
	want(t, "again", a.guest("PUT", "/vhost-limits/%2F/max-queues", `{"value":1}`), 204)
	want(t, "not a number", a.guest("PUT", "/vhost-limits/%2F/max-connections", `{"value":"x"}`), 400)
	want(t, "unknown limit", a.guest("PUT", "/vhost-limits/%2F/bogus", `{"value":1}`), 400)
	want(t, "no value", a.guest("PUT", "/vhost-limits/%2F/max-queues", `{}`), 400, "bad_request", "[{key_missing,value}]")
	want(t, "no vhost", a.guest("PUT", "/vhost-limits/nov/max-queues", `{"value":1}`), 404, "not_found", "vhost_not_found")
	if b := string(a.guest("GET", "/vhost-limits", "").body); b != `[{"value":{"max-queues":1},"vhost":"/"}]` {
		t.Errorf("vhost limits: %s", b)
	}
	want(t, "first queue", a.guest("PUT", "/queues/%2F/one", `{}`), 201)
	want(t, "over the limit", a.guest("PUT", "/queues/%2F/two", `{}`), 400)
	want(t, "clear", a.guest("DELETE", "/vhost-limits/%2F/max-queues", ""), 204)
	want(t, "clear again", a.guest("DELETE", "/vhost-limits/%2F/max-queues", ""), 204)
	want(t, "second queue", a.guest("PUT", "/queues/%2F/two", `{}`), 201)
	if b := string(a.guest("GET", "/vhost-limits/%2F", "").body); b != `[]` {
		t.Errorf("cleared: %s", b)
	}

	want(t, "user limit", a.guest("PUT", "/user-limits/guest/max-channels", `{"value":3}`), 204)
	want(t, "no user", a.guest("PUT", "/user-limits/nouser/max-channels", `{"value":3}`), 400, "bad_request", []any{"no_such_user", "nouser"})
	want(t, "not a user limit", a.guest("PUT", "/user-limits/guest/max-queues", `{"value":3}`), 400)
	if b := string(a.guest("GET", "/user-limits/guest", "").body); b != `[{"user":"guest","value":{"max-channels":3}}]` {
		t.Errorf("user limits: %s", b)
	}
	want(t, "clear user limit", a.guest("DELETE", "/user-limits/guest/max-channels", ""), 204)

	r := a.guest("GET", "/aliveness-test/%2F", "")
	if r.status != 200 || string(r.body) != `{"status":"ok"}` {
		t.Errorf("aliveness: %d %s", r.status, r.body)
	}
	if m := a.guest("GET", "/queues/%2F/aliveness-test", "").obj(t); m["messages"] != 0.0 || m["durable"] != false {
		t.Errorf("aliveness-test queue: %v", m)
	}
	want(t, "aliveness of no vhost", a.guest("GET", "/aliveness-test/nov", ""), 404, "Object Not Found", "Not Found")
}

// A definitions export of thousands of queues is more than the 1 MiB other
// bodies may be: POST /api/definitions takes what RabbitMQ's 20 MiB
// max_body_size takes, and answers 413, not a parse error, past it.
func TestDefinitionsImportLarge(t *testing.T) {
	a := startAPI(t)
	var qs []string
	for i := range 12000 {
		qs = append(qs, fmt.Sprintf(`{"name":"big-%05d","vhost":"/","durable":true,"auto_delete":false,"arguments":{"x-message-ttl":60000}}`, i))
	}
	body := `{"queues":[` + strings.Join(qs, ",") + `]}`
	if len(body) <= 1<<20 {
		t.Fatalf("the import is only %d bytes", len(body))
	}
	want(t, "large import", a.guest("POST", "/definitions", body), 204)
	if q := a.guest("GET", "/queues/%2F/big-11999", "").obj(t); q["name"] != "big-11999" {
		t.Fatalf("the last queue of the import: %v", q)
	}
	want(t, "over 20 MiB", a.guest("POST", "/definitions", `{"queues":[`+strings.Repeat(" ", 21<<20)+`]}`), 413)
}
