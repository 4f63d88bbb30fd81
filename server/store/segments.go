package store

import "github.com/amqp-go/amqp-go/shared/wal"

// SegmentLister is implemented by the stores kept in a segment log (the
// file store): their segment files, oldest first, with the live message
// references each holds by queue (wal.Log.Segments). The memory store has
// no segments and does not implement it.
type SegmentLister interface {
	Segments() []wal.SegmentInfo
}

// Segments lists the log's segment files (see SegmentLister).
func (s *file) Segments() []wal.SegmentInfo { return s.log.Segments() }
