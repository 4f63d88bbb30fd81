package broker

import (
	"testing"

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
