package queue

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
)

// TestStateEquivalence is FromState's property: for random policies and
// random command sequences (seeded), a core made from another's State in
// the middle of a sequence answers every later command as the original
// does (effects, results, counts, ages, deadlines, head), and ends in the
// same State.
func TestStateEquivalence(t *testing.T) {
	seeds := 400
	if raceDetector {
		seeds = 100
	}
	for seed := range seeds {
		runStateSeed(t, uint64(seed))
	}
}

// stateRun drives cores with random commands, as a quorum queue's members
// apply a log: the commands depend only on the seed and on the effects
// they produced, which every core must agree on.
type stateRun struct {
	rng       *rand.Rand
	busy      bool // pushing about twice as often: long backlogs and unacked windows
	now       int64
	handle    int
	consumers []ConsumerID // subscribed, in no particular order
	lastID    ConsumerID
	tags      []uint64 // delivered with a tag, maybe settled since
	// taken are the runs the last command delivered or got, which a
	// Return may give back.
	taken []takenRun
}

// newRng is a seed's command source.
func newRng(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 7)) }

type takenRun struct {
	es  []Entry[int]
	tag uint64
	got bool
}

// stateResult is what a command returned and what the core reports
// after it.
type stateResult struct {
	Effects  []Effect[int]
	Entry    Entry[int]
	Tag      uint64
	OK       bool
	N        int64
	Err      error
	Info     Info
	Ready    int64
	Bytes    int64
	Users    int
	Deadline int64
	Head     Entry[int]
	HeadOK   bool
	Admits   bool
}

// copyEffects copies effects out of the core (their entries are the
// core's until its next command); an empty list is nil either way.
func copyEffects(es []Effect[int]) []Effect[int] {
	var out []Effect[int]
	for _, e := range es {
		e.Entries = append([]Entry[int](nil), e.Entries...)
		out = append(out, e)
	}
	return out
}

func (r *stateRun) policy() Policy {
	p := Policy{MaxLength: -1, MaxLengthBytes: -1, MaxPriority: uint8(r.rng.IntN(4))}
	if r.rng.IntN(3) == 0 {
		p.MaxLength = r.rng.Int64N(30)
	}
	if r.rng.IntN(3) == 0 {
		p.MaxLengthBytes = r.rng.Int64N(150)
	}
	p.Overflow = Overflow(r.rng.IntN(3))
	p.DeadLetter = r.rng.IntN(2) == 0
	if r.rng.IntN(3) == 0 {
		p.Expires = 1 + r.rng.Int64N(40)
	}
	p.SingleActive = r.rng.IntN(3) == 0
	p.LimitDeliveries = r.rng.IntN(3) == 0
	p.DeliveryLimit = r.rng.Int64N(3)
	return p
}

func (r *stateRun) message() Message[int] {
	r.handle++
	m := Message[int]{Handle: r.handle, Size: uint32(r.rng.IntN(30)), Priority: uint8(r.rng.IntN(6)),
		Mark: r.rng.IntN(2) == 0, Redelivered: r.rng.IntN(10) == 0}
	switch r.rng.IntN(5) {
	case 0, 1:
		m.Expires = r.now + 1 + r.rng.Int64N(40)
	case 2:
		m.Expires = r.now + 1 + r.rng.Int64N(400)
	}
	if r.rng.IntN(2) == 0 {
		m.Timestamp = r.now - r.rng.Int64N(5)
	}
	return m
}

// consumer is a subscribed consumer, now and then one that is not.
func (r *stateRun) consumer() ConsumerID {
	if len(r.consumers) == 0 || r.rng.IntN(10) == 0 {
		return r.lastID + 1
	}
	return r.consumers[r.rng.IntN(len(r.consumers))]
}

