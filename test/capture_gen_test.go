package test

// TestCaptureGenerated (written by the review of the capture triggers): a
// generator of schemas and delete workloads that checks capture against
// Postgres itself. Each step runs one message (simple, multi-statement,
// explicit transaction with savepoints, extended, or an extended
// pipeline) first directly, statement by statement, in a transaction
// rolled back (the ground truth: which rows each statement removed or
// SET NULLed, what it answered), then through the proxy; then checks the
// answers, the tables, and that every removed row is exactly one
// tombstone in its own table's shadow in its statement's batch, with the
// values it had. Restores are LIFO, so each one must give back exactly
// the tables as they were before the batch's statement.
//
// Knobs: TOMBSTONE_CAPTURE_SEED, TOMBSTONE_CAPTURE_ROUNDS,
// TOMBSTONE_CAPTURE_STEPS (make test: 2 rounds of 30 steps).

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/tombstone-proxy/tombstone/internal/testenv"
)

type gFK struct {
	cols    []string // child columns (SQL identifiers)
	parent  int
	pcols   []string
	action  string
	partial bool
}

type gTab struct {
	name     string // bare name
	ident    string // SQL identifier
	kind     string // plain, part, inh
	k2       bool
	inhOf    int // inheritance parent, -1
	hasKids  bool
	parts    []string // partition identifiers (leaves and intermediate)
	data     []gCol
	fks      []gFK
	tree     string // self-reference action, "" none
	gen      bool
	ident2   bool // a GENERATED ALWAYS identity column
	extra    []gCol
	keys     [][2]int // live keys (id, k2) for data generation
	sentinel bool
}

type gCol struct{ name, typ string }

var gTypes = []gCol{
	{`"Weird Col"`, "text"}, {`"select"`, "int"}, {`"CamelCase"`, "numeric(8,2)"}, {"tags", "text[]"},
	{"pt", "ptype"}, {"md", "mood"}, {"pos", "posint"}, {"doc", "jsonb"}, {"ts", "timestamptz"},
	{"bin", "bytea"}, {"pts", "ptype[]"}, {`"a.b"`, "text"},
}

func (g *gen) val(typ string) string {
	if g.rng.IntN(6) == 0 && typ != "posint" {
		return "NULL"
	}
	switch typ {
	case "text":
		return fmt.Sprintf("'%s%d'", []string{"x", "y z", "q\"u", "a,b", "(p)"}[g.rng.IntN(5)], g.rng.IntN(50))
	case "int":
		return strconv.Itoa(g.rng.IntN(100) - 20)
	case "numeric(8,2)":
		return fmt.Sprintf("%d.%02d", g.rng.IntN(1000), g.rng.IntN(100))
	case "text[]":
		return fmt.Sprintf("ARRAY['a%d', NULL, 'b c']::text[]", g.rng.IntN(9))
	case "ptype":
		return fmt.Sprintf("ROW(%d, 'v,%d')::ptype", g.rng.IntN(9), g.rng.IntN(9))
	case "mood":
		return fmt.Sprintf("'%s'", []string{"sad", "ok", "happy"}[g.rng.IntN(3)])
	case "posint":
		return strconv.Itoa(1 + g.rng.IntN(40))
	case "jsonb":
		return fmt.Sprintf(`'{"k": %d, "l": [1, "x"]}'`, g.rng.IntN(9))
	case "timestamptz":
		return fmt.Sprintf("'2024-0%d-1%d 10:00:00+00'", 1+g.rng.IntN(9), g.rng.IntN(9))
	case "bytea":
		return fmt.Sprintf("'\\x%02x00ff'::bytea", g.rng.IntN(256))
	case "ptype[]":
		return fmt.Sprintf("ARRAY[ROW(%d, 'a')::ptype, NULL]", g.rng.IntN(9))
	}
	panic(typ)
}

type gen struct {
	t        *testing.T
	rng      *rand.Rand
	seed     uint64
	tabs     []*gTab
	uid      int64
	e        *env
	dir, app *pgx.Conn
	admin    *pgx.Conn
	shadow   map[int]string   // model table -> shadow name
	shcols   map[int][]string // model table -> shadow columns in source order
	nviol    int
	seen     map[string]bool
	stack    []stackEnt
	step     int
	stats    map[string]int
	diverged bool
	fkInfo   []gFKInfo
}

type stackEnt struct {
	batch int64
	xid   string
	pre   map[int64]string // live dump before its statement
	text  string
}

// gFKInfo is a foreign key as the catalog says (model tables).
type gFKInfo struct {
	child, parent int
	ccols, pcols  []string // jsonb keys (bare names)
	action        string   // a, r, c, n, d
}

func (g *gen) violate(kind, format string, args ...any) {
	g.t.Helper()
	g.nviol++
	msg := fmt.Sprintf(format, args...)
	if g.seen[kind] {
		g.t.Logf("step %d: VIOLATION (again) [%s] %s", g.step, kind, msg)
		return
	}
	g.seen[kind] = true
	g.t.Errorf("step %d (seed %d): VIOLATION [%s] %s", g.step, g.seed, kind, msg)
}

func TestCaptureGenerated(t *testing.T) {
	seeded(t, "TOMBSTONE_CAPTURE", 2, 30, func(t *testing.T, s uint64, steps int) {
		g := &gen{t: t, seed: s, rng: rand.New(rand.NewPCG(s, 77)), seen: map[string]bool{}, stats: map[string]int{}}
		g.run(steps)
	})
}

func bare(ident string) string {
	if strings.HasPrefix(ident, `"`) {
		return strings.ReplaceAll(ident[1:len(ident)-1], `""`, `"`)
	}
	return ident
}

