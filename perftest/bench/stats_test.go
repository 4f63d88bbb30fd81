package bench

import (
	"strings"
	"testing"
	"time"
)

func TestFormatRate(t *testing.T) {
	for in, want := range map[float64]string{0: "0", 0.5: "0.50", 0.123: "0.12", 5.55: "5.5", 9.99: "10.0", 10: "10", 12345.9: "12345"} {
		if got := FormatRate(in); got != want {
			t.Errorf("FormatRate(%v) = %q, want %q", in, got, want)
		}
	}
}

var lat = Latency{Min: 1, P50: 2, P75: 3, P95: 4, P99: 5, P999: 6, Max: 7}

func TestReportLineMatchesPerfTest(t *testing.T) {
	r := Reporter{ID: "test-114153-452", Published: true, Received: true}
	got := r.Line(1000*time.Millisecond, Rates{Sent: 18432.7, Received: 18412}, lat, Latency{})
	want := "id: test-114153-452, time 1.000 s, sent: 18432 msg/s, received: 18412 msg/s, " +
		"min/median/75th/95th/99th consumer latency: 1/2/3/4/5 µs"
	if got != want {
		t.Fatalf("got  %q\nwant %q", got, want)
	}

	r = Reporter{ID: "x", Published: true, Received: true, Returned: true, Confirmed: true, ConfirmLatency: true}
	got = r.Line(2500*time.Millisecond, Rates{Sent: 100, Returned: 0, Confirmed: 99, Nacked: 0.5, Received: 7}, lat, lat)
	want = "id: x, time 2.500 s, sent: 100 msg/s, returned: 0 msg/s, confirmed: 99 msg/s, nacked: 0.50 msg/s, " +
		"received: 7.0 msg/s, min/median/75th/95th/99th consumer latency: 1/2/3/4/5 µs, confirm latency: 1/2/3/4/5 µs"
	if got != want {
		t.Fatalf("got  %q\nwant %q", got, want)
	}

	// Producers only: no received rate, no latency section.
	r = Reporter{ID: "p", Published: true}
	if got := r.Line(time.Second, Rates{Sent: 2642}, lat, lat); got != "id: p, time 1.000 s, sent: 2642 msg/s" {
		t.Fatalf("producer-only line: %q", got)
	}
}

func TestSummary(t *testing.T) {
	r := Reporter{ID: "t", Published: true, Received: true, Confirmed: true, ConfirmLatency: true}
	res := &Result{SendRate: 6638.2, ReceiveRate: 0, LatencyUS: lat, ConfirmLatencyUS: &lat,
		Sent: 10, Confirmed: 9, Received: 10, LossChecked: true, Lost: 1, Duplicates: 2, OutOfOrder: 3, Unconfirmed: 1}
	got := r.Summary(res)
	for _, want := range []string{
		"id: t, sending rate avg: 6638 msg/s\n",
		"id: t, receiving rate avg: 0 msg/s\n",
		"id: t, consumer latency min/median/75th/95th/99th 1/2/3/4/5 µs\n",
		"id: t, confirm latency min/median/75th/95th/99th 1/2/3/4/5 µs\n",
		"id: t, sent: 10, confirmed: 9, nacked: 0, returned: 0, received: 10 msg\n",
		"id: t, lost: 1, duplicated: 2, out of order: 3, unconfirmed: 1\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("summary lacks %q:\n%s", want, got)
		}
	}
	res.LossChecked = false
	if !strings.Contains(r.Summary(res), "lost: not checked") {
		t.Error("unchecked loss not labelled")
	}
}

func TestLatencyOf(t *testing.T) {
	h := newHist()
	if LatencyOf(h) != (Latency{}) {
		t.Fatal("empty histogram must give zeros")
	}
	for i := int64(1); i <= 1000; i++ {
		_ = h.RecordValue(i)
	}
	l := LatencyOf(h)
	if l.Min != 1 || l.P50 != 500 || l.P99 != 990 || l.Max != 1000 || l.P999 != 999 {
		t.Fatalf("%+v", l)
	}
}
