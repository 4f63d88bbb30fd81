package cli

import (
	"bytes"
	"log/slog"
	"net"
	"strings"
	"testing"
)

// An operations endpoint on a non-loopback address is warned about; one
// on loopback is not. No socket is opened.
func TestWarnExposed(t *testing.T) {
	var b bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&b, nil))
	warnExposed(logger, "pprof", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 6060})
	warnExposed(logger, "pprof", &net.TCPAddr{IP: net.IPv6loopback, Port: 6060})
	if b.Len() != 0 {
		t.Errorf("loopback warned: %s", b.String())
	}
	for _, ip := range []net.IP{net.IPv4zero, net.IPv6zero, net.IPv4(192, 0, 2, 1)} {
		b.Reset()
		warnExposed(logger, "telemetry", &net.TCPAddr{IP: ip, Port: 9419})
		if !strings.Contains(b.String(), `level=WARN msg="telemetry listens on a non-loopback address, reachable without authentication"`) {
			t.Errorf("%s: %q", ip, b.String())
		}
	}
}
