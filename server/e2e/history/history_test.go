package history

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

var t0 = time.Unix(1_800_000_000, 0)

// at is t0 plus ms milliseconds.
func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

// pub is a publish by publisher to queue "q", started at ms, confirmed 1 ms later.
func pub(publisher, id string, seq int64, ms int) Publish {
	return Publish{Publisher: publisher, Queue: "q", ID: id, Seq: seq, Start: at(ms), End: at(ms + 1), Outcome: Confirmed}
}

// del is a delivery of id from "q" to consumer on session, at ms.
func del(consumer, session, id string, redelivered bool, ms int) Delivery {
	return Delivery{Consumer: consumer, Session: session, Queue: "q", ID: id, Redelivered: redelivered, DeliveryCount: -1, At: at(ms)}
}

// ack is an ack of id written from ms to ms+1.
func ack(consumer, session, id string, ms int) Ack {
	return Ack{Consumer: consumer, Session: session, Queue: "q", ID: id, Start: at(ms), End: at(ms + 1)}
}

// counts are the figures a case expects: violations by name, and allowed
// duplicates.
type counts struct {
	lost, ackedThenRedelivered, unflagged, outOfOrder, phantom, reused int
	duplicates, afterInFlight, certain, inFlight                       int
}

func got(r Report) counts {
	return counts{r.Lost.Count, r.AckedThenRedelivered.Count, r.UnflaggedRedelivery.Count, r.OutOfOrder.Count,
		r.Phantom.Count, r.ReusedID.Count, r.Duplicates, r.AfterInFlightAck, r.AcksCertain, r.AcksInFlight}
}

