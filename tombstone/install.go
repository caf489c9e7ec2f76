package tombstone

import (
	"context"
	"crypto/md5"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"
)

//go:embed sql/*.sql
var sqlFiles embed.FS

// SchemaVersion is the version of the tombstone schema this package
// installs: the number of the last migration in sql/.
var SchemaVersion = len(migrations())

// NotifyChannel is the channel on which the store announces catalog
// changes (DDL on tables, shadow syncs). Proxies LISTEN on it and reload
// their catalog.
const NotifyChannel = "tombstone_catalog"

// AdminRole is the role whose members may read, restore and purge
// tombstones.
const AdminRole = "tombstone_admin"

// installLockKey is the pg_advisory_xact_lock key that serializes
// Install and Sync within a database ("tombstone" in ASCII).
const installLockKey int64 = 0x746f6d6273746f6e

// ErrNotInstalled is returned by Sync and LoadCatalog when the database
// has no tombstone schema, or an older one than this package needs.
var ErrNotInstalled = errors.New("tombstone: the tombstone schema is not installed or out of date (run `tombstone init`)")

// Protection says which tables are protected. It mirrors the protect.*
// configuration keys and is stored in the database (tombstone.protected,
// tombstone.settings) so that the SQL side — the DDL event trigger,
// sync_all, the catalog loader — works from the same rules as the proxy.
type Protection struct {
	// Schemas are protected in this order, which is also the order in
	// which unqualified table names are resolved (protect.schemas).
	Schemas []string
	// Exclude lists "schema.table" names that are never protected
	// (protect.exclude).
	Exclude []string
	// Retention is how long tombstones are kept unless a table says
	// otherwise (protect.retention). Zero means 7 days.
	Retention time.Duration
	// Truncate is the TRUNCATE policy (policies.truncate): "capture"
	// (the default when empty), "reject" or "allow". capture_truncate
	// reads it from the store, never from its caller.
	Truncate string
	// Drop is the DROP TABLE policy (policies.drop): "trash" (the
	// default when empty), "reject" or "allow", read by trash_tables.
	Drop string
	// Tables holds per-table rules keyed by "schema.table"
	// (protect.tables.<schema.table>). A table listed here with mode
	// "shadow" is protected even outside Schemas.
	Tables map[string]TableProtection
}

// TableProtection overrides the defaults for one table.
type TableProtection struct {
	// Retention overrides Protection.Retention when positive.
	Retention time.Duration
	// Mode is "shadow" (the default) or "off".
	Mode string
	// Column is the column restores filter on most (a tenant id, say);
	// the shadow table gets an index on it.
	Column string
}

// InstallOptions configure Install and Sync.
type InstallOptions struct {
	// Protection, when non-nil, replaces the protection rules stored in
	// the database. Nil keeps what is stored.
	Protection *Protection
	// KeepStored limits Protection to a database that has no rules yet
	// (its first install): where rules are in force and Protection
	// differs from them, they are kept and the difference is logged as a
	// warning. The proxy installs so; `tombstone init --config` replaces
	// the rules.
	KeepStored bool
	// Logger receives warnings (e.g. no event trigger without superuser).
	// Nil means no logging.
	Logger *zap.Logger
}

type migration struct {
	version int
	name    string
	sql     string
}

// migrations are the numbered files sql/NNN_*.sql in order.
func migrations() []migration {
	entries, err := fs.Glob(sqlFiles, "sql/[0-9][0-9][0-9]_*.sql")
	if err != nil {
		panic(err)
	}
	sort.Strings(entries)
	var out []migration
	for i, e := range entries {
		b, err := sqlFiles.ReadFile(e)
		if err != nil {
			panic(err)
		}
		base := strings.TrimPrefix(e, "sql/")
		v, err := strconv.Atoi(base[:3])
		if err != nil || v != i+1 {
			panic("tombstone: migrations must be numbered 001, 002, … without gaps: " + e)
		}
		out = append(out, migration{version: v, name: base, sql: string(b)})
	}
	return out
}

