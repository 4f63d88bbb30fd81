package repair

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/amqp-go/amqp-go/shared/wal"
	"github.com/urfave/cli/v2"
)

// Exit codes of recovery-tool.
const (
	ExitOK      = 0
	ExitProblem = 1 // locked by a server, or verify found problems
	ExitError   = 2 // usage or I/O error
)

// Run runs recovery-tool with args (args[0] is the program name) and
// returns the process exit code.
func Run(args []string, stdout, stderr io.Writer) int {
	code := ExitOK
	dir := &cli.StringFlag{Name: "dir", Aliases: []string{"d"}, Required: true,
		Usage: "the segment log directory (DATA/messages) or the server's data directory DATA"}
	asJSON := &cli.BoolFlag{Name: "json", Usage: "machine-readable output"}
	dry := &cli.BoolFlag{Name: "dry-run", Aliases: []string{"n"}, Usage: "report what would change, write nothing (no backup either)"}
	noBackup := &cli.BoolFlag{Name: "no-backup", Usage: "do not copy the files about to change into DIR/backup/<UTC time>/"}
	opts := func(c *cli.Context) Options {
		return Options{DryRun: c.Bool("dry-run"), NoBackup: c.Bool("no-backup")}
	}
	// locked resolves --dir to the log directory (DIR or DIR/messages) and
	// runs fn holding that directory's LOCK, the file the server locks.
	locked := func(c *cli.Context, fn func(dir string) error) error {
		d, sub := wal.LogDir(c.String("dir"))
		if sub && !c.Bool("json") {
			fmt.Fprintf(stderr, "recovery-tool: using the segment log in %s\n", d)
		}
		l, err := Lock(d)
		if err != nil {
			return err
		}
		defer l.Close()
		return fn(d)
	}
	printReport := func(c *cli.Context, what string, rep *Report) error {
		if c.Bool("json") {
			return writeJSON(stdout, rep)
		}
		verb := "changed"
		if rep.DryRun {
			verb = "would change (dry run)"
		}
		if len(rep.Actions) == 0 {
			fmt.Fprintf(stdout, "%s: nothing to do\n", what)
		}
		for _, a := range rep.Actions {
			fmt.Fprintf(stdout, "%s %s: %s %s", verb, a.File, a.Kind, a.Detail)
			if a.Quarantine != "" {
				fmt.Fprintf(stdout, " [%d bytes at offset %d saved to %s]", a.Bytes, a.Offset, a.Quarantine)
			}
			fmt.Fprintln(stdout)
		}
		if len(rep.AffectedQueues) > 0 {
			fmt.Fprintf(stdout, "queues that may have lost messages or acks: %v\n", rep.AffectedQueues)
		}
		if rep.UnknownQueues {
			fmt.Fprintln(stdout, "some quarantined regions named no queue: any queue may be affected")
		}
		switch {
		case rep.Backup != "":
			fmt.Fprintf(stdout, "originals of %d changed files backed up in %s\n", len(rep.BackedUp), rep.Backup)
		case c.Bool("no-backup") && !rep.DryRun && len(rep.Actions) > 0:
			fmt.Fprintln(stdout, "no backup kept (--no-backup)")
		}
		return nil
	}
	app := &cli.App{
		Name:  "recovery-tool",
		Usage: "offline verify, repair and compaction of an AMQP-Go WAL directory (stop the server first)",
		Description: "--dir is the segment log directory (VERSION, LOCK, *.wal) or the server's data\n" +
			"directory: if DIR/messages holds a VERSION file or .wal segments, DIR/messages is used,\n" +
			"and its LOCK is the one checked. Below, DIR is that log directory.\n" +
			"repair and compact keep a backup of every file they change: before a segment is\n" +
			"truncated, rewritten, moved or deleted, the original is copied byte for byte into\n" +
			"DIR/backup/<UTC time>/ (one new directory per run), unless --no-backup is given.\n" +
			"--dry-run writes nothing at all. Bytes cut out of segments also go to DIR/quarantine/.",
		Writer:         stdout,
		ErrWriter:      stderr,
		ExitErrHandler: func(*cli.Context, error) {},
		Commands: []*cli.Command{
			{
				Name:  "verify",
				Usage: "check every record; exit 1 if anything needs repair",
				Flags: []cli.Flag{dir, asJSON},
				Action: func(c *cli.Context) error {
					return locked(c, func(d string) error {
						rep, err := Verify(d)
						if err != nil {
							return err
						}
						if !rep.OK() {
							code = ExitProblem
						}
						if c.Bool("json") {
							return writeJSON(stdout, rep)
						}
						for _, ce := range rep.Corruptions {
							fmt.Fprintln(stdout, ce.Error())
						}
						if t := rep.TornTail; t != nil {
							fmt.Fprintf(stdout, "torn tail in %s at offset %d (%d bytes): %s\n", t.File, t.Offset, t.Bytes, t.Reason)
						}
						status := "OK"
						if !rep.OK() {
							status = "NEEDS REPAIR"
						}
						fmt.Fprintf(stdout, "%s: %d segments, %d records, %d messages, %d queues with live messages\n",
							status, rep.Segments, rep.Records, rep.Messages, rep.LiveQueues)
						if len(rep.CorruptQueues) > 0 {
							fmt.Fprintf(stdout, "affected queues: %v\n", rep.CorruptQueues)
						}
						return nil
					})
				},
			},
			{
				Name:  "repair",
				Usage: "truncate torn tails, quarantine corrupt records under DIR/quarantine, rewrite damaged segments (originals backed up in DIR/backup)",
				Flags: []cli.Flag{dir, dry, noBackup, asJSON},
				Action: func(c *cli.Context) error {
					return locked(c, func(d string) error {
						rep, err := Repair(d, opts(c))
						if perr := printReport(c, "repair", rep); err == nil {
							err = perr
						}
						return err
					})
				},
			},
			{
				Name:  "compact",
				Usage: "rewrite sparse segments keeping only live messages (originals backed up in DIR/backup)",
				Flags: []cli.Flag{dir, dry, noBackup, asJSON, &cli.Float64Flag{Name: "threshold", Value: DefaultThreshold,
					Usage: "compact segments whose live bytes are below this share of their size"}},
				Action: func(c *cli.Context) error {
					return locked(c, func(d string) error {
						rep, err := Compact(d, c.Float64("threshold"), opts(c))
						if perr := printReport(c, "compact", rep); err == nil {
							err = perr
						}
						return err
					})
				},
			},
		},
	}
	if err := app.Run(args); err != nil {
		fmt.Fprintf(stderr, "recovery-tool: %v\n", err)
		if errors.Is(err, ErrLocked) {
			return ExitProblem
		}
		return ExitError
	}
	return code
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
