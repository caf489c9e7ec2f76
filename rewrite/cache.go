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
	ll    *list.List
	items map[cacheKey]*list.Element
}

type cacheKey struct {
	sql        string
	generation uint64
	opt        Options
}

type cacheEntry struct {
	key cacheKey
	res *Result
}

// NewCache returns a cache holding at most size results (at least 1).
func NewCache(size int) *Cache {
	return &Cache{max: max(size, 1), ll: list.New(), items: map[cacheKey]*list.Element{}}
}

// Rewrite is Rewrite with caching. Errors are not cached.
func (c *Cache) Rewrite(sql string, cat Catalog, opt Options) (*Result, error) {
	gc, ok := cat.(GenerationalCatalog)
	if !ok {
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
	c.items[key] = c.ll.PushFront(&cacheEntry{key, res})
	for c.ll.Len() > c.max {
		old := c.ll.Back()
		c.ll.Remove(old)
		delete(c.items, old.Value.(*cacheEntry).key)
	}
	return res, nil
}

// Len returns the number of cached results.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len()
}
