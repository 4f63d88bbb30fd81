package netnstest_test

import (
	"encoding/json"
	"fmt"
	"math/rand"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/amqp-go/amqp-go/server/cluster/netnstest"
	"github.com/amqp-go/amqp-go/server/e2e/history"
	amqp091 "github.com/rabbitmq/amqp091-go"
	"golang.org/x/sys/unix"
)

// quorumArgs declares a quorum queue.
var quorumArgs = amqp091.Table{"x-queue-type": "quorum"}

// knob reads a positive integer tuning knob from the environment.
func knob(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// queueClient reads a queue: its item asks the cluster for its members'
// names, which takes up to a second of its own.
var queueClient = &http.Client{Timeout: 3 * time.Second}

// queueInfo is what a node's GET /api/queues/%2F/<name> says of a quorum
// queue.
type queueInfo struct {
	Leader   string   `json:"leader"` // "" while its group has none
	Members  []string `json:"members"`
	Online   []string `json:"online"` // the members the node reaches
	Messages int      `json:"messages"`
	Ready    int      `json:"messages_ready"`
	Unacked  int      `json:"messages_unacknowledged"`
	// Consumers counts the consumers on this node.
	Consumers int `json:"consumers"`
}

// logQueue logs what each node says of queue name.
func logQueue(t *testing.T, nodes []*clusterNode, name string) {
	t.Helper()
	for _, cn := range nodes {
		qi, err := cn.queue(name)
		t.Logf("%s: %+v %v", cn.name, qi, err)
	}
}

// queue reads queue name (in /) on cn.
func (cn *clusterNode) queue(name string) (queueInfo, error) {
	req, err := http.NewRequest(http.MethodGet, cn.api+"/queues/%2F/"+name, nil)
	if err != nil {
		return queueInfo{}, err
	}
	req.SetBasicAuth("guest", "guest")
	resp, err := queueClient.Do(req)
	if err != nil {
		return queueInfo{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return queueInfo{}, fmt.Errorf("%s: %s", cn.name, resp.Status)
	}
	var qi queueInfo
	return qi, json.NewDecoder(resp.Body).Decode(&qi)
}

// queueLeader polls nodes until one of them reports a leader for queue
// name other than not (and not ""), failing after within; it returns the
// leader and how long it took.
func queueLeader(t *testing.T, nodes []*clusterNode, name, not string, within time.Duration) (string, time.Duration) {
	t.Helper()
	start := time.Now()
	var why string
	for {
		for _, cn := range nodes {
			qi, err := cn.queue(name)
			switch {
			case err != nil:
				why = err.Error()
			case qi.Leader == "" || qi.Leader == not:
				why = fmt.Sprintf("%s reports leader %q", cn.name, qi.Leader)
			default:
				return qi.Leader, time.Since(start)
			}
		}
		if time.Since(start) > within {
			t.Fatalf("queue %s: no leader other than %q after %v: %s", name, not, within, why)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// queueAgreed is why the nodes do not yet agree on queue name (one
// leader, each reaching all of them and, with counts, the same message
// count), or ""; with the agreed state.
func queueAgreed(nodes []*clusterNode, name string, counts bool) (queueInfo, string) {
	var first queueInfo
	for k, cn := range nodes {
		qi, err := cn.queue(name)
		if err != nil {
			return first, err.Error()
		}
		if qi.Leader == "" {
			return first, cn.name + " reports no leader"
		}
		if len(qi.Online) != len(nodes) {
			return first, fmt.Sprintf("%s reaches only %v of %v", cn.name, qi.Online, qi.Members)
		}
		if k == 0 {
			first = qi
		} else if qi.Leader != first.Leader || counts && qi.Messages != first.Messages {
			return first, fmt.Sprintf("%s: leader %s, %d messages; %s: leader %s, %d messages",
				nodes[0].name, first.Leader, first.Messages, cn.name, qi.Leader, qi.Messages)
		}
	}
	return first, ""
}

// waitQueueAgreed polls nodes until queueAgreed, failing after within.
func waitQueueAgreed(t *testing.T, nodes []*clusterNode, name string, counts bool, within time.Duration, what string) queueInfo {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		qi, why := queueAgreed(nodes, name, counts)
		if why == "" {
			return qi
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the members of %s do not agree after %v: %s", what, name, within, why)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// quorumQueue waits for nodes to form a cluster, declares quorum queue
// name on the first and waits until its members agree on it; it returns
// what they agree on.
func quorumQueue(t *testing.T, n *netnstest.Net, nodes []*clusterNode, name string) queueInfo {
	t.Helper()
	waitAgree(t, nodes, 15*time.Second, "formation")
	c, ch := channelOn(t, nodes[0].amqpURL(n, "guest", "guest", "/"))
	defer c.Close()
	if _, err := ch.QueueDeclare(name, true, false, false, false, quorumArgs); err != nil {
		t.Fatal(err)
	}
	return waitQueueAgreed(t, nodes, name, true, 15*time.Second, "after the declaration")
}

// amqpAddrs are the nodes' AMQP addresses, in the order of nodes.
func amqpAddrs(n *netnstest.Net, nodes []*clusterNode) []string {
	var addrs []string
	for _, cn := range nodes {
		addrs = append(addrs, net.JoinHostPort(n.Node(cn.i).Addr, "5672"))
	}
	return addrs
}

// roundRobin calls run with a fresh channel on a connection to one of
// addrs (and the address) (with a 1 s heartbeat: a dead node shows within seconds), from
// addrs[first], going on to the next address whenever run returns (its
// channel or connection died), until stop. The connection is closed
// after run.
func roundRobin(client string, addrs []string, first int, stop <-chan struct{}, run func(ch *amqp091.Channel, addr string)) {
	for i := first; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		c, err := dial(addrs[i%len(addrs)], time.Second)
		if err == nil {
			setState(client, "connected to "+addrs[i%len(addrs)])
		}
		if err != nil {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		if ch, err := c.Channel(); err == nil {
			run(ch, addrs[i%len(addrs)])
		}
		c.Close()
	}
}

// confirmHang bounds the wait for one confirm on a live connection: a
// proposal raft drops is retried for 5 s and then nacked, so a publish
// still unconfirmed after this is a hang.
const confirmHang = 20 * time.Second

// clientProblems collects what clients saw that breaks a guarantee
// without being in the history (a confirm that never came).
type clientProblems struct {
	mu   sync.Mutex
	list []string
}

func (p *clientProblems) add(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.list = append(p.list, fmt.Sprintf(format, args...))
}

func (p *clientProblems) report(t *testing.T) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.list {
		t.Error(s)
	}
}

// publishLoop publishes persistent messages to queue with confirms, in
// windows of 20, until stop, across connections (roundRobin), recording
// each publish as publisher. confirmed, unless nil, hears of each confirm.
func publishLoop(publisher string, addrs []string, first int, queue string, rec *history.Recorder,
	stop <-chan struct{}, problems *clientProblems, confirmed func(at time.Time)) {
	seq := int64(0)
	roundRobin(publisher, addrs, first, stop, func(ch *amqp091.Channel, _ string) {
		setState(publisher, "confirm.select")
		if ch.Confirm(false) != nil {
			return
		}
		confirms := ch.NotifyPublish(make(chan amqp091.Confirmation, 64))
		// Mandatory: a message no queue took (a classic queue's home
		// node down) comes back before its ack, which then confirms
		// nothing.
		returns := ch.NotifyReturn(make(chan amqp091.Return, 64))
		returned := map[string]bool{}
		for {
			setState(publisher, fmt.Sprintf("publishing a window from seq %d", seq+1))
			select {
			case <-stop:
				return
			default:
			}
			if !paced(stop) {
				return
			}
			var ops []history.PublishOp
			var ids []string
			var err error
			for range 20 {
				seq++
				id := fmt.Sprintf("%s-%d", publisher, seq)
				op := rec.Publish(publisher, queue, id, seq)
				err = ch.Publish("", queue, true, false, amqp091.Publishing{DeliveryMode: amqp091.Persistent, MessageId: id, Body: []byte(id)})
				if err != nil {
					op.End(history.Unknown)
					break
				}
				ops = append(ops, op)
				ids = append(ids, id)
			}
			setState(publisher, fmt.Sprintf("waiting for the confirms up to seq %d", seq))
			for i, op := range ops {
				var cf amqp091.Confirmation
				open := true
				select {
				case cf, open = <-confirms:
				case <-time.After(confirmHang):
					problems.add("%s: no confirm within %v on a live connection (publish %d of a window of %d)",
						publisher, confirmHang, i+1, len(ops))
					open = false
				}
				if !open {
					for _, unknown := range ops[i:] {
						unknown.End(history.Unknown)
					}
					return
				}
				for drained := false; !drained; {
					select {
					case r, ok := <-returns:
						if !ok { // the channel closed: nothing more comes back
							drained = true
							break
						}
						returned[r.MessageId] = true
					default:
						drained = true
					}
				}
				if cf.Ack && returned[ids[i]] {
					delete(returned, ids[i])
					op.End(history.Nacked) // acked, but it reached no queue
				} else if cf.Ack {
					op.End(history.Confirmed)
					backlogConfirmed.Add(1)
					if confirmed != nil {
						confirmed(time.Now())
					}
				} else {
					op.End(history.Nacked)
				}
			}
			if err != nil {
				return
			}
		}
	})
}

// qqSyncEvery is how many acks a consumer sends between two basic.qos
// round trips, each making the acks before it certain.
const qqSyncEvery = 25

// consumeLoop consumes queue with prefetch 50 until stop, across
// connections (roundRobin), recording and acking each delivery as
// consumer, with a basic.qos round trip every qqSyncEvery acks and a
// clean channel close at stop, each recorded as a RoundTrip.
func consumeLoop(consumer string, addrs []string, first int, queue string, rec *history.Recorder, stop <-chan struct{}) {
	channel := 0
	roundRobin(consumer, addrs, first, stop, func(ch *amqp091.Channel, addr string) {
		channel++
		session := fmt.Sprintf("%s/%d", consumer, channel)
		on := " (" + addr + ")"
		setState(consumer, "basic.qos on "+session+on)
		if ch.Qos(50, 0, false) != nil {
			return
		}
		setState(consumer, "basic.consume on "+session+on)
		ds, err := ch.Consume(queue, "", false, false, false, false, nil)
		if err != nil {
			return
		}
		setState(consumer, "consuming on "+session+on)
		acked := 0
		for {
			select {
			case <-stop:
				start := time.Now()
				if ch.Close() == nil {
					rec.RoundTrip(session, start)
				}
				return
			case d, ok := <-ds:
				if !ok {
					return
				}
				hd := history.Delivery{Consumer: consumer, Session: session, Queue: queue, ID: string(d.Body),
					Redelivered: d.Redelivered, Tag: d.DeliveryTag, DeliveryCount: -1}
				if n, ok := d.Headers["x-delivery-count"].(int64); ok {
					hd.DeliveryCount = n
				}
				rec.Deliver(hd)
				backlogDelivered.Add(1)
				rec.Ack(hd).End(d.Ack(false))
				if acked++; acked%qqSyncEvery == 0 {
					setState(consumer, "a basic.qos round trip on "+session+on)
					start := time.Now()
					if ch.Qos(50, 0, false) == nil {
						rec.RoundTrip(session, start)
					}
					setState(consumer, fmt.Sprintf("consuming on %s%s, %d acked", session, on, acked))
				}
			}
		}
	})
}

// clientStates is what each client is doing, for a failure's log.
var clientStates sync.Map

// setState records what client is doing from now.
func setState(client, state string) {
	clientStates.Store(client, state+" since "+time.Now().Format("15:04:05.000"))
}

// waitDelivered polls rec until every confirmed publish was delivered,
// failing the rest as lost after within (with what nodes say of queue
// and what the clients are doing).
func waitDelivered(t *testing.T, rec *history.Recorder, within time.Duration, nodes []*clusterNode, queue string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		n := rec.Undelivered()
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%d confirmed messages not delivered %v after the publishers stopped (lost, or a consumer stuck)\n%s", n, within, rec.Check())
			logQueue(t, nodes, queue)
			clientStates.Range(func(k, v any) bool { t.Logf("client %s: %s", k, v); return true })
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkHistory logs rec's report and fails t on any violation, or when
// nothing was confirmed (the test measured nothing).
func checkHistory(t *testing.T, rec *history.Recorder) history.Report {
	t.Helper()
	r := rec.Check()
	t.Logf("confirmed %d, delivered %d distinct, duplicates %d (%d after an ack in flight), lost %d, acked then redelivered %d",
		r.Confirmed, r.Distinct, r.Duplicates, r.AfterInFlightAck, r.Lost.Count, r.AckedThenRedelivered.Count)
	t.Log(r)
	if r.Confirmed == 0 {
		t.Error("nothing was confirmed: the test measured nothing")
	}
	if !r.OK() {
		t.Error("the history breaks the broker's guarantees (see the report above)")
	}
	return r
}

// progressWithin bounds how long the clients may go without a confirm
// or a delivery once the cluster has recovered from a kill.
const progressWithin = 10 * time.Second

// waitProgress fails t unless the clients get new confirms and new
// deliveries within progressWithin.
func waitProgress(t *testing.T, rec *history.Recorder, nodes []*clusterNode, queue, what string) {
	t.Helper()
	count := func() (confirmed, delivered int) {
		h := rec.History()
		for _, p := range h.Publishes {
			if p.Outcome == history.Confirmed {
				confirmed++
			}
		}
		return confirmed, len(h.Deliveries)
	}
	c0, d0 := count()
	deadline := time.Now().Add(progressWithin)
	for {
		c, d := count()
		if c > c0 && d > d0 {
			return
		}
		if time.Now().After(deadline) {
			logQueue(t, nodes, queue)
			clientStates.Range(func(k, v any) bool { t.Logf("client %s: %s", k, v); return true })
			t.Fatalf("%s: %d new confirms and %d new deliveries in %v: the clients are stuck", what, c-c0, d-d0, progressWithin)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// testSeed is QUORUM_SEED, or a new seed, logged for a replay.
func testSeed(t *testing.T) int64 {
	seed := time.Now().UnixNano()
	if s, err := strconv.ParseInt(os.Getenv("QUORUM_SEED"), 10, 64); err == nil {
		seed = s
	}
	t.Logf("seed %d (QUORUM_SEED to replay)", seed)
	return seed
}

// TestClusterQuorumLeaderKill9 proves that a quorum queue replicated on
// three amqp-server processes, one per namespace, loses no confirmed
// message and redelivers no message after a certain ack while its
// Publisher pacing: with paceBacklog set, publishers wait while the
// messages confirmed but not yet delivered (counted across all of them)
// are more than it, so that the consumers, slower than the publishers,
// drain the queue in a bounded time at the end.
var backlogConfirmed, backlogDelivered, paceBacklog atomic.Int64

// paced waits, polling, until the backlog is under paceBacklog (when
// set); false if stop came first.
func paced(stop <-chan struct{}) bool {
	for limit := paceBacklog.Load(); limit > 0 && backlogConfirmed.Load()-backlogDelivered.Load() > limit; {
		select {
		case <-stop:
			return false
		case <-time.After(5 * time.Millisecond):
		}
	}
	return true
}

// quorumClients are three confirming publishers and two acking
// consumers of one quorum queue, each going round the nodes, recorded
// for the history checker.
type quorumClients struct {
	rec                           *history.Recorder
	problems                      *clientProblems
	stopPublishers, stopConsumers chan struct{}
	publishers, consumers         sync.WaitGroup
	stopped                       bool
}

// startQuorumClients starts them on addrs; confirmed, if set, has one
// func per publisher, called at each of its confirms.
func startQuorumClients(addrs []string, queue string, confirmed []func(time.Time)) *quorumClients {
	qc := &quorumClients{rec: history.NewRecorder(), problems: &clientProblems{},
		stopPublishers: make(chan struct{}), stopConsumers: make(chan struct{})}
	for i := range 3 {
		var cf func(time.Time)
		if confirmed != nil {
			cf = confirmed[i]
		}
		qc.publishers.Add(1)
		go func() {
			defer qc.publishers.Done()
			publishLoop(fmt.Sprintf("p%d", i), addrs, i, queue, qc.rec, qc.stopPublishers, qc.problems, cf)
		}()
	}
	for i := range 2 {
		qc.consumers.Add(1)
		go func() {
			defer qc.consumers.Done()
			consumeLoop(fmt.Sprintf("c%d", i), addrs, i+1, queue, qc.rec, qc.stopConsumers)
		}()
	}
	return qc
}

// stop stops every client (deferred, so that a t.Fatal stops them before
// the nodes are killed).
func (qc *quorumClients) stop() {
	if !qc.stopped {
		qc.stopped = true
		close(qc.stopPublishers)
		close(qc.stopConsumers)
		qc.publishers.Wait()
		qc.consumers.Wait()
	}
}

// drain stops the publishers, lets the consumers take every confirmed
// message, stops them and checks the history.
func (qc *quorumClients) drain(t *testing.T, nodes []*clusterNode, queue string) history.Report {
	t.Helper()
	close(qc.stopPublishers)
	qc.publishers.Wait()
	waitDelivered(t, qc.rec, 60*time.Second, nodes, queue)
	close(qc.stopConsumers)
	qc.consumers.Wait()
	qc.stopped = true
	qc.problems.report(t)
	waitQueueAgreed(t, nodes, queue, true, 20*time.Second, "after the consumers stopped")
	return checkHistory(t, qc.rec)
}

// limitBacklog paces the publishers of quorumClients for the rest of the
// test: three publishers outrun two consumers, and a backlog of at most
// 20k keeps the final drain, and the nodes' memory, bounded.
func limitBacklog(t *testing.T) {
	backlogConfirmed.Store(0)
	backlogDelivered.Store(0)
	paceBacklog.Store(20000)
	t.Cleanup(func() { paceBacklog.Store(0) })
}

// leader is killed with kill -9 again and again (QUORUM_KILLS, default
// 20, about three minutes) under load: three confirming publishers and two acking consumers,
// each reconnecting to the next node when its own dies. After each kill
// another node reports a new leader within 5 s (the test fails beyond
// 10 s); the killed node restarts and rejoins (the queue's members agree
// again) before the next kill.
func TestClusterQuorumLeaderKill9(t *testing.T) {
	kills := knob("QUORUM_KILLS", 20)
	limitBacklog(t)
	rng := rand.New(rand.NewSource(testSeed(t)))
	n := netnstest.New(t, 3)
	nodes := startClusterNodes(t, n)
	addrs := amqpAddrs(n, nodes)
	const queue = "qq-kill"
	quorumQueue(t, n, nodes, queue)

	qc := startQuorumClients(addrs, queue, nil)
	rec := qc.rec
	defer qc.stop()

	var elections []time.Duration
	began := time.Now()
	for k := range kills {
		time.Sleep(time.Duration(300+rng.Intn(1200)) * time.Millisecond)
		leader, _ := queueLeader(t, nodes, queue, "", 10*time.Second)
		dead := byName(nodes, leader)
		confirmedBefore := rec.Check().Confirmed
		dead.kill()
		killed := time.Now()
		at := killed.Format("15:04:05.000")
		rest := without(nodes, dead.name)
		next, took := queueLeader(t, rest, queue, dead.name, 10*time.Second)
		elections = append(elections, took)
		if took > 5*time.Second {
			t.Errorf("kill %d: %s took %v to take over from %s, want under 5s", k+1, next, took, dead.name)
		}
		dead.start(t, n)
		waitQueueAgreed(t, nodes, queue, false, 30*time.Second, fmt.Sprintf("kill %d: after restarting %s", k+1, dead.name))
		waitAgree(t, nodes, 15*time.Second, fmt.Sprintf("kill %d: the metadata after restarting %s", k+1, dead.name))
		waitProgress(t, rec, nodes, queue, fmt.Sprintf("kill %d (%s killed at %s): after it rejoined", k+1, dead.name, at))
		t.Logf("kill %d at %s: killed the leader %s; %s leads after %v; %s rejoined %v after its kill; %d confirmed before the kill",
			k+1, at, dead.name, next, took.Round(time.Millisecond), dead.name, time.Since(killed).Round(time.Millisecond), confirmedBefore)
	}
	loop := time.Since(began)
	// Load after the last rejoin, then stop the publishers and let the
	// consumers drain every confirmed message.
	time.Sleep(time.Second)
	r := qc.drain(t, nodes, queue)
	slices.Sort(elections)
	if len(elections) > 0 {
		t.Logf("%d kills in %v; leader election: median %v, max %v; confirmed %d, lost %d, duplicates %d (%d after an ack in flight)",
			len(elections), loop.Round(time.Millisecond), elections[len(elections)/2].Round(time.Millisecond),
			elections[len(elections)-1].Round(time.Millisecond), r.Confirmed, r.Lost.Count, r.Duplicates, r.AfterInFlightAck)
	}
	if d := r.Duplicates - r.AfterInFlightAck; d > 0 {
		// A message delivered again without an ack of it before: its
		// first delivery went to a connection that died, or to a node
		// that was declared down, unacked; the redelivered flag (checked)
		// says so.
		t.Logf("%d duplicates of messages never acked before their redelivery", d)
	}
}

// nsDial returns a Dial for amqp091 that makes its connections from inside
// namespace ns (a socket belongs to the namespace it was created in),
// so that a client reaches a node whose link is cut.
//
// The dialing thread enters ns and comes back before it is unlocked: a
// thread that ended in ns would take with it the nodes it started
// (their Pdeathsig is per thread), and the main thread left in ns would
// make the harness take the test process for one of its namespace's.
func nsDial(ns string) func(network, addr string) (net.Conn, error) {
	return func(network, addr string) (net.Conn, error) {
		type result struct {
			c   net.Conn
			err error
		}
		done := make(chan result, 1)
		go func() {
			runtime.LockOSThread()
			home, err := os.Open("/proc/thread-self/ns/net")
			if err != nil {
				runtime.UnlockOSThread()
				done <- result{nil, err}
				return
			}
			defer home.Close()
			target, err := os.Open("/var/run/netns/" + ns)
			if err != nil {
				runtime.UnlockOSThread()
				done <- result{nil, err}
				return
			}
			defer target.Close()
			if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
				runtime.UnlockOSThread()
				done <- result{nil, fmt.Errorf("setns %s: %w", ns, err)}
				return
			}
			c, err := net.DialTimeout(network, addr, 5*time.Second)
			if err := unix.Setns(int(home.Fd()), unix.CLONE_NEWNET); err != nil {
				if c != nil {
					c.Close()
				}
				done <- result{nil, fmt.Errorf("setns back from %s: %w", ns, err)}
				select {} // the thread stays in ns, locked, and never ends
			}
			runtime.UnlockOSThread()
			done <- result{c, err}
		}()
		r := <-done
		return r.c, r.err
	}
}

// confirmCounter counts a publisher's confirms and remembers the last.
type confirmCounter struct {
	mu    sync.Mutex
	n     int
	times []time.Time
}

func (cc *confirmCounter) confirmed(at time.Time) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	cc.n++
	// In order, for since and maxGap, when publishers share cc.
	i := len(cc.times)
	for i > 0 && cc.times[i-1].After(at) {
		i--
	}
	cc.times = slices.Insert(cc.times, i, at)
}

// since counts the confirms after from, and returns the first of them.
func (cc *confirmCounter) since(from time.Time) (int, time.Time) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	i, _ := slices.BinarySearchFunc(cc.times, from, func(a, b time.Time) int { return a.Compare(b) })
	if i == len(cc.times) {
		return 0, time.Time{}
	}
	return len(cc.times) - i, cc.times[i]
}

// maxGap is the longest time between two confirms in [from, to] (from
// and to count as confirms).
func (cc *confirmCounter) maxGap(from, to time.Time) time.Duration {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	gap, last := time.Duration(0), from
	for _, at := range cc.times {
		if at.After(from) && at.Before(to) {
			gap, last = max(gap, at.Sub(last)), at
		}
	}
	return max(gap, to.Sub(last))
}

// nackTimes describes publisher's nacks of publishes made after from:
// how many, and how long after their publish they came.
func nackTimes(rec *history.Recorder, publisher string, from time.Time) string {
	var took []time.Duration
	for _, p := range rec.History().Publishes {
		if p.Publisher == publisher && p.Outcome == history.Nacked && !p.Start.Before(from.Add(-time.Second)) {
			took = append(took, p.End.Sub(p.Start))
		}
	}
	if len(took) == 0 {
		return "no nacks"
	}
	slices.Sort(took)
	return fmt.Sprintf("%d nacks, %v to %v after their publish", len(took), took[0].Round(time.Millisecond), took[len(took)-1].Round(time.Millisecond))
}

// startPublisher runs publishLoop as publisher on cn alone, waits for its
// first confirm (failing t after 10 s) and returns its confirms and a
// func that stops it and waits for it to end.
func startPublisher(t *testing.T, n *netnstest.Net, publisher string, cn *clusterNode, queue string,
	rec *history.Recorder, problems *clientProblems) (*confirmCounter, func()) {
	t.Helper()
	cc := &confirmCounter{}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		publishLoop(publisher, amqpAddrs(n, []*clusterNode{cn}), 0, queue, rec, stop, problems, cc.confirmed)
	}()
	var once sync.Once
	stopped := func() { once.Do(func() { close(stop); <-done }) }
	t.Cleanup(stopped) // on a t.Fatal, before the nodes are killed
	deadline := time.Now().Add(10 * time.Second)
	for k, _ := cc.since(time.Time{}); k == 0; k, _ = cc.since(time.Time{}) {
		if time.Now().After(deadline) {
			t.Fatalf("the publisher %s on %s got no confirm within 10s", publisher, cn.name)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return cc, stopped
}

// TestClusterQuorumPartition proves that a quorum queue on three
// amqp-server processes, one per namespace, confirms nothing on the
// minority side of a real link cut and goes on confirming on the
// majority side, and that after the heal every member agrees on the
// queue and no confirmed message is lost.
//
// The queue's leader is cut: a publisher inside its namespace (reaching
// it on loopback) gets no confirm for any publish made after the cut
// within 8 s (they are nacked or stay unconfirmed), while the other two
// elect a leader and a publisher on one of them is confirmed again.
// Healed, the three report the same leader and message count. Then a
// follower is cut: the leader keeps confirming a publisher connected to
// it, without losing its leadership. Healed again, every confirmed
// message is consumed, from the node that was cut first.
func TestClusterQuorumPartition(t *testing.T) {
	n := netnstest.New(t, 3)
	// AMQP on every address: the cut node's is reached from inside its
	// namespace, on 127.0.0.1.
	nodes := startNodes(t, n, n.Nodes, peersOf(n.Nodes), "AMQP_NETWORK_ADDRESS=0.0.0.0:5672")
	const queue = "qq-part"
	qi := quorumQueue(t, n, nodes, queue)
	cut := byName(nodes, qi.Leader)
	majority := without(nodes, cut.name)
	t.Logf("%s leads %s; cutting it", cut.name, queue)

	rec, problems := history.NewRecorder(), &clientProblems{}

	// The minority publisher, inside the leader's namespace.
	mc, err := amqp091.DialConfig("amqp://guest:guest@127.0.0.1:5672/", amqp091.Config{Dial: nsDial(cut.nsName(n))})
	if err != nil {
		t.Fatalf("a client inside %s's namespace: %v", cut.name, err)
	}
	defer mc.Close()
	mch, err := mc.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := mch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	mconfirms := mch.NotifyPublish(make(chan amqp091.Confirmation, 100))
	mseq := int64(0)
	minorityPublish := func(k int) []history.PublishOp {
		var ops []history.PublishOp
		for range k {
			mseq++
			id := fmt.Sprintf("minority-%d", mseq)
			op := rec.Publish("minority", queue, id, mseq)
			if err := mch.Publish("", queue, false, false, amqp091.Publishing{DeliveryMode: amqp091.Persistent, Body: []byte(id)}); err != nil {
				op.End(history.Unknown)
				t.Fatalf("publishing on %s: %v", cut.name, err)
			}
			ops = append(ops, op)
		}
		return ops
	}
	for _, op := range minorityPublish(5) {
		select {
		case cf := <-mconfirms:
			if !cf.Ack {
				t.Fatalf("%s, leading and reaching the others, nacked a publish", cut.name)
			}
			op.End(history.Confirmed)
		case <-time.After(10 * time.Second):
			t.Fatalf("%s, leading and reaching the others, confirmed nothing within 10s", cut.name)
		}
	}

	// The majority publisher, on a node that stays connected, runs
	// throughout.
	onMajority := majority[0]
	majorityConfirms, stopMajority := startPublisher(t, n, "majority", onMajority, queue, rec, problems)

	// Cut the leader.
	n.Cut(cut.i)
	cutAt := time.Now()
	after := minorityPublish(5)
	next, took := queueLeader(t, majority, queue, cut.name, 10*time.Second)
	t.Logf("the majority reports %s leading %v after the cut", next, took.Round(time.Millisecond))
	nacked := 0
	wait := time.After(time.Until(cutAt.Add(8 * time.Second)))
	for len(after) > 0 {
		select {
		case cf := <-mconfirms:
			if cf.Ack {
				t.Errorf("%s, cut off from the others, confirmed a publish made after the cut, %v after it", cut.name, time.Since(cutAt).Round(time.Millisecond))
				after[0].End(history.Confirmed)
			} else {
				nacked++
				after[0].End(history.Nacked)
			}
			after = after[1:]
			continue
		case <-wait:
		}
		break
	}
	t.Logf("the cut %s, 8s after the cut: of 5 publishes made after it, %d nacked, %d unconfirmed, none confirmed", cut.name, nacked, len(after))
	for _, op := range after { // whatever comes later
		op.End(history.Unknown)
	}
	// The majority publisher's window in flight at the cut went to the
	// old leader: lost, it is nacked once its 5 s are up (the broker looks
	// every 5 s), and the next window goes to the new leader.
	majorityWithin := 15 * time.Second
	for {
		k, first := majorityConfirms.since(cutAt.Add(time.Second))
		if k > 0 {
			t.Logf("the publisher on %s: its first confirm from 1s after the cut on came %v after the cut; %s",
				onMajority.name, first.Sub(cutAt).Round(time.Millisecond), nackTimes(rec, "majority", cutAt))
			break
		}
		if time.Since(cutAt) > majorityWithin {
			t.Errorf("the publisher on %s got no confirm within %v of the cut, with %s leading the majority after %v; %s",
				onMajority.name, majorityWithin, next, took.Round(time.Millisecond), nackTimes(rec, "majority", cutAt))
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for len(after) > 0 && len(mconfirms) > 0 {
		if cf := <-mconfirms; cf.Ack {
			t.Errorf("%s, cut off from the others, confirmed a publish made after the cut, %v after it", cut.name, time.Since(cutAt).Round(time.Millisecond))
		} else {
			nacked++
		}
		after = after[1:]
	}
	t.Logf("the cut %s, %v after the cut: of 5 publishes made after it, %d nacked, %d unconfirmed, none confirmed",
		cut.name, time.Since(cutAt).Round(time.Millisecond), nacked, len(after))

	// Heal: the members converge.
	n.Heal(cut.i)
	healed := time.Now()
	waitAgree(t, nodes, 15*time.Second, "the metadata after the heal")
	qi = waitQueueAgreed(t, nodes, queue, true, 20*time.Second, "after healing "+cut.name)
	t.Logf("healed %s: the three agree after %v: %s leads, %d messages", cut.name, time.Since(healed).Round(time.Millisecond), qi.Leader, qi.Messages)

	// Cut a follower that the majority publisher is not on; a publisher
	// on the leader keeps being confirmed.
	leader := byName(nodes, qi.Leader)
	var follower *clusterNode
	for _, cn := range nodes {
		if cn != leader && cn != onMajority {
			follower = cn
		}
	}
	leaderConfirms, stopLeader := startPublisher(t, n, "leader", leader, queue, rec, problems)
	n.Cut(follower.i)
	cutAt = time.Now()
	for time.Since(cutAt) < 6*time.Second { // beyond the 3 s after which the follower is down
		for _, cn := range without(nodes, follower.name) {
			if qi, err := cn.queue(queue); err != nil || qi.Leader != leader.name {
				t.Fatalf("%s cut: %s reports leader %q (%v) after %v, want %s", follower.name, cn.name, qi.Leader, err,
					time.Since(cutAt).Round(time.Millisecond), leader.name)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	k, _ := leaderConfirms.since(cutAt)
	gap := leaderConfirms.maxGap(cutAt, time.Now())
	t.Logf("follower %s cut for 6s: %s kept leading; its publisher got %d confirms, the longest gap %v", follower.name, leader.name, k, gap.Round(time.Millisecond))
	if k == 0 || gap > 2*time.Second {
		t.Errorf("with the follower %s cut, the leader %s's publisher got %d confirms, the longest gap %v", follower.name, leader.name, k, gap)
	}
	n.Heal(follower.i)
	healed = time.Now()
	stopLeader()
	stopMajority()
	mc.Close()
	waitAgree(t, nodes, 15*time.Second, "the metadata after healing the follower")
	qi = waitQueueAgreed(t, nodes, queue, true, 20*time.Second, "after healing the follower "+follower.name)
	t.Logf("healed %s: the three agree after %v: %s leads, %d messages", follower.name, time.Since(healed).Round(time.Millisecond), qi.Leader, qi.Messages)

	// Every confirmed message is consumed, from the node cut first.
	stopConsumer := make(chan struct{})
	consumerDone := make(chan struct{})
	go func() {
		defer close(consumerDone)
		consumeLoop("drain", amqpAddrs(n, []*clusterNode{cut}), 0, queue, rec, stopConsumer)
	}()
	// One consumer (prefetch 50, a round trip every 25 acks) drains
	// 100k-200k messages here at a few thousand a second: each credit
	// and ack is a commit, fsynced on two nodes.
	drainStart := time.Now()
	waitDelivered(t, rec, 120*time.Second, nodes, queue)
	t.Logf("drained from %s in %v", cut.name, time.Since(drainStart).Round(time.Millisecond))
	close(stopConsumer)
	<-consumerDone
	problems.report(t)
	checkHistory(t, rec)
}

// nsName is the namespace cn runs in.
func (cn *clusterNode) nsName(n *netnstest.Net) string { return n.Node(cn.i).Namespace }

// TestClusterQuorumConsumeAsLeaderDies proves that a basic.consume on a
// follower at the moment the quorum queue's leader is killed (the
// follower still takes the dead node for the leader, so its proposal is
// forwarded there and lost rather than refused) still makes a consumer:
// once another node leads, messages published to the queue reach it.
// QUORUM_REPEAT (default 3) repeats the kill and the consume.
func TestClusterQuorumConsumeAsLeaderDies(t *testing.T) {
	n := netnstest.New(t, 3)
	nodes := startClusterNodes(t, n)
	const queue = "qq-consume"
	quorumQueue(t, n, nodes, queue)
	for round := range knob("QUORUM_REPEAT", 3) {
		qi := waitQueueAgreed(t, nodes, queue, true, 30*time.Second, fmt.Sprintf("round %d: before the kill", round+1))
		dead := byName(nodes, qi.Leader)
		rest := without(nodes, dead.name)
		cc, cch := channelOn(t, rest[0].amqpURL(n, "guest", "guest", "/"))
		if err := cch.Qos(10, 0, false); err != nil {
			t.Fatal(err)
		}
		dead.kill()
		ds, err := cch.Consume(queue, "", false, false, false, false, nil)
		if err != nil {
			t.Fatalf("round %d: basic.consume on %s as the leader %s died: %v", round+1, rest[0].name, dead.name, err)
		}
		next, took := queueLeader(t, rest, queue, dead.name, 10*time.Second)
		t.Logf("round %d: consumed on %s as the leader %s died; %s leads after %v", round+1, rest[0].name, dead.name, next, took.Round(time.Millisecond))

		pc, pch := channelOn(t, rest[1].amqpURL(n, "guest", "guest", "/"))
		if err := pch.Confirm(false); err != nil {
			t.Fatal(err)
		}
		body := fmt.Sprintf("round-%d", round+1)
		for try := 0; ; try++ {
			dc, err := pch.PublishWithDeferredConfirm("", queue, false, false, amqp091.Publishing{DeliveryMode: amqp091.Persistent, Body: []byte(body)})
			if err != nil {
				t.Fatal(err)
			}
			if dc.Wait() {
				break
			}
			if try == 5 {
				t.Fatalf("round %d: %s nacked %d publishes in a row", round+1, rest[1].name, try+1)
			}
		}
		pc.Close()
		select {
		case d := <-ds:
			if string(d.Body) != body {
				t.Fatalf("round %d: got %q, want %q", round+1, d.Body, body)
			}
			if err := d.Ack(false); err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			logQueue(t, rest, queue)
			t.Fatalf("round %d: the consumer on %s, made as the leader %s died (consume-ok received), got nothing within 10s of a confirmed publish",
				round+1, rest[0].name, dead.name)
		}
		if err := cch.Close(); err != nil {
			t.Fatalf("round %d: closing the consumer's channel: %v", round+1, err)
		}
		cc.Close()
		dead.start(t, n)
		waitAgree(t, nodes, 15*time.Second, fmt.Sprintf("round %d: the metadata after restarting %s", round+1, dead.name))
	}
}

// confirmRate is how many confirms per second cc got in [from, to].
func (cc *confirmCounter) confirmRate(from, to time.Time) float64 {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	k := 0
	for _, at := range cc.times {
		if !at.Before(from) && at.Before(to) {
			k++
		}
	}
	return float64(k) / to.Sub(from).Seconds()
}

// TestClusterQuorumNetemDelay proves that a quorum queue whose leader's
// link is slowed by tc netem (delay 50ms on what it sends) goes on
// confirming, more slowly (each commit waits for a follower across the
// delay), and loses nothing: every confirmed message is consumed once
// the delay is cleared. It skips where the kernel has no netem.
func TestClusterQuorumNetemDelay(t *testing.T) {
	n := netnstest.New(t, 3)
	n.RequireNetem()
	const queue = "qq-netem"
	nodes, leader, _ := slowCluster(t, n, queue)
	const span = 4 * time.Second
	slowLoad(t, n, nodes, queue, leader, func(confirms *confirmCounter) {
		base := loadFor(confirms, "no netem", span)
		n.Netem(leader.i, "delay", "50ms")
		slow := loadFor(confirms, "delay 50ms on the leader "+leader.name+"'s link", span)
		n.NetemClear(leader.i)
		checkSlowed(t, base, slow, true)
	})
}

// TestClusterQuorumRollingRestart restarts the three nodes one after the
// other (SIGTERM, then start, waiting for it to rejoin the queue and the
// metadata before the next) while three publishers with confirms and
// two acking consumers, each going round the nodes, use a quorum queue.
// A stopping node hands its leaderships over, so the cluster as a whole
// never stops confirming for longer than an election would take (1 to
// 2 s); the history checker then finds every confirmed message
// delivered, no acked message back, and no unflagged redelivery.
func TestClusterQuorumRollingRestart(t *testing.T) {
	backlogConfirmed.Store(0)
	backlogDelivered.Store(0)
	paceBacklog.Store(20000)
	defer paceBacklog.Store(0)
	n := netnstest.New(t, 3)
	nodes := startClusterNodes(t, n)
	addrs := amqpAddrs(n, nodes)
	const queue = "qq-rolling"
	quorumQueue(t, n, nodes, queue)

	cc := &confirmCounter{} // the three publishers' confirms
	qc := startQuorumClients(addrs, queue, []func(time.Time){cc.confirmed, cc.confirmed, cc.confirmed})
	rec := qc.rec
	defer qc.stop()

	waitProgress(t, rec, nodes, queue, "before the first restart")
	began := time.Now()
	for _, cn := range nodes {
		leader, _ := queueLeader(t, nodes, queue, "", 10*time.Second)
		start := time.Now()
		cn.stop(t)
		stoppedIn := time.Since(start)
		cn.start(t, n)
		waitQueueAgreed(t, nodes, queue, false, 30*time.Second, "after restarting "+cn.name)
		waitAgree(t, nodes, 15*time.Second, "the metadata after restarting "+cn.name)
		waitProgress(t, rec, nodes, queue, "after restarting "+cn.name)
		t.Logf("%s (the queue's leader was %s) stopped in %v, rejoined %v after its stop began", cn.name, leader,
			stoppedIn.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	}
	ended := time.Now()
	gap := cc.maxGap(began, ended)

	time.Sleep(time.Second)
	r := qc.drain(t, nodes, queue)
	t.Logf("rolling restart in %v: the longest time without a confirm %v; confirmed %d, lost %d, duplicates %d (%d after an ack in flight)",
		ended.Sub(began).Round(time.Millisecond), gap.Round(time.Millisecond), r.Confirmed, r.Lost.Count, r.Duplicates, r.AfterInFlightAck)
	if gap > 3*time.Second {
		t.Errorf("no confirm for %v during the rolling restart: longer than an election", gap)
	}
}
