package proxy

import (
	"context"
	"errors"
	"fmt"
	"golang.org/x/sync/semaphore"
	"net"
	"runtime/debug"
	"sync/atomic"
	"unsafe"

	"github.com/tombstone-proxy/tombstone/console"
	"github.com/tombstone-proxy/tombstone/rewrite"
)

// Catalogs gives the protected-table catalog of a database.
type Catalogs interface {
	// Catalog returns the catalog of database. An error means it cannot
	// be known right now; the proxy then refuses statements that would
	// remove rows rather than let them through uncaptured.
	Catalog(ctx context.Context, database string) (rewrite.GenerationalCatalog, error)
}

// FreshCatalogs is a Catalogs that can also answer without waiting
// (tombstone.Catalogs): the catalog as loaded, if it is not known to be
// stale.
type FreshCatalogs interface {
	Fresh(database string) (rewrite.GenerationalCatalog, bool)
	// Latest is the newest generation loaded, of any database.
	Latest() uint64
}

// StaleCatalogs is a Catalogs that can tell that a database's catalog
// is loaded but known to be out of date (tombstone.Catalogs).
type StaleCatalogs interface {
	Stale(database string) bool
}

// cachedPlanner plans, without waiting on anything, the statements whose
// plan is at hand: the event loop runs those itself instead of handing
// the session to its goroutines.
type cachedPlanner interface {
	PlanCached(s *Session, sql string) (*Plan, bool)
}

// Policies are the TRUNCATE and DROP TABLE policies (rewrite.Policy…) and
// the delete guards.
type Policies struct {
	Truncate     string
	Drop         string
	RequireWhere bool  // refuse DELETE without WHERE unless confirmed
	MaxRows      int64 // abort larger DELETEs unless confirmed; 0: no limit
	// PlanBytes bounds the text of one statement the planner parses
	// (limits.plan_bytes; 0: DefaultPlanBytes). Longer text that may
	// remove rows is refused; longer text that cannot is passed on.
	PlanBytes int
	// PlanBudgetBytes bounds the text all sessions' planners parse at
	// once (limits.plan_budget_bytes; 0: DefaultPlanBudgetBytes); more
	// waits its turn.
	PlanBudgetBytes int
}

// Parsing and rewriting a statement takes about 200–600 bytes of memory
// per byte of text, the more the denser its tokens (pg_query's tree in C
// and in Go, the rewritten copy), so these bound what planning holds: by
// default about 300 MB for one statement and 600 MB for the whole process
// at worst.
const (
	DefaultPlanBytes       = 512 << 10
	DefaultPlanBudgetBytes = 1 << 20
)

// NewPlanner returns the standard Planner: console commands first, then
// the rewrite of statements that may remove rows from protected tables.
// cache may be shared by many proxies' sessions.
func NewPlanner(cats Catalogs, cache *rewrite.Cache, pol Policies) Planner {
	if pol.PlanBytes <= 0 {
		pol.PlanBytes = DefaultPlanBytes
	}
	if pol.PlanBudgetBytes <= 0 {
		pol.PlanBudgetBytes = DefaultPlanBudgetBytes
	}
	pol.PlanBudgetBytes = max(pol.PlanBudgetBytes, pol.PlanBytes)
	return &planner{cats: cats, cache: cache, pol: pol, budget: semaphore.NewWeighted(int64(pol.PlanBudgetBytes))}
}

type planner struct {
	cats   Catalogs
	cache  *rewrite.Cache
	pol    Policies
	budget *semaphore.Weighted
}

// Wants implements Planner.
func (p *planner) Wants(sql []byte) bool {
	// MayRemoveRows does not keep the string, so a view of the bytes is
	// enough: no copy on the hot path.
	return console.Is(sql) || rewrite.MayRemoveRows(unsafe.String(unsafe.SliceData(sql), len(sql)))
}

// inlinePlanBytes bounds the texts the event loop plans itself.
const inlinePlanBytes = 8 << 10