// functionFiles are the store's functions, one file per subject, in the
// order Install applies them. A LANGUAGE sql function's body is checked
// against the catalog when it is created, so a file comes after those
// whose SQL functions it calls: types and catalog first (shadow sync,
// capture, restore and trash call into them), functions_check.sql last
// (it asserts that every function pins its search_path). Every other
// file in sql/ is a numbered migration (TestSQLFilesAllApplied).
var functionFiles = []string{
	"functions_types.sql",      // how a column's type is kept in a shadow table
	"functions_catalog.sql",    // protection rules, signatures, catalog log, DELETE guards
	"functions_shadow.sql",     // shadow tables, sync, DDL event triggers
	"functions_batches.sql",    // SHOW BATCH(ES), PURGE, HOLD, RELEASE
	"functions_audit.sql",      // the audit trail, FREEZE and THAW DELETES
	"functions_privileges.sql", // table privileges
	"functions_capture.sql",    // capture triggers
	"functions_console.sql",    // SHOW TOMBSTONES, STATUS, PAUSE/RESUME REAPER
	"functions_guards.sql",     // confirmation guards
	"functions_reaper.sql",     // the reaper
	"functions_restore.sql",    // UNDELETE
	"functions_trash.sql",      // TRUNCATE, DROP TABLE, UNDROP TABLE
	"functions_check.sql",      // every function pins its search_path
}

// functionTexts are the texts of functionFiles, in order.
func functionTexts() []string {
	out := make([]string, len(functionFiles))
	for i, n := range functionFiles {
		text, err := sqlFiles.ReadFile("sql/" + n)
		if err != nil {
			panic(err)
		}
		out[i] = string(text)
	}
	return out
}

