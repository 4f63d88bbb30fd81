// Command amqp-server is the AMQP 0.9.1 broker (being built; see README).
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "amqp-server: not implemented yet")
	os.Exit(2)
}
