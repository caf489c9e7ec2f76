package tombstone

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"go.uber.org/zap"

	"github.com/tombstone-proxy/tombstone/rewrite"
)

// Catalogs keeps the catalog of every database the proxy's clients use.
// The first request for a database connects to it with the control DSN,
// installs or upgrades the tombstone schema when the role may (Install is
// idempotent), syncs the shadow tables and loads the Catalog. From then on
// the catalog is served from memory and reloaded when:
//   - the database says so (NOTIFY tombstone_catalog, sent by the DDL event
//     trigger in the same transaction as the DDL),
//   - a rewritten statement failed with TS001 (Invalidate),
//   - a lookup misses a table, at most once per MissReload: the table may
//     have been created a moment ago by a role without the event trigger.
//
// A Catalogs is safe for concurrent use.
type Catalogs struct {
	controlDSN string
	install    InstallOptions
	log        *zap.Logger
	// MissReload bounds how often a lookup miss reloads a catalog.
	MissReload time.Duration
	// OnLoad, when set before first use, is told of every catalog load
	// (err nil: cat loaded), for the proxy's metrics.
	OnLoad func(database string, cat *Catalog, err error)

	// lazy: a change marks a catalog stale and nothing more; the next
	// statement's plan loads it (SetReloadOnChange).
	lazy atomic.Bool

	mu     sync.Mutex
	dbs    map[string]*dbCatalog
	users  map[string]int // client sessions per database (Use)
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type dbCatalog struct {
	name    string
	load    sync.Mutex // one load at a time
	cur     atomic.Pointer[Catalog]
	stale   atomic.Bool
	changes atomic.Uint64 // invalidations so far
	loaded  atomic.Int64  // unix nanos of the last load
	checked atomic.Int64  // unix nanos of the last changedSince look
	listens atomic.Bool
	stop    atomic.Pointer[context.CancelFunc] // ends the listener

	// conn is the connection loads reuse, guarded by load: a connection
	// per load paid for a backend's start and its cold caches (some
	// 70 ms) on every DDL statement a proxy saw. idle closes it when no
	// load has used it for LoadConnIdle.
	conn *pgx.Conn
	idle *time.Timer
}

// LoadConnIdle is how long a database's load connection stays open
// without a load.
var LoadConnIdle = 30 * time.Second

// loadConn returns d's load connection, opening one if needed; d.load
// must be held.
func (c *Catalogs) loadConn(ctx context.Context, d *dbCatalog) (*pgx.Conn, error) {
	if d.idle != nil {
		d.idle.Stop()
	}
	if d.conn != nil && !d.conn.IsClosed() {
		return d.conn, nil
	}
	conn, err := c.Connect(ctx, d.name)
	if err != nil {
		return nil, err
	}
	d.conn = conn
	return conn, nil
}

// putLoadConn keeps d's load connection after a load for the next one
// (closing it after LoadConnIdle), or closes it after a failed load,
// which may have left it in any state; d.load must be held.
func (d *dbCatalog) putLoadConn(failed bool) {
	if d.conn == nil {
		return
	}
	if failed {
		d.closeConn()
		return
	}
	d.idle = time.AfterFunc(LoadConnIdle, d.dropConn)
}

// dropConn closes d's load connection once no load uses it.
func (d *dbCatalog) dropConn() {
	d.load.Lock()
	defer d.load.Unlock()
	d.closeConn()
}

// closeConn closes d's load connection; d.load must be held.
func (d *dbCatalog) closeConn() {
	if d.idle != nil {
		d.idle.Stop()
	}
	if d.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = d.conn.Close(ctx)
		cancel()
		d.conn = nil
	}
}

// invalidate marks d's catalog stale, also for a load under way.
func (d *dbCatalog) invalidate() {
	d.changes.Add(1)
	d.stale.Store(true)
}

// Release forgets database's catalog and ends its listener, whose
// connection would keep Postgres from dropping or renaming the database
// (the proxy calls it before forwarding such a statement). The next use
// loads the catalog anew, installing the store if it is missing — the
// database may be another one by the same name by then.
func (c *Catalogs) Release(database string) {
	c.mu.Lock()
	d, ok := c.dbs[database]
	delete(c.dbs, database)
	c.mu.Unlock()
	if !ok {
		return
	}
	d.load.Lock()
	defer d.load.Unlock()
	d.disconnect()
}

