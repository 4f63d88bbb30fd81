package broker

import (
	"testing"
	"time"

	"github.com/amqp-go/amqp-go/server/monitor"
)

// TestAlarmReplica: members' statements of their alarms are applied, a
// clear removes one, and a snapshot carries them to another server,
// which drops what it had; the blocked reason combines this node's alarm
// with the others' in RabbitMQ's words.
func TestAlarmReplica(t *testing.T) {
	a, _ := startDurable(t, Config{})
	b, _ := startDurable(t, Config{})
	ra, rb := a.Replicas()[ReplicaAlarms], b.Replicas()[ReplicaAlarms]
	must(t, ra.Apply(1, []byte(`{"node":2,"name":"n2","resources":2}`)))
	must(t, ra.Apply(2, []byte(`{"node":3,"name":"n3","resources":1}`)))
	must(t, ra.Apply(3, []byte(`{"node":3,"name":"n3"}`)))
	if err := ra.Apply(4, []byte(`{}`)); err == nil {
		t.Error("a statement without a node was taken")
	}
	must(t, rb.Apply(1, []byte(`{"node":5,"resources":3}`)))
	snap, err := ra.Snapshot()
	must(t, err)
	must(t, rb.Restore(snap))
	for _, s := range []*Server{a, b} {
		if got := s.MemberAlarms(2); got != (NodeAlarms{Disk: true}) {
			t.Errorf("node 2's alarms: %+v, want disk", got)
		}
		if got := s.MemberAlarms(3); got != (NodeAlarms{}) {
			t.Errorf("node 3's alarms after its clear: %+v, want none", got)
		}
	}
	if got := b.MemberAlarms(5); got != (NodeAlarms{}) {
		t.Errorf("node 5's alarm, not in the snapshot: %+v, want none", got)
	}
	must(t, rb.Restore(nil)) // a snapshot from before alarms replicated
	if got := b.MemberAlarms(2); got != (NodeAlarms{}) {
		t.Errorf("node 2's alarm after an empty snapshot: %+v, want none", got)
	}

	a.SetAlarm(monitor.MemoryReason, true)
	a.mu.Lock()
	a.remoteAlarm = alarmDisk
	a.applyAlarmLocked()
	if reason, _ := a.alarmState(); reason != "low on disk & memory" {
		t.Errorf("reason with memory here and disk elsewhere: %q", reason)
	}
	if got := a.LocalAlarms(); got != (NodeAlarms{Memory: true}) {
		t.Errorf("local alarms: %+v, want memory", got)
	}
	a.SetAlarm("", false)
	if reason, _ := a.alarmState(); reason != monitor.DiskReason {
		t.Errorf("reason with disk elsewhere only: %q", reason)
	}
}

// alarmGroups is a cluster as combineAlarms and watchAlarms see it.
type alarmGroups struct {
	QuorumGroups // the rest is not called
	voters       []uint64
	reachable    map[uint64]bool
	done         chan struct{}
}

func (g *alarmGroups) Self() uint64             { return 1 }
func (g *alarmGroups) Voters() []uint64         { return g.voters }
func (g *alarmGroups) Reachable(id uint64) bool { return id == 1 || g.reachable[id] }
func (g *alarmGroups) NodeName() string         { return "n1" }
func (g *alarmGroups) Done() <-chan struct{}    { return g.done }

// TestCombineAlarms: another member's alarm blocks here once that member
// has been reached for alarmGrace, and no longer once it is not reached
// or not a member; when the cluster is done, none does.
func TestCombineAlarms(t *testing.T) {
	s, _ := startDurable(t, Config{})
	r := s.Replicas()[ReplicaAlarms]
	must(t, r.Apply(1, []byte(`{"node":2,"name":"n2","resources":2}`)))
	must(t, r.Apply(2, []byte(`{"node":3,"name":"n3","resources":1}`)))
	must(t, r.Apply(3, []byte(`{"node":1,"name":"n1","resources":1}`))) // its own, stale: not counted
	g := &alarmGroups{voters: []uint64{1, 2, 3}, reachable: map[uint64]bool{2: true}, done: make(chan struct{})}
	reached := map[uint64]time.Time{}
	t0 := time.Now()
	check := func(now time.Duration, want string) {
		t.Helper()
		s.combineAlarms(g, 1, reached, t0.Add(now))
		if got, _ := s.alarmState(); got != want {
			t.Fatalf("at %v: blocked %q, want %q", now, got, want)
		}
	}
	check(0, "")                          // n2 just reached
	check(alarmGrace, monitor.DiskReason) // reached long enough
	g.reachable[3] = true
	check(alarmGrace+time.Millisecond, monitor.DiskReason)
	check(2*alarmGrace+time.Millisecond, "low on disk & memory")
	g.reachable[2] = false // down or cut off
	check(3*alarmGrace, monitor.MemoryReason)
	g.voters = []uint64{1, 2} // n3 removed
	check(4*alarmGrace, "")
	g.reachable[2] = true // back: counted a grace later
	check(5*alarmGrace, "")
	check(6*alarmGrace, monitor.DiskReason)

	stop := make(chan struct{})
	defer close(stop)
	ended := make(chan struct{})
	go func() { s.watchAlarms(g, stop); close(ended) }()
	close(g.done) // the Raft log failed: serving alone
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("watchAlarms did not end with the cluster")
	}
	if got, on := s.alarmState(); on {
		t.Fatalf("blocked %q once the cluster is done", got)
	}
}
