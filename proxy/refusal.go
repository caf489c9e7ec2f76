package proxy

import (
	"errors"
	"fmt"
	"strings"

	"go.uber.org/zap"

	"github.com/jackc/pgerrcode"
	"github.com/tombstone-proxy/tombstone/pgerr"
	"github.com/tombstone-proxy/tombstone/rewrite"
)

// refusedParse is sent in place of a refused Parse: the server fails it at
// parse time (no such function — and nobody can create one in pg_catalog),
// entering the same error state Postgres would be in, and the proxy
// replaces that error with the refusal. Inside a failed transaction the
// server answers 25P02 first, as it would have for the original.
const refusedParse = "SELECT pg_catalog.tombstone_refused()"

// refused logs and counts a refusal.
func (s *Session) refused(r *pgerr.Error) {
	s.log.Info("statement refused", zap.String("sqlstate", r.Code), zap.String("reason", r.Message))
	s.srv.cfg.Metrics.Refusals.WithLabelValues(r.Code).Inc()
}

// refuseQuery sends, in place of a Query, a statement that raises r.
func (s *Session) refuseQuery(r *pgerr.Error) error {
	s.refused(r)
	s.track.push(expect(clientQuery, &fix{refusal: r}))
	return s.writeQuery(raiseStatement(r))
}

// createAsRewritten refuses a CREATE TABLE … AS EXECUTE of a rewritten
// prepared DELETE … RETURNING as Postgres refuses one of any DELETE
// (42809): rewritten, it is a SELECT, and the new table would get the
// hidden capture column. The whole Query is refused, as a syntax error
// would be (nil: nothing to refuse).
func (s *Session) createAsRewritten(res *rewrite.Result) *pgerr.Error {
	for _, st := range res.Statements {
		if st.CreateAsExecute == "" {
			continue
		}
		if _, rewritten := s.prepared.find(st.CreateAsExecute); rewritten {
			return &pgerr.Error{Code: pgerrcode.WrongObjectType, Message: "prepared statement is not a SELECT"}
		}
	}
	return nil
}

// refusalOf turns a planning error into the error the client sees.
func refusalOf(err error) *pgerr.Error {
	var re *pgerr.Error
	if errors.As(err, &re) {
		return re
	}
	if pe, ok := pgerr.As(err); ok {
		return &pgerr.Error{Code: pe.Code, Message: pe.Message, Detail: pe.Detail, Hint: pe.Hint}
	}
	return &pgerr.Error{Code: pgerrcode.InternalError, Message: "tombstone: " + err.Error(),
		Hint: "The statement was not run because its deleted rows could not be captured safely."}
}

// raiseStatement returns a DO statement that raises e on the server. The
// message goes in as escaped string literals inside a dollar-quoted body
// whose tag does not occur in it.
func raiseStatement(e *pgerr.Error) string {
	lit := func(s string) string {
		return "E'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
	}
	code := e.Code
	if len(code) != 5 {
		code = pgerrcode.InternalError
	}
	opts := "ERRCODE = " + lit(code) + ", MESSAGE = " + lit(e.Message)
	if e.Detail != "" {
		opts += ", DETAIL = " + lit(e.Detail)
	}
	if e.Hint != "" {
		opts += ", HINT = " + lit(e.Hint)
	}
	body := "BEGIN RAISE EXCEPTION USING " + opts + "; END"
	tag := "$ts$"
	for i := 0; strings.Contains(body, tag); i++ {
		tag = fmt.Sprintf("$ts%d$", i)
	}
	return "DO " + tag + body + tag
}
