package management

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
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

// maxFollowed bounds the queues, and apart the exchanges and the
// channels, with a history of their own: while there is room, a sampling
// round follows those it finds (so that a small broker's pages have
// history at once), and one read with a range parameter is followed from
// that read; an object loses its history when it is gone (a round does
// not find it), and one followed on a read followIdle after the last
// such read. With 13.6 KB per history, this caps each kind at about
// 3.4 MB whatever the number of objects.
const (
	maxFollowed = 256
	followIdle  = 10 * time.Minute
)

// maxRangePoints bounds a reply's samples per series (age/incr+1), and
// maxRangeSeconds an age or incr (a year: in ms, far from overflow).
const (
	maxRangePoints  = 1000
	maxRangeSeconds = 366 * 24 * 3600
)

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

// source is what a reply's samples are read from: a history, or the
// current values of an object not followed (over the whole range).
type source interface {
	// valueAt is series s's value at t (ms).
	valueAt(t int64, s int) uint64
}

// valueAt is the newest sample taken at or before t, else the oldest one
// (an object followed only since later is taken as having been still
// before); 0 if h holds none.
func (h *history) valueAt(t int64, s int) uint64 {
	for i := 0; i < h.n; i++ {
		j := (h.head - i + histLen) % histLen
		if h.at[j] <= t || i == h.n-1 {
			return h.v[j][s]
		}
	}
	return 0
}

// current is an object's values now, for one not followed: no ring, so
// that a listing of many such objects allocates little.
type current series

func (c *current) valueAt(_ int64, s int) uint64 { return c[s] }

// histories are the handler's sampled histories: one per vhost (the
// overview's, summed over the vhosts a user sees), one for the server's
// own counters, and those of the queues, exchanges and channels followed.
// A round (a time.AfterFunc re-armed each StatsInterval, none between
// rounds) samples them all; mu, a leaf, is held only while rings are
// read and written, never with a broker lock or across an HTTP write.
type histories struct {
	start     sync.Once
	mu        sync.Mutex
	timer     *time.Timer
	closed    bool
	vhosts    map[string]*history
	server    history
	queues    followed[*broker.Queue]
	exchanges followed[xKey]
	channels  followed[chanKey]
}

// followed are the objects of one kind with a history of their own (see
// maxFollowed); its methods are called with histories.mu held.
type followed[K comparable] map[K]*followedHistory

type followedHistory struct {
	history
	asked time.Time // zero: followed by a round, kept while it exists
}

// keys are the objects followed now (those read with a range and not
// since followIdle dropped), and the room for more.
func (f followed[K]) keys(now time.Time) (map[K]bool, int) {
	out := make(map[K]bool, len(f))
	for k, fh := range f {
		if !fh.asked.IsZero() && now.Sub(fh.asked) > followIdle {
			delete(f, k)
			continue
		}
		out[k] = true
	}
	return out, maxFollowed - len(out)
}

// walk is what a round found of one kind: the objects it sampled (the
// followed ones that exist and new ones while there was room) and their
// samples.
type walk[K comparable] struct {
	keys []K
	vals []series
	room int
	was  map[K]bool
}

// take adds k's sample v if k is followed or there is room.
func (w *walk[K]) take(k K, v func() series) {
	if w.was[k] || w.room > 0 {
		if !w.was[k] {
			w.room--
		}
		w.keys, w.vals = append(w.keys, k), append(w.vals, v())
	}
}

// update pushes a round's samples: an object followed that the round did
// not find is gone and loses its history; a new one is followed while
// there is room (a read may have taken it since).
func (f followed[K]) update(at int64, w *walk[K]) {
	found := make(map[K]bool, len(w.keys))
	for _, k := range w.keys {
		found[k] = true
	}
	for k := range f {
		if w.was[k] && !found[k] {
			delete(f, k)
		}
	}
	for i, k := range w.keys {
		fh := f[k]
		if fh == nil {
			if w.was[k] || len(f) >= maxFollowed {
				continue
			}
			fh = &followedHistory{}
			f[k] = fh
		}
		fh.push(at, w.vals[i])
	}
}

