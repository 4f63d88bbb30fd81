package cluster

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"regexp"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/amqp-go/amqp-go/server/servertest"
	"github.com/amqp-go/amqp-go/server/tlsconf"
	"github.com/amqp-go/amqp-go/shared/raftlog"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// tcpNode is one node of a TCP test cluster.
type tcpNode struct {
	id   uint64
	dir  string
	addr string
	log  *raftlog.Log
	tr   *TCPTransport
	n    *Node
	sm   *listSM
	logs *servertest.LogBuffer
}

type tcpCluster struct {
	t     *testing.T
	name  string
	nodes map[uint64]*tcpNode
	peers map[uint64]string
	// tls, when set, gives each node its TLS configuration.
	tls func(id uint64) *tlsconf.Server
	// versions, when set, has the highest wire version of some nodes
	// (as a node of an older version: see the wire protocol).
	versions map[uint64]byte
}

// newTCPCluster runs n nodes with group 1 over TCP on 127.0.0.1.
func newTCPCluster(t *testing.T, n int) *tcpCluster { return newTCPClusterTLS(t, n, nil) }

// newTCPClusterTLS is newTCPCluster with each node's TLS from tls (nil:
// none).
func newTCPClusterTLS(t *testing.T, n int, tls func(id uint64) *tlsconf.Server) *tcpCluster {
	c := &tcpCluster{t: t, name: "test", nodes: map[uint64]*tcpNode{}, peers: map[uint64]string{}, tls: tls}
	lns := map[uint64]net.Listener{}
	for id := uint64(1); id <= uint64(n); id++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns[id] = ln
		c.peers[id] = ln.Addr().String()
		c.nodes[id] = &tcpNode{id: id, dir: t.TempDir(), addr: ln.Addr().String()}
	}
	for id := range c.nodes {
		c.start(id, lns[id])
	}
	t.Cleanup(func() {
		for id := range c.nodes {
			c.stop(id)
		}
	})
	return c
}

// start runs node id on ln (nil: listen on its address again).
func (c *tcpCluster) start(id uint64, ln net.Listener) {
	c.t.Helper()
	tn := c.nodes[id]
	l, _, err := raftlog.Open(raftlog.Options{Dir: tn.dir, NoSync: true})
	if err != nil {
		c.t.Fatal(err)
	}
	tn.logs = &servertest.LogBuffer{}
	var ts *tlsconf.Server
	if c.tls != nil {
		ts = c.tls(id)
	}
	tr, err := NewTCPTransport(TCPConfig{Cluster: c.name, ID: id, Listen: tn.addr, Listener: ln, Peers: c.peers,
		Keepalive: 50 * time.Millisecond, TLS: ts, Logger: slog.New(slog.NewTextHandler(tn.logs, nil))})
	if err != nil {
		c.t.Fatal(err)
	}
	if v := c.versions[id]; v != 0 {
		tr.maxVersion = v
	}
	n, err := Start(Config{ID: id, Log: l, Transport: tr, TickInterval: 10 * time.Millisecond, ElectionTicks: 30})
	if err != nil {
		c.t.Fatal(err)
	}
	tr.Start(n)
	tn.log, tn.tr, tn.n, tn.sm = l, tr, n, &listSM{}
	ids := make([]uint64, 0, len(c.peers))
	for p := range c.peers {
		ids = append(ids, p)
	}
	if err := n.AddGroup(context.Background(), 1, ids, tn.sm); err != nil {
		c.t.Fatal(err)
	}
}

func (c *tcpCluster) stop(id uint64) {
	tn := c.nodes[id]
	if tn.n == nil {
		return
	}
	tn.n.Stop()
	if err := tn.tr.Close(); err != nil {
		c.t.Error(err)
	}
	if err := tn.log.Close(); err != nil {
		c.t.Error(err)
	}
	tn.n, tn.tr, tn.log = nil, nil, nil
}

// asTestCluster gives the in-process tests' helpers (leader, propose,
// converge) a view of the running nodes.
func (c *tcpCluster) asTestCluster() *testCluster {
	tc := &testCluster{t: c.t, nodes: map[uint64]*testNode{}}
	for id, tn := range c.nodes {
		tc.nodes[id] = &testNode{id: id, n: tn.n, sms: map[uint64]*listSM{1: tn.sm}}
	}
	return tc
}

