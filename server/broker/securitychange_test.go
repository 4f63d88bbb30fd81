package broker_test

import (
	"os"
	"os/exec"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
)

// What a change to users and permissions does to connections that are
// already open, as RabbitMQ 3.10.8 does it (checked with rabbitmqctl while
// amqp091-go clients were connected).

// userDeleter deletes a user on the broker under test, and makes one whose
// deletion is the test's (the admin's addUser deletes it again at cleanup,
// which rabbitmqctl refuses for a user already gone).
type userDeleter interface {
	addUserToDelete(t *testing.T, name, password string)
	deleteUser(t *testing.T, name string)
}

func (a storeAdmin) addUserToDelete(t *testing.T, name, password string) {
	a.addUser(t, name, password)
}

func (a storeAdmin) deleteUser(t *testing.T, name string) {
	t.Helper()
	if err := a.s.DeleteUser(name); err != nil {
		t.Fatal(err)
	}
}

func (a ctlAdmin) addUserToDelete(t *testing.T, name, password string) {
	a.ctl(t, "add_user", name, password)
	t.Cleanup(func() { // gone already if the test got as far as deleting it
		_ = exec.Command(a.cmd[0], append(a.cmd[1:], "delete_user", name)...).Run()
	})
}

func (a ctlAdmin) deleteUser(t *testing.T, name string) { a.ctl(t, "delete_user", name) }

// Deleting a user closes every connection it has open with 320
// "CONNECTION_FORCED - user 'u' is deleted"; other users' connections stay
// open, and the deleted user cannot log in again.
func TestDeleteUserClosesConnections(t *testing.T) {
	base, admin := securedBroker(t)
	del := admin.(userDeleter)
	user := "deleted-" + runID
	del.addUserToDelete(t, user, "pw")
	admin.setPermissions(t, user, "/", ".*", ".*", ".*")
	uurl := asUser(t, base, user, "pw", "/")
	c1, c2 := openConn(t, uurl), openConn(t, uurl)
	openChan(t, c1)
	closed1 := c1.NotifyClose(make(chan *amqp.Error, 1))
	closed2 := c2.NotifyClose(make(chan *amqp.Error, 1))
	guest := openConn(t, base)

	del.deleteUser(t, user)
	want := "CONNECTION_FORCED - user '" + user + "' is deleted"
	wantClose(t, closed1, 320, want)
	wantClose(t, closed2, 320, want)
	if _, err := amqp.Dial(uurl); err == nil {
		t.Fatal("the deleted user logged in again")
	}
	if guest.IsClosed() {
		t.Fatal("guest's connection was closed too")
	}
	ch := openChan(t, guest)
	if _, err := ch.QueueDeclarePassive("amq.rabbitmq.reply-to", false, false, false, false, nil); err != nil {
		t.Fatalf("guest's connection after the delete: %v", err)
	}
}

// A permission change applies to open channels at their next operation.
// Ours also drops what a channel remembers of resources it was allowed
// before. RabbitMQ 3.10.8 keeps a channel's allowed resources (its
// permission cache) until the channel idles (checked with rabbitmqctl set_permissions: a channel publishing
// every 100 ms kept publishing for 20 s after its write permission was
// taken, one idle for 3 s was refused at once), so that step runs
// in-process only; the rest passes against RabbitMQ too.
func TestPermissionChangeOnOpenChannels(t *testing.T) {
	base, admin := securedBroker(t)
	user := "permchange-" + runID
	admin.addUser(t, user, "pw")
	admin.setPermissions(t, user, "/", ".*", ".*", ".*")
	conn := openConn(t, asUser(t, base, user, "pw", "/"))
	pub, decl := openChan(t, conn), openChan(t, conn)
	q := "permchange-q-" + runID
	if err := publishAndSync(pub, "amq.direct", "k", amqp.Publishing{}); err != nil {
		t.Fatalf("publish before the change: %v", err)
	}
	declareQueue(t, base, decl, q)
	refused := func(kind, name string) string {
		return "ACCESS_REFUSED - access to " + kind + " '" + name + "' in vhost '/' refused for user '" + user + "'"
	}

	admin.setPermissions(t, user, "/", "^$", "^$", "^$")
	q2 := "permchange-q2-" + runID
	_, err := decl.QueueDeclare(q2, false, false, false, false, nil)
	wantErr(t, err, 403, refused("queue", q2))
	err = publishAndSync(openChan(t, conn), "amq.direct", "k", amqp.Publishing{})
	wantErr(t, err, 403, refused("exchange", "amq.direct"))
	if os.Getenv("BROKER_TEST_URL") == "" {
		err = publishAndSync(pub, "amq.direct", "k", amqp.Publishing{})
		wantErr(t, err, 403, refused("exchange", "amq.direct"))
	}

	admin.setPermissions(t, user, "/", "^permchange-", "^amq\\.direct$", "")
	if err := publishAndSync(openChan(t, conn), "amq.direct", "k", amqp.Publishing{}); err != nil {
		t.Fatalf("publish after write was given back: %v", err)
	}
	if _, err := openChan(t, conn).QueueDeclare(q, false, false, false, false, nil); err != nil {
		t.Fatalf("declare after configure was given back: %v", err)
	}
	other := "other-" + runID
	_, err = openChan(t, conn).QueueDeclare(other, false, false, false, false, nil)
	wantErr(t, err, 403, refused("queue", other))

	// Without any permission in the vhost the connection stays open (as
	// in RabbitMQ 3.10.8: the vhost is checked at connection.open only),
	// and every operation is refused.
	admin.(permClearer).clearPermissions(t, user, "/")
	_, err = openChan(t, conn).QueueDeclare(q, false, false, false, false, nil)
	wantErr(t, err, 403, refused("queue", q))
	if conn.IsClosed() {
		t.Fatal("clearing the permissions closed the connection")
	}
}

// permClearer removes a user's permissions in a vhost.
type permClearer interface {
	clearPermissions(t *testing.T, user, vhost string)
}

func (a storeAdmin) clearPermissions(t *testing.T, user, vhost string) {
	t.Helper()
	if err := a.s.ClearPermissions(user, vhost); err != nil {
		t.Fatal(err)
	}
}

func (a ctlAdmin) clearPermissions(t *testing.T, user, vhost string) {
	a.ctl(t, "clear_permissions", "-p", vhost, user)
}
