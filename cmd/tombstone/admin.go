package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tombstone-proxy/tombstone/config"
	"github.com/tombstone-proxy/tombstone/console"
	"github.com/tombstone-proxy/tombstone/tombstone"
)

// The admin commands talk to the database straight through pgx (no proxy
// needed) and run the same SQL functions as the proxy's console, with the
// connecting role's own privileges (tombstone_admin membership).
//
// Exit codes scripts can trust:
//
//	0  done
//	1  operational error (connection, permission, batch not found, …)
//	2  usage error (bad flags or arguments, a WHERE that is not one expression)
//	3  conflicts: a dry run found rows whose keys are taken since the
//	   delete, or an ON CONFLICT FAIL undelete was refused because of them
const (
	exitOK        = 0
	exitError     = 1
	exitUsage     = 2
	exitConflicts = 3
)

// stdio is where commands write; main binds it to os.Stdout/os.Stderr and
// tests to buffers.
type stdio struct {
	Out io.Writer
	Err io.Writer
}

// dbFlags are the flags every database command takes.
type dbFlags struct {
	DSN  string `name:"dsn" help:"Connection string (URL or key=value); empty uses the libpq environment (PGHOST, PGUSER, …)." env:"TOMBSTONE_DSN"`
	JSON bool   `name:"json" help:"Print JSON for scripts instead of a table."`
}

func (f dbFlags) connect(ctx context.Context) (*pgx.Conn, error) {
	conn, err := pgx.Connect(ctx, f.DSN)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	// --where conditions are validated as Postgres lexes them by default;
	// the session must agree, whatever PGOPTIONS or the role's settings
	// say (the store's functions pin it too).
	if _, err := conn.Exec(ctx, "SET standard_conforming_strings = on"); err != nil {
		conn.Close(ctx)
		return nil, fmt.Errorf("connect: %w", err)
	}
	return conn, nil
}

// cliError carries an exit code with an error.
type cliError struct {
	err  error
	code int
}

func (e *cliError) Error() string { return e.err.Error() }
func (e *cliError) Unwrap() error { return e.err }

// ExitCode implements exitCoder.
func (e *cliError) ExitCode() int { return e.code }

func usageErrorf(format string, args ...any) error {
	return &cliError{err: fmt.Errorf(format, args...), code: exitUsage}
}

// classify picks the exit code of an error from the database.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) && (pe.Code == pgerrcode.UniqueViolation || pe.Code == pgerrcode.ForeignKeyViolation) {
		return &cliError{err: err, code: exitConflicts}
	}
	return err
}

// describeError renders err for a person: the message, and for a Postgres
// error its SQLSTATE, detail and hint on their own lines.
func describeError(err error) string {
	var b strings.Builder
	b.WriteString(err.Error())
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		if pe.Detail != "" {
			b.WriteString("\nDETAIL:  " + pe.Detail)
		}
		if pe.Hint != "" {
			b.WriteString("\nHINT:  " + pe.Hint)
		}
	}
	return b.String()
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table writes aligned columns.
type table struct{ tw *tabwriter.Writer }

func newTable(w io.Writer, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
	t.row(header...)
	return t
}

func (t *table) row(cells ...string) {
	for i, c := range cells {
		cells[i] = strings.NewReplacer("\t", " ", "\n", " ").Replace(c)
	}
	fmt.Fprintln(t.tw, strings.Join(cells, "\t"))
}

func (t *table) flush() error { return t.tw.Flush() }

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Local().Format("2006-01-02 15:04:05Z07:00")
}

// timestamp turns a --since/--until value into a time with the database's
// own parser, so every timestamptz input form works ('2026-11-23 10:00',
// 'yesterday', …) and the session's time zone applies.
func timestamp(ctx context.Context, conn *pgx.Conn, flag, value string) (time.Time, error) {
	if value == "" {
		return time.Time{}, nil
	}
	var t time.Time
	if err := conn.QueryRow(ctx, "SELECT $1::text::timestamptz", value).Scan(&t); err != nil {
		return t, usageErrorf("--%s %q: %w", flag, value, err)
	}
	return t, nil
}

// initCmd installs or upgrades the store in one database.
type initCmd struct {
	dbFlags `embed:""`
	Config  string `help:"Configuration file (YAML): its protect: section says which tables are protected." type:"existingfile" env:"TOMBSTONE_CONFIG"`
}

