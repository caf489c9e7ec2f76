package rewrite

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgerrcode"
	pg "github.com/pganalyze/pg_query_go/v6"
	"github.com/tombstone-proxy/tombstone/pgerr"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Names of generated objects. User CTEs starting with the prefix are
// refused so that they can never collide.
const (
	genPrefix = "_ts_"
	rowCol    = "_ts_row"
	batchCTE  = "_ts_b"
	tsSchema  = "tombstone"
)

// stmtRewriter rewrites one top-level statement.
type stmtRewriter struct {
	cat  Catalog
	opt  Options
	full string // the whole original text (locations are relative to it)
	span Span   // this statement's range in full
	text string // this statement's text, recorded in the batch row
	// (record, when set, is recorded instead: a shape template's slot)
	record string

	version int32 // pg_query parse tree version, needed by Deparse

	n        int        // counter for generated names
	gen      []*pg.Node // generated CTEs that follow the user's CTEs
	captures []capture  // what goes into which shadow table
	roots    []capture  // the statement's own DELETEs on protected tables
	guards   []guard
	// unbounded lists tables deleted from without WHERE (guard
	// require_where), checked at run time so a session can confirm.
	unbounded []string
	cascades  int
	setNulls  []setNull
	subtrees  []subtree // for the position map
}

// recorded is the statement text the batch row records.
func (sr *stmtRewriter) recorded() string {
	if sr.record != "" {
		return sr.record
	}
	return sr.text
}

type capture struct {
	t     *Table
	cte   string
	cause string
}

type guard struct {
	regclass  string
	signature string
}

// statement rewrites one classified top-level statement. It returns nil
// when nothing needs to change.
func (sr *stmtRewriter) statement(n *pg.Node, kind Kind, st *Statement) (*pg.Node, error) {
	switch kind {
	case KindDelete:
		return sr.deleteStmt(n.GetDeleteStmt(), st)
	case KindWithDelete, KindMerge:
		return sr.withDelete(n, st)
	case KindTruncate:
		return sr.truncateStmt(n.GetTruncateStmt(), st)
	case KindDropTable:
		return sr.dropStmt(n.GetDropStmt(), st)
	case KindDropSchema:
		return sr.dropSchema(n, st)
	case KindPrepare:
		p := n.GetPrepareStmt()
		inner, err := sr.statement(p.GetQuery(), Classify(p.GetQuery()), st)
		if inner == nil || err != nil {
			return nil, err
		}
		np := proto.Clone(p).(*pg.PrepareStmt)
		np.Query = inner
		return &pg.Node{Node: &pg.Node_PrepareStmt{PrepareStmt: np}}, nil
	case KindExplainAnalyze:
		e := n.GetExplainStmt()
		inner, err := sr.statement(e.GetQuery(), Classify(e.GetQuery()), st)
		if inner == nil || err != nil {
			return nil, err
		}
		// EXPLAIN answers with a plan and the tag "EXPLAIN".
		st.Output = Output{}
		ne := proto.Clone(e).(*pg.ExplainStmt)
		ne.Query = inner
		return &pg.Node{Node: &pg.Node_ExplainStmt{ExplainStmt: ne}}, nil
	case KindEmbedded:
		if t, loc := sr.findProtectedDelete(n); t != nil {
			return nil, sr.errorAt(refuse(
				"tombstone: a DELETE from "+t.described()+" inside COPY, CREATE TABLE AS or DECLARE is not supported",
				"Run the DELETE … RETURNING as a statement of its own."), loc)
		}
	case KindRule:
		// Whatever it names: a view or another rule between may lead to
		// a protected table.
		return nil, refuse(
			"tombstone: a rule whose action deletes is refused: the rows it deletes would have no tombstones",
			"Send the DELETE itself through the proxy; deletes a rule, trigger or function runs are out of its reach.")
	case KindDetach:
		return sr.detachStmt(n.GetAlterTableStmt(), st)
	case KindGuarded:
		return sr.guardedStmt(n, st)
	}
	return nil, nil
}

// lookup resolves a RangeVar against the catalog.
func (sr *stmtRewriter) lookup(rv *pg.RangeVar) (*Table, bool) {
	if rv == nil || sr.cat == nil {
		return nil, false
	}
	return sr.cat.Lookup(rv.GetSchemaname(), rv.GetRelname())
}

