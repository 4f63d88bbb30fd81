package store

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/amqp-go/amqp-go/shared/wal"
)

// FileOptions configure OpenFile.
type FileOptions struct {
	// Dir is the segment log's directory.
	Dir string
	// SegmentSize rolls the log to a new segment past it (default 64 MiB,
	// at most MaxSegmentSize).
	SegmentSize int64
	// BatchBytes bounds one group-commit write (default 4 MiB).
	BatchBytes int
	// BatchDelay holds each batch open this long for more appends (0:
	// write as soon as the writer is free).
	BatchDelay time.Duration
	// Sync is when the log fsyncs (default: once per batch).
	Sync wal.SyncPolicy
	// DiscardPersistent stores nothing: persistent messages are treated
	// as transient (zero Ref, done at once).
	DiscardPersistent bool
	// OnFailure, if set, is called once when a write or fsync fails; from
	// then on Put fails. It must not block.
	OnFailure func(error)
	// FS is the file system (nil: the OS's); tests pass a wal.MemFS.
	FS wal.FS
}

// file is the durable store over the segment log: a persistent message is
// appended once, naming all its durable queues, and confirmed after the
// fsync covering it; releases are ack records and a deleted queue one
// drop record. The log is the only copy of a body.
type file struct {
	log     *wal.Log
	discard bool
	closed  atomic.Bool

	mu  sync.Mutex // guards idx and rec; taken around the log's DropQueue
	idx index
	rec *Recovered // until Recover hands it over
}

// OpenFile opens (creating if needed) the store in opts.Dir: it takes the
// log's lock, scans it, cuts a torn tail and keeps what it recovered for
// Recover.
func OpenFile(opts FileOptions) (Store, error) {
	if opts.SegmentSize > MaxSegmentSize {
		return nil, fmt.Errorf("store: segment size %d is over the %d bytes a Ref can address", opts.SegmentSize, MaxSegmentSize)
	}
	log, wrec, err := wal.Open(wal.Options{Dir: opts.Dir, SegmentSize: opts.SegmentSize, MaxBatchBytes: opts.BatchBytes,
		BatchDelay: opts.BatchDelay, Sync: opts.Sync, OnFailure: opts.OnFailure, FS: opts.FS})
	if err != nil {
		return nil, err
	}
	s := &file{log: log, discard: opts.DiscardPersistent, idx: newIndex()}
	s.rec = s.recovered(wrec)
	return s, nil
}

// recovered converts the log's recovery and indexes its holds.
func (s *file) recovered(w *wal.Recovered) *Recovered {
	rec := &Recovered{Queues: make(map[QueueID]*RecoveredQueue, len(w.Queues)),
		Segments: w.Segments, Bytes: w.Bytes, Duration: w.Duration}
	for id, wq := range w.Queues {
		q := QueueID(id)
		for i := range wq.Entries {
			s.idx.add(wq.Entries[i].ID, q)
		}
		rec.Queues[q] = &RecoveredQueue{log: wq.Entries, Corrupt: wq.Corrupt}
	}
	for _, c := range w.Corruptions {
		rc := Corruption{File: c.File, Offset: c.Offset, Length: c.Length, Reason: c.Reason}
		for _, q := range c.Queues {
			rc.Queues = append(rc.Queues, QueueID(q))
		}
		rec.Corruptions = append(rec.Corruptions, rc)
	}
	if t := w.TruncatedTail; t != nil {
		rec.TornTail = &TornTail{File: t.File, Offset: t.Offset, Bytes: t.Bytes, Reason: t.Reason}
	}
	return rec
}

// refAt is the Ref of the record at pos; OpenFile's size limit keeps both
// numbers within 32 bits.
func refAt(id uint64, pos wal.Position) Ref {
	return Ref{ID: id, Segment: uint32(pos.Segment), Offset: uint32(pos.Offset)}
}

