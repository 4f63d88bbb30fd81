package broker_test

import (
	"fmt"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
)

// TestQueueModeAndVersionValidation: x-queue-mode ("default" or "lazy")
// and x-queue-version (1 or 2) are accepted with RabbitMQ 3.10's checks and
// texts for other values; other integer arguments refuse non-integers the
// same way.
func TestQueueModeAndVersionValidation(t *testing.T) {
	t.Run("x-queue-mode", func(t *testing.T) {
		checkQueueArgs(t, "x-queue-mode", []argCase{
			{"default", "default", ""},
			{"lazy", "lazy", ""},
			{"unknown", "bogus", `"unsupported queue mode 'bogus'"`},
			{"empty", "", `"unsupported queue mode ''"`},
			{"case matters", "Lazy", `"unsupported queue mode 'Lazy'"`},
			{"integer", int32(1), "{unacceptable_type,signedint}"},
			{"bytes", []byte("lazy"), "{unacceptable_type,binary}"},
		})
	})
	t.Run("x-queue-version", func(t *testing.T) {
		checkQueueArgs(t, "x-queue-version", []argCase{
			{"1", int32(1), ""},
			{"2", int32(2), ""},
			{"2 long", int64(2), ""},
			{"2 byte", int8(2), ""},
			{"0", int32(0), `"unsupported queue version '0'"`},
			{"3", int32(3), `"unsupported queue version '3'"`},
			{"negative", int32(-1), "{value_negative,-1}"},
			{"string", "2", `"expected integer, got longstr"`},
			{"double", 2.0, `"expected integer, got double"`},
		})
	})
	for _, tc := range []struct {
		arg   string
		value any
		typ   string
	}{
		{"x-message-ttl", "x", "longstr"}, {"x-max-length", "x", "longstr"},
		{"x-expires", 1.0, "double"}, {"x-max-priority", true, "bool"},
	} {
		t.Run(tc.arg, func(t *testing.T) {
			checkQueueArgs(t, tc.arg, []argCase{{tc.typ, tc.value, `"expected integer, got ` + tc.typ + `"`}})
		})
	}
}

// argCase is a value of a queue argument and what RabbitMQ says of it.
type argCase struct {
	name   string
	value  any
	detail string // after the argument error's "...: "; "" means accepted
}

// checkQueueArgs declares a queue with arg set to each case's value.
func checkQueueArgs(t *testing.T, arg string, cases []argCase) {
	t.Helper()
	u := brokerURL(t)
	conn := openConn(t, u)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			q := uname(t, "q")
			cleanupQueues(t, u, q)
			err := declareErr(t, conn, q, amqp.Table{arg: tc.value})
			if tc.detail == "" {
				if err != nil {
					t.Fatalf("declare: %v", err)
				}
				return
			}
			wantErr(t, err, 406, "PRECONDITION_FAILED - invalid arg '"+arg+"' for queue '"+q+"' in vhost '/': "+tc.detail)
		})
	}
}

// TestQueueModeAndVersionEquivalence: a redeclare must repeat both, as
// RabbitMQ 3.10 checks them for equivalence.
func TestQueueModeAndVersionEquivalence(t *testing.T) {
	u := brokerURL(t)
	conn := openConn(t, u)
	cases := []struct {
		name        string
		first, then amqp.Table
		want        string // after "inequivalent arg "; "" means equivalent
	}{
		{"same version", amqp.Table{"x-queue-version": int32(2)}, amqp.Table{"x-queue-version": int32(2)}, ""},
		{"other version", amqp.Table{"x-queue-version": int32(1)}, amqp.Table{"x-queue-version": int32(2)},
			"'x-queue-version' for queue '%s' in vhost '/': received '2' but current is '1'"},
		{"version dropped", amqp.Table{"x-queue-version": int32(1)}, nil,
			"'x-queue-version' for queue '%s' in vhost '/': received none but current is the value '1' of type 'signedint'"},
		{"same mode", amqp.Table{"x-queue-mode": "lazy"}, amqp.Table{"x-queue-mode": "lazy"}, ""},
		{"other mode", amqp.Table{"x-queue-mode": "lazy"}, amqp.Table{"x-queue-mode": "default"},
			"'x-queue-mode' for queue '%s' in vhost '/': received 'default' but current is 'lazy'"},
		{"mode dropped", amqp.Table{"x-queue-mode": "lazy"}, nil,
			"'x-queue-mode' for queue '%s' in vhost '/': received none but current is the value 'lazy' of type 'longstr'"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			q := uname(t, "q")
			cleanupQueues(t, u, q)
			if err := declareErr(t, conn, q, tc.first); err != nil {
				t.Fatalf("declare: %v", err)
			}
			err := declareErr(t, conn, q, tc.then)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("redeclare: %v", err)
				}
				return
			}
			wantErr(t, err, 406, "PRECONDITION_FAILED - inequivalent arg "+fmt.Sprintf(tc.want, q))
		})
	}
}
