package management_test

import (
	"strings"
	"testing"

	"github.com/amqp-go/amqp-go/server/security"
)

// PUT /api/queues/{v}/{q} declares as a client does (RabbitMQ's API
// declares through a channel): in a vhost whose default queue type is
// quorum, a durable queue without x-queue-type is a quorum queue, as with
// x-queue-type quorum; a transient one is classic, and so is a queue a
// definitions import makes.
func TestPutQueueDefaultQueueType(t *testing.T) {
	a := startAPI(t)
	if err := a.srv.Security().PutVHost(security.VHost{Name: "qv", DefaultQueueType: "quorum"}); err != nil {
		t.Fatal(err)
	}
	addUser(t, a.srv, "admin2", &security.Permission{VHost: "qv", Configure: ".*", Write: ".*", Read: ".*"}, "administrator")
	want(t, "durable, no type", a.do("admin2", "pw", "PUT", "/queues/qv/d", `{"durable":true}`), 201)
	want(t, "durable, quorum", a.do("admin2", "pw", "PUT", "/queues/qv/e", `{"durable":true,"arguments":{"x-queue-type":"quorum"}}`), 201)
	for _, q := range []string{"d", "e"} {
		if m := a.do("admin2", "pw", "GET", "/queues/qv/"+q, "").obj(t); m["type"] != "quorum" || m["leader"] == nil {
			t.Errorf("queue %s: %v", q, m)
		}
	}
	want(t, "transient", a.do("admin2", "pw", "PUT", "/queues/qv/t", `{"durable":false}`), 201)
	want(t, "durable classic", a.do("admin2", "pw", "PUT", "/queues/qv/c", `{"durable":true,"arguments":{"x-queue-type":"classic"}}`), 201)
	if m := a.do("admin2", "pw", "GET", "/queues/qv/t", "").obj(t); m["type"] != "classic" {
		t.Errorf("transient queue: %v", m)
	}
	// A definitions import is not a declare: its durable queue without
	// x-queue-type is classic, as RabbitMQ 3.10.8 imports it (checked with
	// rabbitmqctl import_definitions into a vhost whose default is quorum).
	want(t, "import", a.guest("POST", "/definitions",
		`{"queues":[{"name":"imported","vhost":"qv","durable":true,"auto_delete":false,"arguments":{}}]}`), 204)
	if m := a.guest("GET", "/queues/qv/imported", "").obj(t); m["type"] != "classic" || m["durable"] != true {
		t.Errorf("imported queue: %v", m)
	}
}

// PUT /api/vhosts/{v} keeps a default_queue_type RabbitMQ knows and, as
// RabbitMQ 3.10.8 does (checked with curl), silently none other: the vhost
// shows "undefined" and its queues are classic.
func TestPutVHostDefaultQueueType(t *testing.T) {
	a := startAPI(t)
	want(t, "PUT quorum", a.guest("PUT", "/vhosts/vq", `{"default_queue_type":"quorum"}`), 201)
	if m := a.guest("GET", "/vhosts/vq", "").obj(t); m["default_queue_type"] != "quorum" {
		t.Errorf("vq: %v", m)
	}
	want(t, "PUT foo", a.guest("PUT", "/vhosts/vfoo", `{"default_queue_type":"foo"}`), 201)
	if m := a.guest("GET", "/vhosts/vfoo", "").obj(t); m["default_queue_type"] != "undefined" {
		t.Errorf("vfoo: %v", m)
	}
	_, ch := dial(t, strings.TrimSuffix(a.amqp, "/")+"/vfoo")
	if _, err := ch.QueueDeclare("d", true, false, false, false, nil); err != nil {
		t.Fatalf("durable queue in vfoo: %v", err)
	}
}
