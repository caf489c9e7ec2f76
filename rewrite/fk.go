package rewrite

import (
	"fmt"
	"slices"
	"strconv"

	"github.com/jackc/pgerrcode"
	pg "github.com/pganalyze/pg_query_go/v6"
	"github.com/tombstone-proxy/tombstone/pgerr"
)

// cascade adds capture CTEs for the rows Postgres's referential actions
// will touch when the rows of parentCTE leave parent:
//
//   - ON DELETE CASCADE: the children are deleted by a DELETE CTE first
//     (so the RI trigger finds nothing left to do) and captured with cause
//     'cascade', recursively.
//   - ON DELETE SET NULL / SET DEFAULT: the children are read by a SELECT
//     CTE (the statement snapshot still shows their old values) and
//     captured with cause 'set_null'; Postgres then updates them.
//   - Self-referencing CASCADE: the whole subtree is found with a
//     recursive query over the key values and deleted by one DELETE CTE.
//
// Children that are not protected are left to Postgres, uncaptured, but
// for Unprotected ones on a cascade path to protected tables: they are
// deleted by a DELETE CTE too, not captured, so that their own cascades
// are. RESTRICT and NO ACTION need nothing: Postgres raises as usual.
func (sr *stmtRewriter) cascade(parent *Table, parentCTE string, path []*Table, skipSelf bool, loc int32) error {
	var self []ForeignKey
	for _, fk := range parent.Referencing {
		child := fk.Child
		if child == nil || !coversRows(fk, parent) {
			continue
		}
		if len(fk.ChildColumns) == 0 || len(fk.ChildColumns) != len(fk.ParentColumns) {
			if fk.OnDelete == Cascade || fk.OnDelete == SetNull || fk.OnDelete == SetDefault {
				return internalErr("invalid foreign key %q on %s (column lists)", fk.Name, parent.QualifiedName())
			}
			continue
		}
		if err := validTable(child); err != nil {
			return err
		}
		acts := fk.OnDelete == Cascade || !child.Unprotected && (fk.OnDelete == SetNull || fk.OnDelete == SetDefault)
		if fk.Uncastable && acts {
			return sr.errorAt(refuse("tombstone: cannot capture what foreign key "+fk.Name+" of "+fk.ChildSchema+"."+fk.ChildName+
				" does on DELETE: its columns compare as char(n) with columns of another type",
				"Give the referencing and referenced columns the same type (both char(n), or both text)."), loc)
		}
		if child.DeleteRunsCode && fk.OnDelete == Cascade {
			return sr.errorAt(&pgerr.Error{Code: pgerrcode.InsufficientPrivilege,
				Message: "tombstone: cannot capture the cascade of foreign key " + fk.Name + " into " + child.QualifiedName() +
					": a DELETE trigger there runs code no superuser owns, which would run as you",
				Hint: "Postgres runs it as the table's owner: let the owner of " + child.QualifiedName() +
					" delete the dependent rows first, or make the trigger function SECURITY DEFINER."}, loc)
		}
		if fk.RunsCode && acts {
			return sr.errorAt(&pgerr.Error{Code: pgerrcode.InsufficientPrivilege,
				Message: "tombstone: cannot capture what foreign key " + fk.Name + " of " + fk.ChildSchema + "." + fk.ChildName +
					" does on DELETE: comparing its columns calls a function no superuser owns (an operator or a cast), which would run as you",
				Hint: "Postgres runs it as the table's owner: let the owner of " + fk.ChildSchema + "." + fk.ChildName +
					" delete the dependent rows first, or a superuser replace the foreign key."}, loc)
		}
		switch fk.OnDelete {
		case Cascade:
			if sameTable(child, parent) {
				if !skipSelf {
					self = append(self, fk)
				}
				continue
			}
			for _, p := range path {
				if sameTable(p, child) {
					return sr.errorAt(refuse(
						"tombstone: cannot capture the ON DELETE CASCADE cycle through "+child.QualifiedName()+" (foreign key "+fk.Name+")",
						"Delete from the tables of the cycle one statement at a time, children first."), loc)
				}
			}
			if err := sr.bumpCascade(loc); err != nil {
				return err
			}
			k := sr.next()
			name, alias := sprintName("_ts_d", k), sprintName("_ts_c", k)
			d := &pg.DeleteStmt{
				Relation:      fkRangeVar(child, alias),
				WhereClause:   inSelect(fk.childCols(alias), fk.operator(), whenFires(fk, parentKeys(parent, parentCTE, fk))),
				ReturningList: cascadeReturning(child, alias),
			}
			sr.gen = append(sr.gen, cte(name, deleteNode(d)))
			if !child.Unprotected {
				sr.captures = append(sr.captures, capture{child, name, "cascade"})
			}
			// No guard of its own: the target's signature covers every
			// table its cascades reach (tombstone.catalog_signature).
			next := append(append([]*Table(nil), path...), child)
			if err := sr.cascade(child, name, next, false, loc); err != nil {
				return err
			}
		case SetNull, SetDefault:
			if child.Unprotected {
				continue // its values, not its rows, change: left to Postgres
			}
			if err := sr.bumpCascade(loc); err != nil {
				return err
			}
			k := sr.next()
			name, alias := sprintName("_ts_s", k), sprintName("_ts_c", k)
			// Only counted (the trigger captures the rows): no columns.
			s := selectStmt([]*pg.Node{resTarget(rowCol, marker())},
				[]*pg.Node{{Node: &pg.Node_RangeVar{RangeVar: fkRangeVar(child, alias)}}},
				inSelect(fk.childCols(alias), fk.operator(), whenFires(fk, parentKeys(parent, parentCTE, fk))))
			sr.gen = append(sr.gen, cte(name, selectNode(s)))
			sr.captures = append(sr.captures, capture{child, name, "set_null"})
			sr.setNulls = append(sr.setNulls, setNull{child, alias, name, s})
		}
	}
	if len(self) == 0 {
		return nil
	}
	if len(self) > 1 {
		return sr.errorAt(refuse(
			"tombstone: cannot capture a table with several self-referencing ON DELETE CASCADE foreign keys ("+parent.QualifiedName()+")",
			"Delete the dependent rows first."), loc)
	}
	if err := sr.bumpCascade(loc); err != nil {
		return err
	}
	fk := self[0]
	k := sr.next()
	name, alias, rec := sprintName("_ts_d", k), sprintName("_ts_c", k), sprintName("_ts_r", k)
	inner := sprintName("_ts_t", k)
	// WITH RECURSIVE r(keys) AS (
	//     SELECT (_ts_row).keys FROM parentCTE
	//   UNION
	//     SELECT c.keys FROM parent c, r WHERE c.fk = r.key …)
	// SELECT keys FROM r
	// UNION (not ALL) over the referenced key — which is unique and so
	// has equality — ends the recursion on cycles such as a row that
	// references itself.
	var join []*pg.Node
	for i := range fk.ChildColumns {
		join = append(join, opExpr2(fk.operator(), fk.childSide(i, colRef(inner, fk.ChildColumns[i])), fk.parentSide(i, colRef(rec, fk.ParentColumns[i]))))
	}
	var recTargets, outTargets []*pg.Node
	for i, c := range fk.ParentColumns {
		recTargets = append(recTargets, resTarget("", fk.parentSide(i, colRef(inner, c))))
		outTargets = append(outTargets, resTarget("", colRef(c)))
	}
	step := selectStmt(recTargets,
		[]*pg.Node{{Node: &pg.Node_RangeVar{RangeVar: fkRangeVar(parent, inner)}}, rangeVarNode("", rec, "")},
		boolExpr(pg.BoolExprType_AND_EXPR, join...))
	union := &pg.SelectStmt{
		Op:          pg.SetOperation_SETOP_UNION,
		Larg:        parentKeys(parent, parentCTE, fk),
		Rarg:        step,
		LimitOption: pg.LimitOption_LIMIT_OPTION_DEFAULT,
	}
	closure := selectStmt(outTargets, []*pg.Node{rangeVarNode("", rec, "")}, nil)
	closure.WithClause = &pg.WithClause{
		Ctes:      []*pg.Node{cte(rec, selectNode(union), fk.ParentColumns...)},
		Recursive: true,
		Location:  -1,
	}
	d := &pg.DeleteStmt{
		Relation:      fkRangeVar(parent, alias),
		WhereClause:   inSelect(fk.childCols(alias), fk.operator(), whenFires(fk, closure)),
		ReturningList: cascadeReturning(parent, alias),
	}
	sr.gen = append(sr.gen, cte(name, deleteNode(d)))
	if !parent.Unprotected {
		sr.captures = append(sr.captures, capture{parent, name, "cascade"})
	}
	// The subtree's rows have their own non-self children.
	return sr.cascade(parent, name, path, true, loc)
}

