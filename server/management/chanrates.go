package management

import (
	"sync"
	"time"
)

// counterRates turns objects' counters into message_stats rates
// (*_details.rate, msg/s), for channels and exchanges. RabbitMQ samples
// every object each collect_statistics_interval on its own; here a read of
// the object takes the sample, at most once per StatsInterval for it, so a
// rate is the change over the last interval of at least StatsInterval
// between two reads (longer when the object is read rarely; 0 until it has
// been read twice that far apart). mu is the handler's own lock, held only
// while samples are read and updated, never with a broker lock or across
// an HTTP write.
type counterRates[K comparable] struct {
	mu sync.Mutex
	m  map[K]*counterSample
}

type counterSample struct {
	at    time.Time
	vals  map[string]uint64
	rates map[string]float64 // nil until a second sample
}

// sample records key's counters vals at now and returns their rates.
func (r *counterRates[K]) sample(now time.Time, interval time.Duration, key K, vals map[string]uint64) map[string]float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[K]*counterSample{}
	}
	s := r.m[key]
	switch {
	case s == nil:
		r.m[key] = &counterSample{at: now, vals: vals}
		return nil
	case now.Sub(s.at) >= interval:
		dt := now.Sub(s.at).Seconds()
		s.rates = make(map[string]float64, len(vals))
		for name, v := range vals {
			s.rates[name] = float64(v-min(v, s.vals[name])) / dt // a counter never goes back
		}
		s.at, s.vals = now, vals
	}
	return s.rates
}

// prune drops the samples of the objects gone reports (deleted ones).
func (r *counterRates[K]) prune(gone func(K) bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k := range r.m {
		if gone(k) {
			delete(r.m, k)
		}
	}
}
