package test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/tombstone-proxy/tombstone/internal/testenv"
)

// TestRestoreModel is a differential tester of the undo path. Each round
// (one seed) generates a schema — foreign-key graphs with every ON DELETE
// action, trees, composite and missing primary keys, nullable UNIQUE keys,
// partitions, inheritance, identity and generated columns, a column named
// like tombstone's internals — and runs random steps: DELETEs through the
// proxy (compared with the same statements run by Postgres alone),
// application writes that reuse deleted keys, UNDELETEs of every form and
// mode (often DRY RUN first), PURGEs, a DROP to the trash. After each step
// it reads the whole database directly and checks it against a model that
// knows every row by its uid column, which the test fills with a value
// never reused: keys are reused, uids never.
//
// Knobs: TOMBSTONE_RESTORE_SEED (round i uses seed+i), _ROUNDS, _STEPS.
// A violation fails the round, which carries on from what the database
// holds (one run finds several bugs); the replay line names its seed.
func TestRestoreModel(t *testing.T) {
	testenv.PGURL(t) // skips without a test database
	seed := envUint(t, "TOMBSTONE_RESTORE_SEED", 12)
	rounds := envUint(t, "TOMBSTONE_RESTORE_ROUNDS", 6)
	steps := int(envUint(t, "TOMBSTONE_RESTORE_STEPS", 100))
	t.Logf("TOMBSTONE_RESTORE_SEED=%d TOMBSTONE_RESTORE_ROUNDS=%d TOMBSTONE_RESTORE_STEPS=%d", seed, rounds, steps)
	for i := range rounds {
		s := seed + i
		t.Run(fmt.Sprintf("seed=%d", s), func(t *testing.T) {
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("seed %d failed; replay: TOMBSTONE_RESTORE_SEED=%d TOMBSTONE_RESTORE_ROUNDS=1 TOMBSTONE_RESTORE_STEPS=%d go test -count=1 -run TestRestoreModel -v ./test/", s, s, steps)
				}
			})
			r := &round{t: t, seed: s, steps: steps, rng: rand.New(rand.NewPCG(s, 0x746f6d6273746f6e)),
				m: map[int64]*mrow{}, pending: map[linkKey][]*plink{}, seen: map[string]bool{}, dropped: -1}
			r.run()
		})
	}
}

// envUint reads a numeric knob from the environment.
func envUint(t *testing.T, name string, def uint64) uint64 {
	if v := os.Getenv(name); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		require.NoError(t, err, name)
		return n
	}
	return def
}

// seeded runs run once per round, as a subtest, with seeds from the knobs
// <prefix>_SEED (first seed, default 1), <prefix>_ROUNDS and <prefix>_STEPS.
func seeded(t *testing.T, prefix string, rounds, steps uint64, run func(t *testing.T, seed uint64, steps int)) {
	testenv.PGURL(t)
	seed := envUint(t, prefix+"_SEED", 1)
	rounds = envUint(t, prefix+"_ROUNDS", rounds)
	n := int(envUint(t, prefix+"_STEPS", steps))
	for i := range rounds {
		s := seed + i
		t.Run(fmt.Sprintf("seed=%d", s), func(t *testing.T) { run(t, s, n) })
	}
}

// weighted returns an index drawn with the given weights.
func weighted(rng *rand.Rand, ws ...int) int {
	total := 0
	for _, w := range ws {
		total += w
	}
	x := rng.IntN(total)
	for i, w := range ws {
		if x -= w; x < 0 {
			return i
		}
	}
	return len(ws) - 1
}

// fkDef is a foreign key of a generated table.
type fkDef struct {
	cols    []string
	parent  int    // referenced table (itself for a tree)
	action  string // ON DELETE action
	notNull bool
}

// nulls reports whether a delete of the parent nulls (or defaults) the
// link, which a restore of the parent re-links.
func (f fkDef) nulls() bool { return f.action == "SET NULL" || f.action == "SET DEFAULT" }

// tableDef is a generated table: id, v, n, the stored generated g, uid,
// and what was drawn for it.
type tableDef struct {
	name     string
	pk       []string // nil: no primary key, the nullable UNIQUE (code) is its only key
	code     bool     // a nullable UNIQUE (code)
	nnd      bool     // … NULLS NOT DISTINCT
	ident    string   // id is GENERATED <ident> AS IDENTITY
	seq      bool     // a non-key GENERATED ALWAYS identity column
	part     string   // PARTITION BY <part> (id)
	inh      int      // inheritance parent, -1
	hasChild bool     // an inheritance parent: its own rows are read with ONLY
	internal string   // a column named like tombstone's internals
	fks      []fkDef  // an inheritance child has its parent's columns, not the constraints
}

// Model states of a row.
const (
	stLive = iota
	stTomb
	stPurged
	stLost     // its tombstone went unrestored: reported, then ignored
	stReplaced // ON CONFLICT OVERWRITE put a restored row in its place
	stPoison   // duplicated: reported, then ignored
)

// mrow is the model of one row.
type mrow struct {
	table     int
	state     int
	del       map[string]json.RawMessage // columns when deleted (as its tombstone holds them)
	refs      []int64                    // the row each foreign key referenced then (0: NULL)
	sameBatch []bool                     // … deleted in the same batch
	batch     int64
	cause     string
}

// linkKey names one foreign key of one row.
type linkKey struct {
	uid int64
	fk  int
}

// plink is a parent whose delete set a link NULL (or to its default).
// Restoring it must re-link the link while still NULL when required; a
// link the application re-pointed since may be re-linked, need not be.
type plink struct {
	parent   int64
	batch    int64
	required bool
}

// world is the database after a step, read directly, rows by uid.
type world struct {
	live, tombs    map[int64][]obsRow // tombs: causes delete, cascade, truncate
	setNull        map[int64][]int64  // batches of a row's set_null tombstones
	batches        []batchRow
	keys           []map[string]int64 // per table: key values -> uid of the live row
	liveDump, dump string             // the tables; everything (to see nothing changed)
}

// obsRow is a row as read: live, or a tombstone with its batch and cause.
type obsRow struct {
	table       int
	batch       int64
	cause, text string
	cols        map[string]json.RawMessage
}

type batchRow struct {
	id        int64
	xid, time string
}

// round is one seed: its schema, connections and model.
type round struct {
	t                  *testing.T
	rng                *rand.Rand
	seed               uint64
	steps, step        int
	e                  *env
	app, admin, direct *pgx.Conn
	tables             []*tableDef
	cols               [][]string        // each table's columns
	shadows            map[string]string // each table's shadow table; nil: the store is not installed
	dropped            int               // table in the trash, -1
	nextUID            int64
	m                  map[int64]*mrow
	pending            map[linkKey][]*plink
	obs                *world // the database after the last step
	seen               map[string]bool
	nviol              int
}

var ctx = context.Background()

// logf logs with the step number.
func (r *round) logf(format string, args ...any) {
	r.t.Helper()
	r.t.Logf("step %d: %s", r.step, fmt.Sprintf(format, args...))
}

// violate reports a broken invariant: the first of each kind fails the
// test with its details, repeats are logged.
func (r *round) violate(kind, format string, args ...any) {
	r.t.Helper()
	r.nviol++
	if r.seen[kind] {
		r.logf("VIOLATION (again) [%s] %s", kind, fmt.Sprintf(format, args...))
		return
	}
	r.seen[kind] = true
	r.t.Errorf("step %d (seed %d): VIOLATION [%s] %s", r.step, r.seed, kind, fmt.Sprintf(format, args...))
}

