package test

// TestTrashGenerated: a generator of table trees (plain tables, partition
// trees two levels deep, inheritance trees, foreign keys between them)
// and of random sequences of DELETE, TRUNCATE, DROP TABLE (one table,
// several, CASCADE, a partition alone), UNDROP TABLE, UNDELETE BATCH,
// UNDELETE TRANSACTION (each conflict mode), UNDELETE FROM, DETACH and
// ATTACH PARTITION, NO INHERIT and INHERIT, and INSERT through the proxy,
// some inside transactions rolled back or committed (the DETACH,
// INHERIT, TRUNCATE and UNDELETE forms came from a review's generator). Every row carries a unique key u and a value v;
// after every step each row ever inserted must be in exactly one place —
// a live table, a table in the trash, or a tombstone — with its value,
// and the trash must be cut out of every inheritance tree and foreign
// key. At the end everything is undropped and undeleted, newest first,
// and every row must be live again.
//
// Knobs: TOMBSTONE_TRASH_SEED, TOMBSTONE_TRASH_ROUNDS,
// TOMBSTONE_TRASH_STEPS (make test: 3 rounds of 25 steps).

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tombstone-proxy/tombstone/internal/testenv"
)

// tgTable is one table of the generated schema.
type tgTable struct {
	name   string
	parent string // partitioned or inheritance parent, "" for a root
	bound  string // FOR VALUES … of a partition
	lo, hi int    // range of k a leaf takes
	part   bool   // partitioned (no rows of its own)
	ref    string // the table a root's foreign key p references, "" none
}

type trashGen struct {
	t      *testing.T
	rng    *rand.Rand
	seed   uint64
	step   int
	e      *env
	dir    *pgx.Conn // straight to Postgres, for the checks
	app    *pgx.Conn // through the proxy
	tabs   []*tgTable
	byName map[string]*tgTable
	rows   map[int64]string // every row ever inserted: u -> v
	uid    int64
	added  []int64 // rows the last INSERT drawn added to rows
	txRows []int64 // rows inserted in the open transaction
	inTx   bool
	txBad  bool // a statement of the open transaction failed
	nviol  int
	stats  map[string]int
}

func TestTrashGenerated(t *testing.T) {
	seeded(t, "TOMBSTONE_TRASH", 3, 25, func(t *testing.T, s uint64, steps int) {
		g := &trashGen{t: t, seed: s, rng: rand.New(rand.NewPCG(s, 91)), byName: map[string]*tgTable{},
			rows: map[int64]string{}, stats: map[string]int{}}
		g.run(steps)
	})
}

func (g *trashGen) violate(format string, args ...any) {
	g.t.Helper()
	g.nviol++
	g.t.Errorf("step %d (seed %d): VIOLATION %s", g.step, g.seed, fmt.Sprintf(format, args...))
	g.t.Logf("batches:\n%s", strings.Join(g.strings(`SELECT format('%s %s %s restored %s partly %s', id, tables, sql, restored_at, partly_restored_at) FROM tombstone.batches ORDER BY id`), "\n"))
	g.t.Logf("trash:\n%s", strings.Join(g.strings(`SELECT format('%s %s %s restored %s', id, original_name, trash_name, restored_at) FROM tombstone.trash ORDER BY id`), "\n"))
	for _, sh := range g.strings(`SELECT format('tombstone.%I', shadow_name) FROM tombstone.shadows ORDER BY 1`) {
		g.t.Logf("%s:\n%s", sh, strings.Join(g.strings(`SELECT format('u=%s batch %s %s', u, _ts_batch, _ts_cause) FROM `+sh+` ORDER BY u`), "\n"))
	}
}

func (g *trashGen) add(tb *tgTable) *tgTable {
	g.tabs = append(g.tabs, tb)
	g.byName[tb.name] = tb
	return tb
}

