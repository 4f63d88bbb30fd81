package management

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/amqp-go/amqp-go/server/broker"
)

// The series a history keeps, one value each per sample: the
// message_stats counters RabbitMQ samples for queues and the overview, and
// the queue lengths (messages_*).
const (
	sPublish = iota
	sDeliverGet
	sDeliver
	sDeliverNoAck
	sGet
	sGetNoAck
	sGetEmpty
	sRedeliver
	sAck
	sConfirm // the overview's only (the server's counter)
	sMessages
	sReady
	sUnacked
	nSeries
)

// firstLength is the first of the lengths series (lengths_age governs
// them; msg_rates_age the counters before it).
const firstLength = sMessages

var seriesNames = [nSeries]string{"publish", "deliver_get", "deliver", "deliver_no_ack", "get", "get_no_ack",
	"get_empty", "redeliver", "ack", "confirm", "messages", "messages_ready", "messages_unacknowledged"}

// histLen is how many samples a history keeps: RabbitMQ's first retention
// tier (600 s at collect_statistics_interval 5 s), plus the one at its
// start.
const histLen = 121

// maxQueueHistories bounds the queues with a history of their own: while
// there is room, a sampling round follows the queues it finds (so that a
// small broker's queue pages have history at once), and a queue read with
// a *_age parameter is followed from that read; a queue loses its history
// when deleted, and one followed on a read queueHistoryIdle after the last
// such read. With 13.6 KB per history, this caps them at about 3.5 MB
// whatever the number of queues.
const (
	maxQueueHistories = 256
	queueHistoryIdle  = 10 * time.Minute
)

// maxRangePoints bounds a reply's samples per series (age/incr+1).
const maxRangePoints = 1000

// series is one sample of every series.
type series [nSeries]uint64

// history is a ring of the last histLen samples of one object, taken once
// per statistics interval by the sampling round: about 13.6 KB, whatever
// the traffic, and nothing per message.
type history struct {
	n, head int // samples held; index of the newest
	at      [histLen]int64
	v       [histLen]series
}

func (h *history) push(at int64, v series) {
	h.head = (h.head + 1) % histLen
	h.at[h.head], h.v[h.head] = at, v
	h.n = min(h.n+1, histLen)
}

// valueAt is the series' value at t (ms): the newest sample taken at or
// before t, else the oldest one (an object followed only since later is
// taken as having been still before); ok false if h holds none.
func (h *history) valueAt(t int64, s int) (uint64, bool) {
	if h == nil || h.n == 0 {
		return 0, false
	}
	for i := 0; i < h.n; i++ {
		j := (h.head - i + histLen) % histLen
		if h.at[j] <= t || i == h.n-1 {
			return h.v[j][s], true
		}
	}
	return 0, false
}

// histories are the handler's sampled histories: one per vhost (the
// overview's, summed over the vhosts a user sees), one for the server's
// own counters, and one per queue asked for with a *_age parameter. A
// round (a time.AfterFunc re-armed each StatsInterval, none between
// rounds) samples them all; mu, a leaf, is held only while rings are
// read and written, never with a broker lock or across an HTTP write.
type histories struct {
	start  sync.Once
	mu     sync.Mutex
	timer  *time.Timer
	closed bool
	vhosts map[string]*history
	server history
	queues map[*broker.Queue]*queueHistory
}

type queueHistory struct {
	history
	asked time.Time // zero: followed by a round, kept until deleted
}

// startHistory arms the sampling round once; the first sample is taken
// at once, so that history starts with the handler.
func (h *Handler) startHistory() {
	h.hist.start.Do(func() {
		h.hist.mu.Lock()
		h.hist.vhosts = map[string]*history{}
		h.hist.queues = map[*broker.Queue]*queueHistory{}
		h.hist.timer = time.AfterFunc(0, h.sampleHistory)
		h.hist.mu.Unlock()
	})
}

// Close stops the sampling of histories (Service.Close calls it).
func (h *Handler) Close() {
	h.hist.mu.Lock()
	defer h.hist.mu.Unlock()
	h.hist.closed = true
	if h.hist.timer != nil {
		h.hist.timer.Stop()
	}
}

