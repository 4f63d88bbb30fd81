package queue

import (
	"slices"
	"testing"
)

func TestDelayedOrder(t *testing.T) {
	d := NewDelayed[string]()
	for _, s := range []struct {
		name string
		due  int64
	}{{"late", 300}, {"early", 100}, {"tie1", 200}, {"tie2", 200}, {"early2", 100}} {
		d.Schedule(Message[string]{Handle: s.name}, s.due)
	}
	names := func(es []Entry[string]) []string {
		var out []string
		for _, e := range es {
			out = append(out, e.Handle)
		}
		return out
	}
	for _, step := range []struct {
		now  int64
		want []string
		next int64
	}{
		{99, nil, 100},
		{100, []string{"early", "early2"}, 200},
		{250, []string{"tie1", "tie2"}, 300},
		{1000, []string{"late"}, 0},
	} {
		if got := names(d.Due(step.now)); !slices.Equal(got, step.want) {
			t.Errorf("at %d: got %v, want %v", step.now, got, step.want)
		}
		if n := d.NextDeadline(); n != step.next {
			t.Errorf("after %d: next deadline %d, want %d", step.now, n, step.next)
		}
	}
	d.Schedule(Message[string]{Handle: "x"}, 5)
	if got := d.Drain(); len(got) != 1 || d.Len() != 0 {
		t.Errorf("drain: %v, %d left", got, d.Len())
	}
}

// BenchmarkDelayed schedules b.N messages at spread due times and takes
// them all: the per-message cost of a large schedule.
func BenchmarkDelayed(b *testing.B) {
	d := NewDelayed[int]()
	b.ReportAllocs()
	for i := range b.N {
		d.Schedule(Message[int]{Handle: i, Size: 100}, int64((i*7919)%1000003))
	}
	for d.Len() > 0 {
		d.Due(int64(d.NextDeadline()) + 1000)
	}
}

// DueMax takes the due messages in bounded rounds, in the order Due would
// give them all at once, and never one that is not yet due.
func TestDelayedDueMax(t *testing.T) {
	d := NewDelayed[string]()
	for _, s := range []struct {
		name string
		due  int64
	}{{"c", 30}, {"a1", 10}, {"b", 20}, {"a2", 10}, {"late", 100}} {
		d.Schedule(Message[string]{Handle: s.name}, s.due)
	}
	for _, step := range []struct {
		now  int64
		max  int
		want []string
		left int
	}{
		{5, 2, nil, 5},
		{50, 2, []string{"a1", "a2"}, 3},
		{50, 2, []string{"b", "c"}, 1},
		{50, 2, nil, 1},
		{100, 0, []string{"late"}, 0},
	} {
		var got []string
		for _, e := range d.DueMax(step.now, step.max) {
			got = append(got, e.Handle)
			if e.Expires > step.now {
				t.Errorf("at %d: %s due at %d came out early", step.now, e.Handle, e.Expires)
			}
		}
		if !slices.Equal(got, step.want) || d.Len() != step.left {
			t.Errorf("at %d max %d: got %v (%d left), want %v (%d left)", step.now, step.max, got, d.Len(), step.want, step.left)
		}
	}
}