// functionsMD5 identifies the functions' text: Install applies the
// files again when it differs from the one the store recorded.
func functionsMD5(texts []string) string {
	h := md5.New()
	for _, t := range texts {
		h.Write([]byte(t))
		h.Write([]byte("\n"))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Install creates or upgrades the tombstone schema in the database conn is
// connected to: the tombstone_admin role, the tables (versioned
// migrations), the functions, the DDL event triggers (superuser only;
// without superuser Install logs a warning and the proxy relies on Sync),
// the protection rules from opts, and a shadow table for every protected
// table. It runs in one transaction under an advisory lock, so proxies
// starting together do not race, and re-running it changes nothing.
func Install(ctx context.Context, conn *pgx.Conn, opts InstallOptions) error {
	log := opts.Logger
	if log == nil {
		log = zap.NewNop()
	}
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if err := pinSearchPath(ctx, tx); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1::bigint)", installLockKey); err != nil {
			return fmt.Errorf("tombstone: install lock: %w", err)
		}
		// The role is cluster-wide; installs into two databases may race
		// on it, hence the exception handler.
		if _, err := tx.Exec(ctx, `DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'tombstone_admin') THEN
        BEGIN
            CREATE ROLE tombstone_admin NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END IF;
END
$$`); err != nil {
			return fmt.Errorf("tombstone: create role %s: %w", AdminRole, err)
		}
		if _, err := tx.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS tombstone"); err != nil {
			return fmt.Errorf("tombstone: create schema: %w", err)
		}
		// A schema someone else created first would let its owner replace
		// our functions (run later as the installer): refuse to use it.
		if err := checkSchemaOwner(ctx, tx, "tombstone"); err != nil {
			return err
		}
		version, fnMD5, err := installedVersion(ctx, tx)
		if err != nil {
			return err
		}
		if version > SchemaVersion {
			return fmt.Errorf("tombstone: the database has schema version %d, newer than this binary's %d", version, SchemaVersion)
		}
		for _, m := range migrations() {
			if m.version <= version {
				continue
			}
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return fmt.Errorf("tombstone: migration %s: %w", m.name, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO tombstone.schema_version (version) VALUES ($1)
				ON CONFLICT (singleton) DO UPDATE SET version = EXCLUDED.version, installed_at = statement_timestamp()`, m.version); err != nil {
				return fmt.Errorf("tombstone: record version %d: %w", m.version, err)
			}
		}
		if err := checkSchemaOwner(ctx, tx, "tombstone_trash"); err != nil {
			return err
		}
		texts := functionTexts()
		if want := functionsMD5(texts); want != fnMD5 {
			for i, text := range texts {
				if _, err := tx.Exec(ctx, text); err != nil {
					return fmt.Errorf("tombstone: %s: %w", functionFiles[i], err)
				}
			}
			if _, err := tx.Exec(ctx, "UPDATE tombstone.schema_version SET functions_md5 = $1", want); err != nil {
				return fmt.Errorf("tombstone: record functions: %w", err)
			}
		}
		if err := installEventTriggers(ctx, tx, log); err != nil {
			return err
		}
		if opts.Protection != nil {
			if err := applyProtection(ctx, tx, *opts.Protection, opts.KeepStored && version > 0, log); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, "SELECT tombstone.sync_all()"); err != nil {
			return fmt.Errorf("tombstone: sync shadow tables: %w", err)
		}
		return nil
	})
	return err
}

// applyProtection stores p, or, when keep, keeps the rules in force and
// logs that p differs from them (if it does).
func applyProtection(ctx context.Context, tx pgx.Tx, p Protection, keep bool, log *zap.Logger) error {
	if !keep {
		_, err := storeProtection(ctx, tx, p)
		return err
	}
	if _, err := tx.Exec(ctx, "SAVEPOINT tombstone_protection"); err != nil {
		return fmt.Errorf("tombstone: savepoint: %w", err)
	}
	before, err := storeProtection(ctx, tx, p)
	if pe := (*pgconn.PgError)(nil); errors.As(err, &pe) && pe.Code == pgerrcode.InsufficientPrivilege {
		// A role that may not write the rules (an administrator who is
		// not the store's owner) cannot compare them by writing either:
		// the database's rules stay, as they would anyway.
		if _, err := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT tombstone_protection"); err != nil {
			return fmt.Errorf("tombstone: rollback to savepoint: %w", err)
		}
		log.Info("keeping the protection rules in force in the database; this role may not write them, so this configuration's were not compared with them")
		return nil
	}
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT tombstone_protection"); err != nil {
		return fmt.Errorf("tombstone: rollback to savepoint: %w", err)
	}
	if before != "" {
		var db string
		_ = tx.QueryRow(ctx, "SELECT pg_catalog.current_database()").Scan(&db)
		log.Warn("this configuration's protect: and policies: rules differ from those in force in the database; keeping the database's rules (run `tombstone init --config …` to change them)",
			zap.String("database", db), zap.String("in_force", before))
	}
	return nil
}

func installedVersion(ctx context.Context, tx pgx.Tx) (version int, fnMD5 string, err error) {
	var exists bool
	if err := tx.QueryRow(ctx, "SELECT to_regclass('tombstone.schema_version') IS NOT NULL").Scan(&exists); err != nil {
		return 0, "", fmt.Errorf("tombstone: read schema version: %w", err)
	}
	if !exists {
		return 0, "", nil
	}
	var md *string
	err = tx.QueryRow(ctx, "SELECT version, functions_md5 FROM tombstone.schema_version").Scan(&version, &md)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, "", nil
	}
	if err != nil {
		return 0, "", fmt.Errorf("tombstone: read schema version: %w", err)
	}
	if md != nil {
		fnMD5 = *md
	}
	return version, fnMD5, nil
}

// installEventTriggers creates the DDL event triggers when the current
// role is a superuser (Postgres requires it) and warns otherwise.
func installEventTriggers(ctx context.Context, tx pgx.Tx, log *zap.Logger) error {
	var super bool
	if err := tx.QueryRow(ctx, "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user").Scan(&super); err != nil {
		return fmt.Errorf("tombstone: check superuser: %w", err)
	}
	var have int
	// Enabled ALWAYS: under session_replication_role = replica too, or a
	// capture trigger would not follow the DDL.
	// (tombstone_drop fires for every DROP: no tag list. tombstone_ddl
	// follows ALTER TYPE too: a composite a shadow keeps as text; and,
	// to log every change check_catalog's fast path depends on, ALTER
	// TRIGGER (a capture trigger renamed), CREATE SCHEMA (which may
	// create tables, under its own tag) and foreign tables (inheritance
	// children).)
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM pg_catalog.pg_event_trigger
		WHERE evtname IN ('tombstone_ddl', 'tombstone_drop') AND evtenabled = 'A'
		  AND (evtname = 'tombstone_ddl' AND 'CREATE SCHEMA' = ANY (evttags) OR evttags IS NULL)`).Scan(&have); err != nil {
		return fmt.Errorf("tombstone: read event triggers: %w", err)
	}
	if have == 2 {
		return nil
	}
	if !super {
		log.Warn("tombstone: not a superuser, so no DDL event trigger: shadow tables follow ALTER TABLE only when Sync runs (the proxy runs it before use)")
		return nil
	}
	for _, stmt := range []string{
		`DROP EVENT TRIGGER IF EXISTS tombstone_ddl`,
		`DROP EVENT TRIGGER IF EXISTS tombstone_drop`,
		`CREATE EVENT TRIGGER tombstone_ddl ON ddl_command_end
			WHEN TAG IN ('CREATE TABLE', 'ALTER TABLE', 'CREATE TABLE AS', 'SELECT INTO', 'CREATE SCHEMA', 'ALTER SCHEMA', 'ALTER TYPE',
				'ALTER TRIGGER', 'CREATE FOREIGN TABLE', 'ALTER FOREIGN TABLE', 'IMPORT FOREIGN SCHEMA')
			EXECUTE FUNCTION tombstone._on_ddl()`,
		`CREATE EVENT TRIGGER tombstone_drop ON sql_drop
			EXECUTE FUNCTION tombstone._on_drop()`,
		`ALTER EVENT TRIGGER tombstone_ddl ENABLE ALWAYS`,
		`ALTER EVENT TRIGGER tombstone_drop ENABLE ALWAYS`,
	} {
		if _, err := tx.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("tombstone: event trigger: %w", err)
		}
	}
	return nil
}

