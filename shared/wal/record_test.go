package wal

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"testing"
)

// oldRecord is a message record as the version before metadata wrote it
// (id 42, queues 3 and 9, exchange "ex", routing key "rk", delivery-mode
// property, body "old body").
const oldRecord = "18000000ed8f238101012a02030902657802726b031000026f6c6420626f6479"

func TestMessageRecordVersions(t *testing.T) {
	old, _ := hex.DecodeString(oldRecord)
	m := &Message{ID: 42, Queues: []uint64{3, 9}, Exchange: "ex", RoutingKey: "rk", Properties: []byte{0x10, 0, 2}, Body: []byte("old body")}
	if got := AppendMessageRecord(nil, m); !bytes.Equal(got, old) {
		t.Fatalf("a message without metadata is no longer written as version 1:\n got %x\nwant %x", got, old)
	}
	meta := Meta{Timestamp: 1_700_000_000_123_456_789, Expires: 1_700_000_060_000_000_000, Due: 1_700_000_005_000_000_000, Priority: 7}
	for _, mt := range []Meta{meta, {Priority: 3}, {Expires: 5}, {Timestamp: 1, Due: 2}} {
		m.Meta = mt
		rec := AppendMessageRecord(nil, m)
		if len(rec) != messageRecordSize(m) {
			t.Fatalf("%+v: size %d, messageRecordSize %d", mt, len(rec), messageRecordSize(m))
		}
		if rec[9] != messageVersionMeta {
			t.Fatalf("%+v: version %d", mt, rec[9])
		}
		got, err := decodeMessage(rec[RecordHeaderSize+2:], rec[9], true)
		if err != nil || !sameMsg(got, m) || got.Meta != mt {
			t.Fatalf("%+v: decoded %+v, %v", mt, got, err)
		}
	}
}

// TestMetaUnknownFieldsSkipped: a version 2 block with a field this
// version does not know (a higher bit, its value after the known ones)
// still reads.
func TestMetaUnknownFieldsSkipped(t *testing.T) {
	block := binary.AppendUvarint(nil, metaPriority|1<<9)
	block = binary.AppendUvarint(block, 4)     // priority
	block = binary.AppendUvarint(block, 1<<40) // the unknown field
	p := binary.AppendUvarint(nil, 5)          // id
	p = append(p, 1, 8)                        // one queue: 8
	p = binary.AppendUvarint(p, uint64(len(block)))
	p = append(p, block...)
	p = append(p, 0, 0, 0)
	p = append(p, "body"...)
	m, err := decodeMessage(p, messageVersionMeta, true)
	if err != nil || m.Priority != 4 || string(m.Body) != "body" || m.ID != 5 || m.Queues[0] != 8 {
		t.Fatalf("decoded %+v, %v", m, err)
	}
	// A block longer than the payload is malformed, not a panic.
	bad := append(binary.AppendUvarint(nil, 5), 1, 8, 200, 1)
	if _, err := decodeMessage(bad, messageVersionMeta, true); err == nil {
		t.Fatal("a truncated metadata block decoded")
	}
}

// TestOldSegmentRecovers: a segment holding a record in the old format,
// next to new ones, recovers both; the old one with zero metadata.
func TestOldSegmentRecovers(t *testing.T) {
	fsys := NewMemFS()
	l, _ := openMem(t, fsys, nil)
	l.Close()
	old, _ := hex.DecodeString(oldRecord)
	seg := AppendSegmentHeader(nil, SegmentHeader{Number: 1, MinNextID: 1})
	fsys.WriteFile(filepath.Join("/data", SegmentFileName(1)), append(seg, old...))
	l, rec := openMem(t, fsys, nil)
	meta := Meta{Timestamp: 11, Expires: 22, Due: 33, Priority: 9}
	nm := testMsg("new", 3)
	nm.Meta = meta
	pos := appendWait(t, l, nm)
	l.Close()
	if e := rec.Queues[9].Entries; len(e) != 1 || e[0].ID != 42 || e[0].Meta != (Meta{}) || e[0].BodySize != 8 {
		t.Fatalf("old record recovered as %+v", e)
	}
	l, rec = openMem(t, fsys, nil)
	defer l.Close()
	if len(rec.Corruptions) != 0 {
		t.Fatal(rec.Corruptions)
	}
	q3 := rec.Queues[3].Entries
	if len(q3) != 2 || q3[0].ID != 42 || q3[1].Meta != meta || q3[1].BodySize != uint32(len(nm.Body)) || q3[1].Pos != pos {
		t.Fatalf("queue 3 recovered %+v", q3)
	}
	got, err := l.ReadMessage(q3[1].Pos)
	if err != nil || got.Meta != meta || !sameMsg(got, nm) {
		t.Fatalf("ReadMessage %+v, %v", got, err)
	}
	got, err = l.ReadMessage(q3[0].Pos)
	if err != nil || string(got.Body) != "old body" || got.Meta != (Meta{}) {
		t.Fatalf("ReadMessage of the old record %+v, %v", got, err)
	}
}

// TestScanRawKeepsVersion: offline tools copy records with Raw; a version
// 2 record must stay version 2 with its metadata, a version 1 one version 1.
func TestScanRawKeepsVersion(t *testing.T) {
	fsys := NewMemFS()
	l, _ := openMem(t, fsys, nil)
	plain := testMsg("plain", 1)
	withMeta := testMsg("meta", 1)
	withMeta.Meta = Meta{Priority: 2, Expires: 99}
	appendWait(t, l, plain)
	appendWait(t, l, withMeta)
	l.Close()
	r, err := OpenReaderFS(fsys, "/data")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, seg := range r.Segments() {
		if _, err := r.ScanSegment(seg, func(ev *ScanEvent) error {
			m, err := ev.Message()
			if err != nil {
				return err
			}
			raw := ev.Raw()
			if !bytes.Equal(raw, AppendMessageRecord(nil, m)) || raw[9] != ev.Version {
				t.Errorf("Raw of version %d record differs from its re-encoding", ev.Version)
			}
			got = append(got, fmt.Sprintf("v%d %+v", ev.Version, m.Meta))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	if want := "[v1 {Timestamp:0 Expires:0 Due:0 Priority:0} v2 {Timestamp:0 Expires:99 Due:0 Priority:2}]"; fmt.Sprint(got) != want {
		t.Fatalf("scanned %v, want %v", got, want)
	}
}
