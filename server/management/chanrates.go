package management

import (
	"sync"
	"time"

	"github.com/amqp-go/amqp-go/server/broker"
)

// chanRates turns the channels' counters into message_stats rates
// (*_details.rate, msg/s). RabbitMQ samples every channel each
// collect_statistics_interval on its own; here a listing of channels
// takes the sample, at most once per StatsInterval for a channel, so a
// rate is the change over the last interval of at least StatsInterval
// between two listings (longer when channels are listed rarely; 0 until
// a channel has been listed twice that far apart). mu is the handler's
// own lock, held only while the samples are read and updated, never
// with a broker lock or across an HTTP write.
type chanRates struct {
	mu sync.Mutex
	m  map[chanKey]*chanSample
}

// chanKey names a channel: its connection's ConnInfo (one per
// connection, never reused) and its number.
type chanKey struct {
	conn *broker.ConnInfo
	n    uint16
}

type chanSample struct {
	at    time.Time
	vals  map[string]uint64
	rates map[string]float64 // nil until a second sample
}

// sample reads every open channel's counters (chans, all of them: the
// samples of channels not among them are dropped) and returns, in chans'
// order, their values and current rates.
func (r *chanRates) sample(now time.Time, interval time.Duration, chans []broker.ChannelInfo) ([]map[string]uint64, []map[string]float64) {
	vals := make([]map[string]uint64, len(chans))
	rates := make([]map[string]float64, len(chans))
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.m
	r.m = make(map[chanKey]*chanSample, len(chans))
	for i := range chans {
		c := &chans[i]
		k := chanKey{c.Conn, c.Number}
		vals[i] = counterValues(c.Counters)
		s := old[k]
		switch {
		case s == nil:
			s = &chanSample{at: now, vals: vals[i]}
		case now.Sub(s.at) >= interval:
			dt := now.Sub(s.at).Seconds()
			s.rates = make(map[string]float64, len(vals[i]))
			for name, v := range vals[i] {
				s.rates[name] = float64(v-s.vals[name]) / dt
			}
			s.at, s.vals = now, vals[i]
		}
		r.m[k] = s
		rates[i] = s.rates
	}
	return vals, rates
}