// schema generates 3 to 5 families of tables, each a plain table, a
// partition tree or an inheritance tree, the later ones with a foreign
// key to an earlier referenced table.
func (g *trashGen) schema() string {
	var b strings.Builder
	var targets []string
	n := 3 + g.rng.IntN(3)
	for f := range n {
		root := fmt.Sprintf("t%d", f)
		fk, to := "", ""
		if len(targets) > 0 && g.rng.IntN(3) > 0 {
			to = targets[g.rng.IntN(len(targets))]
			fk = fmt.Sprintf(", p bigint REFERENCES %s ON DELETE %s", to,
				[]string{"CASCADE", "SET NULL", "NO ACTION"}[weighted(g.rng, 5, 2, 1)])
		}
		switch weighted(g.rng, 2, 3, 3) {
		case 0:
			g.add(&tgTable{name: root, lo: 0, hi: 30, ref: to})
			fmt.Fprintf(&b, "CREATE TABLE %s (u bigint PRIMARY KEY, v text NOT NULL, k int NOT NULL%s);\n", root, fk)
			targets = append(targets, root)
		case 1:
			g.add(&tgTable{name: root, part: true, ref: to})
			fmt.Fprintf(&b, "CREATE TABLE %s (u bigint, v text NOT NULL, k int NOT NULL%s, PRIMARY KEY (u, k)) PARTITION BY RANGE (k);\n", root, fk)
			for i, lo := range []int{0, 10, 20} {
				name := fmt.Sprintf("%s_%c", root, 'a'+i)
				tb := g.add(&tgTable{name: name, parent: root, lo: lo, hi: lo + 10,
					bound: fmt.Sprintf("FOR VALUES FROM (%d) TO (%d)", lo, lo+10)})
				if i == 1 && g.rng.IntN(2) == 0 {
					tb.part = true
					fmt.Fprintf(&b, "CREATE TABLE %s PARTITION OF %s %s PARTITION BY RANGE (k);\n", name, root, tb.bound)
					for j, sub := range []int{lo, lo + 5} {
						leaf := g.add(&tgTable{name: fmt.Sprintf("%s%d", name, j+1), parent: name, lo: sub, hi: sub + 5,
							bound: fmt.Sprintf("FOR VALUES FROM (%d) TO (%d)", sub, sub+5)})
						fmt.Fprintf(&b, "CREATE TABLE %s PARTITION OF %s %s;\n", leaf.name, name, leaf.bound)
					}
					continue
				}
				fmt.Fprintf(&b, "CREATE TABLE %s PARTITION OF %s %s;\n", name, root, tb.bound)
			}
		case 2:
			g.add(&tgTable{name: root, lo: 0, hi: 30, ref: to})
			fmt.Fprintf(&b, "CREATE TABLE %s (u bigint PRIMARY KEY, v text NOT NULL, k int NOT NULL%s);\n", root, fk)
			targets = append(targets, root)
			parents := []string{root}
			for i := range 1 + g.rng.IntN(3) {
				par := parents[g.rng.IntN(len(parents))]
				name := fmt.Sprintf("%s_c%d", root, i)
				g.add(&tgTable{name: name, parent: par, lo: 0, hi: 30})
				fmt.Fprintf(&b, "CREATE TABLE %s (PRIMARY KEY (u)) INHERITS (%s);\n", name, par)
				parents = append(parents, name)
			}
		}
	}
	return b.String()
}

// insert returns an INSERT of 1 to n new rows into tb (a table holding
// rows), with a random key of the table a foreign key names.
func (g *trashGen) insert(tb *tgTable, n int, withRef bool) string {
	var vals []string
	root := g.root(tb)
	g.added = nil
	for range 1 + g.rng.IntN(n) {
		g.uid++
		g.added = append(g.added, g.uid)
		v := fmt.Sprintf("v%d-%d", g.uid, g.rng.IntN(1000))
		g.rows[g.uid] = v
		k := tb.lo + g.rng.IntN(tb.hi-tb.lo)
		ref := "NULL"
		if withRef && g.rng.IntN(4) > 0 {
			ref = fmt.Sprintf("(SELECT u FROM ONLY %s ORDER BY random() LIMIT 1)", root.ref)
		}
		if root.ref == "" {
			vals = append(vals, fmt.Sprintf("(%d, '%s', %d)", g.uid, v, k))
		} else {
			vals = append(vals, fmt.Sprintf("(%d, '%s', %d, %s)", g.uid, v, k, ref))
		}
	}
	return fmt.Sprintf("INSERT INTO %s VALUES %s", tb.name, strings.Join(vals, ", "))
}

func (g *trashGen) root(tb *tgTable) *tgTable {
	for tb.parent != "" {
		tb = g.byName[tb.parent]
	}
	return tb
}

