package broker_test

import (
	"testing"

	"github.com/amqp-go/amqp-go/server/security"
	amqp "github.com/rabbitmq/amqp091-go"
)

// vhostTyper makes a vhost with a default queue type (RabbitMQ 3.10's
// default_queue_type metadata).
type vhostTyper interface {
	addVHostWithType(t *testing.T, name, queueType string)
}

func (a storeAdmin) addVHostWithType(t *testing.T, name, queueType string) {
	t.Helper()
	if err := a.s.PutVHost(security.VHost{Name: name, DefaultQueueType: queueType}); err != nil {
		t.Fatal(err)
	}
}

func (a ctlAdmin) addVHostWithType(t *testing.T, name, queueType string) {
	a.ctl(t, "add_vhost", name, "--default-queue-type", queueType)
	t.Cleanup(func() { a.ctl(t, "delete_vhost", name) })
}

// In a vhost whose default queue type is quorum, a durable queue that is
// neither exclusive nor auto-delete, declared without x-queue-type, is
// declared as if it had x-queue-type quorum, a quorum queue, as in
// RabbitMQ 3.10.8. Other queues stay classic, and a classic queue redeclared
// without x-queue-type is inequivalent, as in RabbitMQ 3.10.8 (checked
// with rabbitmqctl add_vhost --default-queue-type quorum).
func TestVHostDefaultQueueType(t *testing.T) {
	base, admin := securedBroker(t)
	vh := "dqt-" + runID
	admin.(vhostTyper).addVHostWithType(t, vh, "quorum")
	admin.setPermissions(t, "guest", vh, ".*", ".*", ".*")
	conn := openConn(t, asUser(t, base, "guest", "guest", vh))
	declare := func(name string, durable, autoDelete, exclusive bool, args amqp.Table) error {
		_, err := openChan(t, conn).QueueDeclare(name, durable, autoDelete, exclusive, false, args)
		return err
	}
	inequivalent := func(q, received, current string) string {
		return "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue '" + q + "' in vhost '" + vh +
			"': received '" + received + "' but current is '" + current + "'"
	}

	byDefault, explicit := "by-default", "explicit"
	errDefault := declare(byDefault, true, false, false, nil)
	errExplicit := declare(explicit, true, false, false, amqp.Table{"x-queue-type": "quorum"})
	if errDefault != nil || errExplicit != nil {
		t.Fatalf("declares: %v, %v", errDefault, errExplicit)
	}
	wantErr(t, declare(byDefault, true, false, false, amqp.Table{"x-queue-type": "classic"}), 406,
		inequivalent(byDefault, "classic", "quorum"))

	// Not durable, auto-delete or exclusive: classic, as RabbitMQ 3.10.8
	// makes them.
	for _, tc := range []struct {
		name                           string
		durable, autoDelete, exclusive bool
	}{{"transient", false, false, false}, {"auto-delete", true, true, false}, {"exclusive", true, false, true}} {
		if err := declare(tc.name, tc.durable, tc.autoDelete, tc.exclusive, nil); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if err := declare(tc.name, tc.durable, tc.autoDelete, tc.exclusive, amqp.Table{"x-queue-type": "classic"}); err != nil {
			t.Errorf("%s is not classic: %v", tc.name, err)
		}
	}
	cleanupQueues(t, asUser(t, base, "guest", "guest", vh), "transient", "auto-delete")

	// A classic queue asked for by name stays one, and a declare of it
	// without x-queue-type asks for quorum.
	if err := declare("classic", true, false, false, amqp.Table{"x-queue-type": "classic"}); err != nil {
		t.Fatal(err)
	}
	wantErr(t, declare("classic", true, false, false, nil), 406, inequivalent("classic", "quorum", "classic"))
}
