package broker

import (
	"slices"
	"strings"
	"testing"

	"github.com/amqp-go/amqp-go/server/security"
)

// TestReplicaSnapshotRestore: a server restored from another's snapshot
// of the replicated parts has its security state (a user and a vhost
// made, its own extra user gone), its replicated exchanges and the
// bindings between them; its auto-delete exchange, which does not
// replicate, and its queues stay; an exchange and a binding it had that
// the snapshot has not are removed, and an inequivalent exchange is made
// again as the snapshot has it.
func TestReplicaSnapshotRestore(t *testing.T) {
	a, ca := startDurable(t, Config{})
	b, cb := startDurable(t, Config{})
	cha, err := ca.Channel()
	must(t, err)
	must(t, cha.ExchangeDeclare("x.src", "topic", true, false, false, false, nil))
	must(t, cha.ExchangeDeclare("x.dst", "fanout", true, false, false, false, nil))
	must(t, cha.ExchangeDeclare("x.other", "direct", false, false, false, false, nil))
	must(t, cha.ExchangeBind("x.dst", "k.#", "x.src", false, nil))
	must(t, cha.ExchangeBind("x.dst", "", "amq.fanout", false, nil))
	must(t, a.sec.AddUser("alice", "pw"))
	must(t, a.sec.PutVHost(security.VHost{Name: "v2"}))

	chb, err := cb.Channel()
	must(t, err)
	must(t, chb.ExchangeDeclare("x.src", "direct", true, false, false, false, nil)) // inequivalent
	must(t, chb.ExchangeDeclare("x.gone", "fanout", true, false, false, false, nil))
	must(t, chb.ExchangeDeclare("x.local", "fanout", false, true, false, false, nil)) // auto-delete
	must(t, chb.ExchangeBind("x.local", "", "amq.direct", false, nil))
	must(t, chb.ExchangeBind("x.gone", "", "amq.topic", false, nil))
	q, err := chb.QueueDeclare("q.local", true, false, false, false, nil)
	must(t, err)
	must(t, b.sec.AddUser("bob", "pw"))

	for _, kind := range []byte{ReplicaSecurity, ReplicaExchanges} { // in kind order, as the cluster restores
		snap, err := a.Replicas()[kind].Snapshot()
		must(t, err)
		must(t, b.Replicas()[kind].Restore(snap))
	}
	if _, ok := b.sec.Authenticate("alice", "pw"); !ok {
		t.Error("alice not restored")
	}
	if _, ok := b.sec.User("bob"); ok {
		t.Error("bob, not in the snapshot, is still there")
	}
	if b.VHost("v2") == nil {
		t.Error("vhost v2 not restored")
	}
	got := definitionsOf(t, b.VHost("/"))
	for _, want := range []string{
		`x "x.src" topic durable=true ad=false internal=false`,
		`x "x.dst" fanout durable=true ad=false internal=false`,
		`x "x.other" direct durable=false ad=false internal=false`,
		`x "x.local" fanout durable=false ad=true internal=false`,
		`b "x.src" -> x "x.dst" key "k.#"`,
		`b "amq.fanout" -> x "x.dst" key ""`,
		`b "amq.direct" -> x "x.local" key ""`,
		`q "` + q.Name + `" durable=true`,
	} {
		if !slices.ContainsFunc(got, func(s string) bool { return strings.HasPrefix(s, want) }) {
			t.Errorf("missing %s in\n%v", want, got)
		}
	}
	for _, s := range got {
		if strings.HasPrefix(s, `x "x.gone"`) || strings.HasPrefix(s, `b "amq.topic" -> x "x.gone"`) {
			t.Errorf("%s, not in the snapshot, is still there", s)
		}
	}
}