// lookupDeleted resolves the target of a DELETE: a protected table, or an
// Unprotected one whose cascades reach protected tables.
func (sr *stmtRewriter) lookupDeleted(rv *pg.RangeVar) (*Table, bool) {
	if t, ok := sr.lookup(rv); ok || rv == nil {
		return t, ok
	}
	if cc, ok := sr.cat.(CascadeCatalog); ok {
		if t, ok := cc.Cascading(rv.GetSchemaname(), rv.GetRelname()); ok && t.Unprotected && capturesCascade(t, map[*Table]bool{}) {
			return t, true
		}
	}
	return nil, false
}

// guardUnprotected adds to a DELETE whose target the catalog does not
// protect a check that the table the server resolves is not protected
// after all (renamed or moved in an open transaction, say, which the
// catalog's own connection cannot see yet): one more USING item, a row
// of no columns that tombstone.check_unprotected fails with TS001, so
// RETURNING * and the rows joined are unchanged. WHERE CURRENT OF allows
// no USING; such a DELETE goes unguarded.
func (sr *stmtRewriter) guardUnprotected(d *pg.DeleteStmt) bool {
	rv := d.GetRelation()
	if rv == nil || d.GetWhereClause().GetCurrentOfExpr() != nil {
		return false
	}
	usingGuard(d, funcCall([]string{tsSchema, "check_unprotected"},
		typeCast(constStr(regclassText(rv.GetCatalogname(), rv.GetSchemaname(), rv.GetRelname())), "pg_catalog", "regclass"),
		boolConst(!rv.GetInh())))
	return true
}

// usingGuard adds "(SELECT WHERE check) _ts_g" to d's USING items: a row
// of no columns, or none, so RETURNING * and the rows joined are
// unchanged, and check runs once whenever d runs.
func usingGuard(d *pg.DeleteStmt, check *pg.Node) {
	d.UsingClause = append(d.UsingClause, &pg.Node{Node: &pg.Node_RangeSubselect{RangeSubselect: &pg.RangeSubselect{
		Subquery: selectNode(selectStmt(nil, nil, check)),
		Alias:    &pg.Alias{Aliasname: genPrefix + "g"},
	}}})
}

// deleteStmt rewrites a top-level DELETE (and DELETEs in its WITH).
func (sr *stmtRewriter) deleteStmt(del *pg.DeleteStmt, st *Statement) (*pg.Node, error) {
	t, protected := sr.lookupDeleted(del.GetRelation())
	ctes, changed, err := sr.userCTEs(del.GetWithClause(), deleteNode(del))
	if err != nil {
		return nil, err
	}
	if !protected {
		nd := proto.Clone(del).(*pg.DeleteStmt)
		if !sr.guardUnprotected(nd) && !changed {
			return nil, nil
		}
		sr.subtrees = append(sr.subtrees, subtree{cte: ""})
		return sr.assemble(ctes, deleteNode(nd), nd.GetWithClause())
	}
	d := proto.Clone(del).(*pg.DeleteStmt)
	d.WithClause = nil
	name, hidden, err := sr.captureDelete(d, t, del.GetReturningList())
	if err != nil {
		return nil, err
	}
	sr.subtrees = append(sr.subtrees, subtree{orig: deleteNode(del), cte: name})
	ctes = append(ctes, cte(name, deleteNode(d)))
	if len(del.GetReturningList()) == 0 {
		// The final statement counts the rows removed ("SELECT n"); its
		// empty rows, of no column, are not sent.
		st.Output = Output{TagFrom: "SELECT", NoRows: true}
		final := selectNode(selectStmt(nil, []*pg.Node{rangeVarNode("", name, "")}, nil))
		return sr.assemble(ctes, final, del.GetWithClause())
	}
	st.Output = Output{TagFrom: "SELECT", HiddenColumns: hidden}
	final := selectNode(selectStmt(
		[]*pg.Node{resTarget("", &pg.Node{Node: &pg.Node_ColumnRef{ColumnRef: &pg.ColumnRef{
			Fields: []*pg.Node{{Node: &pg.Node_AStar{AStar: &pg.A_Star{}}}}, Location: -1}}})},
		[]*pg.Node{rangeVarNode("", name, "")}, nil))
	return sr.assemble(ctes, final, del.GetWithClause())
}

