package management_test

import (
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// DELETE /api/users/{u} closes the user's AMQP connections with RabbitMQ
// 3.10.8's 320 (what rabbitmqctl delete_user does there); guest's stays.
func TestDeleteUserClosesItsConnections(t *testing.T) {
	a := startAPI(t)
	addUser(t, a.srv, "leaving", allOnRoot)
	conn, err := amqp.Dial(strings.Replace(a.amqp, "guest:guest", "leaving:pw", 1))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	guest, _ := dial(t, a.amqp)
	want(t, "DELETE leaving", a.guest("DELETE", "/users/leaving", ""), 204)
	if e := waitClosed(t, closed); e.Code != 320 || e.Reason != "CONNECTION_FORCED - user 'leaving' is deleted" {
		t.Fatalf("closed with %d %q", e.Code, e.Reason)
	}
	if guest.IsClosed() {
		t.Fatal("guest's connection was closed too")
	}
	want(t, "DELETE leaving again", a.guest("DELETE", "/users/leaving", ""), 404)
}

// POST /api/users/bulk-delete as RabbitMQ 3.10.8 answers it (checked
// with curl): deletes in order and stops at the first user that does not
// exist; the deleted users' connections are closed.
func TestBulkDeleteUsers(t *testing.T) {
	a := startAPI(t)
	for _, u := range []string{"bd1", "bd2", "bd3"} {
		addUser(t, a.srv, u, allOnRoot)
	}
	conn, err := amqp.Dial(strings.Replace(a.amqp, "guest:guest", "bd1:pw", 1))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	want(t, "bd1, nobody, bd2", a.guest("POST", "/users/bulk-delete", `{"users":["bd1","nobody","bd2"]}`), 400,
		"bad_request", []any{"no_such_user", "nobody"})
	if e := waitClosed(t, closed); e.Code != 320 || e.Reason != "CONNECTION_FORCED - user 'bd1' is deleted" {
		t.Fatalf("bd1's connection closed with %d %q", e.Code, e.Reason)
	}
	want(t, "bd1 after", a.guest("GET", "/users/bd1", ""), 404)
	want(t, "bd2 kept", a.guest("GET", "/users/bd2", ""), 200)
	want(t, "bd2, bd3", a.guest("POST", "/users/bulk-delete", `{"users":["bd2","bd3"]}`), 204)
	want(t, "bd3 after", a.guest("GET", "/users/bd3", ""), 404)
	want(t, "no users key", a.guest("POST", "/users/bulk-delete", `{}`), 400, "bad_request", "[{key_missing,users}]")
	want(t, "GET", a.guest("GET", "/users/bulk-delete", ""), 405)
	addUser(t, a.srv, "mon2", nil, "monitoring")
	want(t, "not admin", a.do("mon2", "pw", "POST", "/users/bulk-delete", `{"users":["guest"]}`), 401, "not_authorised", "Not administrator user")
}

// waitClosed waits up to 10 s for a connection's close notification.
func waitClosed(t *testing.T, closed <-chan *amqp.Error) *amqp.Error {
	t.Helper()
	select {
	case e := <-closed:
		if e == nil {
			t.Fatal("closed without an error")
		}
		return e
	case <-time.After(10 * time.Second):
		t.Fatal("still open after 10 s")
	}
	return nil
}