// disconnect ends d's listener and closes its load connection; d.load
// must be held. The next load starts a listener again.
func (d *dbCatalog) disconnect() {
	if stop := d.stop.Swap(nil); stop != nil {
		(*stop)()
	}
	d.listens.Store(false)
	d.closeConn()
}

// ListenIdle is how long the proxy keeps its connections to a database
// (the listener, the load connection) after the last client session of
// that database ended: DROP DATABASE, ALTER DATABASE … RENAME and CREATE
// DATABASE … TEMPLATE wait five seconds for other sessions to leave, and
// then fail.
var ListenIdle = time.Second

// Use counts a client session of database until the function it returns
// is called. When the last one ends, the registry lets go of the
// database's connections after ListenIdle (suspend).
func (c *Catalogs) Use(database string) (ended func()) {
	c.mu.Lock()
	c.users[database]++
	c.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			if c.users[database]--; c.users[database] > 0 {
				return
			}
			delete(c.users, database)
			time.AfterFunc(ListenIdle, func() { c.suspend(database) })
		})
	}
}

// suspend ends database's listener and closes its load connection if no
// session uses the database: nothing tells the proxy of changes from then
// on, so its catalog is stale, and the next use loads it and listens
// again.
func (c *Catalogs) suspend(database string) {
	c.mu.Lock()
	d, ok := c.dbs[database]
	ok = ok && c.users[database] == 0
	c.mu.Unlock()
	if !ok {
		return
	}
	d.load.Lock() // (no load starts a listener meanwhile)
	defer d.load.Unlock()
	if !d.listens.Load() {
		return
	}
	d.invalidate()
	d.disconnect()
	c.log.Debug("no session uses the database: its connections closed", zap.String("database", database))
}

// NewCatalogs returns a registry that connects with controlDSN (a conninfo
// or URL without dbname; empty means the libpq environment).
func NewCatalogs(controlDSN string, install InstallOptions, log *zap.Logger) *Catalogs {
	if log == nil {
		log = zap.NewNop()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Catalogs{controlDSN: controlDSN, install: install, log: log, MissReload: time.Second,
		dbs: map[string]*dbCatalog{}, users: map[string]int{}, ctx: ctx, cancel: cancel}
}

// Close stops the listeners and closes the load connections.
func (c *Catalogs) Close() {
	c.cancel()
	c.wg.Wait()
	c.mu.Lock()
	dbs := make([]*dbCatalog, 0, len(c.dbs))
	for _, d := range c.dbs {
		dbs = append(dbs, d)
	}
	c.mu.Unlock()
	for _, d := range dbs {
		d.dropConn()
	}
}

// Connect opens a control connection to database.
func (c *Catalogs) Connect(ctx context.Context, database string) (*pgx.Conn, error) {
	cfg, err := c.config(database)
	if err != nil {
		return nil, err
	}
	return pgx.ConnectConfig(ctx, cfg)
}

// config is the configuration of a control connection to database.
func (c *Catalogs) config(database string) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(c.controlDSN)
	if err != nil {
		return nil, fmt.Errorf("control_dsn: %w", err)
	}
	cfg.Database = database
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	cfg.RuntimeParams["application_name"] = "tombstone proxy"
	StoreSession(cfg)
	return cfg, nil
}

func (c *Catalogs) db(name string) *dbCatalog {
	c.mu.Lock()
	defer c.mu.Unlock()
	d, ok := c.dbs[name]
	if !ok {
		d = &dbCatalog{name: name}
		c.dbs[name] = d
	}
	return d
}

// Invalidate marks database's catalog stale: the next use reloads it.
func (c *Catalogs) Invalidate(database string) {
	c.db(database).invalidate()
}

// Catalog returns the current catalog of database, loading it if needed.
func (c *Catalogs) Catalog(ctx context.Context, database string) (rewrite.GenerationalCatalog, error) {
	d := c.db(database)
	cat := d.cur.Load()
	if cat != nil && !d.stale.Load() {
		return &missAware{Catalog: cat, c: c, d: d}, nil
	}
	cat, err := c.reload(ctx, d, cat)
	if err != nil {
		return nil, err
	}
	return &missAware{Catalog: cat, c: c, d: d}, nil
}

