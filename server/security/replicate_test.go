package security

import (
	"errors"
	"sync"
	"testing"
)

// loopReplicator is a one-member cluster's log for the tests: changes
// are applied in order, each given the next index.
type loopReplicator struct {
	mu      sync.Mutex
	index   uint64
	members []*Store
	// before runs ahead of each apply (a concurrent change of another
	// member's, applied first).
	before func()
}

func (l *loopReplicator) replicate(base uint64, next *Definitions) error {
	if f := l.before; f != nil {
		l.before = nil
		f()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.index++
	var verdict error
	for i, m := range l.members {
		err := m.ApplyReplicated(l.index, base, next)
		if i == 0 {
			verdict = err
		}
	}
	return verdict
}

// TestReplicatedChanges: with a Replicator, a change becomes current on
// every member once applied, at the log's index; a change computed from
// a state another change replaced is refused as stale and computed again;
// a stale apply changes nothing; OfferInitial offers only the first state.
func TestReplicatedChanges(t *testing.T) {
	a, b := NewStore(), NewStore()
	log := &loopReplicator{members: []*Store{a, b}}
	a.SetReplicator(log.replicate)
	if err := a.OfferInitial(); err != nil {
		t.Fatal(err)
	}
	if a.Version() != 1 || b.Version() != 1 {
		t.Fatalf("after the offer: versions %d and %d, want 1", a.Version(), b.Version())
	}
	if err := b.OfferInitial(); err != nil || b.Version() != 1 {
		t.Fatalf("a second offer: %v, version %d", err, b.Version())
	}
	if err := a.AddUser("alice", "secret", "administrator"); err != nil {
		t.Fatal(err)
	}
	if _, ok := b.Authenticate("alice", "secret"); !ok || b.Version() != 2 {
		t.Fatalf("the other member: alice not there (version %d)", b.Version())
	}
	// Another member's change lands between this one's read and apply:
	// the first attempt is stale, the second computed from the new state.
	log.before = func() {
		if err := b.ApplyReplicated(99, 2, b.Export()); err != nil {
			t.Error(err)
		}
		a.ApplyReplicated(99, 2, b.Export())
		log.index = 99
	}
	if err := a.PutVHost(VHost{Name: "v"}); err != nil {
		t.Fatal(err)
	}
	if _, ok := b.VHost("v"); !ok || b.Version() != 101 {
		t.Fatalf("after a stale attempt: vhost v %v, version %d, want 101", ok, b.Version())
	}
	if err := b.ApplyReplicated(102, 7, &Definitions{}); !errors.Is(err, ErrStale) {
		t.Fatalf("a stale apply: %v, want ErrStale", err)
	}
	if _, ok := b.User("alice"); !ok {
		t.Fatal("a stale apply changed the state")
	}
	// A deletion reaches the users-deleted hook of every member.
	var gone []string
	b.SetUsersDeletedHook(func(names []string) { gone = append(gone, names...) })
	if err := a.DeleteUser("alice"); err != nil {
		t.Fatal(err)
	}
	if len(gone) != 1 || gone[0] != "alice" {
		t.Fatalf("the other member's hook heard %v, want [alice]", gone)
	}
}
