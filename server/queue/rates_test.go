package queue

import (
	"sync/atomic"
	"testing"
	"unsafe"
)

func TestMeter(t *testing.T) {
	var m Meter
	const s = int64(1e9)
	m.Start(10 * s)
	m.Sample(Stats{Published: 20, Delivered: 10, Redelivered: 2, Acked: 4}, 12*s)
	if got, want := m.Rates(), (Rates{Publish: 10, DeliverGet: 5, Redeliver: 1, Ack: 2}); got != want {
		t.Errorf("first interval: %+v, want %+v", got, want)
	}
	m.Sample(Stats{Published: 25, Delivered: 10, Redelivered: 2, Acked: 4}, 17*s)
	if got, want := m.Rates(), (Rates{Publish: 1}); got != want {
		t.Errorf("second interval: %+v, want %+v", got, want)
	}
	// Idle: back to 0. A counter that went back (a delivery given back
	// after a sample) counts as still, not as 2^64 messages.
	m.Sample(Stats{Published: 25, Delivered: 9, Redelivered: 2, Acked: 4}, 18*s)
	if got := m.Rates(); got != (Rates{}) {
		t.Errorf("idle: %+v", got)
	}
	// A clock that does not move changes nothing.
	m.Sample(Stats{Published: 99}, 18*s)
	if got := m.Rates(); got != (Rates{}) {
		t.Errorf("same instant: %+v", got)
	}
	var fresh Meter // never started: the first sample is the baseline
	fresh.Sample(Stats{Published: 5}, 3*s)
	if got := fresh.Rates(); got != (Rates{}) {
		t.Errorf("baseline: %+v", got)
	}
	if n := unsafe.Sizeof(m); n > 7*8 {
		t.Errorf("a Meter is %d bytes, more than seven words", n)
	}
}

// TestClassicRates: a classic queue's Info carries the rates over the last
// sampled interval, on the queue's clock; Head peeks without taking.
func TestClassicRates(t *testing.T) {
	var now atomic.Int64
	now.Store(1e9)
	q := NewClassic[int](Policy{MaxLength: -1, MaxLengthBytes: -1}, &testHost{}, now.Load)
	defer q.Close()
	if _, ok := q.Head(); ok {
		t.Error("head of an empty queue")
	}
	for i := range 6 {
		if _, _, err := q.Push(Message[int]{Handle: i, Size: 1}); err != nil {
			t.Fatal(err)
		}
	}
	_, tag, ok := q.Get(false)
	if !ok {
		t.Fatal("get")
	}
	q.Settle([]uint64{tag}, Ack)
	now.Add(2e9)
	q.SampleRates()
	if got, want := q.Info().Rates, (Rates{Publish: 3, DeliverGet: 0.5, Ack: 0.5}); got != want {
		t.Errorf("rates %+v, want %+v", got, want)
	}
	if h, ok := q.Head(); !ok || h.Handle != 1 {
		t.Errorf("head %v %v, want 1", h.Handle, ok)
	}
	if in := q.Info(); in.Ready != 5 {
		t.Errorf("Head took a message: %d ready", in.Ready)
	}
	now.Add(1e9)
	q.SampleRates()
	if got := q.Info().Rates; got != (Rates{}) {
		t.Errorf("idle rates %+v", got)
	}
}
