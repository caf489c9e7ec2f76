package rewrite

import (
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// Kind classifies a top-level statement by what it can do to table rows.
// The classification is syntactic; whether a protected table is involved
// is decided afterwards with the catalog.
type Kind int

// The statement kinds.
const (
	// KindOther cannot remove rows (SELECT, INSERT, UPDATE without a
	// deleting WITH, DDL other than DROP TABLE, utility statements).
	KindOther Kind = iota
	// KindDelete is a DELETE, possibly with a WITH clause.
	KindDelete
	// KindWithDelete is a SELECT, INSERT, UPDATE or MERGE whose top-level
	// WITH clause contains a DELETE.
	KindWithDelete
	// KindMerge is a MERGE with a WHEN … THEN DELETE action.
	KindMerge
	// KindTruncate is a TRUNCATE.
	KindTruncate
	// KindDropTable is a DROP TABLE.
	KindDropTable
	// KindPrepare is a PREPARE whose body is one of the deleting kinds.
	KindPrepare
	// KindExplainAnalyze is an EXPLAIN ANALYZE of a deleting kind (it
	// executes the statement).
	KindExplainAnalyze
	// KindExecute is an EXECUTE of a prepared statement; the proxy knows
	// what the prepared statement was.
	KindExecute
	// KindDropSchema is a DROP SCHEMA, which takes its tables with it.
	KindDropSchema
	// KindEmbedded is a COPY (query) TO, CREATE TABLE AS or DECLARE
	// CURSOR whose query deletes rows; such deletes cannot be captured.
	KindEmbedded
	// KindRule is a CREATE RULE whose actions delete: they would run
	// whenever the rule fires, inside statements that delete nothing.
	KindRule
	// KindDetach is an ALTER TABLE … DETACH PARTITION, which takes the
	// partition's rows out of its table.
	KindDetach
	// KindGuarded is DDL that can take a protected table out of
	// protection or drop it by the way: ALTER TABLE … SET SCHEMA,
	// ATTACH PARTITION, [NO] INHERIT, ALTER SCHEMA … RENAME, DROP OWNED,
	// DROP TYPE/DOMAIN … CASCADE.
	KindGuarded
)

var kindNames = [...]string{"other", "delete", "with-delete", "merge", "truncate", "drop-table", "prepare", "explain-analyze", "execute", "drop-schema", "embedded", "rule", "detach", "guarded"}

// String returns a short lower-case name of the kind.
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "kind(?)"
}