// run sets the round up and runs its steps.
func (r *round) run() {
	schema := r.genSchema()
	r.logf("schema and data:\n%s", schema)
	r.e = newEnv(r.t, schema)
	r.direct = testenv.Connect(r.t, r.e.direct)
	r.app = testenv.Connect(r.t, r.e.proxy)
	r.admin = testenv.Connect(r.t, r.e.proxy)
	_, err := r.app.Exec(ctx, "DELETE FROM "+r.tables[0].name+" WHERE false") // installs the store
	r.logf("install: %v", err)
	if ok := r.query("SELECT to_regclass('tombstone.shadows') IS NOT NULL"); ok[0][0] == "t" {
		r.shadows = map[string]string{}
		for _, row := range r.query("SELECT source::regclass::text, shadow_name FROM tombstone.shadows") {
			r.shadows[row[0]] = row[1]
		}
	}
	for i, tb := range r.tables {
		for _, c := range r.query(fmt.Sprintf("SELECT attname FROM pg_attribute WHERE attrelid = '%s'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum", tb.name)) {
			r.cols[i] = append(r.cols[i], c[0])
		}
	}
	r.obs = r.observe()
	for uid, rows := range r.obs.live {
		r.m[uid] = &mrow{table: rows[0].table}
	}
	for r.step = 1; r.step <= r.steps; r.step++ {
		[]func(){r.stepDelete, r.stepWrite, r.stepRestore, r.stepPurge, r.stepTrash}[weighted(r.rng, 30, 30, 34, 3, 3)]()
		if r.nviol >= 40 {
			r.logf("%d violations: the round stops here", r.nviol)
			break
		}
	}
}

// genSchema draws the round's tables and returns their DDL and rows.
func (r *round) genSchema() string {
	n := 3 + r.rng.IntN(4)
	nopk := -1
	if r.rng.IntN(2) == 0 {
		nopk = 1 + r.rng.IntN(n-1)
	}
	for i := range n {
		tb := &tableDef{name: fmt.Sprintf("t%d", i), inh: -1, code: i == nopk}
		if i != nopk {
			tb.pk = []string{"id"}
			if r.rng.IntN(4) == 0 {
				tb.pk = append(tb.pk, "k2")
			}
			tb.part = []string{"", "RANGE", "LIST"}[weighted(r.rng, 16, 2, 2)]
			if tb.part == "" { // unique keys without the partition key, identity: not on partitions
				tb.code = r.rng.IntN(2) == 0
				tb.nnd = tb.code && r.rng.IntN(4) == 0
				tb.seq = r.rng.IntN(6) == 0
				if len(tb.pk) == 1 {
					tb.ident = []string{"", "ALWAYS", "BY DEFAULT"}[weighted(r.rng, 4, 1, 1)]
				}
			}
		}
		for j, p := range r.tables {
			if p.pk == nil || p.inh >= 0 || (r.rng.IntN(5) < 2 && !(j == i-1 && len(tb.fks) == 0)) {
				continue
			}
			f := fkDef{parent: j, cols: []string{fmt.Sprintf("p%d", j)},
				action: []string{"CASCADE", "SET NULL", "SET DEFAULT", "NO ACTION"}[weighted(r.rng, 9, 6, 3, 1)]}
			if len(p.pk) == 2 {
				f.cols = append(f.cols, fmt.Sprintf("p%dk", j))
			}
			f.notNull = !f.nulls() && r.rng.IntN(3) == 0
			tb.fks = append(tb.fks, f)
		}
		if len(tb.pk) == 1 && tb.part == "" && r.rng.IntN(2) == 0 { // a tree
			tb.fks = append(tb.fks, fkDef{parent: i, cols: []string{"parent_id"}, action: []string{"CASCADE", "SET NULL"}[r.rng.IntN(2)]})
		}
		r.tables = append(r.tables, tb)
	}
	if r.rng.IntN(5) < 2 { // must keep working
		r.tables[r.rng.IntN(n)].internal = []string{"_ts_token", "_ts_row", "_ts_batch"}[weighted(r.rng, 3, 3, 1)]
	}
	if r.rng.IntN(5) == 0 { // an inheritance child of a plain table
		var plain []int
		for i, tb := range r.tables {
			if tb.pk != nil && tb.part == "" && tb.ident == "" && !tb.seq {
				plain = append(plain, i)
			}
		}
		if len(plain) > 0 {
			pi := plain[r.rng.IntN(len(plain))]
			p := r.tables[pi]
			p.hasChild = true
			r.tables = append(r.tables, &tableDef{name: p.name + "c", pk: p.pk, inh: pi, code: p.code, internal: p.internal, fks: p.fks})
		}
	}
	r.cols = make([][]string, len(r.tables))
	var b strings.Builder
	for i := range r.tables {
		b.WriteString(r.ddl(i))
	}
	w := &world{live: map[int64][]obsRow{}, keys: make([]map[string]int64, len(r.tables))}
	for i, tb := range r.tables {
		w.keys[i] = map[string]int64{}
		if tb.pk != nil && tb.inh < 0 { // key 0, never deleted: where SET DEFAULT points
			b.WriteString(r.insertSQL(i, r.newRow(w, i, -1)) + ";\n")
		}
		for range 4 + r.rng.IntN(4) {
			if v := r.newRow(w, i, 0); v != nil {
				b.WriteString(r.insertSQL(i, v) + ";\n")
			}
		}
	}
	return b.String()
}

// ddl is table i's CREATE TABLE (with partitions).
func (r *round) ddl(i int) string {
	tb := r.tables[i]
	if tb.inh >= 0 {
		return fmt.Sprintf("CREATE TABLE %s (extra text, PRIMARY KEY (%s)) INHERITS (%s);\n", tb.name, strings.Join(tb.pk, ", "), r.tables[tb.inh].name)
	}
	cols := []string{"id int NOT NULL"}
	if tb.ident != "" {
		cols[0] = "id int GENERATED " + tb.ident + " AS IDENTITY"
	}
	if len(tb.pk) == 2 {
		cols = append(cols, "k2 int NOT NULL")
	}
	if tb.code {
		cols = append(cols, "code int")
	}
	cols = append(cols, "v text NOT NULL DEFAULT ''", "n int NOT NULL DEFAULT 0", "g text GENERATED ALWAYS AS (v || '#' || n::text) STORED")
	if tb.seq {
		cols = append(cols, "seq int GENERATED ALWAYS AS IDENTITY")
	}
	var cons []string
	for _, f := range tb.fks {
		for _, c := range f.cols {
			cols = append(cols, c+" int"+map[bool]string{true: " NOT NULL"}[f.notNull]+map[bool]string{true: " DEFAULT 0"}[f.action == "SET DEFAULT"])
		}
		p := r.tables[f.parent]
		cons = append(cons, fmt.Sprintf("FOREIGN KEY (%s) REFERENCES %s (%s) ON DELETE %s", strings.Join(f.cols, ", "), p.name, strings.Join(p.pk, ", "), f.action))
	}
	if tb.internal != "" {
		cols = append(cols, tb.internal+" text")
	}
	cols = append(cols, "uid bigint")
	if tb.pk != nil {
		cols = append(cols, "PRIMARY KEY ("+strings.Join(tb.pk, ", ")+")")
	}
	if tb.code {
		cols = append(cols, "UNIQUE "+map[bool]string{true: "NULLS NOT DISTINCT "}[tb.nnd]+"(code)")
	}
	s := fmt.Sprintf("CREATE TABLE %s (\n  %s\n)", tb.name, strings.Join(append(cols, cons...), ",\n  "))
	switch tb.part {
	case "RANGE":
		s += fmt.Sprintf(" PARTITION BY RANGE (id);\nCREATE TABLE %[1]s_a PARTITION OF %[1]s FOR VALUES FROM (MINVALUE) TO (3);\n"+
			"CREATE TABLE %[1]s_b PARTITION OF %[1]s FOR VALUES FROM (3) TO (6);\nCREATE TABLE %[1]s_d PARTITION OF %[1]s DEFAULT", tb.name)
	case "LIST":
		s += fmt.Sprintf(" PARTITION BY LIST (id);\nCREATE TABLE %[1]s_a PARTITION OF %[1]s FOR VALUES IN (0, 1, 2, 3);\n"+
			"CREATE TABLE %[1]s_d PARTITION OF %[1]s DEFAULT", tb.name)
	}
	return s + ";\n"
}

// keyCols are the columns that identify a row of table i: its primary
// key, else its unique code.
func (r *round) keyCols(i int) []string {
	if r.tables[i].pk != nil {
		return r.tables[i].pk
	}
	return []string{"code"}
}

// rawKey joins the JSON values of names; null when one is NULL.
func rawKey(cols map[string]json.RawMessage, names []string) (string, bool) {
	var parts []string
	for _, c := range names {
		v, ok := cols[c]
		if !ok || string(v) == "null" {
			return "", true
		}
		parts = append(parts, string(v))
	}
	return strings.Join(parts, "|"), false
}

