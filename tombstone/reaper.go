package tombstone

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/tombstone-proxy/tombstone/pgerr"
	"go.uber.org/zap"
)

// ReaperLockKey is the session advisory lock key reapers without Redis
// take, one per database ("reaper" in ASCII).
const ReaperLockKey int64 = 0x726561706572

// Fence is what the reaper checks before each chunk: that it still holds
// the right to work. coord.RedisLease and coord.AdvisoryLock implement it.
type Fence interface {
	// Check returns the fencing token the database must accept (0: none
	// to check) or an error when the right is lost.
	Check(ctx context.Context) (token int64, err error)
}

// ReaperOptions configure a reaper run. The zero value is usable.
type ReaperOptions struct {
	// ChunkRows bounds the tombstones one transaction purges (default
	// 50000). Whole batches are purged together up to this many rows; a
	// bigger batch is cut.
	ChunkRows int64
	// LockTimeout and StatementTimeout are SET LOCAL in every chunk's
	// transaction (defaults 2s and 60s), so that a chunk never queues
	// behind application traffic for long.
	LockTimeout      time.Duration
	StatementTimeout time.Duration
	// LockRetries is how many times a chunk that timed out on a lock (or
	// on statement_timeout) is retried, with a growing pause, before the
	// run gives up and leaves the rest to the next run (0: the default,
	// 5; negative: none).
	LockRetries int
	// RetryPause is the first pause before such a retry (default 500ms),
	// doubled each time.
	RetryPause time.Duration
	// DryRun lists what would be purged (Report.Due) and changes nothing.
	DryRun bool
	// Fence is checked before every chunk; nil checks nothing (the caller
	// guarantees that it is the only reaper).
	Fence Fence
	// Logger receives one line per chunk at debug level; nil: none.
	Logger *zap.Logger
	// OnChunk, when set, is called after every committed chunk.
	OnChunk func(Chunk)
}

// Chunk is what one committed chunk did.
type Chunk struct {
	Batches int64
	Rows    int64
	// Trash is the original name of a trash table the chunk dropped.
	Trash string
}

// DueItem is one line of a dry run: the tombstones of one batch in one
// table, or (Batch 0) an expired trash table.
type DueItem struct {
	Batch      int64     `json:"batch,omitempty"`
	Table      string    `json:"table"`
	Rows       int64     `json:"rows"`
	PurgeAfter time.Time `json:"purge_after"`
}

// ReapReport is what a run did.
type ReapReport struct {
	Batches     int64         `json:"batches_purged"`
	Rows        int64         `json:"rows_purged"`
	TrashTables int64         `json:"trash_tables_dropped"`
	Chunks      int64         `json:"chunks"`
	LockRetries int64         `json:"lock_retries"`
	Duration    time.Duration `json:"duration_ns"`
	// Paused is true when the run found the reaper paused and stopped.
	Paused bool `json:"paused"`
	// Standby is true when another reaper held the lease: it does the
	// work, and this run did nothing.
	Standby bool `json:"standby,omitempty"`
	// Busy is true when due batches were left because others held their
	// locks (a restore in progress); the next run takes them.
	Busy bool `json:"busy"`
	// NextExpiry is when the next batch or trash table falls due (nil:
	// none waiting), by the database clock.
	NextExpiry *time.Time `json:"next_expiry"`
	// Due is the dry run's list.
	Due []DueItem `json:"due,omitempty"`
}

// RowsPerSecond is the run's purge rate.
func (r ReapReport) RowsPerSecond() float64 {
	if r.Duration <= 0 {
		return 0
	}
	return float64(r.Rows) / r.Duration.Seconds()
}

// IsLeaseLost reports whether err means the reaper lost its right to
// work (the database refused its fencing token).
func IsLeaseLost(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == pgerr.LeaseLost
}

// isRetryable: the chunk could not get a lock in time (55P03), was
// cancelled by statement_timeout (57014), or lost a serialization or
// deadlock race (40001, 40P01). Nothing was changed; try again later.
func isRetryable(err error) bool {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return false
	}
	switch pe.Code {
	case pgerrcode.LockNotAvailable, pgerrcode.QueryCanceled, pgerrcode.SerializationFailure, pgerrcode.DeadlockDetected:
		return true
	}
	return false
}

