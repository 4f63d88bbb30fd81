package cli

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/amqp-go/amqp-go/server/broker"
	"github.com/amqp-go/amqp-go/server/config"
	"github.com/amqp-go/amqp-go/server/security"
	ucli "github.com/urfave/cli/v2"
)

// securityConfig carries the security section into the broker's config:
// what a first start creates (the broker stores it then, and from then
// on starts from what is stored), which is the default vhost and the
// default user with its tags and permissions there (none when a
// definitions file seeds the users, as RabbitMQ skips it then), and
// loopback_users.
func securityConfig(c config.Config, bc *broker.Config) error {
	s := c.Security
	sec := security.NewStore()
	if err := sec.PutVHost(security.VHost{Name: s.DefaultVHost}); err != nil {
		return fmt.Errorf("security.defaultvhost: %w", err)
	}
	if s.DefaultUser != "" && s.DefinitionsFile == "" {
		if err := sec.AddUser(s.DefaultUser, s.DefaultPass, s.DefaultUserTagList()...); err != nil {
			return fmt.Errorf("security.defaultuser: %w", err)
		}
		if err := sec.SetPermissions(security.Permission{User: s.DefaultUser, VHost: s.DefaultVHost,
			Configure: s.DefaultPermissionsConfigure, Write: s.DefaultPermissionsWrite, Read: s.DefaultPermissionsRead}); err != nil {
			return fmt.Errorf("security.defaultuser: %w", err)
		}
	}
	bc.Security = sec
	bc.LoopbackUsers = s.LoopbackUserList()
	return nil
}

// openSecured opens the broker with the security section applied and
// security.definitionsfile imported (at every start, as RabbitMQ's
// load_definitions: what it defines is added or replaced, nothing else is
// removed).
func openSecured(c config.Config, l *config.Loader, bc broker.Config) (*broker.Server, error) {
	if err := securityConfig(c, &bc); err != nil {
		return nil, err
	}
	srv, err := openBroker(c, l, bc)
	if err != nil {
		return nil, err
	}
	if f := c.Security.DefinitionsFile; f != "" {
		if err := importFile(srv, f); err != nil {
			srv.Close()
			return nil, fmt.Errorf("security.definitionsfile: %w", err)
		}
	}
	return srv, nil
}

// importFile imports definitions file f into srv; errors name f.
func importFile(srv *broker.Server, f string) error {
	fh, err := os.Open(f)
	if err != nil {
		return err
	}
	defer fh.Close()
	d, err := security.ReadDefinitions(fh)
	if err != nil {
		return fmt.Errorf("%s: %w", f, err)
	}
	if err := srv.ImportDefinitions(d); err != nil {
		return fmt.Errorf("%s: %w", f, err)
	}
	return nil
}

// definitionsCommands are export-definitions and import-definitions, which
// work on the data directory of a server that is not running.
func definitionsCommands() []*ucli.Command {
	return []*ucli.Command{
		{
			Name:      "export-definitions",
			Usage:     "write the users, vhosts, permissions, topic permissions, limits, policies, durable exchanges, queues and bindings to FILE in RabbitMQ's definitions format (offline: the server must not be running on the data directory)",
			UsageText: "amqp-server export-definitions [--config FILE] [flags] FILE",
			Flags:     runFlags(),
			Action:    func(cx *ucli.Context) error { return offlineDefinitions(cx, "export-definitions") },
		},
		{
			Name:      "import-definitions",
			Usage:     "add what FILE, RabbitMQ's definitions format, defines to the data directory (offline: the server must not be running on it); policies are stored, not applied",
			UsageText: "amqp-server import-definitions [--config FILE] [flags] FILE",
			Flags:     runFlags(),
			Action:    func(cx *ucli.Context) error { return offlineDefinitions(cx, "import-definitions") },
		},
	}
}

func offlineDefinitions(cx *ucli.Context, cmd string) error {
	if cx.NArg() != 1 {
		return fmt.Errorf("%s: want exactly one FILE argument, got %d", cmd, cx.NArg())
	}
	file := cx.Args().First()
	cfg, loader, err := settings(cx, os.Environ())
	if err != nil {
		return err
	}
	if cfg.Storage.Backend != "badger" {
		return fmt.Errorf("%s: storage.backend is %s: only a badger data directory keeps definitions", cmd, cfg.Storage.Backend)
	}
	bc := brokerConfig(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	srv, err := openSecured(cfg, loader, bc)
	if err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	if cmd == "import-definitions" {
		err = importFile(srv, file)
	} else {
		err = exportFile(srv, file)
	}
	if cerr := srv.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	fmt.Fprintf(cx.App.Writer, "%s: done (%s, data directory %s)\n", cmd, file, cfg.Storage.Path)
	return nil
}

// exportFile writes srv's definitions to f (0600: it holds password
// hashes), replacing it whole or not at all.
func exportFile(srv *broker.Server, f string) (err error) {
	tmp := f + ".tmp"
	fh, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()
	if err := security.WriteDefinitions(fh, srv.ExportDefinitions()); err != nil {
		fh.Close()
		return err
	}
	if err := errors.Join(fh.Sync(), fh.Close()); err != nil {
		return err
	}
	return os.Rename(tmp, f)
}
