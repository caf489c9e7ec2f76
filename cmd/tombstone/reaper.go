package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/tombstone-proxy/tombstone/coord"
	"github.com/tombstone-proxy/tombstone/tombstone"
)

// reaperCmd is `tombstone reaper`: purge expired tombstones and trash,
// once (cron) or every --interval (daemon).
//
// Exit codes with --once: 0 when the run completed — also when another
// reaper holds the lease (it does the work) or the reaper is paused; 1
// when the run did not complete (connection lost, lease lost, a chunk kept
// failing on locks); 2 on usage errors.
type reaperCmd struct {
	DSN      string        `name:"dsn" help:"Connection string of the database to reap (URL or key=value); empty uses the libpq environment (PGHOST, PGUSER, …). The role must be a member of tombstone_admin." env:"TOMBSTONE_DSN"`
	Once     bool          `name:"once" help:"Run once and exit (cron, Kubernetes CronJob); the exit code says whether the run completed."`
	Interval time.Duration `name:"interval" default:"1m" help:"Time between runs as a daemon." env:"TOMBSTONE_REAPER_INTERVAL"`
	DryRun   bool          `name:"dry-run" help:"Print per batch and table what would be purged, and the expired trash tables; purge nothing."`
	JSON     bool          `name:"json" help:"Print the report as JSON."`
	All      bool          `name:"all-databases" help:"Reap every database of the server that has the store: --dsn names where to connect to list them; each run names the databases it could not reach and those without the store." env:"TOMBSTONE_REAPER_ALL_DATABASES"`
	Like     string        `name:"databases-like" default:"%" help:"With --all-databases: only the databases whose names match this LIKE pattern." env:"TOMBSTONE_REAPER_DATABASES_LIKE"`

	Chunk            int64         `name:"chunk" default:"50000" help:"Tombstones purged per transaction at most." env:"TOMBSTONE_REAPER_CHUNK"`
	LockTimeout      time.Duration `name:"lock-timeout" default:"2s" help:"SET LOCAL lock_timeout of every chunk: a chunk never waits longer behind application locks (must be positive)."`
	StatementTimeout time.Duration `name:"statement-timeout" default:"60s" help:"SET LOCAL statement_timeout of every chunk."`
	LockRetries      int           `name:"lock-retries" default:"5" help:"Retries (with a doubling pause) of a chunk that timed out, before the run gives up and leaves the rest to the next run; 0: none."`

	Redis       string        `name:"redis" help:"Redis address (host:port) for the fleet-wide reaper lease; without it a Postgres advisory lock keeps to one reaper per database." env:"TOMBSTONE_REDIS"`
	RedisPrefix string        `name:"redis-prefix" default:"tombstone:" help:"Prefix of the Redis keys (lease: <prefix>reaper:<database>)." env:"TOMBSTONE_REDIS_PREFIX"`
	LeaseTTL    time.Duration `name:"lease-ttl" default:"15s" help:"Lifetime of the Redis lease; renewed every third of it while the reaper works."`

	MetricsListen string `name:"metrics-listen" help:"Address for /metrics and /healthz." env:"TOMBSTONE_METRICS_LISTEN"`
	LogLevel      string `name:"log-level" default:"info" help:"debug, info, warn or error." env:"TOMBSTONE_LOG_LEVEL"`
	LogFormat     string `name:"log-format" default:"json" enum:"json,console" help:"json or console." env:"TOMBSTONE_LOG_FORMAT"`
}

// reaperMetrics are the Prometheus series of the reaper.
type reaperMetrics struct {
	rows        prometheus.Counter
	batches     prometheus.Counter
	trash       prometheus.Counter
	runs        *prometheus.CounterVec
	lastSuccess prometheus.Gauge
	leaseHeld   prometheus.Gauge
	nextExpiry  prometheus.Gauge
	paused      prometheus.Gauge
}