// Classify returns the Kind of one parsed top-level statement.
func Classify(stmt *pg.Node) Kind {
	switch n := stmt.GetNode().(type) {
	case *pg.Node_DeleteStmt:
		return KindDelete
	case *pg.Node_SelectStmt:
		if withDeletes(n.SelectStmt.GetWithClause()) {
			return KindWithDelete
		}
	case *pg.Node_InsertStmt:
		if withDeletes(n.InsertStmt.GetWithClause()) {
			return KindWithDelete
		}
	case *pg.Node_UpdateStmt:
		if withDeletes(n.UpdateStmt.GetWithClause()) {
			return KindWithDelete
		}
	case *pg.Node_MergeStmt:
		if mergeDeletes(n.MergeStmt) {
			return KindMerge
		}
		if withDeletes(n.MergeStmt.GetWithClause()) {
			return KindWithDelete
		}
	case *pg.Node_TruncateStmt:
		return KindTruncate
	case *pg.Node_DropStmt:
		switch n.DropStmt.GetRemoveType() {
		case pg.ObjectType_OBJECT_TABLE:
			return KindDropTable
		case pg.ObjectType_OBJECT_SCHEMA:
			return KindDropSchema
		case pg.ObjectType_OBJECT_TYPE, pg.ObjectType_OBJECT_DOMAIN:
			// With CASCADE it may drop a protected table's column; either
			// way a table in the trash that still uses the type gives it
			// up first (tombstone.drop_types).
			return KindGuarded
		}
	case *pg.Node_PrepareStmt:
		if k := Classify(n.PrepareStmt.GetQuery()); k != KindOther {
			return KindPrepare
		}
	case *pg.Node_ExplainStmt:
		if explainAnalyze(n.ExplainStmt) && Classify(n.ExplainStmt.GetQuery()) != KindOther {
			return KindExplainAnalyze
		}
	case *pg.Node_ExecuteStmt:
		return KindExecute
	case *pg.Node_CopyStmt:
		if q := n.CopyStmt.GetQuery(); q != nil && Classify(q) != KindOther {
			return KindEmbedded
		}
	case *pg.Node_CreateTableAsStmt:
		if q := n.CreateTableAsStmt.GetQuery(); q != nil && Classify(q) != KindOther {
			return KindEmbedded
		}
	case *pg.Node_DeclareCursorStmt:
		if q := n.DeclareCursorStmt.GetQuery(); q != nil && Classify(q) != KindOther {
			return KindEmbedded
		}
	case *pg.Node_RuleStmt:
		for _, a := range n.RuleStmt.GetActions() {
			if k := Classify(a); k == KindDelete || k == KindWithDelete || k == KindMerge {
				return KindRule
			}
		}
	case *pg.Node_AlterTableStmt:
		for _, c := range n.AlterTableStmt.GetCmds() {
			switch c.GetAlterTableCmd().GetSubtype() {
			case pg.AlterTableType_AT_DetachPartition:
				return KindDetach
			case pg.AlterTableType_AT_AttachPartition, pg.AlterTableType_AT_AddInherit, pg.AlterTableType_AT_DropInherit:
				return KindGuarded
			}
		}
	case *pg.Node_AlterObjectSchemaStmt:
		switch n.AlterObjectSchemaStmt.GetObjectType() {
		case pg.ObjectType_OBJECT_TABLE, pg.ObjectType_OBJECT_FOREIGN_TABLE:
			return KindGuarded
		}
	case *pg.Node_RenameStmt:
		if n.RenameStmt.GetRenameType() == pg.ObjectType_OBJECT_SCHEMA {
			return KindGuarded
		}
	case *pg.Node_DropOwnedStmt:
		return KindGuarded
	}
	return KindOther
}

// withDeletes reports whether a WITH clause has a DELETE or a deleting
// MERGE among its CTEs. Postgres allows data-modifying statements only in
// the top-level WITH, so nested WITHs need not be searched.
func withDeletes(w *pg.WithClause) bool {
	for _, c := range w.GetCtes() {
		q := c.GetCommonTableExpr().GetCtequery()
		if q.GetDeleteStmt() != nil {
			return true
		}
		if m := q.GetMergeStmt(); m != nil && mergeDeletes(m) {
			return true
		}
	}
	return false
}

func mergeDeletes(m *pg.MergeStmt) bool {
	for _, w := range m.GetMergeWhenClauses() {
		if w.GetMergeWhenClause().GetCommandType() == pg.CmdType_CMD_DELETE {
			return true
		}
	}
	return false
}

// explainAnalyze mirrors defGetBoolean for the ANALYZE option.
func explainAnalyze(e *pg.ExplainStmt) bool {
	on := false
	for _, o := range e.GetOptions() {
		d := o.GetDefElem()
		if d == nil || d.GetDefname() != "analyze" {
			continue
		}
		on = defBool(d.GetArg())
	}
	return on
}

func defBool(arg *pg.Node) bool {
	if arg == nil {
		return true
	}
	switch v := arg.GetNode().(type) {
	case *pg.Node_Integer:
		return v.Integer.GetIval() != 0
	case *pg.Node_Boolean:
		return v.Boolean.GetBoolval()
	case *pg.Node_String_:
		switch strings.ToLower(v.String_.GetSval()) {
		case "false", "off", "0", "f", "n", "no":
			return false
		}
		return true
	}
	// Anything else is an error in Postgres; assume the worst.
	return true
}