// newRow draws a row of table i (SQL literals by column) that references
// live rows of w under a key not taken in w, and adds it to w. reuse > 0
// takes that tombstone's key and often its code (a new tenant with an old
// id); -1 makes the key-0 row. It returns nil when Postgres would refuse
// the row.
func (r *round) newRow(w *world, i int, reuse int64) map[string]string {
	tb := r.tables[i]
	v := map[string]string{"v": fmt.Sprintf("'%s%d'", []string{"ant", "bee", "cat", "dog"}[r.rng.IntN(4)], r.rng.IntN(10)), "n": strconv.Itoa(r.rng.IntN(6))}
	var old map[string]json.RawMessage
	if reuse > 0 {
		old = r.m[reuse].del
	}
	fresh := func() { v["id"], v["k2"] = strconv.Itoa(1+r.rng.IntN(9)), strconv.Itoa(1+r.rng.IntN(2)) }
	switch {
	case reuse == -1:
		v["id"], v["k2"], v["v"], v["n"] = "0", "0", "'sentinel'", "0"
	case tb.pk == nil:
		v["id"] = strconv.Itoa(1 + r.rng.IntN(6))
	case old != nil:
		for _, c := range tb.pk {
			v[c] = string(old[c])
		}
	default:
		fresh()
	}
	key := func() string {
		cols := map[string]json.RawMessage{}
		for _, c := range tb.pk {
			cols[c] = json.RawMessage(v[c])
		}
		k, _ := rawKey(cols, tb.pk)
		return k
	}
	for try := 0; tb.pk != nil; try++ {
		if _, taken := w.keys[i][key()]; !taken {
			break
		} else if try == 10 {
			return nil
		}
		fresh()
	}
	if tb.code {
		v["code"] = "NULL"
		if old != nil && string(old["code"]) != "null" && r.rng.IntN(5) < 3 {
			v["code"] = string(old["code"])
		} else if c := strconv.Itoa(1 + r.rng.IntN(9)); reuse != -1 && r.rng.IntN(3) > 0 {
			v["code"] = c
		}
		for _, rows := range w.live {
			if c := string(rows[0].cols["code"]); rows[0].table == i && (c == v["code"] || (c == "null" && v["code"] == "NULL" && tb.nnd)) {
				return nil
			}
		}
	}
	for _, f := range tb.fks {
		var cands []int64
		for uid, rows := range w.live {
			if rows[0].table == f.parent {
				cands = append(cands, uid)
			}
		}
		slices.Sort(cands)
		null := reuse == -1 || len(cands) == 0 || (!f.notNull && r.rng.IntN(4) == 0)
		for k, c := range f.cols {
			switch {
			case reuse == -1 && f.parent != i: // the key-0 row points at its parent's
				v[c] = "0"
			case null:
				v[c] = "NULL"
			default:
				if k == 0 {
					cands = cands[r.rng.IntN(len(cands)):]
				}
				v[c] = string(w.live[cands[0]][0].cols[r.tables[f.parent].pk[k]])
			}
		}
	}
	if tb.internal != "" {
		v[tb.internal] = fmt.Sprintf("'i%d'", r.nextUID+1)
	}
	if tb.inh >= 0 {
		v["extra"] = "'e'"
	}
	r.nextUID++
	v["uid"] = strconv.FormatInt(r.nextUID, 10)
	cols := map[string]json.RawMessage{}
	for k, s := range v {
		if !strings.HasPrefix(s, "'") {
			cols[k] = json.RawMessage(strings.ReplaceAll(s, "NULL", "null"))
		}
	}
	w.live[r.nextUID] = []obsRow{{table: i, cols: cols}}
	if tb.pk != nil {
		w.keys[i][key()] = r.nextUID
	}
	return v
}

// insertSQL renders an INSERT of row v into table i.
func (r *round) insertSQL(i int, v map[string]string) string {
	var names, vals []string
	for _, c := range slices.Concat([]string{"id", "k2", "code", "v", "n"}, r.fkCols(i), []string{r.tables[i].internal, "extra", "uid"}) {
		if s, ok := v[c]; ok && c != "" && (c != "k2" || len(r.tables[i].pk) == 2) {
			names, vals = append(names, c), append(vals, s)
		}
	}
	over := map[bool]string{true: " OVERRIDING SYSTEM VALUE"}[r.tables[i].ident == "ALWAYS"]
	return fmt.Sprintf("INSERT INTO %s (%s)%s VALUES (%s)", r.tables[i].name, strings.Join(names, ", "), over, strings.Join(vals, ", "))
}

// fkCols lists table i's foreign-key columns.
func (r *round) fkCols(i int) []string {
	var out []string
	for _, f := range r.tables[i].fks {
		out = append(out, f.cols...)
	}
	return out
}

// constrained returns table i's foreign keys (an inheritance child has
// the columns, not the constraints).
func (r *round) constrained(i int) []fkDef {
	if r.tables[i].inh >= 0 {
		return nil
	}
	return r.tables[i].fks
}

// query runs sql directly and returns its rows as text.
func (r *round) query(sql string) [][]string {
	r.t.Helper()
	out, err := r.tryQuery(sql)
	require.NoError(r.t, err, sql)
	return out
}

// tryQuery runs sql directly and returns its rows as text, or its error.
func (r *round) tryQuery(sql string) ([][]string, error) {
	res, err := r.direct.PgConn().Exec(ctx, sql).ReadAll()
	if err != nil {
		return nil, err
	}
	var out [][]string
	for _, row := range res[len(res)-1].Rows {
		s := make([]string, len(row))
		for i, v := range row {
			s[i] = string(v)
		}
		out = append(out, s)
	}
	return out, nil
}

// observe reads every table, every shadow table and the batches, in one
// round trip.
func (r *round) observe() *world {
	r.t.Helper()
	w := &world{live: map[int64][]obsRow{}, tombs: map[int64][]obsRow{}, setNull: map[int64][]int64{}, keys: make([]map[string]int64, len(r.tables))}
	var sqls []string
	for i, tb := range r.tables {
		if w.keys[i] = map[string]int64{}; i != r.dropped {
			only := map[bool]string{true: "ONLY "}[tb.hasChild] // the child's rows are its own table's
			sqls = append(sqls, fmt.Sprintf("SELECT %d, uid, 0, '', to_jsonb(t)::text FROM %s%s t ORDER BY 5", i, only, tb.name))
		}
	}
	for i, tb := range r.tables {
		if sh, ok := r.shadows[tb.name]; ok {
			// A user column named _ts_x is stored as _ts_user__ts_x: read
			// back under the user's name (the store's own columns aside).
			sqls = append(sqls, fmt.Sprintf(`SELECT %d, uid, _ts_batch, _ts_cause,
				(SELECT jsonb_object_agg(CASE WHEN k LIKE '\_ts\_user\_%%' THEN substr(k, 10)
				                              WHEN k IN ('_ts_batch', '_ts_cause', '_ts_deleted_at', '_ts_token') THEN '_ts_store' || k
				                              ELSE k END, v) FROM jsonb_each(to_jsonb(s)) e(k, v))::text
				FROM tombstone.%q s ORDER BY 5`, i, sh))
		}
	}
	if r.shadows != nil {
		sqls = append(sqls, "SELECT id, xid::text, stmt_time::text, restored_at IS NULL, purged_at IS NULL FROM tombstone.batches ORDER BY id")
	}
	res, err := r.direct.PgConn().Exec(ctx, strings.Join(sqls, ";\n")).ReadAll()
	require.NoError(r.t, err)
	var b strings.Builder
	for k, rs := range res {
		fmt.Fprintf(&b, "== %s\n", sqls[k])
		if k == len(res)-1 && r.shadows != nil { // the batches
			for _, row := range rs.Rows {
				id, _ := strconv.ParseInt(string(row[0]), 10, 64)
				w.batches = append(w.batches, batchRow{id: id, xid: string(row[1]), time: string(row[2])})
				fmt.Fprintf(&b, "%s %s %s\n", row[0], row[3], row[4])
			}
			break
		}
		for _, row := range rs.Rows {
			i, _ := strconv.Atoi(string(row[0]))
			uid, _ := strconv.ParseInt(string(row[1]), 10, 64)
			o := obsRow{table: i, cause: string(row[3]), text: string(row[4])}
			o.batch, _ = strconv.ParseInt(string(row[2]), 10, 64)
			require.NoError(r.t, json.Unmarshal(row[4], &o.cols))
			b.WriteString(o.text + "\n")
			switch {
			case o.cause == "":
				w.live[uid] = append(w.live[uid], o)
				if k, null := rawKey(o.cols, r.keyCols(i)); !null && r.tables[i].pk != nil {
					w.keys[i][k] = uid
				}
			case o.cause == "set_null":
				w.setNull[uid] = append(w.setNull[uid], o.batch)
			default:
				w.tombs[uid] = append(w.tombs[uid], o)
			}
		}
		if !strings.Contains(sqls[k], "tombstone.") {
			w.liveDump = b.String() // the tables come first
		}
	}
	w.dump = b.String()
	return w
}

