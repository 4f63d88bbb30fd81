package config

import (
	"crypto/x509/pkix"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/amqp-go/amqp-go/server/tlsconf/tlstest"
)

// needsTLS reports whether k can be set only with TLS on (the all-keys
// tests leave these to TestTLSKeys).
func needsTLS(k Key) bool {
	return strings.HasPrefix(k.Name, "tls") || k.Path() == "network.plain" || k.Path() == "security.certloginfrom" ||
		k.Section == "security" && k.NotYet
}

func tlsKeys() int {
	n := 0
	for _, k := range Keys() {
		if needsTLS(k) {
			n++
		}
	}
	return n
}

func TestTLSKeys(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, dir, "test")
	srv := ca.Server("server")
	env := []string{"AMQP_SECURITY_TLSCERTFILE=" + srv.CertFile, "AMQP_SECURITY_TLSKEYFILE=" + srv.KeyFile,
		"AMQP_SECURITY_TLSCAFILE=" + ca.CAFile, "AMQP_SECURITY_TLSVERIFYPEER=true", "AMQP_SECURITY_TLSFAILIFNOPEERCERT=true",
		"AMQP_SECURITY_TLSMINVERSION=1.2", "AMQP_SECURITY_TLSCIPHERS=TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
		"AMQP_SECURITY_CERTLOGINFROM=common_name",
		"AMQP_TELEMETRY_TLSCERTFILE=" + srv.CertFile, "AMQP_TELEMETRY_TLSKEYFILE=" + srv.KeyFile, "AMQP_TELEMETRY_TLSMINVERSION=1.3",
		"AMQP_TELEMETRY_PPROF=true"}
	c, err := Load("", env)
	if err != nil {
		t.Fatal(err)
	}
	s := c.AMQPTLS()
	if s.CertFile != srv.CertFile || s.KeyFile != srv.KeyFile || s.CAFile != ca.CAFile || !s.VerifyPeer || !s.FailIfNoPeerCert ||
		s.MinVersion != "1.2" || c.Security.CertLoginFrom != "common_name" {
		t.Errorf("security TLS settings %+v", s)
	}
	if tt := c.TelemetryTLS(); tt.CertFile != srv.CertFile || tt.MinVersion != "1.3" || !c.Telemetry.Pprof {
		t.Errorf("telemetry TLS settings %+v", tt)
	}
	// TLS on with the plain listener's defaults: both listen, TLS on 5671.
	if !c.Network.Plain || c.Network.TLSPort != 5671 || c.TLSListenAddress() != ":5671" || c.ListenAddress() != ":5672" {
		t.Errorf("plain %v tlsport %d (%s)", c.Network.Plain, c.Network.TLSPort, c.TLSListenAddress())
	}
	for _, tc := range []struct {
		name      string
		extra     []string
		plain     bool
		tlsListen string
	}{
		{"tlsport alone is TLS only", []string{"AMQP_NETWORK_TLSPORT=6671"}, false, ":6671"},
		{"tlsport and port", []string{"AMQP_NETWORK_TLSPORT=6671", "AMQP_NETWORK_PORT=6672"}, true, ":6671"},
		{"tlsport and plain", []string{"AMQP_NETWORK_TLSPORT=6671", "AMQP_NETWORK_PLAIN=true"}, true, ":6671"},
		{"plain false", []string{"AMQP_NETWORK_PLAIN=false", "AMQP_NETWORK_ADDRESS=127.0.0.1:5672"}, false, "127.0.0.1:5671"},
	} {
		c, err := Load("", append(env[:2:2], tc.extra...))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if c.Network.Plain != tc.plain || c.TLSListenAddress() != tc.tlsListen {
			t.Errorf("%s: plain %v (want %v), TLS on %s (want %s)", tc.name, c.Network.Plain, tc.plain, c.TLSListenAddress(), tc.tlsListen)
		}
	}
	// Without TLS nothing changes.
	if c, err := Load("", nil); err != nil || c.TLSListenAddress() != "" || !c.Network.Plain {
		t.Errorf("defaults: %q %v %v", c.TLSListenAddress(), c.Network.Plain, err)
	}
}

