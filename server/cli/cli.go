// Package cli is amqp-server's command line: the run, generate-config and
// version commands, the classic flag forms (--config, --generate-config,
// --version, --enable-telemetry, --telemetry-port), and the process around
// the broker: logging, pidfile, daemon mode, telemetry, resource alarms and
// graceful shutdown.
package cli

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/amqp-go/amqp-go/server/broker"
	"github.com/amqp-go/amqp-go/server/config"
	ucli "github.com/urfave/cli/v2"
)

// Commit is the source revision, set at build time with
// -ldflags "-X github.com/amqp-go/amqp-go/server/cli.Commit=REV"; when
// empty, the VCS revision recorded by the Go toolchain is used if any.
var Commit = ""

// aliases are the short and classic names of some key flags.
var aliases = map[string][]string{
	"network.address":   {"address"},
	"network.port":      {"port"},
	"telemetry.enabled": {"enable-telemetry"},
	"server.loglevel":   {"log-level"},
	"server.logfile":    {"log-file"},
	"server.pidfile":    {"pidfile"},
	"server.daemonize":  {"daemonize"},
}

// keyFlags is one flag per configuration key, --<section>-<key>, showing
// the built-in default. A flag applies only when given.
func keyFlags() []ucli.Flag {
	var fs []ucli.Flag
	for _, k := range config.Keys() {
		usage := fmt.Sprintf("%s; %s (env %s)", k.Doc, k.Allowed(), k.Env())
		if k.Type == "boolean" {
			fs = append(fs, &ucli.BoolFlag{Name: k.Flag(), Aliases: aliases[k.Path()], Usage: usage,
				Value: k.Default() == "true", Category: k.Section})
			continue
		}
		fs = append(fs, &ucli.StringFlag{Name: k.Flag(), Aliases: aliases[k.Path()], Usage: usage,
			Value: k.Default(), Category: k.Section})
	}
	return fs
}

func runFlags() []ucli.Flag {
	return append([]ucli.Flag{
		&ucli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "configuration file, YAML (.yaml, .yml) or JSON (.json), merged over the defaults"},
		&ucli.StringFlag{Name: "pprof-address", EnvVars: []string{"AMQP_PPROF_ADDRESS"}, Usage: "also serve only Go's pprof handlers on this host:port (off when empty; telemetry serves them with telemetry.pprof)"},
	}, keyFlags()...)
}

// App returns the amqp-server command-line application.
func App() *ucli.App {
	ucli.VersionPrinter = func(cx *ucli.Context) { printVersion(cx.App.Writer) }
	return &ucli.App{
		Name:    "amqp-server",
		Usage:   "AMQP 0.9.1 message broker",
		Version: broker.Version,
		Description: "Without a command, amqp-server runs the broker: `amqp-server --config F` is `amqp-server run --config F`.\n" +
			"Settings: defaults < --config file < AMQP_<SECTION>_<KEY> variables < flags.",
		Flags: append([]ucli.Flag{
			&ucli.StringFlag{Name: "generate-config", Usage: "write the default configuration to this file (.yaml, .yml or .json) and exit"},
		}, runFlags()...),
		Action: func(cx *ucli.Context) error {
			if f := cx.String("generate-config"); f != "" {
				return generate(cx, f)
			}
			if cx.Args().Present() {
				return fmt.Errorf("unknown command %q (try --help)", cx.Args().First())
			}
			return run(cx)
		},
		Commands: append([]*ucli.Command{
			{
				Name:      "run",
				Usage:     "run the broker",
				UsageText: "amqp-server run [--config FILE] [flags]",
				Flags:     runFlags(),
				Action:    run,
			},
			{
				Name:      "generate-config",
				Usage:     "write the default configuration, every key with a comment, to FILE (.yaml, .yml or .json)",
				UsageText: "amqp-server generate-config FILE",
				Action: func(cx *ucli.Context) error {
					if cx.NArg() != 1 {
						return fmt.Errorf("generate-config: want exactly one FILE argument, got %d", cx.NArg())
					}
					return generate(cx, cx.Args().First())
				},
			},
			{
				Name:  "version",
				Usage: "print the version, commit and Go version",
				Action: func(cx *ucli.Context) error {
					printVersion(cx.App.Writer)
					return nil
				},
			},
		}, append(definitionsCommands(), ctlCommand())...),
	}
}

func generate(cx *ucli.Context, path string) error {
	if err := config.GenerateFile(path, config.Defaults()); err != nil {
		return fmt.Errorf("generate-config: %w", err)
	}
	fmt.Fprintf(cx.App.Writer, "wrote the default configuration to %s\n", path)
	return nil
}

func commit() string {
	if Commit != "" {
		return Commit
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				return s.Value
			}
		}
	}
	return "unknown"
}

func printVersion(w io.Writer) {
	fmt.Fprintf(w, "amqp-server %s (commit %s, %s)\n", broker.Version, commit(), runtime.Version())
}

// settings loads the configuration: defaults, the --config file, the
// environment, then the flags given on the command line (the innermost
// command's first).
func settings(cx *ucli.Context, environ []string) (config.Config, *config.Loader, error) {
	l := config.NewLoader()
	lineage := cx.Lineage()
	for _, c := range lineage {
		if c.IsSet("config") {
			if err := l.LoadFile(c.String("config")); err != nil {
				return config.Config{}, nil, err
			}
			break
		}
	}
	if err := l.LoadEnv(environ); err != nil {
		return config.Config{}, nil, err
	}
	for _, k := range config.Keys() {
		for _, c := range lineage {
			if !flagGiven(c, append([]string{k.Flag()}, aliases[k.Path()]...)) {
				continue
			}
			v := c.String(k.Flag())
			if k.Type == "boolean" {
				v = fmt.Sprint(c.Bool(k.Flag()))
			}
			if err := l.Set("--"+k.Flag(), k.Path(), v); err != nil {
				return config.Config{}, nil, err
			}
			break
		}
	}
	cfg, err := l.Config()
	return cfg, l, err
}

// flagGiven reports whether the flag (by any of its names) was on the
// command line of c itself, not of a parent command.
func flagGiven(c *ucli.Context, names []string) bool {
	for _, n := range c.LocalFlagNames() {
		for _, m := range names {
			if n == m {
				return true
			}
		}
	}
	return false
}