func newReaperMetrics(reg prometheus.Registerer) *reaperMetrics {
	m := &reaperMetrics{
		rows:    prometheus.NewCounter(prometheus.CounterOpts{Namespace: "tombstone", Name: "reaper_rows_purged_total", Help: "Tombstones hard-deleted by the reaper."}),
		batches: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "tombstone", Name: "reaper_batches_purged_total", Help: "Batches the reaper marked purged."}),
		trash:   prometheus.NewCounter(prometheus.CounterOpts{Namespace: "tombstone", Name: "reaper_trash_tables_dropped_total", Help: "Expired trash tables the reaper dropped."}),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "tombstone", Name: "reaper_runs_total",
			Help: "Reaper runs by result: ok, paused, standby (another reaper holds the lease), error."}, []string{"result"}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "tombstone", Name: "reaper_last_success_timestamp_seconds", Help: "When the last run completed (Unix time)."}),
		leaseHeld:   prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "tombstone", Name: "reaper_lease_held", Help: "1 while this reaper holds the lease and works."}),
		nextExpiry: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "tombstone", Name: "reaper_next_expiry_timestamp_seconds",
			Help: "When the next batch or trash table falls due (Unix time, database clock); 0 when none waits."}),
		paused: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "tombstone", Name: "reaper_paused", Help: "1 when the last run found the reaper paused."}),
	}
	reg.MustRegister(m.rows, m.batches, m.trash, m.runs, m.lastSuccess, m.leaseHeld, m.nextExpiry, m.paused)
	return m
}

