// Package broker is the AMQP 0.9.1 broker: connections, channels,
// exchanges, queues and the storage boundary they share.
package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/amqp-go/amqp-go/server/listener"
	"github.com/amqp-go/amqp-go/server/monitor"
	"github.com/amqp-go/amqp-go/server/security"
	"github.com/amqp-go/amqp-go/server/store"
	"github.com/amqp-go/amqp-go/shared/amqp"
	"github.com/amqp-go/amqp-go/shared/wal"
)

// Version is the broker's version, reported in server-properties.
var Version = "0.1.0-dev"

// Config is what the broker needs to run. Zero fields take the defaults
// documented on each.
type Config struct {
	// Address is host:port to listen on (default ":5672").
	Address string
	// NoPlain turns the plain listener off: with TLS set, TLS only.
	NoPlain bool
	// TLS, when set, makes an AMQPS listener on TLSAddress beside the
	// plain one: TLS starts TLS on each socket it accepts (as
	// tlsconf.Server.Serve does), and the connection is served as the
	// plain one's are after the TLS handshake (which counts against the
	// handshake timeout).
	TLS func(net.Conn) TLSConn
	// TLSAddress is host:port of the AMQPS listener (default ":5671").
	TLSAddress string
	// CertLoginFrom is where an EXTERNAL login takes the user name from:
	// CertLoginDN (default) or CertLoginCN.
	CertLoginFrom string
	// Heartbeat is the heartbeat interval proposed in connection.tune, in
	// seconds (default 60; 0 disables).
	Heartbeat uint16
	// ChannelMax is the highest channel number offered (default 2047).
	ChannelMax uint16
	// FrameMax is the largest frame offered (default 131072).
	FrameMax uint32
	// ReadBufferSize is each connection's read buffer (default 64 KiB).
	ReadBufferSize int
	// WriteBufferSize, when positive, sets each socket's kernel send
	// buffer (SO_SNDBUF); 0 leaves the kernel's auto-tuned default.
	WriteBufferSize int
	// MaxConnections, when positive, caps concurrent client connections;
	// sockets accepted beyond it are closed at once. 0 derives it from the
	// open-file limit (RLIMIT_NOFILE) less fdReserve; negative: no cap.
	MaxConnections int
	// MaxHandshakes caps connections still in the opening handshake; more
	// are closed at accept (default 1000).
	MaxHandshakes int
	// MaxMessageSize is the largest body a client may publish (default
	// 128 MiB, RabbitMQ's max_message_size).
	MaxMessageSize uint64
	// SendTimeout bounds each write to a client socket; past it the socket
	// is closed (default 15s, RabbitMQ's send_timeout).
	SendTimeout time.Duration
	// TCPKeepAlive is the TCP keepalive period of accepted sockets (0:
	// Go's default of 15s; negative: keepalive off).
	TCPKeepAlive time.Duration
	// ConsumerTimeout is how long a delivery may stay unacknowledged before
	// its channel is closed with 406, RabbitMQ's consumer_timeout (0: the
	// default, 30 minutes; negative: off). A queue's or a consumer's
	// x-consumer-timeout argument overrides it.
	ConsumerTimeout time.Duration
	// Users maps user names to passwords (default guest/guest, which like
	// RabbitMQ's may log in only from loopback). Used only without
	// Security: each gets every permission on every vhost of VHosts.
	Users map[string]string
	// VHosts lists virtual hosts beside Security's (default, without
	// Security: "/").
	VHosts []string
	// Security holds users, vhosts, permissions and limits (default: one
	// seeded from Users and VHosts). Its vhosts are the server's, beside
	// VHosts.
	Security *security.Store
	// LoopbackUsers may log in only over loopback, RabbitMQ's
	// loopback_users (nil: guest; empty, not nil: nobody).
	LoopbackUsers []string
	// Store holds messages (default: memory, or the segment log when
	// DataDir is set and the server is made with Open).
	Store store.Store
	// DataDir is where Open keeps durable state: definitions under
	// definitions/ (in the store OpenDefinitions opens), messages in the
	// segment log under messages/.
	DataDir string
	// OpenDefinitions opens the definitions store in a directory; Open
	// needs it with DataDir set. It is definitions.Open (Badger): the
	// broker does not import it, so that a binary that never opens a data
	// directory (FuzzConn's) does not link Badger.
	OpenDefinitions func(dir string) (DefinitionsStore, error)
	// SegmentSize is the log's segment size in bytes (default 64 MiB).
	SegmentSize int64
	// WALBatchBytes bounds one group-commit write (default 4 MiB).
	WALBatchBytes int
	// logFS replaces the message log's file system (tests: a crashable,
	// failable one).
	logFS wal.FS
	// defsWriteHook, if set, runs before each definitions write, and an
	// error it returns fails the write (tests: a write held in progress, or
	// failing).
	defsWriteHook func() error
	// CheckpointInterval is how often the delivered bound is raised
	// (storage.offsetcheckpointinterval; default 1s).
	CheckpointInterval time.Duration
	// StatsInterval is how often every queue's counters are sampled for
	// their rates, which are over the last interval (default 5s,
	// RabbitMQ's collect_statistics_interval).
	StatsInterval time.Duration
	// DiscardPersistent keeps persistent messages in memory only, like
	// transient ones (storage.persistent: false); definitions still last.
	DiscardPersistent bool
	// FsyncEveryRecord writes and fsyncs each log record on its own, with
	// no group commit (storage.fsync: always).
	FsyncEveryRecord bool
	// WALBatchDelay holds each group-commit batch open this long for more
	// appends (engine.walbatchtimeout; 0: write as soon as possible).
	WALBatchDelay time.Duration
	// NoSync skips fsync (benchmarks and tests of non-durable behaviour only).
	NoSync bool
	// RingBufferSize is how many ready messages of a durable queue stay in
	// memory; older ones already in the log are read back when consumers
	// reach them (default 16384).
	RingBufferSize int
	// RingBufferBytes bounds the bodies of ready persistent messages that
	// durable queues together keep in memory (default 256 MiB).
	RingBufferBytes int64
	// Logger receives the broker's logs (default: slog.Default()).
	Logger *slog.Logger
	// DisableHeartbeatDefault makes a zero Heartbeat mean "disabled" rather
	// than "default".
	DisableHeartbeatDefault bool
}

