package fuzzconn

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"log/slog"
	"net"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/amqp-go/amqp-go/server/broker"
	"github.com/amqp-go/amqp-go/shared/amqp"
)

// FuzzConn feeds whole connections to the real connection code: stream is
// every byte a client sends after the protocol header, or, when opened is
// set, after a completed handshake (start-ok, tune-ok and open, which the
// target sends first).
//
// A fuzz process runs its inputs one after another through one server,
// started before the first (building one per input would cost more than
// most inputs). After each input the target deletes every queue and every
// exchange it left and every binding between the built-in exchanges, so
// the next input meets the server as a fresh one. The checks that run only
// on some inputs are chosen by a hash of the input, never by its place in
// the run. A failure therefore depends on its input alone and reproduces
// from it, and an input's coverage is its own. The target fails when:
//
//   - the server panics (the fuzz worker dies);
//   - the server sends a frame it could not have meant: a malformed frame,
//     an undecodable method or content header, or, after a handshake the
//     target sent, anything but start, tune and open-ok first;
//   - a stream of whole frames ends, followed by connection.close, and the
//     server neither answers nor closes the connection within
//     fuzzConnDeadline (the target answers a connection.close with
//     close-ok); a stream ending in the middle of a frame is cut off
//     instead, since the server rightly waits for the rest;
//   - the server stops reading for fuzzConnDeadline;
//   - the connection is not torn down within fuzzConnDeadline of the client
//     going away;
//   - a second client on the same server can then not open a channel,
//     declare a queue, publish and get the message back (checked for one
//     input in fuzzConnCheckEvery, as it costs as much as the input
//     itself);
//   - the server holds anything the client's going away should have ended:
//     a connection, a channel, a direct reply-to consumer, a handshake;
//   - deleting what the input left does not leave the server empty: a
//     queue, an exchange or a binding that survives, or a binding index
//     entry for one that has gone;
//   - the goroutines do not return, within fuzzConnDeadline, to what they
//     were before the input once that is deleted (each queue's goroutine
//     ends with its queue);
//   - Server.Close does not return within twice fuzzConnDeadline, or the
//     server's goroutines do not all end once it has (checked for one input
//     in fuzzConnCheckEvery*fuzzConnCloseEvery, with what the input left
//     still in place; a new server then takes over).
//     TestFuzzConnSeedsClose closes a server that every seed has run
//     through, all that they left still in place.
func FuzzConn(f *testing.F) {
	f.Cleanup(fuzzWorkerOneThread())
	// Every input builds and drops one or two connections; with the
	// default GOGC the collector takes a large part of the time, and the
	// heap stays small however often it runs.
	gc := debug.SetGCPercent(800)
	f.Cleanup(func() { debug.SetGCPercent(gc) })
	f.Cleanup(fuzzStackBallast())
	// The server is started here, outside any input, so that no input's
	// coverage includes starting it.
	fuzzShared.mu.Lock()
	if fuzzShared.srv == nil {
		fuzzShared.srv = startFuzzServer()
	}
	fuzzShared.mu.Unlock()
	f.Cleanup(func() {
		fuzzShared.mu.Lock()
		defer fuzzShared.mu.Unlock()
		if fs := fuzzShared.srv; fs != nil {
			fuzzShared.srv = nil
			_ = fs.s.Close()
		}
	})
	for _, s := range fuzzConnSeeds() {
		f.Add(s.stream, s.opened)
	}
	f.Fuzz(func(t *testing.T, stream []byte, opened bool) { fuzzConn(t, stream, opened) })
}

// fuzzWorkerOneThread runs a fuzz worker process's goroutines on one
// thread (GOMAXPROCS 1) until the returned func is called; in any other
// process it does nothing. An input's goroutines (the client's, the
// connection's reader and writer, its channels') hand work to each other:
// on several threads, each hand-off woke another thread, and how the
// goroutines interleaved, and so how often the loops that batch frames ran,
// varied from run to run of an input. The fuzzer took that for new
// coverage some 40 times a second and sent each such input back to be
// minimized, in vain; on one thread it does so a tenth as often, and an
// input costs less. The worker processes are the parallelism
// (scripts/fuzz runs twice as many as there are CPUs); races are the
// -race tests' business.
func fuzzWorkerOneThread() (restore func()) {
	if fl := flag.Lookup("test.fuzzworker"); fl == nil || fl.Value.String() != "true" {
		return func() {}
	}
	procs := runtime.GOMAXPROCS(1)
	return func() { runtime.GOMAXPROCS(procs) }
}

