package rewrite

import pg "github.com/pganalyze/pg_query_go/v6"

// figureColname returns the output column name Postgres gives an
// unnamed target expression. It is a port of FigureColname and
// FigureColnameInternal in src/backend/parser/parse_target.c (PG 17).
func figureColname(n *pg.Node) string {
	name, strength := figureColnameInternal(n)
	if strength != 0 {
		return name
	}
	// "?column?" is Postgres's default.
	return "?column?"
}

// figureColnameInternal returns a name and its strength: 0 no name,
// 1 a type name (weak), 2 a real name.
func figureColnameInternal(n *pg.Node) (string, int) {
	if n == nil {
		return "", 0
	}
	switch v := n.GetNode().(type) {
	case *pg.Node_ColumnRef:
		// Find the last field name, if any, ignoring "*".
		name := ""
		for _, f := range v.ColumnRef.GetFields() {
			if s := f.GetString_(); s != nil {
				name = s.GetSval()
			}
		}
		if name != "" {
			return name, 2
		}
	case *pg.Node_AIndirection:
		// Find the last field name, if any, ignoring "*" and subscripts.
		name := ""
		for _, f := range v.AIndirection.GetIndirection() {
			if s := f.GetString_(); s != nil {
				name = s.GetSval()
			}
		}
		if name != "" {
			return name, 2
		}
		return figureColnameInternal(v.AIndirection.GetArg())
	case *pg.Node_FuncCall:
		fn := v.FuncCall.GetFuncname()
		if len(fn) > 0 {
			return fn[len(fn)-1].GetString_().GetSval(), 2
		}
	case *pg.Node_AExpr:
		if v.AExpr.GetKind() == pg.A_Expr_Kind_AEXPR_NULLIF {
			return "nullif", 2
		}
	case *pg.Node_TypeCast:
		name, strength := figureColnameInternal(v.TypeCast.GetArg())
		if strength <= 1 {
			if names := v.TypeCast.GetTypeName().GetNames(); len(names) > 0 {
				return names[len(names)-1].GetString_().GetSval(), 1
			}
		}
		return name, strength
	case *pg.Node_CollateClause:
		return figureColnameInternal(v.CollateClause.GetArg())
	case *pg.Node_GroupingFunc:
		return "grouping", 2
	case *pg.Node_MergeSupportFunc:
		return "merge_action", 2
	case *pg.Node_SubLink:
		switch v.SubLink.GetSubLinkType() {
		case pg.SubLinkType_EXISTS_SUBLINK:
			return "exists", 2
		case pg.SubLinkType_ARRAY_SUBLINK:
			return "array", 2
		case pg.SubLinkType_EXPR_SUBLINK:
			// Postgres reads the resname of the already-transformed
			// subquery's first target, which is that target's own
			// figured name (set operations take it from the left arm).
			if sel := v.SubLink.GetSubselect().GetSelectStmt(); sel != nil {
				for sel.GetOp() != pg.SetOperation_SETOP_NONE && sel.GetLarg() != nil {
					sel = sel.GetLarg()
				}
				if len(sel.GetValuesLists()) > 0 {
					return "column1", 2
				}
				if tl := sel.GetTargetList(); len(tl) > 0 {
					if rt := tl[0].GetResTarget(); rt != nil {
						if rt.GetName() != "" {
							return rt.GetName(), 2
						}
						return figureColname(rt.GetVal()), 2
					}
				}
			}
		}
	case *pg.Node_CaseExpr:
		name, strength := figureColnameInternal(v.CaseExpr.GetDefresult())
		if strength <= 1 {
			return "case", 1
		}
		return name, strength
	case *pg.Node_AArrayExpr:
		return "array", 2
	case *pg.Node_RowExpr:
		return "row", 2
	case *pg.Node_CoalesceExpr:
		return "coalesce", 2
	case *pg.Node_MinMaxExpr:
		switch v.MinMaxExpr.GetOp() {
		case pg.MinMaxOp_IS_GREATEST:
			return "greatest", 2
		case pg.MinMaxOp_IS_LEAST:
			return "least", 2
		}
	case *pg.Node_SqlvalueFunction:
		if name, ok := svfNames[v.SqlvalueFunction.GetOp()]; ok {
			return name, 2
		}
	case *pg.Node_XmlExpr:
		if name, ok := xmlNames[v.XmlExpr.GetOp()]; ok {
			return name, 2
		}
	case *pg.Node_XmlSerialize:
		return "xmlserialize", 2
	case *pg.Node_JsonParseExpr:
		return "json", 2
	case *pg.Node_JsonScalarExpr:
		return "json_scalar", 2
	case *pg.Node_JsonSerializeExpr:
		return "json_serialize", 2
	case *pg.Node_JsonObjectConstructor:
		return "json_object", 2
	case *pg.Node_JsonArrayConstructor, *pg.Node_JsonArrayQueryConstructor:
		return "json_array", 2
	case *pg.Node_JsonObjectAgg:
		return "json_objectagg", 2
	case *pg.Node_JsonArrayAgg:
		return "json_arrayagg", 2
	case *pg.Node_JsonFuncExpr:
		switch v.JsonFuncExpr.GetOp() {
		case pg.JsonExprOp_JSON_EXISTS_OP:
			return "json_exists", 2
		case pg.JsonExprOp_JSON_QUERY_OP:
			return "json_query", 2
		case pg.JsonExprOp_JSON_VALUE_OP:
			return "json_value", 2
		}
	}
	return "", 0
}