// whenFires joins to sel, which lists the keys an action of fk applies
// to, "(SELECT WHERE tombstone.fk_fires(child, fk)) _ts_f": a row of no
// column, or none, so that the keys are the same — or none when
// Postgres's own action of fk does not run in this session (its trigger
// on the referenced table disabled, or session_replication_role =
// replica): then neither does the rewrite's. Evaluated once per
// statement.
func whenFires(fk ForeignKey, sel *pg.SelectStmt) *pg.SelectStmt {
	fires := funcCall([]string{tsSchema, "fk_fires"},
		typeCast(constStr(quoteIdent(fk.ChildSchema)+"."+quoteIdent(fk.ChildName)), "pg_catalog", "regclass"),
		constStr(fk.Name))
	sel.FromClause = append(sel.FromClause, &pg.Node{Node: &pg.Node_RangeSubselect{RangeSubselect: &pg.RangeSubselect{
		Subquery: selectNode(selectStmt(nil, nil, fires)),
		Alias:    &pg.Alias{Aliasname: genPrefix + "f"},
	}}})
	return sel
}

// capturesCascade reports whether a DELETE on t has protected rows to
// capture through its foreign keys or inheritance children: a protected
// child reached by CASCADE, SET NULL or SET DEFAULT, or a protected
// inheritance child, through Unprotected tables by CASCADE or
// inheritance only.
func capturesCascade(t *Table, seen map[*Table]bool) bool {
	if seen[t] {
		return false
	}
	seen[t] = true
	for _, c := range t.Children {
		if !c.Unprotected || capturesCascade(c, seen) {
			return true
		}
	}
	for _, fk := range t.Referencing {
		c := fk.Child
		switch {
		case c == nil:
		case !c.Unprotected && (fk.OnDelete == Cascade || fk.OnDelete == SetNull || fk.OnDelete == SetDefault):
			return true
		case c.Unprotected && fk.OnDelete == Cascade && capturesCascade(c, seen):
			return true
		}
	}
	return false
}