// SetReloadOnChange chooses whether the listener loads a database's
// catalog as soon as it hears of a change (the default: prepared
// statements planned against the old one are then prepared again before
// they fail), or only marks it stale for the next plan to load.
func (c *Catalogs) SetReloadOnChange(on bool) { c.lazy.Store(!on) }

// Latest is the newest catalog generation loaded, of any database: a
// statement planned against an older one may be out of date (Fresh says
// whether its database's is).
func (c *Catalogs) Latest() uint64 { return generations.Load() }

// Fresh returns database's catalog when it is loaded and not known to be
// stale: what Catalog would return without waiting. Its look-ups never
// reload.
func (c *Catalogs) Fresh(database string) (rewrite.GenerationalCatalog, bool) {
	d, ok := c.known(database)
	if !ok {
		return nil, false
	}
	cat := d.cur.Load()
	if cat == nil || d.stale.Load() {
		return nil, false
	}
	return cat, true
}

// Stale reports whether database's catalog is loaded but known to be out
// of date (Catalog would reload it first).
func (c *Catalogs) Stale(database string) bool {
	d, ok := c.known(database)
	return ok && d.cur.Load() != nil && d.stale.Load()
}

// known returns database's entry if it has one, without making one.
func (c *Catalogs) known(database string) (*dbCatalog, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	d, ok := c.dbs[database]
	return d, ok
}

// reload loads d's catalog unless another goroutine already replaced old.
func (c *Catalogs) reload(ctx context.Context, d *dbCatalog, old *Catalog) (*Catalog, error) {
	d.load.Lock()
	defer d.load.Unlock()
	if cur := d.cur.Load(); cur != nil && cur != old && !d.stale.Load() {
		return cur, nil
	}
	// Stale until this load is in place (a concurrent Catalog must not
	// take the old one for current meanwhile), and after it too if the
	// database changed again while it ran: the load may not have seen it.
	changes := d.changes.Load()
	if old == nil {
		c.install1(ctx, d.name)
	}
	ctx, cancel := context.WithTimeout(ctx, loadTimeout)
	defer cancel()
	start := time.Now()
	var conn *pgx.Conn
	var cat *Catalog
	var err error
	// A connection ended under the load (a server restart,
	// idle_session_timeout, pg_terminate_backend; pgx finds out about a
	// kept one only by using it): again on a new one, a few times.
	for attempt := 0; ; attempt++ {
		if conn, err = c.loadConn(ctx, d); err != nil {
			d.invalidate()
			return nil, fmt.Errorf("control connection to database %q: %w", d.name, err)
		}
		cat, err = LoadCatalog(ctx, conn, CatalogOptions{Sync: old == nil})
		if err == nil || !conn.IsClosed() || ctx.Err() != nil || attempt == loadAttempts-1 {
			break
		}
		d.closeConn()
	}
	if errors.Is(err, ErrNotInstalled) && old != nil {
		// Another database by that name now (dropped and created again
		// behind the proxy's back), or a store removed: install as on
		// first use.
		c.install1(ctx, d.name)
		cat, err = LoadCatalog(ctx, conn, CatalogOptions{Sync: true})
	}
	if err != nil && old == nil {
		cat, err = LoadCatalog(ctx, conn, CatalogOptions{})
	}
	d.putLoadConn(err != nil)
	if c.OnLoad != nil {
		c.OnLoad(d.name, cat, err)
	}
	if err != nil {
		d.invalidate()
		return nil, err
	}
	d.cur.Store(cat)
	d.loaded.Store(time.Now().UnixNano())
	if !cat.unsnapped && d.changes.Load() == changes {
		// (An unsnapped load's sync changed the store: the next use
		// loads it again, in a snapshot that sees those changes, for
		// check_catalog's fast path.)
		d.stale.Store(false)
	}
	c.log.Info("catalog loaded", zap.String("database", d.name), zap.Int("protected_tables", len(cat.Tables())),
		zap.Uint64("generation", cat.Generation()), zap.Duration("took", time.Since(start)))
	if d.listens.CompareAndSwap(false, true) {
		ctx, stop := context.WithCancel(c.ctx)
		d.stop.Store(&stop)
		c.wg.Add(1)
		go c.listen(ctx, d)
	}
	return cat, nil
}

