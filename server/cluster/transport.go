package cluster

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/amqp-go/amqp-go/server/listener"
	"github.com/amqp-go/amqp-go/server/tlsconf"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// The wire protocol between two nodes, over one TCP connection per pair
// (the node with the lower id dials, the other accepts; both send on it):
//
//	hello: magic "AMQPRAFT", version byte, from id (8 bytes), to id (8 bytes),
//	       cluster name length (1 byte), cluster name
//	frame: length (4 bytes, big endian), then that many bytes of
//	       messages, each: group (uvarint), length (uvarint), the message
//	       (version 1: a marshalled raftpb.Message; version 2: the
//	       compact encoding of wire.go)
//
// Each side sends its hello and checks the other's. The dialler offers
// the highest version it speaks; the acceptor, if it speaks that one,
// answers with it, and both use it. A node of version 1 refuses a hello
// of version 2, so a dialler whose hello was refused offers version 1
// the next time (and 2 again after a connection or another failure):
// nodes of both versions work together during a rolling upgrade. A link
// (below) offers version 1, which it does not depend on. A frame of
// length 0 is a keepalive: it lets a reader tell a silent peer from a
// cut link. Fixed-size integers are big endian.
//
// A hello with the magic "AMQPLINK" instead opens a link: a connection
// of the broker's own (queues reached through their home node), which
// either node may dial; once the hellos check out, it belongs to
// TCPConfig.OnLink on the accepting side and to DialLink's caller on the
// other.
const (
	helloMagic   = "AMQPRAFT"
	linkMagic    = "AMQPLINK"
	helloVersion = 2 // the highest wire version this node speaks
	helloFixed   = len(helloMagic) + 1 + 8 + 8 + 1
)

// Receiver is what a TCPTransport hands inbound messages and send
// feedback to; *Node is one.
type Receiver interface {
	Step(msgs []GroupMessage)
	ReportUnreachable(to uint64)
	ReportSnapshot(group, to uint64, ok bool)
}

// TCPConfig configures a TCPTransport.
type TCPConfig struct {
	// Cluster is the cluster's name; a peer with another is refused.
	// At most 255 bytes.
	Cluster string
	// ID is this node's id; Listen is the address of its listener
	// ("host:port"; port 0 picks one, see Addr).
	ID     uint64
	Listen string
	// Listener, when set, is used instead of listening on Listen; the
	// transport closes it.
	Listener net.Listener
	// Peers maps every other member's id to its listener's address.
	Peers map[uint64]string
	// QueueBatches bounds each peer's send queue, in Send calls (default
	// 256); a Send that finds it full is dropped.
	QueueBatches int
	// MaxFrameBytes is the largest frame read (default 64 MiB); a peer
	// announcing a larger one is disconnected before anything is
	// allocated for it.
	MaxFrameBytes int
	// Keepalive is how often an idle connection sends an empty frame
	// (default 500ms); a connection silent for 6 of them is closed.
	Keepalive time.Duration
	// TLS, when set, runs every connection over mutual TLS: each end
	// presents its certificate and verifies the other's against the CA
	// bundle (tlsconf.Server.Dialer for the dialling end), before the
	// hellos; a peer without a valid certificate is refused.
	TLS *tlsconf.Server
	// OnLink, when set, is handed each link a peer opened (DialLink on
	// its side), from the accepting goroutine: it owns the connection.
	// Without it, links are refused.
	OnLink func(from uint64, c net.Conn)
	// Logger (default slog.Default()).
	Logger *slog.Logger
}