// fuzzStackBallast starts goroutines that sit on deep stacks until stop
// is called, so that new goroutines start with larger stacks: the runtime
// starts each with the average stack depth it saw at the last collection
// (adaptive stack start), which the process's idle goroutines otherwise
// keep at the minimum. Every input starts a connection's goroutines, and
// each grew its stack, doubling and copying every frame, deep in the
// handshake and the methods: a tenth of the target's time. It changes
// nothing but stack sizes.
func fuzzStackBallast() (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range fuzzBallast {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fuzzDeepWait(done)
		}()
	}
	return func() {
		close(done)
		wg.Wait()
	}
}

// fuzzBallast is how many goroutines fuzzStackBallast starts.
const fuzzBallast = 64

// fuzzDeepWait waits for done on a stack of some 24 KiB.
//
//go:noinline
func fuzzDeepWait(done <-chan struct{}) byte {
	var b [24 << 10]byte
	<-done
	return b[len(b)-1]
}

// fuzzShared is the server this process runs FuzzConn's inputs through;
// mu is held for a whole input, so that inputs never overlap on it.
var fuzzShared struct {
	mu  sync.Mutex
	srv *fuzzServer
}

// fuzzConn runs one input of FuzzConn on the shared server.
func fuzzConn(t testing.TB, stream []byte, opened bool) {
	if len(stream) > fuzzConnMaxInput {
		return
	}
	fuzzShared.mu.Lock()
	defer fuzzShared.mu.Unlock()
	fs := fuzzShared.srv
	if fs == nil {
		// Only the first input, or the first after a failure: FuzzConn
		// starts the server outside any input.
		fs = startFuzzServer()
		fuzzShared.srv = fs
	}
	defer func() {
		if t.Failed() {
			// What the failure left must not meet the next input.
			fuzzShared.srv = nil
		}
	}()
	// The shared server is idle: no connections, queues or exchanges of
	// an earlier input, and none of their goroutines.
	goroutines := runtime.NumGoroutine()
	fuzzRunInput(t, fs, stream, opened)
	// The occasional checks are chosen by the input, not by its place in
	// the run: the coverage they add must be the input's own, the same
	// every time it runs, or the fuzzer takes it for new behaviour and
	// spends seconds failing to minimize it.
	h := crc32.ChecksumIEEE(stream)
	if opened {
		h = ^h
	}
	if h%fuzzConnCheckEvery == 0 {
		fuzzCheckServes(t, fs.l)
		fs.awaitConns(t, "the checking connection to be torn down")
	}
	if h/fuzzConnCheckEvery%fuzzConnCloseEvery == 0 {
		fuzzShared.srv = nil
		// What is left running once Serve has returned is a leak.
		fs.close(t, goroutines-1)
		fuzzShared.srv = startFuzzServer() // here, not in the next input
		return
	}
	fs.reset(t)
	fuzzAwait(t, "the deleted queues' goroutines to end", fs.s.WaitQueues)
	fuzzWaitFor(t, "goroutines to return to %d", goroutines, func() bool {
		return runtime.NumGoroutine() <= goroutines
	})
}

// fuzzRunInput runs the connection of one input and waits for its
// teardown, checking what the server sent.
func fuzzRunInput(t testing.TB, fs *fuzzServer, stream []byte, opened bool) {
	send := make([]byte, 0, len(amqp.ProtocolHeader)+len(fuzzHandshake)+len(stream)+32)
	send = append(send, amqp.ProtocolHeader...)
	if opened {
		send = append(send, fuzzHandshake...)
	}
	send = append(send, stream...)
	wholeFrames := fuzzWholeFrames(stream)
	if wholeFrames {
		send = amqp.AppendMethodFrame(send, 0, &amqp.ConnectionClose{ReplyCode: amqp.ReplySuccess})
	}
	reply := fuzzConverse(t, fs.l, send, wholeFrames)
	if opened {
		reply.wantOpened(t, wholeFrames)
	} else if len(reply.methods) > 0 {
		if _, ok := reply.methods[0].(*amqp.ConnectionStart); !ok {
			t.Fatalf("the server's first method is %s, not connection.start", reply.methods[0].MethodName())
		}
	}
	fs.awaitConns(t, "the fuzzed connection to be torn down")
}

