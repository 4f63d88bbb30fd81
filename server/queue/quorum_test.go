package queue

import (
	"bytes"
	"encoding/binary"
	"encoding/gob"
	"errors"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"
)

// intCodec encodes the tests' int handles.
type intCodec struct{}

func (intCodec) AppendHandle(dst []byte, h int) []byte {
	return binary.BigEndian.AppendUint64(dst, uint64(h))
}
func (intCodec) DecodeHandle(b []byte) (int, error) {
	if len(b) != 8 {
		return 0, errors.New("bad handle")
	}
	return int(binary.BigEndian.Uint64(b)), nil
}

// testGroup is a Raft group reduced to what a quorum queue relies on: one
// log, every command applied on every member in the log's order (on one
// goroutine, as the cluster's loop does). lose drops commands instead.
type testGroup struct {
	// applyMu is held while one command is applied to every member, so a
	// test holding it sees every member at the same log position.
	applyMu  sync.Mutex
	mu       sync.Mutex
	log      [][]byte
	lose     bool
	swallow  bool // take proposals and never apply them (a leader lost them)
	members  []*Quorum[int]
	applied  int
	wake     chan struct{}
	stop     chan struct{}
	done     chan struct{}
	hosts    []*testHost
	detached map[int]bool // members that apply nothing (cut off)
}

type testGroupLog struct{ g *testGroup }

func (l testGroupLog) Propose(cmd []byte, dropped func()) {
	l.g.mu.Lock()
	lose := l.g.lose
	if !lose && !l.g.swallow {
		l.g.log = append(l.g.log, cmd)
	}
	l.g.mu.Unlock()
	if lose {
		go dropped() // as the cluster's loop does: never inside Propose
		return
	}
	select {
	case l.g.wake <- struct{}{}:
	default:
	}
}

func newTestGroup(t *testing.T, n int, p Policy) *testGroup {
	g := &testGroup{wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}), detached: map[int]bool{}}
	for i := range n {
		h := &testHost{}
		g.hosts = append(g.hosts, h)
		g.members = append(g.members, NewQuorum[int](p, testGroupLog{g}, intCodec{}, h, Owner{Node: uint64(i + 1), Incarnation: 1}, nil))
	}
	g.members[0].LeaderChanged(1, true)
	go g.pump()
	t.Cleanup(func() { close(g.stop); <-g.done })
	return g
}

func (g *testGroup) pump() {
	defer close(g.done)
	for {
		select {
		case <-g.stop:
			return
		case <-g.wake:
		}
		for {
			g.applyMu.Lock()
			g.mu.Lock()
			if g.applied == len(g.log) {
				g.mu.Unlock()
				g.applyMu.Unlock()
				break
			}
			cmd := g.log[g.applied]
			g.applied++
			detached := g.detached
			members := append([]*Quorum[int](nil), g.members...)
			g.mu.Unlock()
			for i, m := range members {
				if !detached[i] {
					m.Apply(cmd)
				}
			}
			g.applyMu.Unlock()
		}
	}
}

func quorumPush(t *testing.T, q *Quorum[int], h int) error {
	t.Helper()
	ch := make(chan error, 1)
	q.PushAsync(Message[int]{Handle: h, Size: 10}, func(err error) { ch <- err })
	select {
	case err := <-ch:
		return err
	case <-time.After(5 * time.Second):
		t.Fatalf("push %d: no answer", h)
		return nil
	}
}

func receive(t *testing.T, c *testConsumer) delivered {
	t.Helper()
	select {
	case d := <-c.got:
		return d
	case <-time.After(5 * time.Second):
		t.Fatal("no delivery")
		return delivered{}
	}
}