func (g *trashGen) run(steps int) {
	schema := g.schema()
	var data strings.Builder
	for _, tb := range g.tabs { // parents first: foreign keys find rows
		if !tb.part {
			data.WriteString(g.insert(tb, 8, true) + ";\n")
		}
	}
	g.t.Logf("schema:\n%s%s", schema, data.String())
	g.e = newEnv(g.t, schema+data.String())
	g.dir = testenv.Connect(g.t, g.e.direct)
	g.app = testenv.Connect(g.t, g.e.proxy)
	_, err := g.app.Exec(ctx, "DELETE FROM t0 WHERE false") // installs the store
	require.NoError(g.t, err)
	g.check()
	for g.step = 1; g.step <= steps && g.nviol == 0; g.step++ {
		if g.rng.IntN(6) == 0 {
			g.tx()
		} else {
			g.exec(g.op())
		}
		g.check()
	}
	if g.nviol == 0 {
		g.restoreAll()
	}
	g.t.Logf("stats: %v", g.stats)
}

// tx runs two or three operations in a transaction, committed or rolled
// back; the rows it inserted count only if it committed.
func (g *trashGen) tx() {
	g.exec("BEGIN")
	g.inTx, g.txBad, g.txRows = true, false, nil
	for range 2 + g.rng.IntN(2) {
		if !g.exec(g.op()) {
			break
		}
	}
	end := "COMMIT"
	if g.rng.IntN(3) == 0 {
		end = "ROLLBACK"
	}
	g.exec(end)
	g.inTx = false
	if end == "ROLLBACK" || g.txBad {
		g.forget(g.txRows)
	}
}

func (g *trashGen) forget(us []int64) {
	for _, u := range us {
		delete(g.rows, u)
	}
}

// exec runs sql through the proxy; false when it failed.
func (g *trashGen) exec(sql string) bool {
	if sql == "" {
		return true
	}
	_, err := g.app.PgConn().Exec(ctx, sql).ReadAll()
	verb := strings.Fields(sql)[0]
	if verb == "INSERT" {
		if err != nil {
			g.forget(g.added)
		} else if g.inTx {
			g.txRows = append(g.txRows, g.added...)
		}
	}
	if err != nil && g.inTx {
		g.txBad = true
	}
	if err != nil {
		g.stats[verb+" refused"]++
		g.t.Logf("step %d: %s -> %v", g.step, sql, err)
		// Postgres's own refusals, and the store's, are answers; an
		// internal error, or the store's objects in the way of the
		// user's DDL (a trigger of ours named as one Postgres clones),
		// is not.
		if code := pgErrCode(err); strings.HasPrefix(code, "XX") || code == "42710" {
			g.violate("%s failed: %v", sql, err)
		}
		return false
	}
	g.stats[verb]++
	g.t.Logf("step %d: %s", g.step, sql)
	return true
}

// live lists the user's tables as the database has them now, with
// whether each is attached to its partitioned table or inherits from its
// parent.
func (g *trashGen) live() (names []string, attached map[string]bool) {
	rows, err := g.dir.Query(ctx, `SELECT c.relname, EXISTS (SELECT FROM pg_inherits i WHERE i.inhrelid = c.oid) FROM pg_class c
		WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p') ORDER BY 1`)
	require.NoError(g.t, err)
	attached = map[string]bool{}
	for rows.Next() {
		var n string
		var p bool
		require.NoError(g.t, rows.Scan(&n, &p))
		if g.byName[n] != nil {
			names = append(names, n)
			attached[n] = p
		}
	}
	require.NoError(g.t, rows.Err())
	return names, attached
}

func (g *trashGen) strings(sql string) []string {
	rows, err := g.dir.Query(ctx, sql)
	require.NoError(g.t, err)
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(g.t, err)
	return out
}

func (g *trashGen) pick(xs []string) string { return xs[g.rng.IntN(len(xs))] }

