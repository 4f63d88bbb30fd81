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
	c   *Core[string]
	d   *Delayed[string]
	now int64
	// taken is each message's entry and delivery tag as last delivered or
	// got, for settle and return.
	taken map[string]taken
}

type taken struct {
	e   Entry[string]
	tag uint64
}

func runTranscript(t *testing.T, path string) {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	tr := &transcript{c: New[string](Policy{MaxLength: -1, MaxLengthBytes: -1}, 0), d: NewDelayed[string](),
		taken: map[string]taken{}}
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
		tr.taken = map[string]taken{}
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
		var tags []uint64
		for _, name := range words[2:] {
			tag := tr.taken[name].tag
			if tag == 0 {
				tag = 1 << 62 // never delivered: the core must ignore it
			}
			tags = append(tags, tag)
		}
		effects = tr.c.Settle(tags, outcome, tr.now)
	case "get":
		_, noAck := args(words[1:])["noack"]
		e, tag, ok, es := tr.c.Get(noAck, tr.now)
		effects = es
		if ok {
			tr.taken[e.Handle] = taken{e, tag}
			out = append(out, "got "+entryText(e))
		} else {
			out = append(out, "empty")
		}
	case "return":
		names, got := words[1:], false
		if len(names) > 0 && names[0] == "got" {
			names, got = names[1:], true
		}
		for _, name := range names {
			tk, ok := tr.taken[name]
			if !ok {
				t.Fatalf("%s: %s was never delivered", where, name)
			}
			tr.c.Return([]Entry[string]{tk.e}, tk.tag, got)
		}
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
			for i, en := range e.Entries {
				tk := taken{e: en}
				if e.Tag != 0 {
					tk.tag = e.Tag + uint64(i)
				}
				tr.taken[en.Handle] = tk
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

// checkUnacked checks the unacked table (its counts match its entries,
// the window's front is live, every old entry's tag is below the window,
// and the window is dense) and the credit count.
func checkUnacked[H any](t *testing.T, where string, c *Core[H]) {
	t.Helper()
	checkCounts(t, where, c)
	u := &c.unacked
	if n := u.n; n > 64 && n > 4*(u.live-len(u.old)) {
		t.Fatalf("%s: a window of %d slots holds %d live entries", where, n, u.live-len(u.old))
	}
}

// checkCounts is checkUnacked but for the window's density, which only
// Settle and Return restore (they compact): deliveries after them may take
// a window of 64 places with few live ones just past the bound.
func checkCounts[H any](t *testing.T, where string, c *Core[H]) {
	t.Helper()
	u := &c.unacked
	live, bytes := len(u.old), int64(0)
	for tag, o := range u.old {
		if tag >= u.base || o.e.Seq == 0 {
			t.Fatalf("%s: old entry with tag %d (seq %d) at or above the window's base %d", where, tag, o.e.Seq, u.base)
		}
		bytes += int64(o.e.Size)
	}
	for i := range u.n {
		if w := u.slot(i); w.e.Seq != 0 {
			live++
			bytes += int64(w.e.Size)
		}
	}
	if live != u.live || bytes != u.bytes {
		t.Fatalf("%s: %d live entries of %d bytes, the table counts %d of %d", where, live, bytes, u.live, u.bytes)
	}
	if u.n > 0 && u.slot(0).e.Seq == 0 {
		t.Fatalf("%s: the window's front is settled", where)
	}
	credit := int64(0)
	for _, cs := range c.consumers {
		credit += cs.credit
	}
	if credit != c.credit {
		t.Fatalf("%s: the consumers hold %d credit, the core counts %d", where, credit, c.credit)
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
		tag uint64
		at  int64
	}
	var delivered []delivery
	took := func(effects []Effect[int], now int64) {
		for _, e := range effects {
			if e.Kind == Deliver {
				for i := range e.Entries {
					delivered = append(delivered, delivery{e.Tag + uint64(i), now})
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
				seqs = append(seqs, delivered[i].tag)
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

// TestUnackedStraggler holds one delivery while 10,000 after it are
// delivered and acked: the table keeps it (settled by its tag, with its
// age) without a window over all 10,001 places.
func TestUnackedStraggler(t *testing.T) {
	c := New[int](Policy{MaxLength: -1, MaxLengthBytes: -1}, 0)
	c.Consume(1, 0, false, 0)
	c.Push(Message[int]{Handle: -1, Size: 7}, 1)
	held := c.Credit(1, 1, 1)[0].Tag
	for i := range 10000 {
		now := int64(i + 2)
		c.Push(Message[int]{Handle: i, Size: 1}, now)
		tag := c.Credit(1, 1, now)[0].Tag
		c.Settle([]uint64{tag}, Ack, now)
		checkUnacked(t, fmt.Sprintf("ack %d", i), c)
	}
	if n := c.unacked.n; n > 64 {
		t.Fatalf("one unacked delivery keeps a window of %d places", n)
	}
	if in := c.Info(); in.Unacked != 1 || in.UnackedBytes != 7 || in.OldestUnacked != 1 {
		t.Fatalf("unacked %d (%d bytes), oldest at %d; want 1 (7 bytes) at 1", in.Unacked, in.UnackedBytes, in.OldestUnacked)
	}
	effects := c.Settle([]uint64{held, held}, Ack, 20000) // a second settle of one tag is ignored
	if len(effects) != 1 || len(effects[0].Entries) != 1 || effects[0].Entries[0].Handle != -1 {
		t.Fatalf("settling the held delivery gave %v", effects)
	}
	if in := c.Info(); in.Unacked != 0 || in.OldestUnacked != 0 || len(c.unacked.old) != 0 {
		t.Fatalf("after the last settle: %d unacked, oldest at %d, %d old", in.Unacked, in.OldestUnacked, len(c.unacked.old))
	}
}
