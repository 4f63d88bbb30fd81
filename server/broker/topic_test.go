package broker_test

import (
	"testing"
)

func TestTopicRouting(t *testing.T) {
	cases := []struct {
		pattern string
		match   []string
		miss    []string
	}{
		{"a.b.c", []string{"a.b.c"}, []string{"a.b", "a.b.c.d", "a.x.c", ""}},
		{"a.*.c", []string{"a.b.c", "a.x.c", "a..c"}, []string{"a.c", "a.b.b.c", "a.b.c.d", "b.b.c"}},
		// The empty key has no words (RabbitMQ): "*" misses it, "#" matches.
		{"*", []string{"a", "b"}, []string{"", "a.b", "a.b.c"}},
		{"#.*", []string{"a", "a.b"}, []string{""}},
		{"*.*", []string{"a.b", ".", "a."}, []string{"a", "a.b.c"}},
		{"#", []string{"", "a", "a.b", "a.b.c.d.e"}, nil},
		{"a.#", []string{"a", "a.b", "a.b.c"}, []string{"b", "ab", "b.a"}},
		{"#.c", []string{"c", "a.c", "a.b.c"}, []string{"a", "c.a", "ac"}},
		{"a.#.c", []string{"a.c", "a.b.c", "a.b.b.c"}, []string{"a", "c", "a.b", "b.a.c", "a.c.d"}},
		{"#.b.#", []string{"b", "a.b", "b.c", "a.b.c", "a.b.b.c"}, []string{"a", "a.c", "ab"}},
		{"*.#", []string{"a", "a.b", "a.b.c"}, nil},
		{"a.*.#", []string{"a.b", "a.b.c"}, []string{"a", "b.a"}},
		{"", []string{""}, []string{"a", "."}},
		{"a.*", []string{"a.b", "a."}, []string{"a", "a.b.c"}},
	}
	u := brokerURL(t)
	conn := openConn(t, u)
	ch := openChan(t, conn)
	x := uname(t, "topic")
	if err := ch.ExchangeDeclare(x, "topic", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	cleanupExchanges(t, u, x)
	for _, tc := range cases {
		t.Run("pattern="+tc.pattern, func(t *testing.T) {
			q := tempQueue(t, ch)
			if err := ch.QueueBind(q, tc.pattern, x, false, nil); err != nil {
				t.Fatal(err)
			}
			defer ch.QueueUnbind(q, tc.pattern, x, nil)
			for _, k := range tc.match {
				publish(t, ch, x, k, body(k))
			}
			for _, k := range tc.miss {
				publish(t, ch, x, k, body("miss:"+k))
			}
			// A marker routed directly shows everything before it arrived.
			publish(t, ch, "", q, body("end"))
			var got []string
			for {
				d := getBody(t, ch, q, true)
				if string(d.Body) == "end" {
					break
				}
				got = append(got, string(d.Body))
			}
			if len(got) != len(tc.match) {
				t.Fatalf("pattern %q: got %q, want %q", tc.pattern, got, tc.match)
			}
			for i, k := range tc.match {
				if got[i] != k {
					t.Fatalf("pattern %q: got %q, want %q", tc.pattern, got, tc.match)
				}
			}
		})
	}
}

// TestTopicOverlappingBindings: one message matching several bindings of a
// queue is delivered to it once.
func TestTopicOverlappingBindings(t *testing.T) {
	u := brokerURL(t)
	_, ch := dial(t, u)
	x := uname(t, "topic")
	if err := ch.ExchangeDeclare(x, "topic", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	cleanupExchanges(t, u, x)
	q1, q2 := tempQueue(t, ch), tempQueue(t, ch)
	for _, k := range []string{"#", "a.#", "a.*.c", "#.c", "a.b.c"} {
		if err := ch.QueueBind(q1, k, x, false, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := ch.QueueBind(q2, "*.b.*", x, false, nil); err != nil {
		t.Fatal(err)
	}
	publish(t, ch, x, "a.b.c", body("once"))
	publish(t, ch, "", q1, body("end"))
	publish(t, ch, "", q2, body("end"))
	for _, q := range []string{q1, q2} {
		if d := getBody(t, ch, q, true); string(d.Body) != "once" {
			t.Fatalf("%s: got %q", q, d.Body)
		}
		if d := getBody(t, ch, q, true); string(d.Body) != "end" {
			t.Fatalf("%s: duplicate delivery %q", q, d.Body)
		}
	}
}
