package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/tombstone-proxy/tombstone/internal/testenv"
	"github.com/tombstone-proxy/tombstone/rewrite"
	"github.com/tombstone-proxy/tombstone/tombstone"
)

const cliSchema = `
CREATE TABLE tenants (id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE sites (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, tenant_id int NOT NULL REFERENCES tenants ON DELETE CASCADE,
  name text NOT NULL);
CREATE TABLE notes (id int PRIMARY KEY, body text);
INSERT INTO tenants SELECT g, 'tenant ' || g FROM generate_series(1, 10) g;
INSERT INTO sites (tenant_id, name) SELECT t, 'site ' || t || '.' || s FROM generate_series(1, 10) t, generate_series(1, 2) s ORDER BY 1, 2;
INSERT INTO notes VALUES (1, 'keep');
`

// cliDB creates a fresh database with cliSchema and returns its URL.
func cliDB(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	dsn := testenv.FreshDB(t, "ts_cli")
	c := testenv.Connect(t, dsn)
	_, err := c.Exec(ctx, cliSchema)
	require.NoError(t, err)
	return dsn
}

// tomb runs the CLI in-process and returns its exit code, stdout and stderr.
func tomb(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

// deleteCaptured runs sql in its tombstone form, as the proxy would, and
// returns the new batch id.
func deleteCaptured(t *testing.T, dsn, sql string) int64 {
	t.Helper()
	ctx := context.Background()
	c := testenv.Connect(t, dsn)
	cat, err := tombstone.LoadCatalog(ctx, c, tombstone.CatalogOptions{})
	require.NoError(t, err)
	res, err := rewrite.Rewrite(sql, cat, rewrite.Options{ClientAddr: "10.1.2.3"})
	require.NoError(t, err)
	require.NotEqual(t, sql, res.SQL)
	_, err = c.Exec(ctx, res.SQL)
	require.NoError(t, err)
	var id int64
	require.NoError(t, c.QueryRow(ctx, "SELECT max(id) FROM tombstone.batches").Scan(&id))
	return id
}

func TestCLIAdmin(t *testing.T) {
	dsn := cliDB(t)
	ctx := context.Background()

	// init, with a config that excludes a table.
	cfgFile := filepath.Join(t.TempDir(), "tombstone.yaml")
	require.NoError(t, os.WriteFile(cfgFile, []byte("protect:\n  exclude: [public.notes]\n  retention: 3d\n"), 0o600))
	code, out, stderr := tomb(t, "init", "--dsn", dsn, "--config", cfgFile)
	require.Equal(t, 0, code, stderr)
	require.Regexp(t, `tombstone schema version \d+ installed in database ts_cli_[0-9a-f]+: 2 protected table\(s\)`, out)
	code, out, _ = tomb(t, "init", "--dsn", dsn, "--config", cfgFile, "--json")
	require.Equal(t, 0, code)
	var ini map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &ini))
	require.EqualValues(t, 2, ini["protected_tables"])

	b1 := deleteCaptured(t, dsn, "DELETE FROM tenants WHERE id IN (2, 3)")
	b2 := deleteCaptured(t, dsn, "DELETE FROM sites WHERE tenant_id = 5")

	// batches: a table by default, JSON on request.
	code, out, stderr = tomb(t, "batches", "--dsn", dsn)
	require.Equal(t, 0, code, stderr)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 3)
	require.Regexp(t, `^BATCH\s+TIME\s+ROLE\s+APP\s+CLIENT\s+XID\s+ROWS\s+REMAINING\s+STATE\s+PURGE AFTER\s+TABLES\s+SQL$`, lines[0])
	require.Regexp(t, fmt.Sprintf(`^%d\s+.*\s+10\.1\.2\.3\s+\d+\s+2\s+2\s+active\s+.*public\.sites=2\s+DELETE FROM sites WHERE tenant_id = 5$`, b2), lines[1])
	require.Regexp(t, fmt.Sprintf(`^%d\s+.*\s+6\s+6\s+active\s+.*public\.sites=4, public\.tenants=2\s+DELETE FROM tenants`, b1), lines[2])
	code, out, _ = tomb(t, "batches", "--dsn", dsn, "--json", "--table", "tenants", "--since", "yesterday", "--limit", "5")
	require.Equal(t, 0, code)
	var bs []tombstone.Batch
	require.NoError(t, json.Unmarshal([]byte(out), &bs))
	require.Len(t, bs, 1)
	require.Equal(t, b1, bs[0].ID)
	require.Equal(t, int64(6), bs[0].Rows)
	code, _, stderr = tomb(t, "batches", "--dsn", dsn, "--since", "not a time")
	require.Equal(t, 2, code)
	require.Contains(t, stderr, "--since")

	// batch ID.
	code, out, _ = tomb(t, "batch", fmt.Sprint(b1), "--dsn", dsn)
	require.Equal(t, 0, code)
	require.Regexp(t, `(?m)^state:\s+active$`, out)
	require.Regexp(t, `(?m)^public\.tenants\s+2\s+2\s+delete=2$`, out)
	require.Regexp(t, `(?m)^public\.sites\s+4\s+4\s+cascade=4$`, out)
	code, _, stderr = tomb(t, "batch", "999999", "--dsn", dsn)
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "batch 999999 does not exist (SQLSTATE P0002)")
	require.True(t, strings.HasPrefix(stderr, "tombstone: show batch 999999: "), "one prefix: %s", stderr)

	// tombstones.
	code, out, _ = tomb(t, "tombstones", "sites", "--dsn", dsn, "--where", "tenant_id = 3 AND name LIKE '%.2'")
	require.Equal(t, 0, code)
	require.Regexp(t, fmt.Sprintf(`(?m)^%d\s+cascade\s+.*\{"id":6,"tenant_id":3,"name":"site 3\.2"\}$`, b1), out)
	code, out, _ = tomb(t, "tombstones", "tenants", "--dsn", dsn, "--json", "--limit", "1")
	require.Equal(t, 0, code)
	var ts []struct {
		Batch int64
		Cause string
		Row   map[string]any
	}
	require.NoError(t, json.Unmarshal([]byte(out), &ts))
	require.Len(t, ts, 1)
	require.Equal(t, "delete", ts[0].Cause)
	require.Contains(t, []any{2.0, 3.0}, ts[0].Row["id"])
	// Predicates are validated: injection is a usage error, before any
	// connection.
	code, _, stderr = tomb(t, "tombstones", "tenants", "--dsn", dsn, "--where", "true; DROP TABLE notes")
	require.Equal(t, 2, code)
	require.Contains(t, stderr, "bad WHERE condition")
	code, _, _ = tomb(t, "undelete", "--dsn", dsn, "--table", "tenants", "--where", "id = 2) OR (true")
	require.Equal(t, 2, code)

	// Usage errors: exit 2.
	for _, args := range [][]string{
		{"undelete", "--dsn", dsn},
		{"undelete", "--dsn", dsn, "--batch", "1", "--xid", "2"},
		{"undelete", "--dsn", dsn, "--where", "id = 1"},
		{"undelete", "--dsn", dsn, "--batch", "1", "--on-conflict", "ignore"},
		{"purge", "--dsn", dsn},
		{"batch", "--dsn", dsn, "x"},
		{"nosuchcommand"},
	} {
		code, _, stderr := tomb(t, args...)
		require.Equal(t, 2, code, "%v: %s", args, stderr)
	}

	// A conflict: tenant 2 is back, written since the delete.
	c := testenv.Connect(t, dsn)
	_, err := c.Exec(ctx, "INSERT INTO tenants VALUES (2, 'new two')")
	require.NoError(t, err)
	before := snapshot(t, c)

	code, out, _ = tomb(t, "undelete", "--dsn", dsn, "--batch", fmt.Sprint(b1), "--dry-run")
	require.Equal(t, 3, code, "dry run found conflicts")
	require.Regexp(t, `(?m)^TABLE\s+WOULD RESTORE\s+CONFLICTS\s+SKIPPED$`, out)
	require.Regexp(t, `(?m)^public\.tenants\s+1\s+1\s+0$`, out)
	require.Regexp(t, `(?m)^public\.sites\s+2\s+0\s+2$`, out, "tenant 2's sites are skipped with it")
	require.Contains(t, out, "nothing changed")
	code, out, _ = tomb(t, "undelete", "--dsn", dsn, "--batch", fmt.Sprint(b1), "--dry-run", "--json")
	require.Equal(t, 3, code)
	var ur undeleteResult
	require.NoError(t, json.Unmarshal([]byte(out), &ur))
	require.True(t, ur.DryRun)
	require.Equal(t, int64(1), ur.Conflicts)
	require.Equal(t, before, snapshot(t, c))

	code, out, stderr = tomb(t, "undelete", "--dsn", dsn, "--batch", fmt.Sprint(b1))
	require.Equal(t, 3, code, "FAIL-mode conflict")
	require.Empty(t, out)
	require.Contains(t, stderr, "conflict with rows written since the delete (SQLSTATE 23505)")
	require.Contains(t, stderr, "DETAIL:  Key (id)=(2) already exist in public.tenants.")
	require.Contains(t, stderr, "HINT:  Use ON CONFLICT SKIP")
	require.Equal(t, before, snapshot(t, c))

	// Selected rows, SKIP: tenant 3 and its sites come back; 2 stays new,
	// and its old sites stay tombstones with the old tenant 2.
	code, out, stderr = tomb(t, "undelete", "--dsn", dsn, "--table", "tenants", "--where", "id IN (2, 3)",
		"--batch", fmt.Sprint(b1), "--on-conflict", "skip", "--json")
	require.Equal(t, 0, code, stderr)
	require.NoError(t, json.Unmarshal([]byte(out), &ur))
	require.Equal(t, int64(1), ur.Conflicts)
	require.Equal(t, int64(1+2), ur.Restored)
	require.Equal(t, int64(2), ur.Skipped)
	var n int
	require.NoError(t, c.QueryRow(ctx, "SELECT count(*) FROM sites WHERE tenant_id IN (2, 3)").Scan(&n))
	require.Equal(t, 2, n)

	// hold / purge / release.
	code, out, _ = tomb(t, "hold", "--dsn", dsn, "--batch", fmt.Sprint(b2))
	require.Equal(t, 0, code)
	require.Contains(t, out, "held")
	code, _, stderr = tomb(t, "purge", "--dsn", dsn, "--batch", fmt.Sprint(b2))
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "HINT:  RELEASE BATCH")
	code, _, _ = tomb(t, "release", "--dsn", dsn, "--batch", fmt.Sprint(b2), "--json")
	require.Equal(t, 0, code)
	code, out, _ = tomb(t, "undelete", "--dsn", dsn, "--xid", xidOf(t, c, b2), "--dry-run")
	require.Equal(t, 0, code, out)
	require.Regexp(t, `(?m)^public\.sites\s+2\s+0\s+0$`, out)
	code, out, _ = tomb(t, "purge", "--dsn", dsn, "--batch", fmt.Sprint(b2))
	require.Equal(t, 0, code)
	require.Regexp(t, `(?m)^public\.sites\s+2$`, out)

	// status.
	code, out, _ = tomb(t, "status", "--dsn", dsn)
	require.Equal(t, 0, code)
	require.Regexp(t, `(?m)^batches_purged\s+1$`, out)
	require.Regexp(t, `(?m)^tombstones public\.tenants\s+1$`, out)
	code, out, _ = tomb(t, "status", "--dsn", dsn, "--json")
	require.Equal(t, 0, code)
	var st map[string]string
	require.NoError(t, json.Unmarshal([]byte(out), &st))
	require.Equal(t, "false", st["reaper_paused"])
	require.Equal(t, "2", st["protected_tables"])

	// The environment variable stands in for --dsn; a bad one is an
	// operational error.
	t.Setenv("TOMBSTONE_DSN", dsn)
	code, _, _ = tomb(t, "batches")
	require.Equal(t, 0, code)
	code, _, stderr = tomb(t, "batches", "--dsn", "postgres://nobody@127.0.0.1:1/x?connect_timeout=2")
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "connect")
}