// splitTable splits "schema.table" at its first dot.
func splitTable(qualified string) (schema, table string, err error) {
	s, t, ok := strings.Cut(qualified, ".")
	if !ok || s == "" || t == "" {
		return "", "", fmt.Errorf("tombstone: %q: write tables as schema.table", qualified)
	}
	return s, t, nil
}

// intervalText renders a duration as interval input; zero is NULL.
func intervalText(d time.Duration) *string {
	if d <= 0 {
		return nil
	}
	s := strconv.FormatInt(d.Microseconds(), 10) + " microseconds"
	return &s
}

// storeProtection replaces the stored protection rules with p and bumps
// protect.generation (which every catalog signature includes) when they
// changed; changedFrom is then the rules before, as text ("" when they
// did not change).
func storeProtection(ctx context.Context, tx pgx.Tx, p Protection) (changedFrom string, err error) {
	const snapshot = `SELECT coalesce((SELECT string_agg(x::text, ';' ORDER BY x.kind, x.schema_name, x.table_name)
		FROM tombstone.protected x), '') || '|' ||
		coalesce((SELECT string_agg(key || '=' || value::text, ';' ORDER BY key) FROM tombstone.settings
			WHERE key IN ('protect.retention', 'policies.truncate', 'policies.drop')), '')`
	var before, after string
	if err := tx.QueryRow(ctx, snapshot).Scan(&before); err != nil {
		return "", fmt.Errorf("tombstone: read protection: %w", err)
	}
	if _, err := tx.Exec(ctx, "DELETE FROM tombstone.protected"); err != nil {
		return "", fmt.Errorf("tombstone: store protection: %w", err)
	}
	for i, s := range p.Schemas {
		if _, err := tx.Exec(ctx, `INSERT INTO tombstone.protected (kind, schema_name, position) VALUES ('schema', $1, $2)
			ON CONFLICT DO NOTHING`, s, i+1); err != nil {
			return "", fmt.Errorf("tombstone: store protect.schemas: %w", err)
		}
	}
	type rule struct {
		mode      string
		retention *string
		column    *string
	}
	rules := map[[2]string]rule{}
	for name, t := range p.Tables {
		s, tb, err := splitTable(name)
		if err != nil {
			return "", err
		}
		r := rule{mode: t.Mode, retention: intervalText(t.Retention)}
		if r.mode == "" {
			r.mode = "shadow"
		}
		if r.mode != "shadow" && r.mode != "off" {
			return "", fmt.Errorf("tombstone: protect.tables.%s.mode: %q is not one of shadow, off", name, t.Mode)
		}
		if t.Column != "" {
			c := t.Column
			r.column = &c
		}
		rules[[2]string{s, tb}] = r
	}
	for _, name := range p.Exclude {
		s, tb, err := splitTable(name)
		if err != nil {
			return "", err
		}
		r := rules[[2]string{s, tb}]
		r.mode = "off"
		rules[[2]string{s, tb}] = r
	}
	for k, r := range rules {
		if _, err := tx.Exec(ctx, `INSERT INTO tombstone.protected (kind, schema_name, table_name, mode, retention, filter_column)
			VALUES ('table', $1, $2, $3, $4::interval, $5)`, k[0], k[1], r.mode, r.retention, r.column); err != nil {
			return "", fmt.Errorf("tombstone: store protect.tables.%s.%s: %w", k[0], k[1], err)
		}
	}
	ret := p.Retention
	if ret <= 0 {
		ret = 7 * 24 * time.Hour
	}
	if _, err := tx.Exec(ctx, `INSERT INTO tombstone.settings (key, value) VALUES ('protect.retention', to_jsonb($1::interval::text))
		ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = statement_timestamp()
		WHERE settings.value IS DISTINCT FROM EXCLUDED.value`, *intervalText(ret)); err != nil {
		return "", fmt.Errorf("tombstone: store protect.retention: %w", err)
	}
	for _, pol := range []struct{ key, value, def string }{
		{"policies.truncate", p.Truncate, "capture"},
		{"policies.drop", p.Drop, "trash"},
	} {
		v := pol.value
		if v == "" {
			v = pol.def
		}
		if v != pol.def && v != "reject" && v != "allow" {
			return "", fmt.Errorf("tombstone: %s: %q is not one of %s, reject, allow", pol.key, pol.value, pol.def)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO tombstone.settings (key, value) VALUES ($1, to_jsonb($2::text))
			ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = statement_timestamp()
			WHERE settings.value IS DISTINCT FROM EXCLUDED.value`, pol.key, v); err != nil {
			return "", fmt.Errorf("tombstone: store %s: %w", pol.key, err)
		}
	}
	if err := tx.QueryRow(ctx, snapshot).Scan(&after); err != nil {
		return "", fmt.Errorf("tombstone: read protection: %w", err)
	}
	if before == after {
		return "", nil
	}
	if _, err := tx.Exec(ctx, `UPDATE tombstone.settings SET value = to_jsonb(value::text::bigint + 1), updated_at = statement_timestamp()
		WHERE key = 'protect.generation'`); err != nil {
		return "", fmt.Errorf("tombstone: bump protect.generation: %w", err)
	}
	if _, err := tx.Exec(ctx, "SELECT pg_notify($1, 'protection')", NotifyChannel); err != nil {
		return "", fmt.Errorf("tombstone: notify: %w", err)
	}
	return before, nil
}

// Sync stores opts.Protection (when non-nil) and creates or aligns the
// shadow table of every protected table. It is idempotent and needs no
// superuser: the proxy calls it before use so that shadow tables follow
// ALTER TABLE even where the DDL event trigger could not be installed.
// It returns ErrNotInstalled when Install has not run (or an older
// version did).
func Sync(ctx context.Context, conn *pgx.Conn, opts InstallOptions) error {
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if err := pinSearchPath(ctx, tx); err != nil {
			return err
		}
		if err := checkInstalled(ctx, tx); err != nil {
			return err
		}
		if opts.Protection != nil {
			if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1::bigint)", installLockKey); err != nil {
				return fmt.Errorf("tombstone: install lock: %w", err)
			}
			if _, err := storeProtection(ctx, tx, *opts.Protection); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, "SELECT tombstone.sync_all()"); err != nil {
			return fmt.Errorf("tombstone: sync shadow tables: %w", err)
		}
		return nil
	})
}

// pinnedSearchPath is the search_path of every transaction that runs the
// store's own SQL with the connecting role's rights (install, sync, the
// catalog load, the reaper): built-ins first and nothing a less
// privileged role can create in, so that no overload or operator planted
// in public or in a role's own schema is a better match for a call.
const pinnedSearchPath = "pg_catalog, pg_temp"

// pinSearchPath sets pinnedSearchPath for the rest of tx. It must be the
// first statement: until it runs, even an unqualified built-in could
// resolve to a planted overload.
func pinSearchPath(ctx context.Context, tx pgx.Tx) error {
	if _, err := tx.Exec(ctx, "SELECT pg_catalog.set_config('search_path', '"+pinnedSearchPath+"', true)"); err != nil {
		return fmt.Errorf("tombstone: pin search_path: %w", err)
	}
	return nil
}

// StoreSession sets up the store's own connections (the proxy's control
// connections, the reaper): every transaction starts with
// pinnedSearchPath, as they resolve no name a user typed, and without
// JIT.
func StoreSession(cfg *pgx.ConnConfig) {
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	cfg.RuntimeParams["search_path"] = pinnedSearchPath
	// The store's catalog queries are planned with default estimates for
	// its set-returning functions, costly enough to be compiled by JIT
	// (about half a second per catalog load on a database with a few
	// hundred tables) for queries that run in milliseconds.
	cfg.RuntimeParams["jit"] = "off"
}

type queryRower interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func checkInstalled(ctx context.Context, q queryRower) error {
	var exists bool
	if err := q.QueryRow(ctx, "SELECT to_regclass('tombstone.schema_version') IS NOT NULL").Scan(&exists); err != nil {
		return fmt.Errorf("tombstone: read schema version: %w", err)
	}
	if !exists {
		return ErrNotInstalled
	}
	var v int
	err := q.QueryRow(ctx, "SELECT version FROM tombstone.schema_version").Scan(&v)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("tombstone: read schema version: %w", err)
	}
	if v < SchemaVersion {
		return ErrNotInstalled
	}
	return nil
}

// EnsureShadow creates the shadow table of schema.table, or aligns it with
// the table's current columns, and returns its name inside schema
// tombstone. It needs EXECUTE on tombstone.sync_shadow (tombstone_admin
// members and superusers); the table must be protected (or have its
// shadow already) unless the session's role is a superuser.
func EnsureShadow(ctx context.Context, conn *pgx.Conn, schema, table string) (string, error) {
	var name string
	err := conn.QueryRow(ctx, "SELECT tombstone.sync_shadow(format('%I.%I', $1::text, $2::text)::regclass)", schema, table).Scan(&name)
	if err != nil {
		return "", fmt.Errorf("tombstone: shadow of %s.%s: %w", schema, table, err)
	}
	return name, nil
}

// checkSchemaOwner fails unless schema is owned by the installing role or
// by a superuser (schemas that do not exist yet pass).
func checkSchemaOwner(ctx context.Context, tx pgx.Tx, schema string) error {
	var owner string
	var ok bool
	err := tx.QueryRow(ctx, `SELECT r.rolname, (r.rolname = current_user OR r.rolsuper)
		FROM pg_catalog.pg_namespace n JOIN pg_catalog.pg_roles r ON r.oid = n.nspowner WHERE n.nspname = $1`, schema).Scan(&owner, &ok)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("tombstone: check owner of schema %s: %w", schema, err)
	}
	if !ok {
		return fmt.Errorf("tombstone: schema %s is owned by %s, not by the installing role or a superuser; refusing to install into it (drop it, or install as its owner)", schema, owner)
	}
	return nil
}
