package rewrite

import (
	"strings"

	"github.com/jackc/pgerrcode"
	pg "github.com/pganalyze/pg_query_go/v6"
	"github.com/tombstone-proxy/tombstone/pgerr"
)

// Policies for statements that remove a whole table's rows (config keys
// policies.truncate and policies.drop).
const (
	PolicyCapture = "capture" // TRUNCATE: tombstone the rows first (default)
	PolicyTrash   = "trash"   // DROP TABLE: move the table to the trash (default)
	PolicyReject  = "reject"  // refuse the statement
	PolicyAllow   = "allow"   // pass it through uncaptured
)

// truncateStmt turns a TRUNCATE into a call of tombstone.capture_truncate,
// which captures every protected table's rows (those reached through
// CASCADE, inheritance and partitioning too) into one batch and then runs
// the TRUNCATE itself, in the same transaction. The client sees the tag
// "TRUNCATE TABLE".
func (sr *stmtRewriter) truncateStmt(t *pg.TruncateStmt, st *Statement) (*pg.Node, error) {
	policy := sr.opt.Truncate
	if policy == "" {
		policy = PolicyCapture
	}
	if policy == PolicyAllow {
		return nil, nil
	}
	cascade := t.GetBehavior() == pg.DropBehavior_DROP_CASCADE
	var names, only []*pg.Node
	var protected *Table
	var loc int32 = -1
	for _, r := range t.GetRelations() {
		rv := r.GetRangeVar()
		if rv == nil {
			return nil, internalErr("TRUNCATE relation is not a RangeVar")
		}
		if tb, ok := sr.lookup(rv); ok && protected == nil {
			protected, loc = tb, rv.GetLocation()
		}
		names = append(names, constStr(regclassText(rv.GetCatalogname(), rv.GetSchemaname(), rv.GetRelname())))
		only = append(only, boolConst(!rv.GetInh()))
	}
	// Every TRUNCATE goes through capture_truncate, protected tables
	// named or not: the tables that lose rows — those referencing the
	// listed ones (CASCADE), their inheritance children and partitions
	// (unless ONLY) — only the database can enumerate, and any of them may
	// be protected.
	if protected != nil && policy == PolicyReject {
		return nil, sr.errorAt(&pgerr.Error{Code: pgerrcode.FeatureNotSupported,
			Message: "tombstone: TRUNCATE of protected table " + protected.QualifiedName() + " is refused (policies.truncate: reject)",
			Hint:    "Use DELETE, whose rows can be restored, or ask an administrator to change the policy."}, loc)
	}
	st.Output = Output{Tag: "TRUNCATE TABLE"}
	return callNode([]string{"tombstone", "capture_truncate"},
		arrayCast(names, "text"),
		arrayCast(only, "bool"),
		boolConst(cascade),
		boolConst(t.GetRestartSeqs()),
		constStr(sr.opt.ClientAddr),
		constStr(sr.recorded()),
	), nil
}

// dropStmt turns a DROP TABLE that involves protected tables into a call
// of tombstone.trash_tables, which moves protected tables to the trash
// schema (recoverable with UNDROP TABLE until the reaper drops them) and
// drops the others as usual. The client sees the tag "DROP TABLE".
func (sr *stmtRewriter) dropStmt(d *pg.DropStmt, st *Statement) (*pg.Node, error) {
	policy := sr.opt.Drop
	if policy == "" {
		policy = PolicyTrash
	}
	if policy == PolicyAllow {
		return nil, nil
	}
	var names []*pg.Node
	var protected *Table
	for _, o := range d.GetObjects() {
		items := o.GetList().GetItems()
		var catalog, schema, name string
		switch len(items) {
		case 1:
			name = items[0].GetString_().GetSval()
		case 2:
			schema, name = items[0].GetString_().GetSval(), items[1].GetString_().GetSval()
		default:
			// catalog.schema.table: the name goes on whole, and Postgres
			// judges the database name (another one is an error).
			if len(items) != 3 {
				return nil, internalErr("DROP TABLE name with %d parts", len(items))
			}
			catalog, schema, name = items[0].GetString_().GetSval(), items[1].GetString_().GetSval(), items[2].GetString_().GetSval()
		}
		if name == "" {
			return nil, internalErr("DROP TABLE without a table name")
		}
		// (Asked only to refuse: otherwise the statement does not
		// depend on the catalog, and is planned without waiting for
		// one that is being reloaded.)
		if policy == PolicyReject && protected == nil {
			if tb, ok := sr.cat.Lookup(schema, name); ok {
				protected = tb
			}
		}
		names = append(names, constStr(regclassText(catalog, schema, name)))
	}
	// Every DROP TABLE goes through trash_tables, protected tables named
	// or not: a table renamed earlier in the same transaction is
	// protected under a name this catalog (read on another connection)
	// does not know; the database decides, by its own rules.
	if protected != nil && policy == PolicyReject {
		return nil, &pgerr.Error{Code: pgerrcode.FeatureNotSupported,
			Message: "tombstone: DROP TABLE of protected table " + protected.QualifiedName() + " is refused (policies.drop: reject)",
			Hint:    "Ask an administrator to change the policy, or exclude the table from protection first."}
	}
	st.Output = Output{Tag: "DROP TABLE"}
	return callNode([]string{"tombstone", "trash_tables"},
		arrayCast(names, "text"),
		boolConst(d.GetMissingOk()),
		boolConst(d.GetBehavior() == pg.DropBehavior_DROP_CASCADE),
		constStr(sr.opt.ClientAddr),
		constStr(sr.recorded()),
	), nil
}

