package wal

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// Errors returned by the log.
var (
	// ErrLocked: another Log (or an offline tool) holds Dir/LOCK.
	ErrLocked = errors.New("wal: log directory is locked by another process")
	// ErrVersion: Dir/VERSION is missing (with segments present) or names
	// another storage version.
	ErrVersion = errors.New("wal: unsupported storage version")
	// ErrClosed: the log was closed.
	ErrClosed = errors.New("wal: log is closed")
	// ErrFailed wraps the write or fsync error that put the log into its
	// failed state; every later operation fails fast with it.
	ErrFailed = errors.New("wal: log failed")
	// ErrTooLarge: the encoded record would exceed MaxRecordSize.
	ErrTooLarge = errors.New("wal: record too large")
	// ErrNotFound: no message record at the given position.
	ErrNotFound = errors.New("wal: no message at position")
)

// SyncPolicy says when the log fsyncs.
type SyncPolicy int

const (
	// SyncBatch issues one fdatasync per group-commit batch (the default).
	SyncBatch SyncPolicy = iota
	// SyncAlways writes and fdatasyncs every record on its own: no group
	// commit (the slowest policy; for comparison and the paranoid).
	SyncAlways
	// SyncNever never fsyncs before calling done (benchmarks and tests
	// only; Close still syncs).
	SyncNever
)

// Options configure Open.
type Options struct {
	Dir string
	// SegmentSize: roll to a new segment once the active one exceeds it
	// (default 64 MiB).
	SegmentSize int64
	// MaxBatchBytes bounds one group-commit write (default 4 MiB).
	MaxBatchBytes int
	// BatchDelay, if set, holds each batch open this long for more appends
	// before writing it (bigger batches, fewer fsyncs, at the price of
	// latency). 0, the default, writes as soon as the writer is free, so a
	// lone appender never waits for a timer.
	BatchDelay time.Duration
	Sync       SyncPolicy
	// OnFailure, if set, is called once, from the commit goroutine, when a
	// write or fsync fails and the log enters its failed state (the
	// affected callbacks get the error too). It must not block.
	OnFailure func(error)
	// FS is the file system; nil means the OS file system.
	FS FS
}

// Message is one persistent message. Append does not retain m or its
// slices after it returns.
type Message struct {
	ID         uint64   // assigned by Append (monotonic across restarts)
	Queues     []uint64 // distinct durable queue ids; at least one
	Exchange   string
	RoutingKey string
	Properties []byte // raw AMQP basic properties (flags word + list)
	Body       []byte
	// Meta is what the queues need of the message after a restart without
	// reading it back; recovery returns it in each Entry.
	Meta
}

// Meta is a message's metadata (record version 2). The zero Meta is what
// version 1 records, which cannot carry it, read as.
type Meta struct {
	Timestamp int64 // publish time, unix ns; 0: unknown
	Expires   int64 // the message's own expiry deadline, unix ns; 0: never
	Due       int64 // a delayed message's due time, unix ns; 0: not delayed
	Priority  uint8
}

// Position is where a message record starts.
type Position struct {
	Segment uint64
	Offset  int64
}

// Ref names a message for Ack: its id and the segment holding it.
type Ref struct {
	ID      uint64
	Segment uint64
}

// Stats are counters for metrics.
type Stats struct {
	Segments          int   // segment files on disk
	DiskBytes         int64 // bytes in segment files
	Batches           uint64
	Fsyncs            uint64
	AppendedRecords   uint64 // message records appended
	AppendedBytes     uint64 // bytes of all records appended
	AckRecords        uint64 // ack and drop-queue records appended
	ReclaimedSegments uint64
	FsyncTotal        time.Duration
	FsyncMax          time.Duration
	// FsyncBuckets counts fsyncs taking <=1ms, <=4ms, <=16ms, <=64ms, more.
	FsyncBuckets [5]uint64
	// Failed is the error that failed the log, if any.
	Failed error
}

