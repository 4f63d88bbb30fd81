package wal

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Recovered is what Open (or Reader.Recover) rebuilt from the segments.
type Recovered struct {
	// Queues holds every queue with live messages or a corruption mark.
	Queues map[uint64]*RecoveredQueue
	// NextID is the id the next appended message gets.
	NextID   uint64
	Segments int           // segment files scanned
	Records  int           // valid records scanned
	Messages int           // valid message records scanned
	Bytes    int64         // bytes scanned
	Duration time.Duration // time the scan took
	// TruncatedTail is the torn tail of the last segment (nil if none).
	// Open cuts it; Reader.Recover only reports it.
	TruncatedTail *TornTail
	// Corruptions lists bad records found anywhere but the torn tail.
	Corruptions []*CorruptionError
}

// RecoveredQueue is the recovered state of one durable queue.
type RecoveredQueue struct {
	ID uint64
	// Entries are the live messages in ascending ID (= original) order.
	Entries []Entry
	// Corrupt reports that a corrupt record may have held messages or acks
	// of this queue.
	Corrupt bool
}

// Entry locates one live message of a queue.
type Entry struct {
	ID   uint64
	Pos  Position
	Size uint32 // record size in bytes, for byte accounting
	// BodySize is the body's size, for queue length limits in bytes.
	BodySize uint32
	Meta     Meta
}

// TornTail describes a partial write at the end of the last segment.
type TornTail struct {
	File   string
	Offset int64 // where the valid data ends
	Bytes  int64 // bytes after Offset
	Reason string
}

// CorruptionError is a bad record (or region) that is not a torn tail.
type CorruptionError struct {
	File    string
	Segment uint64
	Offset  int64
	// Length is the number of bytes skipped (up to the next valid record or
	// the end of the file).
	Length int64
	Reason string
	// Queues are the queues the bad record names, if its header could be
	// read; empty means unknown (any queue may be affected).
	Queues []uint64
}

// Error describes the corruption with file, offset and affected queues.
func (e *CorruptionError) Error() string {
	q := "unknown queues"
	if len(e.Queues) > 0 {
		q = fmt.Sprintf("queues %v", e.Queues)
	}
	return fmt.Sprintf("wal: corruption in %s at offset %d (%d bytes, %s): %s", e.File, e.Offset, e.Length, q, e.Reason)
}

// SegmentFile is one segment file in the log directory.
type SegmentFile struct {
	Number uint64
	Path   string
	Size   int64
}

const segSuffix = ".wal"

// SegmentFileName returns the file name of segment n.
func SegmentFileName(n uint64) string { return fmt.Sprintf("%020d%s", n, segSuffix) }

func parseSegmentName(name string) (uint64, bool) {
	if !strings.HasSuffix(name, segSuffix) || len(name) != 20+len(segSuffix) {
		return 0, false
	}
	n, err := strconv.ParseUint(strings.TrimSuffix(name, segSuffix), 10, 64)
	return n, err == nil && n > 0
}

// listSegments returns the segment files of dir in ascending order.
func listSegments(fsys FS, dir string) ([]SegmentFile, error) {
	names, err := fsys.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var segs []SegmentFile
	for _, name := range names {
		n, ok := parseSegmentName(name)
		if !ok {
			continue
		}
		p := filepath.Join(dir, name)
		f, err := fsys.Open(p)
		if err != nil {
			return nil, err
		}
		st, err := f.Stat()
		f.Close()
		if err != nil {
			return nil, err
		}
		segs = append(segs, SegmentFile{Number: n, Path: p, Size: st.Size()})
	}
	slices.SortFunc(segs, func(a, b SegmentFile) int {
		switch {
		case a.Number < b.Number:
			return -1
		case a.Number > b.Number:
			return 1
		}
		return 0
	})
	return segs, nil
}

// qstate is a queue being rebuilt.
type qstate struct {
	entries []Entry
	acks    []uint64
	corrupt bool
}

