// Package servertest starts an in-process broker on a random loopback port
// for tests in any module of the workspace.
package servertest

import (
	"io"
	"log/slog"
	"os"
	"testing"

	"github.com/amqp-go/amqp-go/server/broker"
)

// Start runs a broker with memory storage on 127.0.0.1:0 and returns its
// amqp:// URL (guest/guest, vhost "/"). The broker is closed when the test
// ends.
func Start(t testing.TB) string {
	_, url := StartServer(t, broker.Config{})
	return url
}

// StartServer is Start with a caller-supplied config (Address is
// overridden); it also returns the server.
func StartServer(t testing.TB, cfg broker.Config) (*broker.Server, string) {
	t.Helper()
	cfg.Address = "127.0.0.1:0"
	if cfg.Logger == nil {
		var w io.Writer = io.Discard
		if os.Getenv("BROKER_TEST_LOG") != "" {
			w = os.Stderr
		}
		cfg.Logger = slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	s := broker.New(cfg)
	if err := s.Listen(); err != nil {
		t.Fatalf("listen: %v", err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve() }()
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close broker: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return s, "amqp://guest:guest@" + s.Addr().String() + "/"
}