func (c *Config) setDefaults() {
	if c.Address == "" {
		c.Address = ":5672"
	}
	if c.TLSAddress == "" {
		c.TLSAddress = ":5671"
	}
	if c.Heartbeat == 0 && !c.DisableHeartbeatDefault {
		c.Heartbeat = 60
	}
	if c.ChannelMax == 0 {
		c.ChannelMax = 2047
	}
	if c.FrameMax == 0 {
		c.FrameMax = 131072
	}
	if c.ReadBufferSize == 0 {
		c.ReadBufferSize = 64 << 10
	}
	if c.MaxConnections == 0 {
		c.MaxConnections = connectionsForFileLimit()
	}
	if c.MaxHandshakes <= 0 {
		c.MaxHandshakes = 1000
	}
	if c.MaxMessageSize == 0 {
		c.MaxMessageSize = 128 << 20
	}
	if c.SendTimeout <= 0 {
		c.SendTimeout = 15 * time.Second
	}
	if c.ConsumerTimeout == 0 {
		c.ConsumerTimeout = 30 * time.Minute
	}
	c.securityDefaults()
	if c.Store == nil {
		c.Store = store.NewMemory()
	}
	if c.RingBufferSize <= 0 {
		c.RingBufferSize = 16384
	}
	if c.RingBufferBytes <= 0 {
		c.RingBufferBytes = 256 << 20
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Server is a running broker.
type Server struct {
	cfg   Config
	store store.Store
	// sec answers who may do what (cfg.Security).
	sec  *security.Store
	defs *definitions // nil without a data directory
	// heartbeats sends the connections' heartbeats (heartbeats.go).
	heartbeats heartbeats
	// policies caches the security store's policies compiled.
	policies policyCache
	// delivered keeps the delivered bound (nil without a data directory).
	delivered *deliveredMark
	// replies routes direct reply-to replies to their channels.
	replies replyRegistry
	logger  *slog.Logger

	ln net.Listener // nil with Config.NoPlain
	// tlsLn is the AMQPS listener (nil without Config.TLS).
	tlsLn net.Listener
	// handshakes counts connections in the opening handshake, against
	// cfg.MaxHandshakes.
	handshakes atomic.Int64
	// acceptLog, limitLog, loginLog and refuseLog rate-limit the logs of
	// accept errors, of sockets closed at accept by a limit, of refused
	// logins and of other failed handshakes: an attacker can make
	// arbitrarily many of each.
	acceptLog, limitLog, loginLog, refuseLog logLimiter
	// deliveredLog rate-limits failures to store the delivered bound.
	deliveredLog logLimiter
	// tally counts connections and channels against the security limits.
	tally tally
	// sampler samples the queues' counters for their rates.
	sampler rateSampler

	// mu guards conns, vhosts, alarm and closed.
	mu          sync.Mutex
	conns       map[*conn]struct{}
	vhosts      map[string]*VHost
	alarmReason string // the combined alarm: resourceAlarm, remoteAlarm and storeFailed
	// resourceAlarm is the resource monitor's reason ("" when clear).
	resourceAlarm string
	// remoteAlarm is the resources of the alarms of the other members
	// this node reaches, and remoteFrom names those members
	// (watchAlarms).
	remoteAlarm alarmResources
	remoteFrom  string
	// storeFailed is set once the message log fails.
	storeFailed bool
	// freedBytes counts the body bytes of every message a queue let go of
	// (acked, expired, dropped, dead-lettered, purged): the monitor's hint
	// that an idle heap holds garbage worth collecting (FreedBytes).
	freedBytes counterStripes
	// hotBytes is the body bytes of ready, pageable messages held in memory
	// by durable queues, against cfg.RingBufferBytes.
	hotBytes atomic.Int64
	// alarmChan points at a copy of alarmClear while an alarm is raised,
	// for lock-free reads.
	alarmChan  atomic.Pointer[chan struct{}]
	alarmClear chan struct{} // closed when the raised alarm clears
	closed     bool
	wg         sync.WaitGroup
	// queues counts the queues' driver goroutines (Close ends them).
	queues sync.WaitGroup

	stats counters

	// replicator, once set, carries definitions changes to the cluster
	// (Replicate).
	replicator atomic.Pointer[Replicator]
	// localChangeHook, set by tests only (SetBeforeLocalChange), runs as
	// a definitions change that the cluster does not carry is about to
	// be made here.
	localChangeHook testHook
	// pushHook, set by tests only (SetBeforePush), runs between a
	// publish's store put and its pushes into the queues.
	pushHook testHook
	// confirmsHook, set by tests only (SetBeforeConfirms), runs in a
	// connection's writer between its output swap and its confirms.
	confirmsHook testHook
	// quorum is the cluster's side of quorum queues (quorumgroups.go).
	quorum quorumState
	// transients are the cluster's transient and exclusive classic
	// queues' proposals (transientqueues.go).
	transients transientQueues
	links      nodeLinks // a cluster's classic queues' links (classiccluster.go)
	// queuesIndex is the metadata log's index of the last replicated
	// queue change applied here (classiccluster.go).
	queuesIndex atomic.Uint64
	alarms      clusterAlarms
}

// New builds a server from cfg; it does not listen yet.
func New(cfg Config) *Server {
	cfg.setDefaults()
	s := &Server{cfg: cfg, store: cfg.Store, sec: cfg.Security, logger: cfg.Logger,
		conns: map[*conn]struct{}{}, vhosts: map[string]*VHost{}}
	s.alarms.kick = make(chan struct{}, 1)
	s.sec.SetUsersDeletedHook(s.closeUserConnections)
	for _, name := range cfg.VHosts {
		s.vhosts[name] = newVHost(s, name)
	}
	for _, name := range cfg.Security.VHostNames() {
		if s.vhosts[name] == nil {
			s.vhosts[name] = newVHost(s, name)
		}
	}
	return s
}

// Listen binds the configured addresses: the plain one unless NoPlain,
// the TLS one if TLS is set. An error names the address.
func (s *Server) Listen() error {
	lc := net.ListenConfig{KeepAlive: s.cfg.TCPKeepAlive}
	if !s.cfg.NoPlain {
		ln, err := lc.Listen(context.Background(), "tcp", s.cfg.Address)
		if err != nil {
			return err
		}
		s.ln = ln
	}
	if s.cfg.TLS != nil {
		ln, err := lc.Listen(context.Background(), "tcp", s.cfg.TLSAddress)
		if err != nil {
			if s.ln != nil {
				s.ln.Close()
			}
			return fmt.Errorf("TLS listener: %w", err)
		}
		s.tlsLn = ln
	}
	if s.ln == nil && s.tlsLn == nil {
		return errors.New("no listener: the plain one is off and TLS is not configured")
	}
	return nil
}

// Addr is the bound plain address, or the TLS one when the plain
// listener is off (after Listen).
func (s *Server) Addr() net.Addr {
	if s.ln == nil {
		return s.tlsLn.Addr()
	}
	return s.ln.Addr()
}

// TLSAddr is the bound TLS address, or nil without TLS (after Listen).
func (s *Server) TLSAddr() net.Addr {
	if s.tlsLn == nil {
		return nil
	}
	return s.tlsLn.Addr()
}

// Serve accepts connections on every listener until Close. It returns nil
// after Close, or the first listener's error (having closed the others).
func (s *Server) Serve() error {
	if s.ln == nil || s.tlsLn == nil {
		if s.ln != nil {
			return s.accept(s.ln, nil)
		}
		return s.accept(s.tlsLn, s.cfg.TLS)
	}
	tlsDone := make(chan error, 1)
	go func() { tlsDone <- s.accept(s.tlsLn, s.cfg.TLS) }()
	err := s.accept(s.ln, nil)
	if err != nil {
		s.tlsLn.Close()
	}
	if terr := <-tlsDone; err == nil && terr != nil {
		err = terr
		s.ln.Close()
	}
	return err
}

// accept is one listener's accept loop; with startTLS each socket is
// served over TLS. Temporary accept errors, such as running out of file
// descriptors, are retried with a backoff, as net/http does, so that no
// client can stop the listener.
func (s *Server) accept(ln net.Listener, startTLS func(net.Conn) TLSConn) error {
	s.logger.Info("listening", "address", ln.Addr().String(), "tls", startTLS != nil, "max_connections", s.cfg.MaxConnections)
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return nil
			}
			if !listener.Temporary(err) {
				return err
			}
			backoff = listener.NextBackoff(backoff)
			if n, ok := s.acceptLog.allow(); ok {
				s.logger.Warn("accept failed; retrying", "err", err, "retry_in", backoff, "suppressed", n)
			}
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		if tc, ok := nc.(*net.TCPConn); ok {
			_ = tc.SetNoDelay(true)
			if s.cfg.WriteBufferSize > 0 {
				_ = tc.SetWriteBuffer(s.cfg.WriteBufferSize)
			}
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			nc.Close()
			continue
		}
		if s.cfg.MaxConnections > 0 && len(s.conns) >= s.cfg.MaxConnections {
			s.mu.Unlock()
			s.refuse(nc, "connection limit reached", "limit", s.cfg.MaxConnections)
			continue
		}
		if s.handshakes.Load() >= int64(s.cfg.MaxHandshakes) {
			s.mu.Unlock()
			s.refuse(nc, "too many handshakes in progress", "limit", s.cfg.MaxHandshakes)
			continue
		}
		if startTLS != nil {
			// The TLS handshake runs on the connection's goroutine, within
			// the handshake timeout, not here.
			nc = startTLS(nc)
		}
		c := newConn(s, nc)
		s.handshakes.Add(1)
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go c.serve()
	}
}