// lineDiff lists the lines only a has (-) and only b has (+).
func lineDiff(a, b string) string {
	var out []string
	for _, x := range []struct {
		sign     string
		from, in string
	}{{"- ", a, b}, {"+ ", b, a}} {
		for _, l := range strings.Split(x.from, "\n") {
			if !strings.Contains("\n"+x.in+"\n", "\n"+l+"\n") {
				out = append(out, x.sign+l)
			}
		}
	}
	return strings.Join(out, "\n")
}

// ref returns the uid of the row that foreign key fi of a row of table i
// references in w: 0 when the link is NULL, -1 when no row has the key.
func (r *round) ref(w *world, i, fi int, cols map[string]json.RawMessage) int64 {
	f := r.tables[i].fks[fi]
	if k, null := rawKey(cols, f.cols); null {
		return 0
	} else if uid, ok := w.keys[f.parent][k]; ok {
		return uid
	}
	return -1
}

// unlinked reports whether a SET NULL / SET DEFAULT link is NULL or its
// default (0): where a delete of its parent leaves it.
func unlinked(cols map[string]json.RawMessage, f fkDef) bool {
	for _, c := range f.cols {
		if v := string(cols[c]); v != "null" && !(f.action == "SET DEFAULT" && v == "0") {
			return false
		}
	}
	return f.nulls()
}

// allowed reports whether link fk of row uid may be re-linked to parent.
func (r *round) allowed(uid int64, fk int, parent int64) bool {
	return slices.ContainsFunc(r.pending[linkKey{uid, fk}], func(p *plink) bool { return p.parent == parent })
}

// tagOf renders a command's outcome: its tag, or ERROR, SQLSTATE, message.
func tagOf(tag pgconn.CommandTag, err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return "ERROR " + pe.Code + " " + pe.Message
	} else if err != nil {
		return "ERROR " + err.Error()
	}
	return tag.String()
}

// errCode is err's SQLSTATE ("" when none).
func errCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// counts is a table's line of an UNDELETE: restored, conflicts, skipped.
type counts [3]int64

// console runs a console command through the proxy (simple protocol) and
// returns its lines by table, read by column name (a missing one is 0).
func (r *round) console(sql string) (map[string]counts, error) {
	r.logf("console: %s", sql)
	res, err := r.admin.PgConn().Exec(ctx, sql).ReadAll()
	if err != nil {
		r.logf("  -> %s", tagOf(pgconn.CommandTag{}, err))
		return nil, err
	}
	out, last, idx := map[string]counts{}, res[len(res)-1], map[string]int{}
	for i, fd := range last.FieldDescriptions {
		idx[fd.Name] = i
	}
	for _, row := range last.Rows {
		var c counts
		for k, name := range []string{"restored", "conflicts", "skipped"} {
			if i, ok := idx[name]; ok {
				c[k], _ = strconv.ParseInt(string(row[i]), 10, 64)
			}
		}
		if i, ok := idx["table_name"]; ok {
			out[string(row[i])] = c
		}
	}
	r.logf("  -> %v", out)
	return out, nil
}

// liveOf lists the live rows of table i, key 0 left out.
func (r *round) liveOf(w *world, i int) []int64 {
	var out []int64
	for uid, rows := range w.live {
		if rows[0].table == i && string(rows[0].cols["id"]) != "0" {
			out = append(out, uid)
		}
	}
	slices.Sort(out)
	return out
}

// pickTomb picks a tombstone, half the time of the newest batch (whose
// keys the application most likely just reused); 0 when there is none.
func (r *round) pickTomb(w *world) int64 {
	var uids []int64
	var newest int64
	for uid, m := range r.m {
		if m.state == stTomb && len(w.tombs[uid]) == 1 {
			uids, newest = append(uids, uid), max(newest, m.batch)
		}
	}
	slices.Sort(uids)
	if r.rng.IntN(2) == 0 {
		uids = slices.DeleteFunc(uids, func(u int64) bool { return r.m[u].batch != newest })
	}
	if len(uids) == 0 {
		return 0
	}
	return uids[r.rng.IntN(len(uids))]
}

// stepDelete deletes through the proxy — one statement, or several in a
// transaction that commits or rolls back — after running the same
// statements directly in a transaction rolled back: the proxy must answer
// and leave the tables as Postgres does, and capture every row that went.
func (r *round) stepDelete() {
	prev := r.obs
	n, tx := []int{1, 2 + r.rng.IntN(2), 1 + r.rng.IntN(2)}[weighted(r.rng, 7, 2, 1)], ""
	if n > 1 || r.rng.IntN(9) == 0 {
		tx = []string{"COMMIT", "ROLLBACK"}[r.rng.IntN(3)/2]
	}
	var stmts []string
	for range n {
		stmts = append(stmts, r.genDelete(prev))
	}
	r.logf("delete (%s): %s", map[string]string{"": "autocommit"}[tx]+tx, strings.Join(stmts, "; "))
	var want, got []string
	wantLive, failed := prev.liveDump, false
	for _, c := range []*pgx.Conn{r.direct, r.app} {
		mode := []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement}[r.rng.IntN(2)]
		if c == r.direct || tx != "" {
			_, err := c.Exec(ctx, "BEGIN")
			require.NoError(r.t, err)
		}
		for _, s := range stmts {
			tag, err := c.Exec(ctx, s, mode)
			if c == r.direct {
				want, failed = append(want, tagOf(tag, err)), failed || err != nil
			} else {
				got = append(got, tagOf(tag, err))
			}
		}
		if c == r.direct && !failed && tx != "ROLLBACK" {
			wantLive = r.observe().liveDump // what Postgres alone leaves
		}
		if end := map[bool]string{true: "ROLLBACK", false: tx}[c == r.direct]; end != "" {
			_, err := c.Exec(ctx, end)
			require.NoError(r.t, err)
		}
	}
	r.logf("  -> %v (Postgres: %v)", got, want)
	cur := r.observe()
	same := true
	for k := range stmts {
		if g, w := strings.Fields(got[k]), strings.Fields(want[k]); !slices.Equal(g[:2], w[:2]) || (!failed && got[k] != want[k]) {
			r.violate("DELETE answered differently from Postgres: "+strings.Join(strings.Fields(got[k])[:2], " "), "%s: proxy %q, Postgres %q", stmts[k], got[k], want[k])
			same = false
			break // the rest of the transaction differs because of it
		}
	}
	if same && cur.liveDump != wantLive {
		r.violate("DELETE left the tables differently from Postgres", "%s (- Postgres, + proxy):\n%s", strings.Join(stmts, "; "), lineDiff(wantLive, cur.liveDump))
	}
	if (failed || tx == "ROLLBACK") && cur.dump != prev.dump {
		r.violate("a failed or rolled back DELETE left traces", "%s:\n%s", strings.Join(stmts, "; "), lineDiff(prev.dump, cur.dump))
	}
	r.transition(prev, cur, &stepCtx{kind: "delete", single: n == 1})
	r.obs = cur
}