// withDelete rewrites a SELECT/INSERT/UPDATE/MERGE whose WITH deletes.
func (sr *stmtRewriter) withDelete(n *pg.Node, st *Statement) (*pg.Node, error) {
	if m := n.GetMergeStmt(); m != nil && mergeDeletes(m) {
		if t, ok := sr.lookupDeleted(m.GetRelation()); ok {
			return nil, sr.errorAt(refuse(
				"tombstone: MERGE … WHEN MATCHED THEN DELETE on "+t.described()+" is not supported",
				"Rewrite it as DELETE … USING for the rows to remove, followed by the MERGE without the DELETE action."),
				m.GetRelation().GetLocation())
		}
	}
	nn := proto.Clone(n).(*pg.Node)
	w := withOf(nn)
	ctes, changed, err := sr.userCTEs(w, nn)
	if err != nil || !changed {
		return nil, err
	}
	sr.subtrees = append(sr.subtrees, subtree{cte: ""})
	return sr.assemble(ctes, nn, w)
}

// userCTEs rewrites the DELETEs in a user WITH clause: each becomes a
// "_ts_dN" CTE followed by a SELECT CTE with the user's name and columns.
func (sr *stmtRewriter) userCTEs(w *pg.WithClause, stmt *pg.Node) ([]*pg.Node, bool, error) {
	var out []*pg.Node
	changed := false
	for _, c := range w.GetCtes() {
		ce := c.GetCommonTableExpr()
		if ce == nil {
			out = append(out, c)
			continue
		}
		if strings.HasPrefix(ce.GetCtename(), genPrefix) {
			return nil, false, sr.errorAt(refuse(
				"tombstone: WITH query names starting with \""+genPrefix+"\" are reserved",
				"Rename the WITH query."), ce.GetLocation())
		}
		q := ce.GetCtequery()
		if m := q.GetMergeStmt(); m != nil && mergeDeletes(m) {
			if t, ok := sr.lookupDeleted(m.GetRelation()); ok {
				return nil, false, sr.errorAt(refuse(
					"tombstone: MERGE … WHEN MATCHED THEN DELETE on "+t.described()+" is not supported",
					"Rewrite it as DELETE … USING for the rows to remove, followed by the MERGE without the DELETE action."),
					m.GetRelation().GetLocation())
			}
		}
		del := q.GetDeleteStmt()
		if del == nil {
			sr.subtrees = append(sr.subtrees, subtree{orig: q, cte: ce.GetCtename()})
			out = append(out, c)
			continue
		}
		t, ok := sr.lookupDeleted(del.GetRelation())
		if !ok {
			// Not captured: guarded, as a top-level DELETE is.
			sr.subtrees = append(sr.subtrees, subtree{orig: q, cte: ce.GetCtename()})
			gc := proto.Clone(c).(*pg.Node)
			if sr.guardUnprotected(gc.GetCommonTableExpr().GetCtequery().GetDeleteStmt()) {
				changed = true
			}
			out = append(out, gc)
			continue
		}
		if del.GetWithClause() != nil {
			return nil, false, sr.errorAt(refuse(
				"tombstone: a WITH clause inside a deleting WITH query is not supported",
				"Move the inner WITH queries to the top-level WITH."), ce.GetLocation())
		}
		changed = true
		items, names, err := sr.returningItems(del, t)
		if err != nil {
			return nil, false, err
		}
		d := proto.Clone(del).(*pg.DeleteStmt)
		// Give every returned value a private name; the user's CTE
		// re-exposes them under the names Postgres would have used.
		ret := make([]*pg.Node, len(items))
		sel := make([]*pg.Node, len(items))
		for i, it := range items {
			col := sprintName("_ts_c", i+1)
			ret[i] = resTarget(col, it)
			sel[i] = resTarget("", colRef(col))
		}
		d.ReturningList = ret
		name, _, err := sr.captureDelete(d, t, ret)
		if err != nil {
			return nil, false, err
		}
		sr.subtrees = append(sr.subtrees, subtree{orig: q, cte: name})
		out = append(out, cte(name, deleteNode(d)))
		if len(items) == 0 {
			// A DELETE without RETURNING cannot be read from: with no CTE
			// of its name left, a reference to it would read a table of
			// that name, or fail otherwise than Postgres fails it.
			if loc := referencedOutside(stmt, ce); loc >= 0 {
				return nil, false, sr.errorAt(&pgerr.Error{Code: pgerrcode.FeatureNotSupported,
					Message: fmt.Sprintf("WITH query %q does not have a RETURNING clause", ce.GetCtename())}, loc)
			}
			continue
		}
		if n := len(ce.GetAliascolnames()); n > len(names) {
			return nil, false, sr.errorAt(&pgerr.Error{Code: pgerrcode.InvalidColumnReference,
				Message: fmt.Sprintf("WITH query %q has %d columns available but %d columns specified", ce.GetCtename(), len(names), n)},
				ce.GetLocation())
		}
		for i, a := range ce.GetAliascolnames() {
			names[i] = a.GetString_().GetSval()
		}
		uc := cte(ce.GetCtename(), selectNode(selectStmt(sel, []*pg.Node{rangeVarNode("", name, "")}, nil)), names...)
		out = append(out, uc)
	}
	return out, changed, nil
}