// refuse closes a socket at accept, logging why at most once a second.
func (s *Server) refuse(nc net.Conn, why string, args ...any) {
	if n, ok := s.limitLog.allow(); ok {
		s.logger.Info("connection refused: "+why, append(args, "peer", nc.RemoteAddr().String(), "suppressed", n)...)
	}
	nc.Close()
}

// Close stops accepting, closes every connection with 320
// CONNECTION_FORCED, waits for them to end, and closes the store.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	if s.ln != nil {
		s.ln.Close()
	}
	if s.tlsLn != nil {
		s.tlsLn.Close()
	}
	for _, c := range conns {
		c.forceClose()
	}
	waited := make(chan struct{})
	go func() { s.wg.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(5 * time.Second):
		for _, c := range conns {
			c.nc.Close()
		}
		<-waited
	}
	s.stopDelayed() // before the queues: a firing publishes into them
	s.stopQuorum()
	s.links.close() // waits for the served links' readers, which use the queues
	// End every queue's driver; what it holds stays in the store.
	s.eachQueue(nil, func(q *Queue) { q.stop() })
	s.queues.Wait()
	if s.delivered != nil {
		s.delivered.close()
	}
	err := s.store.Close()
	if s.defs != nil {
		if derr := s.defs.close(); err == nil {
			err = derr
		}
	}
	return err
}

