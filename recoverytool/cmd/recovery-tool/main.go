// Command recovery-tool is not implemented yet; it exits 2 so that scripts notice.
package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"
)

func main() {
	app := &cli.App{
		Name:  "recovery-tool",
		Usage: "not implemented yet",
		Action: func(*cli.Context) error {
			return cli.Exit("recovery-tool: not implemented yet", 2)
		},
	}
	if err := app.Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
}
