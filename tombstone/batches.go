package tombstone

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/tombstone-proxy/tombstone/pgerr"
)

// Querier is what the batch functions need from a connection: a
// *pgx.Conn, a pgx.Tx or a *pgxpool.Pool. They run the store's SQL
// functions, with the caller's privileges (tombstone_admin membership is
// required) and inside the caller's transaction if there is one.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// IsCatalogChanged reports whether err is the check_catalog error: the
// catalog must be reloaded and the statement may be retried.
func IsCatalogChanged(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == pgerr.CatalogChanged
}

// The states of a batch, as show_batches reports them.
const (
	StateActive   = "active"
	StateHeld     = "held"
	StateRestored = "restored"
	StatePurged   = "purged"
	// StatePartlyRestored is a batch some of whose rows a restore brought
	// back while others are still tombstones (SHOW BATCH n says which).
	StatePartlyRestored = "partly restored"
)

// BatchFilter narrows ShowBatches. The zero value lists the newest 50.
type BatchFilter struct {
	// Table ("schema.table" or a name the session's search_path
	// resolves) keeps batches that removed rows from it.
	Table string
	// Since keeps batches whose statement ran at or after it.
	Since time.Time
	// Limit bounds the rows returned; zero means 50.
	Limit int
}

// Batch is one captured statement, as tombstone.show_batches lists it.
type Batch struct {
	ID              int64     `json:"batch"`
	StmtTime        time.Time `json:"stmt_time"`
	Role            string    `json:"role"`
	ApplicationName string    `json:"application_name"`
	ClientAddr      string    `json:"client_addr"`
	XID             uint64    `json:"xid"`
	// Tables summarises rows per table: "public.sites=10, public.products=30".
	Tables     string    `json:"tables"`
	Rows       int64     `json:"rows"`
	State      string    `json:"state"`
	PurgeAfter time.Time `json:"purge_after"`
	// SQL is the statement text, cut to about 80 characters.
	SQL string `json:"sql"`
	// Remaining is how many of the batch's tombstones are still stored:
	// Rows while active or held, fewer once partly restored, 0 once
	// restored or purged.
	Remaining int64 `json:"remaining"`
}

// BatchTable is one table of a batch, as tombstone.show_batch describes it.
type BatchTable struct {
	Batch int64  `json:"batch"`
	Table string `json:"table"`
	// Rows is how many rows the statement removed from the table.
	Rows int64 `json:"rows"`
	// Stored is how many tombstones of the table are still stored, and
	// Causes their breakdown: "cascade=30, delete=10".
	Stored          int64     `json:"stored"`
	Causes          string    `json:"causes"`
	StmtTime        time.Time `json:"stmt_time"`
	Role            string    `json:"role"`
	ApplicationName string    `json:"application_name"`
	ClientAddr      string    `json:"client_addr"`
	XID             uint64    `json:"xid"`
	State           string    `json:"state"`
	PurgeAfter      time.Time `json:"purge_after"`
	SQL             string    `json:"sql"`
}

// OnConflict says what an undelete does with a row whose key is taken by
// a row written since the delete.
type OnConflict string

// The conflict modes of an undelete.
const (
	// ConflictFail aborts the whole undelete (SQLSTATE 23505, the table
	// and the conflicting keys in the detail). The default.
	ConflictFail OnConflict = "fail"
	// ConflictSkip keeps the newer row and restores the rest; skipped
	// rows stay tombstones.
	ConflictSkip OnConflict = "skip"
	// ConflictOverwrite replaces the newer row with the restored one.
	ConflictOverwrite OnConflict = "overwrite"
)

// UndeleteOptions are the options every undelete takes.
type UndeleteOptions struct {
	// DryRun reports what would be restored and what conflicts, and
	// changes nothing.
	DryRun bool
	// OnConflict defaults to ConflictFail.
	OnConflict OnConflict
}

func (o UndeleteOptions) mode() string {
	if o.OnConflict == "" {
		return string(ConflictFail)
	}
	return string(o.OnConflict)
}