// next makes a random command; run applies it to a core.
func (r *stateRun) next() (name string, run func(c *Core[int]) stateResult) {
	// The clock mostly goes on, at times not at all, and now and then
	// back (a new Raft leader's clock may be behind the last one's).
	switch n := r.rng.IntN(10); {
	case n == 0:
		r.now -= r.rng.Int64N(8)
	case n < 8:
		r.now += r.rng.Int64N(4)
	}
	now := r.now
	taken := r.taken
	r.taken = nil
	switch n := r.rng.IntN(100); {
	case n < 28 || r.busy && n%2 == 0:
		m := r.message()
		return "push", func(c *Core[int]) (res stateResult) {
			res.Effects, res.Err = c.Push(m, now)
			return res
		}
	case n < 33:
		r.lastID++
		id, prio, noAck := r.lastID, r.rng.Int64N(3), r.rng.IntN(4) == 0
		r.consumers = append(r.consumers, id)
		return "consume", func(c *Core[int]) stateResult { return stateResult{Effects: c.Consume(id, prio, noAck, now)} }
	case n < 36:
		id := r.consumer()
		if i := slices.Index(r.consumers, id); i >= 0 {
			r.consumers = slices.Delete(r.consumers, i, i+1)
		}
		return "cancel", func(c *Core[int]) (res stateResult) {
			res.Effects, res.OK = c.Cancel(id, now)
			return res
		}
	case n < 52:
		id, k := r.consumer(), 1+r.rng.Int64N(10)
		return "credit", func(c *Core[int]) stateResult { return stateResult{Effects: c.Credit(id, k, now)} }
	case n < 56:
		id := r.consumer()
		return "take-credit", func(c *Core[int]) stateResult { return stateResult{N: c.TakeCredit(id)} }
	case n < 70:
		var tags []uint64
		for range 1 + r.rng.IntN(4) {
			if len(r.tags) == 0 || r.rng.IntN(12) == 0 {
				tags = append(tags, r.rng.Uint64N(1000)) // stale, or never given
				continue
			}
			// Mostly a recent one: the others straggle, which takes the
			// unacked table past its window.
			i := r.rng.IntN(len(r.tags))
			if r.rng.IntN(10) > 0 {
				i = len(r.tags) - 1 - r.rng.IntN(min(len(r.tags), 6))
			}
			tags = append(tags, r.tags[i])
			r.tags = slices.Delete(r.tags, i, i+1)
		}
		outcome := Outcome(1 + r.rng.IntN(3))
		return "settle", func(c *Core[int]) stateResult { return stateResult{Effects: c.Settle(tags, outcome, now)} }
	case n < 76:
		noAck := r.rng.IntN(3) == 0
		return "get", func(c *Core[int]) (res stateResult) {
			res.Entry, res.Tag, res.OK, res.Effects = c.Get(noAck, now)
			return res
		}
	case n < 82 && len(taken) > 0:
		// A driver that could not hand over the tail of a run.
		tr := taken[r.rng.IntN(len(taken))]
		k := r.rng.IntN(len(tr.es))
		es, tag := tr.es[k:], tr.tag
		if tag != 0 {
			tag += uint64(k)
		}
		return "return", func(c *Core[int]) stateResult {
			c.Return(slices.Clone(es), tag, tr.got)
			return stateResult{}
		}
	case n < 85:
		name, empty := "purge", (*Core[int]).Purge
		if n == 84 {
			name, empty = "delete", (*Core[int]).Delete
		}
		return name, func(c *Core[int]) stateResult {
			k, es := empty(c)
			return stateResult{Effects: es, N: int64(k)}
		}
	case n < 93:
		return "tick", func(c *Core[int]) stateResult { return stateResult{Effects: c.Tick(now)} }
	case n < 96:
		p := r.policy()
		return "policy", func(c *Core[int]) stateResult { return stateResult{Effects: c.SetPolicy(p, now)} }
	case n < 98:
		return "touch", func(c *Core[int]) stateResult {
			c.Touch(now)
			return stateResult{}
		}
	default:
		var ms []Message[int]
		for range 1 + r.rng.IntN(3) {
			ms = append(ms, r.message())
		}
		return "recover", func(c *Core[int]) stateResult { return stateResult{Effects: c.Recover(ms, now)} }
	}
}

