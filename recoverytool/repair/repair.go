// Package repair implements recovery-tool: offline verification, repair
// and compaction of a WAL directory. Every command takes the directory's
// LOCK first, so it refuses to run next to a live server; mutating commands
// honour DryRun by planning without writing. Repairs never delete bytes:
// whatever is cut from a segment is first copied into DIR/quarantine/, and
// unless NoBackup is set every file repair or compact changes is first
// copied whole into DIR/backup/<UTC time>/.
package repair

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/amqp-go/amqp-go/shared/wal"
)

// ErrLocked is returned when a server (or another tool) holds the lock.
var ErrLocked = errors.New("the WAL directory is locked by a running server; stop it first (recovery-tool works offline only)")

// QuarantineDir is the directory (under the WAL directory) that receives
// bytes cut out by repair.
const QuarantineDir = "quarantine"

// Lock takes the WAL directory's lock (the same flock the server takes).
func Lock(dir string) (io.Closer, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("%s is not a directory", dir)
	}
	c, err := wal.OSFS{}.Lock(filepath.Join(dir, wal.LockFile))
	if errors.Is(err, wal.ErrLocked) {
		return nil, fmt.Errorf("%s: %w", dir, ErrLocked)
	}
	return c, err
}

// VerifyReport is the outcome of Verify.
type VerifyReport struct {
	Segments      int                    `json:"segments"`
	Records       int                    `json:"records"`
	Messages      int                    `json:"messages"`
	LiveQueues    int                    `json:"live_queues"`
	Corruptions   []*wal.CorruptionError `json:"corruptions"`
	TornTail      *wal.TornTail          `json:"torn_tail,omitempty"`
	CorruptQueues []uint64               `json:"corrupt_queues,omitempty"`
}

// OK reports whether nothing needs repair.
func (r *VerifyReport) OK() bool { return len(r.Corruptions) == 0 && r.TornTail == nil }

// Verify scans dir (which the caller has locked) and reports problems.
func Verify(dir string) (*VerifyReport, error) {
	r, err := wal.OpenReader(dir)
	if err != nil {
		return nil, err
	}
	rec, err := r.Recover()
	if err != nil {
		return nil, err
	}
	rep := &VerifyReport{Segments: rec.Segments, Records: rec.Records, Messages: rec.Messages,
		Corruptions: rec.Corruptions, TornTail: rec.TruncatedTail}
	if rep.Corruptions == nil {
		rep.Corruptions = []*wal.CorruptionError{}
	}
	for id, q := range rec.Queues {
		if len(q.Entries) > 0 {
			rep.LiveQueues++
		}
		if q.Corrupt {
			rep.CorruptQueues = append(rep.CorruptQueues, id)
		}
	}
	slices.Sort(rep.CorruptQueues)
	return rep, nil
}

// Action is one change made (or, in a dry run, planned) by a command.
type Action struct {
	Kind       string `json:"kind"` // write-version, truncate, quarantine-file, rewrite, delete
	File       string `json:"file"`
	Offset     int64  `json:"offset,omitempty"`
	Bytes      int64  `json:"bytes,omitempty"`
	Quarantine string `json:"quarantine,omitempty"`
	Detail     string `json:"detail"`
}

// Report lists the actions of repair or compact.
type Report struct {
	DryRun  bool     `json:"dry_run"`
	Actions []Action `json:"actions"`
	// AffectedQueues are queues whose messages or acks may have been in
	// quarantined bytes.
	AffectedQueues []uint64 `json:"affected_queues,omitempty"`
	// UnknownQueues is set when some quarantined region named no queue.
	UnknownQueues bool `json:"unknown_queues,omitempty"`
	// Backup is this run's backup directory and BackedUp the files copied
	// into it (their original names), before any of them changed; both
	// are empty when nothing changed, on a dry run and with NoBackup.
	Backup   string   `json:"backup,omitempty"`
	BackedUp []string `json:"backed_up,omitempty"`
}

// segPlan is what repair found in one segment.
type segPlan struct {
	seg     wal.SegmentFile
	header  wal.SegmentHeader
	bad     []*wal.ScanEvent // copies of problem events
	records [][]byte         // raw valid records, kept only if a rewrite is needed
}