// loadAttempts bounds the loads tried on new connections when one is
// ended under a load.
const loadAttempts = 3

// Bounds of the first install or upgrade in a database (it may wait for
// another proxy's install, and an upgrade rewrites every function) and of
// each catalog load.
const (
	installTimeout = 5 * time.Minute
	loadTimeout    = 2 * time.Minute
)

// install1 installs or upgrades the tombstone schema in database on its own
// connection: a failure — a role that may not install, or an install that
// timed out and so closed its connection — leaves the catalog load its own
// connection, to use what is installed.
func (c *Catalogs) install1(ctx context.Context, database string) {
	ctx, cancel := context.WithTimeout(ctx, installTimeout)
	defer cancel()
	start := time.Now()
	conn, err := c.Connect(ctx, database)
	if err == nil {
		err = Install(ctx, conn, c.install)
		_ = conn.Close(context.Background())
	}
	took := time.Since(start)
	switch {
	case err != nil:
		c.log.Warn("tombstone schema install/upgrade failed; using what is installed",
			zap.String("database", database), zap.Duration("took", took), zap.Error(err))
	case took > 5*time.Second:
		c.log.Warn("tombstone schema install/upgrade was slow", zap.String("database", database), zap.Duration("took", took))
	}
}

// listen marks d stale whenever the database notifies a catalog change,
// and whenever the listening connection had to be re-established (a
// notification may have been missed meanwhile).
func (c *Catalogs) listen(ctx context.Context, d *dbCatalog) {
	defer c.wg.Done()
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		conn, err := c.connectListener(ctx, d.name)
		if err == nil {
			_, err = conn.Exec(ctx, "LISTEN "+NotifyChannel)
		}
		if err == nil {
			d.invalidate() // anything may have changed while not listening
			backoff = 100 * time.Millisecond
			for {
				err = c.awaitChange(ctx, conn, d)
				if err != nil {
					break
				}
				d.invalidate()
				if c.lazy.Load() {
					continue
				}
				if err = c.settle(ctx, conn); err != nil {
					break
				}
				// Loaded now rather than at the next statement's plan:
				// prepared statements planned against the old catalog
				// are prepared again at their next Bind once a newer one
				// is there (proxy), and only a load makes one.
				if _, rerr := c.reload(ctx, d, d.cur.Load()); rerr != nil && ctx.Err() == nil {
					c.log.Warn("catalog reload after a change failed; the next statement retries", zap.String("database", d.name), zap.Error(rerr))
				}
			}
		}
		if conn != nil {
			_ = conn.Close(context.Background())
		}
		if ctx.Err() != nil || errors.Is(err, context.Canceled) {
			return
		}
		c.log.Warn("catalog listener lost its connection; retrying", zap.String("database", d.name), zap.Error(err))
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

// PollEvery is how often a listener that heard nothing asks the database
// whether a change was logged that its catalog has not seen: DDL in a
// transaction block sends no NOTIFY on a server that allows prepared
// transactions (tombstone._may_notify), and until the proxy reloads, its
// DELETEs take check_catalog's full check.
var PollEvery = 5 * time.Second

// connectListener opens the listening connection of database: one whose
// waits a context ends by a deadline on the socket (the poll), not by a
// cancel request, which would open a connection to the server each time.
func (c *Catalogs) connectListener(ctx context.Context, database string) (*pgx.Conn, error) {
	cfg, err := c.config(database)
	if err != nil {
		return nil, err
	}
	cfg.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.DeadlineContextWatcherHandler{Conn: pc.Conn()}
	}
	return pgx.ConnectConfig(ctx, cfg)
}

// settleFor is how long the listener waits for a burst of changes to end
// before it reloads.
const settleFor = 50 * time.Millisecond

// settle returns once no notification has come for settleFor.
func (c *Catalogs) settle(ctx context.Context, conn *pgx.Conn) error {
	for {
		wctx, cancel := context.WithTimeout(ctx, settleFor)
		_, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case err == nil:
			continue
		case ctx.Err() == nil && pgconn.Timeout(err):
			return nil
		default:
			return err
		}
	}
}