// sampleHistory is a round: every vhost's queue totals, the server's
// counters and each followed queue are sampled, then the timer re-armed.
// Its cost is a Stats call per queue, as a listing's.
func (h *Handler) sampleHistory() {
	now := time.Now()
	at := now.UnixMilli()
	// The followed queues, copied so that no broker call runs under mu.
	h.hist.mu.Lock()
	followed := make(map[*broker.Queue]bool, len(h.hist.queues))
	for q, qh := range h.hist.queues {
		if q.Deleted() || (!qh.asked.IsZero() && now.Sub(qh.asked) > queueHistoryIdle) {
			delete(h.hist.queues, q)
			continue
		}
		followed[q] = true
	}
	room := maxQueueHistories - len(followed)
	h.hist.mu.Unlock()

	vhosts := map[string]series{}
	var qs []*broker.Queue
	var qv []series
	for _, v := range h.srv.VHosts() {
		var t totals
		for _, q := range v.Queues() {
			st := q.Stats()
			t.add(st)
			if followed[q] || room > 0 {
				if !followed[q] {
					room--
				}
				qs, qv = append(qs, q), append(qv, queueSeries(st))
			}
		}
		vhosts[v.Name()] = t.series()
	}
	var server series
	server[sConfirm] = h.srv.Stats().MessagesConfirmed

	h.hist.mu.Lock()
	defer h.hist.mu.Unlock()
	if h.hist.closed {
		return
	}
	for name := range h.hist.vhosts {
		if _, ok := vhosts[name]; !ok {
			delete(h.hist.vhosts, name)
		}
	}
	for name, s := range vhosts {
		vh := h.hist.vhosts[name]
		if vh == nil {
			vh = &history{}
			h.hist.vhosts[name] = vh
		}
		vh.push(at, s)
	}
	h.hist.server.push(at, server)
	for i, q := range qs {
		qh := h.hist.queues[q]
		if qh == nil {
			if followed[q] || len(h.hist.queues) >= maxQueueHistories {
				continue // deleted meanwhile, or the room taken by a read
			}
			qh = &queueHistory{}
			h.hist.queues[q] = qh
		}
		qh.push(at, qv[i])
	}
	h.hist.timer.Reset(h.srv.StatsInterval())
}

// queueSeries is one queue's sample.
func queueSeries(st broker.QueueStats) series {
	var t totals
	t.add(st)
	return t.series()
}

func (t *totals) series() series {
	var s series
	s[sPublish], s[sDeliverGet] = t.c.pub, t.c.del
	s[sDeliver] = t.c.del - t.c.got - t.c.delNoAck
	s[sDeliverNoAck], s[sGet], s[sGetNoAck] = t.c.delNoAck, t.c.got-t.c.gotNoAck, t.c.gotNoAck
	s[sGetEmpty], s[sRedeliver], s[sAck] = t.c.getEmpty, t.c.redel, t.c.ack
	s[sMessages], s[sReady], s[sUnacked] = uint64(t.ready+t.unacked), uint64(t.ready), uint64(t.unacked)
	return s
}

// span is one range parameter pair: age and incr, in ms.
type span struct{ age, incr int64 }

// ranges are a request's range parameters: RabbitMQ's lengths_age and
// lengths_incr, msg_rates_age and msg_rates_incr (a zero span: not asked).
type ranges struct{ lengths, msgRates span }

func (r ranges) any() bool { return r.lengths.incr > 0 || r.msgRates.incr > 0 }

// parseRanges reads the range parameters; a pair with only one of its
// halves is ignored, as RabbitMQ ignores it.
func parseRanges(r *http.Request) (ranges, error) {
	var out ranges
	if r.URL.RawQuery == "" {
		return out, nil
	}
	q := r.URL.Query()
	for _, p := range []struct {
		name string
		to   *span
	}{{"lengths", &out.lengths}, {"msg_rates", &out.msgRates}} {
		age, incr := q.Get(p.name+"_age"), q.Get(p.name+"_incr")
		if age == "" || incr == "" {
			continue
		}
		a, err1 := strconv.ParseInt(age, 10, 64)
		i, err2 := strconv.ParseInt(incr, 10, 64)
		if err1 != nil || err2 != nil || a < 0 || i <= 0 {
			return out, errBadRequest("invalid " + p.name + "_age or " + p.name + "_incr")
		}
		if a/i+1 > maxRangePoints {
			return out, errBadRequest(p.name + "_age / " + p.name + "_incr is over " + strconv.Itoa(maxRangePoints-1))
		}
		*p.to = span{a * 1000, i * 1000}
	}
	return out, nil
}

// point is one of a *_details object's samples.
type point struct {
	Sample    uint64 `json:"sample"`
	Timestamp int64  `json:"timestamp"`
}

// rangeDetails is a *_details object with samples, as RabbitMQ gives it
// when asked for a range: the samples newest first, one per incr back
// over age, the rate between the newest two, avg_rate over the range and
// avg the samples' mean (these two only with two samples or more).
type rangeDetails struct {
	Rate    float64  `json:"rate"`
	Samples []point  `json:"samples"`
	AvgRate *float64 `json:"avg_rate,omitempty"`
	Avg     *float64 `json:"avg,omitempty"`
}