func (c *initCmd) Run(std *stdio) error {
	cfg, err := config.Load(c.Config)
	if err != nil {
		return &cliError{err: err, code: exitUsage}
	}
	ctx := context.Background()
	conn, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	if err := tombstone.Install(ctx, conn, tombstone.InstallOptions{Protection: protection(cfg)}); err != nil {
		return err
	}
	var out struct {
		Database        string `json:"database"`
		SchemaVersion   int    `json:"schema_version"`
		ProtectedTables int    `json:"protected_tables"`
		EventTriggers   bool   `json:"event_triggers"`
	}
	if err := conn.QueryRow(ctx, `SELECT current_database(), (SELECT version FROM tombstone.schema_version),
		(SELECT count(*) FROM tombstone.protected_tables()),
		(SELECT count(*) = 2 FROM pg_catalog.pg_event_trigger WHERE evtname IN ('tombstone_ddl', 'tombstone_drop'))`).
		Scan(&out.Database, &out.SchemaVersion, &out.ProtectedTables, &out.EventTriggers); err != nil {
		return err
	}
	if c.JSON {
		return writeJSON(std.Out, out)
	}
	fmt.Fprintf(std.Out, "tombstone schema version %d installed in database %s: %d protected table(s)",
		out.SchemaVersion, out.Database, out.ProtectedTables)
	if !out.EventTriggers {
		fmt.Fprint(std.Out, " (no DDL event triggers: run init as a superuser to have them)")
	}
	fmt.Fprintln(std.Out)
	return nil
}

// batchesCmd lists batches newest first.
type batchesCmd struct {
	dbFlags `embed:""`
	Table   string `help:"Only batches that removed rows from this table."`
	Since   string `help:"Only batches since this time (any timestamptz input)."`
	Limit   int    `help:"At most this many batches." default:"50"`
}

func (c *batchesCmd) Run(std *stdio) error {
	if c.Limit <= 0 {
		return usageErrorf("--limit must be positive")
	}
	ctx := context.Background()
	conn, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	since, err := timestamp(ctx, conn, "since", c.Since)
	if err != nil {
		return err
	}
	bs, err := tombstone.ShowBatches(ctx, conn, tombstone.BatchFilter{Table: c.Table, Since: since, Limit: c.Limit})
	if err != nil {
		return err
	}
	if c.JSON {
		if bs == nil {
			bs = []tombstone.Batch{}
		}
		return writeJSON(std.Out, bs)
	}
	t := newTable(std.Out, "BATCH", "TIME", "ROLE", "APP", "CLIENT", "XID", "ROWS", "REMAINING", "STATE", "PURGE AFTER", "TABLES", "SQL")
	for _, b := range bs {
		t.row(fmt.Sprint(b.ID), fmtTime(b.StmtTime), b.Role, b.ApplicationName, b.ClientAddr, fmt.Sprint(b.XID),
			fmt.Sprint(b.Rows), fmt.Sprint(b.Remaining), b.State, fmtTime(b.PurgeAfter), b.Tables, b.SQL)
	}
	return t.flush()
}

// batchCmd describes one batch.
type batchCmd struct {
	dbFlags `embed:""`
	ID      int64 `arg:"" name:"id" help:"Batch id."`
}

func (c *batchCmd) Run(std *stdio) error {
	ctx := context.Background()
	conn, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	bt, err := tombstone.ShowBatch(ctx, conn, c.ID)
	if err != nil {
		return err
	}
	if c.JSON {
		if bt == nil {
			bt = []tombstone.BatchTable{}
		}
		return writeJSON(std.Out, bt)
	}
	if len(bt) == 0 {
		fmt.Fprintf(std.Out, "batch %d removed no rows\n", c.ID)
		return nil
	}
	b := bt[0]
	head := tabwriter.NewWriter(std.Out, 0, 0, 2, ' ', 0)
	for _, kv := range [][2]string{
		{"batch", fmt.Sprint(b.Batch)}, {"state", b.State}, {"time", fmtTime(b.StmtTime)}, {"role", b.Role},
		{"application", b.ApplicationName}, {"client", b.ClientAddr}, {"xid", fmt.Sprint(b.XID)},
		{"purge after", fmtTime(b.PurgeAfter)}, {"sql", strings.ReplaceAll(b.SQL, "\n", " ")},
	} {
		fmt.Fprintf(head, "%s:\t%s\n", kv[0], kv[1])
	}
	if err := head.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(std.Out)
	t := newTable(std.Out, "TABLE", "ROWS", "STORED", "CAUSES")
	for _, x := range bt {
		t.row(x.Table, fmt.Sprint(x.Rows), fmt.Sprint(x.Stored), x.Causes)
	}
	return t.flush()
}

