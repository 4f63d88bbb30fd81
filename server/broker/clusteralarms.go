package broker

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/amqp-go/amqp-go/server/monitor"
)

// Resource alarms are cluster-wide, as RabbitMQ's: publishers on every
// member are blocked while any member it reaches has a memory or disk
// alarm. Each member states its own alarm through the metadata group
// (ReplicaAlarms: "node N's alarm is now R", proposed by N), and each
// combines its own with those of the members it reaches (watchAlarms),
// so the alarm of a member that is down or cut off stops blocking, as
// RabbitMQ clears a node's alarms when the node goes down.

// ReplicaAlarms are the members' resource alarms, each member's as it
// last stated it.
const ReplicaAlarms byte = 4

// alarmResources are the resources an alarm is raised for.
type alarmResources uint8

const (
	alarmMemory alarmResources = 1 << iota
	alarmDisk
)

// parseAlarm reads the resources a monitor's reason names
// (monitor.MemoryReason, monitor.DiskReason, or both joined).
func parseAlarm(reason string) alarmResources {
	var r alarmResources
	if strings.Contains(reason, "memory") {
		r |= alarmMemory
	}
	if strings.Contains(reason, "disk") {
		r |= alarmDisk
	}
	return r
}

// text is connection.blocked's reason for r, as RabbitMQ words it
// ("low on disk & memory" for both, as RabbitMQ 3.10 sends it).
func (r alarmResources) text() string {
	switch r {
	case alarmMemory:
		return monitor.MemoryReason
	case alarmDisk:
		return monitor.DiskReason
	case alarmMemory | alarmDisk:
		return "low on disk & memory"
	}
	return ""
}

// NodeAlarms are one node's own resource alarms.
type NodeAlarms struct {
	Memory, Disk bool
	// StoreFailed is this node's message store failure (LocalAlarms
	// only: it blocks this node's publishers alone, until restart).
	StoreFailed bool
}

func (r alarmResources) nodeAlarms() NodeAlarms {
	return NodeAlarms{Memory: r&alarmMemory != 0, Disk: r&alarmDisk != 0}
}

// LocalAlarms are this node's own alarms: the resource monitor's and a
// message store failure.
func (s *Server) LocalAlarms() NodeAlarms {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := parseAlarm(s.resourceAlarm).nodeAlarms()
	a.StoreFailed = s.storeFailed
	return a
}

// MemberAlarms are member id's resource alarms as the cluster's log last
// stated them (none for a member that stated none).
func (s *Server) MemberAlarms(id uint64) NodeAlarms {
	s.alarms.mu.Lock()
	defer s.alarms.mu.Unlock()
	return s.alarms.byNode[id].Resources.nodeAlarms()
}

// clusterAlarms are the members' alarms as the metadata group carries
// them.
type clusterAlarms struct {
	mu     sync.Mutex           // a leaf
	byNode map[uint64]nodeAlarm // (mu) as applied from the log
	// kick wakes watchAlarms (a replicated change applied, the local
	// alarm changed); never blocks.
	kick chan struct{}
}

// nodeAlarm is a member's statement of its alarm: a replicated change,
// and an entry of the part's snapshot.
type nodeAlarm struct {
	Node      uint64         `json:"node"`
	Name      string         `json:"name,omitempty"`
	Resources alarmResources `json:"resources,omitempty"`
}

func (a *clusterAlarms) wake() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

type alarmReplica struct{ s *Server }

// Apply records a member's alarm.
func (r alarmReplica) Apply(index uint64, payload []byte) error {
	var c nodeAlarm
	if err := json.Unmarshal(payload, &c); err != nil || c.Node == 0 {
		return fmt.Errorf("alarm change %d: undecodable: %v", index, err)
	}
	a := &r.s.alarms
	a.mu.Lock()
	if c.Resources == 0 {
		delete(a.byNode, c.Node)
	} else {
		if a.byNode == nil {
			a.byNode = map[uint64]nodeAlarm{}
		}
		a.byNode[c.Node] = c
	}
	a.mu.Unlock()
	a.wake()
	return nil
}

// Snapshot is the members' raised alarms, by node id.
func (r alarmReplica) Snapshot() ([]byte, error) {
	a := &r.s.alarms
	a.mu.Lock()
	defer a.mu.Unlock()
	all := make([]nodeAlarm, 0, len(a.byNode))
	for _, id := range slices.Sorted(maps.Keys(a.byNode)) {
		all = append(all, a.byNode[id])
	}
	return json.Marshal(all)
}

// Restore takes a snapshot's alarms (none from a snapshot made before
// alarms replicated).
func (r alarmReplica) Restore(data []byte) error {
	var all []nodeAlarm
	if data != nil {
		if err := json.Unmarshal(data, &all); err != nil {
			return fmt.Errorf("alarm snapshot: undecodable: %v", err)
		}
	}
	byNode := map[uint64]nodeAlarm{}
	for _, c := range all {
		if c.Node != 0 && c.Resources != 0 {
			byNode[c.Node] = c
		}
	}
	a := &r.s.alarms
	a.mu.Lock()
	a.byNode = byNode
	a.mu.Unlock()
	a.wake()
	return nil
}

