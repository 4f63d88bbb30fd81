package broker

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// A node link carries a cluster's classic queues between their home node,
// which holds their messages, and the other members, which reach them
// through it (remoteQueue on the member, homeLink on the home node). The
// member dials (QuorumGroups.DialLink) and sends requests; the home node
// answers them and streams deliveries back. Both directions use one
// frame format:
//
//	frame: length (4 bytes, big endian: op and body), op (1 byte), body
//
// Requests carry a request id, which the home node's reply repeats.
// Integers are big endian; a short string is a length byte and its bytes.
const (
	// Member to home node.
	linkPush    byte = 1  // req, vhost, queue, message (quorumCodec) → reply
	linkConsume byte = 2  // req (also the consumer's id), vhost, queue, priority (8), noAck, exclusive → reply
	linkCredit  byte = 3  // consumer id, credits (4)
	linkSettle  byte = 4  // vhost, queue, outcome, count (4), tags (8 each)
	linkCancel  byte = 5  // consumer id
	linkGet     byte = 6  // req, vhost, queue, noAck → reply: found, tag, remaining (4), deliveries (2), message
	linkPurge   byte = 7  // req, vhost, queue → reply: count (4)
	linkInfo    byte = 8  // req, vhost, queue → reply: queue.Info as JSON
	linkTouch   byte = 9  // vhost, queue
	linkSync    byte = 10 // req → reply once the store has made durable what came before (store.Store.Sync)

	// Home node to member.
	linkReply     byte = 20 // req, status, then the body (ok), or code (2) and text (short)
	linkDeliver   byte = 21 // consumer id, tag (8), count (2), then each: deliveries (2), length (4), message
	linkCancelled byte = 22 // consumer id: the home node ended the consumer
)

// Reply statuses.
const (
	linkOK       byte = 0
	linkRejected byte = 1 // a reject-publish queue refused the push
	linkFailed   byte = 2 // an AMQP error: code and text follow
)

// linkFrameMax bounds a frame read, before anything is allocated for it:
// the largest message a client may publish and room for its envelope.
func linkFrameMax(maxMessage uint64) int { return int(min(maxMessage, 1<<30)) + 1<<20 }

// errHomeDown is a classic queue's home node out of reach.
var errHomeDown = errors.New("the queue's home node is down or inaccessible")

// linkConn is one node link's connection: writes are appended to a
// buffer under mu by any goroutine and flushed by the connection's writer
// goroutine, one write per batch; its reader is the owner's.
type linkConn struct {
	c      net.Conn
	mu     sync.Mutex
	buf    []byte
	closed bool
	kick   chan struct{}
	done   chan struct{} // closed by close
	once   sync.Once
}

func newLinkConn(c net.Conn) *linkConn {
	l := &linkConn{c: c, kick: make(chan struct{}, 1), done: make(chan struct{})}
	go l.writeLoop()
	return l
}

// frame appends one frame, built by body, and wakes the writer; false
// once the connection is closed.
func (l *linkConn) frame(op byte, body func(b []byte) []byte) bool {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return false
	}
	at := len(l.buf)
	l.buf = append(l.buf, 0, 0, 0, 0, op)
	l.buf = body(l.buf)
	binary.BigEndian.PutUint32(l.buf[at:], uint32(len(l.buf)-at-4))
	l.mu.Unlock()
	select {
	case l.kick <- struct{}{}:
	default:
	}
	return true
}

// writeLoop is the connection's writer: it owns the socket's writes and
// ends once the connection is closed.
func (l *linkConn) writeLoop() {
	var out []byte
	for {
		select {
		case <-l.kick:
		case <-l.done:
			return
		}
		l.mu.Lock()
		out, l.buf = l.buf, out[:0]
		l.mu.Unlock()
		if len(out) == 0 {
			continue
		}
		_ = l.c.SetWriteDeadline(time.Now().Add(30 * time.Second))
		if _, err := l.c.Write(out); err != nil {
			l.close()
			return
		}
		if cap(out) > 1<<20 {
			out = nil // a burst of large messages: do not keep its buffer
		}
	}
}

func (l *linkConn) close() {
	l.once.Do(func() {
		l.mu.Lock()
		l.closed = true
		l.buf = nil
		l.mu.Unlock()
		close(l.done)
		l.c.Close()
	})
}

// readFrames reads frames until the connection fails, handing each (op,
// body) to handle; body is the frame's own allocation, which handle may
// keep.
func readFrames(c net.Conn, limit int, handle func(op byte, body []byte) error) error {
	r := bufio.NewReaderSize(c, 64<<10)
	var hdr [5]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return err
		}
		n := int(binary.BigEndian.Uint32(hdr[:4]))
		if n < 1 || n > limit {
			return fmt.Errorf("node link: frame of %d bytes (limit %d)", n, limit)
		}
		body := make([]byte, n-1)
		if _, err := io.ReadFull(r, body); err != nil {
			return err
		}
		if err := handle(hdr[4], body); err != nil {
			return err
		}
	}
}

// linkReader decodes a frame's body; a short body sets bad, and every
// later read returns zero values.
type linkReader struct {
	b   []byte
	bad bool
}

func (r *linkReader) take(n int) []byte {
	if r.bad || len(r.b) < n {
		r.bad = true
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *linkReader) u8() byte {
	if b := r.take(1); b != nil {
		return b[0]
	}
	return 0
}

func (r *linkReader) u16() uint16 {
	if b := r.take(2); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

func (r *linkReader) u32() uint32 {
	if b := r.take(4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

func (r *linkReader) u64() uint64 {
	if b := r.take(8); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

func (r *linkReader) short() string {
	n := int(r.u8())
	return string(r.take(n))
}

// rest returns what is left of the body.
func (r *linkReader) rest() []byte {
	b := r.b
	r.b = nil
	return b
}

var errLinkFrame = errors.New("node link: malformed frame")

func (r *linkReader) err() error {
	if r.bad {
		return errLinkFrame
	}
	return nil
}

func appendU16(b []byte, v uint16) []byte { return binary.BigEndian.AppendUint16(b, v) }
func appendU32(b []byte, v uint32) []byte { return binary.BigEndian.AppendUint32(b, v) }
func appendU64(b []byte, v uint64) []byte { return binary.BigEndian.AppendUint64(b, v) }

// appendQueueName appends a queue's vhost and name, as short strings.
func appendQueueName(b []byte, vhost, name string) []byte {
	return appendShort(appendShort(b, vhost), name)
}
