package tlsconf_test

import (
	"crypto/tls"
	"os"
	"strings"
	"testing"

	"github.com/amqp-go/amqp-go/server/tlsconf"
	"github.com/amqp-go/amqp-go/server/tlsconf/tlstest"
)

func TestNewAndReload(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, dir, "test")
	first := ca.Server("server")
	s := tlsconf.Settings{CertFile: first.CertFile, KeyFile: first.KeyFile, CAFile: ca.CAFile, VerifyPeer: true,
		MinVersion: "1.3"}
	srv, err := tlsconf.New(s)
	if err != nil {
		t.Fatal(err)
	}
	cfg := srv.Config()
	if cfg.MinVersion != tls.VersionTLS13 || cfg.ClientAuth != tls.VerifyClientCertIfGiven || cfg.ClientCAs == nil {
		t.Errorf("config %+v", cfg)
	}
	cert := func() string {
		c, err := cfg.GetCertificate(&tls.ClientHelloInfo{})
		if err != nil {
			t.Fatal(err)
		}
		return c.Leaf.Subject.CommonName
	}
	if cert() != "server" {
		t.Fatalf("serving %q", cert())
	}
	// A renewed pair over the same files is served after Reload.
	renewed := ca.Server("renewed")
	for _, p := range [][2]string{{renewed.CertFile, first.CertFile}, {renewed.KeyFile, first.KeyFile}} {
		if err := os.Rename(p[0], p[1]); err != nil {
			t.Fatal(err)
		}
	}
	if cert() != "server" {
		t.Error("changed before Reload")
	}
	if err := srv.Reload(); err != nil || cert() != "renewed" {
		t.Errorf("after Reload: %q, %v", cert(), err)
	}
	// The CA bundle is reloaded too: handshakes verify against the new one.
	current := func() *tls.Config {
		c, err := cfg.GetConfigForClient(&tls.ClientHelloInfo{})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if !current().ClientCAs.Equal(ca.Pool()) || current().ClientAuth != tls.VerifyClientCertIfGiven {
		t.Error("handshakes do not verify against the CA file")
	}
	newCA := tlstest.NewCA(t, t.TempDir(), "new")
	pem, err := os.ReadFile(newCA.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ca.CAFile, pem, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := srv.Reload(); err != nil || !current().ClientCAs.Equal(newCA.Pool()) {
		t.Errorf("after Reload the handshakes' CAs are not the new file's (%v)", err)
	}
	if c, err := current().GetCertificate(&tls.ClientHelloInfo{}); err != nil || c.Leaf.Subject.CommonName != "renewed" {
		t.Errorf("the handshakes' configuration serves %v, %v", c, err)
	}
	// A CA file that does not load: the error, and nothing changes.
	if err := os.WriteFile(ca.CAFile, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := srv.Reload(); err == nil || !current().ClientCAs.Equal(newCA.Pool()) {
		t.Errorf("a bad CA file: %v", err)
	}
	if err := os.WriteFile(ca.CAFile, pem, 0o600); err != nil {
		t.Fatal(err)
	}

	// A key that is not the certificate's: the error, and the old pair stays.
	other := ca.Server("other")
	if err := os.Rename(other.KeyFile, first.KeyFile); err != nil {
		t.Fatal(err)
	}
	if err := srv.Reload(); err == nil || cert() != "renewed" {
		t.Errorf("bad pair: %q, %v", cert(), err)
	}

	s.FailIfNoPeerCert = true
	again := ca.Server("again")
	s.CertFile, s.KeyFile = again.CertFile, again.KeyFile
	if srv, err := tlsconf.New(s); err != nil || srv.Config().ClientAuth != tls.RequireAndVerifyClientCert {
		t.Errorf("fail if no peer cert: %v", err)
	}
}

func TestSettingErrors(t *testing.T) {
	if _, err := tlsconf.ParseCiphers("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_AES_128_GCM_SHA256"); err == nil ||
		err.Error() != `unknown cipher suite "TLS_AES_128_GCM_SHA256"` {
		t.Errorf("a TLS 1.3 suite: %v", err)
	}
	if ids, err := tlsconf.ParseCiphers(""); err != nil || ids != nil {
		t.Errorf("empty: %v %v", ids, err)
	}
	if _, err := tlsconf.ParseVersion("1.1"); err == nil {
		t.Error("TLS 1.1 accepted")
	}
	for _, n := range tlsconf.CipherNames() {
		if strings.Contains(n, "RC4") || strings.Contains(n, "3DES") {
			t.Errorf("insecure suite offered: %s", n)
		}
	}
	if _, err := tlsconf.New(tlsconf.Settings{KeyFile: "k.pem"}); err == nil {
		t.Error("a key without a certificate")
	}
	if _, err := tlsconf.New(tlsconf.Settings{CertFile: "c.pem"}); err == nil {
		t.Error("a certificate without a key")
	}
}
