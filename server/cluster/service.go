package cluster

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/amqp-go/amqp-go/server/tlsconf"
	"github.com/amqp-go/amqp-go/shared/raftlog"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
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
	// With Join, Members are existing members to be reached from, Self
	// not among them: the node starts with no members and waits for one
	// of them to add it (AddMember); a log from an earlier start wins.
	Self    Peer
	Members []Peer
	Join    bool
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
	// SnapshotEvery: see Config (default 10000).
	SnapshotEvery uint64
	// TLS, when set, runs the inter-node connections over mutual TLS
	// (TCPConfig.TLS).
	TLS *tlsconf.Server
	// Replicated are the parts of the state the metadata group carries,
	// by kind (Replicate); the same kinds on every member.
	Replicated map[byte]Replicated
	// OnOpen, if set, is called with the Service before its metadata
	// group starts applying its log: the parts that start groups of
	// their own (quorum queues) need it from their first Apply.
	OnOpen func(*Service)
	// OnLink, if set, owns each link another member opens to this one
	// (DialLink there): the broker's own connection between nodes, for
	// queues reached through their home node. Without it, links are
	// refused.
	OnLink func(from uint64, c net.Conn)
	Logger *slog.Logger
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

	changeMu sync.Mutex // held by a membership change from propose to applied: one at a time from here
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
	if listed := slices.ContainsFunc(cfg.Members, func(p Peer) bool { return p.ID == cfg.Self.ID }); listed == cfg.Join {
		if cfg.Join {
			return nil, fmt.Errorf("cluster: node %s joins, so it is not among the members it joins", cfg.Self.Name)
		}
		return nil, fmt.Errorf("cluster: node %s is not among the members", cfg.Self.Name)
	}
	l, _, err := raftlog.Open(raftlog.Options{Dir: cfg.Dir, NoSync: cfg.NoSync})
	if err != nil {
		return nil, fmt.Errorf("cluster: raft log %s: %w", cfg.Dir, err)
	}
	addrs := map[uint64]string{}
	var boot []raft.Peer
	for _, p := range cfg.Members {
		addrs[p.ID] = p.Address
		boot = append(boot, raft.Peer{ID: p.ID, Context: p.context()})
	}
	if cfg.Join {
		boot = nil
	}
	tr, err := NewTCPTransport(TCPConfig{Cluster: cfg.Cluster, ID: cfg.Self.ID, Listen: cfg.Listen, Listener: cfg.Listener, Peers: addrs,
		TLS: cfg.TLS, OnLink: cfg.OnLink, Logger: cfg.Logger})
	if err != nil {
		l.Close()
		return nil, err
	}
	n, err := Start(Config{ID: cfg.Self.ID, Log: l, Transport: tr, Reachable: tr.Connected, TickInterval: cfg.TickInterval, ElectionTicks: cfg.ElectionTicks, SnapshotEvery: cfg.SnapshotEvery,
		Logger: raftLogger{cfg.Logger}})
	if err != nil {
		tr.Close()
		l.Close()
		return nil, err
	}
	tr.Start(n)
	s := &Service{cfg: cfg, log: l, tr: tr, node: n, meta: newMetadataLog(cfg.Self.ID, cfg.Replicated, tr, cfg.Members, cfg.Logger)}
	if cfg.OnOpen != nil {
		cfg.OnOpen(s)
	}
	if err := n.AddGroupWithContexts(context.Background(), MetadataGroup, boot, s.meta); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// NodeName is this node's name (cluster.nodename).
func (s *Service) NodeName() string { return s.cfg.Self.Name }

// DialLink opens a link to member id, over the inter-node listener (with
// its TLS): the caller owns the connection, and the other side's
// ServiceConfig.OnLink the other end.
func (s *Service) DialLink(ctx context.Context, id uint64) (net.Conn, error) {
	return s.tr.DialLink(ctx, id)
}

// Addr is the inter-node listener's address.
func (s *Service) Addr() string { return s.tr.Addr().String() }