// fkRangeVar names a referencing table as Postgres's referential actions
// do: ONLY, for a foreign key covers the table's own rows, not its
// inheritance children's (unless it is partitioned: its rows are in its
// partitions).
func fkRangeVar(t *Table, alias string) *pg.RangeVar {
	rv := rangeVar(t.Schema, t.Name, alias)
	rv.Inh = t.Partitioned
	return rv
}

func (sr *stmtRewriter) bumpCascade(loc int32) error {
	sr.cascades++
	if sr.cascades > sr.opt.maxCascade() {
		return sr.errorAt(refuse(
			fmt.Sprintf("tombstone: the foreign-key cascade of this DELETE needs more than %d capture steps", sr.opt.maxCascade()),
			"Delete the dependent rows in separate statements first, deepest tables first."), loc)
	}
	return nil
}

func sameTable(a, b *Table) bool {
	if a == b {
		return true
	}
	if a.OID != 0 && a.OID == b.OID {
		return true
	}
	return a.OID == 0 && b.OID == 0 && a.Schema == b.Schema && a.Name == b.Name
}

// childCols is "alias.c1::t1, …": the child's key columns, each cast to
// the operator's input type.
func (fk ForeignKey) childCols(alias string) []*pg.Node {
	out := make([]*pg.Node, len(fk.ChildColumns))
	for i, c := range fk.ChildColumns {
		out[i] = fk.childSide(i, colRef(alias, c))
	}
	return out
}