// RowSelection says which tombstones of one table UndeleteRows restores.
// Zero fields do not narrow the selection.
type RowSelection struct {
	// Table is the table whose rows are selected (required).
	Table string
	// Where is a SQL expression over the table's columns. It is embedded
	// in dynamic SQL as is: the caller must have validated it (the proxy
	// parses it with pg_query) — never pass unchecked user text.
	Where string
	// Batch keeps tombstones of one batch.
	Batch int64
	// Since and Until bound the tombstones' deletion time [Since, Until).
	Since, Until time.Time
}

// Restored is what an undelete did (or, in a dry run, would do) to one
// table: rows re-inserted, overwritten or re-linked; conflicts met (keys
// taken since the delete: left as tombstones, or overwritten under
// OVERWRITE); and rows skipped with the rows they depend on (left as
// tombstones: restoring them would have attached them to a row they did
// not reference when deleted). Under ON CONFLICT FAIL, a dry run with
// conflicts or skipped rows means the run refuses.
type Restored struct {
	Table     string `json:"table"`
	Restored  int64  `json:"restored"`
	Conflicts int64  `json:"conflicts"`
	Skipped   int64  `json:"skipped"`
}

// Purged is how many tombstones of one table a purge removed.
type Purged struct {
	Table  string `json:"table"`
	Purged int64  `json:"purged"`
}

func nullText(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func parseXID(s string) (uint64, error) {
	return strconv.ParseUint(s, 10, 64)
}

// ShowBatches lists batches newest first (tombstone.show_batches).
func ShowBatches(ctx context.Context, q Querier, f BatchFilter) ([]Batch, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = 50
	}
	rows, err := q.Query(ctx, `SELECT batch, stmt_time, role::text, application_name, coalesce(client_addr, ''),
		xid::text, coalesce(tables, ''), rows, state, purge_after, sql, remaining
		FROM tombstone.show_batches($1::text::regclass, $2, $3)`, nullText(f.Table), nullTime(f.Since), limit)
	if err != nil {
		return nil, fmt.Errorf("tombstone: show batches: %w", err)
	}
	defer rows.Close()
	var out []Batch
	for rows.Next() {
		var b Batch
		var xid string
		if err := rows.Scan(&b.ID, &b.StmtTime, &b.Role, &b.ApplicationName, &b.ClientAddr, &xid,
			&b.Tables, &b.Rows, &b.State, &b.PurgeAfter, &b.SQL, &b.Remaining); err != nil {
			return nil, fmt.Errorf("tombstone: show batches: %w", err)
		}
		if b.XID, err = parseXID(xid); err != nil {
			return nil, fmt.Errorf("tombstone: show batches: xid %q: %w", xid, err)
		}
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("tombstone: show batches: %w", err)
	}
	return out, nil
}

// ShowBatch describes one batch, one row per table (tombstone.show_batch).
func ShowBatch(ctx context.Context, q Querier, id int64) ([]BatchTable, error) {
	rows, err := q.Query(ctx, `SELECT batch, table_name, coalesce(rows, 0), stored, causes, stmt_time, role::text,
		application_name, coalesce(client_addr, ''), xid::text, state, purge_after, sql
		FROM tombstone.show_batch($1)`, id)
	if err != nil {
		return nil, fmt.Errorf("tombstone: show batch %d: %w", id, err)
	}
	defer rows.Close()
	var out []BatchTable
	for rows.Next() {
		var b BatchTable
		var xid string
		if err := rows.Scan(&b.Batch, &b.Table, &b.Rows, &b.Stored, &b.Causes, &b.StmtTime, &b.Role,
			&b.ApplicationName, &b.ClientAddr, &xid, &b.State, &b.PurgeAfter, &b.SQL); err != nil {
			return nil, fmt.Errorf("tombstone: show batch %d: %w", id, err)
		}
		if b.XID, err = parseXID(xid); err != nil {
			return nil, fmt.Errorf("tombstone: show batch %d: xid %q: %w", id, xid, err)
		}
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("tombstone: show batch %d: %w", id, err)
	}
	return out, nil
}

