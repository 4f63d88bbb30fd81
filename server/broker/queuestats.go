package broker

import (
	"sort"
	"sync"
	"time"

	"github.com/amqp-go/amqp-go/server/queue"
	"github.com/amqp-go/amqp-go/shared/amqp"
)

// QueueStats is one queue as operators see it: counts, ages, counters and
// rates, what RabbitMQ's management API and prometheus plugin report per
// queue.
type QueueStats struct {
	VHost   string
	Name    string
	Ready   int
	Unacked int
	// ReadyBytes and UnackedBytes are the bodies' sizes, as RabbitMQ's
	// message_bytes_ready and message_bytes_unacknowledged.
	ReadyBytes, UnackedBytes int64
	// DeadLetters and DeadLetterBytes are the dead-letters the queue
	// holds until their targets confirm them (at-least-once), as
	// RabbitMQ's messages_dlx and message_bytes_dlx.
	DeadLetters, DeadLetterBytes int64
	Consumers                    int
	// HeadTimestamp is the head message's timestamp property (AMQP
	// seconds), RabbitMQ's head_message_timestamp; HasHeadTimestamp is
	// false when the queue is empty, its head has no such property, or the
	// head is paged out to the log (RabbitMQ shows none for a paged-out
	// head either).
	HeadTimestamp    uint64
	HasHeadTimestamp bool
	// HeadAge is how long the head message has been in the queue, from
	// when it was enqueued (a requeued message keeps its first time; a
	// recovered one its publish time if it has a TTL, else the restart);
	// 0 when empty.
	HeadAge time.Duration
	// OldestUnackedAge is how long the longest-unacknowledged delivery has
	// been out; 0 when none is.
	OldestUnackedAge time.Duration
	// Counters are the cumulative counters since the queue was declared
	// (or the server started).
	Counters queue.Stats
	// Rates are msg/s over the last sampling interval (Config.StatsInterval).
	Rates queue.Rates
}

// stats reads q's QueueStats at now (queue.Now, the clock the queue's
// timestamps are on: the wall clock's steps since start would skew the
// ages). It takes the queue's
// lock twice, for its Info and its head, and reads the head message's
// properties, immutable once routed, with no lock.
func (q *Queue) stats(ns int64) QueueStats {
	in := q.cq.Info()
	st := QueueStats{VHost: q.vhost.name, Name: q.Name, Ready: int(in.Ready), Unacked: int(in.Unacked),
		ReadyBytes: in.ReadyBytes, UnackedBytes: in.UnackedBytes, Consumers: in.Consumers,
		DeadLetters: in.Held, DeadLetterBytes: in.HeldBytes,
		Counters: in.Stats, Rates: in.Rates}
	if in.HeadTimestamp != 0 {
		st.HeadAge = time.Duration(max(ns-in.HeadTimestamp, 0))
	}
	if in.OldestUnacked != 0 {
		st.OldestUnackedAge = time.Duration(max(ns-in.OldestUnacked, 0))
	}
	if in.Ready > 0 {
		if e, ok := q.cq.Head(); ok && e.Handle.msg != nil {
			st.HeadTimestamp, st.HasHeadTimestamp = amqp.PeekTimestamp(e.Handle.msg.Properties)
		}
	}
	return st
}

// QueueStats returns the stats of queue name (ok false: no such queue).
func (v *VHost) QueueStats(name string) (st QueueStats, ok bool) {
	q := v.queue(name)
	if q == nil {
		return st, false
	}
	return q.stats(queue.Now()), true
}

// VHost returns the virtual host name, or nil if there is none.
func (s *Server) VHost(name string) *VHost { return s.vhost(name) }

// QueueStats returns every queue's stats, ordered by vhost and name.
func (s *Server) QueueStats() []QueueStats {
	out := s.AppendQueueStats(nil)
	sort.Slice(out, func(i, j int) bool {
		if out[i].VHost != out[j].VHost {
			return out[i].VHost < out[j].VHost
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// AppendQueueStats appends every queue's stats to dst in no particular
// order, from one walk over the queues (a scrape reuses its buffer). Each
// queue is locked only to read it; no lock is held across queues.
func (s *Server) AppendQueueStats(dst []QueueStats) []QueueStats {
	now := queue.Now()
	s.eachQueue(nil, func(q *Queue) { dst = append(dst, q.stats(now)) })
	return dst
}

// eachQueue calls f for every queue of every vhost, holding no lock: the
// queues of a vhost are gathered into scratch under its read lock first.
// It returns scratch (cleared) for the next walk.
func (s *Server) eachQueue(scratch []*Queue, f func(*Queue)) []*Queue {
	for _, v := range s.vhostSnapshot() {
		v.mu.RLock()
		scratch = scratch[:0]
		for _, q := range v.queues {
			scratch = append(scratch, q)
		}
		v.mu.RUnlock()
		for _, q := range scratch {
			f(q)
		}
		clear(scratch) // keeps no deleted queue alive
	}
	return scratch[:0]
}

// defaultStatsInterval is RabbitMQ's collect_statistics_interval.
const defaultStatsInterval = 5 * time.Second

// rateSampler samples every queue's counters once per interval for their
// rates (queue.Meter): a time.AfterFunc that each round re-arms, so no
// goroutine waits between rounds, and none runs before the first queue is
// declared or after the server closes. A round costs one lock and a copy
// of the counters per queue, idle or not.
type rateSampler struct {
	start sync.Once
	// mu is held across a round (the timer, the scratch).
	mu      sync.Mutex
	timer   *time.Timer
	scratch []*Queue
}

// startSampler arms the sampler once (newQueue calls it).
func (s *Server) startSampler() {
	s.sampler.start.Do(func() {
		s.sampler.mu.Lock()
		s.sampler.timer = time.AfterFunc(s.statsInterval(), s.sampleRates)
		s.sampler.mu.Unlock()
	})
}

func (s *Server) statsInterval() time.Duration {
	if s.cfg.StatsInterval > 0 {
		return s.cfg.StatsInterval
	}
	return defaultStatsInterval
}

// sampleRates is a sampling round: every queue samples its counters, then
// the timer is re-armed, unless the server has closed.
func (s *Server) sampleRates() {
	r := &s.sampler
	r.mu.Lock()
	defer r.mu.Unlock()
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return
	}
	r.scratch = s.eachQueue(r.scratch, func(q *Queue) { q.cq.SampleRates() })
	r.timer.Reset(s.statsInterval())
}
