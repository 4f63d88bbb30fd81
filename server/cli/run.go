package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/amqp-go/amqp-go/server/broker"
	"github.com/amqp-go/amqp-go/server/cluster"
	"github.com/amqp-go/amqp-go/server/config"
	"github.com/amqp-go/amqp-go/server/definitions"
	"github.com/amqp-go/amqp-go/server/monitor"
	"github.com/amqp-go/amqp-go/server/telemetry"
	"github.com/amqp-go/amqp-go/server/tlsconf"
	ucli "github.com/urfave/cli/v2"
)

// daemonChildEnv marks the detached child of a daemonizing parent. It is
// outside the AMQP_ namespace so configuration never sees it.
const daemonChildEnv = "_AMQP_SERVER_DAEMON_CHILD"

// run loads the configuration and runs the broker until SIGTERM or SIGINT.
func run(cx *ucli.Context) (err error) {
	cfg, loader, err := settings(cx, os.Environ())
	if err != nil {
		return err
	}
	if cfg.Server.Daemonize && os.Getenv(daemonChildEnv) == "" {
		return daemonize(cfg)
	}
	var ready func(error)
	if os.Getenv(daemonChildEnv) != "" {
		ready = readyPipe()
		defer func() {
			if ready != nil {
				ready(err)
			}
		}()
	}

	logs, logger, err := openLog(cfg.Server)
	if err != nil {
		return err
	}
	defer logs.Close()
	slog.SetDefault(logger)

	if cfg.Server.PIDFile != "" {
		pf, err := writePIDFile(cfg.Server.PIDFile)
		if err != nil {
			return err
		}
		defer pf.remove()
	}

	bc := brokerConfig(cfg, logger)
	var amqpTLS, telemetryTLS, managementTLS, clusterTLS *tlsconf.Server // reloaded on SIGHUP
	if cfg.AMQPTLS().Enabled() {
		if amqpTLS, err = tlsconf.New(cfg.AMQPTLS()); err != nil {
			return fmt.Errorf("security.tlscertfile: %w", err)
		}
		bc.TLS = func(nc net.Conn) broker.TLSConn { return amqpTLS.Serve(nc) }
	}
	if cfg.TelemetryTLS().Enabled() {
		if telemetryTLS, err = tlsconf.New(cfg.TelemetryTLS()); err != nil {
			return fmt.Errorf("telemetry.tlscertfile: %w", err)
		}
	}
	if cfg.Management.Enabled && cfg.ManagementTLS().Enabled() {
		if managementTLS, err = tlsconf.New(cfg.ManagementTLS()); err != nil {
			return fmt.Errorf("management.tlscertfile: %w", err)
		}
	}
	if cfg.Cluster.Enabled() && cfg.Cluster.TLS().Enabled() {
		if clusterTLS, err = tlsconf.New(cfg.Cluster.TLS()); err != nil {
			return fmt.Errorf("cluster.tlscertfile: %w", err)
		}
	}
	srv, err := openSecured(cfg, loader, bc)
	if err != nil {
		return err
	}
	if err := srv.Listen(); err != nil {
		srv.Close()
		if cfg.AMQPTLS().Enabled() {
			return fmt.Errorf("network.address %s, network.tlsport %d: %w", cfg.ListenAddress(), cfg.Network.TLSPort, err)
		}
		return fmt.Errorf("network.address %s: %w", cfg.ListenAddress(), err)
	}

	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(cfg.Server.GCPercent)
	}
	memLimit := monitor.MemoryLimit(cfg.Server.MemoryLimitPercent, cfg.Server.MemoryLimitBytes)
	if memLimit > 0 && os.Getenv("GOMEMLIMIT") == "" {
		// Let the garbage collector work harder near the alarm threshold
		// rather than let the heap double past it.
		debug.SetMemoryLimit(memLimit)
	}
	mon := monitor.Start(monitor.Options{
		MemoryLimit: memLimit, DiskPath: cfg.Storage.Path, DiskFreeLimit: cfg.Server.DiskFreeLimit,
		Interval: time.Duration(cfg.Server.ResourceCheckInterval),
		SetAlarm: func(reason string, on bool) {
			if on {
				logger.Warn("resource alarm raised: blocking publishers", "reason", reason)
			} else {
				logger.Info("resource alarm cleared: unblocking publishers")
			}
			srv.SetAlarm(reason, on)
		},
		Freed: srv.FreedBytes,
	})
	defer mon.Stop()

	if cfg.Telemetry.Enabled {
		opts := telemetry.Options{Server: srv, Resources: mon.State, Pprof: cfg.Telemetry.Pprof}
		if telemetryTLS != nil {
			opts.TLS = telemetryTLS.Config()
		}
		hs, addr, err := telemetry.Serve(cfg.TelemetryAddress(), opts)
		if err != nil {
			srv.Close()
			return fmt.Errorf("telemetry %s: %w", cfg.TelemetryAddress(), err)
		}
		defer hs.Close()
		logger.Info("telemetry listening", "address", addr.String(), "tls", telemetryTLS != nil, "pprof", cfg.Telemetry.Pprof)
		warnExposed(logger, "telemetry", addr)
	}
	if pa := cx.String("pprof-address"); pa != "" || cfg.Telemetry.Enabled && cfg.Telemetry.Pprof {
		// Sample contention for the mutex and block profiles whenever pprof
		// is served: 1 in 100 contended locks, blocking events over 100µs
		// (cheap enough for production, useful enough to find hot locks).
		runtime.SetMutexProfileFraction(100)
		runtime.SetBlockProfileRate(int((100 * time.Microsecond).Nanoseconds()))
	}
	if pa := cx.String("pprof-address"); pa != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		ln, err := net.Listen("tcp", pa)
		if err != nil {
			srv.Close()
			return fmt.Errorf("--pprof-address %s: %w", pa, err)
		}
		ps := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = ps.Serve(ln) }()
		defer ps.Close()
		logger.Info("pprof listening", "address", ln.Addr().String())
		warnExposed(logger, "pprof", ln.Addr())
	}

	var cl *cluster.Service
	var clusterDone <-chan struct{} // nil: no cluster, or its loop already ended
	if cfg.Cluster.Enabled() {
		if cl, err = openCluster(cfg, srv, clusterTLS, logger); err != nil {
			srv.Close()
			return err
		}
		srv.Replicate(cl)
		offerCtx, stopOffer := context.WithCancel(context.Background())
		defer stopOffer()
		go func() { // owned by run: ends with it (stopOffer) or once the cluster has definitions
			if err := srv.OfferDefinitions(offerCtx); err != nil && offerCtx.Err() == nil {
				logger.Warn("cluster: offering this node's definitions", "err", err)
			}
		}()
		// Deferred before the management API's close, so it runs after
		// it: no request meets a stopped cluster.
		defer func() {
			if err := cl.Close(); err != nil {
				logger.Error("closing the cluster's raft log", "err", err)
			}
		}()
		clusterDone = cl.Done()
	}

	closeManagement := func() {}
	if cfg.Management.Enabled {
		addr := cfg.ManagementAddress()
		var mtls *tls.Config
		if managementTLS != nil {
			mtls = managementTLS.Config()
		}
		mg, err := startManagement(srv, addr, mtls, cl, cfg.Cluster)
		if err != nil {
			srv.Close()
			return fmt.Errorf("management %s: %w", addr, err)
		}
		// Closed before the broker's shutdown on a signal, so that no
		// request meets a closing broker; the defer covers the other exits.
		closeManagement = func() { _ = mg.Close(5 * time.Second) }
		defer closeManagement()
		logger.Info("management listening", "address", mg.Addr().String(), "tls", managementTLS != nil)
	}

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	logger.Info("amqp-server started", "version", broker.Version, "address", srv.Addr().String(),
		"storage", cfg.Storage.Backend, "pid", os.Getpid())
	if ready != nil {
		ready(nil)
		ready = nil
	}

	for {
		select {
		case err := <-served:
			srv.Close()
			return fmt.Errorf("accepting connections: %w", err)
		case <-clusterDone:
			// The raft log failed: this node neither votes nor acks any
			// more; the broker serves on as a single node.
			logger.Error("cluster: this node left the cluster: its raft log failed", "err", cl.Err())
			clusterDone = nil
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				if err := logs.Reopen(); err != nil {
					logger.Error("reopening the log file", "err", err)
				} else {
					logger.Info("log file reopened")
				}
				reloadCert(logger, "security", amqpTLS)
				reloadCert(logger, "telemetry", telemetryTLS)
				reloadCert(logger, "management", managementTLS)
				reloadCert(logger, "cluster", clusterTLS)
				continue
			}
			logger.Info("shutting down", "signal", sig.String())
			closeManagement()
			return shutdown(srv, served, time.Duration(cfg.Server.ShutdownTimeout), logger)
		}
	}
}

