package broker_test

import (
	"crypto/tls"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/amqp-go/amqp-go/server/broker"
	"github.com/amqp-go/amqp-go/server/tlsconf"
	"github.com/amqp-go/amqp-go/server/tlsconf/tlstest"
	amqp "github.com/rabbitmq/amqp091-go"
)

// TestExternalDNRabbitMQ checks tlstest.DNCases against RabbitMQ: it starts a node
// with scripts/rabbitmq-peer on EXTERNAL_RABBITMQ_PORT (its TLS listener
// on the next port) trusting a CA made here, creates each case's expected
// DN as a user with rabbitmqctl, and logs in by EXTERNAL with a
// certificate of that subject: a login means RabbitMQ derived the same
// name. Then, restarted with ssl_cert_login_from = common_name, the same
// for a subject of two CNs, and ours takes the same name. Skipped unless
// EXTERNAL_RABBITMQ_PORT is set; the node is stopped at the end.
func TestExternalDNRabbitMQ(t *testing.T) {
	port, _ := strconv.Atoi(os.Getenv("EXTERNAL_RABBITMQ_PORT"))
	if port == 0 {
		t.Skip("EXTERNAL_RABBITMQ_PORT is not set")
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil { // RabbitMQ reads the files
		t.Fatal(err)
	}
	ca := tlstest.NewCA(t, dir, "test")
	srv := ca.Server("server")
	for _, f := range []string{ca.CAFile, srv.CertFile, srv.KeyFile} {
		if err := os.Chmod(f, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tlsPort := port + 1
	script := filepath.Join("..", "..", "scripts", "rabbitmq-peer")
	loginFrom := "distinguished_name"
	peer := func(args ...string) (string, error) {
		cmd := exec.Command("bash", append([]string{script}, args...)...)
		cmd.Env = append(os.Environ(), "PLUGINS=rabbitmq_auth_mechanism_ssl", "CONF="+strings.Join([]string{
			"ssl_cert_login_from = " + loginFrom,
			"listeners.ssl.1 = 127.0.0.1:" + strconv.Itoa(tlsPort),
			"ssl_options.cacertfile = " + ca.CAFile,
			"ssl_options.certfile = " + srv.CertFile,
			"ssl_options.keyfile = " + srv.KeyFile,
			"ssl_options.verify = verify_peer",
			"ssl_options.fail_if_no_peer_cert = false",
			"auth_mechanisms.1 = PLAIN",
			"auth_mechanisms.2 = AMQPLAIN",
			"auth_mechanisms.3 = EXTERNAL",
		}, "\n"))
		// A file, not a pipe: the node and epmd that the script leaves
		// running would hold a pipe open, and Wait with it.
		out, err := os.CreateTemp(dir, "peer-*.log")
		if err != nil {
			t.Fatal(err)
		}
		defer out.Close()
		cmd.Stdout, cmd.Stderr = out, out
		err = cmd.Run()
		b, _ := os.ReadFile(out.Name())
		return string(b), err
	}
	if out, err := peer("start", strconv.Itoa(port)); err != nil {
		t.Fatalf("starting RabbitMQ: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := peer("stop", strconv.Itoa(port)); err != nil {
			t.Errorf("stopping RabbitMQ: %v\n%s", err, out)
		}
	})
	for i, tc := range tlstest.DNCases {
		raw, err := asn1.Marshal(tc.Subject)
		if err != nil {
			t.Fatal(err)
		}
		cert := ca.ClientRawSubject(fmt.Sprintf("client%d", i), raw)
		if out, err := peer("ctl", strconv.Itoa(port), "add_user", tc.DN, "unused-password"); err != nil {
			t.Fatalf("%s: add_user %q: %v\n%s", tc.Name, tc.DN, err, out)
		}
		if out, err := peer("ctl", strconv.Itoa(port), "set_permissions", "-p", "/", tc.DN, ".*", ".*", ".*"); err != nil {
			t.Fatalf("%s: set_permissions: %v\n%s", tc.Name, err, out)
		}
		c, err := amqp.DialConfig(fmt.Sprintf("amqps://127.0.0.1:%d/", tlsPort), amqp.Config{
			SASL:            []amqp.Authentication{&amqp.ExternalAuth{}},
			TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1", Certificates: []tls.Certificate{cert.TLS}}})
		if err != nil {
			t.Errorf("%s: RabbitMQ refused EXTERNAL as %q: %v (its log names the user it derived)", tc.Name, tc.DN, err)
			continue
		}
		c.Close()
	}
	// The control: a subject that names no user is refused (so a login
	// above did check the name), in the words our server uses.
	raw, _ := asn1.Marshal(tlstest.DNCases[0].Subject[:1])
	wantRefused(t, fmt.Sprintf("127.0.0.1:%d", tlsPort), ca, ca.ClientRawSubject("control", raw))

	// common_name: the CNs in encoded order, joined by "," and not
	// escaped.
	if out, err := peer("stop", strconv.Itoa(port)); err != nil {
		t.Fatalf("stopping RabbitMQ: %v\n%s", err, out)
	}
	loginFrom = "common_name"
	if out, err := peer("start", strconv.Itoa(port)); err != nil {
		t.Fatalf("starting RabbitMQ: %v\n%s", err, out)
	}
	raw, _ = asn1.Marshal(pkix.RDNSequence{{tlstest.ATV(tlstest.OIDO, "Org")}, {tlstest.ATV(tlstest.OIDCN, "first")}, {tlstest.ATV(tlstest.OIDOU, "u"), tlstest.ATV(tlstest.OIDCN, `x,y+z "q"`)}})
	name := `first,x,y+z "q"`
	for _, args := range [][]string{{"add_user", name, "unused-password"}, {"set_permissions", "-p", "/", name, ".*", ".*", ".*"}} {
		if out, err := peer(append([]string{"ctl", strconv.Itoa(port)}, args...)...); err != nil {
			t.Fatalf("%s: %v\n%s", args[0], err, out)
		}
	}
	cert := ca.ClientRawSubject("cns", raw)
	c, err := amqp.DialConfig(fmt.Sprintf("amqps://127.0.0.1:%d/", tlsPort), amqp.Config{
		SASL:            []amqp.Authentication{&amqp.ExternalAuth{}},
		TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1", Certificates: []tls.Certificate{cert.TLS}}})
	if err != nil {
		t.Fatalf("RabbitMQ refused EXTERNAL by CN as %q: %v", name, err)
	}
	c.Close()
	// And ours takes the same name from the same certificate.
	srvTLS := tlsconf.Settings{CertFile: srv.CertFile, KeyFile: srv.KeyFile, CAFile: ca.CAFile, VerifyPeer: true}
	_, ours, _ := tlsBroker(t, srvTLS, broker.CertLoginCN, map[string]string{name: ""})
	c, err = dialExternal(ours, ca, cert)
	if err != nil {
		t.Fatalf("ours refused EXTERNAL by CN as %q: %v", name, err)
	}
	c.Close()
}