func scanRestored(rows pgx.Rows, err error) ([]Restored, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Restored
	for rows.Next() {
		var r Restored
		if err := rows.Scan(&r.Table, &r.Restored, &r.Conflicts, &r.Skipped); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// UndeleteBatch restores every row of one batch atomically
// (tombstone.undelete_batch): parents before children, SET NULL links
// re-linked, restored tombstones removed, the batch marked restored.
func UndeleteBatch(ctx context.Context, q Querier, id int64, opts UndeleteOptions) ([]Restored, error) {
	out, err := scanRestored(q.Query(ctx, "SELECT * FROM tombstone.undelete_batch($1, $2, $3)", id, opts.DryRun, opts.mode()))
	if err != nil {
		return nil, fmt.Errorf("tombstone: undelete batch %d: %w", id, err)
	}
	return out, nil
}

// UndeleteTransaction restores every batch written by one transaction
// (tombstone.undelete_transaction).
func UndeleteTransaction(ctx context.Context, q Querier, xid uint64, opts UndeleteOptions) ([]Restored, error) {
	out, err := scanRestored(q.Query(ctx, "SELECT * FROM tombstone.undelete_transaction($1::text::xid8, $2, $3)",
		strconv.FormatUint(xid, 10), opts.DryRun, opts.mode()))
	if err != nil {
		return nil, fmt.Errorf("tombstone: undelete transaction %d: %w", xid, err)
	}
	return out, nil
}

// UndeleteRows restores the selected tombstones of one table and what the
// same batches removed because of them — cascade descendants at any
// depth and SET NULL links — and nothing else (tombstone.undelete_rows).
func UndeleteRows(ctx context.Context, q Querier, sel RowSelection, opts UndeleteOptions) ([]Restored, error) {
	var batch *int64
	if sel.Batch != 0 {
		batch = &sel.Batch
	}
	out, err := scanRestored(q.Query(ctx, "SELECT * FROM tombstone.undelete_rows($1::text::regclass, $2, $3, $4, $5, $6, $7)",
		sel.Table, nullText(sel.Where), batch, nullTime(sel.Since), nullTime(sel.Until), opts.DryRun, opts.mode()))
	if err != nil {
		return nil, fmt.Errorf("tombstone: undelete from %s: %w", sel.Table, err)
	}
	return out, nil
}

// PurgeBatch hard-deletes the tombstones of one batch now
// (tombstone.purge_batch). A held batch is refused.
func PurgeBatch(ctx context.Context, q Querier, id int64) ([]Purged, error) {
	rows, err := q.Query(ctx, "SELECT table_name, purged FROM tombstone.purge_batch($1)", id)
	if err != nil {
		return nil, fmt.Errorf("tombstone: purge batch %d: %w", id, err)
	}
	defer rows.Close()
	var out []Purged
	for rows.Next() {
		var p Purged
		if err := rows.Scan(&p.Table, &p.Purged); err != nil {
			return nil, fmt.Errorf("tombstone: purge batch %d: %w", id, err)
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("tombstone: purge batch %d: %w", id, err)
	}
	return out, nil
}

// HoldBatch keeps a batch from the reaper and from PurgeBatch until
// ReleaseBatch (tombstone.hold_batch).
func HoldBatch(ctx context.Context, q Querier, id int64) error {
	if _, err := q.Exec(ctx, "SELECT tombstone.hold_batch($1, true)", id); err != nil {
		return fmt.Errorf("tombstone: hold batch %d: %w", id, err)
	}
	return nil
}

// ReleaseBatch undoes HoldBatch (tombstone.release_batch).
func ReleaseBatch(ctx context.Context, q Querier, id int64) error {
	if _, err := q.Exec(ctx, "SELECT tombstone.release_batch($1)", id); err != nil {
		return fmt.Errorf("tombstone: release batch %d: %w", id, err)
	}
	return nil
}
