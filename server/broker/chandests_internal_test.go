package broker

import (
	"fmt"
	"testing"
)

// A channel's entries for deleted exchanges and queues are dropped when
// the maps have doubled, the last exchange's cache with them, and the live
// ones keep their counts; a queue consumed but not delivered from is not
// listed.
func TestChanDestsPrune(t *testing.T) {
	ch := &channel{}
	d := &ch.dests
	xs := make([]*Exchange, 12)
	for i := range xs {
		xs[i] = &Exchange{Name: fmt.Sprintf("x%02d", i)}
		d.exchange(xs[i]).publish.Add(1)
	}
	qs := make([]*Queue, 4)
	for i := range qs {
		qs[i] = &Queue{Name: fmt.Sprintf("q%d", i)}
		d.queue(qs[i]).deliver.Add(1)
	}
	for _, x := range xs[6:] {
		x.removed.Store(true)
	}
	qs[0].gone.Store(true)
	d.queue(&Queue{Name: "idle"}) // the 17th entry: a prune first
	if len(d.xs) != 6 || len(d.qs) != 4 || d.lastX != nil {
		t.Fatalf("after the prune: %d exchanges, %d queues, last %v", len(d.xs), len(d.qs), d.lastX)
	}
	if e := d.exchange(xs[0]); e.publish.Load() != 1 {
		t.Errorf("x00 publish %d", e.publish.Load())
	}
	gotX, gotQ := (&ChannelInfo{ch: ch}).Destinations()
	if len(gotX) != 6 || gotX[0].Exchange != xs[0] || len(gotQ) != 3 || gotQ[0].Queue != qs[1] || gotQ[0].Deliver != 1 {
		t.Errorf("listed %v %v", gotX, gotQ)
	}
}

// What the per-destination counters add to the message path, alone: a
// publish (the exchange's entry through the last one used, twice, as
// contentDone and route find it, and an add), a delivered batch's adds,
// and an ack of 50 consumer deliveries. Compare with BenchmarkPublishDeliver's
// ns/op, a message's whole trip.
//
//	go test -run '^$' -bench ChanDests ./server/broker
func BenchmarkChanDests(b *testing.B) {
	ch := &channel{}
	x := &Exchange{Name: "x"}
	q := &Queue{Name: "q"}
	c := &consumer{q: q, dests: ch.dests.queue(q)}
	b.Run("publish", func(b *testing.B) {
		for range b.N {
			ch.dests.exchange(x).publish.Add(1)
			_ = ch.dests.exchange(x)
		}
	})
	b.Run("deliver", func(b *testing.B) {
		for range b.N {
			c.dests.delivered(false, 1, 0)
		}
	})
	es := make([]unackedEntry, 50)
	for i := range es {
		es[i] = unackedEntry{q: q, c: c}
	}
	b.Run("ack-50", func(b *testing.B) {
		for range b.N {
			ch.dests.acked(es)
		}
	})
}