// chunk is one group-commit batch: bytes for one segment written with one
// write and covered by one fsync.
type chunk struct {
	seq    uint64
	seg    uint64
	off    int64 // file offset of buf[0]
	newSeg bool  // buf starts with a segment header; create the file first
	buf    []byte
	// bodies are large message bodies written in place, each after
	// buf[:at], instead of being copied into buf; size is what the chunk
	// writes, buf and bodies.
	bodies []bodyRef
	size   int
	cbs    []func(error)
	rel    []release
	msgs   int
	others int
}

// bodyRef is a message body written after buf[:at] of its chunk.
type bodyRef struct {
	at int
	b  []byte
}

// inPlaceMin is the smallest body that Append writes from the caller's
// buffer instead of copying it into the batch: from 64 KiB, a write
// system call more costs less than the copy.
const inPlaceMin = 64 << 10

// release drops n live references of segment seg once the chunk is durable.
type release struct {
	seg uint64
	n   int64
}

// barrier is a Barrier callback waiting for chunk seq to be durable.
type barrier struct {
	seq  uint64
	done func(error)
}

// Log is an open write-ahead log. Its methods are safe for concurrent use.
//
// Locking: mu guards the fields marked (mu); cond (on mu) is broadcast
// whenever written/committed positions advance, pending bytes shrink, or
// the log fails or closes. The commit goroutine (run) is started by Open
// and stopped by Close, which waits for it; it owns wf and wfSeg
// and is the only goroutine that writes, syncs, creates or deletes segment
// files; readMu guards the read handles. Lock order: mu before readMu.
type Log struct {
	opts       Options
	fs         FS
	lock       io.Closer
	maxPending int

	mu           sync.Mutex
	cond         *sync.Cond
	nextID       uint64                      // (mu)
	tailSeg      uint64                      // (mu) segment of the next record
	tailOff      int64                       // (mu) offset of the next record
	pending      []*chunk                    // (mu) batches not yet taken by run
	pendingBytes int                         // (mu) bytes not yet written
	lastSeq      uint64                      // (mu) seq of the newest chunk
	committedSeq uint64                      // (mu) seq of the newest durable chunk
	writtenSeg   uint64                      // (mu) bytes before (writtenSeg, writtenOff)
	writtenOff   int64                       // (mu)   are readable from the file
	failed       error                       // (mu)
	closed       bool                        // (mu)
	segs         []uint64                    // (mu) segment files, ascending
	segSize      map[uint64]int64            // (mu)
	segLive      map[uint64]int64            // (mu) live message refs per segment
	qsegs        map[uint64]map[uint64]int64 // (mu) queue -> segment -> live refs
	corrupt      map[uint64]bool             // (mu) segments never reclaimed
	freeChunks   []*chunk                    // (mu)
	group        []*chunk                    // (run) the batches of one commit round, reused
	barriers     []barrier                   // (mu) Barrier callbacks, ascending seq

	kick    chan struct{} // wakes run; capacity 1
	stopped chan struct{} // closed when run returns

	wf    File   // (run) active segment
	wfSeg uint64 // (run)

	readMu  sync.Mutex
	readers map[uint64]File // (readMu)

	batches, fsyncs, records, bytes, others, reclaimed atomic.Uint64
	fsyncNanos, fsyncMax                               atomic.Int64
	buckets                                            [5]atomic.Uint64
}

func (o *Options) defaults() {
	if o.SegmentSize <= 0 {
		o.SegmentSize = 64 << 20
	}
	if o.MaxBatchBytes <= 0 {
		o.MaxBatchBytes = 4 << 20
	}
	if o.FS == nil {
		o.FS = OSFS{}
	}
}