const (
	// fuzzConnMaxInput bounds a stream: the minimizer's cost grows with the
	// square of an input's length, and a few hundred bytes hold any
	// sequence of methods worth trying. Reading frames larger than the read
	// buffer is FuzzReadFrame's business.
	fuzzConnMaxInput = 1 << 10
	// fuzzConnFrameMax is the frame_max the server offers and the target
	// accepts: a frame claiming a size between the 4 KiB read buffer and it
	// takes the server's large-frame path (and never arrives whole, inputs
	// being short), one claiming more is rejected from its header.
	fuzzConnFrameMax = 16 << 10
	// fuzzConnDeadline bounds every wait: a server that needs longer is hung.
	fuzzConnDeadline = 5 * time.Second
	// fuzzConnCheckEvery is how often fuzzCheckServes runs: for one input
	// in fuzzConnCheckEvery, chosen by a hash of the input.
	fuzzConnCheckEvery = 8
	// fuzzConnCloseEvery is how often, among the inputs that run
	// fuzzCheckServes, the shared server is closed (and its goroutines
	// checked) instead of cleaned: starting a new one costs as much as a
	// few dozen inputs (8 made it 3 % of the target's time).
	fuzzConnCloseEvery = 32
)

// fuzzServer is a broker with memory storage whose listener hands it
// in-memory pipes (fuzzServerConn): no sockets, ports or file descriptors
// per input.
type fuzzServer struct {
	s      *broker.Server
	l      *fuzzListener
	served chan error // Serve's result; Serve's goroutine is the only one started here
}

// startFuzzServer starts a fuzzServer.
func startFuzzServer() *fuzzServer {
	fs := &fuzzServer{served: make(chan error, 1)}
	fs.s = broker.New(broker.Config{
		Address:                 "fuzz",
		FrameMax:                fuzzConnFrameMax,
		ReadBufferSize:          amqp.FrameMinSize,
		Users:                   map[string]string{"fuzz": "fuzz"},
		DisableHeartbeatDefault: true,
		// Rate sampling runs on a timer, not for an input: in an input's
		// run it was coverage the input did not cause.
		StatsInterval: time.Hour,
		Logger:        slog.New(slog.DiscardHandler),
	})
	fs.l = &fuzzListener{conns: make(chan net.Conn), done: make(chan struct{}), accepting: make(chan struct{})}
	fs.s.UseListener(fs.l)
	go func() { fs.served <- fs.s.Serve() }()
	// Serve's start is no input's coverage: a new server's, started after
	// an input, ran amid the next.
	<-fs.l.accepting
	return fs
}

// close closes the server and checks that the goroutines then return to
// goroutines: every one the server started ends.
func (fs *fuzzServer) close(t testing.TB, goroutines int) {
	closed := make(chan error, 1)
	go func() { closed <- fs.s.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("close: %v", err)
		}
	case <-time.After(2 * fuzzConnDeadline):
		t.Fatalf("Server.Close did not return within %v", 2*fuzzConnDeadline)
	}
	if err := <-fs.served; err != nil {
		t.Fatalf("serve: %v", err)
	}
	fuzzWaitFor(t, "goroutines to return to %d once the server closed", goroutines, func() bool {
		return runtime.NumGoroutine() <= goroutines
	})
}

// reset returns the server, its connections gone, to the state of a new
// one: it checks that nothing of a connection is left, then deletes every
// queue and exchange and the bindings between the built-in exchanges, and
// checks that nothing is left (Server.ConnectionsLeft, Server.DeleteAll).
func (fs *fuzzServer) reset(t testing.TB) {
	if err := fs.s.ConnectionsLeft(); err != nil {
		t.Fatal(err)
	}
	if err := fs.s.DeleteAll(); err != nil {
		t.Fatal(err)
	}
}

// fuzzListener is a net.Listener whose connections are net.Pipe ends.
type fuzzListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
	// accepting is closed when Serve first calls Accept.
	accepting     chan struct{}
	acceptingOnce sync.Once
}