// TestTCPThreeNodes elects a leader over real TCP, replicates through
// every node, then restarts a node (its listener and connections closed,
// a new listener on the same port) and checks it catches up.
func TestTCPThreeNodes(t *testing.T) {
	c := newTCPCluster(t, 3)
	tc := c.asTestCluster()
	start := time.Now()
	t.Logf("leader %d after %v", tc.leader(1), time.Since(start))
	var want []string
	for i := range 30 {
		v := fmt.Sprint(i)
		tc.propose(uint64(i%3)+1, 1, v)
		want = append(want, v)
	}
	tc.converge(1, want)
	c.waitConnected()

	// Node 3 accepts from both others; node 1 dials both. Restart each.
	for _, down := range []uint64{3, 1} {
		c.stop(down)
		tc = c.asTestCluster()
		lead := tc.leaderBut(1, down)
		for i := range 10 {
			v := fmt.Sprintf("without %d: %d", down, i)
			tc.propose(lead, 1, v)
			want = append(want, v)
		}
		tc.converge(1, want)
		c.start(down, nil)
		tc = c.asTestCluster()
		tc.leader(1)
		tc.converge(1, want)
		c.waitConnected()
	}
}

// TestTCPMixedVersions: nodes of wire version 1 and 2 work together, as
// in a rolling upgrade. Node 1 (version 1) dials nodes 2 and 3 and
// offers 1; node 2 (version 2) dials node 3 (version 1), is refused, and
// offers 1 next. Only nodes 2 and 3 restarted as version 2 use the
// compact encoding with each other.
func TestTCPMixedVersions(t *testing.T) {
	c := &tcpCluster{t: t, name: "test", nodes: map[uint64]*tcpNode{}, peers: map[uint64]string{}, versions: map[uint64]byte{1: 1, 3: 1}}
	for id := uint64(1); id <= 3; id++ {
		c.nodes[id] = &tcpNode{id: id, dir: t.TempDir(), addr: "127.0.0.1:0"}
	}
	lns := map[uint64]net.Listener{}
	for id, tn := range c.nodes {
		ln, err := net.Listen("tcp", tn.addr)
		if err != nil {
			t.Fatal(err)
		}
		lns[id], tn.addr, c.peers[id] = ln, ln.Addr().String(), ln.Addr().String()
	}
	for id := range c.nodes {
		c.start(id, lns[id])
	}
	t.Cleanup(func() {
		for id := range c.nodes {
			c.stop(id)
		}
	})
	tc := c.asTestCluster()
	var want []string
	propose := func(round string) {
		// Proposals to a node that knows no leader, or whose connection
		// to it is not up yet, are dropped.
		c.waitConnected()
		tc.leader(1)
		for i := range 30 {
			v := fmt.Sprintf("%s %d", round, i)
			tc.propose(uint64(i%3)+1, 1, v)
			want = append(want, v)
		}
		tc.converge(1, want)
	}
	propose("mixed")
	waitLog(t, c.nodes[2].logs, "peer=3 remote="+c.peers[3])
	for id, tn := range c.nodes {
		if tn.logs.Contains("wire_version=2") {
			t.Errorf("node %d used version 2 with a node of version 1:\n%s", id, tn.logs)
		}
	}

	// Node 3 upgraded: 2 and 3 now speak version 2, 1 still 1.
	c.stop(3)
	delete(c.versions, 3)
	c.start(3, nil)
	tc = c.asTestCluster()
	propose("upgraded")
	waitLog(t, c.nodes[3].logs, "wire_version=2")
	if !regexp.MustCompile(`peer=1 remote=\S+ wire_version=1`).MatchString(c.nodes[3].logs.String()) || c.nodes[1].logs.Contains("wire_version=2") {
		t.Errorf("node 1 is of version 1:\n%s\n%s", c.nodes[1].logs, c.nodes[3].logs)
	}
}