// Open opens (creating if needed) the log in opts.Dir: it takes Dir/LOCK
// (ErrLocked if held), checks Dir/VERSION (ErrVersion), scans every
// segment, truncates a torn tail of the last segment, starts a fresh
// active segment and returns what it recovered. Corruptions elsewhere do
// not fail Open; they are listed in Recovered.Corruptions.
func Open(opts Options) (_ *Log, _ *Recovered, err error) {
	opts.defaults()
	fsys := opts.FS
	lock, segs, err := lockDir(fsys, opts.Dir, versionContent)
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		if err != nil {
			lock.Close()
		}
	}()
	// What an older version left readable by others becomes FileMode.
	old := []string{filepath.Join(opts.Dir, VersionFile)}
	for _, s := range segs {
		old = append(old, s.Path)
	}
	if err := tighten(fsys, old...); err != nil {
		return nil, nil, err
	}
	rc, err := runRecovery(fsys, segs, true)
	if err != nil {
		return nil, nil, err
	}
	l := &Log{
		opts:       opts,
		fs:         fsys,
		lock:       lock,
		maxPending: 8 * opts.MaxBatchBytes,
		nextID:     rc.res.NextID,
		segSize:    map[uint64]int64{},
		segLive:    rc.segLive,
		qsegs:      rc.qsegs,
		corrupt:    rc.corrupt,
		kick:       make(chan struct{}, 1),
		stopped:    make(chan struct{}),
		readers:    map[uint64]File{},
	}
	l.cond = sync.NewCond(&l.mu)
	var empty []uint64
	for _, s := range rc.existing {
		if s.Size == SegmentHeaderSize && !l.corrupt[s.Number] {
			// A segment without records protects nothing, and the new
			// active segment's header carries the id floor forward.
			empty = append(empty, s.Number)
			continue
		}
		l.segs = append(l.segs, s.Number)
		l.segSize[s.Number] = s.Size
	}
	active := uint64(1)
	if len(segs) > 0 {
		active = segs[len(segs)-1].Number + 1
	}
	hdr := AppendSegmentHeader(nil, SegmentHeader{Number: active, MinNextID: l.nextID})
	if err := l.createSegment(active, hdr, true); err != nil {
		return nil, nil, err
	}
	l.tailSeg, l.tailOff = active, SegmentHeaderSize
	l.writtenSeg, l.writtenOff = active, SegmentHeaderSize
	l.segs = append(l.segs, active)
	l.segSize[active] = SegmentHeaderSize
	l.deleteSegments(append(empty, l.reclaimable()...))
	go l.run()
	return l, rc.res, nil
}

// lockDir creates dir if needed, takes dir/LOCK (ErrLocked if held),
// checks dir/VERSION against version (writing it into a directory without
// segments; ErrVersion if it differs) and lists the segments.
func lockDir(fsys FS, dir, version string) (io.Closer, []SegmentFile, error) {
	if err := fsys.MkdirAll(dir, DirMode); err != nil {
		return nil, nil, err
	}
	lock, err := fsys.Lock(filepath.Join(dir, LockFile))
	if err != nil {
		return nil, nil, err
	}
	if err := checkVersionOf(fsys, dir, true, version); err != nil {
		lock.Close()
		return nil, nil, err
	}
	segs, err := listSegments(fsys, dir)
	if err != nil {
		lock.Close()
		return nil, nil, err
	}
	return lock, segs, nil
}

// createSegment creates segment n, writes buf (which starts with its
// header) and, if sync, makes file and directory entry durable. Called by
// Open before run starts, or by run.
func (l *Log) createSegment(n uint64, buf []byte, sync bool) error {
	p := filepath.Join(l.opts.Dir, SegmentFileName(n))
	f, err := l.fs.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, FileMode)
	if err != nil {
		return err
	}
	if l.wf != nil {
		l.wf.Close() // already synced after its last batch
	}
	l.wf, l.wfSeg = f, n
	if _, err := f.Write(buf); err != nil {
		return err
	}
	if sync {
		if err := l.syncFile(); err != nil {
			return err
		}
		return l.fs.SyncDir(l.opts.Dir)
	}
	return nil
}

