// Package servertest starts an in-process broker on a random loopback port
// for tests in any module of the workspace.
package servertest

import (
	"io"
	"log/slog"
	"os"
	"testing"

	"github.com/amqp-go/amqp-go/server/broker"
	"github.com/amqp-go/amqp-go/server/definitions"
)

// StoreEnv selects the store of servers the tests start: "memory" (the
// default) or "badger", which gives each server a data directory of its
// own (Badger and the segment log), so the same tests run on both stores.
const StoreEnv = "BROKER_TEST_STORE"

// Start runs a broker on 127.0.0.1:0 and returns its amqp:// URL
// (guest/guest, vhost "/"). Its store follows StoreEnv. The broker is
// closed when the test ends.
func Start(t testing.TB) string {
	_, url := StartServer(t, broker.Config{})
	return url
}

// OpenDefinitions is broker.Config.OpenDefinitions for tests: the Badger
// store (package definitions).
func OpenDefinitions(dir string) (broker.DefinitionsStore, error) { return definitions.Open(dir) }

// StartServer is Start with a caller-supplied config (Address is
// overridden); it also returns the server. A config with a DataDir gets
// the durable store whatever StoreEnv says, opened with OpenDefinitions
// unless the config names another.
func StartServer(t testing.TB, cfg broker.Config) (*broker.Server, string) {
	t.Helper()
	cfg.Address = "127.0.0.1:0"
	switch store := os.Getenv(StoreEnv); store {
	case "", "memory":
	case "badger":
		if cfg.DataDir == "" && cfg.Store == nil {
			cfg.DataDir = t.TempDir()
		}
	default:
		t.Fatalf("%s=%q: want memory or badger", StoreEnv, store)
	}
	if cfg.DataDir != "" && cfg.OpenDefinitions == nil {
		cfg.OpenDefinitions = OpenDefinitions
	}
	if cfg.Logger == nil {
		var w io.Writer = io.Discard
		if os.Getenv("BROKER_TEST_LOG") != "" {
			w = os.Stderr
		}
		cfg.Logger = slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	s, err := broker.Open(cfg)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
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