// A message published on one member is delivered to a consumer on
// another; acked there, it is gone from every member's replica, and every
// member's core holds the same state throughout.
func TestQuorumPublishOnOneConsumeOnAnother(t *testing.T) {
	g := newTestGroup(t, 3, Policy{MaxLength: -1, MaxLengthBytes: -1})
	c := &testConsumer{prefetch: 2, got: make(chan delivered, 16)}
	g.members[2].Consume(c, 0, false)
	for i := 1; i <= 5; i++ {
		if err := quorumPush(t, g.members[1], i); err != nil {
			t.Fatal(err)
		}
	}
	var tags []uint64
	for i := 1; i <= 2; i++ {
		d := receive(t, c)
		if d.Handle != i || d.Redelivered() {
			t.Fatalf("delivery %d: got %d (redelivered %v)", i, d.Handle, d.Redelivered())
		}
		tags = append(tags, d.tag)
	}
	select {
	case d := <-c.got:
		t.Fatalf("prefetch 2 exceeded: got %d", d.Handle)
	case <-time.After(50 * time.Millisecond):
	}
	c.inFlight.Add(-2)
	g.members[2].Settle(tags, Ack)
	g.members[2].Wake()
	for i := 3; i <= 5; i++ {
		d := receive(t, c)
		if d.Handle != i {
			t.Fatalf("delivery %d: got %d", i, d.Handle)
		}
		g.members[2].Settle([]uint64{d.tag}, Ack)
		c.inFlight.Add(-1)
		g.members[2].Wake()
	}
	waitFor(t, "acks applied everywhere", func() bool {
		for _, m := range g.members {
			if in := m.Info(); in.Ready != 0 || in.Unacked != 0 || in.Stats.Acked != 5 {
				return false
			}
		}
		return true
	})
}

// A member that goes away takes its consumers with it: once the leader
// proposes it down, its unacked deliveries are requeued, flagged
// redelivered with their delivery count, and go to a consumer elsewhere.
func TestQuorumDownRequeuesUnacked(t *testing.T) {
	g := newTestGroup(t, 3, Policy{MaxLength: -1, MaxLengthBytes: -1})
	gone := &testConsumer{prefetch: 10, got: make(chan delivered, 16)}
	g.members[2].Consume(gone, 0, false)
	for i := 1; i <= 3; i++ {
		if err := quorumPush(t, g.members[0], i); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		receive(t, gone)
	}
	if got := g.members[0].Owners(); len(got) != 1 || got[0] != (Owner{3, 1}) {
		t.Fatalf("owners: %v, want node 3's", got)
	}
	g.mu.Lock()
	g.detached[2] = true // member 3 is cut off
	g.mu.Unlock()
	other := &testConsumer{prefetch: 10, got: make(chan delivered, 16)}
	g.members[1].Consume(other, 0, false)
	g.members[0].Down(3, ^uint64(0))
	for i := 1; i <= 3; i++ {
		d := receive(t, other)
		if d.Handle != i || !d.Redelivered() || d.Deliveries != 2 {
			t.Fatalf("requeued %d: got %d, redelivered %v, deliveries %d", i, d.Handle, d.Redelivered(), d.Deliveries)
		}
	}
	if got := g.members[0].Owners(); len(got) != 1 || got[0] != (Owner{2, 1}) {
		t.Fatalf("owners after down: %v, want node 2's", got)
	}
}

// basic.get, purge and a reject-publish limit answer the member that asked,
// once the log has the command; a lost command times out as not committed.
func TestQuorumGetPurgeAndLimits(t *testing.T) {
	g := newTestGroup(t, 3, Policy{MaxLength: 2, MaxLengthBytes: -1, Overflow: RejectPublish})
	for i := 1; i <= 2; i++ {
		if err := quorumPush(t, g.members[i], i); err != nil {
			t.Fatal(err)
		}
	}
	if err := quorumPush(t, g.members[0], 3); !errors.Is(err, ErrRejected) {
		t.Fatalf("push over the limit: %v, want ErrRejected", err)
	}
	e, tag, ok := g.members[1].Get(false)
	if !ok || e.Handle != 1 || tag == 0 {
		t.Fatalf("get: %v %d %v", e.Handle, tag, ok)
	}
	if n := g.members[2].Purge(); n != 1 {
		t.Fatalf("purge: %d, want 1", n)
	}
	g.members[1].Settle([]uint64{tag}, Requeue)
	waitFor(t, "requeue applied", func() bool { return g.members[0].Info().Ready == 1 })
	g.mu.Lock()
	g.lose = true
	g.mu.Unlock()
	g.members[0].timeout = 100 * time.Millisecond
	if err := quorumPush(t, g.members[0], 4); !errors.Is(err, ErrNotCommitted) {
		t.Fatalf("lost push: %v, want ErrNotCommitted", err)
	}
}