// openCluster starts this node's part of the cluster (cluster.*): the
// raft log under <storage.path>/cluster, the inter-node listener on
// cluster.address and the metadata group, which carries srv's replicated
// definitions (applied from the log before Open returns).
func openCluster(cfg config.Config, srv *broker.Server, ts *tlsconf.Server, logger *slog.Logger) (*cluster.Service, error) {
	var members []cluster.Peer
	var self cluster.Peer
	var ids []string // name=id as the log lines show ids
	for _, m := range cfg.Cluster.Members() {
		p := cluster.Peer{ID: m.ID, Name: m.Name, Address: m.Address}
		members = append(members, p)
		ids = append(ids, m.Name+"="+strconv.FormatUint(m.ID, 16))
		if m.Name == cfg.Cluster.NodeName {
			self = p
		}
	}
	if cfg.Cluster.Join {
		self = cluster.Peer{ID: config.NodeID(cfg.Cluster.NodeName), Name: cfg.Cluster.NodeName, Address: cfg.Cluster.Address}
	}
	parts := map[byte]cluster.Replicated{}
	for kind, r := range srv.Replicas() {
		parts[kind] = r
	}
	cl, err := cluster.Open(cluster.ServiceConfig{Cluster: cfg.Cluster.Name, Self: self, Members: members, Join: cfg.Cluster.Join,
		Listen: cfg.Cluster.Address, Dir: filepath.Join(cfg.Storage.Path, "cluster"), TLS: ts, Replicated: parts, Logger: logger,
		OnOpen: func(s *cluster.Service) { srv.UseGroups(clusterGroups{s}) }, OnLink: srv.ServeLink})
	if err != nil {
		return nil, err
	}
	logger.Info("cluster: node started", "cluster", cfg.Cluster.Name, "node", self.Name,
		"address", cl.Addr(), "tls", ts != nil, "members", strings.Join(ids, ","))
	return cl, nil
}

