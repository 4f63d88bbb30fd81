package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/amqp-go/amqp-go/server/servertest"
)

// TestServiceStatus opens three Services on 127.0.0.1 and waits until
// all report every member reachable and the same metadata leader and
// term, then commits an entry through a follower.
func TestServiceStatus(t *testing.T) {
	var members []Peer
	var lns []net.Listener
	for i := range 3 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		members = append(members, Peer{ID: uint64(10 + i), Name: fmt.Sprintf("n%d", i), Address: ln.Addr().String()})
	}
	var svcs []*Service
	for i, m := range members {
		logs := &servertest.LogBuffer{}
		s, err := Open(ServiceConfig{Cluster: "c", Self: m, Members: members, Listener: lns[i], Dir: t.TempDir(), NoSync: true,
			TickInterval: 10 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(logs, nil))})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := s.Close(); err != nil {
				t.Error(err)
			}
		})
		svcs = append(svcs, s)
	}
	deadline := time.Now().Add(10 * time.Second)
	var sts []Status
	for {
		sts = sts[:0]
		agree := true
		for _, s := range svcs {
			st, err := s.Status(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			sts = append(sts, st)
			for _, m := range st.Members {
				agree = agree && m.Reachable
			}
			agree = agree && st.Metadata.Leader != "" && st.Metadata.Leader == sts[0].Metadata.Leader && st.Metadata.Term == sts[0].Metadata.Term
		}
		if agree {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no agreement in 10s: %+v", sts)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("leader %s, term %d", sts[0].Metadata.Leader, sts[0].Metadata.Term)
	var follower *Service
	for i, st := range sts {
		if st.Metadata.Role == "StateFollower" {
			follower = svcs[i]
		}
	}
	if follower == nil {
		t.Fatalf("no follower: %+v", sts)
	}
	if err := follower.Propose(context.Background(), []byte("x")); err != nil {
		t.Fatal(err)
	}
	for _, s := range svcs {
		for s.meta.count() != 1 {
			if time.Now().After(deadline) {
				t.Fatalf("entry not applied on %s in time", s.cfg.Self.Name)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}
