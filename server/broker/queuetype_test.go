package broker_test

import (
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
)

// declareErr declares queue name with args on a fresh channel and returns
// the error.
func declareErr(t *testing.T, conn *amqp.Connection, name string, args amqp.Table) error {
	t.Helper()
	ch := openChan(t, conn)
	_, err := ch.QueueDeclare(name, false, false, false, false, args)
	if err == nil {
		ch.Close()
	}
	return err
}

// TestQueueTypeValidation: x-queue-type "classic" makes a classic queue;
// an unknown type or a value that is not a string gets RabbitMQ's 406.
func TestQueueTypeValidation(t *testing.T) {
	u := brokerURL(t)
	conn := openConn(t, u)
	cases := []struct {
		name   string
		value  any
		detail string // "" means accepted
	}{
		{"classic", "classic", ""},
		{"unknown", "foo", `"unsupported queue type 'foo'"`},
		{"empty", "", `"unsupported queue type ''"`},
		{"case matters", "Classic", `"unsupported queue type 'Classic'"`},
		{"integer", int32(5), "{unacceptable_type,signedint}"},
		{"bytes", []byte("classic"), "{unacceptable_type,binary}"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			q := uname(t, "q")
			cleanupQueues(t, u, q)
			err := declareErr(t, conn, q, amqp.Table{"x-queue-type": tc.value})
			if tc.detail == "" {
				if err != nil {
					t.Fatalf("declare: %v", err)
				}
				return
			}
			wantErr(t, err, 406, "PRECONDITION_FAILED - invalid arg 'x-queue-type' for queue '"+q+"' in vhost '/': "+tc.detail)
		})
	}
}

// TestQueueTypeNotImplemented: a stream queue is refused by name rather
// than silently made classic.
func TestQueueTypeNotImplemented(t *testing.T) {
	inProcessOnly(t, "RabbitMQ implements stream queues")
	u := brokerURL(t)
	conn := openConn(t, u)
	for _, typ := range []string{"stream"} {
		t.Run(typ, func(t *testing.T) {
			q := uname(t, "q")
			ch := openChan(t, conn)
			_, err := ch.QueueDeclare(q, true, false, false, false, amqp.Table{"x-queue-type": typ})
			wantErr(t, err, 406, "PRECONDITION_FAILED - invalid arg 'x-queue-type' for queue '"+q+
				"' in vhost '/': \"queue type '"+typ+"' is not supported by this server yet\"")
			_, err = openChan(t, conn).QueueDeclarePassive(q, true, false, false, false, nil)
			wantErr(t, err, 404, "NOT_FOUND - no queue '"+q+"' in vhost '/'")
		})
	}
}

// TestQueueTypeEquivalence: on redeclare no x-queue-type and "classic" are
// the same queue type; other differences get RabbitMQ's texts, which quote
// bare values when both sides give one.
func TestQueueTypeEquivalence(t *testing.T) {
	u := brokerURL(t)
	conn := openConn(t, u)
	classic := amqp.Table{"x-queue-type": "classic"}
	cases := []struct {
		name        string
		first, then amqp.Table
		detail      string // "" means equivalent
	}{
		{"none then classic", nil, classic, ""},
		{"classic then none", classic, nil, ""},
		{"classic then classic bytes", classic, amqp.Table{"x-queue-type": []byte("classic")}, ""},
		{"none then classic bytes", nil, amqp.Table{"x-queue-type": []byte("classic")},
			"received the value 'classic' of type 'binary' but current is none"},
		{"none then foo", nil, amqp.Table{"x-queue-type": "foo"}, "received the value 'foo' of type 'longstr' but current is none"},
		{"none then integer", nil, amqp.Table{"x-queue-type": int32(1)}, "received the value '1' of type 'signedint' but current is none"},
		{"classic then quorum", classic, amqp.Table{"x-queue-type": "quorum"}, "received 'quorum' but current is 'classic'"},
		{"classic then foo", classic, amqp.Table{"x-queue-type": "foo"}, "received 'foo' but current is 'classic'"},
		{"classic then integer", classic, amqp.Table{"x-queue-type": int32(1)}, "received '1' but current is 'classic'"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			redeclare(t, u, conn, tc.first, tc.then, "x-queue-type", tc.detail)
		})
	}
}

// redeclare declares a queue with first, again with then, and expects the
// second to succeed (detail "") or fail with arg's inequivalence detail.
func redeclare(t *testing.T, u string, conn *amqp.Connection, first, then amqp.Table, arg, detail string) {
	t.Helper()
	q := uname(t, "q")
	cleanupQueues(t, u, q)
	if err := declareErr(t, conn, q, first); err != nil {
		t.Fatalf("first declare: %v", err)
	}
	err := declareErr(t, conn, q, then)
	if detail == "" {
		if err != nil {
			t.Fatalf("redeclare: %v", err)
		}
		return
	}
	wantErr(t, err, 406, "PRECONDITION_FAILED - inequivalent arg '"+arg+"' for queue '"+q+"' in vhost '/': "+detail)
}

// TestQueueArgBothGivenInequivalent: an argument given on both declares
// with different values (or type classes) is reported with bare values.
func TestQueueArgBothGivenInequivalent(t *testing.T) {
	u := brokerURL(t)
	conn := openConn(t, u)
	for _, tc := range []struct {
		name   string
		then   any
		detail string
	}{
		{"other value", int32(20), "received '20' but current is '10'"},
		{"other type class", "10", "received '10' but current is '10'"},
		{"other width", int64(10), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			redeclare(t, u, conn, amqp.Table{"x-max-length": int32(10)}, amqp.Table{"x-max-length": tc.then}, "x-max-length", tc.detail)
		})
	}
}