func (g *gen) genSchema() string {
	g.tabs = nil
	n := 3 + g.rng.IntN(4)
	var b strings.Builder
	b.WriteString("CREATE TYPE ptype AS (x int, y text);\nCREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');\nCREATE DOMAIN posint AS int CHECK (VALUE > 0);\n")
	for i := 0; i < n; i++ {
		tb := &gTab{inhOf: -1}
		tb.name = fmt.Sprintf("t%d", len(g.tabs))
		switch g.rng.IntN(8) {
		case 0:
			tb.name = fmt.Sprintf("T %d", len(g.tabs))
		case 1:
			// Code, if anything pastes the name unquoted into SQL or
			// into a comment of generated code: a newline ends a "--"
			// comment (the capture function's header once did, and the
			// rest of the name ran as its owner).
			tb.name = fmt.Sprintf("t%d\nDECLARE e int := 1/0;--'", len(g.tabs))
		}
		tb.ident = pgx.Identifier{tb.name}.Sanitize()
		tb.kind = []string{"plain", "part", "inhroot"}[weighted(g.rng, 6, 3, 2)]
		tb.k2 = g.rng.IntN(3) == 0
		for _, c := range gTypes {
			if g.rng.IntN(5) == 0 {
				tb.data = append(tb.data, c)
			}
		}
		tb.gen = g.rng.IntN(3) == 0
		tb.ident2 = tb.kind == "plain" && g.rng.IntN(5) == 0
		me := len(g.tabs)
		for j, p := range g.tabs {
			if g.rng.IntN(5) < 2 && !(j == me-1 && len(tb.fks) == 0) {
				continue
			}
			f := gFK{parent: j}
			f.cols = []string{fmt.Sprintf("p%d", j)}
			f.pcols = []string{"id"}
			if p.k2 {
				f.cols = append(f.cols, fmt.Sprintf("p%dk", j))
				f.pcols = append(f.pcols, "k2")
			}
			f.action = []string{"CASCADE", "SET NULL", "SET DEFAULT", "NO ACTION", "RESTRICT"}[weighted(g.rng, 10, 5, 2, 1, 1)]
			if len(f.cols) == 2 && (f.action == "SET NULL" || f.action == "SET DEFAULT") && g.rng.IntN(3) > 0 {
				f.partial = true
			}
			tb.fks = append(tb.fks, f)
		}
		if !tb.k2 && g.rng.IntN(3) == 0 {
			tb.tree = []string{"CASCADE", "SET NULL"}[g.rng.IntN(2)]
		}
		g.tabs = append(g.tabs, tb)
		if tb.kind == "inhroot" {
			tb.hasKids = true
			c := &gTab{inhOf: me, kind: "inh", name: tb.name + "_c", k2: tb.k2}
			c.ident = pgx.Identifier{c.name}.Sanitize()
			c.extra = []gCol{{"cx", "text"}}
			if g.rng.IntN(2) == 0 {
				c.extra = append(c.extra, gCol{`"Kid Col"`, "int"})
			}
			g.tabs = append(g.tabs, c)
			if g.rng.IntN(2) == 0 {
				c.hasKids = true
				cc := &gTab{inhOf: len(g.tabs) - 1, kind: "inh", name: tb.name + "_cc", k2: tb.k2}
				cc.ident = pgx.Identifier{cc.name}.Sanitize()
				cc.extra = []gCol{{"cy", "int"}}
				g.tabs = append(g.tabs, cc)
			}
		}
	}
	for i := range g.tabs {
		b.WriteString(g.ddl(i))
	}
	// rows
	for i, tb := range g.tabs {
		if tb.kind != "inh" {
			tb.sentinel = true
			b.WriteString(g.insert(i, 0, 0, true))
		}
		for k := 0; k < 5+g.rng.IntN(7); k++ {
			id, k2 := 1+g.rng.IntN(14), 1
			if tb.k2 {
				k2 = 1 + g.rng.IntN(2)
			}
			if slices.Contains(g.allKeys(i), [2]int{id, k2}) {
				continue
			}
			b.WriteString(g.insert(i, id, k2, false))
		}
	}
	return b.String()
}

// allKeys: keys taken in table i's unique index (a partitioned root's
// across partitions, an inheritance member's own).
func (g *gen) allKeys(i int) [][2]int { return g.tabs[i].keys }

func (g *gen) insert(i, id, k2 int, sentinel bool) string {
	tb := g.tabs[i]
	g.uid++
	names := []string{"id"}
	vals := []string{strconv.Itoa(id)}
	if tb.k2 {
		names, vals = append(names, "k2"), append(vals, strconv.Itoa(k2))
	}
	names, vals = append(names, "uid", "n"), append(vals, strconv.FormatInt(g.uid, 10), strconv.Itoa(g.rng.IntN(6)))
	root := i
	for g.tabs[root].inhOf >= 0 {
		root = g.tabs[root].inhOf
	}
	chain := []int{}
	for k := i; k >= 0; k = g.tabs[k].inhOf {
		chain = append(chain, k)
	}
	for _, k := range chain {
		for _, c := range g.tabs[k].data {
			names, vals = append(names, c.name), append(vals, g.val(c.typ))
		}
		for _, c := range g.tabs[k].extra {
			names, vals = append(names, c.name), append(vals, g.val(c.typ))
		}
	}
	rt := g.tabs[root]
	for _, f := range rt.fks {
		var pk [2]int
		null := sentinel || len(g.tabs[f.parent].keys) == 0 || g.rng.IntN(4) == 0
		if !null {
			ks := g.tabs[f.parent].keys
			pk = ks[g.rng.IntN(len(ks))]
		}
		for k, c := range f.cols {
			names = append(names, c)
			switch {
			case sentinel && f.action == "SET DEFAULT" && g.tabs[f.parent].sentinel:
				vals = append(vals, "0")
			case null:
				vals = append(vals, "NULL")
			default:
				vals = append(vals, strconv.Itoa(pk[k]))
			}
		}
	}
	if rt.tree != "" {
		names = append(names, "parent_id")
		if len(tb.keys) > 0 && g.rng.IntN(4) > 0 && !sentinel {
			vals = append(vals, strconv.Itoa(tb.keys[g.rng.IntN(len(tb.keys))][0]))
		} else {
			vals = append(vals, "NULL")
		}
	}
	tb.keys = append(tb.keys, [2]int{id, k2})
	return fmt.Sprintf("INSERT INTO %s (%s) VALUES (%s);\n", tb.ident, strings.Join(names, ", "), strings.Join(vals, ", "))
}

