// Package history records what AMQP clients did and saw during a test
// (publishes with their confirms, deliveries, acks, each with start and end
// times) and checks the history against the broker's guarantees once the
// test is over. The crash tests in server/e2e record into it; the cluster's
// leader-loss tests are meant to as well.
//
// Clients call a Recorder around each operation; times come from
// time.Now(), whose monotonic reading orders events of one process
// whatever the wall clock does. Check then looks for:
//
//   - Lost: a publish confirmed (basic.ack from the broker) but never
//     delivered from its queue. A confirm promises the message is safe.
//   - Acked then redelivered: a delivery received after a certain ack of
//     the same message had been written. An ack is certain when a later
//     round trip on the same channel succeeded (see RoundTrip): the broker
//     handles a channel's methods in order, so it took the ack before it
//     answered. A delivery after that is either sent after the broker took
//     the ack, or sent while the message was still out to the acking
//     channel; AMQP allows neither (a message is with one channel at a
//     time, and a requeue would have made the ack fail and the channel
//     close, so no round trip would have succeeded after it). A delivery
//     after an ack that is not certain (in flight: its connection died
//     before a round trip proved it) is counted, not a violation.
//   - Unflagged redelivery: a second or later delivery of a message without
//     the redelivered flag. A message that comes back (after a crash, a
//     requeue, a lost connection) must come back flagged; a first delivery
//     may be flagged though (the broker may not know it never went out).
//   - Out of order: for one consumer, one queue and one publisher, the
//     deliveries of messages never redelivered arriving out of publisher
//     sequence. A queue is FIFO and one channel's publishes enter it in
//     order; between two consumers a message can only overtake another by
//     being requeued, which the redelivered flag or a second delivery
//     shows, so such messages are left out. This assumes plain queues (no
//     priorities, no TTL or dead-letter reordering) and that a publisher's
//     sequence follows the order it issued publishes in, across its
//     reconnections, one channel at a time. Publishes of unknown outcome
//     are left out too: one made on a channel that died may enter the
//     queue after those the publisher made next, on its next channel.
//   - Phantom: a delivery of a message never published to that queue.
//   - Reused id: two publishes with one message id to one queue; the other
//     checks cannot tell their deliveries apart, so the history is not
//     judged sound. A client that retries a publish must use a new id.
//
// Nacked and unknown publishes (the connection died before the confirm)
// may or may not be delivered; they are counted only.
//
// A certain ack is one the broker took. This broker also has it on disk
// by then: it answers a synchronous method only once the acks before it on
// the channel are fsynced (RabbitMQ promises no more than that it took
// them). So the kill loop in server/e2e records round trips throughout (a
// basic.qos every few acks, and the consumers' clean closes at the end),
// and a message that comes back after a kill -9 following a certain ack is
// a violation.
package history

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// Outcome is how a publish ended.
type Outcome int

const (
	// Pending: the publish has not ended (Check treats it as Unknown).
	Pending Outcome = iota
	// Confirmed: the broker sent basic.ack for it.
	Confirmed
	// Nacked: the broker sent basic.nack for it.
	Nacked
	// Unknown: the connection died, or the publish failed, before a
	// confirm arrived.
	Unknown
)

func (o Outcome) String() string {
	switch o {
	case Confirmed:
		return "confirmed"
	case Nacked:
		return "nacked"
	case Unknown:
		return "unknown"
	}
	return "pending"
}

// Publish is one basic.publish and its confirm.
type Publish struct {
	Publisher string
	Queue     string // where it is routed
	ID        string // unique per publish
	Seq       int64  // increasing per publisher, in publish order
	Start     time.Time
	End       time.Time // when the outcome was known
	Outcome   Outcome
}

// Delivery is one message a consumer received (basic.deliver or
// basic.get-ok).
type Delivery struct {
	Consumer    string
	Session     string // the channel it came on (see RoundTrip)
	Queue       string
	ID          string
	Redelivered bool
	Tag         uint64
	// DeliveryCount is the x-delivery-count header, -1 without one.
	DeliveryCount int64
	At            time.Time
}

