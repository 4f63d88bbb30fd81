package management

import (
	"sync"
	"time"

	"github.com/amqp-go/amqp-go/server/broker"
)

// exchangeRates turns exchanges' publish counters into message_stats
// rates, as chanRates does for channels: a listing or a read of an
// exchange takes the sample, at most once per StatsInterval for an
// exchange, so a rate is the change over the last interval of at least
// StatsInterval between two reads (0 until read twice that far apart).
// mu is the handler's own lock, held only while samples are read and
// updated. Samples of deleted exchanges are dropped when a listing of
// their vhost no longer has them.
type exchangeRates struct {
	mu sync.Mutex
	m  map[*broker.Exchange]*exchangeSample
}

type exchangeSample struct {
	vhost           string
	at              time.Time
	in, out         uint64
	inRate, outRate float64
}

// sample reads x's counters and returns them with their rates.
func (r *exchangeRates) sample(now time.Time, interval time.Duration, vhost string, x *broker.Exchange) exchangeSample {
	in, out := x.PublishStats()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[*broker.Exchange]*exchangeSample{}
	}
	s := r.m[x]
	switch {
	case s == nil:
		s = &exchangeSample{vhost: vhost, at: now, in: in, out: out}
		r.m[x] = s
	case now.Sub(s.at) >= interval:
		dt := now.Sub(s.at).Seconds()
		s.inRate, s.outRate = float64(in-s.in)/dt, float64(out-s.out)/dt
		s.at, s.in, s.out = now, in, out
	}
	return exchangeSample{vhost: vhost, at: s.at, in: in, out: out, inRate: s.inRate, outRate: s.outRate}
}

// forget drops the samples of vhost's exchanges that are not in xs
// (deleted).
func (r *exchangeRates) forget(vhost string, xs []*broker.Exchange) {
	keep := make(map[*broker.Exchange]bool, len(xs))
	for _, x := range xs {
		keep[x] = true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for x := range r.m {
		if r.m[x].vhost == vhost && !keep[x] {
			delete(r.m, x)
		}
	}
}

// messageStats is an exchange's message_stats: none until something was
// published to it, publish_out once something was routed on, as RabbitMQ
// 3.10 shows them.
func (s exchangeSample) messageStats() item {
	if s.in == 0 {
		return nil
	}
	ms := item{"publish_in": s.in, "publish_in_details": rate(s.inRate)}
	if s.out > 0 {
		ms["publish_out"], ms["publish_out_details"] = s.out, rate(s.outRate)
	}
	return ms
}
