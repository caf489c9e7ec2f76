package tombstone

import (
	"context"
	"fmt"
	"sort"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tombstone-proxy/tombstone/rewrite"
)

// generations hands out catalog generations: every LoadCatalog gets a new,
// larger one, so a rewrite cache keyed on it drops everything on reload.
var generations atomic.Uint64

// CatalogOptions configure LoadCatalog.
type CatalogOptions struct {
	// Sync runs tombstone.sync_all() first (in the same transaction), so
	// that every protected table has an up-to-date shadow table.
	Sync bool
}

// Catalog is the set of protected tables of one database, with their
// columns, shadow tables, foreign-key graph and signatures, as rewrite
// needs it. It implements rewrite.GenerationalCatalog. A Catalog is
// immutable once loaded and safe for concurrent use; reload it (with
// LoadCatalog) when NotifyChannel fires or a statement fails with
// SQLSTATE TS001.
//
// Partitions are not tables of their own here: a partition resolves to
// the root of its partition tree, so a DELETE naming a partition directly
// is captured into the root's shadow table, checked against the root's
// signature (catalog_signature maps a partition to its root) and
// recorded in the batch under the root's name.
type Catalog struct {
	byName map[[2]string]*rewrite.Table
	// through holds the unprotected tables whose ON DELETE CASCADE
	// reaches protected tables (rewrite.Table.Unprotected), partitions
	// under their own names.
	through map[[2]string]*rewrite.Table
	tables  []*rewrite.Table
	schemas []string
	gen     uint64
	// snapshot is the snapshot the catalog was read in and the state of
	// the event triggers then ("snapshot;triggers"), nil when
	// check_catalog's fast path may not use it (tombstone.catalog_state).
	snapshot *string
	// unsnapped: the fast path was withheld only because the load's sync
	// wrote; a load that changes nothing would allow it.
	unsnapped bool
	// truncate and drop are the TRUNCATE and DROP TABLE policies stored
	// in the database (policies.truncate, policies.drop): the rules in
	// force, whatever a proxy's own configuration says.
	truncate, drop string
	// frozen: FREEZE DELETES was in force when the catalog was read.
	frozen bool
}

// Frozen reports whether deletes were frozen (FREEZE DELETES) when the
// catalog was read; a freeze and a thaw notify the proxies, which load
// it again. The store refuses the deletes itself: this is for metrics.
func (c *Catalog) Frozen() bool { return c.frozen }

// Policies returns the TRUNCATE and DROP TABLE policies in force in the
// database ("" where none is stored: the defaults).
func (c *Catalog) Policies() (truncate, drop string) { return c.truncate, c.drop }

var (
	_ rewrite.GenerationalCatalog = (*Catalog)(nil)
	_ rewrite.CascadeCatalog      = (*Catalog)(nil)
)

// Lookup resolves a table as Postgres stores its name (already
// case-folded). schema == "" resolves through the protected schemas in
// order (see Schemas), like a search_path.
func (c *Catalog) Lookup(schema, name string) (*rewrite.Table, bool) {
	return c.resolve(c.byName, schema, name)
}

// resolve finds a table in m by its name as written: qualified, or
// through the protected schemas in order.
func (c *Catalog) resolve(m map[[2]string]*rewrite.Table, schema, name string) (*rewrite.Table, bool) {
	if schema != "" {
		t, ok := m[[2]string{schema, name}]
		return t, ok
	}
	for _, s := range c.schemas {
		if t, ok := m[[2]string{s, name}]; ok {
			return t, true
		}
	}
	return nil, false
}

// Cascading resolves an unprotected table whose ON DELETE CASCADE reaches
// protected tables (rewrite.CascadeCatalog), as Lookup does: an
// unqualified name only through the protected schemas (the session's
// search_path is not known; a guess could name an unrelated table of
// another schema). The statement's catalog guard checks that the server
// resolves the name to the same table.
func (c *Catalog) Cascading(schema, name string) (*rewrite.Table, bool) {
	return c.resolve(c.through, schema, name)
}

// HoldsProtected reports whether schema contains a protected table
// (rewrite.SchemaCatalog, for DROP SCHEMA).
func (c *Catalog) HoldsProtected(schema string) bool {
	for _, t := range c.tables {
		if t.Schema == schema {
			return true
		}
	}
	return false
}

// Generation changes (increases) with every load.
func (c *Catalog) Generation() uint64 { return c.gen }