// awaitChange returns nil when the database notifies a catalog change, or
// when d's catalog was loaded in a snapshot that a change logged since
// (tombstone.catalog_log) does not see.
func (c *Catalogs) awaitChange(ctx context.Context, conn *pgx.Conn, d *dbCatalog) error {
	for {
		wctx, cancel := context.WithTimeout(ctx, PollEvery)
		_, err := conn.WaitForNotification(wctx)
		cancel()
		if err == nil || ctx.Err() != nil || !pgconn.Timeout(err) {
			return err
		}
		cat := d.cur.Load()
		if cat == nil || cat.snapshot == nil || d.stale.Load() {
			continue
		}
		var changed bool
		snap, triggers, _ := strings.Cut(*cat.snapshot, ";")
		if err := conn.QueryRow(ctx, `SELECT tombstone._event_triggers() IS DISTINCT FROM $2
			OR EXISTS (SELECT FROM tombstone.catalog_log l
			WHERE l.xid >= pg_snapshot_xmin($1::pg_snapshot)
			  AND (l.horizon OR NOT pg_visible_in_snapshot(l.xid, $1::pg_snapshot)))`, snap, triggers).Scan(&changed); err != nil {
			return err
		}
		if changed {
			return nil
		}
	}
}

// changedEvery bounds how often a database's catalog log is looked at
// after lookup misses (changedSince).
const changedEvery = 10 * time.Millisecond

// changedSince reports whether DDL committed since cat was loaded, as
// the catalog log says (the event triggers log every such transaction):
// a table created a moment ago, whose NOTIFY has not reached the proxy
// yet, by the session now deleting from it — a transaction block could
// not have the statement re-sent. One query on d's load connection; false
// when cat was read without a snapshot to compare with, or the query
// fails (the miss stands, as before).
func (c *Catalogs) changedSince(d *dbCatalog, cat *Catalog) bool {
	if cat.snapshot == nil {
		return false
	}
	// At most one look per changedEvery and database: a DELETE of an
	// excluded table misses every time.
	now := time.Now().UnixNano()
	if last := d.checked.Load(); now-last < int64(changedEvery) || !d.checked.CompareAndSwap(last, now) {
		return false
	}
	snap, _, _ := strings.Cut(*cat.snapshot, ";")
	ctx, cancel := context.WithTimeout(c.ctx, 5*time.Second)
	defer cancel()
	d.load.Lock()
	defer d.load.Unlock()
	if cur := d.cur.Load(); cur != cat || d.stale.Load() {
		return true // loaded again since, or known stale: Lookup reloads
	}
	conn, err := c.loadConn(ctx, d)
	if err != nil {
		return false
	}
	var changed bool
	err = conn.QueryRow(ctx, `SELECT EXISTS (SELECT FROM tombstone.catalog_log l
		WHERE NOT l.horizon AND NOT pg_catalog.pg_visible_in_snapshot(l.xid, $1::pg_catalog.pg_snapshot)
		  AND pg_catalog.pg_xact_status(l.xid) = 'committed')`, snap).Scan(&changed)
	d.putLoadConn(err != nil)
	return err == nil && changed
}

// protectsSchema reports whether a table named so (unqualified: looked
// up through the protected schemas) would be protected by its schema.
func (m *missAware) protectsSchema(schema string) bool {
	return schema == "" || slices.Contains(m.Catalog.schemas, schema)
}

// missAware is a Catalog whose lookup misses can trigger a reload.
type missAware struct {
	*Catalog
	c *Catalogs
	d *dbCatalog
}

// Lookup implements rewrite.Catalog. A miss on a catalog older than
// MissReload reloads it once: a table created a moment ago without the
// event trigger's notification must not have its rows deleted uncaptured.
func (m *missAware) Lookup(schema, name string) (*rewrite.Table, bool) {
	if t, ok := m.Catalog.Lookup(schema, name); ok {
		return t, true
	}
	age := time.Duration(time.Now().UnixNano() - m.d.loaded.Load())
	if age < m.c.MissReload && !(m.protectsSchema(schema) && m.c.changedSince(m.d, m.Catalog)) {
		return nil, false
	}
	cat, err := m.c.reload(m.c.ctx, m.d, m.Catalog)
	if err != nil {
		m.c.log.Warn("catalog reload after a miss failed", zap.String("database", m.d.name), zap.Error(err))
		return nil, false
	}
	m.Catalog = cat
	return cat.Lookup(schema, name)
}