// apply runs a command on c and reports its result and c's state after it.
func apply(run func(c *Core[int]) stateResult, c *Core[int], size uint32) stateResult {
	res := run(c)
	res.Effects = copyEffects(res.Effects)
	res.Info = c.Info()
	res.Ready, res.Bytes, res.Users = c.Backlog()
	res.Deadline = c.NextDeadline()
	res.Head, res.HeadOK = c.Head()
	res.Admits = c.Admits(size)
	return res
}

// observe records what a command delivered, for later settles and returns.
func (r *stateRun) observe(res stateResult) {
	for _, e := range res.Effects {
		if e.Kind != Deliver {
			continue
		}
		r.taken = append(r.taken, takenRun{es: e.Entries, tag: e.Tag})
		for i := range e.Entries {
			if e.Tag != 0 {
				r.tags = append(r.tags, e.Tag+uint64(i))
			}
		}
	}
	if res.OK && res.Entry.Seq != 0 { // a Get's
		r.taken = append(r.taken, takenRun{es: []Entry[int]{res.Entry}, tag: res.Tag, got: true})
		if res.Tag != 0 {
			r.tags = append(r.tags, res.Tag)
		}
	}
}

func runStateSeed(t *testing.T, seed uint64) {
	t.Helper()
	r := &stateRun{rng: newRng(seed), busy: seed%3 == 0}
	a := New[int](r.policy(), 0)
	prefix, suffix := r.rng.IntN(400), 200
	var b *Core[int]
	var snap, snapCopy State[int]
	for step := range prefix + suffix {
		where := ""
		if step >= prefix { // only then is there a restored core to check
			where = fmt.Sprintf("seed %d step %d", seed, step)
		}
		if step == prefix {
			snap = a.State()
			b = FromState(snap)
			snapCopy = b.State()
			if !reflect.DeepEqual(snapCopy, snap) {
				t.Fatalf("%s: FromState(s).State() differs from s:\n%+v\n%+v", where, snapCopy, snap)
			}
			checkCounts(t, where, b)
		}
		if b != nil && r.rng.IntN(30) == 0 {
			// A member restored from a member restored from a snapshot.
			b = FromState(b.State())
		}
		name, run := r.next()
		size := uint32(r.rng.IntN(40))
		got := apply(run, a, size)
		if b != nil {
			other := apply(run, b, size)
			checkCounts(t, where+" (from state)", b)
			if !reflect.DeepEqual(got, other) {
				t.Fatalf("%s (%d after the snapshot): %s:\noriginal:   %+v\nfrom state: %+v", where, step-prefix, name, got, other)
			}
		}
		r.observe(got)
	}
	if sa, sb := a.State(), b.State(); !reflect.DeepEqual(sa, sb) {
		t.Fatalf("seed %d: the states differ at the end:\noriginal:   %+v\nfrom state: %+v", seed, sa, sb)
	}
	if !reflect.DeepEqual(snap, snapCopy) {
		t.Fatalf("seed %d: the snapshot changed as the cores went on", seed)
	}
}

