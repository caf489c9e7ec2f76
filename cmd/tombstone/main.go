// Command tombstone is the tombstone proxy, reaper and admin CLI.
//
//	tombstone proxy --listen 127.0.0.1:6432 --upstream 127.0.0.1:5432
//
// Run `tombstone --help` for every subcommand.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/alecthomas/kong"
	"github.com/jackc/pgx/v5/pgconn"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// cli is the command line: one struct per subcommand.
type cli struct {
	Proxy   proxyCmd   `cmd:"" help:"Run the wire-protocol proxy."`
	Reaper  reaperCmd  `cmd:"" help:"Purge tombstones and trash past their grace period (--once for cron, else a daemon)."`
	Version versionCmd `cmd:"" help:"Print the version."`
	// ParseCheck is the proxy's own trial parse of long statements.
	ParseCheck parseCheckCmd `cmd:"" name:"parse-check" hidden:"" help:"Parse the SQL on standard input (used by the proxy)."`

	// Admin commands (admin.go): straight to the database, no proxy.
	Init       initCmd       `cmd:"" help:"Install or upgrade the tombstone schema in a database."`
	Batches    batchesCmd    `cmd:"" help:"List captured deletes (batches), newest first."`
	Batch      batchCmd      `cmd:"" help:"Show one batch: tables, rows, causes, who, when, SQL, state."`
	Undelete   undeleteCmd   `cmd:"" help:"Restore a batch, a transaction, or selected rows of a table."`
	Purge      purgeCmd      `cmd:"" help:"Hard-delete a batch's tombstones now."`
	Hold       holdCmd       `cmd:"" help:"Keep a batch from the reaper and from purge."`
	Release    releaseCmd    `cmd:"" help:"Let the reaper purge a held batch again."`
	Undrop     undropCmd     `cmd:"" help:"Bring back a dropped table from the trash."`
	Tombstones tombstonesCmd `cmd:"" help:"Show the deleted rows of a table."`
	Status     statusCmd     `cmd:"" help:"Schema version, protected tables, tombstones, batches, reaper state."`
	Freeze     freezeCmd     `cmd:"" help:"Refuse every DELETE, TRUNCATE and DROP TABLE of a protected table, through every proxy, until thawed."`
	Thaw       thawCmd       `cmd:"" help:"End a freeze: deletes are captured again."`
	Trash      trashCmd      `cmd:"" help:"Tables dropped to the trash: when, by whom, until when they can be undropped."`
	Audit      auditCmd      `cmd:"" help:"Admin actions that took effect, newest first: who, when, from where, what, with what result."`
}

type versionCmd struct{}

func (versionCmd) Run() error {
	fmt.Println("tombstone", version)
	return nil
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// exitRequest is how kong's exit hook (after --help, or a parse error)
// unwinds to run.
type exitRequest int

// run parses args, runs the command and returns the exit code: 0 ok, 1 an
// operational error, 2 a usage error, or whatever code the command's
// error carries (exitCoder).
func run(args []string, stdout, stderr io.Writer) (code int) {
	var c cli
	parser, err := kong.New(&c,
		kong.Name("tombstone"),
		kong.Description("An undo button for PostgreSQL deletes."),
		kong.UsageOnError(),
		kong.Writers(stdout, stderr),
		kong.Exit(func(code int) { panic(exitRequest(code)) }),
	)
	if err != nil {
		fmt.Fprintln(stderr, "tombstone:", err)
		return exitError
	}
	defer func() {
		if r := recover(); r != nil {
			ec, ok := r.(exitRequest)
			if !ok {
				panic(r)
			}
			code = int(ec)
		}
	}()
	ctx, err := parser.Parse(args)
	if err != nil {
		if wantsJSON(args) {
			writeJSONError(stdout, err, exitUsage)
		}
		fmt.Fprintln(stderr, "tombstone:", err)
		help := "tombstone --help"
		var pe *kong.ParseError
		if errors.As(err, &pe) && pe.Context != nil && pe.Context.Command() != "" {
			help = "tombstone " + pe.Context.Command() + " --help"
		}
		fmt.Fprintf(stderr, "Run %q for usage.\n", help)
		return exitUsage
	}
	out := &countingWriter{w: stdout}
	if err := ctx.Run(&stdio{Out: out, Err: stderr}); err != nil {
		if wantsJSON(args) && out.n == 0 {
			// (A command that printed its result and then fails — a dry
			// run that found conflicts — has said it in its JSON.)
			writeJSONError(stdout, err, exitCode(err))
		}
		// The store's errors name the package already.
		fmt.Fprintln(stderr, "tombstone: "+strings.TrimPrefix(describeError(err), "tombstone: "))
		return exitCode(err)
	}
	return exitOK
}

// countingWriter counts what is written through it.
type countingWriter struct {
	w io.Writer
	n int
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += n
	return n, err
}

// wantsJSON reports whether args ask for JSON output (--json), so that
// an error is also written as JSON on stdout for the script reading it.
func wantsJSON(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		if a == "--json" || a == "--json=true" {
			return true
		}
	}
	return false
}

// jsonError is how an error reads on stdout under --json.
type jsonError struct {
	Error struct {
		Message  string `json:"message"`
		SQLState string `json:"sqlstate,omitempty"`
		Detail   string `json:"detail,omitempty"`
		Hint     string `json:"hint,omitempty"`
		ExitCode int    `json:"exit_code"`
	} `json:"error"`
}

func writeJSONError(w io.Writer, err error, code int) {
	var je jsonError
	je.Error.Message = err.Error()
	je.Error.ExitCode = code
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		je.Error.Message, je.Error.SQLState, je.Error.Detail, je.Error.Hint = pe.Message, pe.Code, pe.Detail, pe.Hint
	}
	_ = writeJSON(w, je)
}

// exitCoder is an error that picks the process exit code.
type exitCoder interface{ ExitCode() int }

func exitCode(err error) int {
	var ec exitCoder
	if errors.As(err, &ec) {
		return ec.ExitCode()
	}
	return exitError
}
