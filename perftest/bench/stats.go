package bench

import (
	"fmt"
	"strings"
	"sync"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// Latencies are recorded in microseconds, from 1 µs to one hour, with three
// significant digits.
const (
	histMax     = int64(time.Hour / time.Microsecond)
	histSigFigs = 3
)

func newHist() *hdr.Histogram { return hdr.New(1, histMax, histSigFigs) }

// latencyRecorder is a pair of histograms (current interval, whole run)
// guarded by a mutex. Each producer and consumer owns one, so the lock is
// uncontended except when the reporter collects the interval histogram.
type latencyRecorder struct {
	mu       sync.Mutex
	interval *hdr.Histogram
	total    *hdr.Histogram
}

func newLatencyRecorder() *latencyRecorder {
	return &latencyRecorder{interval: newHist(), total: newHist()}
}

func clampLatency(us int64) int64 {
	if us < 0 {
		return 0 // clock skew between hosts
	}
	if us > histMax {
		return histMax
	}
	return us
}

// record adds one latency in microseconds.
func (l *latencyRecorder) record(us int64) {
	us = clampLatency(us)
	l.mu.Lock()
	_ = l.interval.RecordValue(us)
	_ = l.total.RecordValue(us)
	l.mu.Unlock()
}

// drainInterval merges the interval histogram into into and resets it.
func (l *latencyRecorder) drainInterval(into *hdr.Histogram) {
	l.mu.Lock()
	into.Merge(l.interval)
	l.interval.Reset()
	l.mu.Unlock()
}

// mergeTotal merges the whole-run histogram into into.
func (l *latencyRecorder) mergeTotal(into *hdr.Histogram) {
	l.mu.Lock()
	into.Merge(l.total)
	l.mu.Unlock()
}

// Latency summarises a latency distribution in microseconds.
type Latency struct {
	Min  int64 `json:"min"`
	P50  int64 `json:"p50"`
	P75  int64 `json:"p75"`
	P95  int64 `json:"p95"`
	P99  int64 `json:"p99"`
	P999 int64 `json:"p999"`
	Max  int64 `json:"max"`
}

// LatencyOf summarises h; an empty histogram gives all zeros.
func LatencyOf(h *hdr.Histogram) Latency {
	if h.TotalCount() == 0 {
		return Latency{}
	}
	return Latency{
		Min:  h.Min(),
		P50:  h.ValueAtQuantile(50),
		P75:  h.ValueAtQuantile(75),
		P95:  h.ValueAtQuantile(95),
		P99:  h.ValueAtQuantile(99),
		P999: h.ValueAtQuantile(99.9),
		Max:  h.Max(),
	}
}

// Result is the outcome of a run; with --json it is printed as JSON.
type Result struct {
	ID        string `json:"id"`
	Sent      int64  `json:"sent"`
	Confirmed int64  `json:"confirmed"`
	Nacked    int64  `json:"nacked"`
	Returned  int64  `json:"returned"`
	Received  int64  `json:"received"`
	// Requeued counts deliveries nacked back to their queue (--nack-every);
	// they are in Received too.
	Requeued    int64   `json:"requeued"`
	SendRate    float64 `json:"send_rate"`
	ReceiveRate float64 `json:"receive_rate"`
	LatencyUS   Latency `json:"latency_us"`
	// ConfirmLatencyUS is publish-to-confirm latency, set when confirms
	// with a window (-c N, N > 0) are used.
	ConfirmLatencyUS *Latency `json:"confirm_latency_us,omitempty"`
	Lost             int64    `json:"lost"`
	Duplicates       int64    `json:"duplicates"`
	OutOfOrder       int64    `json:"out_of_order"`
	// LossChecked tells whether Lost is meaningful: only count-bounded runs
	// (-C without -D) that ran to completion on a topology perftest declared
	// are checked for loss.
	LossChecked bool    `json:"loss_checked"`
	Unconfirmed int64   `json:"unconfirmed"`
	DurationS   float64 `json:"duration_s"`
	// PerftestCPUS is perftest's own CPU time (user plus system) in
	// seconds, from its start to the end of the run, including the
	// processes it started (--producer-processes, --consumer-processes).
	PerftestCPUS float64  `json:"perftest_cpu_s"`
	StopReason   string   `json:"stop_reason"`
	Errors       []string `json:"errors,omitempty"`

	// LatencyHist and ConfirmHist are the whole-run histograms, set only by
	// a child process (--producer-processes, --consumer-processes) for its
	// parent to merge.
	LatencyHist *hdr.Snapshot `json:"latency_hist,omitempty"`
	ConfirmHist *hdr.Snapshot `json:"confirm_hist,omitempty"`
}

// Output labels, as in PerfTest.
const (
	latencyHeader = "min/median/75th/95th/99th"
	rateLabel     = "msg/s"
)

// FormatRate formats a message rate the way PerfTest does: 0, two decimals
// below 1, one decimal below 10, else an integer.
func FormatRate(rate float64) string {
	switch {
	case rate == 0:
		return "0"
	case rate < 1:
		return fmt.Sprintf("%1.2f", rate)
	case rate < 10:
		return fmt.Sprintf("%1.1f", rate)
	default:
		return fmt.Sprintf("%d", int64(rate))
	}
}

// FormatLatency formats min/median/75th/95th/99th in µs, as PerfTest does.
func FormatLatency(l Latency) string {
	return fmt.Sprintf("%d/%d/%d/%d/%d µs", l.Min, l.P50, l.P75, l.P95, l.P99)
}

// Reporter formats PerfTest's report lines. Which rates appear depends on
// the run, as in PerfTest: sent with producers, returned with -f mandatory,
// confirmed/nacked with confirms, received and consumer latency with
// consumers, confirm latency with confirms.
type Reporter struct {
	ID             string
	Published      bool // producers > 0
	Received       bool // consumers > 0
	Returned       bool // mandatory flag
	Confirmed      bool // confirms enabled
	ConfirmLatency bool // confirm latency measured
}

// Rates are the per-second rates of one reporting interval.
type Rates struct {
	Sent, Returned, Confirmed, Nacked, Received float64
}

// Line returns one interval line, without the trailing newline:
//
//	id: test-114153-452, time 1.000 s, sent: 18432 msg/s, received: 18412 msg/s, min/median/75th/95th/99th consumer latency: 201/2384/3007/4012/5120 µs
func (r *Reporter) Line(elapsed time.Duration, rt Rates, consumer, confirm Latency) string {
	var b strings.Builder
	fmt.Fprintf(&b, "id: %s, time %.3f s", r.ID, elapsed.Seconds())
	rate := func(label string, v float64) {
		fmt.Fprintf(&b, ", %s: %s %s", label, FormatRate(v), rateLabel)
	}
	if r.Published {
		rate("sent", rt.Sent)
	}
	if r.Published && r.Returned {
		rate("returned", rt.Returned)
	}
	if r.Published && r.Confirmed {
		rate("confirmed", rt.Confirmed)
		rate("nacked", rt.Nacked)
	}
	if r.Received {
		rate("received", rt.Received)
	}
	showConfirm := r.Published && r.ConfirmLatency
	if r.Received || showConfirm {
		fmt.Fprintf(&b, ", %s ", latencyHeader)
	}
	if r.Received {
		b.WriteString("consumer latency: " + FormatLatency(consumer))
	}
	if r.Received && showConfirm {
		b.WriteString(", ")
	}
	if showConfirm {
		b.WriteString("confirm latency: " + FormatLatency(confirm))
	}
	return b.String()
}

// Summary returns the end-of-run lines, each ending in a newline: PerfTest's
// average rates and latencies, then perftest's own totals and checks.
func (r *Reporter) Summary(res *Result) string {
	var b strings.Builder
	p := "id: " + r.ID + ", "
	fmt.Fprintf(&b, "%ssending rate avg: %s %s\n", p, FormatRate(res.SendRate), rateLabel)
	fmt.Fprintf(&b, "%sreceiving rate avg: %s %s\n", p, FormatRate(res.ReceiveRate), rateLabel)
	if r.Received {
		fmt.Fprintf(&b, "%sconsumer latency %s %s\n", p, latencyHeader, FormatLatency(res.LatencyUS))
	}
	if r.Published && r.ConfirmLatency && res.ConfirmLatencyUS != nil {
		fmt.Fprintf(&b, "%sconfirm latency %s %s\n", p, latencyHeader, FormatLatency(*res.ConfirmLatencyUS))
	}
	fmt.Fprintf(&b, "%ssent: %d, confirmed: %d, nacked: %d, returned: %d, received: %d msg\n",
		p, res.Sent, res.Confirmed, res.Nacked, res.Returned, res.Received)
	lost := "not checked"
	if res.LossChecked {
		lost = fmt.Sprint(res.Lost)
	}
	fmt.Fprintf(&b, "%slost: %s, duplicated: %d, out of order: %d, unconfirmed: %d\n",
		p, lost, res.Duplicates, res.OutOfOrder, res.Unconfirmed)
	fmt.Fprintf(&b, "%sperftest CPU: %.2f s (user + system)\n", p, res.PerftestCPUS)
	return b.String()
}