// genDelete draws a DELETE (or a TRUNCATE of a table nobody references).
func (r *round) genDelete(w *world) string {
	i := r.rng.IntN(len(r.tables))
	tb := r.tables[i]
	live := r.liveOf(w, i)
	if len(live) == 0 || r.rng.IntN(25) == 0 {
		referenced := tb.hasChild || tb.inh >= 0
		for _, o := range r.tables {
			referenced = referenced || (o != tb && slices.ContainsFunc(o.fks, func(f fkDef) bool { return f.parent == i }))
		}
		if !referenced {
			return "TRUNCATE " + tb.name
		}
	}
	row := map[string]json.RawMessage{"id": json.RawMessage("1"), "k2": json.RawMessage("1")}
	if len(live) > 0 {
		row = w.live[live[r.rng.IntN(len(live))]][0].cols
	}
	if parents := r.parentsOfTombs(w, i); len(parents) > 0 && r.rng.IntN(2) == 0 {
		// A node whose child went earlier: a later restore of it with a
		// condition on the live tree meets that child's tombstone.
		row = w.live[parents[r.rng.IntN(len(parents))]][0].cols
	}
	var where string
	switch weighted(r.rng, 4, 2, 3) {
	case 0:
		where = "id = " + string(row["id"])
		if len(tb.pk) == 2 {
			where = fmt.Sprintf("(id, k2) = (%s, %s)", row["id"], row["k2"])
		}
	case 1:
		a, _ := strconv.Atoi(string(row["id"]))
		where = fmt.Sprintf("id BETWEEN %d AND %d", max(a, 1), a+r.rng.IntN(3))
	default:
		preds := []string{fmt.Sprintf("n %% 3 = %d", r.rng.IntN(3)), "v LIKE '%a%'"}
		if tb.code {
			preds = append(preds, "code IS NULL", fmt.Sprintf("code > %d", r.rng.IntN(9)))
		}
		for _, f := range tb.fks {
			p := r.tables[f.parent]
			preds = append(preds, fmt.Sprintf("(%s) IN (SELECT %s FROM %s WHERE n >= %d)", strings.Join(f.cols, ", "), strings.Join(p.pk, ", "), p.name, r.rng.IntN(5)))
		}
		where = preds[r.rng.IntN(len(preds))] + " AND id > 0"
	}
	only := map[bool]string{true: "ONLY "}[tb.hasChild && r.rng.IntN(3) == 0]
	return fmt.Sprintf("DELETE FROM %s%s WHERE %s", only, tb.name, where)
}

// parentsOfTombs lists the live rows of tree table i that are the parent
// of a tombstone.
func (r *round) parentsOfTombs(w *world, i int) []int64 {
	ids := map[string]bool{}
	for _, m := range r.m {
		if v, ok := m.del["parent_id"]; ok && m.state == stTomb && m.table == i && r.tables[i].inh < 0 && string(v) != "null" {
			ids[string(v)] = true
		}
	}
	return slices.DeleteFunc(r.liveOf(w, i), func(uid int64) bool { return !ids[string(w.live[uid][0].cols["id"])] })
}

// stepWrite is the application going on: rows that take the keys of
// deleted ones, new children under them, updates, and links a delete
// set NULL pointed elsewhere.
func (r *round) stepWrite() {
	prev := r.obs
	var stmts []string
	inserted := map[int64]bool{}
	var repointed *linkKey
	insert := func(i int, reuse int64, parent int, pv map[string]string) map[string]string {
		v := r.newRow(prev, i, reuse)
		if v != nil {
			for _, f := range r.tables[i].fks {
				for k, c := range f.cols {
					if f.parent == parent && pv != nil {
						v[c] = pv[r.tables[parent].pk[k]] // under the new parent
					}
				}
			}
			uid, _ := strconv.ParseInt(v["uid"], 10, 64)
			inserted[uid], stmts = true, append(stmts, r.insertSQL(i, v))
		}
		return v
	}
	switch weighted(r.rng, 12, 2, 5) {
	case 0: // a new row, often with a deleted row's key, sometimes with a child under it
		i, u := r.rng.IntN(len(r.tables)), r.pickTomb(prev)
		if u != 0 {
			i = r.m[u].table
		}
		var kids []int
		for k := range r.tables {
			if k != i && slices.ContainsFunc(r.constrained(k), func(f fkDef) bool { return f.parent == i }) {
				kids = append(kids, k)
			}
		}
		if pv := insert(i, u, -1, nil); pv != nil && len(kids) > 0 && r.tables[i].pk != nil && r.rng.IntN(3) == 0 {
			insert(kids[r.rng.IntN(len(kids))], 0, i, pv)
		}
	case 1:
		i := r.rng.IntN(len(r.tables))
		if live := r.liveOf(prev, i); len(live) > 0 {
			stmts = append(stmts, fmt.Sprintf("UPDATE %s SET n = n + 1, v = v || 'u' WHERE uid = %d", r.tables[i].name, live[r.rng.IntN(len(live))]))
		}
	default: // point a link a delete set NULL elsewhere
		var links []linkKey
		for uid, rows := range prev.live {
			for fi, f := range r.constrained(rows[0].table) {
				if unlinked(rows[0].cols, f) && len(r.pending[linkKey{uid, fi}]) > 0 {
					links = append(links, linkKey{uid, fi})
				}
			}
		}
		if len(links) == 0 {
			break
		}
		lk := slices.SortedFunc(slices.Values(links), cmpLink)[r.rng.IntN(len(links))]
		i := prev.live[lk.uid][0].table
		f := r.tables[i].fks[lk.fk]
		if cands := r.liveOf(prev, f.parent); len(cands) > 0 {
			p := prev.live[cands[r.rng.IntN(len(cands))]][0].cols
			var sets []string
			for k, c := range f.cols {
				sets = append(sets, fmt.Sprintf("%s = %s", c, p[r.tables[f.parent].pk[k]]))
			}
			stmts, repointed = append(stmts, fmt.Sprintf("UPDATE %s SET %s WHERE uid = %d", r.tables[i].name, strings.Join(sets, ", "), lk.uid)), &lk
		}
	}
	for uid := range inserted { // newRow added the rows to prev: out again
		if i := prev.live[uid][0].table; r.tables[i].pk != nil {
			k, _ := rawKey(prev.live[uid][0].cols, r.keyCols(i))
			delete(prev.keys[i], k)
		}
		delete(prev.live, uid)
	}
	if len(stmts) == 0 {
		return
	}
	r.logf("app: %s", strings.Join(stmts, "; "))
	var tags []string
	for _, s := range slices.Concat([]string{"BEGIN"}, stmts, []string{"COMMIT"}) {
		tag, err := r.app.Exec(ctx, s)
		tags = append(tags, tagOf(tag, err))
	}
	r.logf("  -> %v", tags)
	cur := r.observe()
	if strings.Contains(strings.Join(tags, "|"), "ERROR") || tags[len(tags)-1] != "COMMIT" {
		inserted = nil
		if cur.dump != prev.dump {
			r.violate("a failed application write changed the database", "%v", stmts)
		}
	} else if repointed != nil {
		for _, p := range r.pending[*repointed] {
			p.required = false // the application's link stays
		}
	}
	r.transition(prev, cur, &stepCtx{kind: "write", inserted: inserted})
	r.obs = cur
}

// cmpLink orders links by row, then key.
func cmpLink(a, b linkKey) int {
	if a.uid != b.uid {
		return int(a.uid - b.uid)
	}
	return a.fk - b.fk
}