// TestStateStragglers checks that a snapshot keeps the unacked
// deliveries the table holds apart as stragglers: once the clock has gone
// back, the oldest unacked age depends on which they are.
func TestStateStragglers(t *testing.T) {
	c := New[int](Policy{MaxLength: -1, MaxLengthBytes: -1}, 0)
	c.Consume(1, 0, false, 0)
	c.Push(Message[int]{Handle: 0}, 100)
	c.Credit(1, 1, 100) // tag 1 at 100
	for i := range 100 {
		c.Push(Message[int]{Handle: i + 1}, 50)
	}
	c.Credit(1, 100, 50) // tags 2 to 101 at 50, the clock gone back
	var acks []uint64
	for tag := uint64(3); tag <= 101; tag++ {
		acks = append(acks, tag)
	}
	c.Settle(acks, Ack, 50) // 1 and 2 straggle
	c.Push(Message[int]{Handle: 101}, 10)
	c.Credit(1, 1, 10) // tag 102 at 10
	if len(c.unacked.old) != 2 {
		t.Fatalf("%d stragglers, want 2", len(c.unacked.old))
	}
	b := FromState(c.State())
	if got, want := b.Info().OldestUnacked, c.Info().OldestUnacked; got != want {
		t.Fatalf("oldest unacked at %d from the state, %d in the original", got, want)
	}
}

// TestStateCoversCore fails when a field is added to the core's state
// without State carrying it (or saying why not): update State, State()
// and FromState, then this list.
func TestStateCoversCore(t *testing.T) {
	for _, c := range []struct {
		v      any
		fields []string
	}{
		{Core[int]{}, []string{"policy", "levels", "ready", "bytes",
			"held", "heldBytes", // the quorum queue's dead-letters: its snapshot has them, and Restore counts them
			"expiries", "unacked", "consumers", "credit",
			"rr", "order", "active", "lastUsed", "hadUsers", "deleteAsked", "stats",
			"out", "arena"}}, // the last command's effects: not state
		{level[int]{}, []string{"front", "back", "seq", "maxExpiry", "unbounded"}},
		{deque[int]{}, []string{"blocks", "head", "first", "n", "spare"}},
		{unackedTable[int]{}, []string{"ring", "head", "n", "base", "old", "live", "bytes"}},
		{unackedEntry[int]{}, []string{"e", "at"}},
		{consumerState{}, []string{"id", "priority", "credit", "noAck", "order"}},
		{expiryItem{}, []string{"at", "seq", "prio"}},
		{Entry[int]{}, []string{"Queued", "Seq"}},
		{Queued[int]{}, []string{"Handle", "Expires", "Timestamp", "Size", "Deliveries", "Priority", "flags"}},
	} {
		typ := reflect.TypeOf(c.v)
		var fields []string
		for f := range typ.Fields() {
			fields = append(fields, f.Name)
		}
		if !slices.Equal(fields, c.fields) {
			t.Errorf("%s has fields %v; State was written for %v", typ, fields, c.fields)
		}
	}
}

// TestFromStateRejects checks that FromState refuses states no core could
// have had, rather than making a core that breaks later.
func TestFromStateRejects(t *testing.T) {
	good := func() State[int] {
		c := New[int](Policy{MaxPriority: 1, MaxLength: -1, MaxLengthBytes: -1}, 0)
		c.Consume(1, 0, false, 0)
		for i := range 3 {
			c.Push(Message[int]{Handle: i, Expires: int64(10 - i)}, 0)
		}
		c.Credit(1, 1, 0)
		return c.State()
	}
	FromState(good()) // does not panic
	for name, spoil := range map[string]func(s *State[int]){
		"levels":         func(s *State[int]) { s.Levels = s.Levels[:1] },
		"back order":     func(s *State[int]) { s.Levels[0].Back[1].Seq = s.Levels[0].Back[0].Seq },
		"back above seq": func(s *State[int]) { s.Levels[0].Seq = 1 },
		"expiry level":   func(s *State[int]) { s.Expiries[0].Level = 2 },
		"tag":            func(s *State[int]) { s.Unacked[0].Tag = s.NextTag },
		"window":         func(s *State[int]) { s.WindowBase = s.NextTag + 1 },
		"settled":        func(s *State[int]) { s.Unacked[0].Entry.Seq = 0 },
	} {
		s := good()
		spoil(&s)
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: FromState took a spoilt state", name)
				}
			}()
			FromState(s)
		}()
	}
}