// alarmsEvery is how often watchAlarms looks again without being woken:
// a member it no longer reaches stops blocking within about that.
const alarmsEvery = time.Second

// alarmGrace is how long a member must have been reached before its
// alarm blocks here: a member that went down in alarm and restarts
// without one states so within it (its log replays the old statement,
// which it then corrects), rather than block the others for a moment.
const alarmGrace = time.Second

// alarmProposeTimeout bounds a statement of this node's alarm; one that
// fails (no majority) is made again at the next look.
const alarmProposeTimeout = 5 * time.Second

// watchAlarms owns the cluster's side of this node's alarm: once a
// second, and whenever an alarm changes here or in the log, it combines
// the alarms of the other members it reaches into the server's
// (remoteAlarm), and states this node's own alarm to the cluster when
// the log says otherwise (one statement in flight at a time, on a
// goroutine of its own, so that a cluster without a majority does not
// hold the combining up; one that failed is made again a second later).
// It ends with stop, and its statement in flight with it.
func (s *Server) watchAlarms(g QuorumGroups, stop <-chan struct{}) {
	t := time.NewTicker(alarmsEvery)
	defer t.Stop()
	ctx, cancel := context.WithCancel(context.Background())
	var stating chan error // the statement in flight's verdict; nil: none
	defer func() {
		cancel()
		if stating != nil {
			<-stating
		}
	}()
	self := g.Self()
	reached := map[uint64]time.Time{} // since when each member has been reached
	var retryAt time.Time             // a failed statement is made again from then
	for {
		now := time.Now()
		s.combineAlarms(g, self, reached, now)
		if own, stale := s.ownAlarmStale(self); stale && stating == nil && !now.Before(retryAt) {
			if r := s.replicating(); r != nil {
				stating = make(chan error, 1)
				go func(verdict chan<- error) {
					verdict <- s.stateAlarm(ctx, r, nodeAlarm{Node: self, Name: g.NodeName(), Resources: own})
				}(stating)
			}
		}
		select {
		case <-stop:
			return
		case <-g.Done():
			// This node serves on alone (its Raft log failed): the
			// others' alarms, which it can no longer learn, are not its.
			s.setRemoteAlarm(0, nil)
			return
		case <-t.C:
		case <-s.alarms.kick:
		case err := <-stating:
			stating = nil
			if err != nil {
				retryAt = time.Now().Add(alarmsEvery)
			}
		}
	}
}

// ownAlarmStale reports this node's resource alarm, and whether the log
// says otherwise of it.
func (s *Server) ownAlarmStale(self uint64) (alarmResources, bool) {
	s.mu.Lock()
	own := parseAlarm(s.resourceAlarm)
	s.mu.Unlock()
	s.alarms.mu.Lock()
	defer s.alarms.mu.Unlock()
	return own, s.alarms.byNode[self].Resources != own
}

// stateAlarm proposes this node's alarm to the cluster.
func (s *Server) stateAlarm(ctx context.Context, r Replicator, c nodeAlarm) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, alarmProposeTimeout)
	defer cancel()
	err = r.Replicate(ctx, ReplicaAlarms, b)
	if err != nil {
		s.logger.Debug("cluster: stating this node's resource alarm", "resources", c.Resources.text(), "err", err)
	}
	return err
}

// combineAlarms sets the server's remote alarm to the resources of the
// alarms of the other members this node has reached for alarmGrace (a
// member removed from the cluster is none), and logs which members'
// alarms block here. reached, watchAlarms', is kept up to date.
func (s *Server) combineAlarms(g QuorumGroups, self uint64, reached map[uint64]time.Time, now time.Time) {
	members := g.Voters()
	for id := range reached {
		if !slices.Contains(members, id) || !g.Reachable(id) {
			delete(reached, id)
		}
	}
	for _, id := range members {
		if _, ok := reached[id]; !ok && id != self && g.Reachable(id) {
			reached[id] = now
		}
	}
	var res alarmResources
	var from []string
	s.alarms.mu.Lock()
	for _, id := range slices.Sorted(maps.Keys(s.alarms.byNode)) {
		a := s.alarms.byNode[id]
		if since, ok := reached[id]; ok && now.Sub(since) >= alarmGrace {
			res |= a.Resources
			name := a.Name
			if name == "" {
				name = strconv.FormatUint(id, 16)
			}
			from = append(from, name+" ("+a.Resources.text()+")")
		}
	}
	s.alarms.mu.Unlock()
	s.setRemoteAlarm(res, from)
}

// setRemoteAlarm makes res, raised by the members from, the others'
// alarm here, telling the connections and the log if it changed.
func (s *Server) setRemoteAlarm(res alarmResources, from []string) {
	joined := strings.Join(from, ", ")
	s.mu.Lock()
	if s.remoteAlarm == res && s.remoteFrom == joined {
		s.mu.Unlock()
		return
	}
	s.remoteAlarm, s.remoteFrom = res, joined
	s.applyAlarmLocked()
	if res != 0 {
		s.logger.Warn("cluster: resource alarm on another member: blocking publishers", "members", joined)
	} else {
		s.logger.Info("cluster: no other member this node reaches has a resource alarm")
	}
}
