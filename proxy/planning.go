package proxy

import (
	"bytes"
	"context"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/tombstone-proxy/tombstone/pgerr"
	"github.com/tombstone-proxy/tombstone/rewrite"
)

// planAtHand reports whether the planner has the plan of the Query or
// Parse frame at hand (cachedPlanner), and keeps it for plan.
func (s *Session) planAtHand(typ clientMsg, frame []byte) bool {
	cp, ok := s.srv.planner.(cachedPlanner)
	if !ok {
		return false
	}
	body := frame[5:]
	var sql string
	if typ == clientQuery {
		sql = string(body[:len(body)-1])
	} else {
		_, rest, _ := cstring(body)
		sql = string(rest[:bytes.IndexByte(rest, 0)])
	}
	plan, ok := cp.PlanCached(s.request(sql))
	if ok {
		s.atHand = &atHand{sql: sql, plan: plan}
	}
	return ok
}

// atHand is a plan made before its message was taken (planAtHand).
type atHand struct {
	sql  string
	plan Plan
}

// plan is the planner's plan of sql, or the one at hand for it.
func (s *Session) plan(ctx context.Context, sql string) Plan {
	if h := s.atHand; h != nil {
		s.atHand = nil
		if h.sql == sql {
			return h.plan
		}
	}
	if plan := s.srv.planner.Plan(ctx, s.request(sql)); plan != nil {
		return plan
	}
	return Pass{} // a Planner's nil: nothing to change
}

// request is what the planner is asked about sql, sent by s now.
func (s *Session) request(sql string) Request {
	return Request{SQL: sql, Database: s.Params["database"], ClientAddr: s.ClientAddr,
		Lexing: s.lexing.now(s.track.settled())}
}

// query handles a Query message.
func (s *Session) query(ctx context.Context, frame []byte, planned bool) error {
	if !planned {
		s.track.push(relayed(clientQuery))
		return s.sw.write(frame)
	}
	sql := string(frame[5 : len(frame)-1])
	var res *rewrite.Result
	switch plan := s.plan(ctx, sql).(type) {
	case Refuse:
		// Refuse the whole text: the server runs a statement that raises
		// the error, so transaction state ends up exactly as Postgres
		// leaves it after a failed statement.
		return s.refuseQuery(plan.Err)
	case Console:
		s.track.push(expect(clientQuery, &fix{admin: true}))
		return s.writeQuery(plan.SQL)
	case Pass:
		if plan.Result == nil {
			s.track.push(relayed(clientQuery))
			return s.sw.write(frame)
		}
		res = plan.Result
	case Rewrite:
		res = plan.Result
	}
	if r := s.createAsRewritten(res); r != nil {
		return s.refuseQuery(r)
	}
	p := fix{res: res}
	out := res.SQL
	for i := range res.Statements {
		st := &res.Statements[i]
		switch {
		case st.Prepares != "" || st.Deallocates != "" || st.DeallocateAll || st.DiscardAll:
			if u := s.prepared.sqlRegister(st, i); u != nil {
				p.sqlUndo = append(p.sqlUndo, *u)
			}
		case st.ExecuteName != "":
			if o, ok := s.prepared.find(st.ExecuteName); ok {
				if p.execOut == nil {
					p.execOut = map[int]rewrite.Output{}
				}
				p.execOut[i] = o
			}
		}
		if st.Refusal != nil {
			// Statements before it run as usual; it raises the refusal
			// and the server stops there, as it would on any error.
			s.refused(st.Refusal)
			out = out[:st.Span.Start] + raiseStatement(st.Refusal) + out[st.Span.End:]
			break
		}
	}
	if !res.Changed && res.Refusal() == nil {
		// Sent as it came; its answer needs mending only for what the
		// registry knows (an EXECUTE of a rewritten PREPARE) or must
		// take back if the server fails a PREPARE or DEALLOCATE in it.
		if p.execOut == nil && p.sqlUndo == nil {
			s.track.push(relayed(clientQuery))
		} else {
			if p.execOut == nil {
				p.res = nil
			}
			s.track.push(expect(clientQuery, &p))
		}
		return s.sw.write(frame)
	}
	s.srv.cfg.Metrics.StatementsRewritten.Inc()
	if len(res.Statements) == 1 && res.Statements[0].Rewritten && s.TxStatus() == TxIdle {
		p.retry = &retry{sql: sql}
	}
	s.track.push(expect(clientQuery, &p))
	return s.writeQuery(out)
}

// parse handles a Parse message.
func (s *Session) parse(ctx context.Context, frame []byte, planned bool) error {
	body := frame[5:]
	name, rest, ok := cstring(body)
	end := bytes.IndexByte(rest, 0)
	if !ok || end < 0 {
		s.track.push(relayed(clientParse))
		return s.sw.write(frame)
	}
	undo, redefining := s.prepared.noteParse(name)
	var p *fix
	if undo != nil {
		p = &fix{undo: undo}
	}
	// What the registry will say about the statement: its output repair,
	// or nothing (keep false).
	var out rewrite.Output
	keep := false
	defer func() {
		// The server refuses to redefine a named statement (42P05): the
		// registry keeps what it says about the one that stays.
		if !redefining {
			s.prepared.setStatement(name, out, keep)
		}
	}()
	if !planned {
		s.track.push(expect(clientParse, p))
		return s.sw.write(frame)
	}
	var msg pgproto3.Parse
	if err := msg.Decode(body); err != nil {
		s.track.push(expect(clientParse, p))
		return s.sw.write(frame)
	}
	var res *rewrite.Result
	var refusal *pgerr.Error
	switch plan := s.plan(ctx, msg.Query).(type) {
	case Refuse:
		refusal = plan.Err
	case Console:
		// A console command prepared like any statement: it runs as the
		// SQL it stands for; errors carry no position into that SQL.
		p = p.orNew()
		p.admin = true
		s.track.push(expect(clientParse, p))
		msg.Query = plan.SQL
		return s.writeMsg(&msg)
	case Pass:
		if plan.Result != nil {
			refusal = s.createAsRewritten(plan.Result)
		}
		if refusal != nil {
			break
		}
		if plan.Result != nil && len(plan.Result.Statements) == 1 && plan.Result.Statements[0].ExecuteName != "" {
			// Parse("EXECUTE p") of a rewritten SQL-level PREPARE. (Any
			// other statement has no name to look up: "" is the unnamed
			// statement, which this Parse replaces.)
			out, keep = s.prepared.find(plan.Result.Statements[0].ExecuteName)
		}
		s.track.push(expect(clientParse, p))
		return s.sw.write(frame)
	case Rewrite:
		res = plan.Result
		refusal = res.Refusal()
		if refusal == nil {
			refusal = s.createAsRewritten(res)
		}
	}
	if refusal != nil {
		s.refused(refusal)
		p = p.orNew()
		p.refusal = refusal
		s.track.push(expect(clientParse, p))
		msg.Query = refusedParse
		return s.writeMsg(&msg)
	}
	if len(res.Statements) == 1 {
		out, keep = res.Statements[0].Output, true
		if !redefining {
			s.prepared.setOrigin(name, origin{msg.Query, msg.ParameterOIDs, res.Generation})
		}
	}
	s.srv.cfg.Metrics.StatementsRewritten.Inc()
	p = p.orNew()
	p.res = res
	s.track.push(expect(clientParse, p))
	msg.Query = res.SQL
	return s.writeMsg(&msg)
}
