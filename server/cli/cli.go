// Package cli is amqp-server's command line.
package cli

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof" // served only with --pprof-address
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"syscall"

	"github.com/amqp-go/amqp-go/server/broker"
	ucli "github.com/urfave/cli/v2"
)

// App returns the amqp-server command-line application.
func App() *ucli.App {
	return &ucli.App{
		Name:  "amqp-server",
		Usage: "AMQP 0.9.1 message broker",
		Commands: []*ucli.Command{
			{
				Name:  "run",
				Usage: "run the broker",
				Flags: []ucli.Flag{
					&ucli.StringFlag{Name: "address", Value: ":5672", EnvVars: []string{"AMQP_NETWORK_ADDRESS"}, Usage: "listen address, host:port"},
					&ucli.IntFlag{Name: "port", EnvVars: []string{"AMQP_NETWORK_PORT"}, Usage: "listen port; replaces the port of --address when set"},
					&ucli.StringFlag{Name: "pprof-address", EnvVars: []string{"AMQP_PPROF_ADDRESS"}, Usage: "serve net/http/pprof on this address (e.g. 127.0.0.1:6060); off when empty"},
					&ucli.StringFlag{Name: "storage-path", Value: "./data", EnvVars: []string{"AMQP_STORAGE_PATH"}, Usage: "data directory (durable storage arrives with the storage work)"},
				},
				Action: run,
			},
			{
				Name:  "version",
				Usage: "print the version",
				Action: func(*ucli.Context) error {
					fmt.Printf("amqp-server %s (%s)\n", broker.Version, runtime.Version())
					return nil
				},
			},
		},
	}
}

func run(cx *ucli.Context) error {
	addr := cx.String("address")
	if cx.IsSet("port") {
		p := cx.Int("port")
		if p < 0 || p > 65535 {
			return fmt.Errorf("AMQP_NETWORK_PORT/--port: %d is not a port (0-65535)", p)
		}
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return fmt.Errorf("AMQP_NETWORK_ADDRESS/--address: %q is not host:port: %v", addr, err)
		}
		addr = net.JoinHostPort(host, strconv.Itoa(p))
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("AMQP_NETWORK_ADDRESS/--address: %q is not host:port (e.g. :5672): %v", addr, err)
	}
	if pa := cx.String("pprof-address"); pa != "" {
		go func() { _ = http.ListenAndServe(pa, nil) }()
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	s := broker.New(broker.Config{Address: addr, Logger: logger})
	if err := s.Listen(); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	closed := make(chan error, 1)
	go func() {
		<-ctx.Done()
		logger.Info("shutting down")
		closed <- s.Close()
	}()
	if err := s.Serve(); err != nil {
		return err
	}
	return <-closed
}