// undeleteCmd restores a batch, a transaction, or selected rows.
type undeleteCmd struct {
	dbFlags    `embed:""`
	Batch      int64  `help:"Restore this batch (with --table: only its tombstones)." xor:"what"`
	XID        uint64 `name:"xid" help:"Restore every batch of this transaction." xor:"what"`
	Table      string `help:"Restore selected rows of this table, with what was deleted because of them."`
	Where      string `help:"With --table: an SQL condition on the deleted rows' columns."`
	Since      string `help:"With --table: only rows deleted at or after this time."`
	Until      string `help:"With --table: only rows deleted before this time."`
	DryRun     bool   `name:"dry-run" help:"Report per table what would come back and what conflicts; change nothing."`
	OnConflict string `name:"on-conflict" help:"What to do with rows whose key was taken since the delete: fail, skip or overwrite." enum:"fail,skip,overwrite" default:"fail"`
	OwnerCode  bool   `name:"run-owner-code" help:"Run the restored tables' owners' code (triggers, defaults, constraints) as the owners, trusting it (tombstone.restore_owner_code); without it such tables are refused unless you are their owner."`
}

// undeleteResult is the --json output of undelete.
type undeleteResult struct {
	DryRun     bool                 `json:"dry_run"`
	OnConflict string               `json:"on_conflict"`
	Restored   int64                `json:"restored"`
	Conflicts  int64                `json:"conflicts"`
	Skipped    int64                `json:"skipped"`
	Tables     []tombstone.Restored `json:"tables"`
}

func (c *undeleteCmd) Run(std *stdio) error {
	switch {
	case c.Table == "" && c.Batch == 0 && c.XID == 0:
		return usageErrorf("undelete needs --batch N, --xid X or --table T")
	case c.Table != "" && c.XID != 0:
		return usageErrorf("--xid cannot be combined with --table")
	case c.Table == "" && (c.Where != "" || c.Since != "" || c.Until != ""):
		return usageErrorf("--where, --since and --until select rows of a table: add --table")
	}
	if c.Where != "" {
		if err := console.ValidatePredicate(c.Table, c.Where, nil); err != nil {
			return usageErrorf("--where: %w", err)
		}
	}
	ctx := context.Background()
	conn, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	if c.OwnerCode {
		if _, err := conn.Exec(ctx, "SET tombstone.restore_owner_code = on"); err != nil {
			return err
		}
	}
	opts := tombstone.UndeleteOptions{DryRun: c.DryRun, OnConflict: tombstone.OnConflict(c.OnConflict)}
	var rs []tombstone.Restored
	switch {
	case c.Table != "":
		since, err := timestamp(ctx, conn, "since", c.Since)
		if err != nil {
			return err
		}
		until, err := timestamp(ctx, conn, "until", c.Until)
		if err != nil {
			return err
		}
		rs, err = tombstone.UndeleteRows(ctx, conn, tombstone.RowSelection{Table: c.Table, Where: c.Where, Batch: c.Batch,
			Since: since, Until: until}, opts)
		if err != nil {
			return classify(err)
		}
	case c.XID != 0:
		if rs, err = tombstone.UndeleteTransaction(ctx, conn, c.XID, opts); err != nil {
			return classify(err)
		}
	default:
		if rs, err = tombstone.UndeleteBatch(ctx, conn, c.Batch, opts); err != nil {
			return classify(err)
		}
	}
	res := undeleteResult{DryRun: c.DryRun, OnConflict: c.OnConflict, Tables: rs}
	if res.Tables == nil {
		res.Tables = []tombstone.Restored{}
	}
	for _, r := range rs {
		res.Restored += r.Restored
		res.Conflicts += r.Conflicts
		res.Skipped += r.Skipped
	}
	if c.JSON {
		err = writeJSON(std.Out, res)
	} else {
		head := "RESTORED"
		if c.DryRun {
			head = "WOULD RESTORE"
		}
		t := newTable(std.Out, "TABLE", head, "CONFLICTS", "SKIPPED")
		for _, r := range rs {
			t.row(r.Table, fmt.Sprint(r.Restored), fmt.Sprint(r.Conflicts), fmt.Sprint(r.Skipped))
		}
		err = t.flush()
		if err == nil {
			switch {
			case c.DryRun && res.Conflicts+res.Skipped > 0:
				fmt.Fprintf(std.Out, "dry run: %d row(s) would come back, %d conflict(s) with rows written since the delete, %d skipped with their parents; nothing changed\n", res.Restored, res.Conflicts, res.Skipped)
			case c.DryRun:
				fmt.Fprintf(std.Out, "dry run: %d row(s) would come back; nothing changed\n", res.Restored)
			default:
				fmt.Fprintf(std.Out, "%d row(s) restored", res.Restored)
				if res.Conflicts > 0 {
					fmt.Fprintf(std.Out, ", %d conflict(s) %s", res.Conflicts, map[string]string{"skip": "skipped (still tombstones)", "overwrite": "overwritten"}[c.OnConflict])
				}
				if res.Skipped > 0 {
					fmt.Fprintf(std.Out, ", %d skipped with their parents (still tombstones)", res.Skipped)
				}
				fmt.Fprintln(std.Out)
			}
		}
	}
	if err != nil {
		return err
	}
	if c.DryRun && res.Conflicts+res.Skipped > 0 {
		return &cliError{err: fmt.Errorf("dry run found %d conflict(s), %d row(s) skipped with their parents", res.Conflicts, res.Skipped), code: exitConflicts}
	}
	return nil
}