func (g *gen) ddl(i int) string {
	tb := g.tabs[i]
	pk := "id"
	if tb.k2 {
		pk = "id, k2"
	}
	if tb.kind == "inh" {
		var cols []string
		for _, c := range tb.extra {
			cols = append(cols, c.name+" "+c.typ)
		}
		return fmt.Sprintf("CREATE TABLE %s (%s, PRIMARY KEY (%s)) INHERITS (%s);\n", tb.ident, strings.Join(cols, ", "), pk, g.tabs[tb.inhOf].ident)
	}
	cols := []string{"id int NOT NULL"}
	if tb.k2 {
		cols = append(cols, "k2 int NOT NULL")
	}
	cols = append(cols, "junk int DEFAULT 7", "uid bigint NOT NULL", "n int NOT NULL DEFAULT 0")
	for _, c := range tb.data {
		cols = append(cols, c.name+" "+c.typ)
	}
	var cons []string
	for _, f := range tb.fks {
		for _, c := range f.cols {
			d := ""
			if f.action == "SET DEFAULT" {
				d = " DEFAULT 0"
			}
			cols = append(cols, c+" int"+d)
		}
		act := f.action
		if f.partial {
			act += " (" + f.cols[0] + ")"
		}
		cons = append(cons, fmt.Sprintf("FOREIGN KEY (%s) REFERENCES %s (%s) ON DELETE %s", strings.Join(f.cols, ", "), g.tabs[f.parent].ident, strings.Join(f.pcols, ", "), act))
	}
	if tb.tree != "" {
		cols = append(cols, "parent_id int")
		cons = append(cons, fmt.Sprintf("FOREIGN KEY (parent_id) REFERENCES %s (id) ON DELETE %s", tb.ident, tb.tree))
	}
	if tb.gen {
		cols = append(cols, "g text GENERATED ALWAYS AS (id::text || ':' || n::text) STORED")
	}
	if tb.ident2 {
		cols = append(cols, "seq int GENERATED ALWAYS AS IDENTITY")
	}
	cols = append(cols, "PRIMARY KEY ("+pk+")")
	s := fmt.Sprintf("CREATE TABLE %s (\n  %s\n)", tb.ident, strings.Join(append(cols, cons...), ",\n  "))
	// constraints first referencing self must exist; a self FK on a partitioned table is fine in PG 12+
	if tb.kind == "part" {
		pa, pb, pb0, pb1, pd := pgx.Identifier{tb.name + "_a"}.Sanitize(), pgx.Identifier{tb.name + "_b"}.Sanitize(),
			pgx.Identifier{tb.name + "_b0"}.Sanitize(), pgx.Identifier{tb.name + "_b1"}.Sanitize(), pgx.Identifier{tb.name + "_d"}.Sanitize()
		s += fmt.Sprintf(" PARTITION BY RANGE (id);\nCREATE TABLE %s PARTITION OF %s FOR VALUES FROM (MINVALUE) TO (4);\n"+
			"CREATE TABLE %s PARTITION OF %s FOR VALUES FROM (4) TO (9) PARTITION BY HASH (id);\n"+
			"CREATE TABLE %s PARTITION OF %s FOR VALUES WITH (MODULUS 2, REMAINDER 0);\n"+
			"CREATE TABLE %s (x_gone int, LIKE %s INCLUDING DEFAULTS INCLUDING GENERATED);\nALTER TABLE %s DROP COLUMN x_gone;\nALTER TABLE %s ATTACH PARTITION %s FOR VALUES WITH (MODULUS 2, REMAINDER 1);\n"+
			"CREATE TABLE %s PARTITION OF %s DEFAULT",
			pa, tb.ident, pb, tb.ident, pb0, pb, pb1, pb, pb1, pb, pb1, pd, tb.ident)
		tb.parts = []string{pa, pb, pb0, pb1, pd}
	}
	s += ";\n"
	return s
}

// dropJunk drops the junk columns (after the partitions that copied them).
func (g *gen) dropJunk() string {
	var b strings.Builder
	for _, tb := range g.tabs {
		if tb.kind != "inh" {
			fmt.Fprintf(&b, "ALTER TABLE %s DROP COLUMN junk;\n", tb.ident)
		}
	}
	return b.String()
}

func (g *gen) sel(i int) string {
	if g.tabs[i].kind == "part" {
		return g.tabs[i].ident
	}
	return "ONLY " + g.tabs[i].ident
}

func (g *gen) run(steps int) {
	var schema string
	for try := 0; ; try++ {
		schema = g.genSchema() + g.dropJunk()
		c := testenv.Connect(g.t, testenv.PGURL(g.t))
		_, err := c.Exec(ctx, "BEGIN; "+schema+" ROLLBACK")
		if err == nil {
			break
		}
		c.Close(ctx)
		g.t.Logf("schema try %d refused: %v", try, err)
		g.uid = 0
		require.Less(g.t, try, 20)
	}
	g.t.Logf("schema:\n%s", schema)
	g.e = newEnv(g.t, schema)
	g.dir = testenv.Connect(g.t, g.e.direct)
	g.app = testenv.Connect(g.t, g.e.proxy)
	g.admin = testenv.Connect(g.t, g.e.proxy)
	_, err := g.app.Exec(ctx, "DELETE FROM "+g.tabs[0].ident+" WHERE false")
	require.NoError(g.t, err)
	g.shadow, g.shcols = map[int]string{}, map[int][]string{}
	for i, tb := range g.tabs {
		var sh string
		require.NoError(g.t, g.dir.QueryRow(ctx, "SELECT shadow_name FROM tombstone.shadows WHERE source = $1::regclass", "public."+tb.ident).Scan(&sh), tb.name)
		g.shadow[i] = sh
		rows, err := g.dir.Query(ctx, `SELECT sc.shadow_column FROM pg_attribute a JOIN tombstone.shadow_columns sc ON sc.source = a.attrelid AND sc.attnum = a.attnum
			WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`, "public."+tb.ident)
		require.NoError(g.t, err)
		g.shcols[i], err = pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(g.t, err)
	}
	g.loadFKs()
	initial := g.live()
	for g.step = 1; g.step <= steps && g.nviol < 30; g.step++ {
		g.stepDelete()
		for len(g.stack) > 0 && (g.rng.IntN(5) < 2 || len(g.stack) > 6) {
			g.stepRestore()
		}
	}
	for len(g.stack) > 0 && g.nviol < 30 {
		g.stepRestore()
	}
	if g.nviol == 0 && !g.diverged {
		if now := g.live(); !mapsEqual(now, initial) {
			g.violate("end: tables differ from the start after all restores", "%s", diffLive(initial, now))
		}
	}
	g.t.Logf("stats: %v", g.stats)
}

