package inspect

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/amqp-go/amqp-go/shared/wal"
	"github.com/urfave/cli/v2"
)

// Exit codes of walinspect.
const (
	ExitOK      = 0
	ExitCorrupt = 1 // verify found corruption
	ExitError   = 2 // usage error or unreadable directory
)

var dirFlag = &cli.StringFlag{Name: "dir", Aliases: []string{"d"}, Required: true,
	Usage: "the segment log directory (DATA/messages) or the server's data directory DATA"}
var jsonFlag = &cli.BoolFlag{Name: "json", Usage: "machine-readable output"}

// Run runs walinspect with args (args[0] is the program name) and returns
// the process exit code.
func Run(args []string, stdout, stderr io.Writer) int {
	code := ExitOK
	// logDir resolves --dir; in text mode it says on stderr when it used
	// DIR/messages.
	logDir := func(c *cli.Context) string {
		d, sub := wal.LogDir(c.String("dir"))
		if sub && !c.Bool("json") {
			fmt.Fprintf(stderr, "walinspect: using the segment log in %s\n", d)
		}
		return d
	}
	app := &cli.App{
		Name:  "walinspect",
		Usage: "read-only inspection of an AMQP-Go WAL directory",
		Description: "--dir is the segment log directory (VERSION, LOCK, *.wal) or the server's data\n" +
			"directory: if DIR/messages holds a VERSION file or .wal segments, DIR/messages is read.\n" +
			"walinspect takes no lock and writes nothing, so it is safe next to a running server.",
		Writer:         stdout,
		ErrWriter:      stderr,
		ExitErrHandler: func(*cli.Context, error) {},
		Commands: []*cli.Command{
			{
				Name:  "dump",
				Usage: "print segments or records",
				Subcommands: []*cli.Command{
					{
						Name:  "segments",
						Usage: "one line per segment: size, records, id range, live share, checksum status",
						Flags: []cli.Flag{dirFlag, jsonFlag},
						Action: func(c *cli.Context) error {
							segs, err := Segments(logDir(c))
							if err != nil {
								return err
							}
							if c.Bool("json") {
								if segs == nil {
									segs = []SegmentSummary{}
								}
								return writeJSON(stdout, segs)
							}
							for _, s := range segs {
								fmt.Fprintf(stdout, "%s size=%d records=%d messages=%d acks=%d drops=%d ids=%d..%d live=%d/%d (%.0f%%) acked=%.0f%% checksum=%s\n",
									s.File, s.Size, s.Records, s.Messages, s.Acks, s.Drops, s.FirstID, s.LastID, s.Live, s.Refs,
									100*s.LiveShare, acked(s), s.Checksum)
								for _, p := range s.Problems {
									fmt.Fprintf(stdout, "  %s\n", p)
								}
							}
							return nil
						},
					},
					{
						Name:  "records",
						Usage: "one line per record (JSON Lines with --json)",
						Flags: []cli.Flag{dirFlag, jsonFlag},
						Action: func(c *cli.Context) error {
							enc := json.NewEncoder(stdout)
							return Records(logDir(c), func(r *RecordInfo) error {
								if c.Bool("json") {
									return enc.Encode(r)
								}
								_, err := fmt.Fprintln(stdout, r.String())
								return err
							})
						},
					},
				},
			},
			{
				Name:  "verify",
				Usage: "check every checksum; exit 1 on corruption",
				Flags: []cli.Flag{dirFlag, jsonFlag},
				Action: func(c *cli.Context) error {
					res, err := Verify(logDir(c))
					if err != nil {
						return err
					}
					if c.Bool("json") {
						if err := writeJSON(stdout, res); err != nil {
							return err
						}
					} else {
						for _, p := range res.Problems {
							fmt.Fprintln(stdout, p)
						}
						status := "OK"
						if res.Corrupt {
							status = "CORRUPT"
						}
						fmt.Fprintf(stdout, "%s: %d segments, %d records, %d messages, %d live in %d queues, %d problems",
							status, res.Segments, res.Records, res.Messages, res.Live, res.Queues, len(res.Problems))
						if len(res.CorruptQueues) > 0 {
							fmt.Fprintf(stdout, ", affected queues %v", res.CorruptQueues)
						}
						fmt.Fprintln(stdout)
					}
					if res.Corrupt {
						code = ExitCorrupt
					}
					return nil
				},
			},
		},
	}
	if err := app.Run(args); err != nil {
		fmt.Fprintf(stderr, "walinspect: %v\n", err)
		return ExitError
	}
	return code
}

func acked(s SegmentSummary) float64 {
	if s.Refs == 0 {
		return 0
	}
	return 100 - 100*s.LiveShare
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// String renders a record on one line.
func (r *RecordInfo) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s@%d %s", r.File, r.Offset, r.Type)
	if r.Size > 0 {
		fmt.Fprintf(&b, " size=%d", r.Size)
	}
	switch r.Type {
	case "message":
		fmt.Fprintf(&b, " id=%d queues=%v exchange=%q routing_key=%q body=%d", r.ID, r.Queues, r.Exchange, r.RoutingKey, r.BodySize)
		if p := r.Properties; p != nil {
			if p.Error != "" {
				fmt.Fprintf(&b, " properties=%s (%s)", p.Hex, p.Error)
			} else {
				fmt.Fprintf(&b, " delivery_mode=%d", p.DeliveryMode)
				if p.ContentType != "" {
					fmt.Fprintf(&b, " content_type=%q", p.ContentType)
				}
				if p.Priority != 0 {
					fmt.Fprintf(&b, " priority=%d", p.Priority)
				}
				if p.MessageID != "" {
					fmt.Fprintf(&b, " message_id=%q", p.MessageID)
				}
				if p.Headers > 0 {
					fmt.Fprintf(&b, " headers=%d", p.Headers)
				}
			}
		}
		if m := r.Meta; m != nil {
			b.WriteString(" meta{")
			sep := ""
			for _, f := range []struct {
				name string
				ns   int64
			}{{"timestamp", m.Timestamp}, {"expires", m.Expires}, {"due", m.Due}} {
				if f.ns != 0 {
					fmt.Fprintf(&b, "%s%s=%s", sep, f.name, time.Unix(0, f.ns).UTC().Format(time.RFC3339Nano))
					sep = " "
				}
			}
			if m.Priority != 0 {
				fmt.Fprintf(&b, "%spriority=%d", sep, m.Priority)
			}
			b.WriteString("}")
		}
	case "ack":
		ids := r.IDs
		more := ""
		if len(ids) > 16 {
			ids, more = ids[:16], fmt.Sprintf(" +%d more", len(r.IDs)-16)
		}
		fmt.Fprintf(&b, " queue=%v refs=%d ids=%v%s", r.Queues, len(r.IDs), ids, more)
	case "drop-queue":
		fmt.Fprintf(&b, " queue=%v before=%d", r.Queues, r.Before)
	}
	if r.Problem != nil {
		fmt.Fprintf(&b, " PROBLEM: %s", *r.Problem)
	}
	return b.String()
}
