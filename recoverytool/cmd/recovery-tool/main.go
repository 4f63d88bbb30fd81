// Command recovery-tool verifies, repairs and compacts an AMQP-Go WAL
// directory offline: it takes the directory's lock and refuses to run
// (exit 1) while a server holds it. --dir is the log directory or the
// server's data directory (then DATA/messages is used). repair and compact
// back up every file they change into DIR/backup/<UTC time>/ unless
// --no-backup, and accept --dry-run.
package main

import (
	"os"

	"github.com/amqp-go/amqp-go/recoverytool/repair"
)

func main() {
	os.Exit(repair.Run(os.Args, os.Stdout, os.Stderr))
}
