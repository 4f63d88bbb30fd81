package cli_test

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// network.tlsport given without network.port of its own means TLS only,
// on the built binary: one listener is logged, the TLS one, and the
// start line names it; the plain port stays closed.
func TestTLSOnlyByTLSPortAlone(t *testing.T) {
	f := newTLSFixture(t)
	tlsPort, plainPort := freePort(t), freePort(t)
	// baseEnv sets network.port; an empty variable is ignored, so the
	// last one here leaves it unset, as a file without the key would.
	p := startIn(t, t.TempDir(), tlsPort, []string{"run"}, f.env(tlsPort,
		"AMQP_NETWORK_ADDRESS=127.0.0.1:"+strconv.Itoa(plainPort), "AMQP_NETWORK_PORT=")...)
	roundTripConn(t, dialTLS(t, fmt.Sprintf("amqps://guest:guest@127.0.0.1:%d/", tlsPort), f.clientTLS(nil)))
	if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", plainPort), time.Second); err == nil {
		c.Close()
		t.Fatalf("the plain port %d accepts connections\n%s", plainPort, p.stderr)
	}
	eventually(t, "the start line", func() bool { return strings.Contains(p.stderr.String(), `msg="amqp-server started"`) })
	log := p.stderr.String()
	if n := strings.Count(log, "msg=listening"); n != 1 ||
		!strings.Contains(log, fmt.Sprintf("msg=listening address=127.0.0.1:%d tls=true", tlsPort)) {
		t.Errorf("want one listening line, the TLS one on %d:\n%s", tlsPort, log)
	}
	if !strings.Contains(log, `msg="amqp-server started" version=`) ||
		!strings.Contains(log, fmt.Sprintf(" address=127.0.0.1:%d storage=", tlsPort)) {
		t.Errorf("the start line does not name the TLS listener:\n%s", log)
	}
}

// Telemetry and pprof bound to every interface are warned about on the
// built binary (they have no authentication); on loopback they are not
// (TestTelemetryTLS).
func TestNonLoopbackEndpointsWarned(t *testing.T) {
	tport, pport := freePort(t), freePort(t)
	p := start(t, []string{"run", "--enable-telemetry", "--telemetry-port", strconv.Itoa(tport),
		"--pprof-address", fmt.Sprintf("0.0.0.0:%d", pport)}, "AMQP_TELEMETRY_ADDRESS=0.0.0.0")
	eventually(t, "the start line", func() bool { return strings.Contains(p.stderr.String(), `msg="amqp-server started"`) })
	log := p.stderr.String()
	for what, port := range map[string]int{"telemetry": tport, "pprof": pport} {
		// 0.0.0.0 is bound as [::] where the host has IPv6.
		want := regexp.MustCompile(`level=WARN msg="` + what + ` listens on a non-loopback address, reachable without authentication" address=(0\.0\.0\.0|\[::\]):` +
			strconv.Itoa(port) + "\n")
		if !want.MatchString(log) {
			t.Errorf("no %s in:\n%s", want, log)
		}
	}
	// Both do serve there.
	for _, u := range []string{fmt.Sprintf("http://127.0.0.1:%d/health", tport), fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/", pport)} {
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("GET %s: %s", u, resp.Status)
		}
	}
}

// hostAddress is one of this host's non-loopback IPv4 addresses, to
// connect from without another host or a network namespace: a client
// dialling it reaches the server from that address.
func hostAddress(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() && ipn.IP.To4() != nil {
			return ipn.IP.String()
		}
	}
	t.Skip("no non-loopback IPv4 address on this host")
	return ""
}

// guest, a loopback user by default, connecting over a non-loopback
// address on the built binary: refused with RabbitMQ's 403 login failure,
// and the log gives RabbitMQ's reason; with security.loopbackusers none
// the same connection logs in. (TestRemoteGuestRefused does this from a
// network namespace, as root.)
func TestGuestOverNonLoopbackLogged(t *testing.T) {
	ip := hostAddress(t)
	port := freePort(t)
	p := startIn(t, t.TempDir(), port, []string{"run", "--storage-backend", "memory"}, fmt.Sprintf("AMQP_NETWORK_ADDRESS=:%d", port))
	url := fmt.Sprintf("amqp://guest:guest@%s:%d/", ip, port)
	if _, err := amqp.Dial(url); !errors.Is(err, amqp.ErrCredentials) {
		t.Fatalf("guest over %s: %v, want the login refused", ip, err)
	}
	want := fmt.Sprintf(`msg="login refused" peer=%s:`, ip)
	eventually(t, "the refusal in the log", func() bool {
		log := p.stderr.String()
		return strings.Contains(log, want) && strings.Contains(log, `user=guest mechanism=PLAIN reason="user 'guest' can only connect via localhost"`)
	})
	roundTrip(t, p.url) // loopback still works

	port = freePort(t)
	startIn(t, t.TempDir(), port, []string{"run", "--storage-backend", "memory"}, fmt.Sprintf("AMQP_NETWORK_ADDRESS=:%d", port),
		"AMQP_SECURITY_LOOPBACKUSERS=none")
	roundTrip(t, fmt.Sprintf("amqp://guest:guest@%s:%d/", ip, port))
}
