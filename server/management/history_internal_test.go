package management

import (
	"fmt"
	"testing"
	"time"
	"unsafe"

	"github.com/amqp-go/amqp-go/server/broker"
	"github.com/amqp-go/amqp-go/server/servertest"
)

// A followed queue's history is a fixed ring: its size is what a queue
// costs, whatever its traffic (README's management section quotes it).
func TestHistorySize(t *testing.T) {
	per := unsafe.Sizeof(followedHistory{})
	t.Logf("history per followed object: %d bytes; at most %d queues: %d KB", per, maxFollowed, per*maxFollowed/1024)
	if per > 14<<10 {
		t.Errorf("a queue's history is %d bytes", per)
	}
}

// BenchmarkHistoryRound10k is one sampling round over 10,000 idle queues
// (256 of them followed), what the history costs every StatsInterval.
func BenchmarkHistoryRound10k(b *testing.B) {
	srv, _ := servertest.StartServer(b, broker.Config{})
	v := srv.VHost("/")
	for i := range 10000 {
		if _, err := v.Apply(broker.DefChange{Kind: broker.QueueDeclare, Queue: fmt.Sprintf("q%05d", i)}); err != nil {
			b.Fatal(err)
		}
	}
	h := New(Options{Server: srv})
	defer h.Close()
	for b.Loop() {
		h.sampleHistory()
	}
	h.hist.mu.Lock()
	defer h.hist.mu.Unlock()
	b.ReportMetric(float64(len(h.hist.queues)), "followed")
}

// The followed set stays within maxFollowed: past it, a read gets the
// object's current values; a round drops what it no longer finds, and a
// read's object followIdle after the read.
func TestFollowedBounded(t *testing.T) {
	f := followed[int]{}
	now := time.Now()
	var w walk[int]
	w.was, w.room = f.keys(now)
	for k := range maxFollowed + 10 {
		w.take(k, func() series { return series{uint64(k)} })
	}
	f.update(now.UnixMilli(), &w)
	if len(f) != maxFollowed {
		t.Fatalf("%d followed after a round over %d objects", len(f), maxFollowed+10)
	}
	src := f.forRead(maxFollowed+5, series{7}, now)
	if _, ok := src.(*current); !ok || src.valueAt(0, 0) != 7 || len(f) != maxFollowed {
		t.Errorf("a read past the bound: %T %d, %d followed", src, src.valueAt(0, 0), len(f))
	}
	if v := f.forRead(3, series{99}, now).valueAt(now.UnixMilli(), 0); v != 3 {
		t.Errorf("a followed object's read shows %d, its sample 3", v)
	}
	// A round that finds only objects 0-9 drops the rest; a read then
	// follows a new one, for followIdle.
	w = walk[int]{}
	w.was, w.room = f.keys(now)
	for k := range 10 {
		w.take(k, func() series { return series{uint64(k)} })
	}
	f.update(now.UnixMilli(), &w)
	if len(f) != 10 {
		t.Fatalf("%d followed after objects went", len(f))
	}
	if _, ok := f.forRead(500, series{1}, now).(*history); !ok || len(f) != 11 {
		t.Fatalf("a read with room is not followed")
	}
	if was, _ := f.keys(now.Add(followIdle + time.Second)); was[500] || !was[0] {
		t.Errorf("after followIdle: %v", was)
	}
}

// An object not followed shows its current values over the range and
// keeps the rate its meter gave it; a followed one's rate is its samples'.
func TestStatsRangesNotFollowed(t *testing.T) {
	it := item{"message_stats": item{"publish": uint64(9), "publish_details": rate(2.5), "get_empty_details": rate(1)}}
	cur := current{sPublish: 9}
	now := time.UnixMilli(1700000002000)
	statsRanges(it, span{10000, 5000}, now, []source{&cur}, seriesNames[:firstLength])
	d := it["message_stats"].(item)["publish_details"].(rangeDetails)
	if d.Rate != 2.5 || len(d.Samples) != 3 || d.Samples[2].Sample != 9 || *d.AvgRate != 0 || *d.Avg != 9 {
		t.Errorf("not followed: %+v", d)
	}
	var h history
	h.push(1700000000000, series{sPublish: 4})
	h.push(1700000005000, series{sPublish: 9})
	it = item{"message_stats": item{"publish_details": rate(2.5)}}
	statsRanges(it, span{10000, 5000}, time.UnixMilli(1700000006000), []source{&h}, seriesNames[:firstLength])
	if d := it["message_stats"].(item)["publish_details"].(rangeDetails); d.Rate != 1 || d.Samples[0].Sample != 9 || d.Samples[1].Sample != 4 {
		t.Errorf("followed: %+v", d)
	}
}
