// Package tlsconf builds the server side of TLS from the settings (the
// AMQPS listener's under security, the telemetry endpoint's under
// telemetry): protocol versions, cipher suites, client certificate
// verification, and a certificate that Reload swaps while the listener
// serves, so a renewed certificate is taken on SIGHUP without dropping a
// connection.
package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"sort"
	"strings"
	"sync/atomic"
)

// Settings are the TLS keys of one listener, as written in the
// configuration.
type Settings struct {
	CertFile, KeyFile, CAFile string
	// VerifyPeer asks for a client certificate and verifies one that is
	// given (RabbitMQ's ssl_options.verify = verify_peer).
	VerifyPeer bool
	// FailIfNoPeerCert refuses a handshake without a valid client
	// certificate (fail_if_no_peer_cert; Go's RequireAndVerifyClientCert).
	// It implies VerifyPeer.
	FailIfNoPeerCert bool
	// MinVersion is "1.2" or "1.3" ("" is 1.2).
	MinVersion string
	// Ciphers is a comma-separated list of TLS 1.2 suites by Go's names
	// ("" keeps Go's defaults).
	Ciphers string
}

// Enabled reports whether these settings turn TLS on (a certificate or a
// key is given).
func (s Settings) Enabled() bool { return s.CertFile != "" || s.KeyFile != "" }

// Versions lists the accepted values of MinVersion.
var Versions = []string{"1.2", "1.3"}

// ParseVersion maps "1.2" or "1.3" to Go's constant.
func ParseVersion(v string) (uint16, error) {
	switch v {
	case "", "1.2":
		return tls.VersionTLS12, nil
	case "1.3":
		return tls.VersionTLS13, nil
	}
	return 0, fmt.Errorf("unknown TLS version %q", v)
}

// CipherNames lists the suites that Ciphers may name: Go's secure suites
// that TLS 1.2 uses (TLS 1.3's are fixed by Go and cannot be chosen).
func CipherNames() []string {
	var out []string
	for _, cs := range tls.CipherSuites() {
		if supports12(cs) {
			out = append(out, cs.Name)
		}
	}
	sort.Strings(out)
	return out
}

func supports12(cs *tls.CipherSuite) bool {
	for _, v := range cs.SupportedVersions {
		if v == tls.VersionTLS12 {
			return true
		}
	}
	return false
}

// ParseCiphers resolves a comma-separated list of suite names. An unknown
// name is an error that names it.
func ParseCiphers(list string) ([]uint16, error) {
	if strings.TrimSpace(list) == "" {
		return nil, nil
	}
	byName := map[string]uint16{}
	for _, cs := range tls.CipherSuites() {
		if supports12(cs) {
			byName[cs.Name] = cs.ID
		}
	}
	var ids []uint16
	for _, n := range strings.Split(list, ",") {
		n = strings.TrimSpace(n)
		id, ok := byName[n]
		if !ok {
			return nil, fmt.Errorf("unknown cipher suite %q", n)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// Server is a TLS server configuration whose certificate can be replaced
// while it is in use. Its methods are safe for concurrent use.
type Server struct {
	s    Settings
	cert atomic.Pointer[tls.Certificate]
	// clientCAs is the configuration with the current CA bundle, which
	// cfg's GetConfigForClient hands each handshake (nil without a
	// CAFile).
	clientCAs atomic.Pointer[tls.Config]
	cfg       *tls.Config
}

// New checks s, loads the certificate, the key and the CA bundle, and
// returns the configuration. Errors say which file and what is wrong.
func New(s Settings) (*Server, error) {
	switch {
	case s.CertFile == "":
		return nil, errors.New("a key without a certificate")
	case s.KeyFile == "":
		return nil, errors.New("a certificate without a key")
	}
	minV, err := ParseVersion(s.MinVersion)
	if err != nil {
		return nil, err
	}
	ciphers, err := ParseCiphers(s.Ciphers)
	if err != nil {
		return nil, err
	}
	srv := &Server{s: s}
	cert, err := tls.LoadX509KeyPair(s.CertFile, s.KeyFile)
	if err != nil {
		return nil, err
	}
	srv.cert.Store(&cert)
	cfg := &tls.Config{
		MinVersion:   minV,
		CipherSuites: ciphers,
		// The current certificate, swapped by Reload: handshakes already
		// done keep theirs.
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return srv.cert.Load(), nil },
	}
	switch {
	case s.FailIfNoPeerCert:
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	case s.VerifyPeer:
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
	}
	srv.cfg = cfg
	if s.CAFile != "" {
		pool, err := LoadCAs(s.CAFile)
		if err != nil {
			return nil, err
		}
		cfg.ClientCAs = pool
		srv.storeCAs(pool)
		// Each handshake takes the configuration of the bundle current
		// when it starts; Reload replaces it whole.
		cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) { return srv.clientCAs.Load(), nil }
	}
	return srv, nil
}

// storeCAs makes the configuration handshakes get with pool as ClientCAs
// (a copy of cfg: its GetConfigForClient is not called again).
func (srv *Server) storeCAs(pool *x509.CertPool) {
	c := srv.cfg.Clone()
	c.ClientCAs = pool
	c.GetConfigForClient = nil
	srv.clientCAs.Store(c)
}

// LoadCAs reads a PEM bundle of CA certificates.
func LoadCAs(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("no PEM certificate in it")
	}
	return pool, nil
}