// referencedOutside returns the location of the first unqualified
// reference to CTE c's name in stmt outside c itself (-1: none).
func referencedOutside(stmt *pg.Node, c *pg.CommonTableExpr) int32 {
	refs := func(n protoreflect.Message, f func(*pg.RangeVar)) {
		eachMessage(n, func(m protoreflect.Message) bool {
			if rv, ok := m.Interface().(*pg.RangeVar); ok && rv.GetSchemaname() == "" && rv.GetRelname() == c.GetCtename() {
				f(rv)
			}
			return true
		})
	}
	inside := map[*pg.RangeVar]bool{}
	refs(c.ProtoReflect(), func(rv *pg.RangeVar) { inside[rv] = true })
	loc := int32(-1)
	refs(stmt.ProtoReflect(), func(rv *pg.RangeVar) {
		if !inside[rv] && (loc < 0 || rv.GetLocation() < loc) {
			loc = rv.GetLocation()
		}
	})
	return loc
}

// returningItems expands a WITH-DELETE's RETURNING list into expressions
// and the output column names Postgres would give them.
func (sr *stmtRewriter) returningItems(del *pg.DeleteStmt, t *Table) ([]*pg.Node, []string, error) {
	var items []*pg.Node
	var names []string
	target := del.GetRelation()
	targetRef := target.GetRelname()
	if a := target.GetAlias(); a != nil {
		targetRef = a.GetAliasname()
	}
	for _, rn := range del.GetReturningList() {
		rt := rn.GetResTarget()
		if rt == nil {
			return nil, nil, internalErr("unexpected RETURNING item")
		}
		if cr := rt.GetVal().GetColumnRef(); cr != nil && len(cr.GetFields()) > 0 && cr.GetFields()[len(cr.GetFields())-1].GetAStar() != nil {
			quals := cr.GetFields()[:len(cr.GetFields())-1]
			var rels []relCols
			var err error
			if len(quals) == 0 {
				rels, err = sr.starRels(del, t, targetRef, cr.GetLocation())
			} else {
				var rc relCols
				rc, err = sr.qualifiedStar(del, t, targetRef, quals, cr.GetLocation())
				rels = []relCols{rc}
			}
			if err != nil {
				return nil, nil, err
			}
			for _, r := range rels {
				for _, c := range r.cols {
					items = append(items, colRef(r.ref, c.Name))
					names = append(names, c.Name)
				}
			}
			continue
		}
		items = append(items, rt.GetVal())
		if rt.GetName() != "" {
			names = append(names, rt.GetName())
		} else {
			names = append(names, figureColname(rt.GetVal()))
		}
	}
	return items, names, nil
}

type relCols struct {
	ref  string
	cols []Column
}

// starRels expands RETURNING * : the target's columns, then those of each
// USING item, which must all be protected tables the catalog describes.
func (sr *stmtRewriter) starRels(del *pg.DeleteStmt, t *Table, targetRef string, loc int32) ([]relCols, error) {
	rels := []relCols{{targetRef, t.Columns}}
	for _, u := range del.GetUsingClause() {
		rv := u.GetRangeVar()
		ut, ok := sr.lookupDeleted(rv)
		if rv == nil || !ok || len(rv.GetAlias().GetColnames()) > 0 {
			return nil, sr.errorAt(refuse(
				"tombstone: RETURNING * in a WITH query cannot be expanded for a USING item that is not a protected table",
				"List the returned columns explicitly, or qualify the star with the target table (RETURNING t.*)."), loc)
		}
		ref := rv.GetRelname()
		if a := rv.GetAlias(); a != nil {
			ref = a.GetAliasname()
		}
		rels = append(rels, relCols{ref, ut.Columns})
	}
	return rels, nil
}