// stepRestore runs an UNDELETE of some form and mode through the console,
// most often its DRY RUN first.
func (r *round) stepRestore() {
	prev := r.obs
	anchor := r.pickTomb(prev)
	if anchor == 0 {
		r.stepDelete() // nothing to restore yet
		return
	}
	am := r.m[anchor]
	inBatches := func(ids ...int64) map[int64]bool {
		out := map[int64]bool{}
		for uid, m := range r.m {
			if m.state == stTomb && slices.Contains(ids, m.batch) {
				out[uid] = true
			}
		}
		return out
	}
	var cmd string
	var closure map[int64]bool // the tombstones it may bring back
	switch weighted(r.rng, 7, 3, 10) {
	case 0:
		cmd, closure = fmt.Sprintf("UNDELETE BATCH %d", am.batch), inBatches(am.batch)
	case 1:
		xid := prev.batches[slices.IndexFunc(prev.batches, func(b batchRow) bool { return b.id == am.batch })].xid
		var ids []int64
		for _, b := range prev.batches {
			if b.xid == xid {
				ids = append(ids, b.id)
			}
		}
		cmd, closure = "UNDELETE TRANSACTION "+xid, inBatches(ids...)
	default:
		cmd, closure = r.genUndeleteFrom(prev, anchor)
	}
	if r.rng.IntN(15) == 0 { // any batch: restored or purged ones must fail and change nothing
		b := prev.batches[r.rng.IntN(len(prev.batches))].id
		cmd, closure = fmt.Sprintf("UNDELETE BATCH %d", b), inBatches(b)
	}
	mode := []string{"", "fail", "skip", "overwrite"}[weighted(r.rng, 3, 3, 9, 5)]
	suffix := map[bool]string{true: " ON CONFLICT " + strings.ToUpper(mode)}[mode != ""]
	if mode == "" {
		mode = "fail" // the default
	}
	dry := weighted(r.rng, 13, 2, 5) // dry run then restore, dry run only, restore only
	var dres map[string]counts
	var derr error
	if dry < 2 {
		dres, derr = r.console(cmd + " DRY RUN" + suffix)
		if after := r.observe(); after.dump != prev.dump {
			r.violate("inv4: DRY RUN changed the database", "%s DRY RUN%s:\n%s", cmd, suffix, lineDiff(prev.dump, after.dump))
			r.transition(prev, after, &stepCtx{kind: "restore", mode: mode})
			prev, r.obs = after, after
		}
		if dry == 1 {
			return
		}
	}
	res, err := r.console(cmd + suffix)
	cur := r.observe()
	unique := errCode(err) == "23505" || errCode(err) == "23P01"
	conflicts := int64(0)
	for _, c := range dres {
		conflicts += c[1]
	}
	switch {
	case err != nil && cur.dump != prev.dump:
		r.violate("inv5: a failed restore changed the database", "%s%s: %v\n%s", cmd, suffix, err, lineDiff(prev.dump, cur.dump))
	case err != nil && unique && mode != "fail":
		r.violate("ON CONFLICT "+strings.ToUpper(mode)+" failed on a conflict", "%s%s: %v", cmd, suffix, err)
	case err != nil && unique && dry == 0 && derr == nil && conflicts == 0:
		r.violate("inv4: DRY RUN reported no conflict, the restore failed on one", "%s%s: dry run %v, then %v", cmd, suffix, dres, err)
	case err != nil && dry == 0 && derr == nil:
		r.logf("note: the dry run succeeded, the restore failed with %s", errCode(err))
	case err == nil && mode == "fail" && conflicts > 0:
		r.violate("inv4: DRY RUN reported conflicts, ON CONFLICT FAIL then restored", "%s%s: dry run %v, then %v", cmd, suffix, dres, res)
	case err == nil && dry == 0 && derr != nil:
		r.violate("inv4: DRY RUN failed, the restore did not", "%s%s: %v", cmd, suffix, derr)
	case err == nil && dry == 0:
		tbls := slices.AppendSeq(slices.Collect(maps.Keys(res)), maps.Keys(dres))
		slices.Sort(tbls)
		for _, tb := range slices.Compact(tbls) {
			if res[tb] != dres[tb] {
				r.violate("inv4: DRY RUN reported other numbers than the restore", "%s%s: %s dry run %v, restore %v", cmd, suffix, tb, dres[tb], res[tb])
				break
			}
		}
	}
	sc := &stepCtx{kind: "restore", mode: mode}
	if err == nil {
		sc.closure = closure
	}
	r.transition(prev, cur, sc)
	r.obs = cur
}

// genUndeleteFrom draws an UNDELETE FROM on a tombstone's table and
// returns it with the tombstones it may bring back: those its selection
// matches now, and their cascade descendants of the same batch.
func (r *round) genUndeleteFrom(w *world, anchor int64) (string, map[int64]bool) {
	am := r.m[anchor]
	tb, d := r.tables[am.table], am.del
	preds := []string{"id = " + string(d["id"]), fmt.Sprintf("id IN (%s, %d)", d["id"], 1+r.rng.IntN(9)),
		fmt.Sprintf("id BETWEEN %s - 1 AND %s + 1", d["id"], d["id"]), fmt.Sprintf("uid = %d", anchor), fmt.Sprintf("n >= %d", r.rng.IntN(5)), ""}
	if tb.code {
		preds = append(preds, "code IS NULL", "code IS NULL", "code = "+string(d["code"]))
	}
	for _, f := range r.constrained(am.table) {
		p := r.tables[f.parent]
		preds = append(preds, fmt.Sprintf("(%s) IN (SELECT %s FROM public.%s)", strings.Join(f.cols, ", "), strings.Join(p.pk, ", "), p.name),
			strings.Join(f.cols, " IS NULL AND ")+" IS NULL")
	}
	pred, batch := preds[r.rng.IntN(len(preds))], r.rng.IntN(2) == 0
	if _, tree := d["parent_id"]; tree && tb.inh < 0 && r.rng.IntN(5) < 2 {
		// A condition on the live tree, across batches: a restore that
		// evaluates it twice sees its own rows the second time.
		pred, batch = "parent_id IN (SELECT id FROM public."+tb.name+")", r.rng.IntN(5) == 0
	}
	var clauses []string
	sel := []string{"s._ts_cause IN ('delete', 'cascade', 'truncate')"}
	if pred != "" {
		clauses, sel = append(clauses, "WHERE "+pred), append(sel, "("+pred+")")
	}
	if batch {
		clauses, sel = append(clauses, fmt.Sprintf("BATCH %d", am.batch)), append(sel, fmt.Sprintf("s._ts_batch = %d", am.batch))
	}
	for _, kw := range []string{"SINCE", "UNTIL"} {
		if r.rng.IntN(6) == 0 {
			ts := w.batches[r.rng.IntN(len(w.batches))].time
			clauses = append(clauses, fmt.Sprintf("%s '%s'", kw, ts))
			sel = append(sel, fmt.Sprintf("s._ts_deleted_at %s '%s'", map[string]string{"SINCE": ">=", "UNTIL": "<"}[kw], ts))
		}
	}
	closure := map[int64]bool{}
	rows, err := r.tryQuery(fmt.Sprintf("SELECT uid FROM tombstone.%q s WHERE %s", r.shadows[tb.name], strings.Join(sel, " AND ")))
	if err != nil {
		r.logf("note: the selection fails: %v", err)
	}
	for _, row := range rows {
		uid, _ := strconv.ParseInt(row[0], 10, 64)
		closure[uid] = true
	}
	for grew := true; grew; { // cascade descendants of the same batch, any depth
		grew = false
		for uid, m := range r.m {
			if m.state != stTomb || m.cause != "cascade" || closure[uid] {
				continue
			}
			for fi, f := range r.constrained(m.table) {
				if p := m.refs[fi]; f.action == "CASCADE" && closure[p] && r.m[p].batch == m.batch {
					closure[uid], grew = true, true
				}
			}
		}
	}
	return strings.TrimSpace("UNDELETE FROM " + tb.name + " " + strings.Join(clauses, " ")), closure
}

// stepPurge purges a batch: its tombstones go, nothing else changes.
func (r *round) stepPurge() {
	prev := r.obs
	if len(prev.batches) == 0 {
		return
	}
	b := prev.batches[r.rng.IntN(len(prev.batches))].id
	if u := r.pickTomb(prev); u != 0 && r.rng.IntN(5) > 0 {
		b = r.m[u].batch
	}
	_, err := r.console(fmt.Sprintf("PURGE BATCH %d", b))
	cur := r.observe()
	sc := &stepCtx{kind: "purge", purged: b}
	switch {
	case err != nil:
		sc.purged = -1
		if cur.dump != prev.dump {
			r.violate("a failed PURGE changed the database", "batch %d: %v", b, err)
		}
	case cur.liveDump != prev.liveDump:
		r.violate("PURGE changed live rows", "batch %d", b)
	}
	for uid, bs := range cur.setNull {
		if slices.Contains(bs, sc.purged) {
			r.violate("PURGE left SET NULL tombstones", "batch %d, uid %d", b, uid)
		}
	}
	for lk, ps := range r.pending { // nothing left to re-link them with
		r.pending[lk] = slices.DeleteFunc(ps, func(p *plink) bool { return p.batch == sc.purged })
	}
	// Once a batch that deleted rows of a table is purged, the store can
	// no longer tell whether a live row of that table with a link's key is
	// the row the link was taken from: those links may stay unlinked.
	touched := map[int]bool{}
	for _, m := range r.m {
		if m.batch == sc.purged {
			touched[m.table] = true
		}
	}
	for lk, ps := range r.pending {
		if rows := prev.live[lk.uid]; len(rows) == 1 && touched[rows[0].table] {
			for _, p := range ps {
				p.required = false
			}
		}
	}
	r.transition(prev, cur, sc)
	r.obs = cur
}

