package cluster

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/amqp-go/amqp-go/shared/raftlog"
	"go.etcd.io/raft/v3"
)

// MetadataGroup is the Raft group of the cluster's metadata (vhosts,
// users, definitions); every member is in it.
const MetadataGroup = 1

// Peer is one member of the cluster.
type Peer struct {
	ID      uint64
	Name    string
	Address string // host:port of its inter-node listener
}

// ServiceConfig configures a Service.
type ServiceConfig struct {
	Cluster string
	// Self is this node; Members are the initial members, Self among
	// them, the same on every node (they bootstrap the metadata group).
	Self    Peer
	Members []Peer
	// Listen is the inter-node listener's address (default Self.Address);
	// Listener, when set, is used instead (tests: port 0).
	Listen   string
	Listener net.Listener
	// Dir is the Raft log's directory.
	Dir string
	// NoSync skips fsync (tests only).
	NoSync bool
	// TickInterval and ElectionTicks: see Config (defaults 100ms and 10).
	TickInterval  time.Duration
	ElectionTicks int
	Logger        *slog.Logger
}

// Service is this node's part of the cluster: its Raft log, the TCP
// transport, the Node and the metadata group. Open starts it, Close
// stops it; its methods are safe for concurrent use.
type Service struct {
	cfg  ServiceConfig
	log  *raftlog.Log
	tr   *TCPTransport
	node *Node
	meta *metadataLog
}

// Open opens the log under cfg.Dir, listens for peers and starts the
// metadata group: bootstrapped with cfg.Members on the first start,
// recovered from the log after.
func Open(cfg ServiceConfig) (*Service, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Listen == "" {
		cfg.Listen = cfg.Self.Address
	}
	if !slices.ContainsFunc(cfg.Members, func(p Peer) bool { return p.ID == cfg.Self.ID }) {
		return nil, fmt.Errorf("cluster: node %s is not among the members", cfg.Self.Name)
	}
	l, _, err := raftlog.Open(raftlog.Options{Dir: cfg.Dir, NoSync: cfg.NoSync})
	if err != nil {
		return nil, fmt.Errorf("cluster: raft log %s: %w", cfg.Dir, err)
	}
	addrs := map[uint64]string{}
	ids := make([]uint64, 0, len(cfg.Members))
	for _, p := range cfg.Members {
		addrs[p.ID] = p.Address
		ids = append(ids, p.ID)
	}
	tr, err := NewTCPTransport(TCPConfig{Cluster: cfg.Cluster, ID: cfg.Self.ID, Listen: cfg.Listen, Listener: cfg.Listener, Peers: addrs, Logger: cfg.Logger})
	if err != nil {
		l.Close()
		return nil, err
	}
	n, err := Start(Config{ID: cfg.Self.ID, Log: l, Transport: tr, TickInterval: cfg.TickInterval, ElectionTicks: cfg.ElectionTicks,
		Logger: raftLogger{cfg.Logger.With("group", MetadataGroup)}})
	if err != nil {
		tr.Close()
		l.Close()
		return nil, err
	}
	tr.Start(n)
	s := &Service{cfg: cfg, log: l, tr: tr, node: n, meta: &metadataLog{}}
	if err := n.AddGroup(context.Background(), MetadataGroup, ids, s.meta); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Addr is the inter-node listener's address.
func (s *Service) Addr() string { return s.tr.Addr().String() }

// Done is closed when the Node's loop ended on its own (see Node.Err).
func (s *Service) Done() <-chan struct{} { return s.node.Done() }

// Err is why the loop ended (see Node.Err).
func (s *Service) Err() error { return s.node.Err() }

// Close stops the Node, then the transport, then closes the log.
func (s *Service) Close() error {
	s.node.Stop()
	return errors.Join(s.tr.Close(), s.log.Close())
}

// Status is the cluster as this node sees it.
type Status struct {
	Cluster  string         `json:"cluster_name"`
	Node     string         `json:"node"`
	Members  []MemberStatus `json:"members"`
	Metadata GroupStatus    `json:"metadata"`
}

// MemberStatus is one member as this node sees it.
type MemberStatus struct {
	Name    string `json:"name"`
	ID      uint64 `json:"id"`
	Address string `json:"address"`
	Self    bool   `json:"self"`
	// Reachable: this node, or one it has a connection to.
	Reachable bool `json:"reachable"`
}

// GroupStatus is a Raft group's state on this node.
type GroupStatus struct {
	Group  uint64 `json:"group"`
	Leader string `json:"leader"` // "" while there is none
	// LeaderID is 0 while there is no leader.
	LeaderID uint64 `json:"leader_id"`
	Term     uint64 `json:"term"`
	Role     string `json:"role"` // StateFollower, StateCandidate, StatePreCandidate, StateLeader
	Commit   uint64 `json:"commit"`
	Applied  uint64 `json:"applied"`
	// Entries counts the normal entries applied since start (the
	// metadata group's state machine records no more yet).
	Entries uint64 `json:"entries_applied"`
}

// Status reports the members and the metadata group.
func (s *Service) Status(ctx context.Context) (Status, error) {
	rs, err := s.node.Status(ctx, MetadataGroup)
	if err != nil {
		return Status{}, err
	}
	st := Status{Cluster: s.cfg.Cluster, Node: s.cfg.Self.Name}
	for _, p := range s.cfg.Members {
		self := p.ID == s.cfg.Self.ID
		st.Members = append(st.Members, MemberStatus{Name: p.Name, ID: p.ID, Address: p.Address, Self: self,
			Reachable: self || s.tr.Connected(p.ID)})
		if p.ID == rs.Lead {
			st.Metadata.Leader = p.Name
		}
	}
	st.Metadata.Group, st.Metadata.LeaderID, st.Metadata.Term = MetadataGroup, rs.Lead, rs.HardState.GetTerm()
	st.Metadata.Role, st.Metadata.Commit, st.Metadata.Applied = rs.RaftState.String(), rs.HardState.GetCommit(), rs.Applied
	st.Metadata.Entries = s.meta.count()
	return st, nil
}

// Propose proposes data to the metadata group (see Node.Propose).
func (s *Service) Propose(ctx context.Context, data []byte) error {
	return s.node.Propose(ctx, MetadataGroup, data)
}

// metadataLog is the metadata group's state machine for now: it counts
// the entries applied and keeps nothing else, so definitions do not
// replicate yet.
type metadataLog struct {
	mu      sync.Mutex
	entries uint64 // (mu)
}

func (m *metadataLog) Apply(uint64, []byte) {
	m.mu.Lock()
	m.entries++
	m.mu.Unlock()
}

func (m *metadataLog) Snapshot() ([]byte, error) {
	return binary.BigEndian.AppendUint64(nil, m.count()), nil
}

func (m *metadataLog) Restore(data []byte) error {
	if len(data) != 8 {
		return fmt.Errorf("metadata snapshot of %d bytes, want 8", len(data))
	}
	m.mu.Lock()
	m.entries = binary.BigEndian.Uint64(data)
	m.mu.Unlock()
	return nil
}

func (m *metadataLog) count() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.entries
}