// LoadPair checks that s's certificate and key files load as a pair.
func LoadPair(s Settings) error {
	_, err := tls.LoadX509KeyPair(s.CertFile, s.KeyFile)
	return err
}

// Config is the configuration to serve with; do not modify it. Its
// ClientCAs is the bundle at start; handshakes verify against the bundle
// of the last Reload (through GetConfigForClient).
func (srv *Server) Config() *tls.Config { return srv.cfg }

// Serve starts the server side of TLS on nc with this configuration; the
// handshake runs on the first Handshake, Read or Write.
func (srv *Server) Serve(nc net.Conn) *Conn { return &Conn{tls.Server(nc, srv.cfg)} }

// Conn is a connection served over TLS, with the subject of the client's
// verified certificate at hand: what the broker needs of one
// (broker.TLSConn).
type Conn struct{ *tls.Conn }

// VerifiedSubject is the DER subject of the client's certificate if the
// handshake verified it against the CA bundle, else nil.
func (c *Conn) VerifiedSubject() []byte {
	st := c.ConnectionState()
	if len(st.VerifiedChains) == 0 || len(st.PeerCertificates) == 0 {
		return nil
	}
	return st.PeerCertificates[0].RawSubject
}

// Reload reads the certificate, key and CA files again and, if they all
// load (the certificate and key as a pair), uses them for every handshake
// from now on; connections already made keep what they had. On error
// nothing changes.
func (srv *Server) Reload() error {
	cert, err := tls.LoadX509KeyPair(srv.s.CertFile, srv.s.KeyFile)
	if err != nil {
		return err
	}
	var pool *x509.CertPool
	if srv.s.CAFile != "" {
		if pool, err = LoadCAs(srv.s.CAFile); err != nil {
			return fmt.Errorf("%s: %w", srv.s.CAFile, err)
		}
	}
	srv.cert.Store(&cert)
	if pool != nil {
		srv.storeCAs(pool)
	}
	return nil
}

// Certificate is the certificate served now (its leaf parsed).
func (srv *Server) Certificate() *tls.Certificate { return srv.cert.Load() }

// Dialer returns the client side of a mutual TLS link between peers that
// share this configuration (the cluster's nodes): it presents the current
// certificate, and verifies the other end's chain against the current CA
// bundle, without a host name (peers are named by the cluster, not by
// DNS). The bundle is the one of the last Reload.
func (srv *Server) Dialer() *tls.Config {
	return &tls.Config{
		MinVersion:   srv.cfg.MinVersion,
		CipherSuites: srv.cfg.CipherSuites,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return srv.cert.Load(), nil
		},
		// Verified by VerifyConnection, against the bundle and without a
		// host name; crypto/tls would want one.
		InsecureSkipVerify: true,
		VerifyConnection: func(st tls.ConnectionState) error {
			if len(st.PeerCertificates) == 0 {
				return errors.New("the peer sent no certificate")
			}
			var pool *x509.CertPool
			if c := srv.clientCAs.Load(); c != nil {
				pool = c.ClientCAs
			}
			inter := x509.NewCertPool()
			for _, c := range st.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			_, err := st.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
			return err
		},
	}
}