func mapsEqual(a, b map[int64]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func diffLive(a, b map[int64]string) string {
	var out []string
	for k, v := range a {
		if b[k] != v {
			out = append(out, fmt.Sprintf("- %d %s", k, v))
		}
	}
	for k, v := range b {
		if a[k] != v {
			out = append(out, fmt.Sprintf("+ %d %s", k, v))
		}
	}
	sort.Strings(out)
	if len(out) > 40 {
		out = append(out[:40], "...")
	}
	return strings.Join(out, "\n")
}

func (g *gen) loadFKs() {
	idx := map[string]int{}
	for i, tb := range g.tabs {
		idx[tb.name] = i
		for _, p := range tb.parts {
			idx[bare(p)] = i
		}
	}
	rows, err := g.dir.Query(ctx, `SELECT (SELECT relname FROM pg_class WHERE oid = con.conrelid)::text, (SELECT relname FROM pg_class WHERE oid = con.confrelid)::text, con.confdeltype::text,
		(SELECT array_agg(a.attname ORDER BY u.o) FROM unnest(con.conkey) WITH ORDINALITY u(k, o) JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = u.k),
		(SELECT array_agg(a.attname ORDER BY u.o) FROM unnest(con.confkey) WITH ORDINALITY u(k, o) JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = u.k)
		FROM pg_constraint con WHERE con.contype = 'f' AND con.conparentid = 0 AND connamespace = 'public'::regnamespace`)
	require.NoError(g.t, err)
	for rows.Next() {
		var c, p, act string
		var cc, pc []string
		require.NoError(g.t, rows.Scan(&c, &p, &act, &cc, &pc))
		ci, ok1 := idx[c]
		pi, ok2 := idx[p]
		require.True(g.t, ok1 && ok2, "%s -> %s", c, p)
		g.fkInfo = append(g.fkInfo, gFKInfo{child: ci, parent: pi, ccols: cc, pcols: pc, action: act})
	}
	require.NoError(g.t, rows.Err())
}

// live reads every model table: uid -> "table|row".
func (g *gen) live() map[int64]string { return g.liveOn(g.dir) }

func (g *gen) liveOn(c *pgx.Conn) map[int64]string {
	var q []string
	for i := range g.tabs {
		q = append(q, fmt.Sprintf("SELECT %d, uid, t::text FROM %s t", i, g.sel(i)))
	}
	rows, err := c.Query(ctx, strings.Join(q, " UNION ALL "))
	require.NoError(g.t, err)
	out := map[int64]string{}
	for rows.Next() {
		var i int
		var uid int64
		var s string
		require.NoError(g.t, rows.Scan(&i, &uid, &s))
		if _, dup := out[uid]; dup {
			g.violate("a uid is live twice", "uid %d", uid)
		}
		out[uid] = fmt.Sprintf("%s|%s", g.tabs[i].name, s)
	}
	require.NoError(g.t, rows.Err())
	return out
}

type tomb struct {
	table int
	uid   int64
	batch int64
	cause string
	text  string
	cols  map[string]json.RawMessage
}

func (g *gen) tombs() []tomb {
	var q []string
	for i := range g.tabs {
		var cs []string
		for _, c := range g.shcols[i] {
			cs = append(cs, "s."+pgx.Identifier{c}.Sanitize())
		}
		q = append(q, fmt.Sprintf("SELECT %d, s.uid, s._ts_batch, s._ts_cause, ROW(%s)::text, to_jsonb(s)::text FROM tombstone.%s s", i, strings.Join(cs, ", "), pgx.Identifier{g.shadow[i]}.Sanitize()))
	}
	rows, err := g.dir.Query(ctx, strings.Join(q, " UNION ALL ")+" ORDER BY 3, 2")
	require.NoError(g.t, err)
	var out []tomb
	for rows.Next() {
		var tb tomb
		var js string
		require.NoError(g.t, rows.Scan(&tb.table, &tb.uid, &tb.batch, &tb.cause, &tb.text, &js))
		require.NoError(g.t, json.Unmarshal([]byte(js), &tb.cols))
		tb.text = g.tabs[tb.table].name + "|" + tb.text
		out = append(out, tb)
	}
	require.NoError(g.t, rows.Err())
	return out
}

type gBatch struct {
	id     int64
	xid    string
	sql    string
	tables map[string]int64
	done   bool
}

func (g *gen) batches() []gBatch {
	rows, err := g.dir.Query(ctx, "SELECT id, xid::text, sql, tables::text, restored_at IS NOT NULL FROM tombstone.batches ORDER BY id")
	require.NoError(g.t, err)
	var out []gBatch
	for rows.Next() {
		var b gBatch
		var tj string
		require.NoError(g.t, rows.Scan(&b.id, &b.xid, &b.sql, &tj, &b.done))
		require.NoError(g.t, json.Unmarshal([]byte(tj), &b.tables))
		out = append(out, b)
	}
	require.NoError(g.t, rows.Err())
	return out
}

// ---- workload ----

func (g *gen) pickLiveUIDs(live map[int64]string, i int, k int) []int64 {
	var uids []int64
	for u, s := range live {
		if strings.HasPrefix(s, g.tabs[i].name+"|") {
			uids = append(uids, u)
		}
	}
	slices.Sort(uids)
	g.rng.Shuffle(len(uids), func(a, b int) { uids[a], uids[b] = uids[b], uids[a] })
	return uids[:min(k, len(uids))]
}

func (g *gen) pred(live map[int64]string, i int, alias string) string {
	a := ""
	if alias != "" {
		a = alias + "."
	}
	switch weighted(g.rng, 4, 2, 2, 2) {
	case 0:
		uids := g.pickLiveUIDs(live, i, 1+g.rng.IntN(3))
		if len(uids) == 0 {
			return a + "uid = -1"
		}
		var s []string
		for _, u := range uids {
			s = append(s, strconv.FormatInt(u, 10))
		}
		return fmt.Sprintf("%suid IN (%s)", a, strings.Join(s, ", "))
	case 1:
		x := g.rng.IntN(14)
		return fmt.Sprintf("%sid BETWEEN %d AND %d", a, x, x+g.rng.IntN(4))
	case 2:
		return fmt.Sprintf("%sn %% 3 = %d AND %sid > 0", a, g.rng.IntN(3), a)
	default:
		root := i
		for g.tabs[root].inhOf >= 0 {
			root = g.tabs[root].inhOf
		}
		var cands []string
		for _, c := range g.tabs[root].data {
			cands = append(cands, fmt.Sprintf("%s%s IS NOT NULL AND %sid > 0", a, c.name, a))
		}
		for _, f := range g.tabs[root].fks {
			cands = append(cands, fmt.Sprintf("%s%s IS NULL AND %sid > 0", a, f.cols[0], a))
		}
		if len(cands) == 0 {
			return a + "id > 10"
		}
		return cands[g.rng.IntN(len(cands))]
	}
}

func (g *gen) returning() string {
	switch g.rng.IntN(6) {
	case 0:
		return " RETURNING *"
	case 1:
		return " RETURNING uid, id * 2 AS twice, n"
	}
	return ""
}

// genStmt draws a statement removing rows.
func (g *gen) genStmt(live map[int64]string) string {
	i := g.rng.IntN(len(g.tabs))
	tb := g.tabs[i]
	switch weighted(g.rng, 10, 2, 2, 2, 2, 1, 1) {
	case 0:
		only := ""
		if tb.hasKids && g.rng.IntN(2) == 0 {
			only = "ONLY "
		}
		return fmt.Sprintf("DELETE FROM %s%s WHERE %s%s", only, tb.ident, g.pred(live, i, ""), g.returning())
	case 1: // USING
		var fs []gFK
		root := i
		if tb.kind != "inh" {
			fs = tb.fks
		}
		_ = root
		if len(fs) == 0 {
			return fmt.Sprintf("DELETE FROM %s x USING %s y WHERE x.id = y.id AND %s", tb.ident, g.tabs[g.rng.IntN(len(g.tabs))].ident, g.pred(live, i, "x"))
		}
		f := fs[g.rng.IntN(len(fs))]
		var on []string
		for k := range f.cols {
			on = append(on, fmt.Sprintf("x.%s = y.%s", f.cols[k], f.pcols[k]))
		}
		return fmt.Sprintf("DELETE FROM %s x USING %s y WHERE %s AND %s%s", tb.ident, g.tabs[f.parent].ident, strings.Join(on, " AND "), g.pred(live, f.parent, "y"),
			map[bool]string{true: " RETURNING x.uid, y.uid AS puid"}[g.rng.IntN(3) == 0])
	case 2: // two deletes of the same table in one WITH
		return fmt.Sprintf("WITH a AS (DELETE FROM %s WHERE %s RETURNING uid), b AS (DELETE FROM %s WHERE %s RETURNING uid) SELECT count(*) FROM (SELECT * FROM a UNION ALL SELECT * FROM b) s",
			tb.ident, g.pred(live, i, ""), tb.ident, g.pred(live, i, ""))
	case 3: // parent and child in one WITH
		var kids []int
		for _, f := range g.fkInfo {
			if f.parent == i && f.child != i {
				kids = append(kids, f.child)
			}
		}
		if len(kids) == 0 {
			return fmt.Sprintf("DELETE FROM %s WHERE %s", tb.ident, g.pred(live, i, ""))
		}
		k := kids[g.rng.IntN(len(kids))]
		return fmt.Sprintf("WITH a AS (DELETE FROM %s WHERE %s RETURNING uid), b AS (DELETE FROM %s WHERE %s RETURNING uid) SELECT (SELECT count(*) FROM a) AS na, (SELECT count(*) FROM b) AS nb",
			tb.ident, g.pred(live, i, ""), g.tabs[k].ident, g.pred(live, k, ""))
	case 4: // a partition directly
		if len(tb.parts) == 0 {
			return fmt.Sprintf("DELETE FROM %s WHERE %s", tb.ident, g.pred(live, i, ""))
		}
		return fmt.Sprintf("DELETE FROM %s WHERE %s%s", tb.parts[g.rng.IntN(len(tb.parts))], g.pred(live, i, ""), g.returning())
	case 5:
		t := "TRUNCATE "
		if tb.hasKids && g.rng.IntN(2) == 0 {
			t += "ONLY "
		}
		t += tb.ident
		if len(tb.parts) > 0 && g.rng.IntN(3) == 0 {
			t = "TRUNCATE " + tb.parts[g.rng.IntN(len(tb.parts))]
		}
		if g.rng.IntN(3) > 0 {
			t += " CASCADE"
		}
		return t
	default: // DELETE in WITH feeding a SELECT with RETURNING *
		return fmt.Sprintf("WITH gone AS (DELETE FROM %s WHERE %s RETURNING *) SELECT uid, id FROM gone", tb.ident, g.pred(live, i, ""))
	}
}

type sres struct {
	tag    string
	fields string
	rows   string
	err    string // SQLSTATE
	msg    string
}

func resOf(r *pgconn.Result) sres {
	var s sres
	if r.Err != nil {
		s.err, s.msg = errCode(r.Err), r.Err.Error()
		return s
	}
	s.tag = r.CommandTag.String()
	var fs []string
	for _, f := range r.FieldDescriptions {
		fs = append(fs, f.Name)
	}
	s.fields = strings.Join(fs, ",")
	var rs []string
	for _, row := range r.Rows {
		var v []string
		for _, x := range row {
			if x == nil {
				v = append(v, "NULL")
			} else {
				v = append(v, string(x))
			}
		}
		rs = append(rs, strings.Join(v, "|"))
	}
	sort.Strings(rs)
	s.rows = strings.Join(rs, "\n")
	return s
}

type effStmt struct {
	idx     int
	text    string
	pre     map[int64]string
	removed []int64
	changed []int64
	isTrunc bool
}

func (g *gen) stepDelete() {
	pre := g.live()
	preTombs := g.tombs()
	preBatches := g.batches()
	form := []string{"simple1", "simpleN", "tx", "txSep", "ext", "extPipe", "extPrep"}[weighted(g.rng, 5, 3, 2, 1, 3, 2, 2)]
	var stmts []string
	nst := 1
	switch form {
	case "simpleN", "extPipe":
		nst = 2 + g.rng.IntN(2)
	case "tx", "txSep":
		nst = 3
	}
	for k := 0; k < nst; k++ {
		stmts = append(stmts, g.genStmt(pre))
	}
	var prepText string
	var prepArgs []int64
	if form == "extPrep" {
		i := g.rng.IntN(len(g.tabs))
		prepText = fmt.Sprintf("DELETE FROM %s WHERE uid = $1", g.tabs[i].ident)
		if g.rng.IntN(2) == 0 {
			prepText += " RETURNING *"
		}
		stmts = nil
		k := 2
		for _, f := range g.fkInfo {
			if f.action == "a" || f.action == "r" || f.action == "d" {
				k = 1
			}
		}
		for _, u := range g.pickLiveUIDs(pre, i, k) {
			prepArgs = append(prepArgs, u)
			stmts = append(stmts, strings.Replace(prepText, "$1", strconv.FormatInt(u, 10), 1))
		}
		if len(stmts) == 0 {
			return
		}
	}
	if form == "tx" || form == "txSep" {
		rb := g.rng.IntN(2) == 0
		s := []string{"BEGIN", stmts[0], "SAVEPOINT sp", stmts[1]}
		if rb {
			s = append(s, "ROLLBACK TO sp")
		} else {
			s = append(s, "RELEASE sp")
		}
		stmts = append(s, stmts[2], "COMMIT")
	}
	g.t.Logf("step %d: %s: %s", g.step, form, strings.Join(stmts, "; "))
	g.stats[form]++

	// ground truth, directly
	_, err := g.dir.Exec(ctx, "BEGIN")
	require.NoError(g.t, err)
	var want []sres
	var effs []*effStmt
	savepointAt := -1
	cur := pre
	failed := false
	for k, s := range stmts {
		switch s {
		case "BEGIN", "COMMIT":
			want = append(want, sres{tag: s})
			continue
		}
		res := g.dir.PgConn().Exec(ctx, s)
		all, err := res.ReadAll()
		var r sres
		if err != nil {
			r = sres{err: errCode(err), msg: err.Error()}
		} else {
			r = resOf(all[len(all)-1])
		}
		want = append(want, r)
		if err != nil {
			failed = true
			break
		}
		switch {
		case s == "SAVEPOINT sp":
			savepointAt = len(effs)
			continue
		case s == "ROLLBACK TO sp":
			effs = effs[:savepointAt]
			cur = g.live()
			continue
		case s == "RELEASE sp":
			continue
		}
		after := g.live()
		ef := &effStmt{idx: k, text: s, pre: cur, isTrunc: strings.HasPrefix(s, "TRUNCATE")}
		for u, v := range cur {
			if w, ok := after[u]; !ok {
				ef.removed = append(ef.removed, u)
			} else if w != v {
				ef.changed = append(ef.changed, u)
			}
		}
		for u := range after {
			if _, ok := cur[u]; !ok {
				g.violate("direct: a row appeared", "uid %d", u)
			}
		}
		slices.Sort(ef.removed)
		slices.Sort(ef.changed)
		effs = append(effs, ef)
		cur = after
	}
	wantLive := cur
	_, err = g.dir.Exec(ctx, "ROLLBACK")
	require.NoError(g.t, err)
	if failed {
		wantLive = pre
		effs = nil
	}

	// through the proxy
	var got []sres
	if form == "extPrep" {
		_, err := g.app.PgConn().Prepare(ctx, "rb_prep", prepText, nil)
		require.NoError(g.t, err)
		for _, u := range prepArgs {
			r := g.app.PgConn().ExecPrepared(ctx, "rb_prep", [][]byte{[]byte(strconv.FormatInt(u, 10))}, nil, nil).Read()
			got = append(got, resOf(r))
			if r.Err != nil {
				break
			}
		}
		require.NoError(g.t, g.app.PgConn().Deallocate(ctx, "rb_prep"))
		for _, ef := range effs {
			ef.text = prepText
		}
	} else {
		got = g.runProxy(form, stmts)
	}
	if st := g.app.PgConn().TxStatus(); st != 'I' {
		_, _ = g.app.Exec(ctx, "ROLLBACK")
	}
	for k := range want {
		if k >= len(got) {
			g.violate("proxy: fewer results than Postgres", "%v: got %d results, want %d", stmts, len(got), len(want))
			break
		}
		w, r := want[k], got[k]
		if stmts[k] == "BEGIN" || stmts[k] == "COMMIT" {
			continue
		}
		if (w.err == "23503" && r.err == "" && strings.Contains(w.msg, "violates foreign key")) || (r.err == "0A000" && strings.Contains(r.msg, "capture steps")) {
			g.stats["known_divergence"]++
			g.t.Logf("note: known divergence: %s: postgres %s, proxy %s %s", stmts[k], w.msg, r.tag, r.msg)
			g.diverged = true
			g.resync()
			return
		}
		if w.err != r.err || w.tag != r.tag || w.fields != r.fields || w.rows != r.rows {
			g.violate("proxy answered differently from Postgres", "%s (%s):\n  postgres: %+v\n  proxy:    %+v", stmts[k], form, w, r)
			break
		}
	}
	now := g.live()
	if !mapsEqual(now, wantLive) {
		g.violate("proxy left the tables differently from Postgres", "%v:\n%s", stmts, diffLive(wantLive, now))
		g.resync()
		return
	}
	// capture
	allTombs := g.tombs()
	bs := g.batches()
	var newB []gBatch
	for _, b := range bs {
		if !slices.ContainsFunc(preBatches, func(o gBatch) bool { return o.id == b.id }) {
			newB = append(newB, b)
		}
	}
	oldT := map[string]int{}
	for _, t := range preTombs {
		oldT[fmt.Sprint(t.table, t.uid, t.batch, t.cause, t.text)]++
	}
	byBatch := map[int64][]tomb{}
	for _, t := range allTombs {
		k := fmt.Sprint(t.table, t.uid, t.batch, t.cause, t.text)
		if oldT[k] > 0 {
			oldT[k]--
			continue
		}
		if !slices.ContainsFunc(newB, func(b gBatch) bool { return b.id == t.batch }) {
			g.violate("a tombstone appeared in an older batch", "%+v", t)
		}
		byBatch[t.batch] = append(byBatch[t.batch], t)
	}
	for k, n := range oldT {
		if n > 0 {
			g.violate("a delete removed an older tombstone", "%s", k)
		}
	}
	// batches to statements: in order, by text
	ei := 0
	var pushed []stackEnt
	for _, b := range newB {
		for ei < len(effs) && strings.TrimSpace(effs[ei].text) != strings.TrimSpace(b.sql) {
			g.unbatched(effs[ei])
			ei++
		}
		if ei == len(effs) {
			g.violate("a batch no statement explains", "batch %d %q (statements %v)", b.id, b.sql, stmts)
			continue
		}
		ef := effs[ei]
		ei++
		g.checkBatch(ef, b, byBatch[b.id])
		pushed = append(pushed, stackEnt{batch: b.id, xid: b.xid, pre: ef.pre, text: ef.text})
	}
	for ; ei < len(effs); ei++ {
		g.unbatched(effs[ei])
	}
	g.stack = append(g.stack, pushed...)
}

// unbatched: a statement no batch explains removed or changed no row.
func (g *gen) unbatched(ef *effStmt) {
	if len(ef.removed) > 0 || len(ef.changed) > 0 {
		g.violate("a statement's rows have no batch", "%s: removed %v changed %v", ef.text, ef.removed, ef.changed)
	}
}

func (g *gen) checkBatch(ef *effStmt, b gBatch, ts []tomb) {
	g.stats["batches"]++
	removed := map[int64]bool{}
	for _, u := range ef.removed {
		removed[u] = true
	}
	changed := map[int64]bool{}
	for _, u := range ef.changed {
		changed[u] = true
	}
	got := map[int64][]tomb{}
	setNull := map[int64][]tomb{}
	perTable := map[string]int64{}
	for _, t := range ts {
		perTable["public."+g.tabs[t.table].name]++
		if t.cause == "set_null" {
			setNull[t.uid] = append(setNull[t.uid], t)
			continue
		}
		got[t.uid] = append(got[t.uid], t)
	}
	for _, u := range ef.removed {
		g.stats["rows"]++
		tt := got[u]
		switch {
		case len(tt) == 0:
			g.violate("a deleted row has no tombstone (lost)", "%s: uid %d %s, batch %d", ef.text, u, ef.pre[u], b.id)
		case len(tt) > 1:
			g.violate("a deleted row has several tombstones", "%s: uid %d: %v", ef.text, u, tt)
		default:
			t := tt[0]
			if t.text != ef.pre[u] {
				if strings.SplitN(t.text, "|", 2)[0] != strings.SplitN(ef.pre[u], "|", 2)[0] {
					g.violate("a row was captured into another table's shadow", "%s: uid %d: %s, was %s", ef.text, u, t.text, ef.pre[u])
				} else {
					g.violate("a tombstone differs from the deleted row", "%s: uid %d: %s, was %s", ef.text, u, t.text, ef.pre[u])
				}
			}
			if ef.isTrunc != (t.cause == "truncate") {
				g.violate("wrong cause", "%s: uid %d cause %s", ef.text, u, t.cause)
			}
			g.stats["cause_"+t.cause]++
		}
	}
	for u, tt := range got {
		if !removed[u] {
			g.violate("a tombstone of a row the statement did not delete", "%s: batch %d uid %d %v", ef.text, b.id, u, tt[0].text)
		}
	}
	for _, u := range ef.changed {
		g.stats["set_null"]++
		ok := slices.ContainsFunc(setNull[u], func(t tomb) bool { return t.text == ef.pre[u] })
		if !ok {
			g.violate("a SET NULL row has no set_null tombstone with its old values", "%s: uid %d was %s, got %v", ef.text, u, ef.pre[u], setNull[u])
		}
	}
	for u, tt := range setNull {
		if !changed[u] {
			g.violate("a set_null tombstone of a row the statement did not change", "%s: batch %d uid %d %v", ef.text, b.id, u, tt[0].text)
		}
	}
	for k, n := range b.tables {
		if perTable[k] != n {
			g.stats["count_mismatch"]++
			g.t.Logf("note: batch %d tables[%s] = %d, shadow rows %d (%s)", b.id, k, n, perTable[k], ef.text)
		}
	}
	for k, n := range perTable {
		if _, ok := b.tables[k]; !ok {
			g.violate("shadow rows of a table the batch does not list", "batch %d %s: %d rows", b.id, k, n)
		}
	}
}

func (g *gen) runProxy(form string, stmts []string) []sres {
	var out []sres
	switch form {
	case "simple1", "simpleN", "tx":
		all, err := g.app.PgConn().Exec(ctx, strings.Join(stmts, "; ")).ReadAll()
		for _, r := range all {
			out = append(out, resOf(r))
		}
		if err != nil && (len(all) == 0 || all[len(all)-1].Err == nil) {
			out = append(out, sres{err: errCode(err), msg: err.Error()})
		}
	case "txSep":
		for _, s := range stmts {
			all, err := g.app.PgConn().Exec(ctx, s).ReadAll()
			if err != nil {
				out = append(out, sres{err: errCode(err), msg: err.Error()})
				break
			}
			out = append(out, resOf(all[len(all)-1]))
		}
	case "ext":
		r := g.app.PgConn().ExecParams(ctx, stmts[0], nil, nil, nil, nil).Read()
		out = append(out, resOf(r))
	case "extPipe":
		bt := &pgconn.Batch{}
		for _, s := range stmts {
			bt.ExecParams(s, nil, nil, nil, nil)
		}
		all, err := g.app.PgConn().ExecBatch(ctx, bt).ReadAll()
		for _, r := range all {
			out = append(out, resOf(r))
		}
		if err != nil && (len(all) == 0 || all[len(all)-1].Err == nil) {
			out = append(out, sres{err: errCode(err), msg: err.Error()})
		}
	}
	return out
}

// resync: after a violation that changed the tables unexpectedly, forget
// the stack (restores can no longer be compared).
func (g *gen) resync() { g.stack = nil }

// ---- restores ----

func (g *gen) console(sql string) (string, error) {
	all, err := g.admin.PgConn().Exec(ctx, sql).ReadAll()
	if err != nil {
		g.t.Logf("step %d: %s -> %v", g.step, sql, err)
		return "", err
	}
	r := resOf(all[len(all)-1])
	g.t.Logf("step %d: %s -> %s", g.step, sql, strings.ReplaceAll(r.rows, "\n", "; "))
	return r.rows, nil
}

func (g *gen) stepRestore() {
	top := g.stack[len(g.stack)-1]
	before := g.live()
	beforeT := g.tombs()
	mode := weighted(g.rng, 4, 2, 4)
	if mode == 1 { // the whole transaction: every stacked batch of its xid is on top
		n := 0
		for k := len(g.stack) - 1; k >= 0 && g.stack[k].xid == top.xid; k-- {
			n++
		}
		if slices.ContainsFunc(g.stack[:len(g.stack)-n], func(s stackEnt) bool { return s.xid == top.xid }) {
			mode = 0
		} else {
			first := g.stack[len(g.stack)-n]
			g.stats["undelete_tx"]++
			g.checkedRun("UNDELETE TRANSACTION "+top.xid, before, beforeT, first.pre)
			g.stack = g.stack[:len(g.stack)-n]
			return
		}
	}
	if mode == 2 {
		var cands []tomb
		for _, t := range beforeT {
			if t.batch == top.batch && t.cause != "set_null" {
				cands = append(cands, t)
			}
		}
		if len(cands) > 0 {
			g.stats["undelete_from"]++
			a := cands[g.rng.IntN(len(cands))]
			sel := []int64{a.uid}
			for _, t := range cands {
				if t.table == a.table && t.uid != a.uid && g.rng.IntN(3) == 0 {
					sel = append(sel, t.uid)
				}
			}
			var us []string
			for _, u := range sel {
				us = append(us, strconv.FormatInt(u, 10))
			}
			cmd := fmt.Sprintf("UNDELETE FROM %s WHERE uid IN (%s)", g.tabs[a.table].ident, strings.Join(us, ", "))
			if g.rng.IntN(3) > 0 {
				cmd += fmt.Sprintf(" BATCH %d", top.batch)
			}
			g.undeleteFrom(cmd, a.table, sel, top, before, beforeT)
		}
	}
	g.stack = g.stack[:len(g.stack)-1]
	ts := g.tombs()
	if !slices.ContainsFunc(ts, func(t tomb) bool { return t.batch == top.batch }) {
		if now := g.live(); !mapsEqual(now, top.pre) {
			g.violate("a batch with nothing left does not give back the tables", "batch %d:\n%s", top.batch, diffLive(top.pre, now))
			g.resync()
		}
		return
	}
	g.stats["undelete_batch"]++
	g.checkedRun(fmt.Sprintf("UNDELETE BATCH %d", top.batch), g.live(), ts, top.pre)
}

// checkedRun: DRY RUN (changes nothing), then the run (same report), and
// the tables must be want.
func (g *gen) checkedRun(cmd string, before map[int64]string, beforeT []tomb, want map[int64]string) {
	var dry string
	var derr error
	dryFirst := g.rng.IntN(2) == 0
	if dryFirst {
		dry, derr = g.console(cmd + " DRY RUN")
		if now := g.live(); !mapsEqual(now, before) {
			g.violate("DRY RUN changed the tables", "%s:\n%s", cmd, diffLive(before, now))
		}
		if nt := g.tombs(); len(nt) != len(beforeT) {
			g.violate("DRY RUN changed the tombstones", "%s: %d -> %d", cmd, len(beforeT), len(nt))
		}
	}
	res, err := g.console(cmd)
	if err != nil {
		g.violate("a LIFO restore failed", "%s: %v", cmd, err)
		g.resync()
		return
	}
	if dryFirst && (derr != nil || dry != res) {
		g.violate("DRY RUN reported other numbers than the run", "%s: dry %q (%v), run %q", cmd, dry, derr, res)
	}
	now := g.live()
	if !mapsEqual(now, want) {
		g.violate("a restore did not give back the tables as they were", "%s (- before the delete, + after the restore):\n%s", cmd, diffLive(want, now))
		g.resync()
	}
}

func (g *gen) undeleteFrom(cmd string, table int, sel []int64, top stackEnt, before map[int64]string, beforeT []tomb) {
	// the closure: the selected rows and the cascade descendants in the batch
	inB := []tomb{}
	for _, t := range beforeT {
		if t.batch == top.batch && t.cause != "set_null" {
			inB = append(inB, t)
		}
	}
	closure := map[int64]bool{}
	for _, u := range sel {
		closure[u] = true
	}
	key := func(t tomb, cols []string) (string, bool) {
		var p []string
		for _, c := range cols {
			v, ok := t.cols[c]
			if !ok || string(v) == "null" {
				return "", false
			}
			p = append(p, string(v))
		}
		return strings.Join(p, ","), true
	}
	for grew := true; grew; {
		grew = false
		for _, t := range inB {
			if closure[t.uid] || t.cause != "cascade" {
				continue
			}
			for _, f := range g.fkInfo {
				if f.child != t.table || f.action != "c" {
					continue
				}
				k, ok := key(t, f.ccols)
				if !ok {
					continue
				}
				for _, p := range inB {
					if p.table == f.parent && closure[p.uid] {
						if pk, _ := key(p, f.pcols); pk == k {
							closure[t.uid], grew = true, true
						}
					}
				}
			}
		}
	}
	dry, derr := g.console(cmd + " DRY RUN")
	res, err := g.console(cmd)
	dryRefuses := false
	for _, l := range strings.Split(dry, "\n") {
		if f := strings.Split(l, "|"); len(f) == 4 && (f[2] != "0" || f[3] != "0") {
			dryRefuses = true
		}
	}
	if (err == nil) == dryRefuses && derr == nil || (err == nil && dry != res) || (derr != nil && err == nil) {
		g.violate("UNDELETE FROM: DRY RUN says other than the run", "%s: dry %q %v; run %q %v", cmd, dry, derr, res, err)
	}
	now := g.live()
	if err != nil {
		if !mapsEqual(now, before) {
			g.violate("a failed UNDELETE FROM changed the tables", "%s", cmd)
		}
		g.t.Logf("note: %s failed: %v (closure %v)", cmd, err, closure)
		g.stats["undelete_from_failed_"+errCode(err)]++
		return
	}
	for u, s := range now {
		if b, ok := before[u]; ok {
			if b != s && s != top.pre[u] {
				g.violate("UNDELETE FROM changed a live row to something it never was", "%s: uid %d %s -> %s", cmd, u, b, s)
			}
			continue
		}
		if !closure[u] {
			g.violate("UNDELETE FROM restored a row it did not select", "%s: uid %d %s (closure %v)", cmd, u, s, closure)
		}
		if s != top.pre[u] {
			g.violate("UNDELETE FROM restored a row differently", "%s: uid %d %s, was %s", cmd, u, s, top.pre[u])
		}
	}
	for u := range closure {
		if _, ok := now[u]; !ok {
			g.violate("UNDELETE FROM succeeded but left a selected row or its cascade descendant deleted", "%s: uid %d %s", cmd, u, top.pre[u])
		}
	}
}