// qualifiedStar expands RETURNING x.* .
func (sr *stmtRewriter) qualifiedStar(del *pg.DeleteStmt, t *Table, targetRef string, quals []*pg.Node, loc int32) (relCols, error) {
	parts := make([]string, len(quals))
	for i, q := range quals {
		parts[i] = q.GetString_().GetSval()
	}
	last := parts[len(parts)-1]
	target := del.GetRelation()
	if last == targetRef && (len(parts) == 1 || (target.GetAlias() == nil && parts[len(parts)-2] == target.GetSchemaname())) {
		return relCols{targetRef, t.Columns}, nil
	}
	if len(parts) == 1 {
		for _, u := range del.GetUsingClause() {
			rv := u.GetRangeVar()
			if rv == nil {
				continue
			}
			ref := rv.GetRelname()
			if a := rv.GetAlias(); a != nil {
				ref = a.GetAliasname()
			}
			if ref != last {
				continue
			}
			if ut, ok := sr.lookupDeleted(rv); ok && len(rv.GetAlias().GetColnames()) == 0 {
				return relCols{ref, ut.Columns}, nil
			}
		}
	}
	return relCols{}, sr.errorAt(refuse(
		"tombstone: RETURNING "+strings.Join(parts, ".")+".* in a WITH query cannot be expanded: it is not a protected table",
		"List the returned columns explicitly."), loc)
}

// captureDelete turns d (a clone the caller owns) into a capturing DELETE:
// it appends the whole-row entry to RETURNING, names the CTE, registers
// the capture, the catalog guard and the foreign-key cascades. On an
// Unprotected table only the cascades are captured. hidden is how many
// columns it appended to RETURNING.
func (sr *stmtRewriter) captureDelete(d *pg.DeleteStmt, t *Table, returning []*pg.Node) (name string, hidden int, err error) {
	rel := d.GetRelation()
	if err := validTable(t); err != nil {
		return "", 0, err
	}
	if d.GetWhereClause().GetCurrentOfExpr() != nil {
		return "", 0, sr.errorAt(refuse(
			"tombstone: DELETE … WHERE CURRENT OF on "+t.described()+" is not supported",
			"Delete the row by its key instead (DELETE … WHERE id = …)."), rel.GetLocation())
	}
	ref := rel.GetRelname()
	if a := rel.GetAlias(); a != nil {
		ref = a.GetAliasname()
	}
	name = sprintName("_ts_d", sr.next())
	d.ReturningList = append(append([]*pg.Node(nil), returning...), keyTargets(t, ref)...)
	own := name // the CTE of the target's own rows
	split := splitsRows(t, rel)
	if !split && referencesPartitions(t) {
		// Foreign keys to one of its partitions cascade rows of that
		// partition only: which partition each row is from.
		d.ReturningList = append(d.ReturningList, resTarget(toidCol, colRef(ref, "tableoid")))
	}
	if split {
		// Rows of inheritance children come back typed as the target's
		// rows: which table each is from, and where, picks them apart.
		d.ReturningList = append(d.ReturningList, resTarget(toidCol, colRef(ref, "tableoid")), resTarget(tidCol, colRef(ref, "ctid")))
		own = sprintName("_ts_p", sr.next())
		sr.gen = append(sr.gen, cte(own, selectNode(selectStmt(
			keyRefs(t),
			[]*pg.Node{rangeVarNode("", name, "")},
			opExpr2([]string{"pg_catalog", "="}, colRef(toidCol), oidConst(t.OID))))))
	}
	if !t.Unprotected {
		sr.captures = append(sr.captures, capture{t, own, "delete"})
		sr.roots = append(sr.roots, capture{t, name, "delete"})
	}
	// The guard names the table exactly as the user wrote it, so that
	// the session's search_path resolves it as it resolves the DELETE.
	written := quoteIdent(rel.GetRelname())
	if s := rel.GetSchemaname(); s != "" {
		written = quoteIdent(s) + "." + written
		if c := rel.GetCatalogname(); c != "" {
			written = quoteIdent(c) + "." + written
		}
	}
	if t.Unprotected {
		// The batch row's guard runs only when something is captured,
		// but a stale catalog may not know the cascades that remove
		// protected rows here: this DELETE checks it itself.
		usingGuard(d, checkCatalog(written, t.Signature))
	} else {
		sr.addGuard(written, t.Signature)
	}
	if sr.opt.RequireWhere && d.GetWhereClause() == nil && !sr.confirmed() && !t.Unprotected {
		sr.unbounded = append(sr.unbounded, t.QualifiedName())
	}
	if err := sr.cascade(t, own, []*Table{t}, false, rel.GetLocation()); err != nil {
		return "", 0, err
	}
	if split && len(t.Children) > 0 {
		// The removed rows' ctids by table, for the children to read.
		tids := sprintName("_ts_t", sr.next())
		sr.gen = append(sr.gen, cte(tids, selectNode(&pg.SelectStmt{
			TargetList: []*pg.Node{resTarget(toidCol, colRef(toidCol)),
				resTarget(tidsCol, funcCall([]string{"pg_catalog", "array_agg"}, colRef(tidCol)))},
			FromClause:  []*pg.Node{rangeVarNode("", name, "")},
			GroupClause: []*pg.Node{colRef(toidCol)},
			LimitOption: pg.LimitOption_LIMIT_OPTION_DEFAULT,
			Op:          pg.SetOperation_SETOP_NONE,
		})))
		for _, c := range t.Children {
			if err := sr.inheritedRows(c, tids, rel.GetLocation()); err != nil {
				return "", 0, err
			}
		}
	}
	return name, len(d.ReturningList) - len(returning), nil
}