func (s *Server) removeConn(c *conn) {
	s.releaseConnection(c)
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.wg.Done()
}

// vhost returns vhost name, made on first use when the security store
// has it (one created since start, by an import).
func (s *Server) vhost(name string) *VHost {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.vhosts[name]
	if v == nil {
		if _, ok := s.sec.VHost(name); ok {
			v = newVHost(s, name)
			s.vhosts[name] = v
		}
	}
	return v
}

// serverProperties is connection.start's server-properties table.
func serverProperties() amqp.Table {
	return amqp.Table{
		"product":      "AMQP-Go Server",
		"version":      Version,
		"platform":     "Go " + runtime.Version(),
		"copyright":    "AMQP-Go Server authors",
		"information":  "Licensed under the Apache License 2.0",
		"cluster_name": "amqp-go",
		"capabilities": amqp.Table{
			"publisher_confirms":           true,
			"exchange_exchange_bindings":   true,
			"basic.nack":                   true,
			"consumer_cancel_notify":       true,
			"connection.blocked":           true,
			"authentication_failure_close": true,
			"per_consumer_qos":             true,
			"consumer_priorities":          true,
			"direct_reply_to":              true,
		},
	}
}

// SetAlarm raises (on) or clears the resource monitor's alarm, whose
// reason names what is low ("low on memory", "low on disk" or both):
// publishing connections that understand connection.blocked are told so,
// on every member of a cluster (watchAlarms states it to the others).
// A message-store failure (storeFailure) stays raised whatever this says.
func (s *Server) SetAlarm(reason string, on bool) {
	if !on {
		reason = ""
	}
	s.mu.Lock()
	s.resourceAlarm = reason
	s.applyAlarmLocked()
	s.alarms.wake()
}

