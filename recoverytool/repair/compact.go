package repair

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/amqp-go/amqp-go/shared/wal"
)

// DefaultThreshold: compact segments whose live message bytes are below
// this share of the file size.
const DefaultThreshold = 0.5

type qid struct{ q, id uint64 }

type deadRef struct {
	q, id, seg uint64
}

type dropRec struct {
	q, before, seg uint64
}

// Compact rewrites sparse segments keeping only live messages (with their
// queue lists trimmed to the live queues) and the acks and drops that still
// protect older segments; a compacted segment left empty is deleted unless
// it is the last one. Each rewrite is atomic: new file, fsync, rename,
// fsync dir. It refuses a log with corruption or a torn tail (run repair
// first). The caller holds the lock. Message positions change, which is
// why compaction is offline. Unless o.NoBackup, every file is copied into
// DIR/backup/<UTC time>/ before it is rewritten or deleted.
//
// Safety: every message record that names a dead (queue, id) pair in a
// segment that is kept as is must stay dead. The record that killed it (an
// ack or drop) lives in the same or a later segment; when that segment is
// compacted, the kill is re-emitted (acks as new ack refs, drops kept).
// Compaction runs oldest first, so compacted segments name no dead pairs.
func Compact(dir string, threshold float64, o Options) (*Report, error) {
	dryRun := o.DryRun
	rep := &Report{DryRun: dryRun, Actions: []Action{}}
	bk := newBackup(dir, o, rep)
	r, err := wal.OpenReader(dir)
	if err != nil {
		return rep, err
	}
	rec, err := r.Recover()
	if err != nil {
		return rep, err
	}
	if len(rec.Corruptions) > 0 || rec.TruncatedTail != nil {
		return rep, errors.New("the log has corruption or a torn tail; run recovery-tool repair first")
	}
	live := map[qid]bool{}
	for q, rq := range rec.Queues {
		for _, e := range rq.Entries {
			live[qid{q, e.ID}] = true
		}
	}
	segs := r.Segments()
	// Pass 1: live bytes per segment and where each kill happened.
	liveBytes := map[uint64]int64{}
	ackKiller := map[qid]uint64{}
	var drops []dropRec
	for _, seg := range segs {
		if _, err := r.ScanSegment(seg, func(ev *wal.ScanEvent) error {
			switch ev.Type {
			case wal.RecordMessage:
				m, err := ev.Message()
				if err != nil {
					return err
				}
				for _, q := range m.Queues {
					if live[qid{q, m.ID}] {
						liveBytes[seg.Number] += int64(ev.Size)
						break
					}
				}
			case wal.RecordAck:
				q, refs, err := ev.Ack()
				if err != nil {
					return err
				}
				for _, rf := range refs {
					if _, ok := ackKiller[qid{q, rf.ID}]; !ok {
						ackKiller[qid{q, rf.ID}] = seg.Number
					}
				}
			case wal.RecordDropQueue:
				q, before, err := ev.Drop()
				if err != nil {
					return err
				}
				drops = append(drops, dropRec{q, before, seg.Number})
			}
			return nil
		}); err != nil {
			return rep, err
		}
	}
	// Pass 2, oldest first.
	var deadListed []deadRef // dead pairs named by segments kept as they are
	for i, seg := range segs {
		last := i == len(segs)-1
		file := filepath.Base(seg.Path)
		sparse := seg.Size > wal.SegmentHeaderSize && float64(liveBytes[seg.Number]) < threshold*float64(seg.Size)
		if !sparse {
			if _, err := r.ScanSegment(seg, func(ev *wal.ScanEvent) error {
				if ev.Type != wal.RecordMessage {
					return nil
				}
				m, err := ev.Message()
				if err != nil {
					return err
				}
				for _, q := range m.Queues {
					if !live[qid{q, m.ID}] {
						deadListed = append(deadListed, deadRef{q, m.ID, seg.Number})
					}
				}
				return nil
			}); err != nil {
				return rep, err
			}
			continue
		}
		var maxNext uint64
		var kept, total, trimmed, keptDrops int
		var body []byte
		hdr, err := r.ScanSegment(seg, func(ev *wal.ScanEvent) error {
			switch ev.Type {
			case wal.RecordMessage:
				total++
				m, err := ev.Message()
				if err != nil {
					return err
				}
				maxNext = max(maxNext, m.ID+1)
				lq := m.Queues[:0:0]
				for _, q := range m.Queues {
					if live[qid{q, m.ID}] {
						lq = append(lq, q)
					}
				}
				if len(lq) == 0 {
					return nil
				}
				kept++
				trimmed += len(m.Queues) - len(lq)
				if len(lq) == len(m.Queues) {
					body = append(body, ev.Raw()...)
				} else {
					m.Queues = lq
					body = wal.AppendMessageRecord(body, m)
				}
			case wal.RecordDropQueue:
				q, before, err := ev.Drop()
				if err != nil {
					return err
				}
				if slices.ContainsFunc(deadListed, func(d deadRef) bool { return d.q == q && d.id < before }) {
					keptDrops++
					body = append(body, ev.Raw()...)
				}
			}
			return nil
		})
		if err != nil {
			return rep, err
		}
		// Re-emit the acks of this segment that still protect older ones.
		reacks := map[uint64][]wal.Ref{}
		var nre int
		for _, d := range deadListed {
			if k, ok := ackKiller[qid{d.q, d.id}]; ok && k == seg.Number {
				reacks[d.q] = append(reacks[d.q], wal.Ref{ID: d.id, Segment: d.seg})
				nre++
			}
		}
		qs := make([]uint64, 0, len(reacks))
		for q := range reacks {
			qs = append(qs, q)
		}
		slices.Sort(qs)
		for _, q := range qs {
			body = wal.AppendAckRecord(body, q, reacks[q])
		}
		// Dropped messages must not let ids go backwards after a restart.
		hdr.MinNextID = max(hdr.MinNextID, maxNext)
		buf := wal.AppendSegmentHeader(make([]byte, 0, wal.SegmentHeaderSize+len(body)), hdr)
		buf = append(buf, body...)
		if len(body) == 0 && !last {
			rep.Actions = append(rep.Actions, Action{Kind: "delete", File: file, Bytes: seg.Size,
				Detail: fmt.Sprintf("no live messages among %d and no needed acks", total)})
			if !dryRun {
				if err := bk.save(seg.Path); err != nil {
					return rep, err
				}
				if err := os.Remove(seg.Path); err != nil {
					return rep, err
				}
				if err := (wal.OSFS{}).SyncDir(dir); err != nil {
					return rep, err
				}
			}
			continue
		}
		if int64(len(buf)) >= seg.Size {
			continue // nothing to gain
		}
		rep.Actions = append(rep.Actions, Action{Kind: "rewrite", File: file, Bytes: int64(len(buf)),
			Detail: fmt.Sprintf("kept %d/%d messages (%d dead queue refs trimmed), %d ack refs re-emitted, %d drops kept, %d -> %d bytes",
				kept, total, trimmed, nre, keptDrops, seg.Size, len(buf))})
		if !dryRun {
			if err := replaceAtomic(seg.Path, buf, bk); err != nil {
				return rep, err
			}
		}
	}
	return rep, nil
}