// Repair truncates torn tails, moves corrupt regions into quarantine and
// rewrites the affected segments with their valid records; it writes a
// missing VERSION file. The caller holds the lock.
func Repair(dir string, o Options) (*Report, error) {
	dryRun := o.DryRun
	rep := &Report{DryRun: dryRun, Actions: []Action{}}
	bk := newBackup(dir, o, rep)
	fsys := wal.OSFS{}
	verr := wal.CheckVersion(fsys, dir)
	switch {
	case errors.Is(verr, fs.ErrNotExist):
		rep.Actions = append(rep.Actions, Action{Kind: "write-version", File: wal.VersionFile, Detail: "VERSION file was missing"})
		if !dryRun {
			if err := wal.WriteVersionFile(fsys, dir); err != nil {
				return rep, err
			}
		}
	case verr != nil:
		return rep, verr // a foreign version: not ours to touch
	}
	r, err := wal.OpenReaderUnchecked(fsys, dir)
	if err != nil {
		return rep, err
	}
	rec, err := r.Recover()
	if err != nil {
		return rep, err
	}
	affected := map[uint64]bool{}
	segs := r.Segments()
	for i, seg := range segs {
		p := &segPlan{seg: seg}
		// First pass: find problems only.
		if p.header, err = r.ScanSegment(seg, func(ev *wal.ScanEvent) error {
			if ev.Problem != nil {
				c := *ev
				p.bad = append(p.bad, &c)
				for _, q := range ev.Problem.Queues {
					affected[q] = true
				}
				if len(ev.Problem.Queues) == 0 && !ev.Torn {
					rep.UnknownQueues = true
				}
			}
			return nil
		}); err != nil {
			return rep, err
		}
		if len(p.bad) == 0 {
			continue
		}
		last := i == len(segs)-1
		if len(p.bad) == 1 && p.bad[0].Torn && last {
			if err := fixTornTail(dir, p, dryRun, bk, rep); err != nil {
				return rep, err
			}
			continue
		}
		// Second pass: collect the valid records and rewrite the segment.
		if _, err := r.ScanSegment(seg, func(ev *wal.ScanEvent) error {
			if ev.Problem == nil {
				p.records = append(p.records, ev.Raw())
			}
			return nil
		}); err != nil {
			return rep, err
		}
		if err := rewriteCorrupt(dir, p, rec.NextID, dryRun, bk, rep); err != nil {
			return rep, err
		}
	}
	for q := range affected {
		rep.AffectedQueues = append(rep.AffectedQueues, q)
	}
	slices.Sort(rep.AffectedQueues)
	return rep, nil
}

func quarantineName(dir, file string, off int64, kind string) string {
	base := filepath.Join(dir, QuarantineDir, fmt.Sprintf("%s.%012d.%s", file, off, kind))
	name := base
	for i := 1; ; i++ {
		if _, err := os.Stat(name); errors.Is(err, fs.ErrNotExist) {
			return name
		}
		name = fmt.Sprintf("%s.%d", base, i)
	}
}