// sampled builds the details of series s over sp from value: the sum of
// the series over the given histories at a time.
func sampled(sp span, now time.Time, value func(t int64) uint64) rangeDetails {
	last := now.UnixMilli() / sp.incr * sp.incr
	n := int(sp.age/sp.incr) + 1
	d := rangeDetails{Samples: make([]point, n)}
	var sum float64
	for i := range d.Samples {
		t := last - int64(i)*sp.incr
		v := value(t)
		d.Samples[i] = point{v, t}
		sum += float64(v)
	}
	if n >= 2 {
		newest, next, oldest := d.Samples[0], d.Samples[1], d.Samples[n-1]
		d.Rate = ratePerSec(newest, next)
		avgRate, avg := ratePerSec(newest, oldest), sum/float64(n)
		d.AvgRate, d.Avg = &avgRate, &avg
	}
	return d
}

// ratePerSec is the change between two samples per second (negative for
// a length that fell, as RabbitMQ's).
func ratePerSec(newer, older point) float64 {
	dt := newer.Timestamp - older.Timestamp
	if dt <= 0 {
		return 0
	}
	return (float64(newer.Sample) - float64(older.Sample)) * 1000 / float64(dt)
}

// withRanges sets the *_details of it (an object with message_stats and
// lengths at its top, as a queue, or under queue_totals, as the overview)
// from the histories hs, summed, per the ranges.
func withRanges(it, lengths item, rg ranges, now time.Time, hs []*history) {
	value := func(s int) func(t int64) uint64 {
		return func(t int64) uint64 {
			var sum uint64
			for _, h := range hs {
				v, _ := h.valueAt(t, s)
				sum += v
			}
			return sum
		}
	}
	if rg.lengths.incr > 0 {
		for s := firstLength; s < nSeries; s++ {
			lengths[seriesNames[s]+"_details"] = sampled(rg.lengths, now, value(s))
		}
	}
	if rg.msgRates.incr > 0 {
		ms, _ := it["message_stats"].(item)
		for k, v := range ms {
			if _, ok := v.(details); !ok {
				continue
			}
			name := k[:len(k)-len("_details")]
			s := seriesIndex(name)
			if s < 0 { // a counter kept at 0 here (drop_unroutable, disk_reads, …)
				ms[k] = sampled(rg.msgRates, now, func(int64) uint64 { return 0 })
				continue
			}
			ms[k] = sampled(rg.msgRates, now, value(s))
		}
		if churn, ok := it["churn_rates"].(item); ok {
			for k, v := range churn {
				if _, ok := v.(details); ok {
					churn[k] = sampled(rg.msgRates, now, func(int64) uint64 { return 0 })
				}
			}
		}
	}
}

func seriesIndex(name string) int {
	for i, n := range seriesNames[:firstLength] {
		if n == name {
			return i
		}
	}
	return -1
}

// overviewRanges sets the overview's details per rg from the histories
// of the vhosts it sums and the server's.
func (h *Handler) overviewRanges(it, queueTotals item, rg ranges, vhosts []*broker.VHost) {
	h.hist.mu.Lock()
	defer h.hist.mu.Unlock()
	hs := []*history{&h.hist.server}
	for _, v := range vhosts {
		if vh := h.hist.vhosts[v.Name()]; vh != nil {
			hs = append(hs, vh)
		}
	}
	withRanges(it, queueTotals, rg, time.Now(), hs)
}

// queueRanges sets a queue's details per rg from its history, and
// follows the queue from now on if there is room (a queue not followed
// shows its current values over the whole range).
func (h *Handler) queueRanges(it item, q *broker.Queue, st broker.QueueStats, rg ranges) {
	now := time.Now()
	h.hist.mu.Lock()
	defer h.hist.mu.Unlock()
	withRanges(it, it, rg, now, h.queueHistories(q, st, now))
	if rg.msgRates.incr > 0 { // kept at 0 here, sampled as RabbitMQ's
		it["reductions_details"] = sampled(rg.msgRates, now, func(int64) uint64 { return 0 })
	}
}

// queueHistories is q's history, started now if there is room, or a
// sample of q now; h.hist.mu is held.
func (h *Handler) queueHistories(q *broker.Queue, st broker.QueueStats, now time.Time) []*history {
	qh := h.hist.queues[q]
	if qh == nil && len(h.hist.queues) < maxQueueHistories && !q.Deleted() {
		qh = &queueHistory{}
		h.hist.queues[q] = qh
	}
	cur := &history{}
	cur.push(now.UnixMilli(), queueSeries(st))
	if qh == nil {
		return []*history{cur}
	}
	if !qh.asked.IsZero() || qh.n == 0 {
		qh.asked = now // a round's own stays a round's
	}
	if qh.n == 0 {
		qh.push(now.UnixMilli(), queueSeries(st))
	}
	return []*history{&qh.history}
}
