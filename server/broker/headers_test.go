package broker_test

import (
	"fmt"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

func TestHeadersRouting(t *testing.T) {
	type msg struct {
		h     amqp.Table
		match bool
	}
	cases := []struct {
		name string
		args amqp.Table
		msgs []msg
	}{
		{"all", amqp.Table{"x-match": "all", "a": "1", "b": int32(2)}, []msg{
			{amqp.Table{"a": "1", "b": int32(2)}, true},
			{amqp.Table{"a": "1", "b": int32(2), "c": "extra"}, true},
			{amqp.Table{"a": "1"}, false},
			{amqp.Table{"a": "1", "b": int32(3)}, false},
			{amqp.Table{"a": "1", "b": "2"}, false},
			{nil, false},
		}},
		{"default is all", amqp.Table{"a": "1", "b": "2"}, []msg{
			{amqp.Table{"a": "1", "b": "2"}, true},
			{amqp.Table{"a": "1"}, false},
		}},
		{"any", amqp.Table{"x-match": "any", "a": "1", "b": "2"}, []msg{
			{amqp.Table{"a": "1"}, true},
			{amqp.Table{"b": "2", "c": "3"}, true},
			{amqp.Table{"a": "x", "b": "y"}, false},
			{amqp.Table{}, false},
			{nil, false},
		}},
		{"all ignores x- keys", amqp.Table{"x-match": "all", "x-foo": "bar", "a": "1"}, []msg{
			{amqp.Table{"a": "1"}, true},
			{amqp.Table{"a": "1", "x-foo": "other"}, true},
		}},
		{"any ignores x- keys", amqp.Table{"x-match": "any", "x-foo": "bar"}, []msg{
			{amqp.Table{"x-foo": "bar"}, false},
		}},
		{"all-with-x", amqp.Table{"x-match": "all-with-x", "x-foo": "bar", "a": "1"}, []msg{
			{amqp.Table{"a": "1"}, false},
			{amqp.Table{"a": "1", "x-foo": "bar"}, true},
			{amqp.Table{"x-foo": "bar"}, false},
		}},
		{"any-with-x", amqp.Table{"x-match": "any-with-x", "x-foo": "bar", "a": "1"}, []msg{
			{amqp.Table{"x-foo": "bar"}, true},
			{amqp.Table{"a": "1"}, true},
			{amqp.Table{"x-foo": "baz"}, false},
		}},
		{"all with no fields matches everything", amqp.Table{"x-match": "all"}, []msg{
			{nil, true},
			{amqp.Table{"z": "1"}, true},
		}},
		{"any with no fields matches nothing", amqp.Table{"x-match": "any"}, []msg{
			{nil, false},
			{amqp.Table{"z": "1"}, false},
		}},
		{"void value means presence", amqp.Table{"x-match": "all", "a": nil}, []msg{
			{amqp.Table{"a": "anything"}, true},
			{amqp.Table{"a": int32(7)}, true},
			{amqp.Table{"a": nil}, true},
			{amqp.Table{"b": "1"}, false},
		}},
		{"void in message does not match a value", amqp.Table{"a": "1"}, []msg{
			{amqp.Table{"a": nil}, false},
		}},
		{"integer widths compare by value", amqp.Table{"n": int16(5)}, []msg{
			{amqp.Table{"n": int64(5)}, true},
			{amqp.Table{"n": int32(5)}, true},
			{amqp.Table{"n": int8(5)}, true},
			{amqp.Table{"n": int32(6)}, false},
			{amqp.Table{"n": "5"}, false},
		}},
		// RabbitMQ compares the decoded Erlang values with ==, so types
		// are ignored: numbers compare by value, strings by content.
		{"integer vs float", amqp.Table{"n": int32(5)}, []msg{
			{amqp.Table{"n": float64(5)}, true},
			{amqp.Table{"n": float64(5.5)}, false},
		}},
		{"integer vs timestamp", amqp.Table{"n": int64(1700000000)}, []msg{
			{amqp.Table{"n": time.Unix(1700000000, 0)}, true},
		}},
		{"bools", amqp.Table{"f": true}, []msg{
			{amqp.Table{"f": true}, true},
			{amqp.Table{"f": false}, false},
		}},
		{"longstr vs bytes", amqp.Table{"s": "abc"}, []msg{
			{amqp.Table{"s": []byte("abc")}, true},
			{amqp.Table{"s": []byte("abd")}, false},
		}},
	}
	u := brokerURL(t)
	_, ch := dial(t, u)
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			x := uname(t, "hx")
			if err := ch.ExchangeDeclare(x, "headers", false, true, false, false, nil); err != nil {
				t.Fatal(err)
			}
			cleanupExchanges(t, u, x)
			q := tempQueue(t, ch)
			if err := ch.QueueBind(q, "", x, false, tc.args); err != nil {
				t.Fatal(err)
			}
			var want []string
			for j, m := range tc.msgs {
				b := fmt.Sprintf("%d/%d", i, j)
				if m.match {
					want = append(want, b)
				}
				publish(t, ch, x, "ignored", amqp.Publishing{Headers: m.h, Body: []byte(b)})
			}
			publish(t, ch, "", q, body("end"))
			var got []string
			for {
				d := getBody(t, ch, q, true)
				if string(d.Body) == "end" {
					break
				}
				got = append(got, string(d.Body))
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("bound %v: delivered %v, want %v (message i/j = case/message index)", tc.args, got, want)
			}
		})
	}
}

func TestHeadersInvalidXMatch(t *testing.T) {
	u := brokerURL(t)
	_, ch := dial(t, u)
	q := tempQueue(t, ch)
	err := ch.QueueBind(q, "", "amq.headers", false, amqp.Table{"x-match": "some"})
	wantErr(t, err, 406, "PRECONDITION_FAILED - Invalid x-match field value <<\"some\">>; expected all, any, all-with-x, or any-with-x")
}

func TestHeadersPredeclared(t *testing.T) {
	_, ch := dial(t, brokerURL(t))
	for _, x := range []string{"amq.headers", "amq.match"} {
		q := tempQueue(t, ch)
		if err := ch.QueueBind(q, "", x, false, amqp.Table{"x-match": "any", "k": "v"}); err != nil {
			t.Fatal(err)
		}
		publish(t, ch, x, "", amqp.Publishing{Headers: amqp.Table{"k": "v"}, Body: []byte(x)})
		if d := getBody(t, ch, q, true); string(d.Body) != x {
			t.Fatalf("got %q", d.Body)
		}
		if err := ch.QueueUnbind(q, "", x, amqp.Table{"x-match": "any", "k": "v"}); err != nil {
			t.Fatal(err)
		}
	}
}
