package queue

// Rates are a queue's message rates in messages per second, as RabbitMQ's
// management API gives them (message_stats.publish_details.rate and so
// on): over the last sampling interval, so they trail the traffic by up to
// one interval and fall to 0 one interval after it stops.
type Rates struct {
	// Publish is the rate of Stats.Published, DeliverGet of Delivered
	// (consumers and basic.get), Redeliver of Redelivered, Ack of Acked.
	Publish, DeliverGet, Redeliver, Ack float64
}

// Meter turns a queue's cumulative counters into rates by sampling them,
// so that it costs nothing per message (the counters are kept anyway) and
// seven words per queue: the counters and time of the last sample, and the
// rates over the interval before it. Its owner calls Sample every interval
// (the broker's sampler, for every queue) and Rates when asked. Not safe
// for concurrent use: the owner's lock guards it.
type Meter struct {
	at   int64 // when last was sampled (ns); 0: never
	last [4]uint64
	rate [4]float32
}

// meterCounters are the counters a Meter follows, in its order.
func meterCounters(s *Stats) [4]uint64 {
	return [4]uint64{s.Published, s.Delivered, s.Redelivered, s.Acked}
}

// Start makes now the start of the first interval (a new queue: its
// counters start at zero).
func (m *Meter) Start(now int64) { m.at = now }

// Sample takes the counters s at now: the rates become those over the
// interval since the last sample. A first sample with no Start only sets
// the baseline. A counter that went back (a delivery given back after a
// sample) counts as still.
func (m *Meter) Sample(s Stats, now int64) {
	cur := meterCounters(&s)
	if m.at != 0 && now > m.at {
		secs := float64(now-m.at) / 1e9
		for i := range cur {
			var d uint64
			if cur[i] > m.last[i] {
				d = cur[i] - m.last[i]
			}
			m.rate[i] = float32(float64(d) / secs)
		}
	}
	m.at, m.last = now, cur
}

// Rates returns the rates over the last sampled interval.
func (m *Meter) Rates() Rates {
	return Rates{Publish: float64(m.rate[0]), DeliverGet: float64(m.rate[1]),
		Redeliver: float64(m.rate[2]), Ack: float64(m.rate[3])}
}
