package proxy

import (
	"context"
	"errors"
	"net"
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

// Policies are the TRUNCATE and DROP TABLE policies (rewrite.Policy…) and
// the delete guards.
type Policies struct {
	Truncate     string
	Drop         string
	RequireWhere bool  // refuse DELETE without WHERE unless confirmed
	MaxRows      int64 // abort larger DELETEs unless confirmed; 0: no limit
}

// NewPlanner returns the standard Planner: console commands first, then
// the rewrite of statements that may remove rows from protected tables.
// cache may be shared by many proxies' sessions.
func NewPlanner(cats Catalogs, cache *rewrite.Cache, pol Policies) Planner {
	return &planner{cats: cats, cache: cache, pol: pol}
}

type planner struct {
	cats  Catalogs
	cache *rewrite.Cache
	pol   Policies
}

// Wants implements Planner.
func (p *planner) Wants(sql []byte) bool {
	// MayRemoveRows does not keep the string, so a view of the bytes is
	// enough: no copy on the hot path.
	return console.Is(sql) || rewrite.MayRemoveRows(unsafe.String(unsafe.SliceData(sql), len(sql)))
}

// Plan implements Planner.
func (p *planner) Plan(ctx context.Context, s *Session, sql string, extended bool) (*Plan, error) {
	if e := s.lexing.check(sql, s.track.settled()); e != nil {
		return nil, e
	}
	if console.Is([]byte(sql)) {
		return consolePlan(sql)
	}
	opt := rewrite.Options{ClientAddr: clientHost(s.ClientAddr), Truncate: p.pol.Truncate, Drop: p.pol.Drop,
		RequireWhere: p.pol.RequireWhere, MaxRows: p.pol.MaxRows}
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
	return &Plan{Result: res}, nil
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

// blindCatalog stands in for a catalog that could not be loaded; it
// records whether the rewrite needed to know about any table.
type blindCatalog struct{ asked bool }

func (b *blindCatalog) Lookup(schema, name string) (*rewrite.Table, bool) {
	b.asked = true
	return nil, false
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
