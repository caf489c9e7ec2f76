package proxy

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sync/semaphore"

	"github.com/jackc/pgerrcode"
	"github.com/tombstone-proxy/tombstone/console"
	"github.com/tombstone-proxy/tombstone/pgerr"
	"github.com/tombstone-proxy/tombstone/rewrite"
)

// Planner decides what the proxy does with the statement text of a Query or
// Parse message: pass it through, rewrite it, refuse it, or run it as a
// console command.
type Planner interface {
	// Wants is a cheap pre-check on the raw text: false means the text
	// certainly passes through untouched and Plan is not called.
	Wants(sql []byte) bool
	// Plan says what happens to req.SQL (nil is Pass{}).
	Plan(ctx context.Context, req Request) Plan
}

// Request is what the planner is asked: a statement text, and the little
// of the session that sent it the plan depends on.
type Request struct {
	SQL      string
	Database string
	// ClientAddr is the client's address (host:port), recorded in the
	// batches its deletes make.
	ClientAddr string
	// Lexing is how the server reads the text (Lexing.check).
	Lexing Lexing
}

// Plan is what happens to one statement text: Pass, Rewrite, Refuse or
// Console.
type Plan interface{ isPlan() }

// Pass: the text goes to the server as it came. Result, when not nil,
// says what its statements prepare, deallocate and execute: the registry
// follows the SQL-level PREPAREs and EXECUTEs of rewritten statements.
type Pass struct{ Result *rewrite.Result }

// Rewrite: Result.SQL goes in the text's place, and the answers are
// repaired as its statements' Outputs say. One of its statements may be
// refused (rewrite.Statement.Refusal): those before it run, as they would
// before any failing statement.
type Rewrite struct{ Result *rewrite.Result }

// Refuse: nothing of the text runs; the client gets Err, and its
// transaction is left as a failed statement leaves it.
type Refuse struct{ Err *pgerr.Error }

// Console: a console command; SQL is what runs in its place (its errors
// carry no position into that SQL).
type Console struct{ SQL string }

func (Pass) isPlan()    {}
func (Rewrite) isPlan() {}
func (Refuse) isPlan()  {}
func (Console) isPlan() {}

// planOf is the plan of a rewrite's result: Pass when it changes nothing.
func planOf(res *rewrite.Result) Plan {
	if res.Changed || res.Refusal() != nil {
		return Rewrite{res}
	}
	return Pass{res}
}

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
	PlanCached(req Request) (Plan, bool)
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
	// Trial, when set, trial-parses long statements before the planner
	// parses them (rewrite.CheckNesting).
	Trial *rewrite.Trial
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
	// inForce holds, per database, the TRUNCATE and DROP TABLE policies
	// of its last catalog ([2]string), for plans made without one.
	inForce sync.Map
}

