package queue

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The core is tested with transcripts in testdata/*.txt, in the manner of
// etcd raft's datadriven tests: a line "> command args" runs a command on
// the core, and the lines after it, up to the next command, are what it
// must output (effects, results). Blank lines and "#" comments are free.
// go test -run TestTranscripts -rewrite writes the actual output back.
//
// Commands (the clock is "time N", 0 at first; messages are named, and
// their name is the handle):
//
//	new [max-priority=N] [max-length=N] [max-length-bytes=N]
//	    [overflow=drop-head|reject-publish|reject-publish-dlx] [dlx]
//	    [expires=N] [sac]
//	time N
//	push NAME [size=N] [prio=N] [expires=N]
//	consume cN [prio=N] [noack]
//	credit cN N
//	take-credit cN
//	cancel cN
//	settle ack|reject|requeue NAME...
//	get [noack]
//	return [got] NAME... (give back the entries last delivered, or got
//	    with got, as a driver that could not hand them over)
//	admits SIZE (would a push of SIZE body bytes be taken)
//	purge | delete | tick | touch | info | deadline
//	policy (as new, applied to the existing queue)
//
// and, on a delayed-message scheduler (Delayed) beside the core, made
// anew by "new":
//
//	schedule NAME at=N (hold NAME until time N)
//	due [max=N] (take what is due at the clock, at most N; prints "due: ...")
//	delayed (how many wait and the next due time) | drain
//
// info prints the counters got, got-noack, deliver-noack and get-empty only
// when they are not zero.
var rewrite = flag.Bool("rewrite", false, "rewrite the transcripts with the actual output")

func TestTranscripts(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.txt")
	if len(files) == 0 {
		t.Fatal("no transcripts")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) { runTranscript(t, f) })
	}
}

// transcript is the state a transcript's commands act on.
type transcript struct {
	c    *Core[string]
	d    *Delayed[string]
	now  int64
	seqs map[string]uint64 // message name to Seq, once pushed
	// taken is each message's entry as last delivered or got, for return.
	taken map[string]Entry[string]
}

func runTranscript(t *testing.T, path string) {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	tr := &transcript{c: New[string](Policy{MaxLength: -1, MaxLengthBytes: -1}, 0), d: NewDelayed[string](), seqs: map[string]uint64{},
		taken: map[string]Entry[string]{}}
	var out strings.Builder
	for i := 0; i < len(lines); {
		line := lines[i]
		cmd, isCmd := strings.CutPrefix(line, "> ")
		if !isCmd {
			if strings.TrimSpace(line) != "" && !strings.HasPrefix(line, "#") {
				t.Fatalf("%s:%d: expected output without a command: %q", path, i+1, line)
			}
			out.WriteString(line + "\n")
			i++
			continue
		}
		j := i + 1
		var want []string
		for j < len(lines) && !strings.HasPrefix(lines[j], "> ") {
			if l := lines[j]; strings.TrimSpace(l) != "" && !strings.HasPrefix(l, "#") {
				want = append(want, l)
			}
			j++
		}
		// Keep trailing comments and blank lines when rewriting.
		tail := j
		for tail > i+1 && (strings.TrimSpace(lines[tail-1]) == "" || strings.HasPrefix(lines[tail-1], "#")) {
			tail--
		}
		got := tr.run(t, fmt.Sprintf("%s:%d", path, i+1), cmd)
		if tr.c != nil {
			checkUnacked(t, fmt.Sprintf("%s:%d", path, i+1), tr.c)
		}
		if !*rewrite && strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s:%d: > %s\nwant:\n  %s\ngot:\n  %s", path, i+1, cmd,
				strings.Join(want, "\n  "), strings.Join(got, "\n  "))
		}
		out.WriteString(line + "\n")
		for _, g := range got {
			out.WriteString(g + "\n")
		}
		for _, l := range lines[tail:j] {
			out.WriteString(l + "\n")
		}
		i = j
	}
	if *rewrite {
		if err := os.WriteFile(path, []byte(out.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// delayedNames lists the handles of es, each after a space.
func delayedNames(es []Entry[string]) string {
	var b strings.Builder
	for _, e := range es {
		b.WriteString(" " + e.Handle)
	}
	return b.String()
}

// args parses "key=value" and bare "flag" words.
func args(words []string) map[string]string {
	m := map[string]string{}
	for _, w := range words {
		k, v, _ := strings.Cut(w, "=")
		m[k] = v
	}
	return m
}

func num(t *testing.T, where, s string) int64 {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("%s: not a number: %q", where, s)
	}
	return n
}

func consumerID(t *testing.T, where, s string) ConsumerID {
	n, ok := strings.CutPrefix(s, "c")
	if !ok {
		t.Fatalf("%s: consumers are c1, c2, ...: %q", where, s)
	}
	return ConsumerID(num(t, where, n))
}

func (tr *transcript) policy(t *testing.T, where string, words []string) Policy {
	a := args(words)
	p := Policy{MaxLength: -1, MaxLengthBytes: -1}
	for k, v := range a {
		switch k {
		case "max-priority":
			p.MaxPriority = uint8(num(t, where, v))
		case "max-length":
			p.MaxLength = num(t, where, v)
		case "max-length-bytes":
			p.MaxLengthBytes = num(t, where, v)
		case "overflow":
			p.Overflow = map[string]Overflow{"drop-head": DropHead, "reject-publish": RejectPublish,
				"reject-publish-dlx": RejectPublishDLX}[v]
		case "dlx":
			p.DeadLetter = true
		case "expires":
			p.Expires = num(t, where, v)
		case "sac":
			p.SingleActive = true
		default:
			t.Fatalf("%s: unknown policy key %q", where, k)
		}
	}
	return p
}

// run executes one command and returns its output lines.
func (tr *transcript) run(t *testing.T, where, line string) []string {
	words := strings.Fields(line)
	var out []string
	var effects []Effect[string]
	switch words[0] {
	case "new":
		tr.c = New[string](tr.policy(t, where, words[1:]), tr.now)
		tr.d = NewDelayed[string]()
		tr.seqs, tr.taken = map[string]uint64{}, map[string]Entry[string]{}
	case "policy":
		effects = tr.c.SetPolicy(tr.policy(t, where, words[1:]), tr.now)
	case "time":
		tr.now = num(t, where, words[1])
	case "push":
		a := args(words[2:])
		m := Message[string]{Handle: words[1], Timestamp: tr.now}
		if v, ok := a["size"]; ok {
			m.Size = uint32(num(t, where, v))
		}
		if v, ok := a["prio"]; ok {
			m.Priority = uint8(num(t, where, v))
		}
		if v, ok := a["expires"]; ok {
			m.Expires = num(t, where, v)
		}
		var err error
		effects, err = tr.c.Push(m, tr.now)
		if err != nil {
			out = append(out, "push refused: "+err.Error())
		} else {
			tr.seqs[words[1]] = tr.c.nextSeq
		}
	case "recover":
		// recover HANDLE... [expires=T]: the messages a restart found.
		var ms []Message[string]
		a := args(words[1:])
		for _, w := range words[1:] {
			if strings.Contains(w, "=") {
				continue
			}
			m := Message[string]{Handle: w, Timestamp: tr.now}
			if v, ok := a["expires"]; ok {
				m.Expires = num(t, where, v)
			}
			ms = append(ms, m)
		}
		effects = tr.c.Recover(ms, tr.now)
		for i, m := range ms {
			tr.seqs[m.Handle] = tr.c.nextSeq - uint64(len(ms)-1-i)
		}
	case "consume":
		a := args(words[2:])
		var prio int64
		if v, ok := a["prio"]; ok {
			prio = num(t, where, v)
		}
		_, noAck := a["noack"]
		effects = tr.c.Consume(consumerID(t, where, words[1]), prio, noAck, tr.now)
	case "credit":
		effects = tr.c.Credit(consumerID(t, where, words[1]), num(t, where, words[2]), tr.now)
	case "take-credit":
		out = append(out, fmt.Sprintf("credit %d", tr.c.TakeCredit(consumerID(t, where, words[1]))))
	case "cancel":
		var left bool
		effects, left = tr.c.Cancel(consumerID(t, where, words[1]), tr.now)
		if !left {
			out = append(out, "no consumers left")
		}
	case "settle":
		outcome := map[string]Outcome{"ack": Ack, "reject": Reject, "requeue": Requeue}[words[1]]
		if outcome == 0 {
			t.Fatalf("%s: settle ack|reject|requeue", where)
		}
		var seqs []uint64
		for _, name := range words[2:] {
			seq, ok := tr.seqs[name]
			if !ok {
				seq = 1 << 62 // never pushed: the core must ignore it
			}
			seqs = append(seqs, seq)
		}
		effects = tr.c.Settle(seqs, outcome, tr.now)
	case "get":
		_, noAck := args(words[1:])["noack"]
		e, ok, es := tr.c.Get(noAck, tr.now)
		effects = es
		if ok {
			tr.taken[e.Handle] = e
			out = append(out, "got "+entryText(e))
		} else {
			out = append(out, "empty")
		}
	case "return":
		names, got := words[1:], false
		if len(names) > 0 && names[0] == "got" {
			names, got = names[1:], true
		}
		var es []Entry[string]
		for _, name := range names {
			e, ok := tr.taken[name]
			if !ok {
				t.Fatalf("%s: %s was never delivered", where, name)
			}
			es = append(es, e)
		}
		tr.c.Return(es, got)
	case "admits":
		out = append(out, fmt.Sprintf("admits %v", tr.c.Admits(uint32(num(t, where, words[1])))))
	case "purge":
		var n int
		n, effects = tr.c.Purge()
		out = append(out, fmt.Sprintf("purged %d", n))
	case "delete":
		var n int
		n, effects = tr.c.Delete()
		out = append(out, fmt.Sprintf("deleted with %d ready", n))
	case "tick":
		effects = tr.c.Tick(tr.now)
	case "touch":
		tr.c.Touch(tr.now)
	case "deadline":
		out = append(out, fmt.Sprintf("deadline %d", tr.c.NextDeadline()))
	case "schedule":
		tr.d.Schedule(Message[string]{Handle: words[1], Timestamp: tr.now}, num(t, where, args(words[2:])["at"]))
	case "due":
		max := 0
		if v, ok := args(words[1:])["max"]; ok {
			max = int(num(t, where, v))
		}
		out = append(out, "due:"+delayedNames(tr.d.DueMax(tr.now, max)))
	case "delayed":
		out = append(out, fmt.Sprintf("waiting=%d next=%d", tr.d.Len(), tr.d.NextDeadline()))
	case "drain":
		out = append(out, "drained:"+delayedNames(tr.d.Drain()))
	case "info":
		in := tr.c.Info()
		out = append(out, fmt.Sprintf("ready=%d unacked=%d bytes=%d unacked-bytes=%d consumers=%d head-ts=%d oldest-unacked=%d active=%d",
			in.Ready, in.Unacked, in.ReadyBytes, in.UnackedBytes, in.Consumers, in.HeadTimestamp, in.OldestUnacked, in.Active))
		s := in.Stats
		line := fmt.Sprintf("published=%d delivered=%d redelivered=%d acked=%d rejected=%d expired=%d dead-lettered=%d dropped=%d",
			s.Published, s.Delivered, s.Redelivered, s.Acked, s.Rejected, s.Expired, s.DeadLettered, s.Dropped)
		for _, c := range []struct {
			name string
			n    uint64
		}{{"got", s.Got}, {"got-noack", s.GotNoAck}, {"deliver-noack", s.DeliveredNoAck}, {"get-empty", s.GetEmpty}} {
			if c.n != 0 {
				line += fmt.Sprintf(" %s=%d", c.name, c.n)
			}
		}
		out = append(out, line)
	default:
		t.Fatalf("%s: unknown command %q", where, words[0])
	}
	for _, e := range effects {
		if e.Kind == Deliver {
			for _, en := range e.Entries {
				tr.taken[en.Handle] = en
			}
		}
		out = append(out, effectText(e))
	}
	return out
}

func entryText(e Entry[string]) string {
	if e.Deliveries > 1 {
		return fmt.Sprintf("%s(%d)", e.Handle, e.Deliveries)
	}
	return e.Handle
}

func effectText(e Effect[string]) string {
	names := make([]string, len(e.Entries))
	for i, en := range e.Entries {
		names[i] = entryText(en)
	}
	list := strings.Join(names, " ")
	switch e.Kind {
	case Deliver:
		return fmt.Sprintf("deliver c%d: %s", e.Consumer, list)
	case Release:
		if e.Reason != 0 {
			return fmt.Sprintf("release %s: %s", e.Reason, list)
		}
		return "release: " + list
	case DeadLetter:
		return fmt.Sprintf("dead-letter %s: %s", e.Reason, list)
	case DeleteQueue:
		return "delete-queue"
	case ActiveConsumer:
		return fmt.Sprintf("active c%d", e.Consumer)
	}
	return fmt.Sprintf("effect %d", e.Kind)
}

// checkUnacked checks the unacked index against its delivery-order list:
// every unacked seq sits at its recorded place, and the list holds nothing
// else but settled (zeroed) places.
func checkUnacked[H any](t *testing.T, where string, c *Core[H]) {
	t.Helper()
	live := 0
	for _, seq := range c.unackedBy {
		if seq != 0 {
			live++
		}
	}
	if live != len(c.unacked) {
		t.Fatalf("%s: %d live seqs in the delivery-order list, %d unacked", where, live, len(c.unacked))
	}
	for seq, u := range c.unacked {
		if u.pos < c.unackedBase || u.pos-c.unackedBase >= uint64(len(c.unackedBy)) || c.unackedBy[u.pos-c.unackedBase] != seq {
			t.Fatalf("%s: unacked seq %d is not at its place %d (base %d, %d places)", where, seq, u.pos, c.unackedBase, len(c.unackedBy))
		}
	}
}

// TestUnackedIndexRandomSettles settles deliveries in random (seeded)
// order and groups, requeueing some, and checks the unacked index after
// every command and that the oldest unacked age is the oldest live
// delivery's.
func TestUnackedIndexRandomSettles(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	c := New[int](Policy{MaxLength: -1, MaxLengthBytes: -1}, 0)
	c.Consume(1, 0, false, 0)
	type delivery struct {
		seq uint64
		at  int64
	}
	var delivered []delivery
	took := func(effects []Effect[int], now int64) {
		for _, e := range effects {
			if e.Kind == Deliver {
				for _, en := range e.Entries {
					delivered = append(delivered, delivery{en.Seq, now})
				}
			}
		}
	}
	for step := range 20000 {
		now := int64(step + 1)
		switch r := rng.IntN(10); {
		case r < 4:
			c.Push(Message[int]{Handle: step, Size: 10}, now)
		case r < 7:
			took(c.Credit(1, int64(rng.IntN(5)+1), now), now)
			c.TakeCredit(1)
		case len(delivered) > 0:
			var seqs []uint64
			for range rng.IntN(4) + 1 {
				if len(delivered) == 0 {
					break
				}
				i := rng.IntN(len(delivered))
				seqs = append(seqs, delivered[i].seq)
				delivered = slices.Delete(delivered, i, i+1)
			}
			outcome := Ack
			if rng.IntN(4) == 0 {
				outcome = Requeue
			}
			took(c.Settle(seqs, outcome, now), now)
		}
		checkUnacked(t, fmt.Sprintf("step %d", step), c)
		oldest := int64(0)
		for _, d := range delivered {
			if oldest == 0 || d.at < oldest {
				oldest = d.at
			}
		}
		if got := c.Info().OldestUnacked; got != oldest {
			t.Fatalf("step %d: oldest unacked at %d, want %d", step, got, oldest)
		}
	}
}