func (l *Log) syncFile() error {
	start := time.Now()
	err := l.wf.Sync()
	d := time.Since(start)
	l.fsyncs.Add(1)
	l.fsyncNanos.Add(int64(d))
	for {
		m := l.fsyncMax.Load()
		if int64(d) <= m || l.fsyncMax.CompareAndSwap(m, int64(d)) {
			break
		}
	}
	b := 4
	for i, lim := range []time.Duration{time.Millisecond, 4 * time.Millisecond, 16 * time.Millisecond, 64 * time.Millisecond} {
		if d <= lim {
			b = i
			break
		}
	}
	l.buckets[b].Add(1)
	return err
}

// usable reports why the log cannot take more records. Caller holds mu.
func (l *Log) usable() error {
	if l.failed != nil {
		return l.failed
	}
	if l.closed {
		return ErrClosed
	}
	return nil
}

// waitSpace applies back-pressure. Caller holds mu.
func (l *Log) waitSpace() error {
	for l.pendingBytes > l.maxPending && l.failed == nil && !l.closed {
		l.cond.Wait()
	}
	return l.usable()
}

func (l *Log) newChunk(seg uint64, off int64) *chunk {
	var c *chunk
	if n := len(l.freeChunks); n > 0 {
		c = l.freeChunks[n-1]
		l.freeChunks = l.freeChunks[:n-1]
	} else {
		c = &chunk{}
	}
	l.lastSeq++
	c.seq, c.seg, c.off = l.lastSeq, seg, off
	l.pending = append(l.pending, c)
	if len(l.pending) == 1 {
		select {
		case l.kick <- struct{}{}:
		default:
		}
	}
	return c
}

// reserve finds the batch for a record of size bytes, rolling the segment
// if the active one exceeds SegmentSize, and returns the batch and the
// record's position. Caller holds mu and must append exactly size bytes.
func (l *Log) reserve(size int) (*chunk, Position) {
	if l.tailOff > l.opts.SegmentSize {
		l.tailSeg++
		c := l.newChunk(l.tailSeg, 0)
		c.newSeg = true
		c.buf = AppendSegmentHeader(c.buf, SegmentHeader{Number: l.tailSeg, MinNextID: l.nextID})
		c.size = len(c.buf)
		l.pendingBytes += len(c.buf)
		l.tailOff = SegmentHeaderSize
	} else if n := len(l.pending); n == 0 || l.pending[n-1].seg != l.tailSeg ||
		(l.pending[n-1].size > 0 && (l.opts.Sync == SyncAlways || l.pending[n-1].size+size > l.opts.MaxBatchBytes)) {
		l.newChunk(l.tailSeg, l.tailOff)
	}
	c := l.pending[len(l.pending)-1]
	pos := Position{Segment: l.tailSeg, Offset: l.tailOff}
	l.tailOff += int64(size)
	l.pendingBytes += size
	c.size += size
	return c, pos
}