var svfNames = map[pg.SQLValueFunctionOp]string{
	pg.SQLValueFunctionOp_SVFOP_CURRENT_DATE:        "current_date",
	pg.SQLValueFunctionOp_SVFOP_CURRENT_TIME:        "current_time",
	pg.SQLValueFunctionOp_SVFOP_CURRENT_TIME_N:      "current_time",
	pg.SQLValueFunctionOp_SVFOP_CURRENT_TIMESTAMP:   "current_timestamp",
	pg.SQLValueFunctionOp_SVFOP_CURRENT_TIMESTAMP_N: "current_timestamp",
	pg.SQLValueFunctionOp_SVFOP_LOCALTIME:           "localtime",
	pg.SQLValueFunctionOp_SVFOP_LOCALTIME_N:         "localtime",
	pg.SQLValueFunctionOp_SVFOP_LOCALTIMESTAMP:      "localtimestamp",
	pg.SQLValueFunctionOp_SVFOP_LOCALTIMESTAMP_N:    "localtimestamp",
	pg.SQLValueFunctionOp_SVFOP_CURRENT_ROLE:        "current_role",
	pg.SQLValueFunctionOp_SVFOP_CURRENT_USER:        "current_user",
	pg.SQLValueFunctionOp_SVFOP_USER:                "user",
	pg.SQLValueFunctionOp_SVFOP_SESSION_USER:        "session_user",
	pg.SQLValueFunctionOp_SVFOP_CURRENT_CATALOG:     "current_catalog",
	pg.SQLValueFunctionOp_SVFOP_CURRENT_SCHEMA:      "current_schema",
}

var xmlNames = map[pg.XmlExprOp]string{
	pg.XmlExprOp_IS_XMLCONCAT:    "xmlconcat",
	pg.XmlExprOp_IS_XMLELEMENT:   "xmlelement",
	pg.XmlExprOp_IS_XMLFOREST:    "xmlforest",
	pg.XmlExprOp_IS_XMLPARSE:     "xmlparse",
	pg.XmlExprOp_IS_XMLPI:        "xmlpi",
	pg.XmlExprOp_IS_XMLROOT:      "xmlroot",
	pg.XmlExprOp_IS_XMLSERIALIZE: "xmlserialize",
}
