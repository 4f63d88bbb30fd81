package broker_test

import (
	"crypto/tls"
	"crypto/x509/pkix"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/amqp-go/amqp-go/server/broker"
	"github.com/amqp-go/amqp-go/server/servertest"
	"github.com/amqp-go/amqp-go/server/tlsconf"
	"github.com/amqp-go/amqp-go/server/tlsconf/tlstest"
	wire "github.com/amqp-go/amqp-go/shared/amqp"
	amqp "github.com/rabbitmq/amqp091-go"
)

// logBuffer collects a server's log lines for the tests to read.
type logBuffer = servertest.LogBuffer

// tlsBroker starts an in-process broker with a plain and a TLS listener.
func tlsBroker(t *testing.T, s tlsconf.Settings, loginFrom string, users map[string]string) (plain, tlsAddr string, logs *logBuffer) {
	t.Helper()
	srv, logs := tlsServer(t, s, loginFrom, users)
	return srv.Addr().String(), srv.TLSAddr().String(), logs
}

// tlsServer is tlsBroker returning the server.
func tlsServer(t *testing.T, s tlsconf.Settings, loginFrom string, users map[string]string) (*broker.Server, *logBuffer) {
	t.Helper()
	ts, err := tlsconf.New(s)
	if err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	srv := broker.New(broker.Config{Address: "127.0.0.1:0", TLSAddress: "127.0.0.1:0", TLS: func(nc net.Conn) broker.TLSConn { return ts.Serve(nc) },
		CertLoginFrom: loginFrom, Users: users, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve() }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return srv, logs
}

// A TLS publisher held by a resource alarm that hangs up is torn down at
// once, as a plain one is (the hang-up is watched on the TCP socket under
// the TLS one).
func TestTLSPublisherGoneDuringAlarm(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, dir, "test")
	srvCert := ca.Server("server")
	srv, _ := tlsServer(t, tlsconf.Settings{CertFile: srvCert.CertFile, KeyFile: srvCert.KeyFile}, "", nil)
	var sock net.Conn // the TCP socket under the client's TLS
	c, err := amqp.DialConfig("amqps://guest:guest@"+srv.TLSAddr().String()+"/", amqp.Config{
		TLSClientConfig: &tls.Config{RootCAs: ca.Pool()},
		Dial: func(network, addr string) (net.Conn, error) {
			nc, err := net.Dial(network, addr)
			sock = nc
			return nc, err
		}})
	if err != nil {
		t.Fatal(err)
	}
	ch, err := c.Channel()
	if err != nil {
		t.Fatal(err)
	}
	srv.SetAlarm("low on memory", true)
	for range 3 {
		if err := ch.Publish("", "none", false, false, amqp.Publishing{Body: []byte("held")}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "one connection", func() bool { return srv.Stats().Connections == 1 })
	sock.Close() // a connection.close would not be read while held
	waitFor(t, "the connection gone while the alarm is raised", func() bool { return srv.Stats().Connections == 0 })
	srv.SetAlarm("", false)
}

func dialExternal(addr string, ca *tlstest.CA, cert *tlstest.Issued) (*amqp.Connection, error) {
	cfg := &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{cert.TLS}
	}
	return amqp.DialConfig("amqps://"+addr+"/", amqp.Config{SASL: []amqp.Authentication{&amqp.ExternalAuth{}}, TLSClientConfig: cfg})
}