func TestTLSErrors(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, dir, "test")
	srv := ca.Server("server")
	other := ca.Client("other", pkix.Name{CommonName: "other"})
	notPEM := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pair := "security:\n  tlscertfile: " + srv.CertFile + "\n  tlskeyfile: " + srv.KeyFile + "\n"
	for _, tc := range []struct{ name, body, want string }{
		{"unknown cipher", pair + "  tlsciphers: TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_RSA_WITH_RC4_128_SHA\n",
			`c.yaml:4: security.tlsciphers: unknown cipher suite "TLS_RSA_WITH_RC4_128_SHA": "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_RSA_WITH_RC4_128_SHA" (allowed: a comma-separated list of TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, `},
		{"ciphers with 1.3", pair + "  tlsminversion: \"1.3\"\n  tlsciphers: TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\n",
			`c.yaml:5: security.tlsciphers: has no effect with security.tlsminversion 1.3`},
		{"version", pair + "  tlsminversion: \"1.1\"\n",
			`c.yaml:4: security.tlsminversion: not one of the choices: "1.1" (allowed: one of 1.2, 1.3)`},
		{"key without cert", "security:\n  tlskeyfile: " + srv.KeyFile + "\n",
			`c.yaml:2: security.tlscertfile: missing: security.tlskeyfile is set (allowed: a PEM certificate file)`},
		{"key of another cert", "security:\n  tlscertfile: " + srv.CertFile + "\n  tlskeyfile: " + other.KeyFile + "\n",
			`c.yaml:2: security.tlscertfile: tls: private key does not match public key: "` + srv.CertFile + `"`},
		{"not PEM", "security:\n  tlscertfile: " + notPEM + "\n  tlskeyfile: " + srv.KeyFile + "\n",
			`c.yaml:2: security.tlscertfile: tls: failed to find any PEM data in certificate input`},
		{"missing file", "security:\n  tlscertfile: " + dir + "/none.pem\n  tlskeyfile: " + srv.KeyFile + "\n",
			`c.yaml:2: security.tlscertfile: open ` + dir + `/none.pem: no such file or directory`},
		{"CA not PEM", pair + "  tlscafile: " + notPEM + "\n",
			`c.yaml:4: security.tlscafile: no PEM certificate in it: "` + notPEM + `" (allowed: a file of PEM CA certificates)`},
		{"verify without TLS", "security:\n  tlsverifypeer: true\n",
			`c.yaml:2: security.tlsverifypeer: needs security.tlscertfile and security.tlskeyfile (allowed: set only with TLS on)`},
		{"telemetry CA without TLS", "telemetry:\n  tlscafile: " + ca.CAFile + "\n",
			`c.yaml:2: telemetry.tlscafile: needs telemetry.tlscertfile and telemetry.tlskeyfile (allowed: set only with TLS on)`},
		{"cluster TLS without a CA", "cluster:\n  tlscertfile: " + srv.CertFile + "\n  tlskeyfile: " + srv.KeyFile + "\n",
			`c.yaml:2: cluster.tlscafile: missing: inter-node TLS verifies every peer's certificate (allowed: a file of PEM CA certificates)`},
		{"cluster CA without TLS", "cluster:\n  tlscafile: " + ca.CAFile + "\n",
			`c.yaml:2: cluster.tlscafile: needs cluster.tlscertfile and cluster.tlskeyfile (allowed: set only with inter-node TLS on)`},
		{"cluster key of another cert", "cluster:\n  tlscertfile: " + srv.CertFile + "\n  tlskeyfile: " + other.KeyFile + "\n  tlscafile: " + ca.CAFile + "\n",
			`c.yaml:2: cluster.tlscertfile: tls: private key does not match public key: "` + srv.CertFile + `"`},
		{"tlsport without TLS", "network:\n  tlsport: 5671\n",
			`c.yaml:2: network.tlsport: needs security.tlscertfile and security.tlskeyfile (allowed: set only with TLS on)`},
		{"no listener", "network:\n  plain: false\n",
			`c.yaml:2: network.plain: would leave no listener: false (allowed: false only with TLS on (security.tlscertfile and security.tlskeyfile))`},
		{"same port", pair + "network:\n  address: \"127.0.0.1:5671\"\n",
			`default: network.tlsport: same port as the plain listener: 5671`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Chdir(dir)
			if err := os.WriteFile("c.yaml", []byte(tc.body), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Load("c.yaml", nil)
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("got  %v\nwant %s...", err, tc.want)
			}
		})
	}
}