// batchArg is an optional batch id as a query argument (NULL when 0).
func batchArg(id int64) *int64 {
	if id == 0 {
		return nil
	}
	return &id
}

// batchIDFlag is the --batch flag of purge, hold and release.
type batchIDFlag struct {
	Batch int64 `help:"Batch id." required:""`
}

// purgeCmd hard-deletes a batch's tombstones now.
type purgeCmd struct {
	dbFlags     `embed:""`
	batchIDFlag `embed:""`
}

func (c *purgeCmd) Run(std *stdio) error {
	ctx := context.Background()
	conn, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	ps, err := tombstone.PurgeBatch(ctx, conn, c.Batch)
	if err != nil {
		return err
	}
	if c.JSON {
		if ps == nil {
			ps = []tombstone.Purged{}
		}
		return writeJSON(std.Out, ps)
	}
	t := newTable(std.Out, "TABLE", "PURGED")
	for _, p := range ps {
		t.row(p.Table, fmt.Sprint(p.Purged))
	}
	return t.flush()
}

// holdCmd keeps a batch from the reaper; releaseCmd lets it go again.
type holdCmd struct {
	dbFlags     `embed:""`
	batchIDFlag `embed:""`
}

func (c *holdCmd) Run(std *stdio) error { return setHold(c.dbFlags, c.Batch, true, std) }

type releaseCmd struct {
	dbFlags     `embed:""`
	batchIDFlag `embed:""`
}

func (c *releaseCmd) Run(std *stdio) error { return setHold(c.dbFlags, c.Batch, false, std) }

func setHold(f dbFlags, id int64, hold bool, std *stdio) error {
	ctx := context.Background()
	conn, err := f.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	if hold {
		err = tombstone.HoldBatch(ctx, conn, id)
	} else {
		err = tombstone.ReleaseBatch(ctx, conn, id)
	}
	if err != nil {
		return err
	}
	if f.JSON {
		return writeJSON(std.Out, map[string]any{"batch": id, "held": hold})
	}
	if hold {
		fmt.Fprintf(std.Out, "batch %d held: the reaper and PURGE leave it alone until released\n", id)
	} else {
		fmt.Fprintf(std.Out, "batch %d released\n", id)
	}
	return nil
}

// undropCmd brings back a table dropped under the trash policy.
type undropCmd struct {
	dbFlags `embed:""`
	Table   string `arg:"" help:"The dropped table, as it was named (schema.table)."`
}

func (c *undropCmd) Run(std *stdio) error {
	return c.query(std, "SELECT * FROM tombstone.undrop_table($1)", c.Table)
}

// freezeCmd is FREEZE DELETES.
type freezeCmd struct {
	dbFlags `embed:""`
}

func (c *freezeCmd) Run(std *stdio) error {
	return c.query(std, "SELECT * FROM tombstone.set_deletes_frozen(true)")
}

// thawCmd is THAW DELETES.
type thawCmd struct {
	dbFlags `embed:""`
}

func (c *thawCmd) Run(std *stdio) error {
	return c.query(std, "SELECT * FROM tombstone.set_deletes_frozen(false)")
}

// trashCmd is SHOW TRASH.
type trashCmd struct {
	dbFlags `embed:""`
}

func (c *trashCmd) Run(std *stdio) error {
	return c.query(std, "SELECT * FROM tombstone.show_trash()")
}

// auditCmd is SHOW AUDIT.
type auditCmd struct {
	dbFlags `embed:""`
	Limit   int `help:"At most this many actions, newest first." default:"50"`
}