// policyCatalog is a catalog that knows the TRUNCATE and DROP TABLE
// policies in force in its database (tombstone.Catalog): those, not the
// proxy's own configuration, decide what its statements become, so
// that every proxy in front of a database plans by the same rules.
type policyCatalog interface {
	Policies() (truncate, drop string)
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
func (p *planner) PlanCached(req Request) (Plan, bool) {
	fc, ok := p.cats.(FreshCatalogs)
	if !ok || len(req.SQL) > inlinePlanBytes || console.Is([]byte(req.SQL)) || req.Lexing.check(req.SQL) != nil {
		return nil, false
	}
	cat, ok := fc.Fresh(req.Database)
	if !ok {
		return nil, false
	}
	res, ok := p.cache.Cached(req.SQL, cat, p.options(req, cat))
	if !ok {
		return nil, false
	}
	for _, st := range res.Statements {
		if st.ReleasesDatabase != "" {
			return nil, false
		}
	}
	return planOf(res), true
}

// latestGeneration is the newest catalog generation loaded (0: not
// known); freshGeneration that of s's database, if fresh.
func (p *planner) latestGeneration() uint64 {
	if fc, ok := p.cats.(FreshCatalogs); ok {
		return fc.Latest()
	}
	return 0
}

func (p *planner) freshGeneration(database string) uint64 {
	if fc, ok := p.cats.(FreshCatalogs); ok {
		if cat, ok := fc.Fresh(database); ok {
			return cat.Generation()
		}
	}
	return 0
}

// options are the rewrite options of req under the policies in force in
// its database: cat's, or (cat nil) those of the last catalog the
// planner had of it; the proxy's configured ones only where the database
// has told it nothing yet.
func (p *planner) options(req Request, cat rewrite.Catalog) rewrite.Options {
	opt := rewrite.Options{ClientAddr: clientHost(req.ClientAddr), Truncate: p.pol.Truncate, Drop: p.pol.Drop,
		RequireWhere: p.pol.RequireWhere, MaxRows: p.pol.MaxRows, Trial: p.pol.Trial}
	var inForce [2]string
	if pc, ok := cat.(policyCatalog); ok {
		t, d := pc.Policies()
		// (Nothing stored: the database's defaults, as its procedures
		// take them.)
		inForce = [2]string{cmp.Or(t, rewrite.PolicyCapture), cmp.Or(d, rewrite.PolicyTrash)}
		if v, ok := p.inForce.Load(req.Database); !ok || v.([2]string) != inForce {
			p.inForce.Store(req.Database, inForce)
		}
	} else if v, ok := p.inForce.Load(req.Database); ok {
		inForce = v.([2]string)
	} else {
		return opt
	}
	opt.Truncate, opt.Drop = inForce[0], inForce[1]
	return opt
}

// Plan implements Planner.
func (p *planner) Plan(ctx context.Context, req Request) Plan {
	plan, err := p.plan(ctx, req)
	if err != nil {
		return Refuse{refusalOf(err)}
	}
	return plan
}

func (p *planner) plan(ctx context.Context, req Request) (Plan, error) {
	sql := req.SQL
	if len(sql) > p.pol.PlanBytes {
		return p.tooLarge(req)
	}
	if e := req.Lexing.check(sql); e != nil {
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
		plan, err := consolePlan(sql, p.pol.Trial)
		if err == nil {
			// The store is installed with a database's first catalog: a
			// command that comes first (FREEZE DELETES on a database
			// nothing was deleted in yet) needs it too. Failing, the
			// command reports what is missing itself.
			_, _ = p.cats.Catalog(ctx, req.Database)
		}
		return plan, err
	}
	if res, ok := p.planStale(req, sql); ok {
		p.release(res)
		return planOf(res), nil
	}
	cat, err := p.cats.Catalog(ctx, req.Database)
	opt := p.options(req, cat)
	if err != nil {
		// Without a catalog nothing can be called protected or not: parse
		// anyway, and refuse only if a statement would remove rows.
		probe := &blindCatalog{}
		res, rerr := rewrite.Rewrite(sql, probe, opt)
		if rerr != nil && !probe.asked {
			return nil, rerr // refused before any table mattered (nested too deeply)
		}
		if rerr != nil || probe.asked {
			return nil, &pgerr.Error{Code: pgerrcode.ObjectNotInPrerequisiteState, Message: "tombstone: cannot capture deletes in this database: " + err.Error(),
				Hint: "Run `tombstone init` for this database, or check the proxy's control_dsn; the statement was not run.", Err: err}
		}
		return planOf(res), nil
	}
	res, err := p.cache.Rewrite(sql, cat, opt)
	if err != nil {
		return nil, err
	}
	p.release(res)
	return planOf(res), nil
}

// planStale plans sql without waiting for its database's catalog when
// that is loaded but stale (DDL since: each statement of a migration or a
// test suite would otherwise wait for a load, a few hundred milliseconds
// in a database of a few hundred tables) and the rewrite asks about no
// table: then what it makes of sql does not depend on the catalog (it
// removes no rows a catalog could call protected; a DROP TABLE goes to
// trash_tables, which asks the database). Its result has no generation:
// nothing about it goes out of date.
func (p *planner) planStale(req Request, sql string) (*rewrite.Result, bool) {
	sc, ok := p.cats.(StaleCatalogs)
	if !ok || !sc.Stale(req.Database) {
		return nil, false
	}
	opt := p.options(req, nil)
	if _, known := p.inForce.Load(req.Database); !known {
		// The database's policies are not known yet: never let a
		// TRUNCATE or DROP TABLE through uncaptured on the proxy's own
		// say. (capture_truncate reads the stored policy itself; a DROP
		// TABLE the database would allow goes to the trash.)
		opt.Truncate, opt.Drop = rewrite.PolicyCapture, rewrite.PolicyTrash
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
func (p *planner) tooLarge(req Request) (Plan, error) {
	sql := req.SQL
	defer returnMemory() // the frame and its text
	if !ascii(sql) {
		if e := req.Lexing.nonASCII(); e != nil {
			return nil, e
		}
	}
	if !console.Is([]byte(sql)) && !rewrite.MayRemoveRowsOutsideLiterals(sql) {
		return Pass{}, nil
	}
	return nil, &pgerr.Error{Code: pgerrcode.ProgramLimitExceeded,
		Message: fmt.Sprintf("tombstone: a statement of %d bytes that may remove rows is too long to plan (limits.plan_bytes is %d)", len(sql), p.pol.PlanBytes),
		Hint:    "Split it into shorter statements, or raise limits.plan_bytes (planning holds about 250 bytes of proxy memory per byte of text). The statement was not run."}
}

// consolePlan turns a console command into the statement that runs it.
func consolePlan(sql string, trial *rewrite.Trial) (Plan, error) {
	cmd, err := console.Parse(sql, trial)
	if err != nil {
		return nil, err
	}
	switch cmd.Name {
	case "RESET BREAKER":
		return nil, &pgerr.Error{Code: pgerrcode.FeatureNotSupported, Message: "tombstone: " + cmd.Name + " is not available in this version",
			Hint: "The delete-rate breaker is not built yet; FREEZE DELETES stops every delete of a protected table. TOMBSTONE HELP lists the commands."}
	}
	return Console{SQL: cmd.SQL}, nil
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
