package cli_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
)

var managementLine = regexp.MustCompile(`msg="management listening" address=(\S+)`)

// managementCall sends method path (under /api) to the server's
// management API as guest and returns the status and body.
func managementCall(t *testing.T, addr, method, path, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+addr+"/api"+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("guest", "guest")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// amqp-server run serves the management API by default (here on a free
// port, as baseEnv sets for every test), reports the AMQP listener in
// the overview, shows a queue declared over AMQP, declares one through
// the API, and closes the API on SIGTERM.
func TestManagementE2E(t *testing.T) {
	p := start(t, []string{"run"})
	addr := managementAddr(t, p, false)
	st, b := managementCall(t, addr, "GET", "/overview", "")
	var ov struct {
		RabbitMQVersion string `json:"rabbitmq_version"`
		Listeners       []struct {
			Protocol string `json:"protocol"`
			Port     int    `json:"port"`
		} `json:"listeners"`
	}
	if err := json.Unmarshal(b, &ov); st != 200 || err != nil || ov.RabbitMQVersion == "" ||
		len(ov.Listeners) != 1 || ov.Listeners[0].Port != p.port || ov.Listeners[0].Protocol != "amqp" {
		t.Fatalf("overview: %d %s %v", st, b, err)
	}
	ch, err := dial(t, p.url).Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("from-amqp", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if st, b := managementCall(t, addr, "GET", "/queues/%2F/from-amqp", ""); st != 200 || !strings.Contains(string(b), `"durable":true`) {
		t.Fatalf("queue: %d %s", st, b)
	}
	if st, b := managementCall(t, addr, "PUT", "/queues/%2F/from-http", `{"durable":true}`); st != 201 {
		t.Fatalf("PUT: %d %s", st, b)
	}
	if q, err := ch.QueueDeclarePassive("from-http", true, false, false, false, nil); err != nil || q.Name != "from-http" {
		t.Fatalf("passive declare of the API's queue: %v", err)
	}
	if code := p.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("exit %d\n%s", code, p.stderr)
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Error("management still listening after exit")
	}
}

// management.enabled false serves no API; a management port in use stops
// start-up with an error naming it.
func TestManagementConfigE2E(t *testing.T) {
	p := start(t, []string{"run"}, "AMQP_MANAGEMENT_ENABLED=false")
	if managementLine.MatchString(p.stderr.String()) {
		t.Errorf("management served with management.enabled false:\n%s", p.stderr)
	}
	p.stop(syscall.SIGTERM)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	busy := ln.Addr().(*net.TCPAddr).Port
	dir := t.TempDir()
	cmd := exec.Command(binary, "run")
	cmd.Dir = dir
	cmd.Env = baseEnv(dir, freePort(t), fmt.Sprintf("AMQP_MANAGEMENT_PORT=%d", busy))
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), fmt.Sprintf("management 127.0.0.1:%d", busy)) {
		t.Fatalf("start with the management port in use: %v\n%s", err, out)
	}
}