// TestCLINotAdmin: a role outside tombstone_admin gets exit 1 and the
// GRANT hint.
func TestCLINotAdmin(t *testing.T) {
	dsn := cliDB(t)
	code, _, stderr := tomb(t, "init", "--dsn", dsn)
	require.Equal(t, 0, code, stderr)
	role := fmt.Sprintf("ts_cli_app_%d", rand.Uint32())
	c := testenv.Connect(t, dsn)
	_, err := c.Exec(context.Background(), "CREATE ROLE "+role+" LOGIN")
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = c.Exec(context.Background(), "DROP ROLE IF EXISTS "+role) })
	u, _ := url.Parse(dsn)
	u.User = url.User(role)
	code, _, stderr = tomb(t, "batches", "--dsn", u.String())
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "(SQLSTATE 42501)")
	require.Contains(t, stderr, "HINT:  GRANT tombstone_admin TO "+role)
}

func xidOf(t *testing.T, c *pgx.Conn, batch int64) string {
	t.Helper()
	var x string
	require.NoError(t, c.QueryRow(context.Background(), "SELECT xid::text FROM tombstone.batches WHERE id = $1", batch).Scan(&x))
	return x
}

func snapshot(t *testing.T, c *pgx.Conn) string {
	t.Helper()
	var s string
	require.NoError(t, c.QueryRow(context.Background(), `SELECT concat_ws(E'\n',
		(SELECT string_agg(x::text, ',' ORDER BY x::text) FROM tenants x),
		(SELECT string_agg(x::text, ',' ORDER BY x::text) FROM sites x),
		(SELECT string_agg(x::text, ',' ORDER BY x::text) FROM notes x))`).Scan(&s))
	return s
}