// Done is closed when the Node's loop ended on its own (see Node.Err).
func (s *Service) Done() <-chan struct{} { return s.node.Done() }

// Err is why the loop ended (see Node.Err).
func (s *Service) Err() error { return s.node.Err() }

// Close hands the metadata group's leadership to another member if this
// node leads it (HandOver), then stops the Node, then the transport, then
// closes the log.
func (s *Service) Close() error {
	s.HandOver(handOverTimeout)
	s.node.Stop()
	return errors.Join(s.tr.Close(), s.log.Close())
}

// handOverTimeout bounds how long Close waits for another member to take
// the leadership.
const handOverTimeout = 2 * time.Second

// HandOver asks, for every group this node leads (the metadata group and
// the quorum queues'), the member furthest along to take the leadership
// over, and waits, at most within, until this node leads none of them: a
// node that stops gracefully costs the others no election timeout, and
// the changes it would have taken with it go to the new leaders. It
// reports whether every leadership moved.
func (s *Service) HandOver(within time.Duration) bool {
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	ids, err := s.node.Groups(ctx)
	if err != nil {
		return false
	}
	var moving []uint64
	for _, id := range ids {
		if to, err := s.node.TransferLeadership(ctx, id); err == nil && to != 0 {
			moving = append(moving, id)
		}
	}
	for len(moving) > 0 {
		kept := moving[:0]
		for _, id := range moving {
			st, err := s.node.Status(ctx, id)
			if err != nil || st.RaftState == raft.StateLeader || st.Lead == 0 {
				kept = append(kept, id)
			} else if id == MetadataGroup {
				s.cfg.Logger.Info("cluster: leadership handed over", "to", hexID(st.Lead))
			}
		}
		moving = kept
		if len(moving) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			s.cfg.Logger.Warn("cluster: leadership not handed over in time", "groups", len(moving))
			return false
		case <-time.After(10 * time.Millisecond):
		}
	}
	return true
}