// TCPTransport is a Transport over TCP. Build it with NewTCPTransport,
// give it to the Node's Config, then Start it with the Node.
type TCPTransport struct {
	cfg    TCPConfig
	dialer *tls.Config // the client side of cfg.TLS; nil without TLS
	ln     net.Listener
	log    *slog.Logger
	recv   Receiver // set by Start, before any goroutine runs

	peersMu sync.RWMutex     // leaf lock: nothing else is taken under it
	peers   map[uint64]*peer // (peersMu) changed by AddPeer and RemovePeer
	started bool             // (peersMu) Start has run: new peers get a goroutine

	// maxVersion is the highest wire version this node speaks:
	// helloVersion, lower only in tests of mixed versions.
	maxVersion byte

	closed    chan struct{}
	ctx       context.Context // cancelled by Close, for dials and handshakes
	cancel    context.CancelFunc
	closeOnce sync.Once
	wg        sync.WaitGroup
}

// peer is the link to one other node. Its goroutine (runPeer) owns the
// connection; Send and Connected touch only queue and connected. ctx is
// cancelled when the transport closes or the peer is removed.
type peer struct {
	id        uint64
	addr      string
	ctx       context.Context
	cancel    context.CancelFunc
	dials     bool // this node has the lower id
	queue     chan []GroupMessage
	incoming  chan peerConn // (acceptor side) handshaken connections from accept
	connected atomic.Bool
	// offer is the version the next dial offers (runPeer's: see the wire
	// protocol); 0 until the first dial, which offers helloVersion.
	offer byte
}

// peerConn is a handshaken connection to a peer and the wire version
// agreed on it.
type peerConn struct {
	net.Conn
	version byte
}