// saveQuarantine copies bytes [off, off+n) of src into a new durable file.
func saveQuarantine(dst, src string, off, n int64) error {
	if err := wal.MkdirPrivate(filepath.Dir(dst)); err != nil {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	buf := make([]byte, n)
	if _, err := in.ReadAt(buf, off); err != nil {
		return err
	}
	return writeDurable(dst, buf)
}

// writeDurable writes data to name (which must not exist), fsyncs it and
// its directory.
func writeDurable(name string, data []byte) error {
	f, err := wal.OpenPrivate(name, os.O_WRONLY|os.O_EXCL)
	if err != nil {
		return err
	}
	if _, err = f.Write(data); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return wal.OSFS{}.SyncDir(filepath.Dir(name))
}

// replaceAtomic backs up name (and a leftover temporary file), writes data
// to a temporary file, fsyncs it, renames it over name and fsyncs the
// directory.
func replaceAtomic(name string, data []byte, bk *backup) error {
	tmp := name + ".tmp"
	if _, err := os.Stat(tmp); err == nil {
		if err := bk.save(tmp); err != nil {
			return err
		}
		if err := os.Remove(tmp); err != nil {
			return err
		}
	}
	if err := bk.save(name); err != nil {
		return err
	}
	if err := writeDurable(tmp, data); err != nil {
		return err
	}
	if err := os.Rename(tmp, name); err != nil {
		return err
	}
	return wal.OSFS{}.SyncDir(filepath.Dir(name))
}

func fixTornTail(dir string, p *segPlan, dryRun bool, bk *backup, rep *Report) error {
	b := p.bad[0]
	file := filepath.Base(p.seg.Path)
	if b.Offset == 0 {
		// Not even a header: the whole file is the torn write.
		q := quarantineName(dir, file, 0, "torn")
		rep.Actions = append(rep.Actions, Action{Kind: "quarantine-file", File: file, Bytes: p.seg.Size, Quarantine: rel(dir, q),
			Detail: "last segment has no valid header or record (" + b.Problem.Reason + "); moved aside whole"})
		if dryRun {
			return nil
		}
		if err := bk.save(p.seg.Path); err != nil {
			return err
		}
		if err := wal.MkdirPrivate(filepath.Dir(q)); err != nil {
			return err
		}
		if err := os.Rename(p.seg.Path, q); err != nil {
			return err
		}
		return wal.OSFS{}.SyncDir(dir)
	}
	q := quarantineName(dir, file, b.Offset, "torn")
	n := p.seg.Size - b.Offset
	rep.Actions = append(rep.Actions, Action{Kind: "truncate", File: file, Offset: b.Offset, Bytes: n, Quarantine: rel(dir, q),
		Detail: "torn tail (" + b.Problem.Reason + ")"})
	if dryRun {
		return nil
	}
	if err := bk.save(p.seg.Path); err != nil {
		return err
	}
	if err := saveQuarantine(q, p.seg.Path, b.Offset, n); err != nil {
		return err
	}
	f, err := os.OpenFile(p.seg.Path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if err = f.Truncate(b.Offset); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func rewriteCorrupt(dir string, p *segPlan, nextID uint64, dryRun bool, bk *backup, rep *Report) error {
	file := filepath.Base(p.seg.Path)
	hdr := p.header
	if hdr.Number == 0 {
		// The header itself was bad: rebuild it from the file name. A
		// generous MinNextID only makes future ids skip ahead.
		hdr = wal.SegmentHeader{Number: p.seg.Number, MinNextID: nextID}
	}
	var kept int64 = wal.SegmentHeaderSize
	for _, r := range p.records {
		kept += int64(len(r))
	}
	for _, b := range p.bad {
		kind := "corrupt"
		if b.Torn {
			kind = "torn"
		}
		q := quarantineName(dir, file, b.Offset, kind)
		qs := "queues unknown"
		if len(b.Problem.Queues) > 0 {
			qs = fmt.Sprintf("queues %v", b.Problem.Queues)
		}
		rep.Actions = append(rep.Actions, Action{Kind: "quarantine", File: file, Offset: b.Offset, Bytes: b.Problem.Length, Quarantine: rel(dir, q),
			Detail: fmt.Sprintf("%s: %s (%s)", kind, b.Problem.Reason, qs)})
		if !dryRun {
			if err := saveQuarantine(q, p.seg.Path, b.Offset, b.Problem.Length); err != nil {
				return err
			}
		}
	}
	rep.Actions = append(rep.Actions, Action{Kind: "rewrite", File: file, Bytes: kept,
		Detail: fmt.Sprintf("rewrote with %d valid records (%d -> %d bytes)", len(p.records), p.seg.Size, kept)})
	if dryRun {
		return nil
	}
	buf := wal.AppendSegmentHeader(make([]byte, 0, kept), hdr)
	for _, r := range p.records {
		buf = append(buf, r...)
	}
	return replaceAtomic(p.seg.Path, buf, bk)
}

func rel(dir, p string) string {
	if r, err := filepath.Rel(dir, p); err == nil {
		return r
	}
	return p
}