func (l *fuzzListener) Accept() (net.Conn, error) {
	l.acceptingOnce.Do(func() { close(l.accepting) })
	select {
	case nc := <-l.conns:
		return nc, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *fuzzListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *fuzzListener) Addr() net.Addr { return fuzzAddr{} }

// dial hands the server one end of a new pipe and returns the other.
func (l *fuzzListener) dial(t testing.TB) net.Conn {
	client, pipe := net.Pipe()
	server := &fuzzServerConn{Conn: pipe}
	select {
	case l.conns <- server: // the server is waiting in Accept: no timer
		return client
	default:
	}
	select {
	case l.conns <- server:
		return client
	case <-time.After(fuzzConnDeadline):
		t.Fatalf("the server did not accept a connection within %v", fuzzConnDeadline)
		return nil
	}
}

// fuzzServerConn is the server's end of a pipe, with deadlines that end
// when it is closed, as a socket's do. A net.Pipe end keeps the timer of a
// deadline in the future until it fires, closed or not, and refuses to
// change deadlines once either end is closed: every connection the server
// tore down left the timers of its last write deadline (the send timeout)
// and of its handshake's, firing seconds later amid other inputs. Their
// coverage then varied from run to run of an input, which the fuzzer took
// for new behaviour, and they piled up by the hundred thousand.
type fuzzServerConn struct {
	net.Conn
	read, write fuzzDeadline
}

// fuzzDeadline is a deadline of a fuzzServerConn. Each has its own lock:
// the reader and the writer set theirs at once, and their contention on
// one lock was coverage that varied from run to run of an input. It keeps
// one timer, armed for the earliest deadline set since it last fired, not
// one per deadline set: the writer sets its deadline before every flush,
// and making and stopping a timer each time was a few per cent of the
// target's time. When the timer fires at a deadline that has since moved
// later, it rearms itself for the new one.
type fuzzDeadline struct {
	mu      sync.Mutex
	at      time.Time   // the deadline; zero for none
	expired bool        // the pipe's deadline is set to the past
	closed  bool        // the conn is closed: no timer may be armed
	timer   *time.Timer // nil until a deadline in the future is first set
	fireAt  time.Time   // when timer fires; zero when it is not armed
	pipeSet func(time.Time) error
}

func (c *fuzzServerConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

func (c *fuzzServerConn) SetReadDeadline(t time.Time) error {
	return c.read.set(t, c.Conn.SetReadDeadline)
}

func (c *fuzzServerConn) SetWriteDeadline(t time.Time) error {
	return c.write.set(t, c.Conn.SetWriteDeadline)
}

// set makes t the deadline. The pipe's own deadline (set with pipeSet) is
// only ever zero or past, which arms no timer in the pipe: t in the past
// is set at once, t in the future clears it and leaves it to d's timer.
func (d *fuzzDeadline) set(t time.Time, pipeSet func(time.Time) error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.pipeSet = pipeSet
	d.at = t
	if d.closed {
		return pipeSet(t) // the pipe's error for a closed conn
	}
	if !t.IsZero() && !time.Now().Before(t) {
		d.expired = true
		return pipeSet(t)
	}
	if d.expired {
		d.expired = false
		if err := pipeSet(time.Time{}); err != nil {
			return err
		}
	}
	if t.IsZero() {
		return nil // an armed timer finds no deadline when it fires
	}
	switch {
	case d.timer == nil:
		d.fireAt = t
		d.timer = time.AfterFunc(time.Until(t), d.fire)
	case d.fireAt.IsZero() || t.Before(d.fireAt):
		d.fireAt = t
		d.timer.Reset(time.Until(t))
	}
	return nil
}

// fire is d's timer's func: it expires the pipe's deadline if d's has
// passed, and otherwise rearms the timer for it.
func (d *fuzzDeadline) fire() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.fireAt = time.Time{}
	if d.closed || d.expired || d.at.IsZero() {
		return
	}
	if until := time.Until(d.at); until > 0 {
		d.fireAt = d.at
		d.timer.Reset(until)
		return
	}
	d.expired = true
	_ = d.pipeSet(time.Unix(1, 0))
}

// Close closes the pipe end and stops the deadlines' timers.
func (c *fuzzServerConn) Close() error {
	for _, d := range []*fuzzDeadline{&c.read, &c.write} {
		d.mu.Lock()
		d.closed = true
		if d.timer != nil {
			d.timer.Stop()
			d.fireAt = time.Time{}
		}
		d.mu.Unlock()
	}
	return c.Conn.Close()
}

type fuzzAddr struct{}

func (fuzzAddr) Network() string { return "pipe" }
func (fuzzAddr) String() string  { return "fuzz" }

// fuzzHandshake is what a client sends after the protocol header to open
// the connection: start-ok, tune-ok accepting the server's limits, open.
var fuzzHandshake = func() []byte {
	b := amqp.AppendMethodFrame(nil, 0, &amqp.ConnectionStartOk{
		ClientProperties: amqp.Table{"product": "FuzzConn", "capabilities": amqp.Table{
			"connection.blocked": true, "consumer_cancel_notify": true, "authentication_failure_close": true}},
		Mechanism: "PLAIN", Response: "\x00fuzz\x00fuzz", Locale: "en_US"})
	b = amqp.AppendMethodFrame(b, 0, &amqp.ConnectionTuneOk{ChannelMax: 2047, FrameMax: fuzzConnFrameMax})
	return amqp.AppendMethodFrame(b, 0, &amqp.ConnectionOpen{VirtualHost: "/"})
}()

// fuzzWholeFrames reports whether the server, reading stream, runs out of
// input between frames or stops at a frame error (unknown type, over
// fuzzConnFrameMax, wrong frame end), rather than waiting for the rest of a
// frame. Only the headers are looked at: a FrameReader would allocate for
// the size a frame claims. The server may stop earlier, at a frame over a
// lower frame_max or at a method it rejects, which ends the connection too.
func fuzzWholeFrames(stream []byte) bool {
	for len(stream) > 0 {
		if len(stream) < 7 {
			return false
		}
		switch stream[0] {
		case amqp.FrameMethod, amqp.FrameHeader, amqp.FrameBody, amqp.FrameHeartbeat:
		default:
			return true
		}
		size := uint64(binary.BigEndian.Uint32(stream[3:])) + 8
		if size > fuzzConnFrameMax {
			return true
		}
		if uint64(len(stream)) < size {
			return false
		}
		if stream[size-1] != amqp.FrameEnd {
			return true
		}
		stream = stream[size:]
	}
	return true
}

// fuzzReply is what the server sent on one connection.
type fuzzReply struct {
	methods []amqp.Method
	bodies  [][]byte
}

func (r *fuzzReply) String() string {
	var names []string
	for _, m := range r.methods {
		names = append(names, m.MethodName())
	}
	return "[" + strings.Join(names, " ") + "]"
}

// wantOpened checks that the server answered the target's handshake with
// start, tune and open-ok: all three when the client waited for answers
// (whole), else as many as it sent before the client hung up.
func (r *fuzzReply) wantOpened(t testing.TB, whole bool) {
	if whole && len(r.methods) < 3 {
		t.Fatalf("handshake not answered: server sent %s", r)
	}
	for i, want := range []string{"connection.start", "connection.tune", "connection.open-ok"} {
		if i < len(r.methods) && r.methods[i].MethodName() != want {
			t.Fatalf("handshake answered with %s", r)
		}
	}
}

// fuzzConverse sends send (the protocol header and what follows it) on a
// new connection, answers the server's connection.close with close-ok and
// hangs up, and reads what the server sends until the connection is closed
// or the server sends close-ok. With end unset, the client goes away as soon
// as the server has read all of send.
func fuzzConverse(t testing.TB, l *fuzzListener, send []byte, end bool) *fuzzReply {
	nc := l.dial(t)
	// One timer instead of a deadline's two: when it fires, reads and
	// writes fail as at a deadline.
	watchdog := time.AfterFunc(fuzzConnDeadline, func() { _ = nc.SetDeadline(time.Now()) })
	defer watchdog.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	var hangUp sync.Once
	defer hangUp.Do(func() { nc.Close() })
	var writeErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, writeErr = nc.Write(send)
		if !end {
			hangUp.Do(func() { nc.Close() })
		}
	}()

	reply := &fuzzReply{}
	fr := amqp.NewFrameReader(nc, fuzzConnFrameMax)
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			var fe *amqp.FrameError
			var ne net.Error
			switch {
			case errors.As(err, &fe):
				t.Fatalf("the server sent a malformed frame after %s: %v", reply, err)
			case errors.As(err, &ne) && ne.Timeout():
				t.Fatalf("the server neither answered nor closed the connection within %v; it sent %s", fuzzConnDeadline, reply)
			}
			break
		}
		switch f.Type {
		case amqp.FrameMethod:
			m, err := fuzzDecodeMethod(f.Payload)
			if err != nil {
				t.Fatalf("the server sent an undecodable method after %s: %v", reply, err)
			}
			reply.methods = append(reply.methods, m)
			if f.Channel != 0 {
				continue
			}
			switch m.(type) {
			case *amqp.ConnectionClose:
				// As clients do: answer, then hang up.
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, _ = nc.Write(amqp.AppendMethodFrame(nil, 0, &amqp.ConnectionCloseOk{}))
					hangUp.Do(func() { nc.Close() })
				}()
			case *amqp.ConnectionCloseOk:
				hangUp.Do(func() { nc.Close() })
			}
		case amqp.FrameHeader:
			if _, err := amqp.ParseContentHeader(f.Payload); err != nil {
				t.Fatalf("the server sent an unparsable content header after %s: %v", reply, err)
			}
		case amqp.FrameBody:
			reply.bodies = append(reply.bodies, bytes.Clone(f.Payload))
		}
	}
	hangUp.Do(func() { nc.Close() })
	wg.Wait()
	var ne net.Error
	if errors.As(writeErr, &ne) && ne.Timeout() {
		t.Fatalf("the server stopped reading for %v; it sent %s", fuzzConnDeadline, reply)
	}
	return reply
}