// recovery is the state of one recovery scan. Used by one goroutine.
type recovery struct {
	res      *Recovered
	queues   map[uint64]*qstate
	maxID    uint64 // highest id seen + 1
	scratch  []uint64
	seg      SegmentFile
	corrupt  map[uint64]bool // segments with corruptions (never reclaimed)
	segLive  map[uint64]int64
	qsegs    map[uint64]map[uint64]int64
	lastQ    uint64
	lastQS   *qstate
	total    int64 // bytes of all the segments to scan
	ackFn    func(q uint64, r Ref)
	existing []SegmentFile // segments that remain after recovery
}

func (rc *recovery) queue(q uint64) *qstate {
	if rc.lastQS != nil && rc.lastQ == q {
		return rc.lastQS
	}
	qs := rc.queues[q]
	if qs == nil {
		qs = &qstate{}
		rc.queues[q] = qs
	}
	rc.lastQ, rc.lastQS = q, qs
	return qs
}

func (rc *recovery) corruption(c *CorruptionError) {
	rc.res.Corruptions = append(rc.res.Corruptions, c)
	rc.corrupt[c.Segment] = true
	for _, q := range c.Queues {
		rc.queue(q).corrupt = true
	}
}

func (rc *recovery) onRecord(r *scannedRecord) error {
	rc.res.Records++
	rc.res.Bytes += int64(r.size)
	var err error
	switch r.typ {
	case RecordMessage:
		var id uint64
		var meta Meta
		var rest, body []byte
		id, rc.scratch, meta, rest, err = decodeMessageHead(r.payload, r.ver, rc.scratch[:0])
		if err == nil {
			_, _, _, body, err = messageFields(rest)
		}
		if err != nil {
			break
		}
		rc.res.Messages++
		if id+1 > rc.maxID {
			rc.maxID = id + 1
		}
		e := Entry{ID: id, Pos: Position{Segment: rc.seg.Number, Offset: r.off}, Size: r.size, BodySize: uint32(len(body)), Meta: meta}
		for _, q := range rc.scratch {
			qs := rc.queue(q)
			if len(qs.entries) == cap(qs.entries) && len(qs.entries) >= 1024 {
				qs.entries = append(make([]Entry, 0, rc.grownCap(len(qs.entries))), qs.entries...)
			}
			qs.entries = append(qs.entries, e)
		}
	case RecordAck:
		_, _, err = decodeAck(r.payload, rc.ackFn)
	case RecordDropQueue:
		var q, before uint64
		q, before, err = decodeDrop(r.payload)
		if err != nil {
			break
		}
		if before > rc.maxID {
			rc.maxID = before
		}
		if qs := rc.queues[q]; qs != nil {
			qs.entries = slices.DeleteFunc(qs.entries, func(e Entry) bool { return e.ID < before })
			qs.acks = slices.DeleteFunc(qs.acks, func(id uint64) bool { return id < before })
		}
	}
	if err != nil {
		rc.corruption(&CorruptionError{File: rc.seg.Path, Segment: rc.seg.Number, Offset: r.off, Length: int64(r.size),
			Reason: fmt.Sprintf("malformed %v payload", r.typ), Queues: hintQueues(r.typ, r.ver, r.payload)})
	}
	return nil
}

// grownCap is the capacity a queue's full list of n entries grows to: what
// the share of the log scanned so far says the whole log holds for it (5 %
// over), and at least twice n. Doubling alone copied a long queue's
// entries about twice in all and allocated twice their size, which was a
// fifth of recovering a million messages; the estimate grows a queue that
// fills the log once, after its first segment.
func (rc *recovery) grownCap(n int) int {
	grown := 2 * n
	if done := rc.res.Bytes; done > 0 && rc.total > done {
		est := float64(n) * float64(rc.total) / float64(done) * 1.05
		if est > float64(grown) && est < float64(maxEntries) {
			grown = int(est)
		}
	}
	return grown
}

// maxEntries bounds grownCap's estimate: no log holds more records.
const maxEntries = 1 << 40

