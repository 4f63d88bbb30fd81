package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// kvPart is a replicated part for the tests: "k=v" sets k, refused when
// k holds another value.
type kvPart struct {
	mu   sync.Mutex
	data map[string]string
}

func newKV() *kvPart { return &kvPart{data: map[string]string{}} }

func (p *kvPart) Apply(_ uint64, payload []byte) error {
	k, v, ok := strings.Cut(string(payload), "=")
	if !ok {
		return errors.New("not k=v")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if cur, set := p.data[k]; set && cur != v {
		return fmt.Errorf("%s is %s", k, cur)
	}
	p.data[k] = v
	return nil
}

func (p *kvPart) Snapshot() ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return json.Marshal(p.data)
}

func (p *kvPart) Restore(data []byte) error {
	m := map[string]string{}
	if data != nil {
		if err := json.Unmarshal(data, &m); err != nil {
			return err
		}
	}
	p.mu.Lock()
	p.data = m
	p.mu.Unlock()
	return nil
}

func (p *kvPart) copy() map[string]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.data)
}

// waitKV waits until every node's part holds want.
func waitKV(t *testing.T, nodes []*membershipNode, want map[string]string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, n := range nodes {
		for !maps.Equal(n.parts[7].(*kvPart).copy(), want) {
			if time.Now().After(deadline) {
				t.Fatalf("%s holds %v, want %v", n.self.Name, n.parts[7].(*kvPart).copy(), want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// TestReplicate: a change proposed through a follower is applied by
// every member, and its verdict (a refusal too) is the proposer's; an
// unknown part is refused before proposing; a member that joins after
// the log was compacted gets the state from a snapshot, and one that
// restarts from its log and snapshots; without a majority, Replicate
// fails when its context ends.
func TestReplicate(t *testing.T) {
	var nodes []*membershipNode
	var lns []net.Listener
	for i := range 4 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		nodes = append(nodes, &membershipNode{self: Peer{ID: uint64(20 + i), Name: fmt.Sprintf("r%d", i), Address: ln.Addr().String()},
			dir: t.TempDir(), parts: map[byte]Replicated{7: newKV()}})
	}
	original := []Peer{nodes[0].self, nodes[1].self, nodes[2].self}
	for i, n := range nodes[:3] {
		n.members = original
		n.open(t, lns[i])
	}
	leader := waitAgree(t, nodes[:3], "r0", "r1", "r2")
	var follower *membershipNode
	for _, n := range nodes[:3] {
		if n.self.Name != leader {
			follower = n
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := follower.svc.Replicate(ctx, 7, []byte("a=1")); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"a": "1"}
	waitKV(t, nodes[:3], want)
	if err := follower.svc.Replicate(ctx, 7, []byte("a=2")); err == nil || err.Error() != "a is 1" {
		t.Fatalf("a refused change: %v, want the part's verdict %q", err, "a is 1")
	}
	if err := follower.svc.Replicate(ctx, 8, []byte("a=2")); !errors.Is(err, ErrNoReplica) {
		t.Fatalf("an unknown part: %v, want ErrNoReplica", err)
	}
	for i := range 12 { // past SnapshotEvery twice: the log is compacted
		k := fmt.Sprintf("k%d", i)
		if err := nodes[i%3].svc.Replicate(ctx, 7, []byte(k+"=v")); err != nil {
			t.Fatal(err)
		}
		want[k] = "v"
	}
	waitKV(t, nodes[:3], want)

	joiner := nodes[3]
	joiner.members, joiner.join = original, true
	joiner.open(t, lns[3])
	if err := follower.svc.AddMember(ctx, joiner.self); err != nil {
		t.Fatal(err)
	}
	waitKV(t, nodes, want)

	// A restart with an empty part: the snapshot and the log refill it.
	restarted := nodes[0]
	restarted.close(t)
	ln, err := net.Listen("tcp", restarted.self.Address)
	if err != nil {
		t.Fatal(err)
	}
	restarted.parts = map[byte]Replicated{7: newKV()}
	restarted.open(t, ln)
	waitKV(t, nodes, want)

	// Two of four down: no majority.
	nodes[1].close(t)
	nodes[2].close(t)
	short, cancelShort := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancelShort()
	if err := joiner.svc.Replicate(short, 7, []byte("b=1")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("without a majority: %v, want the context's deadline", err)
	}
}
