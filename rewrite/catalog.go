package rewrite

import (
	"time"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// Catalog is what rewrite knows about protected tables. The tombstone
// package loads it from the database; rewrite only reads it.
type Catalog interface {
	// Lookup resolves a table as written in SQL. schema == "" means the
	// name was unqualified and is resolved through the protected schemas
	// in search order. ok is false when the table is not protected.
	Lookup(schema, name string) (t *Table, ok bool)
}

// SchemaCatalog is a Catalog that can tell whether a schema holds protected
// tables (for DROP SCHEMA). Catalogs without it are asked table by table
// only, so DROP SCHEMA passes them.
type SchemaCatalog interface {
	Catalog
	// HoldsProtected reports whether schema contains a protected table.
	HoldsProtected(schema string) bool
}

// CascadeCatalog is a Catalog that also knows the unprotected tables
// whose ON DELETE CASCADE foreign keys reach protected tables (directly,
// or through other such tables). A DELETE on one, and a cascade passing
// through one, is rewritten to delete its rows explicitly, uncaptured,
// so that the protected rows its cascades remove are known and captured.
type CascadeCatalog interface {
	Catalog
	// Cascading resolves a table as Lookup does, among those tables.
	Cascading(schema, name string) (t *Table, ok bool)
}

// GenerationalCatalog is a Catalog that can say when it changed. Cache
// keys its entries on the generation, so a catalog reload invalidates
// every cached rewrite at once.
type GenerationalCatalog interface {
	Catalog
	// Generation returns a number that changes whenever the catalog's
	// contents change.
	Generation() uint64
}

// Table describes one protected table, or one an ON DELETE CASCADE
// passes through on its way to protected tables (Unprotected).
type Table struct {
	OID    uint32
	Schema string
	Name   string
	// Partitioned: a partitioned table (its rows are in its partitions).
	Partitioned bool
	// Partition: a partition, known by its own name (a foreign key is
	// declared on it, or a DELETE names it); its rows are its root's.
	Partition bool
	// Unprotected: the table has no shadow table and its own rows are not
	// captured; it is known only for where its cascades lead
	// (CascadeCatalog).
	Unprotected bool
	// Shadow is the shadow table's name inside schema "tombstone" (empty
	// when Unprotected).
	Shadow string
	// Columns are the live columns in attnum order.
	Columns []Column
	// Retention is how long tombstones of this table are kept.
	Retention time.Duration
	// Signature is opaque to rewrite; it is passed to
	// tombstone.check_catalog so that a stale catalog raises an error
	// instead of losing rows.
	Signature string
	// Referencing lists the foreign keys of other tables (or of this
	// table itself) that reference this table.
	Referencing []ForeignKey
	// Children are the table's inheritance descendants, at any depth (not
	// partitions), whose rows a DELETE on it without ONLY removes and
	// that matter here: protected ones, whose rows are captured into
	// their own shadow tables, with all their columns, and Unprotected
	// ones, whose cascades are.
	Children []*Table
	// DeleteRunsCode: a DELETE from the table fires a trigger whose
	// function runs as the deleting role and no superuser owns
	// (tombstone._delete_runs_code). Postgres's cascade runs it as the
	// table's owner; a rewritten cascade would run it as whoever deletes,
	// so a cascade into the table is refused.
	DeleteRunsCode bool
	// Inherited: the table has inheritance children, listed in Children
	// or not; a DELETE without ONLY returns their rows typed as its own.
	Inherited bool
}

// QualifiedName returns "schema.name" as used in batch records.
func (t *Table) QualifiedName() string { return t.Schema + "." + t.Name }

// described names the table in a refusal: "protected table s.t", or for
// an Unprotected one why it matters.
func (t *Table) described() string {
	if t.Unprotected {
		return "table " + t.QualifiedName() + " (its ON DELETE CASCADE reaches protected tables)"
	}
	return "protected table " + t.QualifiedName()
}

// Column is one live column of a protected table.
type Column struct {
	Name string
	Type string
	// ShadowName is the column's name in the shadow table when it is not
	// Name: a user column named like the store's own (_ts_batch, …) is
	// kept under another name there (tombstone._shadow_column_name).
	ShadowName string
}

// Shadow returns the column's name in the shadow table.
func (c Column) Shadow() string {
	if c.ShadowName != "" {
		return c.ShadowName
	}
	return c.Name
}

// ForeignKey is a foreign key that references a protected table.
type ForeignKey struct {
	Name string
	// Child is the referencing table, or nil when it is neither
	// protected nor on a cascade path to protected tables.
	Child         *Table
	ChildSchema   string
	ChildName     string
	ChildColumns  []string
	ParentColumns []string
	OnDelete      FKAction
	// ParentOID: the key references one partition of the table (whose
	// Referencing lists it), not the table: it covers the rows of that
	// partition and those below it — as the server finds them when the
	// statement runs (partitions attach), and ParentOIDs as the catalog
	// found them, for planning.
	ParentOID  uint32
	ParentOIDs []uint32
	// Operator is the schema-qualified name of the equality operator that
	// compares the child's columns with the parent's, as the key's own
	// (the commutator of pg_constraint.conpfeqop, the same name for every
	// column); the rewrite names it in full, so no operator a session's
	// search_path finds first stands in. Nil: pg_catalog's "=".
	Operator []string
	// ChildTypes and ParentTypes are, per column, the schema and name of
	// the operator's input types on each side, which the rewrite casts
	// the columns to, as Postgres's cascade does (ri_GenerateQual): a text
	// child of a char(n) key compares as bpchar. Nil: no casts.
	ChildTypes, ParentTypes [][2]string
	// Uncastable: a column must be cast to char(n)'s type bpchar, which
	// the SQL generator cannot spell; the cascade is refused.
	Uncastable bool
	// RunsCode: comparing the columns calls a function no superuser owns
	// (the operator's, or a cast's), or the columns have no common
	// operator name. Postgres's own cascade runs such code as the
	// table's owner; a rewrite would run it as whoever deletes, so the
	// cascade is refused instead.
	RunsCode bool
}

// childSide is column i of the child, cast to the operator's input type.
func (fk ForeignKey) childSide(i int, n *pg.Node) *pg.Node {
	if i < len(fk.ChildTypes) && fk.ChildTypes[i][1] != "" {
		return typeCast(n, fk.ChildTypes[i][0], fk.ChildTypes[i][1])
	}
	return n
}

// parentSide is column i of the parent key, cast to the operator's input
// type.
func (fk ForeignKey) parentSide(i int, n *pg.Node) *pg.Node {
	if i < len(fk.ParentTypes) && fk.ParentTypes[i][1] != "" {
		return typeCast(n, fk.ParentTypes[i][0], fk.ParentTypes[i][1])
	}
	return n
}

// operator returns fk.Operator, or pg_catalog's "=".
func (fk ForeignKey) operator() []string {
	if len(fk.Operator) == 0 {
		return []string{"pg_catalog", "="}
	}
	return fk.Operator
}

// FKAction is a foreign key's ON DELETE action.
type FKAction int

// The ON DELETE actions of a foreign key, as in pg_constraint.confdeltype.
const (
	NoAction FKAction = iota
	Restrict
	Cascade
	SetNull
	SetDefault
)

// String returns the SQL spelling of the action.
func (a FKAction) String() string {
	switch a {
	case NoAction:
		return "NO ACTION"
	case Restrict:
		return "RESTRICT"
	case Cascade:
		return "CASCADE"
	case SetNull:
		return "SET NULL"
	case SetDefault:
		return "SET DEFAULT"
	}
	return "FKAction(?)"
}

// Options are the per-session inputs of a rewrite.
type Options struct {
	// ClientAddr is the real client's address as the proxy saw it; it is
	// recorded in the batch row.
	ClientAddr string
	// MaxCascadeCTEs bounds the number of capture CTEs a single statement
	// may need for foreign-key cascades. Zero means 64.
	MaxCascadeCTEs int
	// Truncate is the TRUNCATE policy: PolicyCapture (default),
	// PolicyReject or PolicyAllow.
	Truncate string
	// Drop is the DROP TABLE policy: PolicyTrash (default), PolicyReject
	// or PolicyAllow.
	Drop string
	// RequireWhere refuses a DELETE without WHERE on a protected table
	// unless confirmed (guards.require_where).
	RequireWhere bool
	// MaxRows aborts a DELETE removing more rows than this unless
	// confirmed; 0 means no limit (guards.max_rows).
	MaxRows int64
	// Trial, when set, trial-parses long statements (CheckNesting).
	Trial *Trial

	// recordAs replaces the statement text the batch row records (a
	// shape template's slot, shape.go).
	recordAs string
}

func (o Options) maxCascade() int {
	if o.MaxCascadeCTEs <= 0 {
		return 64
	}
	return o.MaxCascadeCTEs
}