// regclassText is a table name in regclass input form, quoted, qualified
// only as far as the user qualified it: the session's search_path
// resolves it exactly as Postgres would have, and a database name other
// than the session's is Postgres's error (0A000), as it would have been.
func regclassText(catalog, schema, name string) string {
	s := quoteIdent(name)
	if schema != "" {
		s = quoteIdent(schema) + "." + s
	}
	if catalog != "" {
		s = quoteIdent(catalog) + "." + s
	}
	return s
}

func boolConst(b bool) *pg.Node {
	return &pg.Node{Node: &pg.Node_AConst{AConst: &pg.A_Const{Val: &pg.A_Const_Boolval{Boolval: &pg.Boolean{Boolval: b}}, Location: -1}}}
}

// arrayCast is ARRAY[elems]::typ[].
func arrayCast(elems []*pg.Node, typ string) *pg.Node {
	arr := &pg.Node{Node: &pg.Node_AArrayExpr{AArrayExpr: &pg.A_ArrayExpr{Elements: elems, Location: -1}}}
	return &pg.Node{Node: &pg.Node_TypeCast{TypeCast: &pg.TypeCast{
		Arg: arr,
		TypeName: &pg.TypeName{Names: strNodes("pg_catalog", typ), Typemod: -1, Location: -1,
			ArrayBounds: []*pg.Node{pg.MakeIntNode(-1)}},
		Location: -1,
	}}}
}

// callNode is CALL name(args…).
func callNode(name []string, args ...*pg.Node) *pg.Node {
	fc := funcCall(name, args...).GetFuncCall()
	return &pg.Node{Node: &pg.Node_CallStmt{CallStmt: &pg.CallStmt{Funccall: fc}}}
}

// dropSchema refuses a DROP SCHEMA that would take protected tables with
// it (unless policies.drop is allow): their rows could not be recovered.
// The catalog knows the tables it loaded; a CASCADE also runs through
// tombstone.drop_schema, where the database refuses it for a table
// protected under a name the catalog does not know yet (moved into the
// schema earlier in the same transaction or Query, say), and for tables
// in the trash that would lose columns or go. The store's own schemas
// are not dropped through the proxy.
func (sr *stmtRewriter) dropSchema(n *pg.Node, st *Statement) (*pg.Node, error) {
	if sr.opt.Drop == PolicyAllow {
		return nil, nil
	}
	d := n.GetDropStmt()
	for _, o := range d.GetObjects() {
		if name := o.GetString_().GetSval(); name == "tombstone" || name == "tombstone_trash" {
			return nil, &pgerr.Error{Code: pgerrcode.FeatureNotSupported,
				Message: "tombstone: DROP SCHEMA " + name + " would drop the store: every tombstone, or every table in the trash",
				Hint:    "Drop it on a direct connection, if that is what you mean."}
		}
	}
	if sc, ok := sr.cat.(SchemaCatalog); ok {
		for _, o := range d.GetObjects() {
			name := o.GetString_().GetSval()
			if name != "" && sc.HoldsProtected(name) {
				return nil, &pgerr.Error{Code: pgerrcode.FeatureNotSupported,
					Message: "tombstone: DROP SCHEMA " + name + " would drop protected tables, whose rows could not be restored",
					Hint:    "DROP TABLE them first (they go to the trash and can be brought back with UNDROP TABLE), or ask an administrator to set policies.drop: allow."}
			}
		}
	}
	if d.GetBehavior() != pg.DropBehavior_DROP_CASCADE {
		return nil, nil // (a schema that holds a table is not dropped without CASCADE)
	}
	st.Output = Output{Tag: "DROP SCHEMA"}
	return callNode([]string{"tombstone", "drop_schema"}, constStr(sr.recorded())), nil
}

