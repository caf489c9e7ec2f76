package rewrite

import (
	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// sameTree reports whether two trees are the same statement: equal but
// for the locations, which differ between a text and its deparse.
func sameTree(a, b *pg.Node) bool {
	a, b = proto.Clone(a).(*pg.Node), proto.Clone(b).(*pg.Node)
	for _, n := range []*pg.Node{a, b} {
		eachMessage(n.ProtoReflect(), func(m protoreflect.Message) bool {
			if fd := m.Descriptor().Fields().ByName("location"); fd != nil && fd.Kind() == protoreflect.Int32Kind {
				m.Clear(fd)
			}
			return true
		})
	}
	return proto.Equal(a, b)
}

// eachMessage calls f for every message in a tree, parents first; f
// returns false to stop the walk.
func eachMessage(m protoreflect.Message, f func(protoreflect.Message) bool) bool {
	if !f(m) {
		return false
	}
	ok := true
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Kind() != protoreflect.MessageKind {
			return true
		}
		if fd.IsList() {
			l := v.List()
			for i := 0; i < l.Len() && ok; i++ {
				ok = eachMessage(l.Get(i).Message(), f)
			}
			return ok
		}
		ok = eachMessage(v.Message(), f)
		return ok
	})
	return ok
}

// findProtectedDelete finds a DELETE (or a deleting MERGE) on a protected
// table anywhere in a tree.
func (sr *stmtRewriter) findProtectedDelete(n *pg.Node) (*Table, int32) {
	var found *Table
	var loc int32 = -1
	if n == nil {
		return nil, -1
	}
	eachMessage(n.ProtoReflect(), func(m protoreflect.Message) bool {
		var rv *pg.RangeVar
		switch v := m.Interface().(type) {
		case *pg.DeleteStmt:
			rv = v.GetRelation()
		case *pg.MergeStmt:
			if mergeDeletes(v) {
				rv = v.GetRelation()
			}
		}
		if t, ok := sr.lookupDeleted(rv); ok {
			found, loc = t, rv.GetLocation()
			return false
		}
		return true
	})
	return found, loc
}

// verifyCaptured is the rewrite's safety net: in the finished tree, every
// DELETE from a protected table (or an Unprotected one whose cascades
// are captured) must be one of the capturing DELETEs
// (it returns the whole row as _ts_row) and no MERGE may delete
// from one. Anything else would remove rows without a tombstone.
func (sr *stmtRewriter) verifyCaptured(n *pg.Node) error {
	var bad *Table
	var loc int32 = -1
	eachMessage(n.ProtoReflect(), func(m protoreflect.Message) bool {
		switch v := m.Interface().(type) {
		case *pg.DeleteStmt:
			for _, r := range v.GetReturningList() {
				if r.GetResTarget().GetName() == rowCol {
					return true
				}
			}
			if t, ok := sr.lookupDeleted(v.GetRelation()); ok {
				bad, loc = t, v.GetRelation().GetLocation()
				return false
			}
		case *pg.MergeStmt:
			if t, ok := sr.lookupDeleted(v.GetRelation()); ok && mergeDeletes(v) {
				bad, loc = t, v.GetRelation().GetLocation()
				return false
			}
		}
		return true
	})
	if bad != nil {
		return sr.errorAt(refuse(
			"tombstone: this statement deletes from "+bad.described()+" in a way that cannot be captured",
			"Run the DELETE as a top-level statement or in the top-level WITH clause."), loc)
	}
	return nil
}
