// Package inspect implements walinspect: read-only views of a WAL
// directory. Everything goes through wal.OpenReader, which takes no lock
// and writes nothing, so it is safe to run next to a live server.
package inspect

import (
	"encoding/hex"
	"fmt"
	"path/filepath"
	"sort"

	"github.com/amqp-go/amqp-go/shared/amqp"
	"github.com/amqp-go/amqp-go/shared/wal"
)

// SegmentSummary describes one segment file.
type SegmentSummary struct {
	File     string `json:"file"`
	Segment  uint64 `json:"segment"`
	Size     int64  `json:"size"`
	Records  int    `json:"records"`
	Messages int    `json:"messages"`
	Acks     int    `json:"acks"`
	Drops    int    `json:"drops"`
	FirstID  uint64 `json:"first_id,omitempty"`
	LastID   uint64 `json:"last_id,omitempty"`
	// Refs counts (message, queue) pairs written to the segment; Live those
	// still live, the rest were acked or dropped.
	Refs      int     `json:"refs"`
	Live      int     `json:"live"`
	LiveShare float64 `json:"live_share"`
	// Checksum is "ok", "torn-tail" or "corrupt".
	Checksum string    `json:"checksum"`
	Problems []Problem `json:"problems,omitempty"`
}

// Problem is a bad region found while reading.
type Problem struct {
	File   string   `json:"file"`
	Offset int64    `json:"offset"`
	Length int64    `json:"length"`
	Reason string   `json:"reason"`
	Queues []uint64 `json:"queues,omitempty"`
	Torn   bool     `json:"torn_tail"`
}

func problemOf(ev *wal.ScanEvent) Problem {
	p := ev.Problem
	return Problem{File: filepath.Base(p.File), Offset: p.Offset, Length: p.Length, Reason: p.Reason, Queues: p.Queues, Torn: ev.Torn}
}