// Tables returns the protected tables (partition roots, not partitions),
// ordered by schema and name.
func (c *Catalog) Tables() []*rewrite.Table { return c.tables }

// Schemas returns the schemas unqualified names are resolved through:
// the protected schemas in configured order, then any other schema that
// holds an explicitly protected table.
func (c *Catalog) Schemas() []string { return c.schemas }

// LoadCatalog reads the protected tables, their live columns, shadow
// tables, retention, signatures and the foreign keys that reference them,
// in one repeatable-read snapshot. A protected table whose shadow table
// does not exist yet gets the name Sync would give it, so a DELETE on it
// fails cleanly until Sync has run (or use opts.Sync).
func LoadCatalog(ctx context.Context, conn *pgx.Conn, opts CatalogOptions) (*Catalog, error) {
	cat := &Catalog{byName: map[[2]string]*rewrite.Table{}, through: map[[2]string]*rewrite.Table{}}
	err := pgx.BeginTxFunc(ctx, conn, pgx.TxOptions{IsoLevel: pgx.RepeatableRead}, func(tx pgx.Tx) error {
		// format_type qualifies the types it prints relative to the
		// search_path: pg_catalog alone makes every other type qualified
		// (and no planted overload a better match for what follows).
		// Generic plans: the catalog functions run once per table with
		// other arguments, and planning each call anew took more than half
		// of a load (125 against 57 ms for catalog_state of 120 tables).
		if _, err := tx.Exec(ctx, "SELECT pg_catalog.set_config('search_path', 'pg_catalog', true), "+
			"pg_catalog.set_config('plan_cache_mode', 'force_generic_plan', true)"); err != nil {
			return err
		}
		if err := checkInstalled(ctx, tx); err != nil {
			return err
		}
		sync := opts.Sync
		if !sync {
			// Without the DDL event trigger nothing keeps the shadow
			// tables and capture triggers in step with ALTER TABLE: every
			// load syncs.
			if err := tx.QueryRow(ctx, `SELECT NOT EXISTS (SELECT FROM pg_catalog.pg_event_trigger
				WHERE evtname = 'tombstone_ddl' AND evtenabled = 'A')`).Scan(&sync); err != nil {
				return err
			}
		}
		if sync {
			if _, err := tx.Exec(ctx, "SELECT tombstone.sync_all()"); err != nil {
				return fmt.Errorf("tombstone: sync shadow tables: %w", err)
			}
		}
		// The snapshot the catalog is read in, for check_catalog's fast
		// path: only when the event triggers log every change from now
		// on, and this transaction changed nothing itself (a sync that
		// wrote is not visible to its own snapshot, so no later statement
		// could take the fast path with it).
		var logged, wrote bool
		var snap string
		if err := tx.QueryRow(ctx, `SELECT to_regprocedure('tombstone._event_triggers()') IS NOT NULL
			       AND tombstone._event_triggers() IS NOT NULL AND to_regclass('tombstone.catalog_log') IS NOT NULL,
			       pg_current_xact_id_if_assigned() IS NOT NULL`).Scan(&logged, &wrote); err != nil {
			return err
		}
		if logged {
			if err := tx.QueryRow(ctx, `SELECT pg_current_snapshot()::text || ';' || tombstone._event_triggers()`).Scan(&snap); err != nil {
				return err
			}
		}
		if logged && !wrote {
			cat.snapshot = &snap
		}
		cat.unsnapped = logged && wrote
		if err := tx.QueryRow(ctx, `SELECT
			coalesce((SELECT value #>> '{}' FROM tombstone.settings WHERE key = 'policies.truncate'), ''),
			coalesce((SELECT value #>> '{}' FROM tombstone.settings WHERE key = 'policies.drop'), ''),
			EXISTS (SELECT FROM tombstone.settings WHERE key = 'deletes.frozen' AND value <> 'null')`).Scan(&cat.truncate, &cat.drop, &cat.frozen); err != nil {
			return err
		}
		return cat.load(ctx, tx)
	})
	if err != nil {
		return nil, fmt.Errorf("tombstone: load catalog: %w", err)
	}
	cat.gen = generations.Add(1)
	return cat, nil
}