// A member restored from a snapshot taken mid-traffic reaches the same
// state as the others from the commands after it: the same tags, so its
// consumers' settlements go on working.
func TestQuorumSnapshotRestore(t *testing.T) {
	g := newTestGroup(t, 3, Policy{MaxLength: -1, MaxLengthBytes: -1})
	c := &testConsumer{prefetch: 3, got: make(chan delivered, 16)}
	g.members[1].Consume(c, 0, false)
	for i := 1; i <= 5; i++ {
		if err := quorumPush(t, g.members[0], i); err != nil {
			t.Fatal(err)
		}
	}
	first := receive(t, c)
	waitFor(t, "three delivered", func() bool { return g.members[2].Info().Unacked == 3 })
	// The snapshot and the swap happen between two applied commands, as
	// a Raft member's snapshot is taken at one applied index.
	fresh := g.restoreMember(t, 2, &testHost{})
	g.members[1].Settle([]uint64{first.tag}, Ack)
	waitFor(t, "the ack applied on the restored member", func() bool {
		in := fresh.Info()
		return in.Stats.Acked == 1 && in.Unacked == 2 && in.Ready == 2
	})
	if a, b := g.members[0].core.State(), fresh.core.State(); !reflect.DeepEqual(a, b) {
		t.Fatalf("restored member differs:\n%+v\n%+v", a, b)
	}
}

// restoreMember replaces member i with a replica restored from i's
// snapshot, with host, between two applied commands (as a Raft member's
// snapshot is taken at one applied index), and returns it.
func (g *testGroup) restoreMember(t *testing.T, i int, host *testHost) *Quorum[int] {
	t.Helper()
	g.applyMu.Lock()
	defer g.applyMu.Unlock()
	snap, err := g.members[i].Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	fresh := NewQuorum[int](Policy{}, testGroupLog{g}, intCodec{}, host, Owner{Node: uint64(i + 1), Incarnation: 1}, nil)
	if err := fresh.Restore(snap); err != nil {
		t.Fatal(err)
	}
	g.mu.Lock()
	g.members[i] = fresh
	g.mu.Unlock()
	return fresh
}

// Commands a dead leader took with it are sent again when a new leader is
// known: a publish waiting for its confirm is confirmed, a consumer's
// subscription and credit arrive, and a push sent twice is queued once.
func TestQuorumResendAfterLeaderChange(t *testing.T) {
	g := newTestGroup(t, 3, Policy{MaxLength: -1, MaxLengthBytes: -1})
	g.mu.Lock()
	g.swallow = true
	g.mu.Unlock()
	c := &testConsumer{prefetch: 10, got: make(chan delivered, 16)}
	g.members[1].Consume(c, 0, false)
	done := make(chan error, 1)
	g.members[1].PushAsync(Message[int]{Handle: 7, Size: 10}, func(err error) { done <- err })
	g.mu.Lock()
	g.swallow = false
	g.mu.Unlock()
	g.members[1].LeaderChanged(3, false) // the new leader
	g.members[1].LeaderChanged(2, false) // and another: everything is sent twice
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("push sent again: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("push sent again: no confirm")
	}
	if d := receive(t, c); d.Handle != 7 || d.Redelivered() {
		t.Fatalf("delivery: %d (redelivered %v)", d.Handle, d.Redelivered())
	}
	waitFor(t, "every member applied both copies", func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		return g.applied == len(g.log) && len(g.log) >= 6
	})
	for i, m := range g.members {
		if in := m.Info(); in.Stats.Published != 1 || in.Unacked != 1 || in.Ready != 0 {
			t.Fatalf("member %d: published %d, unacked %d, ready %d; want 1, 1, 0", i, in.Stats.Published, in.Unacked, in.Ready)
		}
	}
	select {
	case d := <-c.got:
		t.Fatalf("a second delivery: %d", d.Handle)
	case <-time.After(50 * time.Millisecond):
	}
}

// heldLog keeps what is proposed until the test applies it: a group
// whose majority is slow to commit.
type heldLog struct {
	mu   sync.Mutex
	cmds [][]byte
}

func (l *heldLog) Propose(cmd []byte, dropped func()) {
	l.mu.Lock()
	l.cmds = append(l.cmds, cmd)
	l.mu.Unlock()
}

func (l *heldLog) take() [][]byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	cmds := l.cmds
	l.cmds = nil
	return cmds
}