// Append encodes m into the pending batch, assigns m.ID, and returns the
// record's position at once; it blocks only for back-pressure when the
// pending data is huge. done (may be nil) is called exactly once, from the
// commit goroutine, after the fsync covering the record (nil) or with the
// write/fsync error; done callbacks fire in append order and must not
// block, nor call anything that may wait for the commit goroutine (Sync,
// Close, ReadMessage of a pending record, or Append/Ack/DropQueue, which
// can wait for back-pressure). If Append returns an error, done is never
// called. A body of 64 KiB or more is written from m.Body itself, not
// copied: the caller must not change it until done is called.
func (l *Log) Append(m *Message, done func(error)) (Position, error) {
	if len(m.Queues) == 0 {
		return Position{}, errors.New("wal: message has no queues")
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.waitSpace(); err != nil {
		return Position{}, err
	}
	m.ID = l.nextID
	size := messageRecordSize(m)
	if size > MaxRecordSize {
		return Position{}, ErrTooLarge
	}
	c, pos := l.reserve(size)
	l.nextID++
	if len(m.Body) >= inPlaceMin {
		c.buf = appendMessageRecordHead(c.buf, m)
		c.bodies = append(c.bodies, bodyRef{at: len(c.buf), b: m.Body})
	} else {
		c.buf = AppendMessageRecord(c.buf, m)
	}
	c.cbs = append(c.cbs, done)
	c.msgs++
	for _, q := range m.Queues {
		qm := l.qsegs[q]
		if qm == nil {
			qm = map[uint64]int64{}
			l.qsegs[q] = qm
		}
		qm[pos.Segment]++
	}
	l.segLive[pos.Segment] += int64(len(m.Queues))
	return pos, nil
}

// maxRefsPerRecord splits huge acks into several records.
const maxRefsPerRecord = 1 << 16

// Ack durably records that queue q acked (or dropped) the messages refs.
// It is group-committed like Append; done (may be nil) is called once the
// ack is durable, in order with Append callbacks. If the log is closed or
// failed, done is called with the error before Ack returns. Each
// (queue, message) must be acked at most once.
func (l *Log) Ack(q uint64, refs []Ref, done func(error)) {
	for len(refs) > maxRefsPerRecord {
		l.ack(q, refs[:maxRefsPerRecord], nil)
		refs = refs[maxRefsPerRecord:]
	}
	l.ack(q, refs, done)
}

func (l *Log) ack(q uint64, refs []Ref, done func(error)) {
	size := ackRecordSize(q, refs)
	l.mu.Lock()
	if err := l.waitSpace(); err != nil {
		l.mu.Unlock()
		if done != nil {
			done(err)
		}
		return
	}
	c, _ := l.reserve(size)
	c.buf = AppendAckRecord(c.buf, q, refs)
	c.cbs = append(c.cbs, done)
	c.others++
	qm := l.qsegs[q]
	for _, r := range refs {
		if qm[r.Segment] <= 0 {
			continue // unknown or already dropped: nothing to release
		}
		if qm[r.Segment]--; qm[r.Segment] == 0 {
			delete(qm, r.Segment)
		}
		if n := len(c.rel); n > 0 && c.rel[n-1].seg == r.Segment {
			c.rel[n-1].n++
		} else {
			c.rel = append(c.rel, release{seg: r.Segment, n: 1})
		}
	}
	if qm != nil && len(qm) == 0 {
		delete(l.qsegs, q)
	}
	l.mu.Unlock()
}

// DropQueue durably records that queue q was deleted: every message of q
// appended before this call is dead. done is handled as for Ack.
func (l *Log) DropQueue(q uint64, done func(error)) {
	l.mu.Lock()
	if err := l.waitSpace(); err != nil {
		l.mu.Unlock()
		if done != nil {
			done(err)
		}
		return
	}
	c, _ := l.reserve(RecordHeaderSize + 2 + uvarintLen(q) + uvarintLen(l.nextID))
	c.buf = AppendDropRecord(c.buf, q, l.nextID)
	c.cbs = append(c.cbs, done)
	c.others++
	for seg, n := range l.qsegs[q] {
		c.rel = append(c.rel, release{seg: seg, n: n})
	}
	delete(l.qsegs, q)
	l.mu.Unlock()
}

// run is the commit goroutine: it takes one batch at a time, writes it
// with one write, fsyncs once, fires its callbacks in order, then releases
// references and deletes reclaimable segments.
func (l *Log) run() {
	defer close(l.stopped)
	for {
		l.mu.Lock()
		if len(l.pending) == 0 {
			closed := l.closed
			l.mu.Unlock()
			if closed {
				return
			}
			<-l.kick
			continue
		}
		if l.opts.BatchDelay > 0 && len(l.pending) == 1 && !l.closed {
			// Let more appends join the open batch.
			l.mu.Unlock()
			time.Sleep(l.opts.BatchDelay)
			l.mu.Lock()
		}
		// Every pending batch of the same segment joins this round: while
		// the last fsync ran, appends filled them, and one fsync for all
		// costs less than one each (the disk's flush has a fixed cost).
		// SyncAlways keeps its fsync per record.
		n := 1
		for n < len(l.pending) && l.opts.Sync != SyncAlways && !l.pending[n].newSeg && l.pending[n].seg == l.pending[0].seg {
			n++
		}
		group := append(l.group[:0], l.pending[:n]...)
		clear(l.pending[:n])
		l.pending = l.pending[n:]
		failed := l.failed
		l.mu.Unlock()
		if failed != nil {
			l.fail(group, failed)
		} else {
			l.commit(group)
		}
		clear(group)
		l.group = group[:0]
	}
}

// commit writes the batches of group, which share one segment and are in
// sequence order, fsyncs once and fires their callbacks in order.
func (l *Log) commit(group []*chunk) {
	var err error
	first, last := group[0], group[len(group)-1]
	if first.newSeg {
		err = l.createSegment(first.seg, nil, false)
		if err == nil {
			l.mu.Lock()
			l.segs = append(l.segs, first.seg)
			l.segSize[first.seg] = 0
			l.mu.Unlock()
		}
	}
	size := 0
	for _, c := range group {
		if err == nil {
			err = c.write(l.wf)
		}
		size += c.size
	}
	if err == nil {
		l.mu.Lock()
		l.writtenSeg, l.writtenOff = last.seg, last.off+int64(last.size)
		l.segSize[first.seg] += int64(size)
		l.pendingBytes -= size
		l.cond.Broadcast()
		l.mu.Unlock()
		if l.opts.Sync != SyncNever {
			err = l.syncFile()
			if err == nil && first.newSeg {
				err = l.fs.SyncDir(l.opts.Dir)
			}
		}
	}
	l.batches.Add(1)
	if err != nil {
		l.fail(group, err)
		return
	}
	for _, c := range group {
		l.records.Add(uint64(c.msgs))
		l.others.Add(uint64(c.others))
		l.bytes.Add(uint64(c.size))
		for _, cb := range c.cbs {
			if cb != nil {
				cb(nil)
			}
		}
	}
	l.mu.Lock()
	l.committedSeq = last.seq
	for _, c := range group {
		for _, r := range c.rel {
			if l.segLive[r.seg] -= r.n; l.segLive[r.seg] <= 0 {
				delete(l.segLive, r.seg)
			}
		}
	}
	n := 0
	for n < len(l.barriers) && l.barriers[n].seq <= last.seq {
		n++
	}
	del := l.reclaimable()
	for _, c := range group {
		l.recycle(c)
	}
	due := l.barriers[:n:n]
	l.barriers = l.barriers[n:]
	if len(l.barriers) == 0 {
		l.barriers = nil // let the fired prefix's array go
	}
	l.cond.Broadcast()
	l.mu.Unlock()
	for _, b := range due {
		b.done(nil)
	}
	clear(due) // the array may live on under l.barriers: drop the closures
	l.deleteSegments(del)
}

// write writes the chunk to f: buf with each body at its place, one
// write per piece (no copy of a large body into buf).
func (c *chunk) write(f File) error {
	if len(c.bodies) == 0 {
		_, err := f.Write(c.buf)
		return err
	}
	prev := 0
	for _, r := range c.bodies {
		if r.at > prev {
			if _, err := f.Write(c.buf[prev:r.at]); err != nil {
				return err
			}
		}
		if _, err := f.Write(r.b); err != nil {
			return err
		}
		prev = r.at
	}
	if prev < len(c.buf) {
		_, err := f.Write(c.buf[prev:])
		return err
	}
	return nil
}

// recycle returns a committed chunk to the free list. Caller holds mu.
func (l *Log) recycle(c *chunk) {
	if cap(c.buf) > 2*l.opts.MaxBatchBytes || len(l.freeChunks) >= 4 {
		return
	}
	clear(c.cbs)
	clear(c.bodies) // written: don't pin them
	*c = chunk{buf: c.buf[:0], bodies: c.bodies[:0], cbs: c.cbs[:0], rel: c.rel[:0]}
	l.freeChunks = append(l.freeChunks, c)
}

// fail puts the log into its failed state and fails group and every
// pending batch. Called by run.
func (l *Log) fail(group []*chunk, err error) {
	l.mu.Lock()
	first := l.failed == nil
	if first {
		l.failed = fmt.Errorf("%w: %w", ErrFailed, err)
	}
	err = l.failed
	rest := l.pending
	l.pending = nil
	l.pendingBytes = 0
	barriers := l.barriers
	l.barriers = nil
	l.cond.Broadcast()
	l.mu.Unlock()
	if first && l.opts.OnFailure != nil {
		l.opts.OnFailure(err)
	}
	for _, ch := range append(group[:len(group):len(group)], rest...) {
		for _, cb := range ch.cbs {
			if cb != nil {
				cb(err)
			}
		}
	}
	for _, b := range barriers {
		b.done(err)
	}
}

// reclaimable pops the segments that can be deleted: oldest first, while
// the oldest has no live references, is older than the segment being
// written and is not marked corrupt. Caller holds mu and is run, or is
// Open before run starts.
func (l *Log) reclaimable() []uint64 {
	var del []uint64
	for len(l.segs) > 0 {
		s := l.segs[0]
		if s >= l.wfSeg || l.segLive[s] > 0 || l.corrupt[s] {
			break
		}
		del = append(del, s)
		l.segs = l.segs[1:]
		delete(l.segLive, s)
		delete(l.segSize, s)
	}
	return del
}

// deleteSegments removes segment files (called by run or Open).
func (l *Log) deleteSegments(del []uint64) {
	for _, s := range del {
		l.readMu.Lock()
		if f := l.readers[s]; f != nil {
			f.Close()
			delete(l.readers, s)
		}
		l.readMu.Unlock()
		if err := l.fs.Remove(filepath.Join(l.opts.Dir, SegmentFileName(s))); err == nil {
			l.reclaimed.Add(1)
		}
	}
}

func (l *Log) reader(seg uint64) (File, error) {
	l.readMu.Lock()
	defer l.readMu.Unlock()
	if f := l.readers[seg]; f != nil {
		return f, nil
	}
	f, err := l.fs.Open(filepath.Join(l.opts.Dir, SegmentFileName(seg)))
	if err != nil {
		return nil, fmt.Errorf("%w: segment %d: %w", ErrNotFound, seg, err)
	}
	l.readers[seg] = f
	return f, nil
}

// ReadMessage reads back the message record at pos and verifies its CRC.
// A record not yet written waits for its batch's write.
func (l *Log) ReadMessage(pos Position) (*Message, error) {
	l.mu.Lock()
	for pos.Segment > l.writtenSeg || (pos.Segment == l.writtenSeg && pos.Offset >= l.writtenOff) {
		if l.failed != nil || l.closed {
			err := l.usable()
			l.mu.Unlock()
			return nil, err
		}
		if pos.Segment > l.tailSeg || (pos.Segment == l.tailSeg && pos.Offset >= l.tailOff) {
			l.mu.Unlock()
			return nil, ErrNotFound
		}
		l.cond.Wait()
	}
	closed := l.closed
	l.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	f, err := l.reader(pos.Segment)
	if err != nil {
		return nil, err
	}
	return readMessageAt(f, pos)
}

// readMessageAt reads and verifies the message record at pos from f.
func readMessageAt(f File, pos Position) (*Message, error) {
	var h [RecordHeaderSize + 2]byte
	if _, err := f.ReadAt(h[:], pos.Offset); err != nil {
		return nil, fmt.Errorf("%w: %v: %w", ErrNotFound, pos, err)
	}
	length := int64(h[0]) | int64(h[1])<<8 | int64(h[2])<<16 | int64(h[3])<<24
	if length < 2 || length > MaxRecordSize-RecordHeaderSize {
		return nil, fmt.Errorf("%w: %v: invalid record length %d", ErrNotFound, pos, length)
	}
	if length > 64<<10 {
		// Never allocate a large hostile length: it must fit in the file.
		st, err := f.Stat()
		if err != nil {
			return nil, err
		}
		if pos.Offset+RecordHeaderSize+length > st.Size() {
			return nil, fmt.Errorf("%w: %v: record length %d exceeds file", ErrNotFound, pos, length)
		}
	}
	if RecordType(h[8]) != RecordMessage {
		return nil, fmt.Errorf("%w: %v: record type %v", ErrNotFound, pos, RecordType(h[8]))
	}
	buf := make([]byte, RecordHeaderSize+length)
	if _, err := f.ReadAt(buf, pos.Offset); err != nil {
		return nil, fmt.Errorf("%w: %v: %w", ErrNotFound, pos, err)
	}
	var sc segScanner
	sc.buf, sc.n, sc.size = buf, len(buf), int64(len(buf))
	var r scannedRecord
	ok, reason, _ := sc.check(0, &r)
	if !ok {
		return nil, &CorruptionError{File: SegmentFileName(pos.Segment), Segment: pos.Segment, Offset: pos.Offset, Length: int64(len(buf)), Reason: reason}
	}
	return decodeMessage(r.payload, r.ver, false)
}

// Sync waits until everything appended before the call is durable.
func (l *Log) Sync() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	target := l.lastSeq
	for l.committedSeq < target && l.failed == nil {
		l.cond.Wait()
	}
	return l.failed
}

