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
}

type cacheEntry struct {
	key  cacheKey
	res  *Result
	size int
}

// NewCache returns a cache holding at most size results (at least 1).
func NewCache(size int) *Cache {
	return &Cache{max: max(size, 1), ll: list.New(), items: map[cacheKey]*list.Element{}}
}

// Rewrite is Rewrite with caching. Errors are not cached, nor texts
// longer than cacheMaxSQL.
func (c *Cache) Rewrite(sql string, cat Catalog, opt Options) (*Result, error) {
	gc, ok := cat.(GenerationalCatalog)
	if !ok || len(sql) > cacheMaxSQL {
		return Rewrite(sql, cat, opt)
	}
	key := cacheKey{sql, gc.Generation(), opt}
	c.mu.Lock()
	if e, ok := c.items[key]; ok {
		c.ll.MoveToFront(e)
		res := e.Value.(*cacheEntry).res
		c.mu.Unlock()
		return res, nil
	}
	c.mu.Unlock()

	res, err := Rewrite(sql, cat, opt)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[key]; ok {
		c.ll.MoveToFront(e)
		return e.Value.(*cacheEntry).res, nil
	}
	size := len(sql)
	if res.SQL != sql {
		size += len(res.SQL)
	}
	c.items[key] = c.ll.PushFront(&cacheEntry{key, res, size})
	c.bytes += size
	for c.ll.Len() > c.max || c.bytes > cacheMaxBytes {
		old := c.ll.Back()
		c.ll.Remove(old)
		e := old.Value.(*cacheEntry)
		delete(c.items, e.key)
		c.bytes -= e.size
	}
	return res, nil
}

// Bytes returns the length of the texts the cache holds.
func (c *Cache) Bytes() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bytes
}

// Len returns the number of cached results.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len()
}
