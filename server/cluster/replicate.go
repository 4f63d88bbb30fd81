package cluster

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/raft/v3"
)

// Replicated is a part of the state the metadata group carries (the
// broker's security definitions, its exchanges): every member applies
// every change to it in the log's order, so all hold the same state.
//
// Its methods are called on the Node's loop goroutine, one at a time;
// they must not wait for the cluster (Replicate would deadlock the loop).
// A change may be applied twice (Replicate proposes again a change it
// does not see applied in time, the first having perhaps only been
// slow): Apply must make the second a no-op or a refusal.
type Replicated interface {
	// Apply applies the change payload, committed at index; its error is
	// the change's verdict, returned by Replicate on the member that
	// proposed it (every member reaches the same one).
	Apply(index uint64, payload []byte) error
	// Snapshot returns the part's state as of the last applied change.
	Snapshot() ([]byte, error)
	// Restore replaces the part's state with a snapshot's; nil when the
	// snapshot holds nothing of this part.
	Restore(data []byte) error
}

// MemberRemover is a Replicated part that hears of every member removed
// from the cluster (RemoveMember: forget-node, leave), as this node
// applies the conf change that removes it, in the log's order with the
// part's own changes, on the loop, as Apply is: every member makes the
// same of it at the same point of the log.
type MemberRemover interface {
	MemberRemoved(index, id uint64)
}

// A replicated change's entry: replicaMagic, the part's kind, the
// proposing node's id and its request id (8 bytes each, big-endian), and
// the payload. Entries without the magic are counted and skipped.
const (
	replicaMagic  = 'R'
	replicaHeader = 1 + 1 + 8 + 8
)

// ErrNoReplica is an entry for a part this node does not have.
var ErrNoReplica = errors.New("cluster: no such replicated part")

// replicaWaiters are the Replicate calls of this node waiting for their
// entry to be applied, by request id.
type replicaWaiters struct {
	mu   sync.Mutex
	next uint64
	wait map[uint64]chan error
}

func (w *replicaWaiters) add() (uint64, chan error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.next++
	if w.wait == nil {
		w.wait = map[uint64]chan error{}
	}
	ch := make(chan error, 1)
	w.wait[w.next] = ch
	return w.next, ch
}

func (w *replicaWaiters) done(id uint64, err error) {
	w.mu.Lock()
	ch := w.wait[id]
	delete(w.wait, id)
	w.mu.Unlock()
	if ch != nil {
		ch <- err
	}
}

func (w *replicaWaiters) drop(id uint64) {
	w.mu.Lock()
	delete(w.wait, id)
	w.mu.Unlock()
}

// retryNoLeader is how long Replicate waits before proposing again when
// there is no leader to take the entry (an election is running).
const retryNoLeader = 50 * time.Millisecond

// Replicate proposes payload, a change to the part kind, to the metadata
// group and waits until this node has applied it, returning the part's
// verdict (Replicated.Apply). It fails when ctx ends first: no majority,
// or the entry was lost with a leader (it may then still be applied
// later, as a timed-out RabbitMQ operation may).
func (s *Service) Replicate(ctx context.Context, kind byte, payload []byte) error {
	if s.meta.parts[kind] == nil {
		return fmt.Errorf("%w: %d", ErrNoReplica, kind)
	}
	id, done := s.meta.waiters.add()
	defer s.meta.waiters.drop(id)
	data := make([]byte, replicaHeader, replicaHeader+len(payload))
	data[0], data[1] = replicaMagic, kind
	binary.BigEndian.PutUint64(data[2:], s.cfg.Self.ID)
	binary.BigEndian.PutUint64(data[10:], id)
	data = append(data, payload...)
	for {
		// The leader is read before proposing: the node's loop forwards
		// the proposal to this leader or a newer one, so a leader that
		// drops it (it is handing over) is always seen to change, even
		// when the change comes before awaitApplied looks.
		lead := s.lead(ctx)
		err := s.node.Propose(ctx, MetadataGroup, data)
		if errors.Is(err, raft.ErrProposalDropped) {
			select {
			case <-time.After(retryNoLeader):
				continue
			case <-ctx.Done():
				return fmt.Errorf("cluster: no leader took the change (is a majority of the members up?): %w", ctx.Err())
			}
		}
		if err != nil {
			return err
		}
		// A proposal a follower forwarded to a leader that has just died,
		// or that is handing its leadership over, is lost without a word:
		// propose it again once another leader is seen, or if it is not
		// applied in time. It may then be applied twice, which the parts
		// allow.
		if err, ended := s.awaitApplied(ctx, done, lead); ended {
			return err
		}
	}
}

// awaitApplied waits for done; ended false means propose again: the
// leader changed from lead (the one seen before proposing), or
// reproposeAfter passed.
func (s *Service) awaitApplied(ctx context.Context, done <-chan error, lead uint64) (err error, ended bool) {
	timer := time.NewTimer(reproposeAfter)
	defer timer.Stop()
	tick := time.NewTicker(leaderCheckEvery)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			return err, true
		case <-timer.C:
			return nil, false
		case <-tick.C:
			if l := s.lead(ctx); l != 0 && l != lead {
				return nil, false
			}
		case <-ctx.Done():
			return fmt.Errorf("cluster: the change was not applied in time (no majority?): %w", ctx.Err()), true
		case <-s.node.Done():
			return ErrStopped, true
		}
	}
}

// MetadataLeader is the metadata group's leader as this node sees it (0:
// none, or the loop did not answer within a second).
func (s *Service) MetadataLeader() uint64 {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return s.lead(ctx)
}

// lead is the metadata group's leader as this node sees it (0: none).
func (s *Service) lead(ctx context.Context) uint64 {
	st, err := s.node.Status(ctx, MetadataGroup)
	if err != nil {
		return 0
	}
	return st.Lead
}

// leaderCheckEvery is how often a waiting Replicate looks for a new
// leader.
const leaderCheckEvery = 50 * time.Millisecond

// reproposeAfter is how long Replicate waits for its entry to be applied
// before it proposes it again: longer than an election (1 to 2 s with the
// defaults), far longer than a commit.
const reproposeAfter = 3 * time.Second

// applyReplica applies a replicated change's entry, telling its proposer
// if it is waiting here; false if data is not such an entry.
func (m *metadataLog) applyReplica(index uint64, data []byte) bool {
	if len(data) < replicaHeader || data[0] != replicaMagic {
		return false
	}
	kind, origin, id := data[1], binary.BigEndian.Uint64(data[2:]), binary.BigEndian.Uint64(data[10:])
	err := fmt.Errorf("%w: %d", ErrNoReplica, kind)
	if p := m.parts[kind]; p != nil {
		err = p.Apply(index, data[replicaHeader:])
	}
	if err != nil && origin != m.self {
		m.logger.Debug("cluster: a replicated change was refused", "kind", kind, "index", index, "err", err)
	}
	if origin == m.self {
		m.waiters.done(id, err)
	}
	return true
}
