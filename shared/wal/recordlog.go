package wal

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
)

// RecordLog is a log of records in the segment format whose payloads its
// user defines (the Raft log of package raftlog). Unlike Log it has no
// commit goroutine and no reclaim rule of its own: Write is synchronous,
// one write and one fdatasync for all the records given, and the user
// decides which segments to roll and remove.
//
// A RecordLog is used by one goroutine at a time (its owner, the Raft
// driver loop); it does no locking of its own.
type RecordLog struct {
	opts RecordLogOptions
	fs   FS
	lock io.Closer
	f    File   // active segment; nil until the first Roll
	seg  uint64 // its number
	size int64  // its size
	// head is the size of its header and checkpoint (Roll's first), which
	// ShouldRoll does not count: a checkpoint as large as a segment (a
	// Raft snapshot of a big queue) would otherwise make every write roll
	// again, each new segment another copy of it. 0 for a segment found
	// at open.
	head   int64
	segs   []uint64 // segment files, ascending, the active one last
	failed error
}

// RecordLogOptions configure OpenRecordLog.
type RecordLogOptions struct {
	Dir string
	// SegmentSize is the size past which ShouldRoll says so (default
	// 64 MiB).
	SegmentSize int64
	// NoSync skips fdatasync (tests only).
	NoSync bool
	// FS is the file system; nil means the OS file system.
	FS FS
}

// LogRecord is one valid record met by OpenRecordLog's replay. Payload is
// only valid during the callback.
type LogRecord struct {
	Segment uint64
	Offset  int64
	Type    RecordType
	Version uint8
	Payload []byte
}

// OpenRecordLog locks and checks opts.Dir like Open, then calls replay
// for every valid record of every segment in order. A bad record at the
// end of the last segment with nothing valid after it is a torn tail: it
// is cut and returned. A bad record anywhere else fails the open with a
// *CorruptionError: a log whose middle is lost cannot be replayed. So does
// an error from replay. The log has no active segment until Roll.
func OpenRecordLog(opts RecordLogOptions, replay func(*LogRecord) error) (_ *RecordLog, torn *TornTail, err error) {
	if opts.SegmentSize <= 0 {
		opts.SegmentSize = 64 << 20
	}
	if opts.FS == nil {
		opts.FS = OSFS{}
	}
	fsys := opts.FS
	lock, segs, err := lockDir(fsys, opts.Dir, raftVersionContent)
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		if err != nil {
			lock.Close()
		}
	}()
	l := &RecordLog{opts: opts, fs: fsys, lock: lock}
	sc := segScanner{known: knownRaftVersion}
	rec := &LogRecord{}
	for i, seg := range segs {
		f, err := fsys.Open(seg.Path)
		if err != nil {
			return nil, nil, err
		}
		var bad *badRegion
		_, err = sc.scanSegment(f, seg.Size, func(r *scannedRecord) error {
			*rec = LogRecord{Segment: seg.Number, Offset: r.off, Type: r.typ, Version: r.ver, Payload: r.payload}
			return replay(rec)
		}, func(b *badRegion) error {
			bad = b
			if b.resync >= 0 {
				return errStopScan // damage with valid records after it
			}
			return nil
		})
		f.Close()
		if err != nil && !errors.Is(err, errStopScan) {
			return nil, nil, fmt.Errorf("wal: reading %s: %w", seg.Path, err)
		}
		if bad != nil {
			if i < len(segs)-1 || bad.resync >= 0 {
				end := bad.resync
				if end < 0 {
					end = seg.Size
				}
				return nil, nil, &CorruptionError{File: seg.Path, Segment: seg.Number, Offset: bad.off, Length: end - bad.off, Reason: bad.reason}
			}
			torn = &TornTail{File: seg.Path, Offset: bad.off, Bytes: seg.Size - bad.off, Reason: bad.reason}
			keep := bad.off > 0
			if err := cutTail(fsys, seg, bad.off, keep); err != nil {
				return nil, nil, err
			}
			if !keep {
				continue
			}
		}
		l.segs = append(l.segs, seg.Number)
	}
	if len(segs) > 0 {
		// Numbers are never reused, even of a segment the tail cut removed.
		l.seg = segs[len(segs)-1].Number
	}
	return l, torn, nil
}

// raftVersionContent is the VERSION file of a RecordLog's directory: the
// segment format of a message log, other record types, so neither kind of
// log opens the other's directory.
var raftVersionContent = fmt.Sprintf("amqp-go-raftlog %d\n", FormatVersion)

var errStopScan = errors.New("wal: stop scan")

