package rewrite

import (
	"container/list"
	"sync"
)

// Cache is a bounded LRU cache of Rewrite results, safe for concurrent
// use. Entries are keyed by the SQL text, the catalog generation and the
// options (the client address is part of the rewritten text). Only a
// GenerationalCatalog can be cached against; other catalogs bypass the
// cache. Cached Results are shared and must not be modified.
type Cache struct {
	mu    sync.Mutex
	max   int
	bytes int // the texts held, keys and results
	ll    *list.List
	items map[cacheKey]*list.Element
}

// A client chooses the texts it sends: the cache holds none longer than
// cacheMaxSQL and at most cacheMaxBytes of text in all, so that no client
// can pin the proxy's memory with large distinct statements.
const (
	cacheMaxSQL   = 64 << 10
	cacheMaxBytes = 32 << 20
)

type cacheKey struct {
	sql        string
	generation uint64
	opt        Options
	// shape: sql is a shape's key, and the entry its template.
	shape bool
}

type cacheEntry struct {
	key  cacheKey
	res  *Result
	tpl  *template // a shape's (nil: the shape has none)
	size int
}

// NewCache returns a cache holding at most size results (at least 1).
func NewCache(size int) *Cache {
	return &Cache{max: max(size, 1), ll: list.New(), items: map[cacheKey]*list.Element{}}
}

// Rewrite is Rewrite with caching. Errors are not cached, nor texts
// longer than cacheMaxSQL. A text not seen before whose shape is (its
// constants aside, shape.go) is filled in from the shape's template.
func (c *Cache) Rewrite(sql string, cat Catalog, opt Options) (*Result, error) {
	gc, ok := cat.(GenerationalCatalog)
	if !ok || len(sql) > cacheMaxSQL {
		return Rewrite(sql, cat, opt)
	}
	key := cacheKey{sql: sql, generation: gc.Generation(), opt: opt}
	if e, ok := c.get(key); ok {
		return e.res, nil
	}
	sh, shaped := shapeOf(sql)
	skey := cacheKey{sql: sh.id(), generation: key.generation, opt: opt, shape: true}
	if shaped {
		if e, ok := c.get(skey); ok {
			if e.tpl == nil {
				shaped = false // a shape without a template
			} else {
				res := e.tpl.fill(sh, sql)
				res.Generation = key.generation
				return res, nil
			}
		}
	}
	res, err := Rewrite(sql, cat, opt)
	if err != nil {
		return nil, err
	}
	res.Generation = key.generation
	if shaped {
		// Made once per shape; a shape that has none is remembered too.
		tpl := newTemplate(sh, sql, res, cat, opt)
		size := len(sh.id())
		if tpl != nil {
			size += len(tpl.res.SQL)
		}
		c.put(&cacheEntry{key: skey, tpl: tpl, size: size})
	}
	size := len(sql)
	if res.SQL != sql {
		size += len(res.SQL)
	}
	return c.put(&cacheEntry{key: key, res: res, size: size}).res, nil
}

// Cached is Rewrite when the answer is in the cache already (the text's
// own, or its shape's template): no parse and no catalog look-up, so it
// never waits. false: Rewrite has work to do.
func (c *Cache) Cached(sql string, cat GenerationalCatalog, opt Options) (*Result, bool) {
	if len(sql) > cacheMaxSQL {
		return nil, false
	}
	key := cacheKey{sql: sql, generation: cat.Generation(), opt: opt}
	if e, ok := c.get(key); ok {
		return e.res, true
	}
	sh, ok := shapeOf(sql)
	if !ok {
		return nil, false
	}
	e, ok := c.get(cacheKey{sql: sh.id(), generation: key.generation, opt: opt, shape: true})
	if !ok || e.tpl == nil {
		return nil, false
	}
	res := e.tpl.fill(sh, sql)
	res.Generation = key.generation
	return res, true
}

// get returns the entry of key, marking it used.
func (c *Cache) get(key cacheKey) (*cacheEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.items[key]
	if !ok {
		return nil, false
	}
	c.ll.MoveToFront(e)
	return e.Value.(*cacheEntry), true
}

// put adds e unless its key is there already, and returns the entry
// kept; the least recently used go beyond the bounds.
func (c *Cache) put(e *cacheEntry) *cacheEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.items[e.key]; ok {
		c.ll.MoveToFront(old)
		return old.Value.(*cacheEntry)
	}
	c.items[e.key] = c.ll.PushFront(e)
	c.bytes += e.size
	for c.ll.Len() > c.max || c.bytes > cacheMaxBytes {
		old := c.ll.Back()
		c.ll.Remove(old)
		oe := old.Value.(*cacheEntry)
		delete(c.items, oe.key)
		c.bytes -= oe.size
	}
	return e
}

// Bytes returns the length of the texts the cache holds.
func (c *Cache) Bytes() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bytes
}

// Len returns the number of cached results and shape templates.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len()
}