// keysOf is "SELECT _ts_kI::t1, … FROM cte", the parent's key columns
// of fk (as keyTargets returned them), each cast to the operator's input
// type.
func keysOf(parent *Table, cteName string, fk ForeignKey) *pg.SelectStmt {
	t := make([]*pg.Node, len(fk.ParentColumns))
	for i, c := range fk.ParentColumns {
		t[i] = resTarget("", fk.parentSide(i, colRef(keyCol(parent, c))))
	}
	return selectStmt(t, []*pg.Node{rangeVarNode("", cteName, "")}, nil)
}

// parentKeys is keysOf the rows of cte the foreign key covers: all, or
// for a key that references a partition those rows whose _ts_toid is in
// its partition tree as it is when the statement runs:
// "_ts_toid IN (SELECT relid FROM pg_partition_tree('oid'))".
func parentKeys(parent *Table, cteName string, fk ForeignKey) *pg.SelectStmt {
	s := keysOf(parent, cteName, fk)
	if fk.ParentOID != 0 {
		tree := &pg.Node{Node: &pg.Node_RangeFunction{RangeFunction: &pg.RangeFunction{
			Functions: []*pg.Node{{Node: &pg.Node_List{List: &pg.List{Items: []*pg.Node{
				funcCall([]string{"pg_catalog", "pg_partition_tree"},
					typeCast(constStr(strconv.FormatUint(uint64(fk.ParentOID), 10)), "pg_catalog", "regclass")),
				nil}}}}},
			Alias: &pg.Alias{Aliasname: "_ts_pt"},
		}}}
		s.WhereClause = inSelect([]*pg.Node{colRef(toidCol)}, catalogEq, selectStmt(
			[]*pg.Node{resTarget("", typeCast(colRef("_ts_pt", "relid"), "pg_catalog", "oid"))},
			[]*pg.Node{tree}, nil))
	}
	return s
}

// coversRows reports whether fk can cascade rows of parent: not when
// parent is a partition outside the partition tree fk references.
func coversRows(fk ForeignKey, parent *Table) bool {
	if fk.ParentOID == 0 || !parent.Partition {
		return true
	}
	return slices.Contains(fk.ParentOIDs, parent.OID)
}

// Cascade DELETE CTEs also return the row's physical identity so that a
// SET NULL capture of the same row (reached through another foreign key)
// can leave it out: the row is deleted, and Postgres's SET NULL then finds
// nothing to update.
const (
	toidCol = "_ts_toid"
	tidCol  = "_ts_tid"
	tidsCol = "_ts_tids"
)

func cascadeReturning(t *Table, alias string) []*pg.Node {
	return append(keyTargets(t, alias),
		resTarget(toidCol, colRef(alias, "tableoid")),
		resTarget(tidCol, colRef(alias, "ctid")))
}

// The rows a rewritten DELETE removes are copied by the tables' capture
// triggers; the statement itself keeps of each row only what its
// cascades need: the columns foreign keys reference (keyTargets), so
// that, as for the plain DELETE, only the columns its WHERE reads need
// SELECT privilege, and a bulk delete does not hold whole rows. Each CTE
// of removed rows of table t returns _ts_row (a constant: the mark
// verifyCaptured looks for) and _ts_kI for the I-th of t's columns that
// a foreign key references.

// marker is the constant _ts_row holds.
func marker() *pg.Node { return pg.MakeAConstIntNode(1, -1) }