func TestCheck(t *testing.T) {
	for _, c := range []struct {
		name string
		h    History
		want counts
		ok   bool
	}{
		{"lost: confirmed, never delivered", History{
			Publishes:  []Publish{pub("p", "m1", 1, 0), pub("p", "m2", 2, 1)},
			Deliveries: []Delivery{del("c", "c/1", "m1", false, 5)},
		}, counts{lost: 1}, false},
		{"acked then redelivered: a certain ack, then the message again", History{
			Publishes:  []Publish{pub("p", "m1", 1, 0)},
			Deliveries: []Delivery{del("c1", "c1/1", "m1", false, 10), del("c2", "c2/1", "m1", true, 20)},
			Acks:       []Ack{ack("c1", "c1/1", "m1", 11)},
			Syncs:      []Sync{{Session: "c1/1", Start: at(13), End: at(14)}},
		}, counts{ackedThenRedelivered: 1, duplicates: 1, certain: 1}, false},
		{"acked then redelivered: certain only later, still a violation", History{
			Publishes:  []Publish{pub("p", "m1", 1, 0)},
			Deliveries: []Delivery{del("c1", "c1/1", "m1", false, 10), del("c2", "c2/1", "m1", true, 20)},
			Acks:       []Ack{ack("c1", "c1/1", "m1", 11)},
			Syncs:      []Sync{{Session: "c1/1", Start: at(25), End: at(26)}},
		}, counts{ackedThenRedelivered: 1, duplicates: 1, certain: 1}, false},
		{"unflagged redelivery", History{
			Publishes:  []Publish{pub("p", "m1", 1, 0)},
			Deliveries: []Delivery{del("c1", "c1/1", "m1", false, 10), del("c1", "c1/2", "m1", false, 20)},
		}, counts{unflagged: 1, duplicates: 1}, false},
		{"out of order on one consumer", History{
			Publishes:  []Publish{pub("p", "m1", 1, 0), pub("p", "m2", 2, 1), pub("p", "m3", 3, 2)},
			Deliveries: []Delivery{del("c", "c/1", "m2", false, 10), del("c", "c/1", "m1", false, 11), del("c", "c/1", "m3", false, 12)},
		}, counts{outOfOrder: 1}, false},
		{"out of order across a consumer's sessions", History{
			Publishes:  []Publish{pub("p", "m1", 1, 0), pub("p", "m2", 2, 1)},
			Deliveries: []Delivery{del("c", "c/1", "m2", false, 10), del("c", "c/2", "m1", false, 30)},
		}, counts{outOfOrder: 1}, false},
		{"a publish of unknown outcome may land after the next channel's", History{
			Publishes: []Publish{pub("p", "m1", 1, 0),
				{Publisher: "p", Queue: "q", ID: "m2", Seq: 2, Start: at(1), End: at(3), Outcome: Unknown}, pub("p", "m3", 3, 4)},
			Deliveries: []Delivery{del("c", "c/1", "m1", false, 10), del("c", "c/1", "m3", false, 11), del("c", "c/1", "m2", false, 12)},
		}, counts{}, true},
		{"phantom", History{
			Publishes:  []Publish{pub("p", "m1", 1, 0)},
			Deliveries: []Delivery{del("c", "c/1", "m1", false, 10), del("c", "c/1", "ghost", false, 11)},
		}, counts{phantom: 1}, false},
		{"phantom: published to another queue", History{
			Publishes:  []Publish{pub("p", "m1", 1, 0)},
			Deliveries: []Delivery{del("c", "c/1", "m1", false, 10), {Consumer: "c", Queue: "other", ID: "m1", At: at(11)}},
		}, counts{phantom: 1}, false},
		{"reused id", History{
			Publishes:  []Publish{pub("p", "m1", 1, 0), pub("p", "m1", 2, 1)},
			Deliveries: []Delivery{del("c", "c/1", "m1", false, 10), del("c", "c/1", "m1", true, 11)},
		}, counts{reused: 1, duplicates: 1}, false},

		{"in-flight ack, then redelivered after a crash", History{
			Publishes:  []Publish{pub("p", "m1", 1, 0)},
			Deliveries: []Delivery{del("c1", "c1/1", "m1", false, 10), del("c2", "c2/2", "m1", true, 50)},
			Acks:       []Ack{ack("c1", "c1/1", "m1", 11), ack("c2", "c2/2", "m1", 51)},
			Syncs:      []Sync{{Session: "c2/2", Start: at(60), End: at(61)}},
		}, counts{duplicates: 1, afterInFlight: 1, certain: 1, inFlight: 1}, true},
		{"a round trip on another channel does not make an ack certain", History{
			Publishes:  []Publish{pub("p", "m1", 1, 0)},
			Deliveries: []Delivery{del("c1", "c1/1", "m1", false, 10), del("c2", "c2/1", "m1", true, 20)},
			Acks:       []Ack{ack("c1", "c1/1", "m1", 11)},
			Syncs:      []Sync{{Session: "c2/1", Start: at(13), End: at(14)}},
		}, counts{duplicates: 1, afterInFlight: 1, inFlight: 1}, true},
		{"a round trip begun before the ack was written does not make it certain", History{
			Publishes:  []Publish{pub("p", "m1", 1, 0)},
			Deliveries: []Delivery{del("c1", "c1/1", "m1", false, 10), del("c2", "c2/1", "m1", true, 20)},
			Acks:       []Ack{ack("c1", "c1/1", "m1", 11)},
			Syncs:      []Sync{{Session: "c1/1", Start: at(11), End: at(14)}},
		}, counts{duplicates: 1, afterInFlight: 1, inFlight: 1}, true},
		{"an ack whose write failed is in flight", History{
			Publishes:  []Publish{pub("p", "m1", 1, 0)},
			Deliveries: []Delivery{del("c1", "c1/1", "m1", false, 10), del("c2", "c2/1", "m1", true, 20)},
			Acks:       []Ack{{Consumer: "c1", Session: "c1/1", Queue: "q", ID: "m1", Start: at(11)}},
			Syncs:      []Sync{{Session: "c1/1", Start: at(13), End: at(14)}},
		}, counts{duplicates: 1, inFlight: 1}, true},
		{"redelivered after a crash, unacked, flagged", History{
			Publishes:  []Publish{pub("p", "m1", 1, 0), pub("p", "m2", 2, 1)},
			Deliveries: []Delivery{del("c", "c/1", "m1", false, 10), del("c", "c/1", "m2", false, 11), del("c", "c/2", "m1", true, 50), del("c", "c/2", "m2", true, 51)},
		}, counts{duplicates: 2}, true},
		{"competing consumers interleave", History{
			Publishes: []Publish{pub("p1", "a1", 1, 0), pub("p1", "a2", 2, 1), pub("p1", "a3", 3, 2), pub("p1", "a4", 4, 3),
				pub("p2", "b1", 1, 0), pub("p2", "b2", 2, 2)},
			Deliveries: []Delivery{del("c1", "c1/1", "a1", false, 10), del("c2", "c2/1", "a2", false, 10),
				del("c2", "c2/1", "b1", false, 11), del("c1", "c1/1", "a3", false, 12), del("c2", "c2/1", "a4", false, 12),
				del("c1", "c1/1", "b2", false, 13)},
		}, counts{}, true},
		{"a requeued message is left out of the order check", History{
			Publishes:  []Publish{pub("p", "m1", 1, 0), pub("p", "m2", 2, 1)},
			Deliveries: []Delivery{del("c2", "c2/1", "m1", false, 10), del("c1", "c1/1", "m2", false, 11), del("c1", "c1/1", "m1", true, 20)},
		}, counts{duplicates: 1}, true},
		{"a first delivery may be flagged", History{
			Publishes:  []Publish{pub("p", "m1", 1, 0), pub("p", "m2", 2, 1)},
			Deliveries: []Delivery{del("c", "c/2", "m2", true, 50), del("c", "c/2", "m1", true, 51)},
		}, counts{}, true},
		{"nacked and unknown publishes need not arrive", History{
			Publishes: []Publish{{Publisher: "p", Queue: "q", ID: "m1", Seq: 1, Start: at(0), End: at(1), Outcome: Nacked},
				{Publisher: "p", Queue: "q", ID: "m2", Seq: 2, Start: at(1), Outcome: Pending},
				{Publisher: "p", Queue: "q", ID: "m3", Seq: 3, Start: at(2), End: at(9), Outcome: Unknown}},
			Deliveries: []Delivery{del("c", "c/1", "m3", false, 10)},
		}, counts{}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := Check(c.h)
			if g := got(r); g != c.want || r.OK() != c.ok {
				t.Errorf("got %+v OK %t, want %+v OK %t\n%s", g, r.OK(), c.want, c.ok, r)
			}
			if !r.OK() && !strings.Contains(r.String(), "\n  ") {
				t.Errorf("a failing report gives no example:\n%s", r)
			}
		})
	}
}