// op draws the next operation, over the tables as they are now.
func (g *trashGen) op() string {
	names, attached := g.live()
	trashed := g.strings(`SELECT original_name FROM tombstone.trash WHERE restored_at IS NULL AND purged_at IS NULL ORDER BY id`)
	batches := g.strings(`SELECT id::text FROM tombstone.batches WHERE restored_at IS NULL AND purged_at IS NULL AND tables <> '{}' ORDER BY id`)
	switch weighted(g.rng, 5, 4, 3, 2, 2, 2, 2, 2, 2, 1, 2) {
	case 6: // DETACH PARTITION, NO INHERIT
		var cand []string
		for _, n := range names {
			if tb := g.byName[n]; tb.parent != "" && attached[n] {
				cand = append(cand, n)
			}
		}
		if len(cand) == 0 {
			return ""
		}
		tb := g.byName[g.pick(cand)]
		if tb.bound != "" {
			return fmt.Sprintf("ALTER TABLE %s DETACH PARTITION %s", tb.parent, tb.name)
		}
		return fmt.Sprintf("ALTER TABLE %s NO INHERIT %s", tb.name, tb.parent)
	case 7: // UNDELETE TRANSACTION
		xids := g.strings(`SELECT DISTINCT xid::text FROM tombstone.batches WHERE restored_at IS NULL AND purged_at IS NULL AND tables <> '{}' ORDER BY 1`)
		if len(xids) == 0 {
			return ""
		}
		return "UNDELETE TRANSACTION " + g.pick(xids) + []string{"", " ON CONFLICT SKIP", " ON CONFLICT OVERWRITE"}[g.rng.IntN(3)]
	case 8: // UNDELETE FROM
		if len(names) == 0 {
			return ""
		}
		m := 2 + g.rng.IntN(3)
		return fmt.Sprintf("UNDELETE FROM %s WHERE u %% %d = %d", g.pick(names), m, g.rng.IntN(m))
	case 9: // TRUNCATE
		if len(names) == 0 {
			return ""
		}
		return "TRUNCATE " + g.pick(names)
	case 10: // INHERIT again
		return first(g.reattach(names, attached, false))
	case 0: // DELETE
		if len(names) == 0 {
			return ""
		}
		tb := g.byName[g.pick(names)]
		only := ""
		if !tb.part && g.rng.IntN(3) == 0 {
			only = "ONLY "
		}
		if g.rng.IntN(3) == 0 {
			return fmt.Sprintf("DELETE FROM %s%s WHERE k < %d", only, tb.name, tb.lo+g.rng.IntN(12))
		}
		m := 2 + g.rng.IntN(4)
		return fmt.Sprintf("DELETE FROM %s%s WHERE u %% %d = %d", only, tb.name, m, g.rng.IntN(m))
	case 1: // DROP TABLE
		if len(names) == 0 {
			return ""
		}
		list := []string{g.pick(names)}
		if g.rng.IntN(4) == 0 {
			if other := g.pick(names); other != list[0] {
				list = append(list, other)
			}
		}
		cascade := []string{"", " CASCADE", " RESTRICT"}[weighted(g.rng, 3, 3, 1)]
		return "DROP TABLE " + strings.Join(list, ", ") + cascade
	case 2: // UNDROP TABLE, newest first mostly
		if len(trashed) == 0 {
			return ""
		}
		if g.rng.IntN(3) > 0 {
			return "UNDROP TABLE " + trashed[len(trashed)-1]
		}
		return "UNDROP TABLE " + g.pick(trashed)
	case 3: // UNDELETE BATCH
		if len(batches) == 0 {
			return ""
		}
		if g.rng.IntN(3) > 0 {
			return "UNDELETE BATCH " + batches[len(batches)-1]
		}
		return "UNDELETE BATCH " + g.pick(batches)
	case 4: // ATTACH a partition that came back detached
		return first(g.reattach(names, attached, true))
	default: // INSERT into a table that holds rows
		var leaves []string
		for _, n := range names {
			if !g.byName[n].part {
				leaves = append(leaves, n)
			}
		}
		if len(leaves) == 0 {
			return ""
		}
		return g.insert(g.byName[g.pick(leaves)], 4, true)
	}
}

// reattach lists the statements that put tables of names back where the
// schema had them: partitions (ATTACH PARTITION with their bound) or
// inheritance children (INHERIT).
func (g *trashGen) reattach(names []string, attached map[string]bool, partition bool) []string {
	var out []string
	for _, n := range names {
		tb := g.byName[n]
		if tb.parent == "" || attached[n] || (tb.bound != "") != partition || !slices.Contains(names, tb.parent) {
			continue
		}
		if partition {
			out = append(out, fmt.Sprintf("ALTER TABLE %s ATTACH PARTITION %s %s", tb.parent, n, tb.bound))
		} else {
			out = append(out, fmt.Sprintf("ALTER TABLE %s INHERIT %s", n, tb.parent))
		}
	}
	return out
}

// first is xs' first, or "".
func first(xs []string) string {
	if len(xs) == 0 {
		return ""
	}
	return xs[0]
}