// forRead is k's history for a read with a range, k followed from now on
// if there is room; else the current values cur, over the whole range.
func (f followed[K]) forRead(k K, cur series, now time.Time) source {
	fh := f[k]
	if fh == nil && len(f) < maxFollowed {
		fh = &followedHistory{asked: now}
		f[k] = fh
	}
	if fh == nil {
		c := current(cur)
		return &c
	}
	if !fh.asked.IsZero() {
		fh.asked = now // one a round follows stays the round's
	}
	if fh.n == 0 {
		fh.push(now.UnixMilli(), cur)
	}
	return &fh.history
}

// startHistory arms the sampling round once; the first sample is taken
// at once, so that history starts with the handler.
func (h *Handler) startHistory() {
	h.hist.start.Do(func() {
		h.hist.mu.Lock()
		h.hist.vhosts = map[string]*history{}
		h.hist.queues = followed[*broker.Queue]{}
		h.hist.exchanges = followed[xKey]{}
		h.hist.channels = followed[chanKey]{}
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
// counters and the followed queues, exchanges and channels are sampled,
// then the timer re-armed. Its cost is a Stats call per queue, as a
// listing's, and a read of each exchange's and channel's counters.
func (h *Handler) sampleHistory() {
	now := time.Now()
	at := now.UnixMilli()
	// The followed objects, copied so that no broker call runs under mu.
	var qw walk[*broker.Queue]
	var xw walk[xKey]
	var cw walk[chanKey]
	h.hist.mu.Lock()
	qw.was, qw.room = h.hist.queues.keys(now)
	xw.was, xw.room = h.hist.exchanges.keys(now)
	cw.was, cw.room = h.hist.channels.keys(now)
	h.hist.mu.Unlock()

	vhosts := map[string]series{}
	for _, v := range h.srv.VHosts() {
		var t totals
		for _, q := range v.Queues() {
			st := q.Stats()
			t.add(st)
			qw.take(q, func() series { return queueSeries(st) })
		}
		vhosts[v.Name()] = t.series()
		for _, x := range v.Exchanges() {
			xw.take(xKey{v.Name(), x}, func() series { return exchangeSeries(x) })
		}
	}
	for _, c := range h.srv.Channels() {
		cw.take(chanKey{c.Conn, c.Number}, func() series { return channelSeries(counterValues(c.Counters)) })
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
	h.hist.queues.update(at, &qw)
	h.hist.exchanges.update(at, &xw)
	h.hist.channels.update(at, &cw)
	h.hist.timer.Reset(h.srv.StatsInterval())
}

// exchangeNames and channelNames are the message_stats names of an
// exchange's and a channel's series, in their order.
var (
	exchangeNames = []string{"publish_in", "publish_out"}
	channelNames  = append(append([]string{}, publishKeys...), consumeKeys...)
)

// exchangeSeries is one exchange's sample.
func exchangeSeries(x *broker.Exchange) series {
	in, out := x.PublishStats()
	return series{in, out}
}

// channelSeries is one channel's sample, from its counters by name.
func channelSeries(vals map[string]uint64) series {
	var s series
	for i, n := range channelNames {
		s[i] = vals[n]
	}
	return s
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
		if err1 != nil || err2 != nil || a < 0 || i <= 0 || a > maxRangeSeconds || i > maxRangeSeconds {
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

// sumAt is the value of series s at t summed over hs.
func sumAt(hs []source, s int) func(t int64) uint64 {
	return func(t int64) uint64 {
		var sum uint64
		for _, h := range hs {
			sum += h.valueAt(t, s)
		}
		return sum
	}
}

func zeroAt(int64) uint64 { return 0 }

// withRanges sets the *_details of it (an object with message_stats and
// lengths at its top, as a queue, or under queue_totals, as the overview)
// from the histories hs, summed, per the ranges.
func withRanges(it, lengths item, rg ranges, now time.Time, hs []source) {
	if rg.lengths.incr > 0 {
		for s := firstLength; s < nSeries; s++ {
			lengths[seriesNames[s]+"_details"] = sampled(rg.lengths, now, sumAt(hs, s))
		}
	}
	if rg.msgRates.incr > 0 {
		statsRanges(it, rg.msgRates, now, hs, seriesNames[:firstLength])
		if churn, ok := it["churn_rates"].(item); ok {
			for k, v := range churn {
				if _, ok := v.(details); ok {
					churn[k] = sampled(rg.msgRates, now, zeroAt)
				}
			}
		}
	}
}

// statsRanges sets it's message_stats.*_details over sp from hs (one or
// more), whose series are names in order (a counter not among them is
// kept at 0 here, as drop_unroutable or disk_reads, and sampled as such).
func statsRanges(it item, sp span, now time.Time, hs []source, names []string) {
	_, flat := hs[0].(*current) // not followed: keep the sampled rate it has
	ms, _ := it["message_stats"].(item)
	for k, v := range ms {
		old, ok := v.(details)
		if !ok {
			continue
		}
		name := strings.TrimSuffix(k, "_details")
		d := sampled(sp, now, zeroAt)
		if s := slices.Index(names, name); s >= 0 {
			d = sampled(sp, now, sumAt(hs, s))
		}
		if flat && len(hs) == 1 {
			d.Rate = old.Rate
		}
		ms[k] = d
	}
}

// overviewRanges sets the overview's details per rg from the histories
// of the vhosts it sums and the server's.
func (h *Handler) overviewRanges(it, queueTotals item, rg ranges, vhosts []*broker.VHost) {
	h.hist.mu.Lock()
	defer h.hist.mu.Unlock()
	hs := []source{&h.hist.server}
	for _, v := range vhosts {
		if vh := h.hist.vhosts[v.Name()]; vh != nil {
			hs = append(hs, vh)
		}
	}
	withRanges(it, queueTotals, rg, time.Now(), hs)
}

// vhostRanges sets a vhost's details per rg from its history.
func (h *Handler) vhostRanges(it item, v *broker.VHost, rg ranges) {
	h.hist.mu.Lock()
	defer h.hist.mu.Unlock()
	hs := []source{&current{}} // a vhost made since the last round
	if vh := h.hist.vhosts[v.Name()]; vh != nil {
		hs = []source{vh}
	}
	withRanges(it, it, rg, time.Now(), hs)
}

// queueRanges sets a queue's details per rg from its history (see
// followed.forRead).
func (h *Handler) queueRanges(it item, q *broker.Queue, st broker.QueueStats, rg ranges) {
	now := time.Now()
	h.hist.mu.Lock()
	defer h.hist.mu.Unlock()
	withRanges(it, it, rg, now, []source{h.hist.queues.forRead(q, queueSeries(st), now)})
	if rg.msgRates.incr > 0 { // kept at 0 here, sampled as RabbitMQ's
		it["reductions_details"] = sampled(rg.msgRates, now, zeroAt)
	}
}

// exchangeRanges sets an exchange's message_stats details per rg.
func (h *Handler) exchangeRanges(it item, k xKey, rg ranges) {
	if rg.msgRates.incr == 0 || it["message_stats"] == nil {
		return
	}
	now := time.Now()
	cur := exchangeSeries(k.x)
	h.hist.mu.Lock()
	defer h.hist.mu.Unlock()
	statsRanges(it, rg.msgRates, now, []source{h.hist.exchanges.forRead(k, cur, now)}, exchangeNames)
}

// channelRanges sets a channel's message_stats details per rg.
func (h *Handler) channelRanges(it item, k chanKey, vals map[string]uint64, rg ranges) {
	if rg.msgRates.incr == 0 {
		return
	}
	now := time.Now()
	h.hist.mu.Lock()
	defer h.hist.mu.Unlock()
	statsRanges(it, rg.msgRates, now, []source{h.hist.channels.forRead(k, channelSeries(vals), now)}, channelNames)
	it["reductions_details"] = sampled(rg.msgRates, now, zeroAt) // kept at 0 here, sampled as RabbitMQ's
}