// Segments summarises every segment of the log in dir.
func Segments(dir string) ([]SegmentSummary, error) {
	r, err := wal.OpenReader(dir)
	if err != nil {
		return nil, err
	}
	rec, err := r.Recover()
	if err != nil {
		return nil, err
	}
	live := map[uint64]int{}
	for _, q := range rec.Queues {
		for _, e := range q.Entries {
			live[e.Pos.Segment]++
		}
	}
	var out []SegmentSummary
	for _, seg := range r.Segments() {
		s := SegmentSummary{File: filepath.Base(seg.Path), Segment: seg.Number, Size: seg.Size, Live: live[seg.Number], Checksum: "ok"}
		_, err := r.ScanSegment(seg, func(ev *wal.ScanEvent) error {
			if ev.Problem != nil {
				s.Problems = append(s.Problems, problemOf(ev))
				if ev.Torn && s.Checksum == "ok" {
					s.Checksum = "torn-tail"
				} else if !ev.Torn {
					s.Checksum = "corrupt"
				}
				return nil
			}
			s.Records++
			switch ev.Type {
			case wal.RecordMessage:
				m, err := ev.Message()
				if err != nil {
					return nil
				}
				s.Messages++
				if s.FirstID == 0 {
					s.FirstID = m.ID
				}
				s.LastID = m.ID
				s.Refs += len(m.Queues)
			case wal.RecordAck:
				s.Acks++
			case wal.RecordDropQueue:
				s.Drops++
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		if s.Refs > 0 {
			s.LiveShare = float64(s.Live) / float64(s.Refs)
		}
		out = append(out, s)
	}
	return out, nil
}

// RecordInfo describes one record (or bad region) of a segment.
type RecordInfo struct {
	File   string `json:"file"`
	Offset int64  `json:"offset"`
	Type   string `json:"type"`
	Size   uint32 `json:"size,omitempty"`
	// Message records.
	ID         uint64          `json:"id,omitempty"`
	Queues     []uint64        `json:"queues,omitempty"`
	Exchange   string          `json:"exchange,omitempty"`
	RoutingKey string          `json:"routing_key,omitempty"`
	BodySize   int             `json:"body_size,omitempty"`
	Properties *PropertiesInfo `json:"properties,omitempty"`
	// Version is the record's payload version (2: with Meta).
	Version uint8     `json:"version,omitempty"`
	Meta    *MetaInfo `json:"meta,omitempty"`
	// Ack records: the queue is Queues[0].
	IDs []uint64 `json:"ids,omitempty"`
	// Drop-queue records: messages below Before are dead.
	Before  uint64   `json:"before,omitempty"`
	Problem *Problem `json:"problem,omitempty"`
}

// MetaInfo is a message record's metadata (version 2 records); times are
// unix ns, 0 when unset.
type MetaInfo struct {
	Timestamp int64 `json:"timestamp,omitempty"`
	Expires   int64 `json:"expires,omitempty"`
	Due       int64 `json:"due,omitempty"`
	Priority  uint8 `json:"priority,omitempty"`
}

// PropertiesInfo is a readable subset of the AMQP basic properties.
type PropertiesInfo struct {
	DeliveryMode  uint8  `json:"delivery_mode,omitempty"`
	Priority      uint8  `json:"priority,omitempty"`
	ContentType   string `json:"content_type,omitempty"`
	MessageID     string `json:"message_id,omitempty"`
	CorrelationID string `json:"correlation_id,omitempty"`
	Expiration    string `json:"expiration,omitempty"`
	Headers       int    `json:"headers,omitempty"`
	// Hex is set (with Error) when the properties do not decode.
	Hex   string `json:"hex,omitempty"`
	Error string `json:"error,omitempty"`
}

func decodeProperties(raw []byte) *PropertiesInfo {
	if len(raw) == 0 {
		return nil
	}
	var p amqp.Properties
	if err := p.Decode(raw); err != nil {
		return &PropertiesInfo{Hex: hex.EncodeToString(raw), Error: err.Error()}
	}
	return &PropertiesInfo{DeliveryMode: p.DeliveryMode, Priority: p.Priority, ContentType: p.ContentType,
		MessageID: p.MessageID, CorrelationID: p.CorrelationID, Expiration: p.Expiration, Headers: len(p.Headers)}
}

// Records calls fn for every record and bad region of the log in order.
func Records(dir string, fn func(*RecordInfo) error) error {
	r, err := wal.OpenReader(dir)
	if err != nil {
		return err
	}
	for _, seg := range r.Segments() {
		file := filepath.Base(seg.Path)
		if _, err := r.ScanSegment(seg, func(ev *wal.ScanEvent) error {
			ri := &RecordInfo{File: file, Offset: ev.Offset, Size: ev.Size, Type: ev.Type.String(), Version: ev.Version}
			if ev.Problem != nil {
				p := problemOf(ev)
				ri.Type, ri.Problem = "corrupt", &p
				if ev.Torn {
					ri.Type = "torn-tail"
				}
				return fn(ri)
			}
			switch ev.Type {
			case wal.RecordMessage:
				m, err := ev.Message()
				if err != nil {
					ri.Problem = &Problem{File: file, Offset: ev.Offset, Reason: err.Error()}
					break
				}
				ri.ID, ri.Queues, ri.Exchange, ri.RoutingKey, ri.BodySize = m.ID, m.Queues, m.Exchange, m.RoutingKey, len(m.Body)
				ri.Properties = decodeProperties(m.Properties)
				if m.Meta != (wal.Meta{}) {
					ri.Meta = &MetaInfo{Timestamp: m.Timestamp, Expires: m.Expires, Due: m.Due, Priority: m.Priority}
				}
			case wal.RecordAck:
				q, refs, err := ev.Ack()
				if err != nil {
					ri.Problem = &Problem{File: file, Offset: ev.Offset, Reason: err.Error()}
					break
				}
				ri.Queues = []uint64{q}
				for _, rf := range refs {
					ri.IDs = append(ri.IDs, rf.ID)
				}
			case wal.RecordDropQueue:
				q, before, err := ev.Drop()
				if err != nil {
					ri.Problem = &Problem{File: file, Offset: ev.Offset, Reason: err.Error()}
					break
				}
				ri.Queues, ri.Before = []uint64{q}, before
			}
			return fn(ri)
		}); err != nil {
			return err
		}
	}
	return nil
}

// VerifyResult is the outcome of Verify.
type VerifyResult struct {
	Segments int       `json:"segments"`
	Records  int       `json:"records"`
	Messages int       `json:"messages"`
	Live     int       `json:"live_messages"`
	Queues   int       `json:"queues"`
	Problems []Problem `json:"problems"`
	// Corrupt is true if any problem other than a torn tail was found.
	Corrupt bool `json:"corrupt"`
	// CorruptQueues lists queues that may have lost messages or acks.
	CorruptQueues []uint64 `json:"corrupt_queues,omitempty"`
}

// Verify checks every record checksum and reports all problems. A torn
// tail alone is not corruption (the server cuts it on start).
func Verify(dir string) (*VerifyResult, error) {
	r, err := wal.OpenReader(dir)
	if err != nil {
		return nil, err
	}
	rec, err := r.Recover()
	if err != nil {
		return nil, err
	}
	res := &VerifyResult{Segments: rec.Segments, Records: rec.Records, Messages: rec.Messages, Problems: []Problem{}}
	live := map[uint64]bool{}
	for id, q := range rec.Queues {
		for _, e := range q.Entries {
			live[e.ID] = true
		}
		if len(q.Entries) > 0 {
			res.Queues++
		}
		if q.Corrupt {
			res.CorruptQueues = append(res.CorruptQueues, id)
		}
	}
	sort.Slice(res.CorruptQueues, func(i, j int) bool { return res.CorruptQueues[i] < res.CorruptQueues[j] })
	res.Live = len(live)
	for _, c := range rec.Corruptions {
		res.Problems = append(res.Problems, Problem{File: filepath.Base(c.File), Offset: c.Offset, Length: c.Length, Reason: c.Reason, Queues: c.Queues})
		res.Corrupt = true
	}
	if t := rec.TruncatedTail; t != nil {
		res.Problems = append(res.Problems, Problem{File: filepath.Base(t.File), Offset: t.Offset, Length: t.Bytes, Reason: t.Reason, Torn: true})
	}
	return res, nil
}

// String renders a problem on one line.
func (p Problem) String() string {
	kind := "CORRUPT"
	if p.Torn {
		kind = "TORN TAIL"
	}
	q := "queues unknown"
	if len(p.Queues) > 0 {
		q = fmt.Sprintf("queues %v", p.Queues)
	}
	if p.Torn {
		q = "will be truncated on open"
	}
	return fmt.Sprintf("%s %s@%d: %d bytes: %s (%s)", kind, p.File, p.Offset, p.Length, p.Reason, q)
}