// EXTERNAL over TLS with a verified certificate: the DN or the CN names a
// user that must exist; it is offered only when a certificate was verified.
func TestExternalLogin(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, dir, "test")
	srvCert := ca.Server("server")
	withDN := ca.Client("dn", pkix.Name{CommonName: "dn-user", Organization: []string{"Example"}, Country: []string{"GB"}})
	withCN := ca.Client("cn", pkix.Name{CommonName: "cn-user", Organization: []string{"Example"}})
	stranger := ca.Client("stranger", pkix.Name{CommonName: "nobody"})
	noCN := ca.Client("nocn", pkix.Name{Organization: []string{"Example"}})
	otherCA := tlstest.NewCA(t, dir, "other")
	foreign := otherCA.Client("foreign", pkix.Name{CommonName: "cn-user"})
	settings := tlsconf.Settings{CertFile: srvCert.CertFile, KeyFile: srvCert.KeyFile, CAFile: ca.CAFile, VerifyPeer: true}
	users := map[string]string{"guest": "guest", "CN=dn-user,O=Example,C=GB": "", "cn-user": "", "pw": "secret"}

	t.Run("distinguished_name", func(t *testing.T) {
		_, addr, logs := tlsBroker(t, settings, broker.CertLoginDN, users)
		c, err := dialExternal(addr, ca, withDN)
		if err != nil {
			t.Fatal(err)
		}
		roundTripConn(t, c)
		c.Close()
		// The CN alone is not the user in DN mode.
		wantRefused(t, addr, ca, withCN)
		if !strings.Contains(logs.String(), `reason="user 'CN=cn-user,O=Example' - invalid credentials"`) {
			t.Errorf("log lacks the refusal's reason:\n%s", logs)
		}
	})
	t.Run("common_name", func(t *testing.T) {
		_, addr, logs := tlsBroker(t, settings, broker.CertLoginCN, users)
		c, err := dialExternal(addr, ca, withCN)
		if err != nil {
			t.Fatal(err)
		}
		roundTripConn(t, c)
		c.Close()
		wantRefused(t, addr, ca, stranger)
		if want := `reason="user 'nobody' - invalid credentials"`; !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %s:\n%s", want, logs)
		}
		// A new server: refusals are logged at most once a second.
		_, addr, logs = tlsBroker(t, settings, broker.CertLoginCN, users)
		wantRefused(t, addr, ca, noCN)
		if want := `reason="no name found"`; !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %s:\n%s", want, logs)
		}
	})
	t.Run("not offered", func(t *testing.T) {
		plain, addr, _ := tlsBroker(t, settings, broker.CertLoginCN, users)
		// TLS without a client certificate, and plain AMQP: no EXTERNAL,
		// so the client finds no mechanism it shares with the server.
		if _, err := dialExternal(addr, ca, nil); !errors.Is(err, amqp.ErrSASL) {
			t.Errorf("TLS without a certificate: %v, want %v", err, amqp.ErrSASL)
		}
		// A client that picks it all the same is told as RabbitMQ tells it.
		mechs, m := rawExternal(t, addr, ca, nil)
		if cl, ok := m.(*wire.ConnectionClose); mechs != "PLAIN AMQPLAIN" || !ok || cl.ReplyCode != 503 ||
			cl.ReplyText != "COMMAND_INVALID - invalid authentication mechanism 'EXTERNAL'" {
			t.Errorf("mechanisms %q; got %s %+v", mechs, m.MethodName(), m)
		}
		if _, err := amqp.DialConfig("amqp://"+plain+"/", amqp.Config{SASL: []amqp.Authentication{&amqp.ExternalAuth{}}}); !errors.Is(err, amqp.ErrSASL) {
			t.Errorf("plain: %v, want %v", err, amqp.ErrSASL)
		}
		// PLAIN still works over TLS and beside it.
		c, err := amqp.DialTLS("amqps://pw:secret@"+addr+"/", &tls.Config{RootCAs: ca.Pool()})
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		c = openConn(t, "amqp://guest:guest@"+plain+"/")
		c.Close()
	})
	t.Run("certificate of another CA", func(t *testing.T) {
		_, addr, logs := tlsBroker(t, settings, broker.CertLoginCN, users)
		// Sent even though the server asks for its own CA's (Go's client
		// would send none then).
		cfg := &tls.Config{RootCAs: ca.Pool(), GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &foreign.TLS, nil
		}}
		if _, err := amqp.DialConfig("amqps://"+addr+"/", amqp.Config{SASL: []amqp.Authentication{&amqp.ExternalAuth{}}, TLSClientConfig: cfg}); err == nil {
			t.Fatal("a certificate of another CA was accepted")
		}
		waitFor(t, "the TLS handshake failure logged\n"+logs.String(), func() bool { return strings.Contains(logs.String(), "TLS handshake failed") })
	})
	t.Run("fail if no peer cert", func(t *testing.T) {
		s := settings
		s.FailIfNoPeerCert = true
		_, addr, _ := tlsBroker(t, s, broker.CertLoginCN, users)
		if _, err := amqp.DialTLS("amqps://pw:secret@"+addr+"/", &tls.Config{RootCAs: ca.Pool()}); err == nil {
			t.Fatal("a client without a certificate was let in")
		}
		c, err := dialExternal(addr, ca, withCN)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	})
}

// waitFor polls f until it holds, for at most 10 seconds.
func waitFor(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// rawExternal opens a TLS connection with cert (nil: none) and starts an
// EXTERNAL login, asking for authentication_failure_close; it returns
// connection.start's mechanisms and the server's answer to start-ok.
func rawExternal(t *testing.T, addr string, ca *tlstest.CA, cert *tlstest.Issued) (mechanisms string, answer wire.Method) {
	t.Helper()
	cfg := &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{cert.TLS}
	}
	nc, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	r := &servertest.RawConn{T: t, NC: nc, FR: wire.NewFrameReader(nc, 1<<20)}
	r.Write(wire.ProtocolHeader)
	_, m := r.ReadMethod()
	start, ok := m.(*wire.ConnectionStart)
	if !ok {
		t.Fatalf("want connection.start, got %s", m.MethodName())
	}
	r.Send(0, &wire.ConnectionStartOk{ClientProperties: wire.Table{"capabilities": wire.Table{"authentication_failure_close": true}},
		Mechanism: "EXTERNAL", Locale: "en_US"})
	_, m = r.ReadMethod()
	return start.Mechanisms, m
}

// wantRefused checks an EXTERNAL login's refusal, as RabbitMQ words it
// with authentication_failure_close.
func wantRefused(t *testing.T, addr string, ca *tlstest.CA, cert *tlstest.Issued) {
	t.Helper()
	mechs, m := rawExternal(t, addr, ca, cert)
	if mechs != "PLAIN AMQPLAIN EXTERNAL" {
		t.Errorf("mechanisms %q", mechs)
	}
	cl, ok := m.(*wire.ConnectionClose)
	if !ok || cl.ReplyCode != 403 ||
		cl.ReplyText != "ACCESS_REFUSED - Login was refused using authentication mechanism EXTERNAL. For details see the broker logfile." {
		t.Errorf("got %s %+v, want 403 ACCESS_REFUSED", m.MethodName(), m)
	}
}

// roundTripConn publishes a message to a fresh queue and gets it back.
func roundTripConn(t *testing.T, c *amqp.Connection) {
	t.Helper()
	ch, err := c.Channel()
	if err != nil {
		t.Fatal(err)
	}
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.Publish("", q.Name, false, false, amqp.Publishing{Body: []byte("over TLS")}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the message back", func() bool {
		m, ok, err := ch.Get(q.Name, true)
		if err != nil {
			t.Fatal(err)
		}
		return ok && string(m.Body) == "over TLS"
	})
}