// NewTCPTransport listens on cfg.Listen.
func NewTCPTransport(cfg TCPConfig) (*TCPTransport, error) {
	if cfg.ID == 0 {
		return nil, errors.New("cluster: node id 0")
	}
	if len(cfg.Cluster) > 255 {
		return nil, errors.New("cluster: cluster name longer than 255 bytes")
	}
	if cfg.QueueBatches <= 0 {
		cfg.QueueBatches = 256
	}
	if cfg.MaxFrameBytes <= 0 {
		cfg.MaxFrameBytes = 64 << 20
	}
	if cfg.Keepalive <= 0 {
		cfg.Keepalive = 500 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	t := &TCPTransport{cfg: cfg, log: cfg.Logger.With("node", hexID(cfg.ID)), peers: map[uint64]*peer{}, maxVersion: helloVersion, closed: make(chan struct{})}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	for id, addr := range cfg.Peers {
		if id == cfg.ID {
			continue
		}
		if id == 0 {
			return nil, errors.New("cluster: peer id 0")
		}
		t.peers[id] = t.newPeer(id, addr)
	}
	if cfg.TLS != nil {
		t.dialer = cfg.TLS.Dialer()
	}
	t.ln = cfg.Listener
	if t.ln == nil {
		ln, err := net.Listen("tcp", cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("cluster: listen for peers on %s: %w", cfg.Listen, err)
		}
		t.ln = ln
	}
	return t, nil
}

func (t *TCPTransport) newPeer(id uint64, addr string) *peer {
	p := &peer{id: id, addr: addr, dials: t.cfg.ID < id,
		queue: make(chan []GroupMessage, t.cfg.QueueBatches), incoming: make(chan peerConn)}
	p.ctx, p.cancel = context.WithCancel(t.ctx)
	return p
}

// Addr is the listener's address.
func (t *TCPTransport) Addr() net.Addr { return t.ln.Addr() }

// AddPeer makes node id at addr a peer (a member that joined). A known
// peer keeps its address: a member's address does not change while it is
// a member. Adding this node itself does nothing. Safe for concurrent
// use, but not concurrently with Close: the Node's loop, which calls it
// on applying a conf change, is stopped before the transport closes.
func (t *TCPTransport) AddPeer(id uint64, addr string) {
	if id == t.cfg.ID || id == 0 || t.isClosed() {
		return
	}
	t.peersMu.Lock()
	defer t.peersMu.Unlock()
	if old := t.peers[id]; old != nil {
		if old.addr != addr {
			t.log.Warn("cluster: a peer's address differs from the one known; keeping the known one", "peer", hexID(id), "known", old.addr, "new", addr)
		}
		return
	}
	p := t.newPeer(id, addr)
	t.peers[id] = p
	if t.started {
		t.wg.Add(1)
		go t.runPeer(p)
	}
}

// removeGrace is how long a removed peer's connection outlives its
// removal: what is queued for it goes out (the commit that tells a node
// it was removed is sent in the round that applies the removal).
const removeGrace = time.Second

// RemovePeer forgets node id (a member that left): Send drops its
// messages from now on, and its connection is closed after removeGrace.
func (t *TCPTransport) RemovePeer(id uint64) {
	t.peersMu.Lock()
	p := t.peers[id]
	delete(t.peers, id)
	t.peersMu.Unlock()
	if p != nil {
		time.AfterFunc(removeGrace, p.cancel)
	}
}

// Peers returns the known peers' addresses by id.
func (t *TCPTransport) Peers() map[uint64]string {
	t.peersMu.RLock()
	defer t.peersMu.RUnlock()
	out := make(map[uint64]string, len(t.peers))
	for id, p := range t.peers {
		out[id] = p.addr
	}
	return out
}

func (t *TCPTransport) peer(id uint64) *peer {
	t.peersMu.RLock()
	defer t.peersMu.RUnlock()
	return t.peers[id]
}

// Start accepts and dials peers, handing what arrives to r.
func (t *TCPTransport) Start(r Receiver) {
	t.recv = r
	t.wg.Add(1)
	go t.accept()
	t.peersMu.Lock()
	defer t.peersMu.Unlock()
	t.started = true
	for _, p := range t.peers {
		t.wg.Add(1)
		go t.runPeer(p)
	}
}

// Close closes the listener and every connection and waits for the
// transport's goroutines. Sends after it are dropped.
func (t *TCPTransport) Close() error {
	var err error
	t.closeOnce.Do(func() {
		close(t.closed)
		t.cancel()
		err = t.ln.Close()
	})
	t.wg.Wait()
	return err
}

// Connected reports whether there is a handshaken connection to peer id.
func (t *TCPTransport) Connected(id uint64) bool {
	p := t.peer(id)
	return p != nil && p.connected.Load()
}

// Send queues msgs for peer to, or drops them when it is not connected
// or its queue is full: Raft retransmits. It never blocks.
func (t *TCPTransport) Send(to uint64, msgs []GroupMessage) {
	p := t.peer(to)
	if p == nil {
		return
	}
	if p.connected.Load() {
		select {
		case p.queue <- msgs:
			return
		default:
		}
	}
	t.dropped(to, msgs)
}

// dropped tells the node that msgs did not reach to.
func (t *TCPTransport) dropped(to uint64, msgs []GroupMessage) {
	if t.recv == nil {
		return
	}
	t.recv.ReportUnreachable(to)
	t.reportSnapshots(to, msgs, false)
}

// reportSnapshots reports each snapshot of msgs as sent (ok, and it fit
// in a frame) or failed.
func (t *TCPTransport) reportSnapshots(to uint64, msgs []GroupMessage, ok bool) {
	for _, m := range msgs {
		if m.Message.GetType() == pb.MessageType_MsgSnap {
			t.recv.ReportSnapshot(m.Group, to, ok && t.fits(proto.Size(m.Message)))
		}
	}
}

func (t *TCPTransport) isClosed() bool {
	select {
	case <-t.closed:
		return true
	default:
		return false
	}
}

// accept takes connections from peers with lower ids and hands each,
// once its hello checks out, to its peer's goroutine.
func (t *TCPTransport) accept() {
	defer t.wg.Done()
	var backoff time.Duration
	for {
		c, err := t.ln.Accept()
		if err != nil {
			if t.isClosed() {
				return
			}
			if !listener.Temporary(err) {
				t.log.Error("cluster: accept failed; no more inbound peer connections", "err", err)
				return
			}
			// Out of descriptors, say: retry, as the AMQP listeners do,
			// so that a burst of clients does not cut the node off.
			backoff = listener.NextBackoff(backoff)
			t.log.Warn("cluster: accept failed; retrying", "err", err, "retry_in", backoff)
			if !sleep(t.ctx, backoff) {
				return
			}
			continue
		}
		backoff = 0
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			remote := c.RemoteAddr().String()
			c, p, err := t.acceptHello(c)
			if err != nil {
				t.log.Warn("cluster: refused a peer connection", "remote", remote, "reason", err)
				c.Close()
				return
			}
			if p.link {
				// The owner's from now on, and not the transport's to
				// wait for: Close leaves the link to its owner.
				go t.cfg.OnLink(p.id, c)
				return
			}
			select {
			case p.incoming <- peerConn{c, p.version}:
			case <-p.ctx.Done():
				c.Close()
			}
		}()
	}
}