// PlanCached implements cachedPlanner: a text the rewrite cache has
// (itself or its shape), against a fresh catalog; nothing that would
// block, parse at length or release a database.
func (p *planner) PlanCached(s *Session, sql string) (*Plan, bool) {
	fc, ok := p.cats.(FreshCatalogs)
	if !ok || len(sql) > inlinePlanBytes || console.Is([]byte(sql)) || s.lexing.check(sql, s.track.settled()) != nil {
		return nil, false
	}
	cat, ok := fc.Fresh(s.Params["database"])
	if !ok {
		return nil, false
	}
	res, ok := p.cache.Cached(sql, cat, p.options(s))
	if !ok {
		return nil, false
	}
	for _, st := range res.Statements {
		if st.ReleasesDatabase != "" {
			return nil, false
		}
	}
	return &Plan{Result: res}, true
}

// latestGeneration is the newest catalog generation loaded (0: not
// known); freshGeneration that of s's database, if fresh.
func (p *planner) latestGeneration() uint64 {
	if fc, ok := p.cats.(FreshCatalogs); ok {
		return fc.Latest()
	}
	return 0
}

func (p *planner) freshGeneration(s *Session) uint64 {
	if fc, ok := p.cats.(FreshCatalogs); ok {
		if cat, ok := fc.Fresh(s.Params["database"]); ok {
			return cat.Generation()
		}
	}
	return 0
}

// options are the rewrite options of session s.
func (p *planner) options(s *Session) rewrite.Options {
	return rewrite.Options{ClientAddr: clientHost(s.ClientAddr), Truncate: p.pol.Truncate, Drop: p.pol.Drop,
		RequireWhere: p.pol.RequireWhere, MaxRows: p.pol.MaxRows}
}

// Plan implements Planner.
func (p *planner) Plan(ctx context.Context, s *Session, sql string, extended bool) (*Plan, error) {
	if len(sql) > p.pol.PlanBytes {
		return p.tooLarge(s, sql)
	}
	if e := s.lexing.check(sql, s.track.settled()); e != nil {
		return nil, e
	}
	if err := p.budget.Acquire(ctx, int64(len(sql))); err != nil {
		return nil, err
	}
	defer p.budget.Release(int64(len(sql)))
	if len(sql) >= returnMemoryOver {
		defer returnMemory()
	}
	if console.Is([]byte(sql)) {
		return consolePlan(sql)
	}
	opt := p.options(s)
	if res, ok := p.planStale(s, sql, opt); ok {
		p.release(res)
		return &Plan{Result: res}, nil
	}
	cat, err := p.cats.Catalog(ctx, s.Params["database"])
	if err != nil {
		// Without a catalog nothing can be called protected or not: parse
		// anyway, and refuse only if a statement would remove rows.
		probe := &blindCatalog{}
		res, rerr := rewrite.Rewrite(sql, probe, opt)
		if rerr != nil && !probe.asked {
			return nil, rerr // refused before any table mattered (nested too deeply)
		}
		if rerr != nil || probe.asked {
			return nil, &Error{Code: "55000", Message: "tombstone: cannot capture deletes in this database: " + err.Error(),
				Hint: "Run `tombstone init` for this database, or check the proxy's control_dsn; the statement was not run.", Err: err}
		}
		return &Plan{Result: res}, nil
	}
	res, err := p.cache.Rewrite(sql, cat, opt)
	if err != nil {
		return nil, err
	}
	p.release(res)
	return &Plan{Result: res}, nil
}

// planStale plans sql without waiting for its database's catalog when
// that is loaded but stale (DDL since: each statement of a migration or a
// test suite would otherwise wait for a load, a few hundred milliseconds
// in a database of a few hundred tables) and the rewrite asks about no
// table: then what it makes of sql does not depend on the catalog (it
// removes no rows a catalog could call protected; a DROP TABLE goes to
// trash_tables, which asks the database). Its result has no generation:
// nothing about it goes out of date.
func (p *planner) planStale(s *Session, sql string, opt rewrite.Options) (*rewrite.Result, bool) {
	sc, ok := p.cats.(StaleCatalogs)
	if !ok || !sc.Stale(s.Params["database"]) {
		return nil, false
	}
	probe := &blindCatalog{}
	res, err := rewrite.Rewrite(sql, probe, opt)
	if err != nil || probe.asked {
		return nil, false
	}
	return res, true
}

