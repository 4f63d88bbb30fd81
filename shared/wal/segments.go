package wal

import "sort"

// SegmentInfo is one segment file as the log sees it: what the management
// UI's storage page shows, and what keeps the file on disk. A segment is
// deleted once it is not the active one and neither it nor an older
// segment has live references (reclamation is oldest first), so the live
// references of the oldest segment, by queue, are what pins the log's
// disk use.
type SegmentInfo struct {
	Number uint64
	Bytes  int64 // bytes written to the file
	// Live is the message references still held in the segment, Queues
	// the same by queue id (only queues with some).
	Live   int64
	Queues map[uint64]int64
	// Active: the segment being written (never reclaimed while active);
	// Corrupt: a corrupt record was found in it, so it is kept until
	// recovery-tool repairs it.
	Active, Corrupt bool
}

// Segments returns the segment files, oldest first. It takes the log's
// lock once and walks its per-queue reference counts (one entry per queue
// and segment it holds messages in), never the messages.
func (l *Log) Segments() []SegmentInfo {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]SegmentInfo, len(l.segs))
	at := make(map[uint64]int, len(l.segs))
	for i, s := range l.segs {
		out[i] = SegmentInfo{Number: s, Bytes: l.segSize[s], Live: l.segLive[s],
			Active: s == l.tailSeg, Corrupt: l.corrupt[s]}
		at[s] = i
	}
	for q, segs := range l.qsegs {
		for s, n := range segs {
			i, ok := at[s]
			if !ok || n <= 0 {
				continue
			}
			if out[i].Queues == nil {
				out[i].Queues = map[uint64]int64{}
			}
			out[i].Queues[q] += n
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Number < out[j].Number })
	return out
}