// acceptHello runs the TLS handshake (with TLS on), reads a dialer's
// hello, checks it and answers with ours; it returns the connection to
// use from then on (the TLS one), to be closed on an error too.
func (t *TCPTransport) acceptHello(c net.Conn) (net.Conn, *acceptedPeer, error) {
	stop := context.AfterFunc(t.ctx, func() { c.Close() })
	defer stop()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if t.cfg.TLS != nil {
		tc := tls.Server(c, t.cfg.TLS.Config())
		if err := tc.Handshake(); err != nil {
			return c, nil, fmt.Errorf("TLS handshake: %w", err)
		}
		c = tc
	}
	p, err := t.checkHello(c)
	return c, p, err
}

// acceptedPeer is a connection's peer once its hello checked out: the
// peer's goroutine's, or a link's (link set: for OnLink).
type acceptedPeer struct {
	*peer
	link    bool
	version byte // the wire version agreed
}

// checkHello is acceptHello's exchange of hellos.
func (t *TCPTransport) checkHello(c net.Conn) (*acceptedPeer, error) {
	magic, version, from, to, name, err := readHello(c)
	if err != nil {
		return nil, err
	}
	if version > t.maxVersion {
		// What a node of an older version does (in tests of mixed
		// versions; readHello refuses it here).
		return nil, fmt.Errorf("protocol version %d, this node speaks 1 to %d", version, t.maxVersion)
	}
	link := magic == linkMagic
	if link && t.cfg.OnLink == nil {
		return nil, errors.New("a link, which this node does not serve")
	}
	if name != t.cfg.Cluster {
		return nil, fmt.Errorf("cluster name %q, this node is in %q", name, t.cfg.Cluster)
	}
	if to != t.cfg.ID {
		return nil, fmt.Errorf("the peer (id %d) wanted node id %d, this is %d: check cluster.peers", from, to, t.cfg.ID)
	}
	if from == t.cfg.ID {
		return nil, fmt.Errorf("the peer has this node's own id %s: do two nodes have the same node name?", hexID(from))
	}
	p := t.peer(from)
	if p == nil {
		return nil, fmt.Errorf("unknown node id %d: not among this node's peers", from)
	}
	if from > t.cfg.ID && !link {
		return nil, fmt.Errorf("node id %d dialled, but the lower id (%d) dials", from, t.cfg.ID)
	}
	if err := writeHello(c, magic, version, t.cfg.ID, from, t.cfg.Cluster); err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Time{})
	return &acceptedPeer{peer: p, link: link, version: version}, nil
}

