package cli_test

import (
	"crypto/tls"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/amqp-go/amqp-go/server/tlsconf/tlstest"
	amqp "github.com/rabbitmq/amqp091-go"
)

// tlsFixture is a CA, a server certificate for 127.0.0.1 and client
// certificates, generated for the test.
type tlsFixture struct {
	dir    string
	ca     *tlstest.CA
	server *tlstest.Issued
	guest  *tlstest.Issued // CN=guest, O=Example, C=GB
	other  *tlstest.Issued // CN=other
}

func newTLSFixture(t *testing.T) *tlsFixture {
	t.Helper()
	dir := t.TempDir()
	ca := tlstest.NewCA(t, dir, "test")
	return &tlsFixture{dir: dir, ca: ca, server: ca.Server("server"),
		guest: ca.Client("guest", pkix.Name{CommonName: "guest", Organization: []string{"Example"}, Country: []string{"GB"}}),
		other: ca.Client("other", pkix.Name{CommonName: "other"})}
}

// env turns TLS on with the fixture's files, on tlsPort.
func (f *tlsFixture) env(tlsPort int, extra ...string) []string {
	return append([]string{"AMQP_SECURITY_TLSCERTFILE=" + f.server.CertFile, "AMQP_SECURITY_TLSKEYFILE=" + f.server.KeyFile,
		"AMQP_SECURITY_TLSCAFILE=" + f.ca.CAFile, "AMQP_NETWORK_TLSPORT=" + strconv.Itoa(tlsPort)}, extra...)
}

