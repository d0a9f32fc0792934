package edge

import (
	"context"
	"crypto/x509"
	"sync"
	"time"
)

// entry is the cached revocation answer about one certificate, with what a
// background refresh needs to ask again.
type entry struct {
	ans       Answer
	fetchedAt time.Time
	// refreshAt is when the answer must be asked for again: the soonest of
	// nextUpdate, the HTTP max-age and the edge's cap; the certificate's
	// notAfter for a revocation, which is final.
	refreshAt time.Time
	leaf      *x509.Certificate
	issuer    *x509.Certificate
}

// fresh reports whether e may be used at now without asking again.
func (e *entry) fresh(now time.Time) bool {
	return now.Before(e.refreshAt) && (e.ans.Status == StatusRevoked || now.Before(e.ans.NextUpdate))
}

// ageing reports whether e is in the last quarter of its cache life, when a
// use should trigger a refresh in the background.
func (e *entry) ageing(now time.Time) bool {
	if e.ans.Status == StatusRevoked {
		return false
	}
	life := e.refreshAt.Sub(e.fetchedAt)
	return e.refreshAt.Sub(now) < life/4
}

// cache holds the latest revocation answer per certificate. It is bounded:
// when full, expired entries go first, then arbitrary ones (the next use of
// an evicted certificate asks again, which is always safe).
type cache struct {
	mu  sync.RWMutex
	m   map[certKey]*entry
	max int
}

func newCache(max int) *cache {
	return &cache{m: make(map[certKey]*entry), max: max}
}

func (c *cache) get(k certKey) *entry {
	c.mu.RLock()
	e := c.m[k]
	c.mu.RUnlock()
	return e
}

func (c *cache) put(k certKey, e *entry, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[k]; !ok && len(c.m) >= c.max {
		for key, old := range c.m {
			if !now.Before(old.refreshAt) {
				delete(c.m, key)
			}
		}
		for key := range c.m {
			if len(c.m) < c.max*9/10 {
				break
			}
			delete(c.m, key)
		}
	}
	c.m[k] = e
}

func (c *cache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}

// flight lets at most one OCSP exchange per certificate be in flight: the
// callers that arrive while one runs wait for its result (a small
// singleflight). The exchange runs on its own goroutine with its own
// deadline, so a caller that gives up does not cancel it for the others.
type flight struct {
	mu    sync.Mutex
	calls map[certKey]*call
	wg    sync.WaitGroup // the exchanges running; tests wait on it
}

type call struct {
	done chan struct{}
	ans  Answer
	err  error
}

// start returns the exchange in flight for k, starting fn for it if there
// is none.
func (f *flight) start(k certKey, fn func() (Answer, error)) *call {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, ok := f.calls[k]; ok {
		return c
	}
	if f.calls == nil {
		f.calls = make(map[certKey]*call)
	}
	c := &call{done: make(chan struct{})}
	f.calls[k] = c
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		c.ans, c.err = fn()
		f.mu.Lock()
		delete(f.calls, k)
		f.mu.Unlock()
		close(c.done)
	}()
	return c
}

// wait returns the result of c, or ctx's error if ctx ends first.
func (c *call) wait(ctx context.Context) (Answer, error) {
	select {
	case <-c.done:
		return c.ans, c.err
	case <-ctx.Done():
		return Answer{}, ctx.Err()
	}
}