// waitConnected waits until every running node is connected to every
// other.
func (c *tcpCluster) waitConnected() {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		missing := ""
		for id, tn := range c.nodes {
			for p := range c.nodes {
				if p != id && tn.tr != nil && !tn.tr.Connected(p) {
					missing = fmt.Sprintf("node %d is not connected to %d", id, p)
				}
			}
		}
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatal(missing + " after 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// dialRaw connects to addr and sends a hello as node from.
func dialRaw(t *testing.T, addr string, from, to uint64, cluster string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if err := writeHello(conn, helloMagic, helloVersion, from, to, cluster); err != nil {
		t.Fatal(err)
	}
	return conn
}

// waitClosed waits until the peer closes conn (EOF or reset), reading
// and discarding what it sends.
func waitClosed(t *testing.T, conn net.Conn) {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.Copy(io.Discard, conn)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("the node did not close the connection in 10s")
	}
}

// waitLog waits until a node logged s.
func waitLog(t *testing.T, l *servertest.LogBuffer, s string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !l.Contains(s) {
		if time.Now().After(deadline) {
			t.Fatalf("no log line with %q in 10s; log:\n%s", s, l)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestTCPRefusesStrangers: a wrong cluster name, an unknown id and a
// connection that is not ours at all are closed, each with a log line
// that says why.
func TestTCPRefusesStrangers(t *testing.T) {
	c := newTCPCluster(t, 3)
	c.asTestCluster().leader(1)
	tn := c.nodes[3]
	for _, tc := range []struct {
		name     string
		from, to uint64
		cluster  string
		log      string
	}{
		{"wrong cluster", 1, 3, "other", `cluster name \"other\", this node is in \"test\"`},
		{"unknown id", 9, 3, "test", "unknown node id 9"},
		{"wrong target", 1, 2, "test", "wanted node id 2"},
		{"higher id dials", 3, 2, "test", "the lower id (2) dials"},
		{"same id", 3, 3, "test", "this node's own id 3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := tn
			if tc.name == "higher id dials" {
				target = c.nodes[2]
			}
			conn := dialRaw(t, target.addr, tc.from, tc.to, tc.cluster)
			waitClosed(t, conn)
			waitLog(t, target.logs, tc.log)
		})
	}
	t.Run("not a peer", func(t *testing.T) {
		conn, err := net.Dial("tcp", tn.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := conn.Write([]byte("AMQP\x00\x00\x09\x01 and some more bytes")); err != nil {
			t.Fatal(err)
		}
		waitClosed(t, conn)
		waitLog(t, tn.logs, "bad magic")
	})
	// The cluster is unharmed.
	tc := c.asTestCluster()
	tc.propose(1, 1, "after")
	tc.converge(1, []string{"after"})
}

// TestTCPHugeFrame: a peer that passed the handshake and announces a
// 4 GiB frame is disconnected before the frame is allocated.
func TestTCPHugeFrame(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logs := &servertest.LogBuffer{}
	recv := &countingReceiver{}
	tr, err := NewTCPTransport(TCPConfig{Cluster: "test", ID: 2, Listener: ln, Peers: map[uint64]string{1: "127.0.0.1:1", 2: ln.Addr().String()},
		MaxFrameBytes: 1 << 20, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	tr.Start(recv)
	defer tr.Close()

	conn := dialRaw(t, ln.Addr().String(), 1, 2, "test")
	if _, _, _, _, _, err := readHello(conn); err != nil {
		t.Fatal(err)
	}
	// A good frame first: it is delivered.
	frame := encodeFrames(t, 1<<20, []GroupMessage{{Group: 5, Message: heartbeat(1, 2)}})
	if _, err := conn.Write(frame); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for recv.steps() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the good frame was not delivered in 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], 0xFFFFFFF0)
	if _, err := conn.Write(hdr[:]); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, conn)
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 64<<20 {
		t.Errorf("allocated %d bytes for the refused frame", grew)
	}
	waitLog(t, logs, "frame over the limit")
	if recv.steps() != 1 {
		t.Errorf("%d steps, want the good frame's 1", recv.steps())
	}
}

// TestTCPSendNeverBlocks: a peer that completes the handshake and then
// reads nothing fills its queue; Send goes on returning at once,
// dropping and reporting the peer unreachable.
func TestTCPSendNeverBlocks(t *testing.T) {
	peerLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer peerLn.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := peerLn.Accept()
		if err != nil {
			return
		}
		if _, _, _, _, _, err := readHello(c); err == nil && writeHello(c, helloMagic, helloVersion, 2, 1, "test") == nil {
			accepted <- c // and never read again
			return
		}
		c.Close()
	}()
	recv := &countingReceiver{}
	tr, err := NewTCPTransport(TCPConfig{Cluster: "test", ID: 1, Listen: "127.0.0.1:0", Peers: map[uint64]string{2: peerLn.Addr().String()},
		QueueBatches: 4, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	tr.Start(recv)
	defer tr.Close()
	var conn net.Conn
	select {
	case conn = <-accepted:
		// Closed after the transport: its Close must not wait for the
		// stuck write.
		t.Cleanup(func() { conn.Close() })
	case <-time.After(10 * time.Second):
		t.Fatal("the transport did not dial in 10s")
	}
	deadline := time.Now().Add(10 * time.Second)
	for !tr.Connected(2) {
		if time.Now().After(deadline) {
			t.Fatal("not connected after 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	m := heartbeat(1, 2)
	m.Entries = []*pb.Entry{{Data: make([]byte, 1<<20)}}
	// Send until the writer is stuck (the socket buffers full, the queue
	// full behind it), timing each Send.
	q := tr.peers[2].queue
	var slowest time.Duration
	for sent := 0; len(q) < cap(q) || sent < 64; sent++ {
		start := time.Now()
		tr.Send(2, []GroupMessage{{Group: 1, Message: m}})
		slowest = max(slowest, time.Since(start))
		if sent > 10000 {
			t.Fatal("the writer still drains its queue after 10000 MiB")
		}
		if len(q) == cap(q) {
			runtime.Gosched() // let a writer that is not stuck take one
		}
	}
	if slowest > 100*time.Millisecond {
		t.Errorf("the slowest Send took %v", slowest)
	}
	recv.mu.Lock()
	if recv.unreachable == 0 {
		t.Error("dropped sends reported no unreachable peer")
	}
	recv.mu.Unlock()
	start := time.Now()
	tr.Close()
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close took %v with a write stuck", d)
	}
}

// countingReceiver counts what a transport hands it.
type countingReceiver struct {
	mu          sync.Mutex
	n           int // (mu) Step calls
	unreachable int // (mu) ReportUnreachable calls
}

func (r *countingReceiver) Step([]GroupMessage) {
	r.mu.Lock()
	r.n++
	r.mu.Unlock()
}
func (r *countingReceiver) ReportUnreachable(uint64) {
	r.mu.Lock()
	r.unreachable++
	r.mu.Unlock()
}
func (r *countingReceiver) ReportSnapshot(uint64, uint64, bool) {}

func (r *countingReceiver) steps() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

// encodeFrames is what a transport with the frame limit max writes for
// msgs, to node 2 in wire version helloVersion.
func encodeFrames(t *testing.T, limit int, msgs []GroupMessage) []byte {
	t.Helper()
	return encodeFramesIn(t, helloVersion, limit, msgs)
}

// encodeFramesIn is encodeFrames in wire version v, from node 1.
func encodeFramesIn(t *testing.T, v byte, limit int, msgs []GroupMessage) []byte {
	t.Helper()
	tr := &TCPTransport{cfg: TCPConfig{ID: 1, MaxFrameBytes: limit}, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	var b bytes.Buffer
	if _, err := tr.writeFrames(&b, nil, &peer{id: 2}, wireEncoder{self: 1, peer: 2, version: v}, msgs); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// decodeFramesIn splits b into frames, checks each against limit and
// decodes them as node 2, from node 1, in wire version v.
func decodeFramesIn(t *testing.T, v byte, limit int, b []byte) (frames int, out []GroupMessage) {
	t.Helper()
	for len(b) > 0 {
		n := int(binary.BigEndian.Uint32(b))
		if n > limit || 4+n > len(b) {
			t.Fatalf("frame of %d bytes, limit %d, %d left", n, limit, len(b)-4)
		}
		msgs, err := decodeFrame(b[4:4+n], wireDecoder{self: 2, peer: 1, version: v})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, msgs...)
		frames++
		b = b[4+n:]
	}
	return frames, out
}

// TestFrames: frames decode to what was encoded; a batch over the frame
// limit is split over several frames, and a message over it is left out.
func TestFrames(t *testing.T) {
	for v := byte(1); v <= helloVersion; v++ {
		t.Run(fmt.Sprintf("version %d", v), func(t *testing.T) { testFrames(t, v) })
	}
}

func testFrames(t *testing.T, v byte) {
	in := []GroupMessage{{Group: 1, Message: heartbeat(1, 2)}, {Group: 1 << 40, Message: heartbeat(3, 4)}}
	frame := encodeFramesIn(t, v, 1<<20, in)
	frames, out := decodeFramesIn(t, v, 1<<20, frame)
	if frames != 1 || len(out) != 2 || out[1].Group != 1<<40 || out[1].Message.GetFrom() != 3 || out[0].Message.GetTo() != 2 {
		t.Fatalf("%d frames: %v", frames, out)
	}
	if _, err := decodeFrame(frame[4:len(frame)-1], wireDecoder{self: 2, peer: 1, version: v}); err == nil {
		t.Fatal("a truncated frame decoded")
	}
	if frames, out := decodeFramesIn(t, v, 1<<20, encodeFramesIn(t, v, 1<<20, nil)); frames != 1 || len(out) != 0 {
		t.Fatalf("keepalive: %d frames, %v", frames, out)
	}

	const limit = 300
	var big []GroupMessage
	for i := range 20 {
		m := heartbeat(1, 2)
		m.Entries = []*pb.Entry{{Data: bytes.Repeat([]byte{byte(i)}, 50)}}
		big = append(big, GroupMessage{Group: uint64(i), Message: m})
	}
	huge := heartbeat(1, 2)
	huge.Entries = []*pb.Entry{{Data: make([]byte, limit)}}
	big = append(big[:10], append([]GroupMessage{{Group: 99, Message: huge}}, big[10:]...)...)
	frames, out = decodeFramesIn(t, v, limit, encodeFramesIn(t, v, limit, big))
	if frames < 4 || len(out) != 20 {
		t.Fatalf("%d frames, %d messages; want several frames and the 20 that fit", frames, len(out))
	}
	for i, m := range out {
		if m.Group != uint64(i) || len(m.Message.GetEntries()[0].GetData()) != 50 {
			t.Fatalf("message %d: group %d", i, m.Group)
		}
	}
}

// heartbeat is a small message from one node to another.
func heartbeat(from, to uint64) *pb.Message {
	return &pb.Message{Type: pb.MessageType_MsgHeartbeat.Enum(), From: proto.Uint64(from), To: proto.Uint64(to)}
}

// A link (DialLink) reaches the other node's OnLink, from either end
// (the higher id may dial too), carries bytes both ways, and is not
// waited for by the transport's Close; a node without OnLink refuses
// links, and a link to a stranger id is an error.
func TestTCPLinks(t *testing.T) {
	logs := slog.New(slog.NewTextHandler(io.Discard, nil))
	ln1, _ := net.Listen("tcp", "127.0.0.1:0")
	ln2, _ := net.Listen("tcp", "127.0.0.1:0")
	links := make(chan net.Conn, 1)
	froms := make(chan uint64, 1)
	tr1, err := NewTCPTransport(TCPConfig{Cluster: "test", ID: 1, Listener: ln1, Peers: map[uint64]string{2: ln2.Addr().String()}, Logger: logs,
		OnLink: func(from uint64, c net.Conn) { froms <- from; links <- c }})
	if err != nil {
		t.Fatal(err)
	}
	tr2, err := NewTCPTransport(TCPConfig{Cluster: "test", ID: 2, Listener: ln2, Peers: map[uint64]string{1: ln1.Addr().String()}, Logger: logs})
	if err != nil {
		t.Fatal(err)
	}
	tr1.Start(&countingReceiver{})
	tr2.Start(&countingReceiver{})
	defer tr2.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := tr2.DialLink(ctx, 1) // the higher id dials
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var served net.Conn
	select {
	case served = <-links:
		if from := <-froms; from != 2 {
			t.Fatalf("link from %d, want 2", from)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("OnLink not called")
	}
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(served, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("read %q, %v", buf, err)
	}
	if _, err := served.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "pong" {
		t.Fatalf("read %q, %v", buf, err)
	}
	start := time.Now()
	tr1.Close()
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close waited %v for a link it handed over", d)
	}
	served.Close()
	if _, err := tr1.DialLink(ctx, 2); err == nil {
		t.Error("a closed transport dialled a link")
	}
	if _, err := tr2.DialLink(ctx, 9); err == nil {
		t.Error("a link to a node that is no peer")
	}
	// Node 2 has no OnLink: node 1's link is refused.
	ln3, _ := net.Listen("tcp", "127.0.0.1:0")
	tr3, err := NewTCPTransport(TCPConfig{Cluster: "test", ID: 1, Listener: ln3, Peers: map[uint64]string{2: ln2.Addr().String()}, Logger: logs})
	if err != nil {
		t.Fatal(err)
	}
	tr3.Start(&countingReceiver{})
	defer tr3.Close()
	if c, err := tr3.DialLink(ctx, 2); err == nil {
		c.Close()
		t.Error("a node without OnLink took a link")
	}
}