// checkCatalog is the guard "tombstone.check_catalog('regclass', 'sig')".
func checkCatalog(regclass, sig string) *pg.Node {
	return funcCall([]string{tsSchema, "check_catalog"},
		typeCast(constStr(regclass), "pg_catalog", "regclass"), constStr(sig))
}

// referencesPartitions reports whether a foreign key references one of
// t's partitions rather than t.
func referencesPartitions(t *Table) bool {
	for _, fk := range t.Referencing {
		if fk.ParentOID != 0 {
			return true
		}
	}
	return false
}

// splitsRows reports whether a DELETE of rel, resolved to t, also removes
// rows of t's inheritance children that are captured apart (or cascade).
func splitsRows(t *Table, rel *pg.RangeVar) bool {
	return rel.GetInh() && (t.Inherited || len(t.Children) > 0)
}

// inheritedRows captures the rows of inheritance child c that a DELETE
// removed — their ctids, by table, are in CTE tids (_ts_toid, _ts_tids) —
// into c's shadow table, and their cascades. They are read whole from c
// as the statement's snapshot shows them; a row the DELETE found only
// after waiting for a concurrent update, or one c's row-level security
// hides from the reader, is not there to read: check_captured then fails
// the statement rather than let the row go uncaptured.
func (sr *stmtRewriter) inheritedRows(c *Table, tids string, loc int32) error {
	if err := validTable(c); err != nil {
		return err
	}
	k := sr.next()
	raw, name, alias := sprintName("_ts_r", k), sprintName("_ts_s", k), sprintName("_ts_c", k)
	from := rangeVar(c.Schema, c.Name, alias)
	from.Inh = false // its own children are in the list too
	// (SELECT _ts_tids FROM tids WHERE _ts_toid = c)
	mine := func() *pg.Node {
		return subLink(pg.SubLinkType_EXPR_SUBLINK, nil, selectStmt(
			[]*pg.Node{resTarget("", colRef(tidsCol))},
			[]*pg.Node{rangeVarNode("", tids, "")},
			opExpr2([]string{"pg_catalog", "="}, colRef(toidCol), oidConst(c.OID))))
	}
	// ctid = ANY ((SELECT _ts_tids …)::tid[]): a TID scan, not a pass
	// over c. (The cast keeps the deparser from writing the array's
	// subquery as "= ANY (subquery)", a comparison with each row.)
	where := &pg.Node{Node: &pg.Node_AExpr{AExpr: &pg.A_Expr{
		Kind: pg.A_Expr_Kind_AEXPR_OP_ANY, Name: strNodes("pg_catalog", "="),
		Lexpr: colRef(alias, "ctid"), Rexpr: typeCast(mine(), "pg_catalog", "_tid"), Location: -1}}}
	sr.gen = append(sr.gen, cte(raw, selectNode(selectStmt(keyTargets(c, alias),
		[]*pg.Node{{Node: &pg.Node_RangeVar{RangeVar: from}}}, where))))
	check := funcCall([]string{tsSchema, "check_captured"},
		typeCast(constStr(quoteIdent(c.Schema)+"."+quoteIdent(c.Name)), "pg_catalog", "regclass"),
		funcCall([]string{"pg_catalog", "cardinality"}, mine()),
		subLink(pg.SubLinkType_EXPR_SUBLINK, nil, selectStmt([]*pg.Node{resTarget("", countStar())}, []*pg.Node{rangeVarNode("", raw, "")}, nil)))
	sr.gen = append(sr.gen, cte(name, selectNode(selectStmt(keyRefs(c),
		[]*pg.Node{rangeVarNode("", raw, "")}, check))))
	if !c.Unprotected {
		sr.captures = append(sr.captures, capture{c, name, "delete"})
	}
	return sr.cascade(c, name, []*Table{c}, false, loc)
}

