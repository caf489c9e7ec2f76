package rewrite

import (
	"sort"

	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// posPair says that byte offset rew of a rewritten statement corresponds
// to byte offset orig of the original text.
// An exact pair maps every offset up to the next pair to orig itself
// (used for generated text).
type posPair struct {
	rew, orig int
	exact     bool
}

// A subtree of the original statement and where the rewritten statement
// carries it: in the CTE named cte of the main statement's WITH, or
// (cte == "") at the main statement itself.
type subtree struct {
	orig *pg.Node
	cte  string
}

// positionPairs walks the original statement's subtrees and their
// counterparts in the re-parsed rewritten statement in parallel and pairs
// up their Location fields. Every other location of the rewritten text
// maps to the start of the original statement, so an error in generated
// text points at the statement rather than at an unrelated token.
func (sr *stmtRewriter) positionPairs(orig, rew *pg.Node) []posPair {
	start := firstNonSpace(sr.full, sr.span)
	m := map[int]int{0: start}
	exact := map[int]bool{0: true}
	collectLocations(rew.ProtoReflect(), func(loc int) { m[loc], exact[loc] = start, true })

	// Unwrap PREPARE / EXPLAIN on both sides.
	origMain, rewMain := orig, rew
	for {
		if p, q := origMain.GetPrepareStmt(), rewMain.GetPrepareStmt(); p != nil && q != nil {
			walkPair(p.ProtoReflect(), q.ProtoReflect(), "query", m, exact)
			origMain, rewMain = p.GetQuery(), q.GetQuery()
			continue
		}
		if p, q := origMain.GetExplainStmt(), rewMain.GetExplainStmt(); p != nil && q != nil {
			walkPair(p.ProtoReflect(), q.ProtoReflect(), "query", m, exact)
			origMain, rewMain = p.GetQuery(), q.GetQuery()
			continue
		}
		break
	}
	ctes := map[string]*pg.Node{}
	for _, c := range withOf(rewMain).GetCtes() {
		if ce := c.GetCommonTableExpr(); ce != nil {
			ctes[ce.GetCtename()] = ce.GetCtequery()
		}
	}
	for _, s := range sr.subtrees {
		if s.cte == "" {
			walkPair(origMain.ProtoReflect(), rewMain.ProtoReflect(), "with_clause", m, exact)
			continue
		}
		if q := ctes[s.cte]; q != nil && s.orig != nil {
			walkPair(s.orig.ProtoReflect(), q.ProtoReflect(), "with_clause", m, exact)
		}
	}
	pairs := make([]posPair, 0, len(m))
	for r, o := range m {
		pairs = append(pairs, posPair{r, o, exact[r]})
	}
	sort.Slice(pairs, func(i, j int) bool { return pairs[i].rew < pairs[j].rew })
	return pairs
}

// mapPairs maps a byte offset of the rewritten statement to the original.
func mapPairs(pairs []posPair, rel, fallback int) int {
	i := sort.Search(len(pairs), func(i int) bool { return pairs[i].rew > rel }) - 1
	if i < 0 {
		return fallback
	}
	if pairs[i].exact {
		return pairs[i].orig
	}
	return pairs[i].orig + (rel - pairs[i].rew)
}

func withOf(n *pg.Node) *pg.WithClause {
	switch v := n.GetNode().(type) {
	case *pg.Node_SelectStmt:
		return v.SelectStmt.GetWithClause()
	case *pg.Node_InsertStmt:
		return v.InsertStmt.GetWithClause()
	case *pg.Node_UpdateStmt:
		return v.UpdateStmt.GetWithClause()
	case *pg.Node_DeleteStmt:
		return v.DeleteStmt.GetWithClause()
	case *pg.Node_MergeStmt:
		return v.MergeStmt.GetWithClause()
	}
	return nil
}

// collectLocations calls f for every non-negative Location in a tree.
func collectLocations(m protoreflect.Message, f func(int)) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList():
			if fd.Kind() == protoreflect.MessageKind {
				l := v.List()
				for i := 0; i < l.Len(); i++ {
					collectLocations(l.Get(i).Message(), f)
				}
			}
		case fd.Kind() == protoreflect.MessageKind:
			collectLocations(v.Message(), f)
		case fd.Name() == "location" && fd.Kind() == protoreflect.Int32Kind:
			if loc := int(v.Int()); loc >= 0 {
				f(loc)
			}
		}
		return true
	})
}

// walkPair walks two trees of the same shape in parallel and records
// rewritten location → original location. Where the shapes differ
// (different node types, lists of different length) it pairs what it can.
// skip names a field ignored at the top level only.
func walkPair(o, r protoreflect.Message, skip protoreflect.Name, m map[int]int, exact map[int]bool) {
	if o.Descriptor().FullName() != r.Descriptor().FullName() {
		return
	}
	o.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Name() == skip || !r.Has(fd) {
			return true
		}
		rv := r.Get(fd)
		switch {
		case fd.IsList():
			if fd.Kind() == protoreflect.MessageKind {
				ol, rl := v.List(), rv.List()
				for i := 0; i < ol.Len() && i < rl.Len(); i++ {
					walkPair(ol.Get(i).Message(), rl.Get(i).Message(), "", m, exact)
				}
			}
		case fd.Kind() == protoreflect.MessageKind:
			walkPair(v.Message(), rv.Message(), "", m, exact)
		case fd.Name() == "location" && fd.Kind() == protoreflect.Int32Kind:
			if ol, rl := int(v.Int()), int(rv.Int()); ol >= 0 && rl >= 0 {
				m[rl] = ol
				delete(exact, rl)
			}
		}
		return true
	})
}