// TestCLIOwnerCode: undelete refuses a table that runs another role's
// code (42501, exit 1, the opt-in named in the hint), and --run-owner-code
// restores it, the owner's trigger running as the owner.
func TestCLIOwnerCode(t *testing.T) {
	dsn := cliDB(t)
	ctx := context.Background()
	role := fmt.Sprintf("ts_cli_owner_%d", rand.Uint32())
	c := testenv.Connect(t, dsn)
	_, err := c.Exec(ctx, fmt.Sprintf(`CREATE ROLE %[1]s;
		CREATE TABLE owned (id int PRIMARY KEY, who text);
		CREATE FUNCTION owned_who() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.who := current_user; RETURN NEW; END $$;
		CREATE TRIGGER owned_who BEFORE INSERT ON owned FOR EACH ROW EXECUTE FUNCTION owned_who();
		ALTER TABLE owned OWNER TO %[1]s; ALTER FUNCTION owned_who() OWNER TO %[1]s;
		INSERT INTO owned VALUES (1, NULL)`, role))
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = c.Exec(context.Background(), "DROP OWNED BY "+role+"; DROP ROLE IF EXISTS "+role) })
	code, _, stderr := tomb(t, "init", "--dsn", dsn)
	require.Equal(t, 0, code, stderr)
	batch := deleteCaptured(t, dsn, "DELETE FROM owned")

	code, _, stderr = tomb(t, "undelete", "--dsn", dsn, "--batch", fmt.Sprint(batch))
	require.Equal(t, 1, code, stderr)
	require.Contains(t, stderr, "(SQLSTATE 42501)")
	require.Contains(t, stderr, "tombstone.restore_owner_code")
	code, out, stderr := tomb(t, "undelete", "--dsn", dsn, "--batch", fmt.Sprint(batch), "--run-owner-code", "--json")
	require.Equal(t, 0, code, stderr)
	var ur undeleteResult
	require.NoError(t, json.Unmarshal([]byte(out), &ur))
	require.Equal(t, int64(1), ur.Restored)
	var who string
	require.NoError(t, c.QueryRow(ctx, "SELECT who FROM owned WHERE id = 1").Scan(&who))
	require.Equal(t, role, who, "the owner's trigger ran as the owner")
}

