package security

import (
	"errors"
	"slices"
)

// ErrStale is a replicated change refused because another change was
// made first: the state it was computed from is no longer current. The
// Store computes it again from the new state and retries.
var ErrStale = errors.New("security: the state changed meanwhile")

// Replicator makes a change cluster-wide: it hands next, computed from
// the state of version base, to every member, and returns once this node
// has applied it (ApplyReplicated) with ApplyReplicated's result, or an
// error saying why it could not (no majority, timeout).
type Replicator func(base uint64, next *Definitions) error

// replicateAttempts bounds how often a change is computed again after
// ErrStale: only a stream of concurrent changes on other nodes exhausts it.
const replicateAttempts = 16

// SetReplicator makes every later change go through r instead of being
// made here: the change becomes current on each member, this one
// included, when it applies it from the cluster's log (ApplyReplicated).
// Set it before the first change; nil returns to local changes.
func (s *Store) SetReplicator(r Replicator) {
	s.mu.Lock()
	s.replicate = r
	s.mu.Unlock()
}

// Version is the cluster log index of the replicated change the current
// state comes from (0: none yet, or no cluster).
func (s *Store) Version() uint64 { return s.cur.Load().version }

// updateReplicated is update's path with a Replicator: f is applied to a
// copy of the current state, which goes to r; the state becomes current
// when ApplyReplicated runs for it, so s.mu is not held meanwhile.
func (s *Store) updateReplicated(r Replicator, f func(*state) error) error {
	for range replicateAttempts {
		old := s.cur.Load()
		n := old.clone()
		if err := f(n); err != nil {
			return err
		}
		err := r(old.version, n.definitions())
		if !errors.Is(err, ErrStale) {
			return err
		}
	}
	return errors.New("security: the change kept meeting concurrent changes; try again")
}

// ApplyReplicated makes d current as the state of version index, if base
// is the current version; otherwise it returns ErrStale and changes
// nothing. Every member calls it for every replicated change, in the
// cluster log's order, so all reach the same state and the same verdicts.
// The persister stores d first (an error leaves the state as it was);
// the users-deleted hook is told of the users d removed.
func (s *Store) ApplyReplicated(index, base uint64, d *Definitions) error {
	return s.install(index, d, func(old *state) error {
		if old.version != base {
			return ErrStale
		}
		return nil
	})
}

// RestoreReplicated makes d current as the state of version index,
// whatever the current version (a cluster snapshot), storing it with the
// persister; the users-deleted hook is told of the users it removed.
func (s *Store) RestoreReplicated(index uint64, d *Definitions) error {
	return s.install(index, d, func(*state) error { return nil })
}

// install makes d current as version index if check passes for the
// current state, then tells the users-deleted hook.
func (s *Store) install(index uint64, d *Definitions, check func(old *state) error) error {
	s.mu.Lock()
	old := s.cur.Load()
	err := check(old)
	var n *state
	if err == nil {
		n, err = s.replace(index, d)
	}
	hook := s.usersDeleted
	s.mu.Unlock()
	if err != nil {
		return err
	}
	s.tellUsersDeleted(hook, old, n)
	return nil
}

// replace builds the state d defines as version index, persists and
// installs it. s.mu is held.
func (s *Store) replace(index uint64, d *Definitions) (*state, error) {
	n := &state{gen: s.cur.Load().gen + 1, version: index, users: map[string]*User{}, vhosts: map[string]*VHost{},
		perms: map[userVHost]*compiledPerm{}, topics: map[userVHost]map[string]*compiledTopic{}}
	if err := n.merge(d); err != nil {
		return nil, err
	}
	if s.persist != nil {
		if err := s.persist(n.definitions()); err != nil {
			return nil, err
		}
	}
	s.cur.Store(n)
	return n, nil
}

// tellUsersDeleted calls hook (if set) with the users in old but not in
// n, sorted; no lock is held.
func (s *Store) tellUsersDeleted(hook func([]string), old, n *state) {
	if hook == nil {
		return
	}
	var gone []string
	for name := range old.users {
		if n.users[name] == nil {
			gone = append(gone, name)
		}
	}
	if len(gone) > 0 {
		slices.Sort(gone)
		hook(gone)
	}
}

// OfferInitial offers the current state as the cluster's first, when
// no replicated change has been applied yet (Version 0): the first offer
// the cluster applies wins, and the others, stale, change nothing. Nil
// when an offer, this one or another member's, has been applied.
func (s *Store) OfferInitial() error {
	s.mu.Lock()
	r := s.replicate
	s.mu.Unlock()
	old := s.cur.Load()
	if r == nil || old.version != 0 {
		return nil
	}
	if err := r(0, old.definitions()); err != nil && !errors.Is(err, ErrStale) {
		return err
	}
	return nil
}