// servedCN is the common name of the certificate the TLS listener at
// addr serves to a new handshake.
func (f *tlsFixture) servedCN(t *testing.T, addr string) string {
	t.Helper()
	nc, err := tls.Dial("tcp", addr, f.clientTLS(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	return nc.ConnectionState().PeerCertificates[0].Subject.CommonName
}

// renewServer writes a renewed server certificate (CN server-renewed)
// over the server's files, for a SIGHUP to load.
func (f *tlsFixture) renewServer(t *testing.T) {
	t.Helper()
	f.ca.Server("server-renewed")
	for _, ext := range []string{".pem", "-key.pem"} {
		if err := os.Rename(filepath.Join(f.dir, "server-renewed"+ext), filepath.Join(f.dir, "server"+ext)); err != nil {
			t.Fatal(err)
		}
	}
}

func (f *tlsFixture) clientTLS(cert *tlstest.Issued) *tls.Config {
	c := &tls.Config{RootCAs: f.ca.Pool(), ServerName: "127.0.0.1"}
	if cert != nil {
		c.Certificates = []tls.Certificate{cert.TLS}
	}
	return c
}

// roundTripConn publishes with a confirm on c and gets the message back.
func roundTripConn(t *testing.T, c *amqp.Connection) {
	t.Helper()
	ch, err := c.Channel()
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.Publish("", q.Name, false, false, amqp.Publishing{Body: []byte("over TLS")}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the message back", func() bool {
		m, ok, err := ch.Get(q.Name, true)
		if err != nil {
			t.Fatal(err)
		}
		return ok && string(m.Body) == "over TLS"
	})
}

func dialTLS(t *testing.T, url string, cfg *tls.Config, sasl ...amqp.Authentication) *amqp.Connection {
	t.Helper()
	c, err := amqp.DialConfig(url, amqp.Config{TLSClientConfig: cfg, SASL: sasl})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TLS beside plain AMQP on the built binary: amqp091-go's DialTLS with
// PLAIN, mTLS with EXTERNAL by the common name, and the DN RabbitMQ would
// take in distinguished_name mode.
func TestTLSListener(t *testing.T) {
	f := newTLSFixture(t)
	tlsPort := freePort(t)
	p := start(t, nil, f.env(tlsPort, "AMQP_SECURITY_TLSVERIFYPEER=true", "AMQP_SECURITY_CERTLOGINFROM=common_name")...)
	tlsURL := fmt.Sprintf("amqps://guest:guest@127.0.0.1:%d/", tlsPort)

	c, err := amqp.DialTLS(tlsURL, f.clientTLS(nil))
	if err != nil {
		t.Fatal(err)
	}
	roundTripConn(t, c)
	c.Close()
	roundTrip(t, p.url) // plain still listens

	// mTLS: EXTERNAL as the certificate's CN, guest (over loopback).
	c = dialTLS(t, fmt.Sprintf("amqps://127.0.0.1:%d/", tlsPort), f.clientTLS(f.guest), &amqp.ExternalAuth{})
	roundTripConn(t, c)
	c.Close()
	if !strings.Contains(p.stderr.String(), `msg="connection opened" peer=127.0.0.1:`) {
		t.Errorf("no connection line:\n%s", p.stderr)
	}
	// A CN no user has is refused.
	_, err = amqp.DialConfig(fmt.Sprintf("amqps://127.0.0.1:%d/", tlsPort),
		amqp.Config{TLSClientConfig: f.clientTLS(f.other), SASL: []amqp.Authentication{&amqp.ExternalAuth{}}})
	var ae *amqp.Error
	if !errors.As(err, &ae) || ae.Code != amqp.AccessRefused {
		t.Errorf("EXTERNAL as 'other': %v, want 403", err)
	}
	eventually(t, "the refusal logged", func() bool {
		return strings.Contains(p.stderr.String(), `user=other mechanism=EXTERNAL reason="user 'other' - invalid credentials"`)
	})
	if code := p.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("exit %d\n%s", code, p.stderr)
	}

	// distinguished_name (the default): the user is the subject DN in
	// RabbitMQ's format, here a user without a password from a
	// definitions file (so it may log in only by EXTERNAL).
	defs := filepath.Join(f.dir, "defs.json")
	dn := "CN=guest,O=Example,C=GB"
	if err := os.WriteFile(defs, []byte(`{"users": [{"name": "`+dn+`", "password_hash": "", "tags": []}],
		"vhosts": [{"name": "/"}],
		"permissions": [{"user": "`+dn+`", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	tlsPort = freePort(t)
	p = start(t, nil, f.env(tlsPort, "AMQP_SECURITY_TLSVERIFYPEER=true", "AMQP_SECURITY_DEFINITIONSFILE="+defs)...)
	c = dialTLS(t, fmt.Sprintf("amqps://127.0.0.1:%d/", tlsPort), f.clientTLS(f.guest), &amqp.ExternalAuth{})
	roundTripConn(t, c)
	c.Close()
	if !strings.Contains(p.stderr.String(), `msg="connection opened" peer=127.0.0.1:`) || !strings.Contains(p.stderr.String(), `user="`+dn+`"`) {
		t.Errorf("no connection line for %s:\n%s", dn, p.stderr)
	}
	// The same certificate's CN is no user here (guest was not made:
	// the definitions file seeds the users), and PLAIN cannot log in as
	// the DN, which has no password.
	_, err = amqp.DialConfig(fmt.Sprintf("amqps://127.0.0.1:%d/", tlsPort),
		amqp.Config{TLSClientConfig: f.clientTLS(f.other), SASL: []amqp.Authentication{&amqp.ExternalAuth{}}})
	if !errors.As(err, &ae) || ae.Code != amqp.AccessRefused {
		t.Errorf("EXTERNAL as CN=other: %v, want 403", err)
	}
	_, err = amqp.DialConfig(fmt.Sprintf("amqps://127.0.0.1:%d/", tlsPort),
		amqp.Config{TLSClientConfig: f.clientTLS(nil), SASL: []amqp.Authentication{&amqp.PlainAuth{Username: dn, Password: ""}}})
	if !errors.As(err, &ae) || ae.Code != amqp.AccessRefused {
		t.Errorf("PLAIN as the DN without a password: %v, want 403", err)
	}
}

// tlsfailifnopeercert: a client without a certificate fails the TLS
// handshake, which is logged at info; one with a certificate gets in; a
// new CA bundle is taken on SIGHUP.
func TestTLSFailIfNoPeerCert(t *testing.T) {
	f := newTLSFixture(t)
	tlsPort := freePort(t)
	p := start(t, nil, f.env(tlsPort, "AMQP_SECURITY_TLSFAILIFNOPEERCERT=true")...)
	url := fmt.Sprintf("amqps://guest:guest@127.0.0.1:%d/", tlsPort)
	if c, err := amqp.DialTLS(url, f.clientTLS(nil)); err == nil {
		c.Close()
		t.Fatal("a client without a certificate got in")
	}
	eventually(t, "the handshake failure logged", func() bool {
		return strings.Contains(p.stderr.String(), `level=INFO msg="TLS handshake failed"`) &&
			strings.Contains(p.stderr.String(), "certificate")
	})
	old := dialTLS(t, url, f.clientTLS(f.other))
	roundTripConn(t, old)

	// A new CA bundle, taken on SIGHUP: its clients get in, the old
	// connection goes on.
	newCA := tlstest.NewCA(t, t.TempDir(), "new")
	client := newCA.Client("client", pkix.Name{CommonName: "client"})
	withNew := &tls.Config{RootCAs: f.ca.Pool(), ServerName: "127.0.0.1", Certificates: []tls.Certificate{client.TLS}}
	if c, err := amqp.DialTLS(url, withNew); err == nil {
		c.Close()
		t.Fatal("a certificate of a CA not in the bundle got in")
	}
	pem, err := os.ReadFile(newCA.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.ca.CAFile, pem, 0o600); err != nil {
		t.Fatal(err)
	}
	p.cmd.Process.Signal(syscall.SIGHUP)
	eventually(t, "the reload logged", func() bool { return strings.Contains(p.stderr.String(), `msg="TLS certificate reloaded"`) })
	roundTripConn(t, dialTLS(t, url, withNew))
	roundTripConn(t, old)
}

// TLS only: network.plain false leaves the plain port closed.
func TestTLSOnly(t *testing.T) {
	f := newTLSFixture(t)
	tlsPort, plainPort := freePort(t), freePort(t)
	// start waits for its port: the TLS one here.
	p := startIn(t, t.TempDir(), tlsPort, nil, f.env(tlsPort, "AMQP_NETWORK_PORT="+strconv.Itoa(plainPort), "AMQP_NETWORK_PLAIN=false")...)
	if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", plainPort), time.Second); err == nil {
		c.Close()
		t.Fatalf("the plain port %d accepts connections\n%s", plainPort, p.stderr)
	}
	roundTripConn(t, dialTLS(t, fmt.Sprintf("amqps://guest:guest@127.0.0.1:%d/", tlsPort), f.clientTLS(nil)))
	if n := strings.Count(p.stderr.String(), `msg=listening`); n != 1 {
		t.Errorf("%d listeners logged, want 1\n%s", n, p.stderr)
	}
}

// SIGHUP reloads the certificate: a new connection gets the new one, an
// open connection goes on, and a bad file keeps the one in use.
func TestTLSReloadOnSIGHUP(t *testing.T) {
	f := newTLSFixture(t)
	tlsPort := freePort(t)
	p := start(t, nil, f.env(tlsPort)...)
	addr := fmt.Sprintf("127.0.0.1:%d", tlsPort)
	url := "amqps://guest:guest@" + addr + "/"
	served := func() string { return f.servedCN(t, addr) }
	if cn := served(); cn != "server" {
		t.Fatalf("served %q", cn)
	}
	old := dialTLS(t, url, f.clientTLS(nil))
	roundTripConn(t, old)

	f.renewServer(t)
	p.cmd.Process.Signal(syscall.SIGHUP)
	eventually(t, "the reload logged", func() bool {
		return strings.Contains(p.stderr.String(), `msg="TLS certificate reloaded" section=security subject="CN=server-renewed"`)
	})
	if cn := served(); cn != "server-renewed" {
		t.Errorf("after SIGHUP a new connection got %q", cn)
	}
	roundTripConn(t, old) // the open connection kept its session

	// A bad certificate file: logged, and the renewed one stays.
	if err := os.WriteFile(f.server.CertFile, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	p.cmd.Process.Signal(syscall.SIGHUP)
	eventually(t, "the failed reload logged", func() bool {
		return strings.Contains(p.stderr.String(), `msg="reloading the TLS certificate; the old one stays in use" section=security`)
	})
	if cn := served(); cn != "server-renewed" {
		t.Errorf("after a bad reload a new connection got %q", cn)
	}
	roundTripConn(t, old)
	roundTripConn(t, dialTLS(t, url, f.clientTLS(nil)))
}

// Telemetry over HTTPS with the telemetry.tls* keys, client certificates
// required; pprof only when telemetry.pprof asks for it.
func TestTelemetryTLS(t *testing.T) {
	f := newTLSFixture(t)
	tport := freePort(t)
	p := start(t, []string{"--enable-telemetry", "--telemetry-port", strconv.Itoa(tport)},
		"AMQP_TELEMETRY_TLSCERTFILE="+f.server.CertFile, "AMQP_TELEMETRY_TLSKEYFILE="+f.server.KeyFile,
		"AMQP_TELEMETRY_TLSCAFILE="+f.ca.CAFile, "AMQP_TELEMETRY_TLSFAILIFNOPEERCERT=true")
	// Without a client certificate the handshake fails.
	noCert := &http.Client{Transport: &http.Transport{TLSClientConfig: f.clientTLS(nil)}, Timeout: 10 * time.Second}
	if resp, err := noCert.Get(fmt.Sprintf("https://127.0.0.1:%d/health", tport)); err == nil {
		resp.Body.Close()
		t.Error("telemetry served a client without a certificate")
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: f.clientTLS(f.other)}, Timeout: 10 * time.Second}
	get := func(path string) (int, string) {
		resp, err := hc.Get(fmt.Sprintf("https://127.0.0.1:%d%s", tport, path))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/health"); code != 200 || !strings.Contains(body, `"status":"ok"`) {
		t.Errorf("health over HTTPS: %d %s", code, body)
	}
	if code, _ := get("/debug/pprof/"); code != 404 {
		t.Errorf("pprof served without telemetry.pprof: %d", code)
	}
	if resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/health", tport)); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Error("plain HTTP served beside HTTPS")
		}
	}
	if strings.Contains(p.stderr.String(), "non-loopback") {
		t.Errorf("a loopback endpoint warned:\n%s", p.stderr)
	}
}

// pika (Debian's python3-pika, as scripts/clients uses) over TLS with an
// SSL context: PLAIN without a client certificate, and EXTERNAL with one.
func TestTLSPika(t *testing.T) {
	python := pikaPython(t)
	f := newTLSFixture(t)
	tlsPort := freePort(t)
	start(t, nil, f.env(tlsPort, "AMQP_SECURITY_TLSVERIFYPEER=true", "AMQP_SECURITY_CERTLOGINFROM=common_name")...)
	for _, mode := range []string{"plain", "external"} {
		cmd := exec.Command(python, "testdata/pika_tls.py", mode, strconv.Itoa(tlsPort), f.ca.CAFile, f.guest.CertFile, f.guest.KeyFile)
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "ok") {
			t.Errorf("pika %s: %v\n%s", mode, err, out)
		}
	}
}

// pikaPython finds a python3 on PATH that imports pika (Debian's modules
// are for Debian's python3, which need not be the first on PATH), or
// skips the test.
func pikaPython(t *testing.T) string {
	t.Helper()
	for _, dir := range filepath.SplitList(os.Getenv("PATH")) {
		p := filepath.Join(dir, "python3")
		if _, err := os.Stat(p); err != nil {
			continue
		}
		if exec.Command(p, "-c", "import pika").Run() == nil {
			return p
		}
	}
	t.Skip("no python3 with pika (apt-get install python3-pika)")
	return ""
}

// The README's TLS example starts the server, its certificate paths and
// ports pointed at what the test makes; PLAIN and EXTERNAL (by CN) log in.
func TestReadmeTLS(t *testing.T) {
	f := newTLSFixture(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "amqp-server.yaml")
	if err := os.WriteFile(cfg, []byte(readmeBlock(t, "<!-- example: tls -->")), 0o644); err != nil {
		t.Fatal(err)
	}
	tlsPort := freePort(t)
	p := startIn(t, dir, freePort(t), []string{"run", "--config", cfg}, f.env(tlsPort)...)
	roundTrip(t, p.url)
	url := fmt.Sprintf("amqps://guest:guest@127.0.0.1:%d/", tlsPort)
	roundTripConn(t, dialTLS(t, url, f.clientTLS(nil)))
	c, err := amqp.DialTLS_ExternalAuth(fmt.Sprintf("amqps://127.0.0.1:%d/", tlsPort), f.clientTLS(f.guest))
	if err != nil {
		t.Fatal(err)
	}
	roundTripConn(t, c)
	c.Close()
}

// Start-up errors of TLS name the key: an unknown cipher suite in the
// environment, and a TLS port already taken.
func TestTLSStartupErrors(t *testing.T) {
	f := newTLSFixture(t)
	dir := t.TempDir()
	cmd := exec.Command(binary, "run")
	cmd.Env = baseEnv(dir, freePort(t), f.env(freePort(t), "AMQP_SECURITY_TLSCIPHERS=TLS_RSA_WITH_RC4_128_SHA")...)
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.HasPrefix(string(out), `amqp-server: AMQP_SECURITY_TLSCIPHERS: security.tlsciphers: unknown cipher suite "TLS_RSA_WITH_RC4_128_SHA": "TLS_RSA_WITH_RC4_128_SHA" (allowed: a comma-separated list of TLS_ECDHE_`) {
		t.Errorf("unknown suite: %v %q", err, out)
	}

	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	port := taken.Addr().(*net.TCPAddr).Port
	cmd = exec.Command(binary, "run")
	cmd.Env = baseEnv(dir, freePort(t), f.env(port)...)
	out, err = cmd.CombinedOutput()
	if want := fmt.Sprintf("network.tlsport %d: TLS listener: listen tcp 127.0.0.1:%d: bind: address already in use", port, port); err == nil ||
		!strings.Contains(string(out), want) {
		t.Errorf("TLS port taken: %v %q, want %q", err, out, want)
	}
}