// raftLogger is raft's Logger on slog: its elections and leader changes
// at info, the rest at its levels.
type raftLogger struct{ l *slog.Logger }

func (r raftLogger) Debug(v ...any)              { r.l.Debug(fmt.Sprint(v...)) }
func (r raftLogger) Debugf(f string, v ...any)   { r.l.Debug(fmt.Sprintf(f, v...)) }
func (r raftLogger) Info(v ...any)               { r.l.Info(fmt.Sprint(v...)) }
func (r raftLogger) Infof(f string, v ...any)    { r.l.Info(fmt.Sprintf(f, v...)) }
func (r raftLogger) Warning(v ...any)            { r.l.Warn(fmt.Sprint(v...)) }
func (r raftLogger) Warningf(f string, v ...any) { r.l.Warn(fmt.Sprintf(f, v...)) }
func (r raftLogger) Error(v ...any)              { r.l.Error(fmt.Sprint(v...)) }
func (r raftLogger) Errorf(f string, v ...any)   { r.l.Error(fmt.Sprintf(f, v...)) }
func (r raftLogger) Fatal(v ...any)              { r.Panic(v...) }
func (r raftLogger) Fatalf(f string, v ...any)   { r.Panicf(f, v...) }
func (r raftLogger) Panic(v ...any)              { s := fmt.Sprint(v...); r.l.Error(s); panic(s) }
func (r raftLogger) Panicf(f string, v ...any)   { s := fmt.Sprintf(f, v...); r.l.Error(s); panic(s) }

var _ raft.Logger = raftLogger{}