// Ack is one basic.ack from a consumer (or a no-ack get, settled when it
// is sent).
type Ack struct {
	Consumer string
	Session  string
	Queue    string
	ID       string
	Tag      uint64
	Start    time.Time
	// End is when the ack was written without error; zero if the write
	// failed (the ack may or may not have reached the broker).
	End time.Time
}

// Sync is a round trip on a channel that succeeded: a request sent at
// Start or later and its answer received by End (basic.qos-ok,
// channel.close-ok, ...). It makes certain every ack on Session written
// before Start.
type Sync struct {
	Session    string
	Start, End time.Time
}

// History is everything recorded; Check judges it. Tests may build one by
// hand.
type History struct {
	Publishes  []Publish
	Deliveries []Delivery
	Acks       []Ack
	Syncs      []Sync
}

// Recorder collects a History from concurrent clients.
type Recorder struct {
	mu sync.Mutex
	h  History
	// delivered counts deliveries per message, for Undelivered.
	delivered map[key]int
}

type key struct{ queue, id string }

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder { return &Recorder{delivered: map[key]int{}} }

// PublishOp is a publish in progress.
type PublishOp struct {
	r *Recorder
	i int
}

// Publish records the start of a publish; call End on the result once its
// outcome is known.
func (r *Recorder) Publish(publisher, queue, id string, seq int64) PublishOp {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.h.Publishes = append(r.h.Publishes, Publish{Publisher: publisher, Queue: queue, ID: id, Seq: seq, Start: now})
	return PublishOp{r, len(r.h.Publishes) - 1}
}

// End records the publish's outcome.
func (p PublishOp) End(o Outcome) {
	now := time.Now()
	p.r.mu.Lock()
	defer p.r.mu.Unlock()
	p.r.h.Publishes[p.i].End, p.r.h.Publishes[p.i].Outcome = now, o
}

// Deliver records a delivery received now (d.At is set if zero).
func (r *Recorder) Deliver(d Delivery) {
	if d.At.IsZero() {
		d.At = time.Now()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.h.Deliveries = append(r.h.Deliveries, d)
	r.delivered[key{d.Queue, d.ID}]++
}

// AckOp is an ack being written.
type AckOp struct {
	r *Recorder
	i int
}

// Ack records the start of an ack of the delivery d; call End with the
// write's error.
func (r *Recorder) Ack(d Delivery) AckOp {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.h.Acks = append(r.h.Acks, Ack{Consumer: d.Consumer, Session: d.Session, Queue: d.Queue, ID: d.ID, Tag: d.Tag, Start: now})
	return AckOp{r, len(r.h.Acks) - 1}
}

// End records that the ack was written (err nil) or not.
func (a AckOp) End(err error) {
	if err != nil {
		return
	}
	now := time.Now()
	a.r.mu.Lock()
	defer a.r.mu.Unlock()
	a.r.h.Acks[a.i].End = now
}

// RoundTrip records that a request sent on session at start or later was
// answered now.
func (r *Recorder) RoundTrip(session string, start time.Time) {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.h.Syncs = append(r.h.Syncs, Sync{Session: session, Start: start, End: now})
}

// Undelivered counts the confirmed publishes not delivered yet: a test
// waits for it to reach 0 before it stops its consumers.
func (r *Recorder) Undelivered() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, p := range r.h.Publishes {
		if p.Outcome == Confirmed && r.delivered[key{p.Queue, p.ID}] == 0 {
			n++
		}
	}
	return n
}

// History returns a copy of what was recorded so far.
func (r *Recorder) History() History {
	r.mu.Lock()
	defer r.mu.Unlock()
	return History{Publishes: slices.Clone(r.h.Publishes), Deliveries: slices.Clone(r.h.Deliveries),
		Acks: slices.Clone(r.h.Acks), Syncs: slices.Clone(r.h.Syncs)}
}