// TestCLIPlantedOverloads (issue 15, item 1): with a better-matching
// overload planted in public for every built-in our sources call, every
// CLI command a superuser runs calls none of them.
func TestCLIPlantedOverloads(t *testing.T) {
	dsn := cliDB(t)
	ctx := context.Background()
	c := testenv.Connect(t, dsn)
	role := fmt.Sprintf("ts_plant_%d", rand.Uint32())
	_, err := c.Exec(ctx, fmt.Sprintf("CREATE ROLE %s LOGIN; GRANT CREATE ON SCHEMA public TO %s", role, role))
	require.NoError(t, err)
	t.Cleanup(func() {
		_, _ = c.Exec(context.Background(), fmt.Sprintf("DROP OWNED BY %s; DROP ROLE %s", role, role))
	})
	require.Greater(t, testenv.Plant(t, dsn, role, "public"), 1000)
	clean := func(what string, code int, stderr string) {
		t.Helper()
		require.Equal(t, 0, code, "%s: %s", what, stderr)
		require.Empty(t, testenv.PlantedCalls(t, dsn, role, "public"), what)
	}
	code, _, stderr := tomb(t, "init", "--dsn", dsn)
	clean("init", code, stderr)
	b := deleteCaptured(t, dsn, "DELETE FROM tenants WHERE id IN (2, 3)")
	b2 := deleteCaptured(t, dsn, "DELETE FROM tenants WHERE id = 4")
	for _, args := range [][]string{
		{"status"},
		{"batches", "--table", "tenants", "--since", "yesterday"},
		{"batch", fmt.Sprint(b)},
		{"tombstones", "sites", "--where", "tenant_id = 3 AND name LIKE '%.2'"},
		{"undelete", "--batch", fmt.Sprint(b), "--dry-run"},
		{"undelete", "--table", "tenants", "--where", "id = 2"},
		{"undelete", "--batch", fmt.Sprint(b), "--on-conflict", "skip"},
		{"hold", "--batch", fmt.Sprint(b2)},
		{"release", "--batch", fmt.Sprint(b2)},
		{"purge", "--batch", fmt.Sprint(b2)},
		{"reaper", "--once"},
	} {
		code, _, stderr := tomb(t, append(args, "--dsn", dsn)...)
		clean(strings.Join(args, " "), code, stderr)
	}
	require.Equal(t, int64(2), count(t, c, "SELECT count(*) FROM tenants WHERE id IN (2, 3)"), "both tenants back")
}