// DialLink opens a link to member to (see linkMagic): the caller owns
// the connection. It fails when to is not a peer, or cannot be reached
// before ctx ends.
func (t *TCPTransport) DialLink(ctx context.Context, to uint64) (net.Conn, error) {
	p := t.peer(to)
	if p == nil {
		return nil, fmt.Errorf("cluster: node id %s is not a peer", hexID(to))
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(p.ctx, cancel)
	defer stop()
	c, err := t.dialMagic(ctx, p, linkMagic, 1)
	return c.Conn, err
}

// dial connects to p and exchanges hellos, offering p.offer; a hello
// the peer refused (it closed the connection) makes the next dial offer
// the other version (see the wire protocol). After a connection, the
// next dial offers the highest again: the peer may have been upgraded.
func (t *TCPTransport) dial(p *peer) (peerConn, error) {
	if p.offer == 0 {
		p.offer = t.maxVersion
	}
	c, err := t.dialMagic(p.ctx, p, helloMagic, p.offer)
	switch {
	case err == nil:
		p.offer = t.maxVersion
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		if p.offer > 1 {
			p.offer = 1
		} else {
			p.offer = t.maxVersion
		}
	}
	return c, err
}

// dialMagic connects to p and exchanges hellos with magic, offering
// wire version offer.
func (t *TCPTransport) dialMagic(ctx context.Context, p *peer, magic string, offer byte) (peerConn, error) {
	d := net.Dialer{Timeout: 2 * time.Second}
	c, err := d.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return peerConn{}, err
	}
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if t.dialer != nil {
		tc := tls.Client(c, t.dialer)
		if err := tc.Handshake(); err != nil {
			c.Close()
			return peerConn{}, fmt.Errorf("TLS handshake: %w", err)
		}
		c = tc
	}
	if err := writeHello(c, magic, offer, t.cfg.ID, p.id, t.cfg.Cluster); err != nil {
		c.Close()
		return peerConn{}, err
	}
	got, version, from, to, name, err := readHello(c)
	if err != nil {
		c.Close()
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return peerConn{}, fmt.Errorf("the peer closed the handshake (a wrong cluster name or node id, or a node of an older version? see its log): %w", err)
		}
		return peerConn{}, err
	}
	if got != magic || name != t.cfg.Cluster || from != p.id || to != t.cfg.ID {
		c.Close()
		return peerConn{}, fmt.Errorf("the peer answered as node %d of cluster %q (to %d), want node %d of %q", from, name, to, p.id, t.cfg.Cluster)
	}
	if version > offer {
		c.Close()
		return peerConn{}, fmt.Errorf("the peer answered with wire version %d to an offer of %d", version, offer)
	}
	_ = c.SetDeadline(time.Time{})
	return peerConn{c, version}, nil
}

// runPeer is peer p's goroutine: it gets a connection (dials, with
// backoff, or takes an accepted one), writes p's queue to it, and starts
// over when the connection fails.
func (t *TCPTransport) runPeer(p *peer) {
	defer t.wg.Done()
	const minBackoff, maxBackoff = 50 * time.Millisecond, time.Second
	backoff := minBackoff
	var next peerConn // an accepted connection that superseded the last one
	for {
		c := next
		next = peerConn{}
		if c.Conn == nil && p.dials {
			var err error
			if c, err = t.dial(p); err != nil {
				t.log.Debug("cluster: dial peer failed", "peer", hexID(p.id), "addr", p.addr, "err", err)
				if !sleep(p.ctx, backoff) {
					return
				}
				backoff = min(2*backoff, maxBackoff)
				continue
			}
		}
		if c.Conn == nil {
			select {
			case c = <-p.incoming:
			case <-p.ctx.Done():
				return
			}
		}
		backoff = minBackoff
		t.log.Info("cluster: connected to peer", "peer", hexID(p.id), "remote", c.RemoteAddr().String(), "wire_version", c.version)
		next = t.serve(p, c)
		if p.ctx.Err() != nil {
			if next.Conn != nil {
				next.Close()
			}
			return
		}
		t.log.Info("cluster: lost peer", "peer", hexID(p.id))
		t.recv.ReportUnreachable(p.id)
		if next.Conn == nil && p.dials && !sleep(p.ctx, backoff) {
			return
		}
	}
}