func (s *file) Put(m *Message, queues []QueueID, done func(error)) (Ref, error) {
	if s.closed.Load() {
		return Ref{}, finish(done, ErrClosed)
	}
	var buf [16]uint64
	ids := durableQueues(buf[:0], queues)
	if !m.Persistent || s.discard || len(ids) == 0 {
		return Ref{}, finish(done, nil)
	}
	wm := &wal.Message{Queues: ids, Exchange: m.Exchange, RoutingKey: m.RoutingKey,
		Properties: m.Properties, Body: m.Body, Meta: wal.Meta(m.Meta)}
	pos, err := s.log.Append(wm, done)
	if err != nil {
		return Ref{}, finish(done, storeErr(err))
	}
	ref := refAt(wm.ID, pos)
	// Indexed after the append: a DropQueue between the two either
	// covered the record (then the hold it leaves here is released by the
	// caller as for any push to a deleted queue, and the log ignores that
	// ack) or did not (then the log counts the hold too).
	s.mu.Lock()
	s.idx.put(ref.ID, ids)
	s.mu.Unlock()
	return ref, nil
}

// storeErr maps the log's closed error to the store's.
func storeErr(err error) error {
	if errors.Is(err, wal.ErrClosed) {
		return ErrClosed
	}
	return err
}

func (s *file) Release(q QueueID, refs []Ref) {
	var acks []wal.Ref
	s.mu.Lock()
	s.idx.release(q, refs, func(r Ref, _ bool) { acks = append(acks, r.walRef()) })
	s.mu.Unlock()
	if len(acks) > 0 {
		s.log.Ack(uint64(q), acks, nil)
	}
}

func (s *file) Load(ref Ref) (*Message, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	s.mu.Lock()
	live := s.idx.live(ref.ID)
	s.mu.Unlock()
	if !live {
		return nil, ErrNotFound
	}
	wm, err := s.log.ReadMessage(wal.Position{Segment: uint64(ref.Segment), Offset: int64(ref.Offset)})
	switch {
	case errors.Is(err, wal.ErrNotFound):
		// Released and reclaimed since the check above.
		return nil, fmt.Errorf("%w: %w", ErrNotFound, err)
	case err != nil:
		return nil, fmt.Errorf("store: read message %d at segment %d offset %d: %w", ref.ID, ref.Segment, ref.Offset, storeErr(err))
	case wm.ID != ref.ID:
		return nil, fmt.Errorf("%w: segment %d offset %d holds message %d, not %d", ErrNotFound, ref.Segment, ref.Offset, wm.ID, ref.ID)
	}
	return &Message{Exchange: wm.Exchange, RoutingKey: wm.RoutingKey, Properties: wm.Properties, Body: wm.Body,
		Persistent: true, Meta: Meta(wm.Meta)}, nil
}

func (s *file) DropQueue(q QueueID) {
	if q == 0 {
		return
	}
	// Under mu, so that a Put whose append follows the drop record indexes
	// its holds after they are dropped here, as the log counts them.
	s.mu.Lock()
	defer s.mu.Unlock()
	s.log.DropQueue(uint64(q), nil)
	s.idx.drop(q, nil)
}

// Sync is the log's barrier: it rides on the fsync of the newest batch,
// which holds the acks of every Release before it.
func (s *file) Sync(done func(error)) {
	if s.closed.Load() {
		done(ErrClosed)
		return
	}
	s.log.Barrier(func(err error) { done(storeErr(err)) })
}

func (s *file) Recover() (*Recovered, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := s.rec
	if rec == nil {
		return nil, errRecovered
	}
	s.rec = nil
	return rec, nil
}

func (s *file) Stats() Stats {
	s.mu.Lock()
	st := s.idx.stats()
	s.mu.Unlock()
	st.Log = s.log.Stats()
	return st
}

func (s *file) Close() error {
	if s.closed.Swap(true) {
		return ErrClosed
	}
	err := storeErr(s.log.Close())
	s.mu.Lock()
	s.idx, s.rec = newIndex(), nil
	s.mu.Unlock()
	return err
}