// oidConst is "'n'::pg_catalog.oid".
func oidConst(oid uint32) *pg.Node {
	return typeCast(constStr(strconv.FormatUint(uint64(oid), 10)), "pg_catalog", "oid")
}

func (sr *stmtRewriter) next() int {
	n := sr.n
	sr.n++
	return n
}

func (sr *stmtRewriter) addGuard(regclass, sig string) {
	for _, g := range sr.guards {
		if g.regclass == regclass {
			return
		}
	}
	sr.guards = append(sr.guards, guard{regclass, sig})
}

// assemble builds the final statement: the user's CTEs (DELETEs
// replaced), the generated cascade CTEs, the batch row, then body. The
// tombstones — deleted rows, and the old values of rows an ON DELETE SET
// NULL key changes — are written by the tables' capture triggers
// (tombstone/sql/functions_capture.sql), into the batch the batch row's
// trigger names for them.
func (sr *stmtRewriter) assemble(userCTEs []*pg.Node, body *pg.Node, orig *pg.WithClause) (*pg.Node, error) {
	ctes := append([]*pg.Node(nil), userCTEs...)
	if len(sr.captures) > 0 { // else only guards of DELETEs not captured
		sr.excludeCascaded()
		ctes = append(ctes, sr.gen...)
		ctes = append(ctes, sr.batchCTEs()...)
	}
	var w *pg.WithClause
	if len(ctes) > 0 {
		w = &pg.WithClause{Ctes: ctes, Recursive: orig.GetRecursive(), Location: -1}
	}
	switch v := body.GetNode().(type) {
	case *pg.Node_SelectStmt:
		v.SelectStmt.WithClause = w
	case *pg.Node_InsertStmt:
		v.InsertStmt.WithClause = w
	case *pg.Node_UpdateStmt:
		v.UpdateStmt.WithClause = w
	case *pg.Node_DeleteStmt:
		v.DeleteStmt.WithClause = w
	case *pg.Node_MergeStmt:
		v.MergeStmt.WithClause = w
	default:
		return nil, internalErr("unexpected statement body %T", body.GetNode())
	}
	return body, nil
}

