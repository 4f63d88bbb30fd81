package netnstest_test

import (
	"testing"
	"time"

	"github.com/amqp-go/amqp-go/server/cluster/netnstest"
	"github.com/amqp-go/amqp-go/server/e2e/history"
)

// slowPhase is one stretch of a slow-link or slow-disk test: what was
// slowed, the confirm rate and the longest time without a confirm.
type slowPhase struct {
	what string
	rate float64
	gap  time.Duration
}

// loadFor lets the publisher run for span and measures it.
func loadFor(confirms *confirmCounter, what string, span time.Duration) slowPhase {
	from := time.Now()
	for time.Since(from) < span {
		time.Sleep(100 * time.Millisecond)
	}
	to := time.Now()
	return slowPhase{what: what, rate: confirms.confirmRate(from, to), gap: confirms.maxGap(from, to)}
}

// slowCluster starts a cluster on n's nodes with a quorum queue, and
// returns its nodes, the queue's leader and one of its followers.
func slowCluster(t *testing.T, n *netnstest.Net, queue string) (nodes []*clusterNode, leader, follower *clusterNode) {
	t.Helper()
	nodes = startClusterNodes(t, n)
	qi := quorumQueue(t, n, nodes, queue)
	leader = byName(nodes, qi.Leader)
	for _, cn := range nodes {
		if cn != leader {
			return nodes, leader, cn
		}
	}
	t.Fatal("no follower")
	return nil, nil, nil
}

// slowLoad runs a confirming publisher on the queue's leader and a
// consumer over the whole test, calls phases with the confirm counter,
// and then checks that every confirmed message was delivered once the
// phases are over, with the history checker.
func slowLoad(t *testing.T, n *netnstest.Net, nodes []*clusterNode, queue string, leader *clusterNode, phases func(*confirmCounter)) {
	rec, problems := history.NewRecorder(), &clientProblems{}
	confirms, stopPublisher := startPublisher(t, n, "p", leader, queue, rec, problems)
	stopConsumer, consumerDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(consumerDone)
		consumeLoop("c", amqpAddrs(n, nodes), 0, queue, rec, stopConsumer)
	}()
	phases(confirms)
	stopPublisher()
	waitDelivered(t, rec, 60*time.Second, nodes, queue)
	close(stopConsumer)
	<-consumerDone
	problems.report(t)
	checkHistory(t, rec)
	waitQueueAgreed(t, nodes, queue, true, 20*time.Second, "after the slow phases")
}

// checkSlowed fails t unless the phase kept confirming (no gap longer
// than an election or two) and, if slower, ran at most at half of base.
func checkSlowed(t *testing.T, base, p slowPhase, slower bool) {
	t.Helper()
	t.Logf("%s: %.0f confirms/s (%.0f without), the longest gap %v", p.what, p.rate, base.rate, p.gap.Round(time.Millisecond))
	if p.rate == 0 || p.gap > 3*time.Second {
		t.Errorf("%s: %.0f confirms/s, the longest gap %v: the queue stopped", p.what, p.rate, p.gap.Round(time.Millisecond))
	}
	if slower && p.rate > base.rate/2 {
		t.Errorf("%s did not slow the confirms: %.0f/s, %.0f/s without", p.what, p.rate, base.rate)
	}
}

// TestClusterQuorumSlowLink slows links with a token bucket (tc tbf, a
// real kernel qdisc; this kernel has no netem, see
// TestClusterQuorumNetemDelay) while a publisher with confirms on the
// leader of a quorum queue and a consumer run: first the leader's
// outgoing traffic (its appends, and its clients' confirms, crawl through
// 2 Mbit/s with up to 500 ms of queueing), which must slow the confirms
// without stopping them; then a follower's, which the leader can do
// without (the other follower makes the majority). Nothing confirmed is
// lost, and the members agree afterwards.
func TestClusterQuorumSlowLink(t *testing.T) {
	n := netnstest.New(t, 3)
	const queue = "qq-slow-link"
	nodes, leader, follower := slowCluster(t, n, queue)
	const span = 4 * time.Second
	slowLoad(t, n, nodes, queue, leader, func(confirms *confirmCounter) {
		base := loadFor(confirms, "no shaping", span)
		n.Shape(leader.i, "rate", "2mbit", "burst", "16kb", "latency", "500ms")
		slow := loadFor(confirms, "the leader "+leader.name+"'s link at 2 Mbit/s", span)
		n.NetemClear(leader.i)
		checkSlowed(t, base, slow, true)
		n.Shape(follower.i, "rate", "2mbit", "burst", "16kb", "latency", "500ms")
		f := loadFor(confirms, "the follower "+follower.name+"'s link at 2 Mbit/s", span)
		n.NetemClear(follower.i)
		checkSlowed(t, base, f, false)
	})
}

// TestClusterQuorumSlowDisk throttles a node's writes to its disk (a
// blkio cgroup allowing 30 write requests a second: an fdatasync takes
// a tenth of a second or more) while a publisher with confirms on the
// leader of a quorum queue and a consumer run: first a follower's, which
// the majority does without, then the leader's, whose every round waits
// for its fsync, which must slow the confirms without stopping them.
// Nothing confirmed is lost, and the members agree afterwards.
func TestClusterQuorumSlowDisk(t *testing.T) {
	n := netnstest.New(t, 3)
	const queue = "qq-slow-disk"
	nodes, leader, follower := slowCluster(t, n, queue)
	const span, iops = 4 * time.Second, 30
	slowLoad(t, n, nodes, queue, leader, func(confirms *confirmCounter) {
		base := loadFor(confirms, "no throttle", span)
		restore := netnstest.ThrottleWrites(t, follower.cmd.Process.Pid, follower.dir, iops)
		f := loadFor(confirms, "the follower "+follower.name+"'s disk at 30 writes/s", span)
		restore()
		checkSlowed(t, base, f, false)
		restore = netnstest.ThrottleWrites(t, leader.cmd.Process.Pid, leader.dir, iops)
		slow := loadFor(confirms, "the leader "+leader.name+"'s disk at 30 writes/s", span)
		restore()
		checkSlowed(t, base, slow, true)
	})
}