// storeFailure raises the "message store failure" alarm until restart.
func (s *Server) storeFailure() {
	s.mu.Lock()
	s.storeFailed = true
	s.applyAlarmLocked()
}

// storeFailureReason is the alarm a failed message log raises.
const storeFailureReason = "message store failure"

// applyAlarmLocked recomputes the combined alarm from its sources, then
// unlocks s.mu and tells every connection if the alarm rose or cleared.
func (s *Server) applyAlarmLocked() {
	reasons := make([]string, 0, 2)
	if res := parseAlarm(s.resourceAlarm) | s.remoteAlarm; res != 0 {
		reasons = append(reasons, res.text())
	} else if s.resourceAlarm != "" {
		reasons = append(reasons, s.resourceAlarm) // none the monitor raises
	}
	if s.storeFailed {
		reasons = append(reasons, storeFailureReason)
	}
	reason := strings.Join(reasons, " & ")
	on := reason != ""
	s.alarmReason = reason
	if on && s.alarmClear == nil {
		cleared := make(chan struct{})
		s.alarmClear = cleared
		s.alarmChan.Store(&cleared)
	} else if !on && s.alarmClear != nil {
		close(s.alarmClear)
		s.alarmClear = nil
		s.alarmChan.Store(nil)
	}
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.setBlocked(reason, on)
	}
}

// definitionsBlocked returns why durable definitions may not be written
// now, or "" if they may. Badger writes through memory-mapped files, and a
// write into one on a full disk kills the process with SIGBUS, so writes
// stop while the disk alarm or the store alarm is raised, or while less
// than minFreeForDefinitions is left.
func (s *Server) definitionsBlocked() string {
	s.mu.Lock()
	resource, failed := s.resourceAlarm, s.storeFailed
	s.mu.Unlock()
	switch {
	case failed:
		return "the " + storeFailureReason + " alarm is raised"
	case strings.Contains(resource, monitor.DiskReason):
		return "the disk alarm is raised (" + monitor.DiskReason + ")"
	}
	if free, err := monitor.DiskFree(s.cfg.DataDir); err == nil && free < minFreeForDefinitions {
		return fmt.Sprintf("only %d bytes of disk are free (%s)", free, monitor.DiskReason)
	}
	return ""
}

// alarmWait returns a channel closed when the raised alarm clears, or nil
// if no alarm is raised.
//
// Every frame of a publishing connection asks, so it reads an atomic rather
// than taking s.mu.
func (s *Server) alarmWait() <-chan struct{} {
	if p := s.alarmChan.Load(); p != nil {
		return *p
	}
	return nil
}

func (s *Server) alarmState() (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.alarmReason, s.alarmReason != ""
}

// forConsumers calls f for the queue of every consumer on c's channels.
func (s *Server) forConsumers(c *conn, f func(*Queue)) {
	c.consumerQueuesMu.Lock()
	qs := append([]*Queue(nil), c.consumerQueues...)
	c.consumerQueuesMu.Unlock()
	for _, q := range qs {
		f(q)
	}
}