// fuzzStart is the last connection.start a server sent and its decoding:
// every connection gets the same one, and decoding its server properties
// costs as much as many an input.
var fuzzStart atomic.Pointer[struct {
	payload []byte
	m       amqp.Method
}]

// fuzzDecodeMethod is amqp.DecodeMethod, but for a payload identical to
// fuzzStart's it returns that method again rather than decode it anew. The
// method it returns is shared: it must not be changed.
func fuzzDecodeMethod(payload []byte) (amqp.Method, error) {
	if start := fuzzStart.Load(); start != nil && bytes.Equal(payload, start.payload) {
		return start.m, nil
	}
	m, err := amqp.DecodeMethod(payload)
	if _, ok := m.(*amqp.ConnectionStart); ok && err == nil {
		fuzzStart.Store(&struct {
			payload []byte
			m       amqp.Method
		}{bytes.Clone(payload), m})
	}
	return m, err
}

// fuzzCheckQueue is the queue fuzzCheckServes uses, named so that no input
// declares it first.
var fuzzCheckQueue = func() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return "fuzz-check-" + hex.EncodeToString(b)
}()

// fuzzCheckServes proves the server still serves a well-behaved client:
// open a channel, declare a queue, publish to it, get the message back.
func fuzzCheckServes(t testing.TB, l *fuzzListener) {
	b := append(bytes.Clone(amqp.ProtocolHeader), fuzzHandshake...)
	b = amqp.AppendMethodFrame(b, 1, &amqp.ChannelOpen{})
	b = amqp.AppendMethodFrame(b, 1, &amqp.QueueDeclare{Queue: fuzzCheckQueue, Exclusive: true})
	b = amqp.AppendMethodFrame(b, 1, &amqp.BasicPublish{RoutingKey: fuzzCheckQueue})
	b = amqp.AppendHeaderFrameProps(b, 1, 2, &amqp.Properties{})
	b = amqp.AppendBodyFrames(b, 1, []byte("ok"), 0)
	b = amqp.AppendMethodFrame(b, 1, &amqp.BasicGet{Queue: fuzzCheckQueue, NoAck: true})
	b = amqp.AppendMethodFrame(b, 0, &amqp.ConnectionClose{ReplyCode: amqp.ReplySuccess})
	reply := fuzzConverse(t, l, b, true)
	reply.wantOpened(t, true)
	want := []string{"channel.open-ok", "queue.declare-ok", "basic.get-ok", "connection.close-ok"}
	got := reply.methods[3:]
	ok := len(got) == len(want) && len(reply.bodies) == 1 && string(reply.bodies[0]) == "ok"
	for i := 0; ok && i < len(want); i++ {
		ok = got[i].MethodName() == want[i]
	}
	if !ok {
		t.Fatalf("after the fuzzed connection, a well-behaved client got %s and bodies %q", reply, reply.bodies)
	}
}

