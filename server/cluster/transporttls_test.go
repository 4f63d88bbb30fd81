package cluster

import (
	"crypto/tls"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/amqp-go/amqp-go/server/tlsconf"
	"github.com/amqp-go/amqp-go/server/tlsconf/tlstest"
)

// peerTLS is the inter-node TLS of a node with certificate is.
func peerTLS(t *testing.T, is *tlstest.Issued, ca *tlstest.CA) *tlsconf.Server {
	t.Helper()
	ts, err := tlsconf.New(tlsconf.Settings{CertFile: is.CertFile, KeyFile: is.KeyFile, CAFile: ca.CAFile,
		VerifyPeer: true, FailIfNoPeerCert: true, MinVersion: "1.3"})
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

// TestTCPOverTLS: three nodes whose links run over mutual TLS elect a
// leader and replicate; a node that speaks plain TCP, one whose
// certificate another CA signed and one without a certificate are
// refused at the TLS handshake, each with a log line, and the cluster is
// unharmed.
func TestTCPOverTLS(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, dir, "cluster")
	c := newTCPClusterTLS(t, 3, func(id uint64) *tlsconf.Server { return peerTLS(t, ca.Peer(fmt.Sprintf("node%d", id)), ca) })
	tc := c.asTestCluster()
	tc.leader(1)
	c.waitConnected()
	tc.propose(1, 1, "over TLS")
	tc.converge(1, []string{"over TLS"})

	tn := c.nodes[3]
	t.Run("plain TCP", func(t *testing.T) {
		conn := dialRaw(t, tn.addr, 1, 3, "test")
		waitClosed(t, conn)
		waitLog(t, tn.logs, "TLS handshake")
	})
	other := tlstest.NewCA(t, dir, "other")
	for _, tc := range []struct {
		name  string
		certs []tls.Certificate
	}{
		{"another CA's certificate", []tls.Certificate{other.Peer("stranger").TLS}},
		{"no certificate", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := tn.logs.String()
			raw, err := net.Dial("tcp", tn.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			conn := tls.Client(raw, &tls.Config{Certificates: tc.certs, RootCAs: ca.Pool(), ServerName: "127.0.0.1", MinVersion: tls.VersionTLS13})
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			// At TLS 1.3 the client's handshake ends before the server
			// has checked its certificate: the refusal shows on the
			// first read.
			if err := conn.Handshake(); err == nil {
				if err := writeHello(conn, helloMagic, helloVersion, 1, 3, "test"); err == nil {
					if _, err := conn.Read(make([]byte, 1)); err == nil {
						t.Fatal("the node answered a peer it cannot have verified")
					}
				}
			}
			deadline := time.Now().Add(5 * time.Second)
			for len(tn.logs.String()) == len(before) || !tn.logs.Contains("TLS handshake") {
				if time.Now().After(deadline) {
					t.Fatalf("no refusal logged; log:\n%s", tn.logs)
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	// Unharmed.
	tc.propose(1, 1, "after")
	tc.converge(1, []string{"over TLS", "after"})
}
