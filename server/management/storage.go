package management

import (
	"cmp"
	"net/http"
	"slices"
	"time"

	"github.com/amqp-go/amqp-go/server/broker"
)

// GET /api/x-storage is ours (RabbitMQ has no such endpoint): the message
// log's state for the UI's storage page, administrators and monitoring
// only. From Server.StorageStats (the log's counters, the ring buffer's
// hits and misses) and Server.StorageSegments (each segment file, oldest
// first, with the queues and delayed exchanges still holding messages in
// it: those of the oldest segment pin the log's disk use). On the memory
// store the counters are zero and segments is empty.

func (h *Handler) storage(rq *request) error {
	if len(rq.seg) != 1 {
		return errNotFound()
	}
	if rq.r.Method != http.MethodGet && rq.r.Method != http.MethodHead {
		return methodNotAllowed(rq, "HEAD, GET, OPTIONS")
	}
	if !rq.seesAll() {
		return errNotAuthorised("Not monitor user")
	}
	st := h.srv.StorageStats()
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	avg := 0.0
	if st.Fsyncs > 0 {
		avg = ms(st.FsyncTotal) / float64(st.Fsyncs)
	}
	buckets := []item{}
	for i, le := range []any{1, 4, 16, 64, "+Inf"} {
		buckets = append(buckets, item{"le_ms": le, "count": st.FsyncBuckets[i]})
	}
	failed := any(nil)
	if st.Failed != nil {
		failed = st.Failed.Error()
	}
	segs := h.srv.StorageSegments()
	out := []item{}
	for _, s := range segs {
		holders := []item{}
		slices.SortFunc(s.Holders, func(a, b broker.SegmentHolder) int {
			return cmp.Or(cmp.Compare(b.Live, a.Live), cmp.Compare(a.StoreID, b.StoreID))
		})
		for _, hd := range s.Holders {
			kind := "queue"
			if hd.Exchange {
				kind = "delayed_exchange"
			} else if hd.Name == "" {
				kind = "deleted"
			}
			holders = append(holders, item{"vhost": hd.VHost, "name": hd.Name, "kind": kind,
				"store_id": hd.StoreID, "live": hd.Live})
		}
		out = append(out, item{"number": s.Number, "bytes": s.Bytes, "live": s.Live,
			"active": s.Active, "corrupt": s.Corrupt, "holders": holders})
	}
	res := item{
		"segmented": segs != nil,
		"segments":  st.Segments, "disk_bytes": st.DiskBytes,
		"batches": st.Batches, "fsyncs": st.Fsyncs,
		"appended_records": st.AppendedRecords, "appended_bytes": st.AppendedBytes,
		"ack_records": st.AckRecords, "reclaimed_segments": st.ReclaimedSegments,
		"fsync_avg_ms": avg, "fsync_max_ms": ms(st.FsyncMax), "fsync_buckets": buckets,
		"failed": failed, "ring_hits": st.RingHits, "ring_misses": st.RingMisses,
		"segment_files": out,
	}
	writeJSON(rq.w, res)
	return nil
}
