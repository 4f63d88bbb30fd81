package store

import "sync"

// memory is the heap store: the file store's model without a disk. It
// keeps each stored message until its last queue lets go.
type memory struct {
	mu     sync.Mutex
	nextID uint64
	idx    index
	bodies map[uint64]*Message
	closed bool
	taken  bool // Recover was called
}

// NewMemory returns an empty store that keeps messages on the heap; it
// loses them on Close or exit.
func NewMemory() Store {
	return &memory{nextID: 1, idx: newIndex(), bodies: map[uint64]*Message{}}
}

func (s *memory) Put(m *Message, queues []QueueID, done func(error)) (Ref, error) {
	var buf [16]uint64
	ids := durableQueues(buf[:0], queues)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return Ref{}, finish(done, ErrClosed)
	}
	var ref Ref
	if m.Persistent && len(ids) > 0 {
		ref.ID = s.nextID
		s.nextID++
		s.bodies[ref.ID] = m
		s.idx.put(ref.ID, ids)
	}
	s.mu.Unlock()
	return ref, finish(done, nil)
}

// finish calls done (if set) with err and returns err.
func finish(done func(error), err error) error {
	if done != nil {
		done(err)
	}
	return err
}

func (s *memory) Release(q QueueID, refs []Ref) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.idx.release(q, refs, func(r Ref, freed bool) {
		if freed {
			delete(s.bodies, r.ID)
		}
	})
}

func (s *memory) Load(ref Ref) (*Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	m := s.bodies[ref.ID]
	if m == nil {
		return nil, ErrNotFound
	}
	return m, nil
}

func (s *memory) DropQueue(q QueueID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.idx.drop(q, func(id uint64) { delete(s.bodies, id) })
}

// Sync has nothing to wait for: what the memory store holds is as safe as
// it gets once the call that changed it returned.
func (s *memory) Sync(done func(error)) {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		done(ErrClosed)
		return
	}
	done(nil)
}

func (s *memory) Recover() (*Recovered, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.taken {
		return nil, errRecovered
	}
	s.taken = true
	return &Recovered{Queues: map[QueueID]*RecoveredQueue{}}, nil
}

func (s *memory) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.idx.stats()
}

func (s *memory) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.closed = true
	s.idx, s.bodies = newIndex(), nil
	return nil
}
