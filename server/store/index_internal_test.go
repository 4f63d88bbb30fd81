package store

import (
	"fmt"
	"testing"
)

func TestDurableQueues(t *testing.T) {
	wide := []QueueID{0}
	for i := range 40 {
		wide = append(wide, QueueID(40-i%20))
	}
	for _, c := range []struct {
		in   []QueueID
		want string
	}{
		{nil, "[]"},
		{[]QueueID{0, 0}, "[]"},
		{[]QueueID{3}, "[3]"},
		{[]QueueID{3, 0, 1, 3, 1, 2}, "[3 1 2]"},
		{wide, fmt.Sprint(seq(21, 40))},
	} {
		if got := fmt.Sprint(durableQueues(c.in)); got != c.want {
			t.Errorf("durableQueues(%v) = %s, want %s", c.in, got, c.want)
		}
	}
}

func seq(from, to uint64) []uint64 {
	var s []uint64
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}