func (c *reaperCmd) Run(std *stdio) error {
	if c.Chunk <= 0 {
		return usageErrorf("--chunk must be positive")
	}
	if !c.Once && !c.DryRun && c.Interval <= 0 {
		return usageErrorf("--interval must be positive")
	}
	// 0 would mean "no timeout" to Postgres; a reaper chunk must never
	// queue behind application locks without bound.
	// Postgres takes the timeouts in whole milliseconds, Redis the TTL.
	if c.LockTimeout < time.Millisecond || c.StatementTimeout < time.Millisecond || c.LeaseTTL < time.Millisecond {
		return usageErrorf("--lock-timeout, --statement-timeout and --lease-ttl must be at least 1ms")
	}
	if c.LockRetries < 0 {
		return usageErrorf("--lock-retries must be 0 or more")
	}
	log, _, err := newLogger(c.LogLevel, c.LogFormat, std.Err)
	if err != nil {
		return usageErrorf("--log-level: %w", err)
	}
	defer log.Sync() //nolint:errcheck

	reg := newRegistry()
	m := newReaperMetrics(reg)
	if err := startMetrics(c.MetricsListen, reg, func() error { return nil }, log); err != nil {
		return err
	}

	var rdb *redis.Client
	if c.Redis != "" && !c.DryRun {
		rdb = redis.NewClient(&redis.Options{Addr: c.Redis})
		defer rdb.Close()
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	run := c.runOnce
	if c.All {
		run = c.runAll
	}
	if c.Once || c.DryRun {
		return run(ctx, rdb, log, m, std)
	}
	log.Info("reaper started", zap.Duration("interval", c.Interval), zap.Bool("redis", rdb != nil), zap.Bool("all_databases", c.All))
	for {
		if err := run(ctx, rdb, log, m, std); err != nil && ctx.Err() == nil {
			log.Error("reaper run failed; retrying next interval", zap.Error(err))
		}
		select {
		case <-ctx.Done():
			log.Info("reaper stopped")
			return nil
		case <-time.After(c.Interval):
		}
	}
}

// runOnce is one run: connect, take the lease (or stand by), reap,
// release, report.
func (c *reaperCmd) runOnce(ctx context.Context, rdb *redis.Client, log *zap.Logger, m *reaperMetrics, std *stdio) error {
	cfg, err := pgx.ParseConfig(c.DSN)
	if err != nil {
		return fmt.Errorf("dsn: %w", err)
	}
	rep, err := c.reapDatabase(ctx, cfg, rdb, log, m)
	if err != nil {
		return err
	}
	return c.print(std, rep)
}

// errNoStore: a database without the reaper's functions.
var errNoStore = errors.New("this database has no tombstone reaper functions: run `tombstone init` (with this version) first")

// runAll is one run over every database of the server that has the
// store (--all-databases), each with its own lease, one after another.
// Databases it cannot connect to, and those without the store, are
// named in a warning (and in the report): a database it does not reach
// keeps its tombstones past their time. It fails when any reap failed.
func (c *reaperCmd) runAll(ctx context.Context, rdb *redis.Client, log *zap.Logger, m *reaperMetrics, std *stdio) error {
	cfg, err := pgx.ParseConfig(c.DSN)
	if err != nil {
		return fmt.Errorf("dsn: %w", err)
	}
	tombstone.StoreSession(cfg)
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		m.runs.WithLabelValues("error").Inc()
		return fmt.Errorf("connect: %w", err)
	}
	rows, err := conn.Query(ctx, `SELECT datname::text FROM pg_catalog.pg_database
		WHERE datallowconn AND NOT datistemplate AND datname LIKE $1 ORDER BY 1`, c.Like)
	var names []string
	if err == nil {
		names, err = pgx.CollectRows(rows, pgx.RowTo[string])
	}
	conn.Close(context.Background())
	if err != nil {
		m.runs.WithLabelValues("error").Inc()
		return fmt.Errorf("list databases: %w", err)
	}
	type dbReport struct {
		Database string                `json:"database"`
		Report   *tombstone.ReapReport `json:"report,omitempty"`
		Skipped  string                `json:"skipped,omitempty"`
		Error    string                `json:"error,omitempty"`
	}
	var out []dbReport
	var failed, unreached []string
	for _, name := range names {
		dcfg := cfg.Copy()
		dcfg.Database = name
		rep, err := c.reapDatabase(ctx, dcfg, rdb, log.With(zap.String("database", name)), m)
		var pe *pgconn.PgError
		switch {
		case errors.As(err, &pe) && pe.Code == pgerrcode.InvalidCatalogName:
			continue // dropped since it was listed
		case errors.Is(err, errNoStore):
			out = append(out, dbReport{Database: name, Skipped: "no tombstone store"})
		case errors.Is(err, errUnreachable):
			unreached = append(unreached, name)
			out = append(out, dbReport{Database: name, Error: err.Error()})
		case err != nil:
			failed = append(failed, name)
			out = append(out, dbReport{Database: name, Error: err.Error()})
		default:
			out = append(out, dbReport{Database: name, Report: &rep})
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	if len(unreached) > 0 {
		log.Warn("reaper could not reach these databases: their tombstones and trash stay past their time", zap.Strings("databases", unreached))
	}
	if c.JSON {
		if err := writeJSON(std.Out, out); err != nil {
			return err
		}
	} else {
		for _, r := range out {
			fmt.Fprintf(std.Out, "%s: ", r.Database)
			switch {
			case r.Report != nil:
				if err := c.print(std, *r.Report); err != nil {
					return err
				}
			case r.Skipped != "":
				fmt.Fprintln(std.Out, "skipped ("+r.Skipped+")")
			default:
				fmt.Fprintln(std.Out, "not reaped: "+r.Error)
			}
		}
	}
	if bad := append(failed, unreached...); len(bad) > 0 {
		return fmt.Errorf("reaper run did not complete in database(s) %s", strings.Join(bad, ", "))
	}
	return nil
}

// errUnreachable wraps a failure to connect to a database.
var errUnreachable = errors.New("cannot connect")

// reapDatabase reaps the database cfg names: connect, take the lease
// (or stand by: an empty report), reap, release.
func (c *reaperCmd) reapDatabase(ctx context.Context, cfg *pgx.ConnConfig, rdb *redis.Client, log *zap.Logger, m *reaperMetrics) (rep tombstone.ReapReport, err error) {
	result := "error"
	defer func() {
		if !errors.Is(err, errNoStore) {
			m.runs.WithLabelValues(result).Inc()
		}
	}()
	tombstone.StoreSession(cfg)
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return rep, fmt.Errorf("%w: %w", errUnreachable, err)
	}
	defer conn.Close(context.Background())
	var installed bool
	if err := conn.QueryRow(ctx, "SELECT to_regprocedure('tombstone.reap_chunk(bigint,bigint)') IS NOT NULL").Scan(&installed); err != nil {
		return rep, err
	}
	if !installed {
		return rep, errNoStore
	}

	opts := tombstone.ReaperOptions{
		ChunkRows: c.Chunk, LockTimeout: c.LockTimeout, StatementTimeout: c.StatementTimeout,
		LockRetries: cmp.Or(c.LockRetries, -1), DryRun: c.DryRun, Logger: log, // 0: no retries
		OnChunk: func(ch tombstone.Chunk) {
			m.rows.Add(float64(ch.Rows))
			m.batches.Add(float64(ch.Batches))
			if ch.Trash != "" {
				m.trash.Inc()
				log.Info("trash table dropped", zap.String("table", ch.Trash))
			}
		},
	}

	if !c.DryRun {
		lease, held, err := c.acquire(ctx, conn, rdb)
		if err != nil {
			return rep, err
		}
		if !held {
			result = "standby"
			log.Info("another reaper holds the lease; it does the work")
			return tombstone.ReapReport{Standby: true}, nil
		}
		m.leaseHeld.Set(1)
		defer func() {
			m.leaseHeld.Set(0)
			rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := lease.Release(rctx); err != nil {
				log.Warn("releasing the reaper lease", zap.Error(err))
			}
		}()
		opts.Fence = lease
	}

	rep, err = tombstone.Reap(ctx, conn, opts)
	if rep.NextExpiry != nil {
		m.nextExpiry.Set(float64(rep.NextExpiry.Unix()))
	} else {
		m.nextExpiry.Set(0)
	}
	fields := []zap.Field{
		zap.Int64("rows", rep.Rows), zap.Int64("batches", rep.Batches), zap.Int64("trash_tables", rep.TrashTables),
		zap.Int64("chunks", rep.Chunks), zap.Int64("lock_retries", rep.LockRetries), zap.Duration("took", rep.Duration),
		zap.Float64("rows_per_second", rep.RowsPerSecond()), zap.Bool("paused", rep.Paused), zap.Bool("busy", rep.Busy),
	}
	if rep.NextExpiry != nil {
		fields = append(fields, zap.Time("next_expiry", *rep.NextExpiry))
	}
	if err != nil {
		log.Error("reaper run did not complete", append(fields, zap.Error(err))...)
		return rep, err
	}
	result = "ok"
	if rep.Paused {
		result = "paused"
		m.paused.Set(1)
	} else {
		m.paused.Set(0)
	}
	if !c.DryRun {
		m.lastSuccess.SetToCurrentTime()
		log.Info("reaper run completed", fields...)
	}
	return rep, nil
}

// acquire takes the Redis lease (when --redis is set) or the advisory
// lock. held is false when another reaper has it.
func (c *reaperCmd) acquire(ctx context.Context, conn *pgx.Conn, rdb *redis.Client) (interface {
	tombstone.Fence
	Release(context.Context) error
}, bool, error) {
	if rdb == nil {
		l, ok, err := coord.AcquireAdvisory(ctx, conn, tombstone.ReaperLockKey)
		return l, ok, err
	}
	var db string
	if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil {
		return nil, false, err
	}
	floor, err := tombstone.ReaperFenceToken(ctx, conn)
	if err != nil {
		return nil, false, err
	}
	l, ok, err := coord.AcquireRedis(ctx, rdb, coord.KeyFor(c.RedisPrefix, "reaper", db), c.LeaseTTL, floor)
	if err != nil || !ok {
		return nil, ok, err
	}
	return l, true, nil
}

func (c *reaperCmd) print(std *stdio, rep tombstone.ReapReport) error {
	if rep.Standby {
		if c.JSON && !c.All {
			return writeJSON(std.Out, map[string]any{"standby": true})
		}
		fmt.Fprintln(std.Out, "another reaper holds the lease; nothing to do here")
		return nil
	}
	if c.JSON {
		return writeJSON(std.Out, rep)
	}
	next := "none waiting"
	if rep.NextExpiry != nil {
		next = fmtTime(*rep.NextExpiry)
	}
	if c.DryRun {
		t := newTable(std.Out, "batch", "table", "rows", "purge_after")
		var rows int64
		for _, d := range rep.Due {
			b := ""
			if d.Batch != 0 {
				b = strconv.FormatInt(d.Batch, 10)
			}
			t.row(b, d.Table, strconv.FormatInt(d.Rows, 10), fmtTime(d.PurgeAfter))
			rows += d.Rows
		}
		if err := t.flush(); err != nil {
			return err
		}
		fmt.Fprintf(std.Out, "dry run: would purge %d tombstones; nothing was changed. next expiry: %s\n", rows, next)
		if rep.Paused {
			fmt.Fprintln(std.Out, "note: the reaper is paused (RESUME REAPER): a real run would purge nothing now")
		}
		return nil
	}
	if rep.Paused {
		fmt.Fprintf(std.Out, "reaper is paused (RESUME REAPER to resume): ")
	}
	fmt.Fprintf(std.Out, "purged %d tombstones in %d batches and %d trash tables in %s (%.0f rows/s); next expiry: %s\n",
		rep.Rows, rep.Batches, rep.TrashTables, rep.Duration.Round(time.Millisecond), rep.RowsPerSecond(), next)
	if rep.Busy {
		fmt.Fprintln(std.Out, "some due batches are being restored or purged by others right now; the next run takes them")
	}
	return nil
}