// reloadCert reads a listener's certificate and key again (SIGHUP): new
// handshakes get the new certificate, open connections keep theirs, and a
// pair that does not load leaves the old one in use.
func reloadCert(logger *slog.Logger, section string, ts *tlsconf.Server) {
	if ts == nil {
		return
	}
	if err := ts.Reload(); err != nil {
		logger.Error("reloading the TLS certificate; the old one stays in use", "section", section, "err", err)
		return
	}
	leaf := ts.Certificate().Leaf
	logger.Info("TLS certificate reloaded", "section", section, "subject", leaf.Subject.String(), "not_after", leaf.NotAfter)
}

// warnExposed warns when an operations endpoint (telemetry, pprof) is
// reachable from other hosts: it has no authentication.
func warnExposed(logger *slog.Logger, what string, addr net.Addr) {
	if ta, ok := addr.(*net.TCPAddr); ok && !ta.IP.IsLoopback() {
		logger.Warn(what+" listens on a non-loopback address, reachable without authentication", "address", addr.String())
	}
}

// shutdown closes the broker (320 CONNECTION_FORCED to every client, then
// the store's flush) within timeout.
func shutdown(srv *broker.Server, served <-chan error, timeout time.Duration, logger *slog.Logger) error {
	closed := make(chan error, 1)
	go func() { closed <- srv.Close() }()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case err := <-closed:
		if err != nil {
			return fmt.Errorf("closing the store: %w", err)
		}
	case <-t.C:
		return fmt.Errorf("shutdown did not finish within server.shutdowntimeout (%s)", timeout)
	}
	if err := <-served; err != nil {
		return err
	}
	logger.Info("stopped")
	return nil
}

// brokerConfig maps the settings onto the broker's.
func brokerConfig(c config.Config, logger *slog.Logger) broker.Config {
	keepAlive := time.Duration(c.Network.TCPKeepAlive)
	if keepAlive == 0 {
		keepAlive = -1 // 0s in the file means off; 0 in broker.Config means Go's default
	}
	consumerTimeout := time.Duration(c.Engine.ConsumerTimeout)
	if consumerTimeout == 0 {
		consumerTimeout = -1 // 0s in the file means off; 0 in broker.Config means the default
	}
	return broker.Config{
		Address:                 c.ListenAddress(),
		NoPlain:                 !c.Network.Plain,
		TLSAddress:              c.TLSListenAddress(),
		CertLoginFrom:           c.Security.CertLoginFrom,
		Heartbeat:               uint16(c.Network.Heartbeat),
		DisableHeartbeatDefault: true,
		ChannelMax:              uint16(c.Network.ChannelMax),
		FrameMax:                uint32(c.Network.FrameMax),
		ReadBufferSize:          c.Network.ReadBufferSize,
		WriteBufferSize:         c.Network.WriteBufferSize,
		MaxConnections:          c.Network.MaxConnections,
		MaxHandshakes:           c.Network.MaxHandshakes,
		MaxMessageSize:          uint64(c.Network.MaxMessageSize),
		SendTimeout:             time.Duration(c.Network.SendTimeout),
		TCPKeepAlive:            keepAlive,
		ConsumerTimeout:         consumerTimeout,
		Logger:                  logger,
	}
}

// openBroker builds the broker on the configured storage backend: badger
// opens the durable store (definitions in Badger, messages in the segment
// log) under storage.path.
func openBroker(c config.Config, _ *config.Loader, bc broker.Config) (*broker.Server, error) {
	if c.Storage.Backend != "badger" {
		return broker.New(bc), nil
	}
	bc.DataDir = c.Storage.Path
	bc.OpenDefinitions = func(dir string) (broker.DefinitionsStore, error) { return definitions.Open(dir) }
	bc.SegmentSize = c.Storage.SegmentSize
	bc.WALBatchBytes = c.Engine.WALBatchSize
	bc.RingBufferSize = c.Engine.RingBufferSize
	bc.RingBufferBytes = c.Engine.RingBufferBytes
	bc.NoSync = c.Storage.Fsync == "never"
	bc.DiscardPersistent = !c.Storage.Persistent
	bc.CheckpointInterval = time.Duration(c.Storage.OffsetCheckpointInterval)
	bc.FsyncEveryRecord = c.Storage.Fsync == "always"
	bc.WALBatchDelay = time.Duration(c.Engine.WALBatchTimeout)
	return broker.Open(bc)
}

var errAlreadyRunning = errors.New("already running")