// A member with more pushes in flight than QuorumFlowHigh tells its
// publishers to wait, and lets them go once the log has applied enough
// of them; pushes of large bodies count by their bytes.
func TestQuorumPublisherFlow(t *testing.T) {
	l := &heldLog{}
	q := NewQuorum[int](Policy{MaxLength: -1, MaxLengthBytes: -1}, l, intCodec{}, &testHost{}, Owner{Node: 1, Incarnation: 1}, nil)
	q.LeaderChanged(1, true)
	for i := range QuorumFlowHigh {
		q.PushAsync(Message[int]{Handle: i, Size: 10}, nil)
	}
	if q.Congested() != nil {
		t.Fatalf("congested at %d pushes in flight", QuorumFlowHigh)
	}
	q.PushAsync(Message[int]{Handle: QuorumFlowHigh, Size: 10}, nil)
	wait := q.Congested()
	if wait == nil {
		t.Fatalf("not congested at %d pushes in flight", QuorumFlowHigh+1)
	}
	cmds := l.take()
	for _, cmd := range cmds[:QuorumFlowHigh/2] {
		q.Apply(cmd)
		select {
		case <-wait:
			t.Fatal("released while more than half are in flight")
		default:
		}
	}
	q.Apply(cmds[QuorumFlowHigh/2])
	select {
	case <-wait:
	default:
		t.Fatal("not released with half in flight")
	}
	if q.Congested() != nil {
		t.Fatal("congested again under the high mark")
	}
	for _, cmd := range cmds[QuorumFlowHigh/2+1:] {
		q.Apply(cmd)
	}
	if in := q.Info(); in.Ready != QuorumFlowHigh+1 {
		t.Fatalf("ready %d, want %d", in.Ready, QuorumFlowHigh+1)
	}
	// By bytes: 33 pushes of 1 MiB.
	for i := range 33 {
		q.PushAsync(Message[int]{Handle: i, Size: 1 << 20}, nil)
	}
	wait = q.Congested()
	if wait == nil {
		t.Fatal("not congested at 33 MiB in flight")
	}
	// Closing releases the waiting publishers too.
	q.Close()
	select {
	case <-wait:
	default:
		t.Fatal("a closed queue keeps its publishers waiting")
	}
}

// One member's pushes enter the queue in the order it made them, whatever
// order the log has them in: a push that comes ahead of one before it
// (that one dropped during an election and sent again later) is refused
// and proposed again once the one before it is in; confirms follow.
func TestQuorumPushOrder(t *testing.T) {
	l := &heldLog{}
	q := NewQuorum[int](Policy{MaxLength: -1, MaxLengthBytes: -1}, l, intCodec{}, &testHost{}, Owner{Node: 1, Incarnation: 1}, nil)
	q.LeaderChanged(1, true)
	var mu sync.Mutex
	var confirmed []int
	for h := 1; h <= 5; h++ {
		q.PushAsync(Message[int]{Handle: h, Size: 10}, func(err error) {
			if err != nil {
				t.Errorf("push %d: %v", h, err)
			}
			mu.Lock()
			confirmed = append(confirmed, h)
			mu.Unlock()
		})
	}
	cmds := l.take()
	// The log has 1, 3, 4, 2, 5: 2 came late.
	for _, i := range []int{0, 2, 3, 1, 4} {
		q.Apply(cmds[i])
	}
	// What was refused comes again, in order; applied until none is left.
	for range 10 {
		again := l.take()
		if len(again) == 0 {
			break
		}
		for _, cmd := range again {
			q.Apply(cmd)
		}
	}
	var order []int
	for _, lv := range q.core.State().Levels {
		for _, e := range lv.Back {
			order = append(order, e.Handle)
		}
	}
	if !slices.Equal(order, []int{1, 2, 3, 4, 5}) {
		t.Fatalf("queue order %v, want 1..5", order)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(confirmed, []int{1, 2, 3, 4, 5}) {
		t.Fatalf("confirmed %v, want 1..5 in order", confirmed)
	}
	// Each is applied once, and nothing is left in flight.
	if in := q.Info(); in.Ready != 5 || in.Stats.Published != 5 {
		t.Fatalf("ready %d, published %d", in.Ready, in.Stats.Published)
	}
}

// A push lost without a leader change (a transport drop), with later
// ones refused as early behind it, is sent again by the sweep after
// resendAfter rather than given up on after the timeout.
func TestQuorumLostPushSentAgain(t *testing.T) {
	l := &heldLog{}
	q := NewQuorum[int](Policy{MaxLength: -1, MaxLengthBytes: -1}, l, intCodec{}, &testHost{}, Owner{Node: 1, Incarnation: 1}, nil)
	q.LeaderChanged(1, true)
	t.Cleanup(q.Close)
	for h := 1; h <= 3; h++ {
		q.PushAsync(Message[int]{Handle: h, Size: 10}, nil)
	}
	cmds := l.take()
	q.Apply(cmds[0])
	q.Apply(cmds[2]) // 2 is lost: 3 is early
	deadline := time.Now().Add(5 * time.Second)
	for q.Info().Ready < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("ready %d: the lost push was not sent again", q.Info().Ready)
		}
		for _, cmd := range l.take() {
			q.Apply(cmd)
		}
		time.Sleep(10 * time.Millisecond)
	}
	var order []int
	for _, lv := range q.core.State().Levels {
		for _, e := range lv.Back {
			order = append(order, e.Handle)
		}
	}
	if !slices.Equal(order, []int{1, 2, 3}) {
		t.Fatalf("queue order %v, want 1..3", order)
	}
}