func (c *Catalog) load(ctx context.Context, tx pgx.Tx) error {
	rows, err := tx.Query(ctx, `
SELECT p.relid, p.schema_name::text, p.table_name::text, p.search_pos,
       (extract(epoch FROM p.retention) * 1000000)::bigint,
       coalesce(s.shadow_name, tombstone._shadow_name(p.schema_name, p.table_name, p.relid))::text,
       (SELECT c.relkind = 'p' FROM pg_class c WHERE c.oid = p.relid),
       tombstone.catalog_state(p.relid::regclass, $1),
       ARRAY(SELECT a.attname::text FROM pg_attribute a
              WHERE a.attrelid = p.relid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum),
       ARRAY(SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
              WHERE a.attrelid = p.relid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum),
       ARRAY(SELECT tombstone._shadow_column_name(a.attname)::text FROM pg_attribute a
              WHERE a.attrelid = p.relid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum),
       tombstone._delete_runs_code(p.relid)
  FROM tombstone.protected_tables() p
  LEFT JOIN tombstone.shadows s ON s.source = p.relid
 ORDER BY p.schema_name, p.table_name`, c.snapshot)
	if err != nil {
		return err
	}
	byOID := map[uint32]*rewrite.Table{}
	schemaPos := map[string]int{}
	for rows.Next() {
		var (
			t            rewrite.Table
			pos          int
			retentionUS  int64
			names, types []string
			shadowNames  []string
		)
		if err := rows.Scan(&t.OID, &t.Schema, &t.Name, &pos, &retentionUS, &t.Shadow, &t.Partitioned, &t.Signature, &names, &types, &shadowNames,
			&t.DeleteRunsCode); err != nil {
			rows.Close()
			return err
		}
		t.Retention = time.Duration(retentionUS) * time.Microsecond
		for i := range names {
			col := rewrite.Column{Name: names[i], Type: types[i]}
			if i < len(shadowNames) && shadowNames[i] != names[i] {
				col.ShadowName = shadowNames[i]
			}
			t.Columns = append(t.Columns, col)
		}
		tp := &t
		c.tables = append(c.tables, tp)
		byOID[t.OID] = tp
		c.byName[[2]string{t.Schema, t.Name}] = tp
		if old, ok := schemaPos[t.Schema]; !ok || pos < old {
			schemaPos[t.Schema] = pos
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	for s := range schemaPos {
		c.schemas = append(c.schemas, s)
	}
	sort.Slice(c.schemas, func(i, j int) bool {
		a, b := c.schemas[i], c.schemas[j]
		if schemaPos[a] != schemaPos[b] {
			return schemaPos[a] < schemaPos[b]
		}
		return a < b
	})

	// Partitions resolve to their root.
	partOf := map[uint32]*rewrite.Table{}
	rows, err = tx.Query(ctx, `
SELECT t.relid::oid, n.nspname::text, c.relname::text, p.relid
  FROM tombstone.protected_tables() p
  JOIN pg_class pc ON pc.oid = p.relid AND pc.relkind = 'p'
  CROSS JOIN LATERAL tombstone._partition_tree(p.relid) t
  JOIN pg_class c ON c.oid = t.relid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE t.relid <> p.relid`)
	if err != nil {
		return err
	}
	for rows.Next() {
		var oid, root uint32
		var schema, name string
		if err := rows.Scan(&oid, &schema, &name, &root); err != nil {
			rows.Close()
			return err
		}
		if rt := byOID[root]; rt != nil {
			partOf[oid] = rt
			if _, taken := c.byName[[2]string{schema, name}]; !taken {
				c.byName[[2]string{schema, name}] = rt
			}
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}

	through, throughParts, err := c.loadThrough(ctx, tx)
	if err != nil {
		return err
	}
	throughOIDs := make([]uint32, 0, len(through))
	for oid := range through {
		throughOIDs = append(throughOIDs, oid)
	}
	partOIDs := make([]uint32, 0, len(partOf)+len(throughParts))
	for oid := range partOf {
		partOIDs = append(partOIDs, oid)
	}
	for oid := range throughParts {
		partOIDs = append(partOIDs, oid)
	}

	// Foreign keys referencing protected tables, and those referencing
	// the tables a cascade passes through, or one of their partitions
	// directly. Partition clones (conparentid <> 0) are left out: the
	// parent constraint covers them.
	rows, err = tx.Query(ctx, `
SELECT c.conname::text, c.confrelid, c.conrelid, cn.nspname::text, cc.relname::text, c.confdeltype::text,
       ARRAY(SELECT pt.relid::oid FROM tombstone._partition_tree(c.confrelid) pt
              WHERE (SELECT pc.relispartition FROM pg_class pc WHERE pc.oid = c.confrelid)),
       ARRAY(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY k(n, o)
               JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.o),
       ARRAY(SELECT a.attname::text FROM unnest(c.confkey) WITH ORDINALITY k(n, o)
               JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.o),
       (SELECT CASE WHEN count(DISTINCT (co.oprnamespace, co.oprname)) = 1 AND bool_and(co.oid IS NOT NULL)
                    THEN max(cn2.nspname::text) END
          FROM unnest(c.conpfeqop) op
          JOIN pg_operator po ON po.oid = op
          LEFT JOIN pg_operator co ON co.oid = po.oprcom
          LEFT JOIN pg_namespace cn2 ON cn2.oid = co.oprnamespace),
       (SELECT max(co.oprname::text)
          FROM unnest(c.conpfeqop) op
          JOIN pg_operator po ON po.oid = op
          JOIN pg_operator co ON co.oid = po.oprcom),
       tombstone._fk_runs_code(c.oid),
       cols.l_schemas, cols.l_names, cols.r_schemas, cols.r_names, cols.uncastable
  FROM pg_constraint c
  JOIN pg_class cc ON cc.oid = c.conrelid
  JOIN pg_namespace cn ON cn.oid = cc.relnamespace
  -- Per column, the operator's input types where a column's own type
  -- differs (the rewrite casts it, as Postgres's cascade does; a domain
  -- too, so that no operator declared on the domain is chosen), and
  -- whether one of those casts is to bpchar, which pg_query's deparser
  -- cannot spell (it writes char, which is char(1)).
  CROSS JOIN LATERAL (
      SELECT array_agg(CASE WHEN fa.atttypid <> co.oprleft THEN ln.nspname::text ELSE '' END ORDER BY u.o) AS l_schemas,
             array_agg(CASE WHEN fa.atttypid <> co.oprleft THEN lt.typname::text ELSE '' END ORDER BY u.o) AS l_names,
             array_agg(CASE WHEN pa.atttypid <> co.oprright THEN rn.nspname::text ELSE '' END ORDER BY u.o) AS r_schemas,
             array_agg(CASE WHEN pa.atttypid <> co.oprright THEN rt.typname::text ELSE '' END ORDER BY u.o) AS r_names,
             coalesce(bool_or(fa.atttypid <> co.oprleft AND co.oprleft = 'pg_catalog.bpchar'::regtype
                              OR pa.atttypid <> co.oprright AND co.oprright = 'pg_catalog.bpchar'::regtype), false) AS uncastable
        FROM unnest(c.conpfeqop, c.conkey, c.confkey) WITH ORDINALITY u(op, fk_att, pk_att, o)
        JOIN pg_operator po ON po.oid = u.op
        JOIN pg_operator co ON co.oid = po.oprcom
        JOIN pg_attribute fa ON fa.attrelid = c.conrelid AND fa.attnum = u.fk_att
        JOIN pg_attribute pa ON pa.attrelid = c.confrelid AND pa.attnum = u.pk_att
        JOIN pg_type lt ON lt.oid = co.oprleft JOIN pg_namespace ln ON ln.oid = lt.typnamespace
        JOIN pg_type rt ON rt.oid = co.oprright JOIN pg_namespace rn ON rn.oid = rt.typnamespace) cols
 WHERE c.contype = 'f' AND c.conparentid = 0
   AND (c.confrelid IN (SELECT relid FROM tombstone.protected_tables()) OR c.confrelid = ANY ($1::oid[])
        OR c.confrelid = ANY ($2::oid[]))
 ORDER BY c.confrelid, c.conname, c.oid`, throughOIDs, partOIDs)
	if err != nil {
		return err
	}
	defer rows.Close()
	type partChild struct{ part, root *rewrite.Table }
	var parts []partChild
	for rows.Next() {
		var (
			fk             rewrite.ForeignKey
			parent, child  uint32
			action         string
			childC, parenC []string
		)
		var subtree []uint32
		var opSchema, opName *string
		var lSchemas, lNames, rSchemas, rNames []string
		if err := rows.Scan(&fk.Name, &parent, &child, &fk.ChildSchema, &fk.ChildName, &action, &subtree, &childC, &parenC,
			&opSchema, &opName, &fk.RunsCode, &lSchemas, &lNames, &rSchemas, &rNames, &fk.Uncastable); err != nil {
			return err
		}
		if len(lNames) == len(childC) && len(rNames) == len(childC) {
			for i := range lNames {
				fk.ChildTypes = append(fk.ChildTypes, [2]string{lSchemas[i], lNames[i]})
				fk.ParentTypes = append(fk.ParentTypes, [2]string{rSchemas[i], rNames[i]})
			}
		} else {
			fk.RunsCode = true // an operator without a commutator: nothing safe to name
		}
		if opSchema != nil && opName != nil {
			fk.Operator = []string{*opSchema, *opName}
		} else {
			fk.RunsCode = true // no one operator name for every column: nothing safe to name
		}
		fk.ChildColumns, fk.ParentColumns = childC, parenC
		fk.OnDelete = fkAction(action)
		if t := byOID[child]; t != nil {
			fk.Child = t
		} else if t := through[child]; t != nil {
			fk.Child = t
		} else if p, ok := throughParts[child]; ok {
			fk.Child = p.t
		} else if rt := partOf[child]; rt != nil {
			// A foreign key declared on one partition only: capture what
			// Postgres cascades into that partition (not its siblings)
			// into the root's shadow.
			part := *rt
			part.Schema, part.Name, part.OID, part.Referencing, part.Partition = fk.ChildSchema, fk.ChildName, child, nil, true
			fk.Child = &part
			parts = append(parts, partChild{&part, rt})
		}
		pt := byOID[parent]
		if pt == nil {
			pt = through[parent]
		}
		if pt == nil {
			// A foreign key referencing a partition: it goes with the
			// root's, for rows of that partition (and those below it).
			pt = partOf[parent]
			if p, ok := throughParts[parent]; ok {
				pt = through[p.root]
			}
			fk.ParentOID, fk.ParentOIDs = parent, subtree
		}
		if pt == nil {
			continue
		}
		pt.Referencing = append(pt.Referencing, fk)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	// Rows of a partition reference-cascade like rows of its root.
	for _, p := range parts {
		p.part.Referencing = p.root.Referencing
	}
	for _, p := range throughParts {
		p.t.Referencing = through[p.root].Referencing
	}
	return c.loadChildren(ctx, tx, byOID, through)
}

// loadChildren lists the inheritance descendants (of a table, not a
// partitioned one) of each protected table and each table cascades pass
// through that are protected or tables cascades pass through
// (Table.Children).
func (c *Catalog) loadChildren(ctx context.Context, tx pgx.Tx, protected, through map[uint32]*rewrite.Table) error {
	roots := make([]uint32, 0, len(through))
	for oid := range through {
		roots = append(roots, oid)
	}
	rows, err := tx.Query(ctx, `
WITH RECURSIVE r(oid) AS (
    SELECT p.relid FROM tombstone.protected_tables() p
    UNION
    SELECT x FROM unnest($1::oid[]) x
), d(root, oid) AS (
    SELECT r.oid, i.inhrelid FROM r
      JOIN pg_class pc ON pc.oid = r.oid AND pc.relkind = 'r'
      JOIN pg_inherits i ON i.inhparent = r.oid
    UNION
    SELECT d.root, i.inhrelid FROM d JOIN pg_inherits i ON i.inhparent = d.oid
)
SELECT root, oid FROM d ORDER BY root, oid`, roots)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var root, oid uint32
		if err := rows.Scan(&root, &oid); err != nil {
			return err
		}
		child, parent := protected[oid], protected[root]
		if child == nil {
			child = through[oid]
		}
		if parent == nil {
			parent = through[root]
		}
		if parent == nil {
			continue
		}
		parent.Inherited = true
		if child != nil {
			parent.Children = append(parent.Children, child)
		}
	}
	return rows.Err()
}

// throughPart is a partition of a table cascades pass through, and the
// oid of its root.
type throughPart struct {
	t    *rewrite.Table
	root uint32
}

// loadThrough reads the unprotected tables whose ON DELETE CASCADE reaches
// protected tables: those with a CASCADE, SET NULL or SET DEFAULT foreign
// key from a protected table (or partition of one), and those with a
// CASCADE foreign key from such a table or from a partition of one, at
// any depth; and the tables (not partitioned ones) whose inheritance
// children are protected or such tables. Their partitions go into
// c.through under their own names too (rows deleted from a partition
// cascade as the root's do; keys to one partition are the root's, marked
// with it). It returns the tables by oid, and the partitions by oid with
// their roots' oids.
func (c *Catalog) loadThrough(ctx context.Context, tx pgx.Tx) (map[uint32]*rewrite.Table, map[uint32]throughPart, error) {
	rows, err := tx.Query(ctx, `
WITH RECURSIVE prot(oid) AS (
    SELECT p.relid FROM tombstone.protected_tables() p
    UNION
    SELECT t.relid FROM tombstone.protected_tables() p
      JOIN pg_class pc ON pc.oid = p.relid AND pc.relkind = 'p'
      CROSS JOIN LATERAL tombstone._partition_tree(p.relid) t
), up(oid) AS (
    SELECT c.confrelid FROM pg_constraint c
     WHERE c.contype = 'f' AND c.conparentid = 0 AND c.confdeltype IN ('c', 'n', 'd')
       AND c.conrelid IN (SELECT oid FROM prot)
    UNION
    SELECT i.inhparent FROM pg_inherits i
      JOIN pg_class pc ON pc.oid = i.inhparent AND pc.relkind = 'r'
     WHERE i.inhrelid IN (SELECT oid FROM prot)
    UNION
    SELECT nxt.oid FROM up CROSS JOIN LATERAL (
        SELECT c.confrelid FROM pg_constraint c
         WHERE c.contype = 'f' AND c.conparentid = 0 AND c.confdeltype = 'c'
           AND (c.conrelid = up.oid OR c.conrelid IN (SELECT pt.relid FROM tombstone._partition_tree(up.oid) pt))
        UNION ALL
        SELECT i.inhparent FROM pg_inherits i
          JOIN pg_class pc ON pc.oid = i.inhparent AND pc.relkind = 'r'
         WHERE i.inhrelid = up.oid
        UNION ALL
        -- a partition's rows are its root's: what cascades into the root
        SELECT pg_partition_root(up.oid::regclass)::oid
         WHERE pg_partition_root(up.oid::regclass) IS NOT NULL
    ) nxt(oid)
), through(oid, root) AS (
    -- A partition a foreign key references goes with its root.
    SELECT DISTINCT r.oid, r.oid
      FROM up CROSS JOIN LATERAL (SELECT coalesce(pg_partition_root(up.oid::regclass)::oid, up.oid)) r(oid)
     WHERE r.oid NOT IN (SELECT oid FROM prot)
), parts(oid, root) AS (
    SELECT t.relid::oid, th.oid FROM through th
      JOIN pg_class pc ON pc.oid = th.oid AND pc.relkind = 'p'
      CROSS JOIN LATERAL tombstone._partition_tree(th.oid) t
     WHERE t.relid <> th.oid
)
SELECT x.oid, x.root, n.nspname::text, cl.relname::text, cl.relkind = 'p', tombstone.catalog_state(x.oid::regclass, $1),
       ARRAY(SELECT a.attname::text FROM pg_attribute a
              WHERE a.attrelid = x.oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum),
       ARRAY(SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
              WHERE a.attrelid = x.oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum),
       tombstone._delete_runs_code(x.oid)
  FROM (SELECT * FROM through UNION ALL SELECT * FROM parts) x
  JOIN pg_class cl ON cl.oid = x.oid
  JOIN pg_namespace n ON n.oid = cl.relnamespace
 WHERE cl.relkind IN ('r', 'p')`, c.snapshot)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	byOID := map[uint32]*rewrite.Table{}
	parts := map[uint32]throughPart{}
	for rows.Next() {
		var (
			t            = &rewrite.Table{Unprotected: true}
			root         uint32
			names, types []string
		)
		if err := rows.Scan(&t.OID, &root, &t.Schema, &t.Name, &t.Partitioned, &t.Signature, &names, &types, &t.DeleteRunsCode); err != nil {
			return nil, nil, err
		}
		for i := range names {
			t.Columns = append(t.Columns, rewrite.Column{Name: names[i], Type: types[i]})
		}
		if root == t.OID {
			byOID[t.OID] = t
		} else {
			parts[t.OID] = throughPart{t, root}
			t.Partition = true
		}
		c.through[[2]string{t.Schema, t.Name}] = t
	}
	return byOID, parts, rows.Err()
}

func fkAction(confdeltype string) rewrite.FKAction {
	switch confdeltype {
	case "r":
		return rewrite.Restrict
	case "c":
		return rewrite.Cascade
	case "n":
		return rewrite.SetNull
	case "d":
		return rewrite.SetDefault
	}
	return rewrite.NoAction
}