// Releaser is a Catalogs that keeps connections to the databases it
// knows (a LISTEN for catalog changes), and lets go of one on request.
type Releaser interface {
	Release(database string)
}

// release lets go of the proxy's own connections to a database the
// statement drops or renames: Postgres refuses while any session is
// connected to it (it waits five seconds for them to leave).
func (p *planner) release(res *rewrite.Result) {
	r, ok := p.cats.(Releaser)
	if !ok || res == nil {
		return
	}
	for _, st := range res.Statements {
		if st.ReleasesDatabase != "" {
			r.Release(st.ReleasesDatabase)
		}
	}
}

// returnMemoryOver is the text length from which planning is followed by
// returnMemory: the parse trees of such a text are hundreds of megabytes
// the runtime would otherwise keep from the system for minutes.
const returnMemoryOver = 256 << 10

var returning atomic.Bool

// returnMemory hands memory no longer in use back to the system, once at
// a time, in the background.
func returnMemory() {
	if returning.Swap(true) {
		return
	}
	go func() {
		defer returning.Store(false)
		debug.FreeOSMemory()
	}()
}

// tooLarge plans a text longer than PlanBytes without parsing it: passed
// on unchanged when it holds no keyword of a statement that may remove
// rows outside its constants, comments and quoted names (read as the
// server will: UTF-8, standard strings), refused (54000) otherwise.
func (p *planner) tooLarge(s *Session, sql string) (*Plan, error) {
	defer returnMemory() // the frame and its text
	if !ascii(sql) {
		if e := s.lexing.nonASCII(s.track.settled()); e != nil {
			return nil, e
		}
	}
	if !console.Is([]byte(sql)) && !rewrite.MayRemoveRowsOutsideLiterals(sql) {
		return &Plan{Result: &rewrite.Result{SQL: sql}}, nil
	}
	return nil, &Error{Code: "54000",
		Message: fmt.Sprintf("tombstone: a statement of %d bytes that may remove rows is too long to plan (limits.plan_bytes is %d)", len(sql), p.pol.PlanBytes),
		Hint:    "Split it into shorter statements, or raise limits.plan_bytes (planning holds about 250 bytes of proxy memory per byte of text). The statement was not run."}
}

// consolePlan turns a console command into the statement that runs it.
func consolePlan(sql string) (*Plan, error) {
	cmd, err := console.Parse(sql)
	if err != nil {
		var ce *console.Error
		if errors.As(err, &ce) {
			return nil, &Error{Code: ce.Code, Message: ce.Message, Hint: ce.Hint}
		}
		return nil, err
	}
	switch cmd.Name {
	case "FREEZE DELETES", "THAW DELETES", "RESET BREAKER":
		return nil, &Error{Code: CodeFeatureNotSupported, Message: "tombstone: " + cmd.Name + " is not available in this version",
			Hint: "Fleet-wide delete guards come with the coordination layer; TOMBSTONE HELP lists the commands."}
	}
	return &Plan{Admin: true, Result: &rewrite.Result{Changed: true, SQL: cmd.SQL}}, nil
}

// blindCatalog stands in for a catalog that could not be loaded, or is
// stale; it records whether the rewrite needed to know about any table or
// schema.
type blindCatalog struct{ asked bool }

func (b *blindCatalog) Lookup(schema, name string) (*rewrite.Table, bool) {
	b.asked = true
	return nil, false
}

func (b *blindCatalog) Cascading(schema, name string) (*rewrite.Table, bool) {
	b.asked = true
	return nil, false
}

func (b *blindCatalog) HoldsProtected(schema string) bool {
	b.asked = true
	return false
}

// clientHost returns the IP of a client address: batches record where a
// delete came from, and leaving out the port keeps rewrites cacheable
// across that client's connections.
func clientHost(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}
