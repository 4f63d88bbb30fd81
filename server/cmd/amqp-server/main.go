// Command amqp-server runs the AMQP-Go broker.
package main

import (
	"fmt"
	"os"

	"github.com/amqp-go/amqp-go/server/cli"
)

func main() {
	if err := cli.App().Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "amqp-server:", err)
		os.Exit(1)
	}
}