// stepTrash drops a table nobody references through the proxy (to the
// trash), tries to restore tombstones of it — refused, nothing changed —
// and UNDROPs it: everything is as before.
func (r *round) stepTrash() {
	prev := r.obs
	u := r.pickTomb(prev)
	if u == 0 {
		r.stepWrite()
		return
	}
	i := r.m[u].table
	name := r.tables[i].name
	if r.tables[i].hasChild || r.tables[i].inh >= 0 || slices.ContainsFunc(r.tables, func(o *tableDef) bool {
		return o.name != name && slices.ContainsFunc(o.fks, func(f fkDef) bool { return f.parent == i })
	}) {
		r.stepWrite()
		return
	}
	r.logf("app: DROP TABLE %s", name)
	if _, err := r.app.Exec(ctx, "DROP TABLE "+name); err != nil {
		r.violate("DROP TABLE failed through the proxy", "%s: %v", name, err)
		return
	}
	r.dropped = i
	before := r.observe()
	cmd := []string{fmt.Sprintf("UNDELETE BATCH %d", r.m[u].batch), "UNDELETE FROM " + name}[r.rng.IntN(2)]
	_, err := r.console(cmd)
	if err == nil {
		r.violate("a restore into a table in the trash succeeded", "%s", cmd)
	}
	if after := r.observe(); after.dump != before.dump {
		r.violate("a restore into a table in the trash changed the database", "%s", cmd)
	}
	_, uerr := r.console("UNDROP TABLE " + name)
	require.NoError(r.t, uerr)
	r.dropped = -1
	r.e.cats.Invalidate(dbName(r.t, r.e.direct))
	cur := r.observe()
	sc := &stepCtx{kind: "restore", mode: "fail", closure: map[int64]bool{}}
	if err == nil { // reported; the model follows what it did
		sc.closure = nil
	} else if cur.dump != prev.dump {
		r.violate("DROP TABLE and UNDROP changed the database", "%s", name)
	}
	r.transition(prev, cur, sc)
	r.obs = cur
}

// stepCtx says what a step may change.
type stepCtx struct {
	kind     string         // delete, write, restore, purge
	single   bool           // delete: one statement, so a tombstone is the row as it was before the step
	inserted map[int64]bool // write: the rows inserted
	closure  map[int64]bool // restore that succeeded: the tombstones it may bring back (nil: any)
	mode     string         // restore: fail, skip, overwrite
	purged   int64          // purge that succeeded: its batch
}

// transition checks every row's change from prev to cur against what the
// step may do (invariant 1 above all), and moves the model along.
func (r *round) transition(prev, cur *world, sc *stepCtx) {
	var uids []int64
	for _, m := range []map[int64][]obsRow{prev.live, cur.live, prev.tombs, cur.tombs} {
		uids = slices.AppendSeq(uids, maps.Keys(m))
	}
	slices.Sort(uids)
	var restored, vanished, deleted []int64
	for _, uid := range slices.Compact(uids) {
		nl, nt := len(cur.live[uid]), len(cur.tombs[uid])
		m := r.m[uid]
		switch {
		case m == nil && sc.inserted[uid] && nl == 1:
			m = &mrow{table: cur.live[uid][0].table}
			r.m[uid] = m
		case m == nil:
			r.violate("inv2: a row nobody inserted appeared", "uid %d after a %s", uid, sc.kind)
			m = &mrow{state: stPoison}
			r.m[uid] = m
		}
		name := r.tables[m.table].name
		if m.state == stPoison {
			continue
		}
		if nl+nt > 1 {
			r.violate(map[bool]string{true: "inv1: a row is both live and a tombstone", false: "inv1: a row is live or stored twice"}[nl == 1 && nt == 1],
				"uid %d of %s after a %s: %d live, %d tombstones", uid, name, sc.kind, nl, nt)
			m.state = stPoison
			continue
		}
		switch m.state {
		case stLive:
			switch {
			case nl == 1 && sc.kind == "restore":
				r.checkKept(prev, cur, uid)
			case nl == 1 && sc.kind == "delete":
				r.checkSetNull(prev, cur, uid)
			case nl == 1: // an application write may change it
			case nt == 1 && sc.kind == "delete" && newBatch(prev, cur.tombs[uid][0].batch):
				deleted = append(deleted, uid)
			case nt == 1 && sc.kind == "restore" && sc.mode == "overwrite" && newBatch(prev, cur.tombs[uid][0].batch):
				// OVERWRITE may keep the row it replaces as a tombstone.
				deleted, vanished = append(deleted, uid), append(vanished, uid)
			case nt == 1:
				r.violate("inv1: a live row was tombstoned outside a DELETE", "uid %d of %s after a %s", uid, name, sc.kind)
				m.state = stPoison
			case sc.kind == "restore" && sc.mode == "overwrite":
				vanished = append(vanished, uid)
			default:
				r.violate("inv1: a row left its table without a tombstone", "uid %d of %s after a %s", uid, name, sc.kind)
				m.state = stLost
			}
		case stTomb:
			switch {
			case nl == 1 && sc.kind == "restore":
				restored = append(restored, uid)
			case nl == 1:
				r.violate("inv1: a row came back outside a restore", "uid %d of %s after a %s", uid, name, sc.kind)
				m.state = stLive
			case nt == 1 && (cur.tombs[uid][0].batch != m.batch || sc.purged == m.batch):
				r.violate("inv1: a tombstone changed batch or outlived its purge", "uid %d of %s, batch %d, after a %s", uid, name, m.batch, sc.kind)
			case nt == 0 && sc.purged == m.batch:
				m.state = stPurged
			case nt == 0:
				r.violate("inv1: a tombstone was removed, its row not restored"+map[bool]string{true: " (one the restore did not select)"}[sc.closure != nil && !sc.closure[uid]],
					"uid %d of %s (batch %d) after a %s", uid, name, m.batch, sc.kind)
				m.state = stLost
			}
		default:
			if nl+nt > 0 {
				r.violate("inv1: a purged or replaced row reappeared", "uid %d of %s after a %s", uid, name, sc.kind)
				m.state = stPoison
			}
		}
	}
	r.recordDeletes(prev, cur, deleted, sc.single || sc.kind == "restore")
	if sc.kind == "restore" {
		r.checkRestored(prev, cur, sc, restored, vanished)
	}
}

// newBatch reports whether batch was written after prev was read.
func newBatch(prev *world, batch int64) bool {
	return !slices.ContainsFunc(prev.batches, func(b batchRow) bool { return b.id == batch })
}

// recordDeletes models the rows a DELETE step turned into tombstones:
// their columns as stored, and the row each foreign key pointed at.
func (r *round) recordDeletes(prev, cur *world, deleted []int64, single bool) {
	batchOf := map[int64]int64{}
	for _, uid := range deleted {
		m, tr, row := r.m[uid], cur.tombs[uid][0], prev.live[uid][0]
		m.state, m.batch, m.cause, m.del = stTomb, tr.batch, tr.cause, map[string]json.RawMessage{}
		for _, c := range r.cols[m.table] {
			if m.del[c] = tr.cols[c]; single && string(tr.cols[c]) != string(row.cols[c]) {
				r.violate("the tombstone differs from the deleted row", "uid %d column %s: stored %s, was %s", uid, c, tr.cols[c], row.cols[c])
			}
		}
		if tr.table != m.table {
			r.violate("a row was captured into another table's store", "uid %d of %s", uid, r.tables[m.table].name)
		}
		batchOf[uid] = tr.batch
	}
	for _, uid := range deleted {
		m := r.m[uid]
		fks := r.constrained(m.table)
		m.refs, m.sameBatch = make([]int64, len(fks)), make([]bool, len(fks))
		for fi, f := range fks {
			m.refs[fi] = r.ref(prev, m.table, fi, m.del)
			m.sameBatch[fi] = m.refs[fi] > 0 && batchOf[m.refs[fi]] == m.batch
			// A link an earlier statement of the transaction set NULL:
			// restoring both may re-link it, as it was before.
			if p := r.ref(prev, m.table, fi, prev.live[uid][0].cols); p > 0 && unlinked(m.del, f) && batchOf[p] != 0 {
				r.pending[linkKey{uid, fi}] = append(r.pending[linkKey{uid, fi}], &plink{parent: p, batch: batchOf[p]})
			}
		}
	}
}