// TestCLIWhereUnderNonStandardStrings (issue 15, item 10): a --where that
// is one narrow condition as validated (standard_conforming_strings on)
// but "… OR true" where backslashes escape quotes is not widened by a
// session that has standard_conforming_strings off.
func TestCLIWhereUnderNonStandardStrings(t *testing.T) {
	dsn := cliDB(t)
	c := testenv.Connect(t, dsn)
	code, _, stderr := tomb(t, "init", "--dsn", dsn)
	require.Equal(t, 0, code, stderr)
	deleteCaptured(t, dsn, "DELETE FROM tenants WHERE id IN (2, 3)")
	t.Setenv("PGOPTIONS", "-c standard_conforming_strings=off")
	where := `name = 'a\' AND name = ' OR true --'`
	code, out, stderr := tomb(t, "tombstones", "tenants", "--where", where, "--dsn", dsn)
	require.Equal(t, 0, code, stderr)
	require.NotContains(t, out, "tenant 2")
	code, _, stderr = tomb(t, "undelete", "--table", "tenants", "--where", where, "--dsn", dsn)
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "no tombstones of public.tenants match")
	require.Equal(t, int64(0), count(t, c, "SELECT count(*) FROM tenants WHERE id IN (2, 3)"), "nothing restored")
}

// TestCLIFreezeAudit: tombstone freeze refuses the store's captures (a
// rewritten DELETE fails with TS020, nothing deleted), tombstone thaw ends
// it, and tombstone audit lists both, newest first, as JSON on request.
func TestCLIFreezeAudit(t *testing.T) {
	dsn := cliDB(t)
	ctx := context.Background()
	code, _, stderr := tomb(t, "init", "--dsn", dsn)
	require.Equal(t, 0, code, stderr)

	code, out, stderr := tomb(t, "freeze", "--dsn", dsn, "--json")
	require.Equal(t, 0, code, stderr)
	var st []map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &st))
	require.Equal(t, true, st[0]["deletes_frozen"])
	require.NotEmpty(t, st[0]["frozen_by"])

	c := testenv.Connect(t, dsn)
	cat, err := tombstone.LoadCatalog(ctx, c, tombstone.CatalogOptions{})
	require.NoError(t, err)
	res, err := rewrite.Rewrite("DELETE FROM tenants WHERE id = 2", cat, rewrite.Options{})
	require.NoError(t, err)
	_, err = c.Exec(ctx, res.SQL)
	var pe *pgconn.PgError
	require.ErrorAs(t, err, &pe)
	require.Equal(t, "TS020", pe.Code)
	var n int
	require.NoError(t, c.QueryRow(ctx, "SELECT count(*) FROM tenants").Scan(&n))
	require.Equal(t, 10, n)

	code, out, stderr = tomb(t, "thaw", "--dsn", dsn)
	require.Equal(t, 0, code, stderr)
	require.Regexp(t, `(?m)^DELETES_FROZEN\s+FROZEN_BY\s+FROZEN_AT\s*$`, out)
	require.Regexp(t, `(?m)^false\s*$`, out)
	deleteCaptured(t, dsn, "DELETE FROM tenants WHERE id = 2")

	code, out, stderr = tomb(t, "audit", "--dsn", dsn, "--json", "--limit", "5")
	require.Equal(t, 0, code, stderr)
	var trail []map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &trail))
	require.Len(t, trail, 2)
	require.Equal(t, "THAW DELETES", trail[0]["command"])
	require.Equal(t, "FREEZE DELETES", trail[1]["command"])
	code, _, stderr = tomb(t, "audit", "--dsn", dsn, "--limit", "0")
	require.Equal(t, 2, code)
	require.Contains(t, stderr, "--limit")

	// Under --json an error is JSON on stdout too, with the exit code.
	code, out, _ = tomb(t, "undelete", "--batch", "999999", "--dsn", dsn, "--json")
	require.Equal(t, 1, code)
	var je struct {
		Error struct {
			Message, SQLState string
			ExitCode          int `json:"exit_code"`
		}
	}
	require.NoError(t, json.Unmarshal([]byte(out), &je), out)
	require.Equal(t, "P0002", je.Error.SQLState)
	require.Equal(t, "tombstone: batch 999999 does not exist", je.Error.Message)
	require.Equal(t, 1, je.Error.ExitCode)
	code, out, _ = tomb(t, "audit", "--dsn", dsn, "--json", "--limit", "x")
	require.Equal(t, 2, code)
	require.NoError(t, json.Unmarshal([]byte(out), &je), out)
	require.Equal(t, 2, je.Error.ExitCode)
	require.Contains(t, je.Error.Message, "--limit")

	// The trash: tombstone trash lists a dropped table, and tombstone
	// tombstones of it says where it went.
	res, err = rewrite.Rewrite("DROP TABLE notes", cat, rewrite.Options{})
	require.NoError(t, err)
	_, err = c.Exec(ctx, res.SQL)
	require.NoError(t, err)
	code, out, stderr = tomb(t, "trash", "--dsn", dsn, "--json")
	require.Equal(t, 0, code, stderr)
	var trash []map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &trash))
	require.Len(t, trash, 1)
	require.Equal(t, "public.notes", trash[0]["table_name"])
	code, _, stderr = tomb(t, "tombstones", "notes", "--dsn", dsn)
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "table public.notes was dropped at")
	require.Contains(t, stderr, "HINT:  UNDROP TABLE public.notes brings it back")
}
