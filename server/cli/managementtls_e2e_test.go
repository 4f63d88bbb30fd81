package cli_test

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// managementAddr waits for the management line in p's log and returns
// the address it names, checking whether it says tls=true.
func managementAddr(t *testing.T, p *proc, wantTLS bool) string {
	t.Helper()
	var addr string
	eventually(t, "the management line", func() bool {
		m := managementLine.FindStringSubmatch(p.stderr.String())
		if m != nil {
			addr = m[1]
		}
		return m != nil
	})
	if line := fmt.Sprintf(`msg="management listening" address=%s tls=%v`, addr, wantTLS); !strings.Contains(p.stderr.String(), line) {
		t.Fatalf("no %q in the log:\n%s", line, p.stderr)
	}
	return addr
}

// The management API over HTTPS with the management.tls* keys (the same
// keys, and checks, as security's and telemetry's): Go's HTTPS client and
// Debian's rabbitmqadmin --ssl list what the API has, plain HTTP gets no
// answer, and with tlsfailifnopeercert a client without a certificate is
// refused at the handshake while one with a certificate is served.
func TestManagementTLS(t *testing.T) {
	f := newTLSFixture(t)
	p := start(t, []string{"run"}, "AMQP_MANAGEMENT_TLSCERTFILE="+f.server.CertFile,
		"AMQP_MANAGEMENT_TLSKEYFILE="+f.server.KeyFile, "AMQP_MANAGEMENT_TLSCAFILE="+f.ca.CAFile)
	addr := managementAddr(t, p, true)
	get := func(c *http.Client, scheme, path string) (int, string, error) {
		req, err := http.NewRequest("GET", scheme+"://"+addr+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.SetBasicAuth("guest", "guest")
		resp, err := c.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), nil
	}
	overview := func(c *http.Client, scheme string) (int, string, error) { return get(c, scheme, "/api/overview") }
	client := func(cfg *tls.Config) *http.Client {
		return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 10 * time.Second}
	}
	code, body, err := overview(client(f.clientTLS(nil)), "https")
	var ov struct {
		Listeners []struct{ Port int } `json:"listeners"`
	}
	if err != nil || code != 200 || json.Unmarshal([]byte(body), &ov) != nil || len(ov.Listeners) != 1 || ov.Listeners[0].Port != p.port {
		t.Fatalf("GET /api/overview over HTTPS: %d %v %s", code, err, body)
	}
	// The API's own listener is https to the health check, as RabbitMQ's.
	if code, body, err := get(client(f.clientTLS(nil)), "https", "/api/health/checks/protocol-listener/https"); err != nil || code != 200 {
		t.Errorf("protocol-listener/https over HTTPS: %d %v %s", code, err, body)
	}
	if code, body, err := overview(client(f.clientTLS(nil)), "http"); err == nil && code != 400 {
		t.Errorf("plain HTTP to the HTTPS port: %d %s", code, body)
	}
	if admin, err := exec.LookPath("rabbitmqadmin"); err == nil {
		host, port, _ := strings.Cut(addr, ":")
		out, err := exec.Command(admin, "-H", host, "-P", port, "--ssl", "--ssl-ca-cert-file", f.ca.CAFile,
			"-u", "guest", "-p", "guest", "-f", "tsv", "-q", "list", "vhosts", "name").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "/" {
			t.Errorf("rabbitmqadmin --ssl list vhosts: %v %q", err, out)
		}
	} else {
		t.Log("no rabbitmqadmin (Debian's rabbitmq-server package): only Go's client checked")
	}
	// amqp-server ctl reaches it with the CA (--cacert, or rabbitmqadmin's
	// name for it) or with --insecure; with the system's roots it does not.
	base := "https://" + addr
	ctl(t, base, "status").fails(t, "ctl with the system's roots", 69, "certificate signed by unknown authority")
	for _, flag := range []string{"--cacert", "--ssl-ca-cert-file"} {
		if out := ctl(t, base, flag, f.ca.CAFile, "list", "vhosts").ok(t, "ctl "+flag); !strings.Contains(out, "/") {
			t.Errorf("ctl %s list vhosts: %q", flag, out)
		}
	}
	if out := ctl(t, base, "--insecure", "list", "users").ok(t, "ctl --insecure"); !strings.Contains(out, "guest") {
		t.Errorf("ctl --insecure list users: %q", out)
	}
	ctl(t, base, "--cacert", f.server.KeyFile, "status").fails(t, "ctl --cacert of a key", 64, "--cacert "+f.server.KeyFile+": no PEM certificate in it")
	ctl(t, base, "--cacert", f.ca.CAFile, "--cert", f.other.CertFile, "status").fails(t, "ctl --cert without --key", 64, "--cert and --key go together")
	// SIGHUP reloads the certificate, as for AMQPS.
	if cn := f.servedCN(t, addr); cn != "server" {
		t.Fatalf("served %q", cn)
	}
	f.renewServer(t)
	p.cmd.Process.Signal(syscall.SIGHUP)
	eventually(t, "the reload logged", func() bool {
		return strings.Contains(p.stderr.String(), `msg="TLS certificate reloaded" section=management subject="CN=server-renewed"`)
	})
	if cn := f.servedCN(t, addr); cn != "server-renewed" {
		t.Errorf("after SIGHUP the API served %q", cn)
	}
	if code := p.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("exit %d\n%s", code, p.stderr)
	}

	p = start(t, []string{"run"}, "AMQP_MANAGEMENT_TLSCERTFILE="+f.server.CertFile,
		"AMQP_MANAGEMENT_TLSKEYFILE="+f.server.KeyFile, "AMQP_MANAGEMENT_TLSCAFILE="+f.ca.CAFile,
		"AMQP_MANAGEMENT_TLSFAILIFNOPEERCERT=true")
	addr = managementAddr(t, p, true)
	if code, _, err := overview(client(f.clientTLS(nil)), "https"); err == nil {
		t.Errorf("served a client without a certificate: %d", code)
	}
	if code, body, err := overview(client(f.clientTLS(f.other)), "https"); err != nil || code != 200 {
		t.Errorf("with a client certificate: %d %v %s", code, err, body)
	}
	if admin, err := exec.LookPath("rabbitmqadmin"); err == nil {
		host, port, _ := strings.Cut(addr, ":")
		out, err := exec.Command(admin, "-H", host, "-P", port, "--ssl", "--ssl-ca-cert-file", f.ca.CAFile,
			"--ssl-cert-file", f.other.CertFile, "--ssl-key-file", f.other.KeyFile,
			"-u", "guest", "-p", "guest", "-f", "tsv", "-q", "list", "users", "name").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "guest" {
			t.Errorf("rabbitmqadmin --ssl with a client certificate, list users: %v %q", err, out)
		}
	}
	base = "https://" + addr
	ctl(t, base, "--cacert", f.ca.CAFile, "status").fails(t, "ctl without a client certificate", 69, "cannot reach the management API")
	if out := ctl(t, base, "--cacert", f.ca.CAFile, "--cert", f.other.CertFile, "--key", f.other.KeyFile, "list", "users").ok(t,
		"ctl with a client certificate"); !strings.Contains(out, "guest") {
		t.Errorf("ctl with a client certificate, list users: %q", out)
	}
}

// A management.tls* key that needs a certificate, without one, stops
// start-up naming the key, as security's and telemetry's do.
func TestManagementTLSConfigError(t *testing.T) {
	cmd := exec.Command(binary, "run")
	cmd.Env = baseEnv(t.TempDir(), freePort(t), "AMQP_MANAGEMENT_TLSVERIFYPEER=true")
	out, err := cmd.CombinedOutput()
	want := "amqp-server: AMQP_MANAGEMENT_TLSVERIFYPEER: management.tlsverifypeer: needs management.tlscertfile and management.tlskeyfile"
	if err == nil || !strings.HasPrefix(string(out), want) {
		t.Errorf("got %v %q, want %q", err, out, want)
	}
}