func (rc *recovery) onAck(q uint64, r Ref) {
	if r.ID+1 > rc.maxID {
		rc.maxID = r.ID + 1
	}
	if qs := rc.queues[q]; qs != nil {
		qs.acks = append(qs.acks, r.ID)
	}
}

// runRecovery scans segs in order. If truncate is set the torn tail of the
// last segment is cut (or an empty last segment removed) through fsys.
func runRecovery(fsys FS, segs []SegmentFile, truncate bool) (*recovery, error) {
	start := time.Now()
	rc := &recovery{
		res:     &Recovered{Queues: map[uint64]*RecoveredQueue{}},
		queues:  map[uint64]*qstate{},
		corrupt: map[uint64]bool{},
		maxID:   1,
	}
	for _, seg := range segs {
		rc.total += seg.Size
	}
	rc.ackFn = rc.onAck
	// Recovery keeps nothing of a record past onRecord, and truncates only
	// after a segment's scan: it may map the segments.
	sc := segScanner{mapFiles: true}
	for i, seg := range segs {
		rc.seg = seg
		last := i == len(segs)-1
		f, err := fsys.Open(seg.Path)
		if err != nil {
			return nil, err
		}
		var bads []*badRegion
		hdr, err := sc.scanSegment(f, seg.Size, rc.onRecord, func(b *badRegion) error {
			bads = append(bads, b)
			return nil
		})
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("wal: reading %s: %w", seg.Path, err)
		}
		rc.res.Segments++
		if hdr.MinNextID > rc.maxID {
			rc.maxID = hdr.MinNextID
		}
		keep := true
		for j, b := range bads {
			end := b.resync
			if end < 0 {
				end = seg.Size
			}
			if last && j == len(bads)-1 && b.resync < 0 {
				// Torn tail: nothing valid follows in the last segment.
				rc.res.TruncatedTail = &TornTail{File: seg.Path, Offset: b.off, Bytes: seg.Size - b.off, Reason: b.reason}
				if b.off == 0 && len(bads) == 1 {
					keep = false // not even a header: the file never held data
				}
				if truncate {
					if err := cutTail(fsys, seg, b.off, keep); err != nil {
						return nil, err
					}
				}
				continue
			}
			rc.corruption(&CorruptionError{File: seg.Path, Segment: seg.Number, Offset: b.off, Length: end - b.off, Reason: b.reason, Queues: b.queues})
		}
		if keep {
			if rc.res.TruncatedTail != nil && last && truncate {
				seg.Size = rc.res.TruncatedTail.Offset
			}
			rc.existing = append(rc.existing, seg)
		}
	}
	rc.finish()
	rc.res.Duration = time.Since(start)
	return rc, nil
}

func cutTail(fsys FS, seg SegmentFile, off int64, keep bool) error {
	if !keep {
		if err := fsys.Remove(seg.Path); err != nil {
			return err
		}
		return fsys.SyncDir(filepath.Dir(seg.Path))
	}
	f, err := fsys.OpenFile(seg.Path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	err = f.Truncate(off)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("wal: truncating torn tail of %s: %w", seg.Path, err)
	}
	return nil
}

// finish applies acks and builds the result and reclaim counts.
func (rc *recovery) finish() {
	rc.res.NextID = rc.maxID
	rc.segLive = map[uint64]int64{}
	rc.qsegs = map[uint64]map[uint64]int64{}
	for q, qs := range rc.queues {
		if len(qs.acks) > 0 {
			if !slices.IsSorted(qs.acks) {
				slices.Sort(qs.acks)
			}
			acks := qs.acks
			qs.entries = slices.DeleteFunc(qs.entries, func(e Entry) bool {
				for len(acks) > 0 && acks[0] < e.ID {
					acks = acks[1:]
				}
				return len(acks) > 0 && acks[0] == e.ID
			})
			qs.acks = nil
		}
		if len(qs.entries) == 0 && !qs.corrupt {
			continue
		}
		rq := &RecoveredQueue{ID: q, Entries: qs.entries, Corrupt: qs.corrupt}
		rc.res.Queues[q] = rq
		var cur uint64
		var n int64
		m := map[uint64]int64{}
		for _, e := range qs.entries {
			if e.Pos.Segment != cur {
				if n > 0 {
					m[cur] += n
					rc.segLive[cur] += n
				}
				cur, n = e.Pos.Segment, 0
			}
			n++
		}
		if n > 0 {
			m[cur] += n
			rc.segLive[cur] += n
		}
		if len(m) > 0 {
			rc.qsegs[q] = m
		}
	}
}