func (o *ReaperOptions) defaults() {
	if o.ChunkRows <= 0 {
		o.ChunkRows = 50000
	}
	if o.LockTimeout <= 0 {
		o.LockTimeout = 2 * time.Second
	}
	if o.StatementTimeout <= 0 {
		o.StatementTimeout = time.Minute
	}
	if o.LockRetries < 0 {
		o.LockRetries = 0
	} else if o.LockRetries == 0 {
		o.LockRetries = 5
	}
	if o.RetryPause <= 0 {
		o.RetryPause = 500 * time.Millisecond
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
}

// Reap runs the reaper once over the database conn is connected to:
// it purges, chunk by chunk, the tombstones of every batch whose
// purge_after has passed by the database clock (held batches excepted),
// then drops the expired trash tables. It stops early, successfully, when
// the reaper is paused (Report.Paused), and with an error when its fence
// fails, a chunk keeps failing on locks, or ctx ends. Each chunk is its own
// transaction (tombstone.reap_chunk, tombstone.reap_trash), so a run
// stopped at any point — even by kill -9 — leaves a consistent store
// that the next run finishes. conn's role must be a member of
// tombstone_admin (or a superuser).
func Reap(ctx context.Context, conn *pgx.Conn, opts ReaperOptions) (rep ReapReport, err error) {
	opts.defaults()
	start := time.Now()
	defer func() { rep.Duration = time.Since(start) }()

	if opts.DryRun {
		due, err := reaperDue(ctx, conn)
		if err != nil {
			return rep, err
		}
		rep.Due = due
		if err := conn.QueryRow(ctx, "SELECT tombstone._reaper_paused(false)").Scan(&rep.Paused); err != nil {
			return rep, fmt.Errorf("tombstone: reaper: %w", err)
		}
		rep.NextExpiry, err = nextExpiry(ctx, conn)
		return rep, err
	}

	// Batches first, then the trash.
	for _, step := range []func(context.Context, *pgx.Conn, int64) (Chunk, bool, bool, error){
		func(ctx context.Context, conn *pgx.Conn, token int64) (Chunk, bool, bool, error) {
			return reapChunk(ctx, conn, opts.ChunkRows, token)
		},
		reapTrash,
	} {
		retries := 0
		for {
			if err := ctx.Err(); err != nil {
				return rep, err
			}
			var token int64
			if opts.Fence != nil {
				t, err := opts.Fence.Check(ctx)
				if err != nil {
					return rep, fmt.Errorf("tombstone: reaper: %w", err)
				}
				token = t
			}
			c, more, paused, err := runChunk(ctx, conn, opts, token, step)
			if err != nil {
				if isRetryable(err) && retries < opts.LockRetries {
					pause := opts.RetryPause << retries
					retries++
					rep.LockRetries++
					opts.Logger.Info("reaper chunk could not get its locks in time; retrying",
						zap.Error(err), zap.Int("retry", retries), zap.Duration("pause", pause))
					select {
					case <-time.After(pause):
					case <-ctx.Done():
						return rep, ctx.Err()
					}
					continue
				}
				if isRetryable(err) {
					return rep, fmt.Errorf("tombstone: reaper: a chunk failed %d times on locks or timeouts; the rest is left for the next run: %w", retries+1, err)
				}
				return rep, fmt.Errorf("tombstone: reaper: %w", err)
			}
			retries = 0
			if paused {
				rep.Paused = true
				opts.Logger.Info("reaper is paused (RESUME REAPER to resume); stopping")
				rep.NextExpiry, err = nextExpiry(ctx, conn)
				return rep, err
			}
			if c.Rows > 0 || c.Batches > 0 || c.Trash != "" {
				rep.Chunks++
				rep.Rows += c.Rows
				rep.Batches += c.Batches
				if c.Trash != "" {
					rep.TrashTables++
				}
				opts.Logger.Debug("reaper chunk", zap.Int64("rows", c.Rows), zap.Int64("batches", c.Batches), zap.String("trash", c.Trash))
				if opts.OnChunk != nil {
					opts.OnChunk(c)
				}
			} else if more {
				// Nothing done but more due: only locked batches were
				// found; they are someone else's right now.
				rep.Busy = true
				break
			}
			if !more {
				break
			}
		}
	}
	// The catalog log keeps a day of changes (check_catalog's fast path
	// for a proxy whose catalog is older reads the full check instead).
	// (A schema older than the log has none.)
	var hasLog bool
	if err := conn.QueryRow(ctx, "SELECT to_regprocedure('tombstone.prune_catalog_log(interval)') IS NOT NULL").Scan(&hasLog); err != nil {
		return rep, fmt.Errorf("tombstone: reaper: %w", err)
	}
	if hasLog {
		if _, err := conn.Exec(ctx, "SELECT tombstone.prune_catalog_log()"); err != nil {
			return rep, fmt.Errorf("tombstone: reaper: prune the catalog log: %w", err)
		}
	}
	// Due batches left are locked by others (SKIP LOCKED passed them).
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM tombstone.batches
		WHERE purged_at IS NULL AND NOT held AND purge_after <= now())`).Scan(&rep.Busy); err != nil {
		return rep, fmt.Errorf("tombstone: reaper: %w", err)
	}
	rep.NextExpiry, err = nextExpiry(ctx, conn)
	return rep, err
}

// runChunk runs one step in its own transaction with the timeouts set.
func runChunk(ctx context.Context, conn *pgx.Conn, opts ReaperOptions, token int64,
	step func(context.Context, *pgx.Conn, int64) (Chunk, bool, bool, error)) (c Chunk, more, paused bool, err error) {
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if err := pinSearchPath(ctx, tx); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "SELECT pg_catalog.set_config('lock_timeout', $1, true), pg_catalog.set_config('statement_timeout', $2, true)",
			strconv.FormatInt(opts.LockTimeout.Milliseconds(), 10), strconv.FormatInt(opts.StatementTimeout.Milliseconds(), 10)); err != nil {
			return err
		}
		var err error
		c, more, paused, err = step(ctx, tx.Conn(), token)
		return err
	})
	return c, more, paused, err
}

func nullToken(token int64) *int64 {
	if token == 0 {
		return nil
	}
	return &token
}

func reapChunk(ctx context.Context, conn *pgx.Conn, rows, token int64) (Chunk, bool, bool, error) {
	var c Chunk
	var more, paused bool
	err := conn.QueryRow(ctx, "SELECT batches, rows, paused, more FROM tombstone.reap_chunk($1, $2)", rows, nullToken(token)).
		Scan(&c.Batches, &c.Rows, &paused, &more)
	return c, more, paused, err
}

func reapTrash(ctx context.Context, conn *pgx.Conn, token int64) (Chunk, bool, bool, error) {
	var c Chunk
	var name *string
	var dropped, paused bool
	err := conn.QueryRow(ctx, "SELECT table_name, dropped, paused FROM tombstone.reap_trash($1)", nullToken(token)).
		Scan(&name, &dropped, &paused)
	if err != nil || name == nil {
		return c, false, paused, err
	}
	c.Trash = *name
	// One table per call; there may be more.
	return c, true, paused, nil
}

func reaperDue(ctx context.Context, conn *pgx.Conn) ([]DueItem, error) {
	rows, err := conn.Query(ctx, "SELECT coalesce(batch, 0), coalesce(table_name, ''), coalesce(rows, 0), purge_after FROM tombstone.reaper_due() ORDER BY purge_after, batch NULLS LAST, table_name")
	if err != nil {
		return nil, fmt.Errorf("tombstone: reaper dry run: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (DueItem, error) {
		var d DueItem
		err := r.Scan(&d.Batch, &d.Table, &d.Rows, &d.PurgeAfter)
		return d, err
	})
	if err != nil {
		return nil, fmt.Errorf("tombstone: reaper dry run: %w", err)
	}
	return out, nil
}

func nextExpiry(ctx context.Context, conn *pgx.Conn) (*time.Time, error) {
	var t *time.Time
	if err := conn.QueryRow(ctx, "SELECT tombstone.reaper_next_expiry()").Scan(&t); err != nil {
		return nil, fmt.Errorf("tombstone: reaper next expiry: %w", err)
	}
	return t, nil
}

// ReaperFenceToken is the newest fencing token a reaper used in this
// database (tombstone.reaper_fence_token); a new Redis lease must take a
// larger one.
func ReaperFenceToken(ctx context.Context, q Querier) (int64, error) {
	var t int64
	if err := q.QueryRow(ctx, "SELECT tombstone.reaper_fence_token()").Scan(&t); err != nil {
		return 0, fmt.Errorf("tombstone: reaper fence token: %w", err)
	}
	return t, nil
}