// TestExamplesCapped: a thousand losses are counted, ten described.
func TestExamplesCapped(t *testing.T) {
	var h History
	for i := range 1000 {
		h.Publishes = append(h.Publishes, pub("p", fmt.Sprint("m", i), int64(i), i))
	}
	r := Check(h)
	if r.Lost.Count != 1000 || len(r.Lost.Examples) != maxExamples || !strings.HasSuffix(r.String(), "\n  ...") {
		t.Fatalf("lost %d with %d examples:\n%s", r.Lost.Count, len(r.Lost.Examples), r)
	}
}

// TestRecorder drives a Recorder from concurrent publishers and consumers,
// then replays an acked message: the check must catch it once the ack is
// certain, and not before.
func TestRecorder(t *testing.T) {
	rec := NewRecorder()
	const publishers, each = 4, 200
	var wg sync.WaitGroup
	for p := range publishers {
		wg.Go(func() {
			for s := range each {
				id := fmt.Sprintf("p%d-%d", p, s)
				op := rec.Publish(fmt.Sprint("p", p), "q", id, int64(s))
				op.End(Confirmed)
				// Each publisher's messages go to their own consumer, in order.
				d := Delivery{Consumer: fmt.Sprint("c", p), Session: fmt.Sprint("c", p, "/1"), Queue: "q", ID: id, DeliveryCount: -1}
				rec.Deliver(d)
				rec.Ack(d).End(nil)
			}
		})
	}
	wg.Wait()
	if n := rec.Undelivered(); n != 0 {
		t.Fatalf("%d undelivered", n)
	}
	r := rec.Check()
	if !r.OK() || r.Confirmed != publishers*each || r.Distinct != publishers*each || r.AcksInFlight != publishers*each {
		t.Fatalf("unexpected report:\n%s", r)
	}

	again := Delivery{Consumer: "c9", Session: "c9/1", Queue: "q", ID: "p0-0", Redelivered: true, DeliveryCount: 1}
	rec.Deliver(again)
	if r := rec.Check(); !r.OK() || r.AfterInFlightAck != 1 {
		t.Fatalf("a redelivery after an ack in flight must pass:\n%s", r)
	}
	start := time.Now()
	rec.RoundTrip("c0/1", start)
	rec.Deliver(again)
	r = rec.Check()
	// Both redeliveries came after c0's acks, which the round trip made certain.
	if r.OK() || r.AckedThenRedelivered.Count != 2 || r.AcksCertain != each {
		t.Fatalf("an acked message delivered again must fail:\n%s", r)
	}

	rec.Publish("p0", "q", "late", each).End(Confirmed)
	failed := rec.Publish("p0", "q", "failed", each+1)
	failed.End(Unknown)
	if n := rec.Undelivered(); n != 1 {
		t.Fatalf("Undelivered %d, want 1", n)
	}
	rec.Ack(Delivery{Consumer: "c0", Session: "c0/1", Queue: "q", ID: "late"}).End(errors.New("connection closed"))
	if h := rec.History(); !h.Acks[len(h.Acks)-1].End.IsZero() || h.Publishes[len(h.Publishes)-1].Outcome != Unknown {
		t.Fatalf("a failed ack or publish recorded as written: %+v %+v", h.Acks[len(h.Acks)-1], h.Publishes[len(h.Publishes)-1])
	}
}
