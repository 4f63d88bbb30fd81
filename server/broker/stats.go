package broker

import (
	"sync/atomic"

	"github.com/amqp-go/amqp-go/shared/wal"
)

// counters are the broker-wide totals behind the metrics. Each is updated
// with one atomic add where the event happens.
type counters struct {
	channels     atomic.Int64 // open channels (gauge)
	received     atomic.Uint64
	confirmed    atomic.Uint64
	delivered    atomic.Uint64
	acknowledged atomic.Uint64
	ringHits     atomic.Uint64 // deliveries served from memory
	ringMisses   atomic.Uint64 // deliveries read back from the log
}

// Stats is a point-in-time view of the broker for metrics.
type Stats struct {
	// Connections is the number of client connections (including ones
	// still in the handshake or closing).
	Connections int
	// Channels is the number of open channels.
	Channels int64
	// MessagesReceived counts messages published by clients.
	MessagesReceived uint64
	// MessagesConfirmed counts publisher confirms (basic.ack) sent.
	MessagesConfirmed uint64
	// MessagesDelivered counts messages delivered to consumers and basic.get.
	MessagesDelivered uint64
	// MessagesAcknowledged counts messages acknowledged by consumers.
	MessagesAcknowledged uint64
	// Alarm is the reason of the raised resource alarm ("" if none).
	Alarm string
}

// FreedBytes is the body bytes of all the messages queues have let go of
// since the server started (acked, expired, dropped, dead-lettered,
// purged); it only grows.
func (s *Server) FreedBytes() int64 { return int64(s.freedBytes.load()) }

// Stats returns the broker-wide counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	n := len(s.conns)
	alarm := s.alarmReason
	s.mu.Unlock()
	return Stats{
		Connections:          n,
		Channels:             s.stats.channels.Load(),
		MessagesReceived:     s.stats.received.Load(),
		MessagesConfirmed:    s.stats.confirmed.Load(),
		MessagesDelivered:    s.stats.delivered.Load(),
		MessagesAcknowledged: s.stats.acknowledged.Load(),
		Alarm:                alarm,
	}
}

// StorageStats are the durable store's counters (zero on the memory
// backend) and the ring buffer's hits and misses.
type StorageStats struct {
	wal.Stats
	// RingHits counts deliveries served from memory, RingMisses those read
	// back from the log.
	RingHits, RingMisses uint64
}

// StorageStats returns a snapshot of the storage counters.
func (s *Server) StorageStats() StorageStats {
	var st StorageStats
	st.Stats = s.store.Stats().Log
	st.RingHits = s.stats.ringHits.Load()
	st.RingMisses = s.stats.ringMisses.Load()
	return st
}