// Check judges what was recorded so far.
func (r *Recorder) Check() Report { return Check(r.History()) }

// maxExamples caps the examples kept per violation.
const maxExamples = 10

// Violation counts one kind of violation and describes the first few.
type Violation struct {
	Count    int
	Examples []string
}

func (v *Violation) add(format string, args ...any) {
	v.Count++
	if len(v.Examples) < maxExamples {
		v.Examples = append(v.Examples, fmt.Sprintf(format, args...))
	}
}

// Report is what Check found.
type Report struct {
	Published, Confirmed, Nacked, Unknown int
	// Deliveries counts all deliveries, Distinct the messages delivered.
	Deliveries, Distinct int
	// AcksCertain and AcksInFlight split the acks written (see Sync).
	AcksCertain, AcksInFlight int
	// Duplicates counts deliveries after a message's first; of them,
	// AfterInFlightAck came after an ack of it that was in flight.
	Duplicates, AfterInFlightAck int

	Lost, AckedThenRedelivered, UnflaggedRedelivery, OutOfOrder, Phantom, ReusedID Violation
}

// OK reports whether the history breaks none of the guarantees.
func (r Report) OK() bool {
	for _, v := range r.violations() {
		if v.v.Count > 0 {
			return false
		}
	}
	return true
}

type namedViolation struct {
	name string
	v    Violation
}

func (r Report) violations() []namedViolation {
	return []namedViolation{{"lost", r.Lost}, {"acked then redelivered", r.AckedThenRedelivered},
		{"unflagged redelivery", r.UnflaggedRedelivery}, {"out of order", r.OutOfOrder},
		{"phantom", r.Phantom}, {"reused id", r.ReusedID}}
}

// String gives a one-line summary, then a line per violation found with
// its examples.
func (r Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "history: published %d (confirmed %d, nacked %d, unknown %d), deliveries %d of %d messages, "+
		"duplicates %d (%d after an ack in flight), acks %d certain and %d in flight; lost %d, acked then redelivered %d, "+
		"unflagged redelivery %d, out of order %d, phantom %d, reused id %d",
		r.Published, r.Confirmed, r.Nacked, r.Unknown, r.Deliveries, r.Distinct,
		r.Duplicates, r.AfterInFlightAck, r.AcksCertain, r.AcksInFlight,
		r.Lost.Count, r.AckedThenRedelivered.Count, r.UnflaggedRedelivery.Count, r.OutOfOrder.Count,
		r.Phantom.Count, r.ReusedID.Count)
	for _, v := range r.violations() {
		if v.v.Count == 0 {
			continue
		}
		fmt.Fprintf(&b, "\n%s: %d", v.name, v.v.Count)
		for _, e := range v.v.Examples {
			fmt.Fprintf(&b, "\n  %s", e)
		}
		if v.v.Count > len(v.v.Examples) {
			fmt.Fprintf(&b, "\n  ...")
		}
	}
	return b.String()
}