// sleep waits d, or returns false when ctx ends first.
func sleep(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// serve runs connection c to p until it fails, the transport closes, or
// a newer connection from p arrives (which it returns). It writes; a
// goroutine of its own reads.
func (t *TCPTransport) serve(p *peer, c peerConn) (next peerConn) {
	// Close must not wait for a write stuck on a peer that reads nothing.
	stop := context.AfterFunc(p.ctx, func() { c.Close() })
	defer stop()
	readErr := make(chan error, 1)
	go func() { readErr <- t.read(p, c.Conn, wireDecoder{self: t.cfg.ID, peer: p.id, version: c.version}) }()
	enc := wireEncoder{self: t.cfg.ID, peer: p.id, version: c.version}
	defer func() {
		p.connected.Store(false)
		c.Close()
		<-readErr
		t.drain(p)
	}()
	p.connected.Store(true)
	w := bufio.NewWriterSize(c, 64<<10)
	keepalive := time.NewTicker(t.cfg.Keepalive)
	defer keepalive.Stop()
	var frame []byte // reused between frames
	for {
		var msgs []GroupMessage
		select {
		case msgs = <-p.queue:
		case <-keepalive.C:
		case err := <-readErr:
			readErr <- err // for the deferred wait
			if err != nil && p.ctx.Err() == nil {
				t.log.Info("cluster: peer connection read failed", "peer", hexID(p.id), "err", err)
			}
			return peerConn{}
		case next = <-p.incoming:
			return next
		case <-p.ctx.Done():
			return peerConn{}
		}
		// One flush per batch: everything queued by now goes with it.
		_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		sent := [][]GroupMessage{msgs}
		var err error
		frame, err = t.writeFrames(w, frame, p, enc, msgs)
	more:
		for err == nil && len(sent) < maxDrain {
			select {
			case msgs = <-p.queue:
				sent = append(sent, msgs)
				frame, err = t.writeFrames(w, frame, p, enc, msgs)
			default:
				break more
			}
		}
		if err == nil {
			err = w.Flush()
		}
		for _, m := range sent {
			t.reportSnapshots(p.id, m, err == nil)
		}
		if err != nil {
			t.log.Info("cluster: peer connection write failed", "peer", hexID(p.id), "err", err)
			return peerConn{}
		}
	}
}

// writeFrames writes msgs to w in as few frames as MaxFrameBytes allows,
// reusing buf; no messages is one keepalive frame. A message too large
// for any frame is left out, with a log line (reportSnapshots fails it):
// Raft's MaxSizePerMsg keeps entries far below the limit, a snapshot may
// not be.
func (t *TCPTransport) writeFrames(w io.Writer, buf []byte, p *peer, enc wireEncoder, msgs []GroupMessage) ([]byte, error) {
	buf = append(buf[:0], 0, 0, 0, 0)
	write := func() error {
		binary.BigEndian.PutUint32(buf, uint32(len(buf)-4))
		_, err := w.Write(buf)
		buf = append(buf[:0], 0, 0, 0, 0)
		return err
	}
	for _, m := range msgs {
		size := enc.size(m.Message)
		if !t.fits(size) {
			t.log.Error("cluster: a message too large for a frame was dropped", "peer", hexID(p.id), "group", m.Group,
				"type", m.Message.GetType().String(), "bytes", size, "limit", t.cfg.MaxFrameBytes)
			continue
		}
		if len(buf)-4+messageOverhead+size > t.cfg.MaxFrameBytes {
			if err := write(); err != nil {
				return buf, err
			}
		}
		var err error
		if buf, err = appendMessage(buf, enc, m, size); err != nil {
			return buf, err
		}
	}
	if len(buf) > 4 || len(msgs) == 0 {
		return buf, write()
	}
	return buf, nil
}

// messageOverhead bounds the two uvarints before a message in a frame.
const messageOverhead = 2 * binary.MaxVarintLen64

// fits reports whether a message of size bytes fits in a frame.
func (t *TCPTransport) fits(size int) bool { return messageOverhead+size <= t.cfg.MaxFrameBytes }

// drain drops what is queued for a peer that just lost its connection.
func (t *TCPTransport) drain(p *peer) {
	for {
		select {
		case msgs := <-p.queue:
			t.reportSnapshots(p.id, msgs, false)
		default:
			return
		}
	}
}

// read reads frames from c and steps the node with them until c fails.
func (t *TCPTransport) read(p *peer, c net.Conn, dec wireDecoder) error {
	r := bufio.NewReaderSize(c, 64<<10)
	var hdr [4]byte
	var buf []byte
	for {
		_ = c.SetReadDeadline(time.Now().Add(6 * t.cfg.Keepalive))
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return err
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if uint64(n) > uint64(t.cfg.MaxFrameBytes) {
			t.log.Warn("cluster: peer sent a frame over the limit; disconnecting", "peer", hexID(p.id), "bytes", n, "limit", t.cfg.MaxFrameBytes)
			return fmt.Errorf("frame of %d bytes over the limit of %d", n, t.cfg.MaxFrameBytes)
		}
		if n == 0 {
			continue // keepalive
		}
		if cap(buf) < int(n) {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if _, err := io.ReadFull(r, buf); err != nil {
			return err
		}
		msgs, err := decodeFrame(buf, dec)
		if err != nil {
			t.log.Warn("cluster: peer sent a bad frame; disconnecting", "peer", hexID(p.id), "err", err)
			return err
		}
		t.recv.Step(msgs)
	}
}

// appendMessage appends m, of size bytes encoded, to a frame.
func appendMessage(b []byte, enc wireEncoder, m GroupMessage, size int) ([]byte, error) {
	b = binary.AppendUvarint(b, m.Group)
	b = binary.AppendUvarint(b, uint64(size))
	return enc.append(b, m.Message)
}

// decodeFrame decodes a frame's body.
func decodeFrame(b []byte, dec wireDecoder) ([]GroupMessage, error) {
	var out []GroupMessage
	for len(b) > 0 {
		group, n := binary.Uvarint(b)
		if n <= 0 {
			return nil, errors.New("bad group id")
		}
		b = b[n:]
		size, n := binary.Uvarint(b)
		if n <= 0 || size > uint64(len(b)-n) {
			return nil, errors.New("bad message length")
		}
		b = b[n:]
		m, err := dec.decode(b[:size])
		if err != nil {
			return nil, fmt.Errorf("message: %w", err)
		}
		b = b[size:]
		out = append(out, GroupMessage{Group: group, Message: m})
	}
	return out, nil
}

func writeHello(w io.Writer, magic string, version byte, from, to uint64, cluster string) error {
	b := make([]byte, 0, helloFixed+len(cluster))
	b = append(b, magic...)
	b = append(b, version)
	b = binary.BigEndian.AppendUint64(b, from)
	b = binary.BigEndian.AppendUint64(b, to)
	b = append(b, byte(len(cluster)))
	b = append(b, cluster...)
	_, err := w.Write(b)
	return err
}

// readHello reads a hello of any version this node speaks (1 to
// helloVersion).
func readHello(r io.Reader) (magic string, version byte, from, to uint64, cluster string, err error) {
	var b [helloFixed]byte
	if _, err = io.ReadFull(r, b[:]); err != nil {
		return "", 0, 0, 0, "", err
	}
	switch magic = string(b[:len(helloMagic)]); magic {
	case helloMagic, linkMagic:
	default:
		return "", 0, 0, 0, "", errors.New("not a cluster peer (bad magic)")
	}
	rest := b[len(helloMagic):]
	if version = rest[0]; version < 1 || version > helloVersion {
		return "", 0, 0, 0, "", fmt.Errorf("protocol version %d, this node speaks 1 to %d", version, helloVersion)
	}
	from = binary.BigEndian.Uint64(rest[1:9])
	to = binary.BigEndian.Uint64(rest[9:17])
	name := make([]byte, rest[17])
	if _, err = io.ReadFull(r, name); err != nil {
		return "", 0, 0, 0, "", err
	}
	return magic, version, from, to, string(name), nil
}

// hexID formats a node id as raft's log lines do.
func hexID(id uint64) string { return strconv.FormatUint(id, 16) }