func (c *auditCmd) Run(std *stdio) error {
	if c.Limit <= 0 {
		return usageErrorf("--limit must be positive")
	}
	return c.query(std, "SELECT * FROM tombstone.show_audit($1)", c.Limit)
}

// tombstonesCmd shows the deleted rows of a table.
type tombstonesCmd struct {
	dbFlags `embed:""`
	Table   string `arg:"" help:"The table whose deleted rows to show."`
	Where   string `help:"An SQL condition on the deleted rows' columns."`
	Batch   int64  `help:"Only the tombstones of this batch."`
	Limit   int    `help:"At most this many rows." default:"50"`
}

func (c *tombstonesCmd) Run(std *stdio) error {
	if c.Limit <= 0 {
		return usageErrorf("--limit must be positive")
	}
	var where *string
	if c.Where != "" {
		if err := console.ValidatePredicate(c.Table, c.Where, nil); err != nil {
			return usageErrorf("--where: %w", err)
		}
		where = &c.Where
	}
	ctx := context.Background()
	conn, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	// The row as text keeps its columns in table order.
	rows, err := conn.Query(ctx, `SELECT batch, cause, deleted_at, "row"::text
		FROM tombstone.show_tombstones(tombstone._live_or_trashed(pg_catalog.to_regclass($1), $1), $2, $3, $4)`, c.Table, where, c.Limit, batchArg(c.Batch))
	if err != nil {
		return err
	}
	type tombstoneRow struct {
		Batch     int64           `json:"batch"`
		Cause     string          `json:"cause"`
		DeletedAt time.Time       `json:"deleted_at"`
		Row       json.RawMessage `json:"row"`
	}
	out := []tombstoneRow{}
	for rows.Next() {
		var r tombstoneRow
		var text string
		if err := rows.Scan(&r.Batch, &r.Cause, &r.DeletedAt, &text); err != nil {
			return err
		}
		r.Row = json.RawMessage(text)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if c.JSON {
		return writeJSON(std.Out, out)
	}
	t := newTable(std.Out, "BATCH", "CAUSE", "DELETED AT", "ROW")
	for _, r := range out {
		t.row(fmt.Sprint(r.Batch), r.Cause, fmtTime(r.DeletedAt), string(r.Row))
	}
	return t.flush()
}

// statusCmd is SHOW TOMBSTONE STATUS.
type statusCmd struct {
	dbFlags `embed:""`
}

func (c *statusCmd) Run(std *stdio) error {
	ctx := context.Background()
	conn, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, "SELECT name, value FROM tombstone.status()")
	if err != nil {
		return err
	}
	type item struct{ name, value string }
	var items []item
	for rows.Next() {
		var it item
		var v *string
		if err := rows.Scan(&it.name, &v); err != nil {
			return err
		}
		if v != nil {
			it.value = *v
		}
		items = append(items, it)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if c.JSON {
		m := map[string]string{}
		for _, it := range items {
			m[it.name] = it.value
		}
		return writeJSON(std.Out, m)
	}
	t := newTable(std.Out, "NAME", "VALUE")
	for _, it := range items {
		t.row(it.name, it.value)
	}
	return t.flush()
}

// query runs sql and prints whatever columns it returns: as a table, or
// as a JSON array of objects (json/jsonb columns embedded as JSON).
func (f dbFlags) query(std *stdio, sql string, args ...any) error {
	ctx := context.Background()
	conn, err := f.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, sql, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	fds := rows.FieldDescriptions()
	var header []string
	for _, fd := range fds {
		header = append(header, strings.ToUpper(fd.Name))
	}
	var objs []map[string]any
	var cells [][]string
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return err
		}
		obj := map[string]any{}
		var line []string
		for i, v := range vals {
			obj[fds[i].Name] = v
			line = append(line, textValue(v))
		}
		objs = append(objs, obj)
		cells = append(cells, line)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if f.JSON {
		if objs == nil {
			objs = []map[string]any{}
		}
		return writeJSON(std.Out, objs)
	}
	t := newTable(std.Out, header...)
	for _, l := range cells {
		t.row(l...)
	}
	return t.flush()
}

func textValue(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case time.Time:
		return fmtTime(x)
	case map[string]any, []any:
		b, err := json.Marshal(x)
		if err != nil {
			return fmt.Sprint(x)
		}
		return string(b)
	case fmt.Stringer:
		return x.String()
	default:
		return fmt.Sprint(x)
	}
}