// Reader reads a log directory without locking or writing anything; it is
// meant for offline tools and may see a torn tail that Open would cut.
type Reader struct {
	fs   FS
	dir  string
	segs []SegmentFile
}

// OpenReader opens dir on the OS file system for reading.
func OpenReader(dir string) (*Reader, error) { return OpenReaderFS(OSFS{}, dir) }

// OpenReaderFS opens dir on fsys for reading. It checks the VERSION file.
func OpenReaderFS(fsys FS, dir string) (*Reader, error) {
	if err := checkVersion(fsys, dir, false); err != nil {
		return nil, err
	}
	segs, err := listSegments(fsys, dir)
	if err != nil {
		return nil, err
	}
	return &Reader{fs: fsys, dir: dir, segs: segs}, nil
}

// OpenReaderUnchecked is OpenReaderFS without the VERSION check, for repair
// tools that must read a directory whose VERSION file is missing.
func OpenReaderUnchecked(fsys FS, dir string) (*Reader, error) {
	segs, err := listSegments(fsys, dir)
	if err != nil {
		return nil, err
	}
	return &Reader{fs: fsys, dir: dir, segs: segs}, nil
}

// WriteVersionFile atomically (re)writes dir/VERSION for this format.
func WriteVersionFile(fsys FS, dir string) error {
	return writeFileAtomic(fsys, filepath.Join(dir, VersionFile), []byte(versionContent))
}

// CheckVersion reports whether dir/VERSION names this format: nil if it
// does, an error wrapping fs.ErrNotExist if it is missing, ErrVersion if it
// names another one.
func CheckVersion(fsys FS, dir string) error {
	f, err := fsys.Open(filepath.Join(dir, VersionFile))
	if err != nil {
		return err
	}
	f.Close()
	return checkVersion(fsys, dir, false)
}

// Segments returns the segment files in ascending order.
func (r *Reader) Segments() []SegmentFile { return slices.Clone(r.segs) }

// Recover runs the same scan as Open, without truncating anything.
func (r *Reader) Recover() (*Recovered, error) {
	rc, err := runRecovery(r.fs, r.segs, false)
	if err != nil {
		return nil, err
	}
	return rc.res, nil
}

// ScanEvent is one step of Reader.Scan: a valid record, or (Problem set) a
// bad region of Length bytes starting at Offset.
type ScanEvent struct {
	Segment SegmentFile
	Offset  int64
	Size    uint32 // record size (valid records only)
	Type    RecordType
	Version uint8 // the record's payload version (valid records only)
	// Payload is the verified payload; valid only during the callback.
	Payload []byte
	// Problem is set for a bad region; Torn tells whether it is the torn
	// tail of the last segment.
	Problem *CorruptionError
	Torn    bool
}

// Message decodes a message record event.
func (e *ScanEvent) Message() (*Message, error) {
	if e.Type != RecordMessage || e.Problem != nil {
		return nil, errors.New("wal: not a message record")
	}
	return decodeMessage(e.Payload, e.Version, true)
}

// Ack decodes an ack record event.
func (e *ScanEvent) Ack() (q uint64, refs []Ref, err error) {
	if e.Type != RecordAck || e.Problem != nil {
		return 0, nil, errors.New("wal: not an ack record")
	}
	q, _, err = decodeAck(e.Payload, func(_ uint64, r Ref) { refs = append(refs, r) })
	return q, refs, err
}

