package cli_test

import (
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// amqp-server ctl delete-user and delete-vhost on the built binary close
// the user's and the vhost's open connections with RabbitMQ 3.10.8's 320
// texts (what rabbitmqctl delete_user and delete_vhost do there).
func TestCtlDeleteClosesConnections(t *testing.T) {
	p, base := ctlServer(t)
	ctl(t, base, "add-user", "bob", "pw").ok(t, "add-user")
	ctl(t, base, "set-permissions", "bob", ".*", ".*", ".*").ok(t, "set-permissions")
	ctl(t, base, "add-vhost", "v2").ok(t, "add-vhost")
	ctl(t, base, "set-permissions", "--vhost", "v2", "guest", ".*", ".*", ".*").ok(t, "set-permissions in v2")
	waitClose := func(c *amqp.Connection, what string, fn func()) *amqp.Error {
		t.Helper()
		closed := c.NotifyClose(make(chan *amqp.Error, 1))
		fn()
		select {
		case e := <-closed:
			if e == nil {
				t.Fatalf("%s: closed without an error", what)
			}
			return e
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the connection is still open", what)
		}
		return nil
	}
	bob := dial(t, strings.Replace(p.url, "guest:guest", "bob:pw", 1))
	inV2 := dial(t, p.url+"v2")
	other := dial(t, p.url)
	if e := waitClose(bob, "delete-user", func() { ctl(t, base, "delete-user", "bob").ok(t, "delete-user") }); e.Code != 320 ||
		e.Reason != "CONNECTION_FORCED - user 'bob' is deleted" {
		t.Errorf("bob's connection: %d %q", e.Code, e.Reason)
	}
	if e := waitClose(inV2, "delete-vhost", func() { ctl(t, base, "delete-vhost", "v2").ok(t, "delete-vhost") }); e.Code != 320 ||
		e.Reason != "CONNECTION_FORCED - vhost 'v2' is deleted" {
		t.Errorf("the connection to v2: %d %q", e.Code, e.Reason)
	}
	if other.IsClosed() {
		t.Error("guest's connection to / was closed too")
	}
}
