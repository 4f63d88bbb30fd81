package broker

import (
	"github.com/amqp-go/amqp-go/server/store"
	"github.com/amqp-go/amqp-go/shared/wal"
)

// SegmentHolder is one queue (or durable delayed exchange) holding live
// messages in a segment of the log.
type SegmentHolder struct {
	VHost string
	// Name is the queue's, or the delayed exchange's when Exchange is set;
	// empty when no current object has the store id (a queue being
	// deleted).
	Name     string
	Exchange bool
	StoreID  uint64
	Live     int64
}

// Segment is one segment file of the log with the objects that hold
// messages in it.
type Segment struct {
	wal.SegmentInfo
	Holders []SegmentHolder
}

// StorageSegments lists the message log's segment files, oldest first,
// with the queues and delayed exchanges still holding messages in each:
// those of the oldest segment are what keep the log from shrinking. It is
// nil on a store with no segments (memory). It walks the vhosts' queues
// and exchanges (a snapshot under each vhost's read lock) and the log's
// per-queue counts, not the messages.
func (s *Server) StorageSegments() []Segment {
	sl, ok := s.store.(store.SegmentLister)
	if !ok {
		return nil
	}
	infos := sl.Segments()
	names := map[uint64]SegmentHolder{}
	for _, v := range s.vhostSnapshot() {
		for _, q := range v.Queues() {
			names[q.id] = SegmentHolder{VHost: v.name, Name: q.Name, StoreID: q.id}
		}
		for _, x := range v.Exchanges() {
			if id := x.delayedID(); id != 0 {
				names[id] = SegmentHolder{VHost: v.name, Name: x.Name, Exchange: true, StoreID: id}
			}
		}
	}
	out := make([]Segment, len(infos))
	for i, in := range infos {
		out[i].SegmentInfo = in
		for id, n := range in.Queues {
			h, ok := names[id]
			if !ok {
				h = SegmentHolder{StoreID: id}
			}
			h.Live = n
			out[i].Holders = append(out[i].Holders, h)
		}
	}
	return out
}
