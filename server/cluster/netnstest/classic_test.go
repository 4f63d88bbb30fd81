package netnstest_test

import (
	"fmt"
	"math/rand"
	"testing"
	"time"

	"github.com/amqp-go/amqp-go/server/cluster/netnstest"
)

// The home node of a classic queue is killed with kill -9 again and
// again (CLASSIC_KILLS, default 3) while three confirming publishers and
// two acking consumers use the queue through the two other nodes only.
// While it is down their publishes are nacked and their consumers
// cancelled; after each restart they go on. At the end every confirmed
// message has been delivered, in order per publisher but for
// redeliveries (flagged), and no message whose ack a round trip made
// certain came back (history checker).
func TestClusterClassicHomeKill9(t *testing.T) {
	kills := knob("CLASSIC_KILLS", 3)
	limitBacklog(t)
	rng := rand.New(rand.NewSource(testSeed(t)))
	n := netnstest.New(t, 3)
	nodes := startClusterNodes(t, n)
	waitAgree(t, nodes, 15*time.Second, "formation")
	home := nodes[2]
	const queue = "cq-kill"
	c, ch := channelOn(t, home.amqpURL(n, "guest", "guest", "/"))
	if _, err := ch.QueueDeclare(queue, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	c.Close()
	for _, cn := range nodes[:2] {
		deadline := time.Now().Add(15 * time.Second)
		for {
			qi, err := cn.queue(queue)
			if err == nil {
				t.Logf("%s lists %s: %+v", cn.name, queue, qi)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s does not list %s: %v", cn.name, queue, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	qc := startQuorumClients(amqpAddrs(n, nodes[:2]), queue, nil)
	defer qc.stop()
	rec := qc.rec
	for k := range kills {
		time.Sleep(time.Duration(1000+rng.Intn(1500)) * time.Millisecond)
		confirmedBefore := rec.Check().Confirmed
		home.kill()
		killed := time.Now()
		time.Sleep(time.Duration(300+rng.Intn(700)) * time.Millisecond)
		home.start(t, n)
		waitAgree(t, nodes, 15*time.Second, fmt.Sprintf("kill %d: the metadata after restarting %s", k+1, home.name))
		waitProgress(t, rec, nodes, queue, fmt.Sprintf("kill %d: after %s restarted", k+1, home.name))
		t.Logf("kill %d: killed %s, the home node, at %s; the clients went on %v after the kill; %d confirmed before it",
			k+1, home.name, killed.Format("15:04:05.000"), time.Since(killed).Round(time.Millisecond), confirmedBefore)
	}
	time.Sleep(time.Second)
	close(qc.stopPublishers)
	qc.publishers.Wait()
	waitDelivered(t, rec, 60*time.Second, nodes, queue)
	close(qc.stopConsumers)
	qc.consumers.Wait()
	qc.stopped = true
	qc.problems.report(t)
	r := checkHistory(t, rec)
	if d := r.Duplicates - r.AfterInFlightAck; d > 0 {
		t.Logf("%d duplicates of messages never acked before their redelivery", d)
	}
}
