package config

import (
	"strconv"
	"strings"

	"github.com/amqp-go/amqp-go/server/tlsconf"
)

// defaultTLSPort is network.tlsport when TLS is on and no port is given
// (RabbitMQ's listeners.ssl.default).
const defaultTLSPort = 5671

// checkTLS validates the TLS keys of the AMQP listener, telemetry and the
// management API, loading their files so that a bad certificate stops
// start-up rather than the first handshake, and settles the listeners: network.tlsport's
// default, and TLS only when network.tlsport is given without a
// network.port of its own (or network.plain is false).
func (l *Loader) checkTLS(c *Config) error {
	if err := l.checkTLSSection("security", c.AMQPTLS()); err != nil {
		return err
	}
	if err := l.checkTLSSection("telemetry", c.TelemetryTLS()); err != nil {
		return err
	}
	if err := l.checkTLSSection("management", c.ManagementTLS()); err != nil {
		return err
	}
	if err := l.checkClusterTLS(c.Cluster); err != nil {
		return err
	}
	on := c.AMQPTLS().Enabled()
	given := func(path string) bool { return l.Source(path) != "default" }
	if !on {
		for p, set := range map[string]bool{"network.tlsport": c.Network.TLSPort != 0,
			"security.certloginfrom": c.Security.CertLoginFrom != "distinguished_name"} {
			if set {
				return &Error{Source: l.Source(p), Key: p, Reason: "needs security.tlscertfile and security.tlskeyfile",
					Allowed: "set only with TLS on"}
			}
		}
		if !c.Network.Plain {
			return &Error{Source: l.Source("network.plain"), Key: "network.plain", Reason: "would leave no listener", Value: "false",
				Allowed: "false only with TLS on (security.tlscertfile and security.tlskeyfile)"}
		}
		return nil
	}
	if c.Network.TLSPort != 0 && given("network.tlsport") && c.Network.Port == 0 && !given("network.plain") {
		c.Network.Plain = false
	}
	if c.Network.TLSPort == 0 {
		c.Network.TLSPort = defaultTLSPort
	}
	if c.Network.Plain && strconv.Itoa(c.Network.TLSPort) == portOf(c.ListenAddress()) {
		return &Error{Source: l.Source("network.tlsport"), Key: "network.tlsport", Reason: "same port as the plain listener",
			Value: strconv.Itoa(c.Network.TLSPort), Allowed: "a port other than network.address's (or network.plain: false)"}
	}
	return nil
}

func portOf(hostport string) string {
	i := strings.LastIndexByte(hostport, ':')
	return hostport[i+1:]
}

// checkTLSSection checks one section's tls* keys: they need a certificate
// and a key, the versions and suites must be known, and the files must
// load.
func (l *Loader) checkTLSSection(section string, s tlsconf.Settings) error {
	key := func(name string) string { return section + "." + name }
	src := func(name string) string { return l.Source(key(name)) }
	fail := func(name, reason, value, allowed string) error {
		return &Error{Source: src(name), Key: key(name), Reason: reason, Value: value, Allowed: allowed}
	}
	if !s.Enabled() {
		// Set without a certificate, these would silently do nothing.
		for name, set := range map[string]bool{"tlscafile": s.CAFile != "", "tlsverifypeer": s.VerifyPeer,
			"tlsfailifnopeercert": s.FailIfNoPeerCert, "tlsminversion": s.MinVersion != "1.2", "tlsciphers": s.Ciphers != ""} {
			if set {
				return fail(name, "needs "+key("tlscertfile")+" and "+key("tlskeyfile"), "", "set only with TLS on")
			}
		}
		return nil
	}
	if s.CertFile == "" {
		return &Error{Source: src("tlskeyfile"), Key: key("tlscertfile"), Reason: "missing: " + key("tlskeyfile") + " is set",
			Allowed: "a PEM certificate file"}
	}
	if s.KeyFile == "" {
		return &Error{Source: src("tlscertfile"), Key: key("tlskeyfile"), Reason: "missing: " + key("tlscertfile") + " is set",
			Allowed: "a PEM private key file"}
	}
	if _, err := tlsconf.ParseCiphers(s.Ciphers); err != nil {
		return fail("tlsciphers", err.Error(), strconv.Quote(s.Ciphers),
			"a comma-separated list of "+strings.Join(tlsconf.CipherNames(), ", "))
	}
	if s.Ciphers != "" && s.MinVersion == "1.3" {
		return fail("tlsciphers", "has no effect with "+key("tlsminversion")+" 1.3", strconv.Quote(s.Ciphers),
			"empty with TLS 1.3 only (its suites are not configurable)")
	}
	if err := tlsconf.LoadPair(s); err != nil {
		return fail("tlscertfile", err.Error(), strconv.Quote(s.CertFile), "a PEM certificate that "+key("tlskeyfile")+" is the key of")
	}
	if s.CAFile != "" {
		if _, err := tlsconf.LoadCAs(s.CAFile); err != nil {
			return fail("tlscafile", err.Error(), strconv.Quote(s.CAFile), "a file of PEM CA certificates")
		}
	}
	return nil
}

// checkClusterTLS checks cluster.tls*: all three files or none, each
// loading.
func (l *Loader) checkClusterTLS(cl Cluster) error {
	ts := cl.TLS()
	if ts.Enabled() && ts.CAFile == "" {
		return &Error{Source: l.Source("cluster.tlscertfile"), Key: "cluster.tlscafile",
			Reason: "missing: inter-node TLS verifies every peer's certificate", Allowed: "a file of PEM CA certificates"}
	}
	if !ts.Enabled() && ts.CAFile != "" {
		return &Error{Source: l.Source("cluster.tlscafile"), Key: "cluster.tlscafile",
			Reason: "needs cluster.tlscertfile and cluster.tlskeyfile", Allowed: "set only with inter-node TLS on"}
	}
	ts.VerifyPeer, ts.FailIfNoPeerCert, ts.MinVersion = false, false, "1.2" // the section has no such keys to blame
	return l.checkTLSSection("cluster", ts)
}