// Status is the cluster as this node sees it.
type Status struct {
	Cluster string `json:"cluster_name"`
	Node    string `json:"node"`
	// Member: this node is in the metadata group's configuration (not
	// while a joining node waits to be added, nor after it left).
	Member   bool           `json:"member"`
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
	members := s.meta.members()
	if len(members) == 0 {
		members = s.cfg.Members // a joining node not yet added: the ones it knows
	}
	st.Member = slices.ContainsFunc(members, func(p Peer) bool { return p.ID == s.cfg.Self.ID })
	for _, p := range members {
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

// ErrMemberExists and ErrNoMember are AddMember's and RemoveMember's
// refusals.
var (
	ErrMemberExists = errors.New("cluster: already a member")
	ErrNoMember     = errors.New("cluster: no such member")
)

// AddMember adds p to the cluster (rabbitmqctl's join_cluster, run on a
// member for the node that joins): it proposes a conf change carrying
// p's name and address, so every member's transport learns it on apply,
// and waits until this node has applied it or ctx ends. p should be
// running with Join set, its Members naming a member.
func (s *Service) AddMember(ctx context.Context, p Peer) error {
	if p.ID == 0 || p.Name == "" || p.Address == "" {
		return errors.New("cluster: a member needs a name, an id and an address")
	}
	for _, m := range s.meta.members() {
		if m.ID == p.ID {
			return fmt.Errorf("%w: %s (id %s)", ErrMemberExists, m.Name, hexID(m.ID))
		}
	}
	cc := &pb.ConfChangeV2{Changes: []*pb.ConfChangeSingle{{Type: pb.ConfChangeType_ConfChangeAddNode.Enum(), NodeId: proto.Uint64(p.ID)}}, Context: p.context()}
	return s.change(ctx, cc, func(ms []Peer) bool { return slices.ContainsFunc(ms, func(m Peer) bool { return m.ID == p.ID }) })
}

// RemoveMember removes the member named name (forget_cluster_node; this
// node's own name is leaving) and waits until this node has applied it
// or ctx ends. The last member cannot be removed.
func (s *Service) RemoveMember(ctx context.Context, name string) error {
	i := slices.IndexFunc(s.meta.members(), func(m Peer) bool { return m.Name == name })
	if i < 0 {
		return fmt.Errorf("%w: %q", ErrNoMember, name)
	}
	id := s.meta.members()[i].ID
	cc := &pb.ConfChangeV2{Changes: []*pb.ConfChangeSingle{{Type: pb.ConfChangeType_ConfChangeRemoveNode.Enum(), NodeId: proto.Uint64(id)}}}
	return s.change(ctx, cc, func(ms []Peer) bool { return !slices.ContainsFunc(ms, func(m Peer) bool { return m.ID == id }) })
}

// change proposes cc and waits until done holds for the members.
func (s *Service) change(ctx context.Context, cc *pb.ConfChangeV2, done func([]Peer) bool) error {
	s.changeMu.Lock()
	defer s.changeMu.Unlock()
	if err := s.node.ProposeConfChange(ctx, MetadataGroup, cc); err != nil {
		if errors.Is(err, raft.ErrProposalDropped) {
			return errors.New("cluster: no leader to take the change now (is a majority of the members up?)")
		}
		return err
	}
	for {
		ms, changed := s.meta.watch()
		if done(ms) {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("cluster: the change was not applied in time (no majority, or another change pending on the leader?): %w", ctx.Err())
		case <-s.node.Done():
			return ErrStopped
		}
	}
}

// context is p's name and address as a conf change carries them.
func (p Peer) context() []byte {
	b, _ := json.Marshal(memberContext{Name: p.Name, Address: p.Address})
	return b
}

type memberContext struct {
	Name    string `json:"name"`
	Address string `json:"address"`
}

// peerSet is what the metadata state machine tells of members coming
// and going: the transport.
type peerSet interface {
	AddPeer(id uint64, addr string)
	RemovePeer(id uint64)
	Peers() map[uint64]string
}

// metadataLog is the metadata group's state machine: the members (names
// and addresses, from the conf changes, so the log and its snapshots hold
// them), a count of the normal entries applied, and the replicated parts
// (Replicated), whose changes it hands to them. The driver loop writes
// it, Status and the membership calls read it.
type metadataLog struct {
	self    uint64              // this node's id: its proposals' waiters are here
	parts   map[byte]Replicated // the replicated parts by kind; fixed at Open
	waiters replicaWaiters
	peers   peerSet
	known   map[uint64]Peer // from config: addresses for conf changes without a context
	logger  *slog.Logger
	mu      sync.Mutex
	entries uint64          // (mu)
	byID    map[uint64]Peer // (mu) the members
	changed chan struct{}   // (mu) closed and replaced when byID changes
}

func newMetadataLog(self uint64, parts map[byte]Replicated, peers peerSet, known []Peer, logger *slog.Logger) *metadataLog {
	m := &metadataLog{self: self, parts: parts, peers: peers, known: map[uint64]Peer{}, logger: logger, byID: map[uint64]Peer{}, changed: make(chan struct{})}
	for _, p := range known {
		m.known[p.ID] = p
	}
	return m
}

func (m *metadataLog) Apply(index uint64, data []byte) {
	m.applyReplica(index, data)
	m.mu.Lock()
	m.entries++
	m.mu.Unlock()
}

// ApplyConfChange records the members added and removed, and tells the
// transport and the parts that hear of removals (MemberRemover).
func (m *metadataLog) ApplyConfChange(index uint64, cc *pb.ConfChangeV2, _ *pb.ConfState) {
	for _, c := range cc.GetChanges() {
		id := c.GetNodeId()
		switch c.GetType() {
		case pb.ConfChangeType_ConfChangeAddNode, pb.ConfChangeType_ConfChangeAddLearnerNode:
			p := m.known[id]
			var mc memberContext
			if err := json.Unmarshal(cc.GetContext(), &mc); err == nil && mc.Name != "" {
				p = Peer{ID: id, Name: mc.Name, Address: mc.Address}
			}
			if p.ID == 0 {
				m.logger.Warn("cluster: a member was added without a known address", "id", hexID(id), "index", index)
				p = Peer{ID: id, Name: hexID(id)}
			}
			m.setMember(p)
			m.peers.AddPeer(id, p.Address)
		case pb.ConfChangeType_ConfChangeRemoveNode:
			m.mu.Lock()
			delete(m.byID, id)
			m.notifyLocked()
			m.mu.Unlock()
			m.peers.RemovePeer(id)
			for _, kind := range slices.Sorted(maps.Keys(m.parts)) {
				if r, ok := m.parts[kind].(MemberRemover); ok {
					r.MemberRemoved(index, id)
				}
			}
		}
	}
}

func (m *metadataLog) setMember(p Peer) {
	m.mu.Lock()
	m.byID[p.ID] = p
	m.notifyLocked()
	m.mu.Unlock()
}

func (m *metadataLog) notifyLocked() {
	close(m.changed)
	m.changed = make(chan struct{})
}

// members returns the members sorted by name.
func (m *metadataLog) members() []Peer {
	ms, _ := m.watch()
	return ms
}

// watch returns the members and a channel closed when they change.
func (m *metadataLog) watch() ([]Peer, <-chan struct{}) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ms := make([]Peer, 0, len(m.byID))
	for _, p := range m.byID {
		ms = append(ms, p)
	}
	slices.SortFunc(ms, func(a, b Peer) int { return strings.Compare(a.Name, b.Name) })
	return ms, m.changed
}

// metadataSnapshot is the metadata state machine's snapshot.
type metadataSnapshot struct {
	Entries uint64 `json:"entries"`
	Members []Peer `json:"members"`
	// Parts are the replicated parts' snapshots by kind.
	Parts map[byte][]byte `json:"parts,omitempty"`
}

func (m *metadataLog) Snapshot() ([]byte, error) {
	snap := metadataSnapshot{Entries: m.count(), Members: m.members()}
	for _, kind := range slices.Sorted(maps.Keys(m.parts)) {
		b, err := m.parts[kind].Snapshot()
		if err != nil {
			return nil, fmt.Errorf("metadata snapshot of part %d: %w", kind, err)
		}
		if snap.Parts == nil {
			snap.Parts = map[byte][]byte{}
		}
		snap.Parts[kind] = b
	}
	return json.Marshal(snap)
}

// Restore takes a snapshot's members and count, and makes them the
// transport's peers (the ones from config that left are dropped). An
// 8-byte snapshot is the earlier format: the count alone, the members
// left as they are.
func (m *metadataLog) Restore(data []byte) error {
	var snap metadataSnapshot
	if len(data) == 8 {
		m.mu.Lock()
		m.entries = binary.BigEndian.Uint64(data)
		m.mu.Unlock()
		return nil
	}
	if err := json.Unmarshal(data, &snap); err != nil {
		return fmt.Errorf("metadata snapshot: %w", err)
	}
	byID := make(map[uint64]Peer, len(snap.Members))
	for _, p := range snap.Members {
		byID[p.ID] = p
	}
	m.mu.Lock()
	m.entries, m.byID = snap.Entries, byID
	m.notifyLocked()
	m.mu.Unlock()
	for id := range m.peers.Peers() {
		if _, ok := byID[id]; !ok {
			m.peers.RemovePeer(id)
		}
	}
	for _, p := range snap.Members {
		m.peers.AddPeer(p.ID, p.Address)
	}
	for _, kind := range slices.Sorted(maps.Keys(m.parts)) { // in kind order: a part may need an earlier one's
		if err := m.parts[kind].Restore(snap.Parts[kind]); err != nil {
			return fmt.Errorf("metadata snapshot, part %d: %w", kind, err)
		}
	}
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

// forGroup is the logger of group id's raft (GroupLogger).
func (r raftLogger) forGroup(id uint64) raft.Logger { return raftLogger{r.l.With("group", hexID(id))} }