// keyColumns are the indexes in t.Columns of the columns that foreign
// keys referencing t reference, in column order.
func keyColumns(t *Table) []int {
	var out []int
	for _, fk := range t.Referencing {
		if fk.Child == nil {
			continue
		}
		for _, c := range fk.ParentColumns {
			if i := columnIndex(t, c); i >= 0 && !slices.Contains(out, i) {
				out = append(out, i)
			}
		}
	}
	slices.Sort(out)
	return out
}

func columnIndex(t *Table, name string) int {
	return slices.IndexFunc(t.Columns, func(c Column) bool { return c.Name == name })
}

// keyCol is the output name of t's key column name in a CTE of removed
// rows. (A column the catalog does not list gets a name no CTE returns:
// the statement then fails rather than cascade on the wrong column.)
func keyCol(t *Table, name string) string {
	if i := columnIndex(t, name); i >= 0 {
		return "_ts_k" + strconv.Itoa(i)
	}
	return "_ts_k_" + name
}

// keyTargets is "1 AS _ts_row, alias.col AS _ts_kI, …" for t's key
// columns.
func keyTargets(t *Table, alias string) []*pg.Node {
	out := []*pg.Node{resTarget(rowCol, marker())}
	for _, i := range keyColumns(t) {
		out = append(out, resTarget("_ts_k"+strconv.Itoa(i), colRef(alias, t.Columns[i].Name)))
	}
	return out
}

// keyRefs selects keyTargets' columns again from a CTE.
func keyRefs(t *Table) []*pg.Node {
	out := []*pg.Node{resTarget(rowCol, colRef(rowCol))}
	for _, i := range keyColumns(t) {
		n := "_ts_k" + strconv.Itoa(i)
		out = append(out, resTarget(n, colRef(n)))
	}
	return out
}

// setNull is a SET NULL capture whose WHERE clause may still need to
// exclude rows that a cascade DELETE of this statement removes.
type setNull struct {
	t     *Table
	alias string
	cte   string
	sel   *pg.SelectStmt
}

// excludeCascaded adds "AND (tableoid, ctid) NOT IN (SELECT … FROM dK)"
// to every SET NULL capture, for each cascade DELETE of the same table.
// A WITH list sees only the entries before each one, and a cascade DELETE
// of the table may come after the SET NULL capture (a later foreign key
// of another parent cascades into it): the capture then moves after the
// last DELETE it names.
func (sr *stmtRewriter) excludeCascaded() {
	for _, sn := range sr.setNulls {
		conds := []*pg.Node{sn.sel.WhereClause}
		last := -1 // position of the last cascade DELETE named
		for _, c := range sr.captures {
			if c.cause != "cascade" || !sameTable(c.t, sn.t) {
				continue
			}
			sub := selectStmt([]*pg.Node{resTarget("", colRef(toidCol)), resTarget("", colRef(tidCol))},
				[]*pg.Node{rangeVarNode("", c.cte, "")}, nil)
			in := inSelect([]*pg.Node{colRef(sn.alias, "tableoid"), colRef(sn.alias, "ctid")}, catalogEq, sub)
			conds = append(conds, &pg.Node{Node: &pg.Node_BoolExpr{BoolExpr: &pg.BoolExpr{
				Boolop: pg.BoolExprType_NOT_EXPR, Args: []*pg.Node{in}, Location: -1}}})
			last = max(last, cteIndex(sr.gen, c.cte))
		}
		sn.sel.WhereClause = boolExpr(pg.BoolExprType_AND_EXPR, conds...)
		if i, j := cteIndex(sr.gen, sn.cte), last; i >= 0 && j > i {
			node := sr.gen[i]
			sr.gen = append(sr.gen[:i], sr.gen[i+1:]...)
			sr.gen = slices.Insert(sr.gen, j, node) // j-1 after the removal: insert after it
		}
	}
}

// cteIndex is the position of the CTE called name in ctes (-1: none).
func cteIndex(ctes []*pg.Node, name string) int {
	for i, n := range ctes {
		if c := n.GetCommonTableExpr(); c != nil && c.Ctename == name {
			return i
		}
	}
	return -1
}
