package broker_test

import (
	"testing"

	wire "github.com/amqp-go/amqp-go/shared/amqp"
)

// TestUpdateSecretAccepted: RabbitMQ's internal user store accepts any new
// secret with update-secret-ok and the connection carries on.
func TestUpdateSecretAccepted(t *testing.T) {
	u := brokerURL(t)
	t.Run("raw", func(t *testing.T) {
		r, _ := rawHandshake(t, u, rawOpts{})
		r.send(0, &wire.ConnectionUpdateSecret{NewSecret: "not-the-password", Reason: "rotation"})
		if ch, m := r.readMethod(); ch != 0 {
			t.Fatalf("reply on channel %d", ch)
		} else if _, ok := m.(*wire.ConnectionUpdateSecretOk); !ok {
			t.Fatalf("want connection.update-secret-ok, got %s %+v", m.MethodName(), m)
		}
		r.openChannel(1)
		r.send(1, &wire.QueueDeclare{Queue: "", Exclusive: true})
		if _, m := r.readMethod(); m.MethodName() != "queue.declare-ok" {
			t.Fatalf("after update-secret: got %s %+v", m.MethodName(), m)
		}
	})
	t.Run("client", func(t *testing.T) {
		conn := openConn(t, u)
		if err := conn.UpdateSecret("another-secret", "rotation"); err != nil {
			t.Fatalf("update secret: %v", err)
		}
		tempQueue(t, openChan(t, conn))
	})
}
