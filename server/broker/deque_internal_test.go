package broker

import (
	"math/rand"
	"sort"
	"testing"
	"unsafe"
)

// The deque must behave exactly like an ordered slice under any mix of
// operations, across block boundaries.
func TestEntryDequeMatchesModel(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	var d entryDeque
	var model []uint64
	next := uint64(1)
	check := func(step int) {
		if d.len() != len(model) {
			t.Fatalf("step %d: len %d, model %d", step, d.len(), len(model))
		}
		for i, want := range model {
			if got := d.at(i).seq; got != want {
				t.Fatalf("step %d: at(%d) = %d, want %d", step, i, got, want)
			}
		}
	}
	var popped []uint64
	for step := 0; step < 20000; step++ {
		switch r := rng.Intn(10); {
		case r < 5: // bursts of pushes cross block boundaries
			for k := rng.Intn(300); k >= 0; k-- {
				d.pushBack(qentry{seq: next})
				model = append(model, next)
				next++
			}
		case r < 8 && len(model) > 0:
			for k := rng.Intn(300); k >= 0 && len(model) > 0; k-- {
				e := d.popFront()
				if e.seq != model[0] {
					t.Fatalf("step %d: popped %d, want %d", step, e.seq, model[0])
				}
				popped = append(popped, model[0])
				model = model[1:]
			}
		case r < 9 && len(popped) > 0: // requeue some taken entries
			i := rng.Intn(len(popped))
			s := popped[i]
			popped = append(popped[:i], popped[i+1:]...)
			d.insertOrdered(qentry{seq: s})
			j := sort.Search(len(model), func(k int) bool { return model[k] >= s })
			model = append(model[:j], append([]uint64{s}, model[j:]...)...)
		default:
			if rng.Intn(50) == 0 {
				es := d.drain()
				if len(es) != len(model) {
					t.Fatalf("drain returned %d, want %d", len(es), len(model))
				}
				model = nil
			}
		}
		if step%97 == 0 {
			check(step)
		}
	}
	check(-1)
}

func BenchmarkEntryDequePushPop(b *testing.B) {
	b.ReportAllocs()
	var d entryDeque
	for i := 0; i < b.N; i++ {
		d.pushBack(qentry{seq: uint64(i)})
		if d.len() > 5000 {
			d.popFront()
		}
	}
}

// A long queue costs one entry per message; keep it small (issue: 5M
// messages in one queue under 1 GiB).
func TestQueueEntrySize(t *testing.T) {
	if s := unsafe.Sizeof(qentry{}); s > 48 {
		t.Fatalf("qentry is %d bytes, want at most 48", s)
	}
}