// Check judges h (see the package doc for what each check means).
func Check(h History) Report {
	var r Report
	published := map[key]Publish{}
	var unique []Publish
	for _, p := range h.Publishes {
		k := key{p.Queue, p.ID}
		if _, dup := published[k]; dup {
			r.ReusedID.add("%s on %s published twice", p.ID, p.Queue)
			continue
		}
		published[k] = p
		unique = append(unique, p)
		r.Published++
		switch p.Outcome {
		case Confirmed:
			r.Confirmed++
		case Nacked:
			r.Nacked++
		default:
			r.Unknown++
		}
	}

	// Deliveries in the order they were received.
	ds := slices.Clone(h.Deliveries)
	slices.SortStableFunc(ds, func(a, b Delivery) int { return a.At.Compare(b.At) })
	acks := certainty(h, &r)
	seen := map[key]int{}
	for _, d := range ds {
		k := key{d.Queue, d.ID}
		r.Deliveries++
		if _, ok := published[k]; !ok {
			r.Phantom.add("%s on %s delivered to %s, never published", d.ID, d.Queue, d.Consumer)
		}
		n := seen[k]
		seen[k]++
		if n == 0 {
			r.Distinct++
		} else {
			r.Duplicates++
			if !d.Redelivered {
				r.UnflaggedRedelivery.add("%s on %s delivered to %s (delivery %d of it) without the redelivered flag (tag %d, x-delivery-count %d)",
					d.ID, d.Queue, d.Consumer, n+1, d.Tag, d.DeliveryCount)
			}
		}
		if a, certain, ok := ackBefore(acks[k], d.At); ok {
			if certain {
				r.AckedThenRedelivered.add("%s on %s delivered to %s %v after %s's certain ack (redelivered %t)",
					d.ID, d.Queue, d.Consumer, d.At.Sub(a.End), a.Consumer, d.Redelivered)
			} else {
				r.AfterInFlightAck++
			}
		}
	}
	for _, p := range unique {
		if p.Outcome == Confirmed && seen[key{p.Queue, p.ID}] == 0 {
			r.Lost.add("%s (publisher %s seq %d) on %s published at %s, confirmed %v after, never delivered",
				p.ID, p.Publisher, p.Seq, p.Queue, p.Start.UTC().Format("15:04:05.000000"), p.End.Sub(p.Start))
		}
	}
	checkOrder(ds, published, seen, &r)
	return r
}

// timedAck is an ack written and whether it is certain.
type timedAck struct {
	Ack
	certain bool
}

// certainty sorts the acks written by message and counts the certain ones.
func certainty(h History, r *Report) map[key][]timedAck {
	syncs := map[string][]time.Time{} // starts per session
	for _, s := range h.Syncs {
		syncs[s.Session] = append(syncs[s.Session], s.Start)
	}
	out := map[key][]timedAck{}
	for _, a := range h.Acks {
		if a.End.IsZero() {
			r.AcksInFlight++
			continue
		}
		certain := slices.ContainsFunc(syncs[a.Session], func(start time.Time) bool { return !start.Before(a.End) })
		if certain {
			r.AcksCertain++
		} else {
			r.AcksInFlight++
		}
		k := key{a.Queue, a.ID}
		out[k] = append(out[k], timedAck{a, certain})
	}
	return out
}

// ackBefore finds an ack in acks written before at, a certain one if there
// is one.
func ackBefore(acks []timedAck, at time.Time) (Ack, bool, bool) {
	var found *timedAck
	for i := range acks {
		if acks[i].End.Before(at) && (found == nil || acks[i].certain && !found.certain) {
			found = &acks[i]
		}
	}
	if found == nil {
		return Ack{}, false, false
	}
	return found.Ack, found.certain, true
}

// checkOrder checks, per consumer, queue and publisher, that the messages
// never redelivered arrive in publisher sequence. ds is in arrival order.
func checkOrder(ds []Delivery, published map[key]Publish, seen map[key]int, r *Report) {
	requeued := map[key]bool{}
	for _, d := range ds {
		if d.Redelivered {
			requeued[key{d.Queue, d.ID}] = true
		}
	}
	type stream struct{ consumer, queue, publisher string }
	last := map[stream]Publish{}
	for _, d := range ds {
		k := key{d.Queue, d.ID}
		p, ok := published[k]
		// A publish whose outcome the publisher never learnt (its
		// connection went) may still enter the queue after the
		// publishes the publisher made next, on another channel: AMQP
		// orders one channel's publishes only.
		if !ok || requeued[k] || seen[k] > 1 || p.Outcome == Unknown || p.Outcome == Pending {
			continue
		}
		s := stream{d.Consumer, d.Queue, p.Publisher}
		if prev, ok := last[s]; ok && p.Seq < prev.Seq {
			r.OutOfOrder.add("%s got %s (seq %d) after %s (seq %d) from %s on %s",
				d.Consumer, p.ID, p.Seq, prev.ID, prev.Seq, p.Publisher, d.Queue)
			continue
		}
		last[s] = p
	}
}
