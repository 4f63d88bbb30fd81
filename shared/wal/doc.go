// Package wal is the durable message log of the broker: persistent
// messages routed to durable queues are appended to segment files, and
// this log is the only copy (there is no second store of message bodies).
//
// # Directory layout
//
//	DIR/VERSION                    "amqp-go-wal 1\n"; checked by Open (ErrVersion)
//	DIR/LOCK                       flock(2)ed exclusively by the owner (ErrLocked)
//	DIR/00000000000000000001.wal   segment files, numbered from 1, never reused
//
// With OSFS, DIR is DirMode (0700) and every file FileMode (0600), set by
// chmod whatever the umask; Open also narrows files an older version left
// wider.
//
// # Segment format
//
// All integers are little endian. A segment starts with a 32-byte header:
//
//	0  magic "AMQPWAL\x00"
//	8  format version (uint32, 1)
//	12 segment number (uint64)
//	20 min next id (uint64): ids assigned after this segment was created
//	   are >= this, so ids stay monotonic even when every message is gone
//	28 CRC32C of bytes [0,28) (uint32)
//
// It is followed by records:
//
//	0  length (uint32): number of bytes that follow the CRC (2 + payload)
//	4  CRC32C (Castagnoli) over type, version and payload (uint32)
//	8  type (uint8): 1 message, 2 ack, 3 drop-queue; in a Raft log (see
//	   below) 4 raft-entries, 5 raft-hard-state, 6 raft-snapshot,
//	   7 raft-compact, 8 raft-drop
//	9  version (uint8): 1; message records also 2 (with metadata)
//	10 payload
//
// A length below 2, above MaxRecordSize or beyond the end of the file is
// corruption; such lengths are never allocated.
//
// Payloads (uvarint = unsigned LEB128 as encoding/binary; varint = zigzag):
//
//	message:    uvarint id, uvarint n, n x uvarint queue id,
//	            [version 2: uvarint len + metadata block,]
//	            uvarint len + exchange, uvarint len + routing key,
//	            uvarint len + raw AMQP properties (flags word + list),
//	            body (the rest of the record)
//	ack:        uvarint queue, uvarint n, n x (varint id delta,
//	            varint segment delta); deltas against the previous ref
//	            (the first against 0)
//	drop-queue: uvarint queue, uvarint before: every message of the queue
//	            with an id below before is dead
//
// The metadata block is uvarint flags, then per set bit, in bit order, a
// uvarint: bit 0 timestamp, 1 expiry deadline, 2 due time (unix ns), 3
// priority. A reader ignores bits it does not know and the rest of the
// block, so fields can be added later without a new version. A message
// without metadata is written as version 1, so version 1 is still written
// and read; a binary that predates version 2 reports version 2 records as
// corruption, so once one is written the log cannot be downgraded.
//
// A message routed to N durable queues is written once, naming all N.
// Message ids are assigned in append order, so file order is id order.
//
// # Raft log
//
// A RecordLog (package raftlog's Raft log of all of a node's groups) is a
// directory of the same segments, whose VERSION says "amqp-go-raftlog 1"
// so that neither kind of log opens the other's directory. Segment
// headers carry min next id 0. It holds only the record types 4 to 7, all
// version 1; a message record there, or a Raft record in a message log, is
// corruption. Payloads (group is the Raft group's id):
//
//	raft-entries:    uvarint group, uvarint first index, uvarint n,
//	                 n x (uvarint term, uvarint entry type,
//	                 uvarint len + data); entry k has index first + k;
//	                 it truncates the group's log at first and appends
//	raft-hard-state: uvarint group, uvarint term, uvarint vote,
//	                 uvarint commit
//	raft-snapshot:   uvarint group, uvarint flags (bit 0: the snapshot
//	                 came from the leader and replaced the log; clear: it
//	                 was taken locally and the log kept), then the
//	                 protobuf raftpb.Snapshot (the rest of the record)
//	raft-compact:    uvarint group, uvarint index, uvarint term: the
//	                 group's entries up to index are gone; index and term
//	                 are what the next entry must follow
//	raft-drop:       uvarint group: the group is gone (its quorum queue
//	                 was deleted), with everything the log held of it;
//	                 its id is never used again
//
// A write is synchronous: one write and one fdatasync for all the records
// of a Ready round of every group. A torn tail of the last segment is cut
// at open; a bad record anywhere else fails the open (a Raft log with a
// hole cannot be replayed). Which segments to start and remove is the
// user's: package raftlog begins each segment with a checkpoint of every
// group and removes the oldest ones once their entries are compacted.
//
// # Group commit
//
// Append, Ack and DropQueue encode their record into the newest pending
// batch under a mutex and return. One commit goroutine owns the files: it
// takes the oldest batch (at most MaxBatchBytes, unless a single record is
// bigger), writes it with one write, fdatasyncs once, and then fires the
// batch's callbacks in order. A lone appender never waits for a timer:
// when the goroutine is idle it writes at once; records arriving during a
// write and fsync form the next batch, so batches grow with load. A failed
// write or fsync fails that batch and every pending one, and the log stays
// failed: later calls fail fast with an error wrapping ErrFailed.
//
// # Recovery
//
// Open scans all segments in order with large sequential reads and
// rebuilds each queue's live entries: messages minus acks minus drops. A
// bad record at the end of the LAST segment with no valid record after it
// is a torn tail: it is truncated and reported in Recovered.TruncatedTail.
// A bad record anywhere else is a *CorruptionError (file, offset, length);
// nothing is truncated, the scan resynchronises at the next offset where a
// record verifies, and the queues named by the bad record (if its header
// could be read) are marked Corrupt. Open still succeeds. Every Open starts
// a fresh active segment, so the log never appends behind damaged data.
//
// # Reclaim rule
//
// Every segment has a count of live references (a message routed to N
// queues holds N; an ack or drop releases one per queue and message, after
// the ack record is durable). A record that kills a message (ack or drop)
// always lives in the same segment as the message or a later one. So a
// segment is deleted only when
//
//   - it is the OLDEST remaining segment (segments are deleted in order),
//   - it has no live references,
//   - it is older than the segment being written, and
//   - recovery found no corruption in it.
//
// Deleting the oldest segment can only drop acks and drops that refer to
// messages in itself or in segments already deleted, so nothing can be
// resurrected. After a full drain the next commit deletes everything but
// the active segment, so disk use is within one segment of empty. A dead
// segment behind a live one waits; the offline "recovery-tool compact"
// rewrites sparse segments. Corrupt segments wait for "recovery-tool
// repair".
//
// Open also deletes segments that hold no record at all (left by restarts
// without traffic): they protect nothing, and the new active segment's
// header carries the id floor forward.
//
// The online reference counts trust the caller: each (queue, message) is
// acked at most once; acks for unknown queues or after DropQueue are
// ignored. Recovery recomputes the counts exactly from the records.
//
// # Reading
//
// ReadMessage re-reads a record by Position and verifies its CRC; it waits
// for the batch's write if the record is still pending. OpenReader gives
// offline tools a read-only view that takes no lock and writes nothing.
package wal