// detachStmt turns an ALTER TABLE … DETACH PARTITION (of any table: the
// database knows best which are protected) into a call of
// tombstone.detach_partition, which detaches the
// partition only if it stays protected as a table of its own (its
// schema is protected, or a table rule says so): otherwise its rows
// would leave protection without a tombstone, and a DROP TABLE could
// then lose them. CONCURRENTLY, which cannot run inside a procedure, is
// refused; FINALIZE passes.
func (sr *stmtRewriter) detachStmt(a *pg.AlterTableStmt, st *Statement) (*pg.Node, error) {
	rv := a.GetRelation()
	t, ok := sr.lookup(rv)
	// The grammar allows DETACH PARTITION only as the one subcommand.
	part := a.GetCmds()[0].GetAlterTableCmd().GetDef().GetPartitionCmd()
	if part == nil || part.GetName() == nil {
		return nil, internalErr("DETACH PARTITION without a partition")
	}
	if part.GetConcurrent() {
		if !ok {
			// Runs outside any transaction, so no rename of this one
			// can hide a protected table from the catalog.
			return nil, nil
		}
		return nil, sr.errorAt(refuse("tombstone: DETACH PARTITION … CONCURRENTLY of "+t.described()+" is not supported",
			"Detach without CONCURRENTLY: the proxy checks first that the partition stays protected on its own."), rv.GetLocation())
	}
	p := part.GetName()
	st.Output = Output{Tag: "ALTER TABLE"}
	return callNode([]string{"tombstone", "detach_partition"},
		constStr(regclassText(rv.GetCatalogname(), rv.GetSchemaname(), rv.GetRelname())),
		constStr(regclassText(p.GetCatalogname(), p.GetSchemaname(), p.GetRelname())),
	), nil
}

// guardedStmt runs DDL that could take a protected table out of
// protection, or drop one by the way, through tombstone.guarded_ddl: the
// statement runs as written, with the caller's privileges, and is rolled
// back (0A000) if a table protected before it is no longer protected
// after it, or gone. The client sees the statement's own tag.
func (sr *stmtRewriter) guardedStmt(n *pg.Node, st *Statement) (*pg.Node, error) {
	tag := "ALTER TABLE"
	switch n.GetNode().(type) {
	case *pg.Node_RenameStmt:
		tag = "ALTER SCHEMA"
	case *pg.Node_DropOwnedStmt:
		tag = "DROP OWNED"
		if sr.opt.Drop == "" || sr.opt.Drop == PolicyTrash {
			// The roles' protected tables go to the trash first, as DROP
			// TABLE sends them (tombstone.drop_owned).
			st.Output = Output{Tag: tag}
			d := n.GetDropOwnedStmt()
			return callNode([]string{"tombstone", "drop_owned"}, constStr(sr.recorded()), arrayCast(roleSpecs(d.GetRoles()), "text"),
				boolConst(d.GetBehavior() == pg.DropBehavior_DROP_CASCADE), constStr(sr.opt.ClientAddr)), nil
		}
	case *pg.Node_DropStmt:
		tag = "DROP TYPE"
		if n.GetDropStmt().GetRemoveType() == pg.ObjectType_OBJECT_DOMAIN {
			tag = "DROP DOMAIN"
		}
		// The types by name, as the session's search_path resolves them:
		// drop_types frees them from the trash, then runs the statement
		// as guarded_ddl does.
		var names []*pg.Node
		for _, o := range n.GetDropStmt().GetObjects() {
			var parts []string
			for _, p := range o.GetTypeName().GetNames() {
				parts = append(parts, quoteIdent(p.GetString_().GetSval()))
			}
			if len(parts) > 0 {
				names = append(names, constStr(strings.Join(parts, ".")))
			}
		}
		st.Output = Output{Tag: tag}
		return callNode([]string{"tombstone", "drop_types"}, constStr(sr.recorded()), arrayCast(names, "text"),
			boolConst(n.GetDropStmt().GetBehavior() == pg.DropBehavior_DROP_CASCADE), constStr(sr.opt.ClientAddr)), nil
	case *pg.Node_AlterObjectSchemaStmt:
		if n.GetAlterObjectSchemaStmt().GetObjectType() == pg.ObjectType_OBJECT_FOREIGN_TABLE {
			tag = "ALTER FOREIGN TABLE"
		}
	}
	st.Output = Output{Tag: tag}
	return callNode([]string{"tombstone", "guarded_ddl"}, constStr(sr.recorded())), nil
}

// roleSpecs are the roles of a DROP OWNED as tombstone.drop_owned takes
// them: a name double-quoted, or the keyword current_user, current_role
// or session_user.
func roleSpecs(roles []*pg.Node) []*pg.Node {
	var out []*pg.Node
	for _, r := range roles {
		switch rs := r.GetRoleSpec(); rs.GetRoletype() {
		case pg.RoleSpecType_ROLESPEC_CURRENT_USER:
			out = append(out, constStr("current_user"))
		case pg.RoleSpecType_ROLESPEC_CURRENT_ROLE:
			out = append(out, constStr("current_role"))
		case pg.RoleSpecType_ROLESPEC_SESSION_USER:
			out = append(out, constStr("session_user"))
		case pg.RoleSpecType_ROLESPEC_PUBLIC:
			out = append(out, constStr("public")) // (no role: the statement fails on it)
		default:
			out = append(out, constStr(quoteIdent(rs.GetRolename())))
		}
	}
	return out
}