// Barrier calls done once everything appended before the call (messages,
// acks, drops) is durable: with nil after the fsync covering it (at once,
// before Barrier returns, if it already is), or with the error that failed
// the log or ErrClosed. It never waits: done runs later on the commit
// goroutine, after the callbacks of the records it covers, under the same
// rules as theirs (it must not block, nor call what may wait for the commit
// goroutine). It costs no write or fsync of its own: it rides on the batch
// that holds the newest record.
func (l *Log) Barrier(done func(error)) {
	l.mu.Lock()
	if err := l.usable(); err != nil {
		l.mu.Unlock()
		done(err)
		return
	}
	if l.committedSeq == l.lastSeq {
		l.mu.Unlock()
		done(nil)
		return
	}
	l.barriers = append(l.barriers, barrier{seq: l.lastSeq, done: done})
	l.mu.Unlock()
}

// Close syncs everything pending, stops the commit goroutine, closes the
// files and releases the lock. It returns the failure error, if any.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	l.closed = true
	l.cond.Broadcast()
	l.mu.Unlock()
	select {
	case l.kick <- struct{}{}:
	default:
	}
	<-l.stopped
	var err error
	if l.wf != nil {
		if l.opts.Sync == SyncNever {
			err = l.wf.Sync()
		}
		if cerr := l.wf.Close(); err == nil {
			err = cerr
		}
	}
	l.readMu.Lock()
	for s, f := range l.readers {
		f.Close()
		delete(l.readers, s)
	}
	l.readMu.Unlock()
	l.lock.Close()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failed != nil {
		return l.failed
	}
	return err
}

// Stats returns a snapshot of the log's counters.
func (l *Log) Stats() Stats {
	s := Stats{
		Batches:           l.batches.Load(),
		Fsyncs:            l.fsyncs.Load(),
		AppendedRecords:   l.records.Load(),
		AppendedBytes:     l.bytes.Load(),
		AckRecords:        l.others.Load(),
		ReclaimedSegments: l.reclaimed.Load(),
		FsyncTotal:        time.Duration(l.fsyncNanos.Load()),
		FsyncMax:          time.Duration(l.fsyncMax.Load()),
	}
	for i := range s.FsyncBuckets {
		s.FsyncBuckets[i] = l.buckets[i].Load()
	}
	l.mu.Lock()
	s.Segments = len(l.segs)
	for _, n := range l.segSize {
		s.DiskBytes += n
	}
	s.Failed = l.failed
	l.mu.Unlock()
	return s
}