// batchCTEs is "_ts_b": the batch row, written only when rows were
// removed and the guards agree. Its id, token and retention are the
// database's (an identity, a default, and a trigger that reads the
// stored rules); that trigger also names it to the capture triggers of
// this statement's tables, which copy the rows into it. The counts per
// table (SET NULL links included) are the statement's.
func (sr *stmtRewriter) batchCTEs() []*pg.Node {
	// Row counts per table, in first-capture order.
	var order []*Table
	counts := map[*Table]*pg.Node{}
	for _, c := range sr.captures {
		cnt := subLink(pg.SubLinkType_EXPR_SUBLINK, nil,
			selectStmt([]*pg.Node{resTarget("", countStar())}, []*pg.Node{rangeVarNode("", c.cte, "")}, nil))
		if prev, ok := counts[c.t]; ok {
			counts[c.t] = opExpr2([]string{"pg_catalog", "+"}, prev, cnt)
		} else {
			order = append(order, c.t)
			counts[c.t] = cnt
		}
	}
	// jsonb_build_object takes at most 100 arguments; join chunks with ||.
	var tables *pg.Node
	for i := 0; i < len(order); i += 50 {
		var args []*pg.Node
		for _, t := range order[i:min(i+50, len(order))] {
			args = append(args, constStr(t.QualifiedName()), counts[t])
		}
		obj := funcCall([]string{"pg_catalog", "jsonb_build_object"}, args...)
		if tables == nil {
			tables = obj
		} else {
			tables = opExpr2([]string{"pg_catalog", "||"}, tables, obj)
		}
	}
	// A batch when the statement's own DELETEs removed rows, or when
	// anything was captured (the cascades of a DELETE on an Unprotected
	// table).
	var exists []*pg.Node
	seen := map[string]bool{}
	for _, c := range append(append([]capture(nil), sr.roots...), sr.captures...) {
		if !seen[c.cte] {
			seen[c.cte] = true
			exists = append(exists, subLink(pg.SubLinkType_EXISTS_SUBLINK, nil,
				selectStmt([]*pg.Node{resTarget("", pg.MakeAConstIntNode(1, -1))}, []*pg.Node{rangeVarNode("", c.cte, "")}, nil)))
		}
	}
	cond := []*pg.Node{boolExpr(pg.BoolExprType_OR_EXPR, exists...)}
	for _, g := range sr.guards {
		cond = append(cond, checkCatalog(g.regclass, g.signature))
	}
	for _, t := range sr.unbounded {
		cond = append(cond, funcCall([]string{tsSchema, "guard_where"}, constStr(t)))
	}
	if sr.opt.MaxRows > 0 && !sr.confirmed() && len(sr.roots) > 0 {
		// The statement's own rows (cascades not counted), all its DELETEs.
		var rows *pg.Node
		for _, r := range sr.roots {
			cnt := subLink(pg.SubLinkType_EXPR_SUBLINK, nil,
				selectStmt([]*pg.Node{resTarget("", countStar())}, []*pg.Node{rangeVarNode("", r.cte, "")}, nil))
			if rows == nil {
				rows = cnt
			} else {
				rows = opExpr2([]string{"pg_catalog", "+"}, rows, cnt)
			}
		}
		cond = append(cond, funcCall([]string{tsSchema, "guard_rows"}, rows,
			typeCast(pg.MakeAConstIntNode(sr.opt.MaxRows, -1), "pg_catalog", "int8"), constStr(sr.roots[0].t.QualifiedName())))
	}
	addr := constStr(sr.opt.ClientAddr)
	if sr.opt.ClientAddr == "" {
		addr = &pg.Node{Node: &pg.Node_AConst{AConst: &pg.A_Const{Isnull: true, Location: -1}}}
	}
	row := selectStmt([]*pg.Node{
		resTarget("", addr),
		resTarget("", constStr(sr.recorded())),
		resTarget("", tables),
	}, nil, boolExpr(pg.BoolExprType_AND_EXPR, cond...))
	return []*pg.Node{cte(batchCTE, insertNode(tsSchema, "batches", []string{"client_addr", "sql", "tables"}, row))}
}

// opExpr2 is an operator with a schema-qualified name,
// "l OPERATOR(pg_catalog.+) r", immune to the session's search_path.
func opExpr2(name []string, l, r *pg.Node) *pg.Node {
	return &pg.Node{Node: &pg.Node_AExpr{AExpr: &pg.A_Expr{
		Kind:     pg.A_Expr_Kind_AEXPR_OP,
		Name:     strNodes(name...),
		Lexpr:    l,
		Rexpr:    r,
		Location: -1,
	}}}
}

// validTable rejects catalog entries that would produce a malformed tree:
// pg_query hands empty strings to the C deparser as NULL pointers, which
// it dereferences. A catalog loaded from the database never has them, but
// the rewrite must not crash the proxy if one slips through.
func validTable(t *Table) error {
	bad := func(s string) bool { return s == "" || strings.IndexByte(s, 0) >= 0 }
	if t == nil || bad(t.Schema) || bad(t.Name) || bad(t.Shadow) && !t.Unprotected {
		return internalErr("invalid catalog entry for a protected table (empty name)")
	}
	for _, c := range t.Columns {
		if bad(c.Name) {
			return internalErr("invalid catalog entry for %s (empty column name)", t.QualifiedName())
		}
	}
	for _, fk := range t.Referencing {
		for _, c := range append(append([]string(nil), fk.ChildColumns...), fk.ParentColumns...) {
			if bad(c) {
				return internalErr("invalid foreign key %q on %s (empty column name)", fk.Name, t.QualifiedName())
			}
		}
	}
	return nil
}
