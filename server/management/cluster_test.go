package management_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/amqp-go/amqp-go/server/broker"
	"github.com/amqp-go/amqp-go/server/cluster"
	"github.com/amqp-go/amqp-go/server/config"
	"github.com/amqp-go/amqp-go/server/management"
	"github.com/amqp-go/amqp-go/server/servertest"
)

// TestClusterNodes runs the API over a real cluster.Service whose one
// other member never comes up: /api/nodes lists both members, the other
// not running, and /api/cluster-status has no leader (one of two is no
// majority). A single node answers /api/cluster-status with 404.
func TestClusterNodes(t *testing.T) {
	if r := startAPI(t).do("guest", "guest", http.MethodGet, "/cluster-status", ""); r.status != http.StatusNotFound {
		t.Errorf("single node: /cluster-status answered %d %s", r.status, r.body)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone, err := net.Listen("tcp", "127.0.0.1:0") // closed: nothing listens there
	if err != nil {
		t.Fatal(err)
	}
	gone.Close()
	self := cluster.Peer{ID: 1, Name: "amqp1", Address: ln.Addr().String()}
	other := cluster.Peer{ID: 2, Name: "amqp2", Address: gone.Addr().String()}
	cl, err := cluster.Open(cluster.ServiceConfig{Cluster: "c1", Self: self, Members: []cluster.Peer{self, other}, Listener: ln,
		Dir: t.TempDir(), NoSync: true, TickInterval: 10 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	srv, _ := servertest.StartServer(t, broker.Config{})
	svc, err := management.Serve("127.0.0.1:0", management.New(management.Options{Server: srv, Node: "amqp1", ClusterName: "c1", Cluster: cl.Status}))
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close(5 * time.Second)
	a := &api{t: t, srv: srv, base: "http://" + svc.Addr().String() + "/api"}

	nodes := a.guest(http.MethodGet, "/nodes", "").list(t)
	if len(nodes) != 2 {
		t.Fatalf("nodes %v", nodes)
	}
	first, second := nodes[0].(map[string]any), nodes[1].(map[string]any)
	if first["name"] != "amqp1" || first["running"] != true || first["os_pid"] == nil {
		t.Errorf("this node: %v", first)
	}
	if second["name"] != "amqp2" || second["running"] != false || second["type"] != "disc" {
		t.Errorf("the other member: %v", second)
	}
	if n := a.guest(http.MethodGet, "/nodes/amqp2", "").obj(t); n["running"] != false {
		t.Errorf("/nodes/amqp2: %v", n)
	}
	st := a.guest(http.MethodGet, "/cluster-status", "").obj(t)
	md, _ := st["metadata"].(map[string]any)
	if st["cluster_name"] != "c1" || st["node"] != "amqp1" || len(st["members"].([]any)) != 2 || md["leader"] != "" || md["group"] != float64(1) {
		t.Errorf("cluster status %v", st)
	}
}

// nodeIDMembership is the API's Membership on a Service, with ids from
// names as amqp-server run derives them.
type nodeIDMembership struct{ *cluster.Service }

func (m nodeIDMembership) AddMember(ctx context.Context, name, address string) error {
	return m.Service.AddMember(ctx, cluster.Peer{ID: config.NodeID(name), Name: name, Address: address})
}

// TestClusterMembersAPI: /api/cluster-members on a real one-member
// cluster.Service: a single node answers 404; a body without a name is
// 400; adding the member that exists and removing the last one are 409;
// an unknown name is 404; a second member is added (one of one is a
// majority) and listed by /api/cluster-status.
func TestClusterMembersAPI(t *testing.T) {
	if r := startAPI(t).do("guest", "guest", http.MethodPost, "/cluster-members", `{"name":"b","address":"127.0.0.1:1"}`); r.status != http.StatusNotFound {
		t.Errorf("single node: POST /cluster-members answered %d %s", r.status, r.body)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	self := cluster.Peer{ID: config.NodeID("amqp1"), Name: "amqp1", Address: ln.Addr().String()}
	cl, err := cluster.Open(cluster.ServiceConfig{Cluster: "c1", Self: self, Members: []cluster.Peer{self}, Listener: ln,
		Dir: t.TempDir(), NoSync: true, TickInterval: 10 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	srv, _ := servertest.StartServer(t, broker.Config{})
	svc, err := management.Serve("127.0.0.1:0", management.New(management.Options{Server: srv, Node: "amqp1", ClusterName: "c1",
		Cluster: cl.Status, Membership: nodeIDMembership{cl}}))
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close(5 * time.Second)
	a := &api{t: t, srv: srv, base: "http://" + svc.Addr().String() + "/api"}
	deadline := time.Now().Add(5 * time.Second)
	for a.guest(http.MethodGet, "/cluster-status", "").obj(t)["metadata"].(map[string]any)["leader"] != "amqp1" {
		if time.Now().After(deadline) {
			t.Fatal("amqp1 did not lead its one-member cluster in 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, c := range []struct {
		method, path, body string
		status             int
	}{
		{http.MethodPost, "/cluster-members", `{"address":"127.0.0.1:1"}`, http.StatusBadRequest},
		{http.MethodGet, "/cluster-members", "", http.StatusMethodNotAllowed},
		{http.MethodPost, "/cluster-members", `{"name":"amqp1","address":"127.0.0.1:1"}`, http.StatusConflict},
		{http.MethodDelete, "/cluster-members/nope", "", http.StatusNotFound},
		{http.MethodDelete, "/cluster-members/amqp1", "", http.StatusConflict},
		{http.MethodPost, "/cluster-members", `{"name":"amqp2","address":"127.0.0.1:1"}`, http.StatusNoContent},
	} {
		if r := a.guest(c.method, c.path, c.body); r.status != c.status {
			t.Errorf("%s %s %s: %d %s, want %d", c.method, c.path, c.body, r.status, r.body, c.status)
		}
	}
	if ms := a.guest(http.MethodGet, "/cluster-status", "").obj(t)["members"].([]any); len(ms) != 2 {
		t.Errorf("members after adding amqp2: %v", ms)
	}
}
