// Command tombstone is the tombstone proxy, reaper and admin CLI.
//
//	tombstone proxy --listen 127.0.0.1:6432 --upstream 127.0.0.1:5432
//
// Run `tombstone --help` for every subcommand.
package main

import (
	"fmt"
	"os"

	"github.com/alecthomas/kong"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// cli is the command line: one struct per subcommand.
type cli struct {
	Proxy   proxyCmd   `cmd:"" help:"Run the wire-protocol proxy."`
	Version versionCmd `cmd:"" help:"Print the version."`
}

type versionCmd struct{}

func (versionCmd) Run() error {
	fmt.Println("tombstone", version)
	return nil
}

func main() {
	var c cli
	ctx := kong.Parse(&c,
		kong.Name("tombstone"),
		kong.Description("An undo button for PostgreSQL deletes."),
		kong.UsageOnError(),
	)
	if err := ctx.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "tombstone:", err)
		os.Exit(exitCode(err))
	}
}

// exitCoder is an error that picks the process exit code.
type exitCoder interface{ ExitCode() int }

func exitCode(err error) int {
	if ec, ok := err.(exitCoder); ok {
		return ec.ExitCode()
	}
	return 1
}