// A queue that expired (x-expires) under a leader that died before it
// had it deleted is deleted by the next leader.
func TestQuorumExpiredUnderDeadLeader(t *testing.T) {
	g := newTestGroup(t, 2, Policy{MaxLength: -1, MaxLengthBytes: -1, Expires: int64(50 * time.Millisecond)})
	waitFor(t, "the leader's expiry", func() bool { return g.hosts[0].expired.Load() })
	if g.hosts[1].expired.Load() {
		t.Fatal("a follower had the queue deleted")
	}
	g.members[1].LeaderChanged(2, true) // the leader died before the deletion went through
	if !g.hosts[1].expired.Load() {
		t.Fatal("the new leader did not have the expired queue deleted")
	}
}

// A snapshot is written in the split encoding (snapshotMagic) and
// restores the same state; the older all-gob encoding still restores;
// a cut or garbled snapshot is an error, never a panic.
func TestQuorumSnapshotEncodings(t *testing.T) {
	g := newTestGroup(t, 3, Policy{MaxLength: -1, MaxLengthBytes: -1, MaxPriority: 2})
	c := &testConsumer{prefetch: 2, got: make(chan delivered, 16)}
	g.members[1].Consume(c, 0, false)
	for i := 1; i <= 6; i++ {
		if err := quorumPush(t, g.members[0], i); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "two delivered", func() bool { return g.members[2].Info().Unacked == 2 })
	g.applyMu.Lock()
	defer g.applyMu.Unlock()
	m := g.members[2]
	want := m.core.State()
	restore := func(what string, snap []byte) *Quorum[int] {
		t.Helper()
		fresh := NewQuorum[int](Policy{}, testGroupLog{g}, intCodec{}, &testHost{}, Owner{Node: 3, Incarnation: 1}, nil)
		if err := fresh.Restore(snap); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if got := fresh.core.State(); !reflect.DeepEqual(want, got) {
			t.Fatalf("%s: restored state differs:\n%+v\n%+v", what, want, got)
		}
		return fresh
	}
	snap, err := m.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(snap, []byte(snapshotMagic)) {
		t.Fatalf("snapshot does not start with the split encoding's magic: %q", snap[:8])
	}
	restore("split encoding", snap)

	// The encoding before the split: all of quorumSnapshot in one gob,
	// the handles in the state.
	m.mu.Lock()
	legacy := m.snapshotParts()
	m.mu.Unlock()
	legacy.State = mapState(want, func(h int) []byte { return intCodec{}.AppendHandle(nil, h) })
	var b bytes.Buffer
	if err := gob.NewEncoder(&b).Encode(&legacy); err != nil {
		t.Fatal(err)
	}
	restore("all-gob encoding", b.Bytes())

	fresh := NewQuorum[int](Policy{}, testGroupLog{g}, intCodec{}, &testHost{}, Owner{Node: 3, Incarnation: 1}, nil)
	for _, bad := range [][]byte{snap[:len(snap)-1], snap[:len(snapshotMagic)+1], []byte(snapshotMagic + "\x7f\xff\xff\xff\xff\xff\xff\xff")} {
		if err := fresh.Restore(bad); err == nil {
			t.Errorf("a bad snapshot of %d bytes restored", len(bad))
		}
	}
}