// awaitConns waits until the server has let go of every connection: the
// count of connections it waits for on Close is zero.
func (fs *fuzzServer) awaitConns(t testing.TB, what string) {
	// No connection is accepted meanwhile, which Add would race with.
	fuzzAwait(t, what, fs.s.WaitConnections)
	if n := fs.s.Stats().Connections; n != 0 {
		t.Fatalf("after %s, the server counts %d connections", what, n)
	}
}

// fuzzAwait calls wait, failing if it has not returned within
// fuzzConnDeadline. It blocks rather than polls: the rounds of a poll
// would be coverage that varies from run to run of an input, which the
// fuzzer takes for new behaviour and spends seconds minimizing.
func fuzzAwait(t testing.TB, what string, wait func()) {
	done := make(chan struct{})
	go func() {
		wait()
		close(done)
	}()
	timer := time.NewTimer(fuzzConnDeadline)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		buf := make([]byte, 1<<20)
		t.Fatalf("timed out after %v waiting for %s; goroutines:\n%s",
			fuzzConnDeadline, what, buf[:runtime.Stack(buf, true)])
	}
}

// fuzzWaitFor polls cond until it holds, failing after fuzzConnDeadline
// with what, formatted with n, as what it waited for (formatted only then:
// a Sprintf per input was a few per cent of the target's time). It yields
// to the server's goroutines before it starts to sleep: a sleep lasts far
// longer than the teardown it waits for.
func fuzzWaitFor(t testing.TB, what string, n int, cond func() bool) {
	deadline := time.Now().Add(fuzzConnDeadline)
	for i := 0; !cond(); i++ {
		if i < 1000 {
			runtime.Gosched()
			continue
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("timed out after %v waiting for %s; goroutines:\n%s",
				fuzzConnDeadline, fmt.Sprintf(what, n), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// TestFuzzConnSeedsClose runs every seed of FuzzConn through one server,
// leaving what each left (the queues of one, bindings to the exchanges of
// another), and checks that Server.Close then ends every goroutine the
// server started, queue goroutines included.
func TestFuzzConnSeedsClose(t *testing.T) {
	goroutines := runtime.NumGoroutine()
	fs := startFuzzServer()
	for _, s := range fuzzConnSeeds() {
		fuzzRunInput(t, fs, s.stream, s.opened)
	}
	fuzzCheckServes(t, fs.l)
	fs.awaitConns(t, "the checking connection to be torn down")
	if fs.s.VHost("/").Queue("q") == nil {
		t.Fatal("the seeds left no queue q: the server would close with nothing to end")
	}
	fs.close(t, goroutines)
}

type fuzzConnSeed struct {
	stream []byte
	opened bool
}

// fuzzConnSeeds are meaningful streams: a publish and get, a consumer with
// confirms and acks, the frame errors RabbitMQ answers with 501, content out
// of place, a whole handshake, refused logins and cut-off input.
func fuzzConnSeeds() []fuzzConnSeed {
	method := func(b []byte, ch uint16, ms ...amqp.Method) []byte {
		for _, m := range ms {
			b = amqp.AppendMethodFrame(b, ch, m)
		}
		return b
	}
	content := func(b []byte, ch uint16, body string, p *amqp.Properties) []byte {
		b = amqp.AppendHeaderFrameProps(b, ch, uint64(len(body)), p)
		return amqp.AppendBodyFrames(b, ch, []byte(body), 4096)
	}
	open := method(nil, 1, &amqp.ChannelOpen{})

	publishGet := method(bytes.Clone(open), 1, &amqp.QueueDeclare{Queue: "q"}, &amqp.BasicPublish{RoutingKey: "q"})
	publishGet = content(publishGet, 1, "hello", &amqp.Properties{Flags: amqp.FlagDeliveryMode | amqp.FlagHeaders,
		DeliveryMode: 2, Headers: amqp.Table{"k": "v"}})
	publishGet = method(publishGet, 1, &amqp.BasicGet{Queue: "q"}, &amqp.BasicAck{DeliveryTag: 1}, &amqp.ChannelClose{})

	consume := method(bytes.Clone(open), 1, &amqp.ConfirmSelect{}, &amqp.BasicQos{PrefetchCount: 1},
		&amqp.ExchangeDeclare{Exchange: "x", Type: "topic", AutoDelete: true},
		&amqp.QueueDeclare{Queue: "", Exclusive: true, Arguments: amqp.Table{"x-max-length": int32(1), "x-message-ttl": int32(1000)}},
		&amqp.QueueBind{Queue: "", Exchange: "x", RoutingKey: "a.#"},
		&amqp.BasicConsume{Queue: "", ConsumerTag: "c"},
		&amqp.BasicPublish{Exchange: "x", RoutingKey: "a.b", Mandatory: true})
	consume = content(consume, 1, "one", &amqp.Properties{})
	consume = method(consume, 1, &amqp.BasicPublish{Exchange: "x", RoutingKey: "nowhere", Mandatory: true})
	consume = content(consume, 1, "two", &amqp.Properties{Flags: amqp.FlagExpiration, Expiration: "0"})
	consume = method(consume, 1, &amqp.BasicNack{DeliveryTag: 1, Requeue: true}, &amqp.BasicReject{DeliveryTag: 2},
		&amqp.BasicCancel{ConsumerTag: "c"}, &amqp.QueueDelete{Queue: ""}, &amqp.ExchangeDelete{Exchange: "x"})

	tx := method(bytes.Clone(open), 1, &amqp.TxSelect{}, &amqp.BasicPublish{RoutingKey: "q"})
	tx = content(tx, 1, "", &amqp.Properties{})
	tx = method(tx, 1, &amqp.TxCommit{}, &amqp.TxRollback{}, &amqp.BasicRecover{Requeue: true})

	badEnd := method(bytes.Clone(open), 1, &amqp.BasicQos{PrefetchCount: 10})
	badEnd[len(badEnd)-1] = 0

	oversize := append(bytes.Clone(open), amqp.FrameBody, 0, 1, 0, 0x10, 0, 0, 0)
	largeFrame := method(bytes.Clone(open), 1, &amqp.BasicPublish{RoutingKey: "q"})
	largeFrame = amqp.AppendHeaderFrame(largeFrame, 1, amqp.ClassBasic, 5000, (&amqp.Properties{}).Append(nil))
	largeFrame = append(largeFrame, amqp.FrameBody, 0, 1, 0, 0, 0x13, 0x88) // 5000 bytes promised, none sent

	heartbeatOn1 := append(bytes.Clone(open), amqp.FrameHeartbeat, 0, 1, 0, 0, 0, 0, amqp.FrameEnd)
	headerAlone := amqp.AppendHeaderFrameProps(bytes.Clone(open), 1, 3, &amqp.Properties{})
	bodyAlone := amqp.AppendFrame(bytes.Clone(open), amqp.FrameBody, 1, []byte("abc"))
	longBody := method(bytes.Clone(open), 1, &amqp.BasicPublish{RoutingKey: "q"})
	longBody = amqp.AppendHeaderFrameProps(longBody, 1, 2, &amqp.Properties{})
	longBody = amqp.AppendFrame(longBody, amqp.FrameBody, 1, []byte("abcdef"))
	channelOn0 := method(nil, 0, &amqp.ChannelOpen{})
	twice := method(bytes.Clone(open), 1, &amqp.ChannelOpen{})
	farChannel := method(nil, 4000, &amqp.ChannelOpen{})
	closeThenMore := method(bytes.Clone(open), 0, &amqp.ConnectionClose{ReplyCode: amqp.ReplySuccess})
	closeThenMore = method(closeThenMore, 1, &amqp.QueueDeclare{Queue: "q"})
	flow := method(bytes.Clone(open), 1, &amqp.ChannelFlow{Active: false}, &amqp.BasicConsume{Queue: "amq.rabbitmq.reply-to", NoAck: true})
	cut := publishGet[:len(publishGet)-9]

	whole := bytes.Clone(fuzzHandshake)
	wrongPassword := method(nil, 0, &amqp.ConnectionStartOk{Mechanism: "PLAIN", Response: "\x00fuzz\x00nope", Locale: "en_US"})
	amqplain := amqp.AppendTable(nil, amqp.Table{"LOGIN": "fuzz", "PASSWORD": "fuzz"})[4:]
	amqplainLogin := method(nil, 0, &amqp.ConnectionStartOk{Mechanism: "AMQPLAIN", Response: string(amqplain), Locale: "en_US"},
		&amqp.ConnectionTuneOk{ChannelMax: 1, FrameMax: 4096, Heartbeat: 1}, &amqp.ConnectionOpen{VirtualHost: "nope"})
	smallFrameMax := method(nil, 0, &amqp.ConnectionStartOk{Mechanism: "PLAIN", Response: "\x00fuzz\x00fuzz", Locale: "en_US"},
		&amqp.ConnectionTuneOk{FrameMax: 100})

	return []fuzzConnSeed{
		{publishGet, true}, {consume, true}, {tx, true}, {badEnd, true}, {oversize, true}, {largeFrame, true},
		{heartbeatOn1, true}, {headerAlone, true}, {bodyAlone, true}, {longBody, true}, {channelOn0, true},
		{twice, true}, {farChannel, true}, {closeThenMore, true}, {flow, true}, {cut, true}, {nil, true},
		{append(bytes.Clone(whole), publishGet...), false}, {whole, false}, {wrongPassword, false},
		{amqplainLogin, false}, {smallFrameMax, false}, {nil, false},
	}
}
