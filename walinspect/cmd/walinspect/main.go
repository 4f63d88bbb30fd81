// Command walinspect prints read-only views of an AMQP-Go WAL directory:
// its segments, its records, and a checksum verification (exit 1 on
// corruption). It takes no lock and never writes.
package main

import (
	"os"

	"github.com/amqp-go/amqp-go/walinspect/inspect"
)

func main() {
	os.Exit(inspect.Run(os.Args, os.Stdout, os.Stderr))
}
