package rewrite

import (
	pg "github.com/pganalyze/pg_query_go/v6"
)

// Node constructors. Every tree rewrite builds has the exact shape the
// Postgres grammar produces for the equivalent SQL (compare with
// pg_query.ParseToJSON), because pg_query's C deparser trusts its input.
// Locations are -1 ("unknown") as in the parser's makeNode defaults.

func strNode(s string) *pg.Node { return pg.MakeStrNode(s) }

func strNodes(ss ...string) []*pg.Node {
	out := make([]*pg.Node, len(ss))
	for i, s := range ss {
		out[i] = strNode(s)
	}
	return out
}

func colRef(names ...string) *pg.Node {
	return &pg.Node{Node: &pg.Node_ColumnRef{ColumnRef: &pg.ColumnRef{Fields: strNodes(names...), Location: -1}}}
}

func constStr(s string) *pg.Node { return pg.MakeAConstStrNode(s, -1) }

func typeCast(arg *pg.Node, typ ...string) *pg.Node {
	return &pg.Node{Node: &pg.Node_TypeCast{TypeCast: &pg.TypeCast{
		Arg:      arg,
		TypeName: &pg.TypeName{Names: strNodes(typ...), Typemod: -1, Location: -1},
		Location: -1,
	}}}
}

func funcCall(name []string, args ...*pg.Node) *pg.Node {
	return &pg.Node{Node: &pg.Node_FuncCall{FuncCall: &pg.FuncCall{
		Funcname:   strNodes(name...),
		Args:       args,
		Funcformat: pg.CoercionForm_COERCE_EXPLICIT_CALL,
		Location:   -1,
	}}}
}

func countStar() *pg.Node {
	return &pg.Node{Node: &pg.Node_FuncCall{FuncCall: &pg.FuncCall{
		Funcname:   strNodes("pg_catalog", "count"),
		AggStar:    true,
		Funcformat: pg.CoercionForm_COERCE_EXPLICIT_CALL,
		Location:   -1,
	}}}
}

func resTarget(name string, val *pg.Node) *pg.Node {
	return pg.MakeResTargetNodeWithNameAndVal(name, val, -1)
}

// insertCol is a column name in INSERT's column list.
func insertCol(name string) *pg.Node { return pg.MakeResTargetNodeWithName(name, -1) }

func rangeVar(schema, name, alias string) *pg.RangeVar {
	rv := &pg.RangeVar{Schemaname: schema, Relname: name, Inh: true, Relpersistence: "p", Location: -1}
	if alias != "" {
		rv.Alias = &pg.Alias{Aliasname: alias}
	}
	return rv
}

func rangeVarNode(schema, name, alias string) *pg.Node {
	return &pg.Node{Node: &pg.Node_RangeVar{RangeVar: rangeVar(schema, name, alias)}}
}

func selectStmt(targets []*pg.Node, from []*pg.Node, where *pg.Node) *pg.SelectStmt {
	return &pg.SelectStmt{
		TargetList:  targets,
		FromClause:  from,
		WhereClause: where,
		LimitOption: pg.LimitOption_LIMIT_OPTION_DEFAULT,
		Op:          pg.SetOperation_SETOP_NONE,
	}
}

func selectNode(s *pg.SelectStmt) *pg.Node {
	return &pg.Node{Node: &pg.Node_SelectStmt{SelectStmt: s}}
}

func subLink(kind pg.SubLinkType, test *pg.Node, sub *pg.SelectStmt) *pg.Node {
	return &pg.Node{Node: &pg.Node_SubLink{SubLink: &pg.SubLink{
		SubLinkType: kind,
		Testexpr:    test,
		Subselect:   selectNode(sub),
		Location:    -1,
	}}}
}

func boolExpr(op pg.BoolExprType, args ...*pg.Node) *pg.Node {
	if len(args) == 1 {
		return args[0]
	}
	return &pg.Node{Node: &pg.Node_BoolExpr{BoolExpr: &pg.BoolExpr{Boolop: op, Args: args, Location: -1}}}
}

// rowOrSingle is "(a, b)" for several expressions and "a" for one.
func rowOrSingle(args []*pg.Node) *pg.Node {
	if len(args) == 1 {
		return args[0]
	}
	return &pg.Node{Node: &pg.Node_RowExpr{RowExpr: &pg.RowExpr{
		Args:      args,
		RowFormat: pg.CoercionForm_COERCE_IMPLICIT_CAST,
		Location:  -1,
	}}}
}

// inSelect is "lhs OPERATOR(op) ANY (sub)", lhs IN (sub) with the
// equality operator named in full (op: schema and name).
func inSelect(lhs []*pg.Node, op []string, sub *pg.SelectStmt) *pg.Node {
	n := subLink(pg.SubLinkType_ANY_SUBLINK, rowOrSingle(lhs), sub)
	n.GetSubLink().OperName = strNodes(op...)
	return n
}

// catalogEq is pg_catalog's "=", for oids and tids.
var catalogEq = []string{"pg_catalog", "="}

func cte(name string, query *pg.Node, colnames ...string) *pg.Node {
	return &pg.Node{Node: &pg.Node_CommonTableExpr{CommonTableExpr: &pg.CommonTableExpr{
		Ctename:         name,
		Aliascolnames:   strNodes(colnames...),
		Ctematerialized: pg.CTEMaterialize_CTEMaterializeDefault,
		Ctequery:        query,
		Location:        -1,
	}}}
}

func insertNode(schema, table string, cols []string, sel *pg.SelectStmt) *pg.Node {
	ic := make([]*pg.Node, len(cols))
	for i, c := range cols {
		ic[i] = insertCol(c)
	}
	return &pg.Node{Node: &pg.Node_InsertStmt{InsertStmt: &pg.InsertStmt{
		Relation:   rangeVar(schema, table, ""),
		Cols:       ic,
		SelectStmt: selectNode(sel),
		Override:   pg.OverridingKind_OVERRIDING_NOT_SET,
	}}}
}

func deleteNode(d *pg.DeleteStmt) *pg.Node {
	return &pg.Node{Node: &pg.Node_DeleteStmt{DeleteStmt: d}}
}