// where finds every copy of every row: in the live tables, in the
// tables of the trash, and in the shadow tables (tombstones not restored).
func (g *trashGen) where() map[int64][]string {
	found := map[int64][]string{}
	read := func(label, sql string) {
		rows, err := g.dir.Query(ctx, sql)
		require.NoError(g.t, err, sql)
		for rows.Next() {
			var u int64
			var v string
			require.NoError(g.t, rows.Scan(&u, &v))
			found[u] = append(found[u], label+"="+v)
		}
		require.NoError(g.t, rows.Err(), sql)
	}
	rels := g.strings(`SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind = 'r' AND n.nspname IN ('public', 'tombstone_trash')
		  AND EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'u' AND NOT a.attisdropped) ORDER BY 1`)
	for _, r := range rels {
		read(r, "SELECT u, v FROM ONLY "+r)
	}
	for _, s := range g.strings(`SELECT format('tombstone.%I', shadow_name) FROM tombstone.shadows ORDER BY 1`) {
		read(s, "SELECT u, v FROM "+s+" WHERE _ts_cause <> 'set_null'") // (a SET NULL's rows stay live; their tombstones keep the old keys)
	}
	return found
}

// check: every row in exactly one place with its value, nothing unknown,
// and the trash wired to nothing live.
func (g *trashGen) check() {
	found := g.where()
	var bad []string
	for u, v := range g.rows {
		places := found[u]
		if len(places) != 1 || !strings.HasSuffix(places[0], "="+v) {
			bad = append(bad, fmt.Sprintf("u=%d (v %s): %v", u, v, places))
		}
	}
	for u, places := range found {
		if _, ok := g.rows[u]; !ok {
			bad = append(bad, fmt.Sprintf("u=%d never inserted: %v", u, places))
		}
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		g.violate("rows not exactly once:\n%s", strings.Join(bad, "\n"))
	}
	wired := g.strings(`SELECT format('inherits %s -> %s', i.inhrelid::regclass, i.inhparent::regclass) FROM pg_inherits i
		JOIN pg_class a ON a.oid = i.inhrelid JOIN pg_class b ON b.oid = i.inhparent
		WHERE (a.relnamespace = 'tombstone_trash'::regnamespace) <> (b.relnamespace = 'tombstone_trash'::regnamespace)
		UNION ALL
		SELECT format('foreign key %s on %s -> %s', f.conname, f.conrelid::regclass, f.confrelid::regclass) FROM pg_constraint f
		JOIN pg_class a ON a.oid = f.conrelid JOIN pg_class b ON b.oid = f.confrelid
		WHERE f.contype = 'f' AND (a.relnamespace = 'tombstone_trash'::regnamespace OR b.relnamespace = 'tombstone_trash'::regnamespace)`)
	if len(wired) > 0 {
		g.violate("the trash is wired in: %v", wired)
	}
}

// restoreAll undrops every table (newest first), attaches what came back
// detached and undeletes every batch (newest first), over again while
// that makes progress — a partition's rows may need its parent's rows
// back before it can be attached, and a batch its partition attached —
// and then wants every row live.
func (g *trashGen) restoreAll() {
	g.step = 1000
	for round := 0; round < 8; round++ { // (an UNDELETE that restores nothing still succeeds)
		progress := false
		for _, n := range g.strings(`SELECT original_name FROM tombstone.trash WHERE restored_at IS NULL AND purged_at IS NULL ORDER BY id DESC`) {
			progress = g.exec("UNDROP TABLE "+n) || progress
		}
		for _, partition := range []bool{true, false} {
			names, attached := g.live()
			for _, sql := range g.reattach(names, attached, partition) {
				progress = g.exec(sql) || progress
			}
		}
		for _, b := range g.strings(`SELECT id::text FROM tombstone.batches WHERE restored_at IS NULL AND purged_at IS NULL AND tables <> '{}' ORDER BY id DESC`) {
			progress = g.exec("UNDELETE BATCH "+b) || progress
		}
		if !progress {
			break
		}
	}
	require.Empty(g.t, g.strings(`SELECT original_name FROM tombstone.trash WHERE restored_at IS NULL AND purged_at IS NULL`), "tables left in the trash")
	g.step++
	g.check()
	found := g.where()
	var notLive []string
	for u := range g.rows {
		if p := found[u]; len(p) == 1 && !strings.HasPrefix(p[0], "public.") {
			notLive = append(notLive, fmt.Sprintf("u=%d: %v", u, p))
		}
	}
	if len(notLive) > 0 {
		sort.Strings(notLive)
		g.violate("rows not live after undropping and undeleting everything:\n%s", strings.Join(notLive, "\n"))
	}
}
