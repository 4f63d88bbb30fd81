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