// Drop decodes a drop-queue record event.
func (e *ScanEvent) Drop() (q, before uint64, err error) {
	if e.Type != RecordDropQueue || e.Problem != nil {
		return 0, 0, errors.New("wal: not a drop-queue record")
	}
	return decodeDrop(e.Payload)
}

// Raw returns a copy of the whole verified record (header included) of a
// valid record event, for tools that rewrite segments.
func (e *ScanEvent) Raw() []byte {
	b := make([]byte, 0, e.Size)
	switch e.Type {
	case RecordMessage, RecordAck, RecordDropQueue:
		b, start := beginRecord(b, e.Type, e.Version)
		b = append(b, e.Payload...)
		return finishRecord(b, start)
	}
	return nil
}

// ScanSegment walks one segment, calling fn for each record and bad region
// in file order, and returns the segment header (zero if unreadable).
func (r *Reader) ScanSegment(seg SegmentFile, fn func(*ScanEvent) error) (SegmentHeader, error) {
	f, err := r.fs.Open(seg.Path)
	if err != nil {
		return SegmentHeader{}, err
	}
	defer f.Close()
	last := len(r.segs) > 0 && r.segs[len(r.segs)-1].Number == seg.Number
	var sc segScanner
	ev := &ScanEvent{Segment: seg}
	return sc.scanSegment(f, seg.Size, func(rec *scannedRecord) error {
		*ev = ScanEvent{Segment: seg, Offset: rec.off, Size: rec.size, Type: rec.typ, Version: rec.ver, Payload: rec.payload}
		return fn(ev)
	}, func(b *badRegion) error {
		end := b.resync
		if end < 0 {
			end = seg.Size
		}
		*ev = ScanEvent{Segment: seg, Offset: b.off, Torn: last && b.resync < 0,
			Problem: &CorruptionError{File: seg.Path, Segment: seg.Number, Offset: b.off, Length: end - b.off, Reason: b.reason, Queues: b.queues}}
		return fn(ev)
	})
}

// versionContent is the content of Dir/VERSION.
var versionContent = fmt.Sprintf("amqp-go-wal %d\n", FormatVersion)

// VersionFile is the name of the storage version file in a log directory.
const VersionFile = "VERSION"

// LockFile is the name of the lock file in a log directory.
const LockFile = "LOCK"

// checkVersion verifies Dir/VERSION; with create it writes a missing one
// into a directory that holds no segments.
func checkVersion(fsys FS, dir string, create bool) error {
	return checkVersionOf(fsys, dir, create, versionContent)
}

// checkVersionOf is checkVersion for a log whose VERSION file says
// want.
func checkVersionOf(fsys FS, dir string, create bool, want string) error {
	p := filepath.Join(dir, VersionFile)
	f, err := fsys.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		segs, lerr := listSegments(fsys, dir)
		if lerr != nil {
			return lerr
		}
		if len(segs) > 0 {
			return fmt.Errorf("%w: %s has segments but no VERSION file", ErrVersion, dir)
		}
		if !create {
			return fmt.Errorf("%w: %s has no VERSION file (not a log directory?)", ErrVersion, dir)
		}
		return writeFileAtomic(fsys, p, []byte(want))
	}
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 64)
	n, _ := f.ReadAt(buf, 0)
	if string(buf[:n]) != want {
		return fmt.Errorf("%w: %s says %q, want %q", ErrVersion, p, strings.TrimSpace(string(buf[:n])), strings.TrimSpace(want))
	}
	return nil
}

// writeFileAtomic writes data to a temporary file, syncs it, renames it
// over name and syncs the directory.
func writeFileAtomic(fsys FS, name string, data []byte) error {
	tmp := name + ".tmp"
	f, err := fsys.Create(tmp)
	if err != nil {
		return err
	}
	if _, err = f.Write(data); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = fsys.Rename(tmp, name)
	}
	if err == nil {
		err = fsys.SyncDir(filepath.Dir(name))
	}
	return err
}