// StartRecord appends the header of a record of type t, version 1, to buf;
// the caller appends the payload and then calls EndRecord with start.
func StartRecord(buf []byte, t RecordType) (_ []byte, start int) {
	return beginRecord(buf, t, recordVersion)
}

// EndRecord fills in length and CRC of the record that starts at start.
func EndRecord(buf []byte, start int) []byte { return finishRecord(buf, start) }

// Roll starts a new active segment whose first records are first (the
// user's checkpoint of its state, so that older segments can go) and makes
// it durable, file and directory entry.
func (l *RecordLog) Roll(first []byte) error {
	if l.failed != nil {
		return l.failed
	}
	n := l.seg + 1
	buf := AppendSegmentHeader(make([]byte, 0, SegmentHeaderSize+len(first)), SegmentHeader{Number: n})
	buf = append(buf, first...)
	p := filepath.Join(l.opts.Dir, SegmentFileName(n))
	f, err := l.fs.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, FileMode)
	if err != nil {
		return l.fail(err)
	}
	if _, err := f.Write(buf); err != nil {
		f.Close()
		return l.fail(err)
	}
	if !l.opts.NoSync {
		if err := f.Sync(); err != nil {
			f.Close()
			return l.fail(err)
		}
		if err := l.fs.SyncDir(l.opts.Dir); err != nil {
			f.Close()
			return l.fail(err)
		}
	}
	if l.f != nil {
		l.f.Close() // synced after its last write
	}
	l.f, l.seg, l.size, l.head = f, n, int64(len(buf)), int64(len(buf))
	l.segs = append(l.segs, n)
	return nil
}

// Write appends records (whole records, as StartRecord and EndRecord make
// them) to the active segment with one write and one fdatasync, and
// returns the segment they went to. A failed write or sync fails the log:
// every later call returns the error.
func (l *RecordLog) Write(records []byte) (segment uint64, err error) {
	return l.write(records, !l.opts.NoSync)
}

// WriteNoSync is Write without the fdatasync: for records that need not
// survive a crash by themselves (a Raft commit index, which a restart
// recomputes); the next Write's sync makes them durable with its own.
func (l *RecordLog) WriteNoSync(records []byte) (segment uint64, err error) {
	return l.write(records, false)
}

func (l *RecordLog) write(records []byte, sync bool) (segment uint64, err error) {
	if l.failed != nil {
		return 0, l.failed
	}
	if l.f == nil {
		return 0, errors.New("wal: record log has no active segment (Roll first)")
	}
	if _, err := l.f.Write(records); err != nil {
		return 0, l.fail(err)
	}
	l.size += int64(len(records))
	if sync {
		if err := l.f.Sync(); err != nil {
			return 0, l.fail(err)
		}
	}
	return l.seg, nil
}

func (l *RecordLog) fail(err error) error {
	l.failed = fmt.Errorf("%w: %w", ErrFailed, err)
	return l.failed
}

// ShouldRoll reports whether the active segment has grown past
// SegmentSize beyond its checkpoint (or there is none yet).
func (l *RecordLog) ShouldRoll() bool {
	return l.f == nil || l.size-l.head >= l.opts.SegmentSize
}

// Active returns the number of the active segment (0 before the first
// Roll).
func (l *RecordLog) Active() uint64 {
	if l.f == nil {
		return 0
	}
	return l.seg
}

// Segments returns the segment files' numbers, ascending.
func (l *RecordLog) Segments() []uint64 { return slices.Clone(l.segs) }

// Remove deletes the given segments, which must not include the active
// one, and syncs the directory.
func (l *RecordLog) Remove(segs []uint64) error {
	if len(segs) == 0 {
		return nil
	}
	for _, s := range segs {
		if l.f != nil && s == l.seg {
			return fmt.Errorf("wal: cannot remove the active segment %d", s)
		}
	}
	for _, s := range segs {
		if err := l.fs.Remove(filepath.Join(l.opts.Dir, SegmentFileName(s))); err != nil {
			return err
		}
		l.segs = slices.DeleteFunc(l.segs, func(x uint64) bool { return x == s })
	}
	return l.fs.SyncDir(l.opts.Dir)
}

// Close closes the active segment and releases the lock. Everything
// written is already durable.
func (l *RecordLog) Close() error {
	var err error
	if l.f != nil {
		if l.opts.NoSync {
			err = l.f.Sync()
		}
		if cerr := l.f.Close(); err == nil {
			err = cerr
		}
		l.f = nil
	}
	l.lock.Close()
	if l.failed != nil {
		return l.failed
	}
	return err
}