// checkSetNull models links a DELETE set NULL (or to the default) on a row
// that stays: its old parent is to re-link it when restored, and the old
// value must be in the store.
func (r *round) checkSetNull(prev, cur *world, uid int64) {
	a, b := prev.live[uid][0], cur.live[uid][0]
	for fi, f := range r.constrained(a.table) {
		ka, _ := rawKey(a.cols, f.cols)
		kb, _ := rawKey(b.cols, f.cols)
		p := r.ref(prev, a.table, fi, a.cols)
		if ka == kb || !unlinked(b.cols, f) || p <= 0 || len(cur.tombs[p]) != 1 {
			continue
		}
		lk, batch := linkKey{uid, fi}, cur.tombs[p][0].batch
		for _, old := range r.pending[lk] {
			old.required = false
		}
		// A row without a key (NULL in it) cannot be told from another:
		// its link may stay in the store instead.
		_, nullKey := rawKey(b.cols, r.keyCols(a.table))
		r.pending[lk] = append(r.pending[lk], &plink{parent: p, batch: batch, required: !nullKey})
		if !slices.Contains(cur.setNull[uid], batch) {
			r.violate("a SET NULL link was not captured", "uid %d of %s, link %v to uid %d", uid, r.tables[a.table].name, f.cols, p)
		}
	}
}

// checkKept checks a live row a restore left in place: unchanged, but
// for links a delete had nulled, re-linked to a parent they had.
func (r *round) checkKept(prev, cur *world, uid int64) {
	a, b := prev.live[uid][0], cur.live[uid][0]
	if a.text == b.text {
		return
	}
	skip := map[string]bool{}
	for fi, f := range r.constrained(a.table) {
		ka, _ := rawKey(a.cols, f.cols)
		kb, _ := rawKey(b.cols, f.cols)
		if ka == kb {
			continue
		}
		for _, c := range f.cols {
			skip[c] = true
		}
		if p := r.ref(cur, a.table, fi, b.cols); !unlinked(a.cols, f) || !r.allowed(uid, fi, p) {
			r.violate("inv3: a restore re-linked a row to a row it never referenced", "uid %d of %s: %v now points at uid %d (%s -> %s)", uid, r.tables[a.table].name, f.cols, p, ka, kb)
		}
	}
	for c := range a.cols {
		if !skip[c] && string(a.cols[c]) != string(b.cols[c]) {
			r.violate("a restore changed a live row", "uid %d of %s: %s was %s, now %s", uid, r.tables[a.table].name, c, a.cols[c], b.cols[c])
		}
	}
}

// checkRestored checks the rows a restore brought back (invariants 2 and
// 3), the rows OVERWRITE replaced, the re-links of SET NULL links to
// restored parents, and that FAIL brought back all it selected.
func (r *round) checkRestored(prev, cur *world, sc *stepCtx, restored, vanished []int64) {
	for _, uid := range restored {
		m, row := r.m[uid], cur.live[uid][0]
		name := r.tables[m.table].name
		if row.table != m.table {
			r.violate("inv2: a row was restored into another table", "uid %d of %s into %s", uid, name, r.tables[row.table].name)
		}
		if sc.closure != nil && !sc.closure[uid] {
			r.violate("inv2: a restore brought back a row it did not select", "uid %d of %s (batch %d)", uid, name, m.batch)
		}
		relinked := map[string]bool{}
		for fi, f := range r.constrained(m.table) {
			now, was := r.ref(cur, m.table, fi, row.cols), m.refs[fi]
			kd, _ := rawKey(m.del, f.cols)
			kn, _ := rawKey(row.cols, f.cols)
			switch {
			case now == was && kd == kn:
			case unlinked(m.del, f) && r.allowed(uid, fi, now):
				for _, c := range f.cols {
					relinked[c] = true
				}
			case kd != kn: // a changed column, reported below
			case m.sameBatch[fi]:
				r.violate("inv3: a restored row references a newer row than its parent", "uid %d of %s: %v = (%s) pointed at uid %d (deleted with it, batch %d), now at uid %d",
					uid, name, f.cols, kd, was, m.batch, now)
			default:
				r.logf("note: uid %d of %s references uid %d, not uid %d deleted in another batch", uid, name, now, was)
			}
		}
		var diff, names []string
		for _, c := range r.cols[m.table] {
			if !relinked[c] && string(m.del[c]) != string(row.cols[c]) {
				diff, names = append(diff, fmt.Sprintf("%s: %s -> %s", c, m.del[c], row.cols[c])), append(names, c)
			}
		}
		if len(diff) > 0 {
			r.violate("inv2: a restored row differs in "+strings.Join(names, ", "), "uid %d of %s (%s): %s", uid, name, sc.mode, strings.Join(diff, "; "))
		}
		m.state = stLive
	}
	for _, uid := range vanished { // OVERWRITE: a restored row with its key took its place
		m := r.m[uid]
		k, _ := rawKey(prev.live[uid][0].cols, r.keyCols(m.table))
		if !slices.ContainsFunc(restored, func(o int64) bool {
			ko, _ := rawKey(cur.live[o][0].cols, r.keyCols(m.table))
			return r.m[o].table == m.table && ko == k
		}) {
			r.violate("inv1: a restore removed a live row", "uid %d of %s (%s)", uid, r.tables[m.table].name, sc.mode)
		}
		if m.state == stLive {
			m.state = stReplaced
		}
	}
	for _, lk := range slices.SortedFunc(maps.Keys(r.pending), cmpLink) {
		rows := cur.live[lk.uid]
		for _, p := range r.pending[lk] {
			if !slices.Contains(restored, p.parent) {
				continue
			}
			if len(rows) == 1 && len(prev.live[lk.uid]) == 1 && p.required && r.ref(cur, rows[0].table, lk.fk, rows[0].cols) != p.parent &&
				!r.evidencePurged(rows[0].table, p.batch) {
				f := r.tables[rows[0].table].fks[lk.fk]
				r.violate("a SET NULL link was not re-linked to its restored parent"+map[bool]string{true: " (self-reference)"}[f.parent == rows[0].table],
					"uid %d of %s: %v still %s, parent uid %d is back", lk.uid, r.tables[rows[0].table].name, f.cols, rows[0].cols[f.cols[0]], p.parent)
			}
			p.required = false
		}
		if len(rows) == 1 { // linked now: that parent's re-link is used up
			if p := r.ref(cur, rows[0].table, lk.fk, rows[0].cols); p > 0 && !unlinked(rows[0].cols, r.tables[rows[0].table].fks[lk.fk]) {
				r.pending[lk] = slices.DeleteFunc(r.pending[lk], func(x *plink) bool { return x.parent == p })
			}
		}
	}
	if sc.mode == "fail" && sc.closure != nil {
		for _, uid := range slices.Sorted(maps.Keys(sc.closure)) {
			if m := r.m[uid]; m.state == stTomb {
				r.violate("inv6: ON CONFLICT FAIL succeeded but left selected rows deleted", "uid %d of %s (batch %d)", uid, r.tables[m.table].name, m.batch)
			}
		}
	}
}

// evidencePurged reports whether rows of table deleted after the link of
// batch were purged since (tombstone.shadows.purged_through): the store
// then cannot tell the link's row from a newer one with its key, and
// keeps the link instead of re-linking it.
func (r *round) evidencePurged(table int, batch int64) bool {
	res := r.query(fmt.Sprintf(`SELECT coalesce(sh.purged_through >= b.stmt_time, false)
		FROM tombstone.shadows sh, tombstone.batches b WHERE sh.source = '%s'::regclass AND b.id = %d`, r.tables[table].name, batch))
	return len(res) == 1 && res[0][0] == "t"
}
