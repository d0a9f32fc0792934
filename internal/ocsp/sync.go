package ocsp

import (
	"context"
	"errors"
	"time"

	"github.com/pkid/pkid/internal/pki"
)

// Run loads every unexpired response into the cache and keeps it in step
// with the database until ctx ends:
//
//   - it listens on the pkid_ocsp channel, on a connection of its own, and
//     reloads the serial that each notification names (a revocation on any
//     node reaches this one in milliseconds);
//   - every CatchUpInterval it reads the responses written since the newest
//     it has seen (less CatchUpMargin), so that a notification lost while
//     the connection was down, or never sent (issuance and re-signing do not
//     notify), arrives within the interval;
//   - every minute it drops the entries past their nextUpdate.
//
// When the database is down it keeps serving what it holds, retries with
// backoff, and catches up as soon as the LISTEN is back. Failures are logged
// when they start and when they end, not on every retry.
func (c *Cache) Run(ctx context.Context) {
	kick := make(chan struct{}, 1)
	notes := make(chan pki.Serial, notifyQueue)
	done := make(chan struct{}, 2)
	go func() { c.listen(ctx, kick, notes); done <- struct{}{} }()
	go func() { c.applyNotifications(ctx, notes, kick); done <- struct{}{} }()
	defer func() { <-done; <-done }()

	if !c.loadRetrying(ctx) {
		return
	}
	catchUp := time.NewTicker(c.opts.CatchUpInterval)
	defer catchUp.Stop()
	sweep := time.NewTicker(time.Minute)
	defer sweep.Stop()
	var failing bool
	for {
		select {
		case <-ctx.Done():
			return
		case <-catchUp.C:
		case <-kick:
		case <-sweep.C:
			if n := c.sweep(c.opts.Now()); n > 0 {
				c.opts.Log.Debug("dropped OCSP responses past their nextUpdate", "count", n)
			}
			continue
		}
		err := c.catchUp(ctx)
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			c.opts.Log.Warn("OCSP catch-up failed; serving what the cache holds and retrying", "error", err)
			failing = true
		case err == nil && failing:
			c.opts.Log.Info("OCSP catch-up works again")
			failing = false
		}
	}
}

// notifyQueue is how many notified serials may wait to be reloaded. Beyond
// that (a mass revocation), a catch-up reads them in pages instead.
const notifyQueue = 4096

// catchUpPage is how many changed responses a catch-up reads per query.
const catchUpPage = 1000

// Backoff between attempts to reach a database that is down.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// loadRetrying loads every unexpired response, retrying with backoff until
// it succeeds (true) or ctx ends (false).
func (c *Cache) loadRetrying(ctx context.Context) bool {
	backoff := minBackoff
	for attempt := 1; ; attempt++ {
		start := time.Now()
		n, err := c.load(ctx)
		if err == nil {
			c.loaded.Store(true)
			c.opts.Log.Info("loaded the OCSP responses", "count", n, "cached", c.Len(),
				"duration", time.Since(start), "attempts", attempt)
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		if attempt == 1 {
			c.opts.Log.Warn("loading the OCSP responses failed; answering from the database until it works", "error", err)
		}
		if !sleep(ctx, backoff) {
			return false
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// load streams every unexpired response into the cache and sets the
// catch-up cursor to the newest one seen.
func (c *Cache) load(ctx context.Context) (int, error) {
	n := 0
	newest := c.cursor
	err := c.st.EachOCSPResponse(ctx, c.opts.Now(), func(r *pki.OCSPResponse) error {
		if c.installStored(r) {
			n++
		}
		if r.UpdatedAt.After(newest) {
			newest = r.UpdatedAt
		}
		return nil
	})
	c.cursor = newest
	return n, err
}

// installStored installs a response read from the database, logging (with
// a rate limit) one that cannot be served.
//
// Much of what a catch-up reads is already held: every response this node
// wrote (a first response, a revocation's, a re-signed batch) was installed
// before its write was read back, and each catch-up reads again the last
// CatchUpMargin of writes. Such a
// response differs from the entry at most in its UpdatedAt, so it skips
// newEntry's parse, hash and formatting; the cache ends as newEntry and put
// would leave it.
func (c *Cache) installStored(r *pki.OCSPResponse) bool {
	if k, ok := keyFromSerial(r.Serial); ok {
		if cur := c.get(k); cur != nil && cur.sameResponse(r) {
			if r.UpdatedAt.After(cur.updatedAt) {
				c.put(cur.restamped(r))
			} else {
				c.neg.forget(k)
			}
			return true
		}
	}
	e, err := newEntry(r)
	if err != nil {
		c.errLog.log(c.opts.Log, c.opts.Now(), "stored OCSP response cannot be served", "serial", r.Serial, "error", err)
		return false
	}
	c.put(e)
	return true
}

// catchUp reads, page by page, the responses written since the cursor less
// the margin, and installs those still valid; versions the cache holds
// already are left as they are.
func (c *Cache) catchUp(ctx context.Context) error {
	since, after := c.cursor.Add(-c.opts.CatchUpMargin), pki.Serial("")
	if c.cursor.IsZero() {
		since = time.Time{}
	}
	newest := c.cursor
	for {
		page, err := c.st.OCSPResponsesSince(ctx, since, after, catchUpPage)
		if err != nil {
			return err
		}
		now := c.opts.Now()
		for _, r := range page {
			if r.UpdatedAt.After(newest) {
				newest = r.UpdatedAt
			}
			// As at start-up: a response past its nextUpdate is never
			// served, so it is not held either.
			if now.Before(r.NextUpdate) {
				c.installStored(r)
			}
		}
		if len(page) < catchUpPage {
			c.cursor = newest
			return nil
		}
		last := page[len(page)-1]
		since, after = last.UpdatedAt, last.Serial
	}
}

// listen keeps a LISTEN on the pkid_ocsp channel, reconnecting with backoff,
// and queues the serials notified. Each time the LISTEN is (re)established
// it asks for a catch-up, which covers whatever was written while it was not
// listening.
func (c *Cache) listen(ctx context.Context, kick chan<- struct{}, notes chan<- pki.Serial) {
	backoff := minBackoff
	failing := false
	for {
		err := c.st.ListenOCSP(ctx,
			func() {
				backoff = minBackoff
				if failing {
					c.opts.Log.Info("listening for OCSP changes again")
					failing = false
				}
				nudge(kick)
			},
			func(s pki.Serial) {
				select {
				case notes <- s:
				default:
					nudge(kick)
				}
			})
		if ctx.Err() != nil {
			return
		}
		if !failing {
			c.opts.Log.Warn("listening for OCSP changes failed; relying on catch-ups while retrying", "error", err)
			failing = true
		}
		if !sleep(ctx, backoff) {
			return
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// applyNotifications reloads each notified serial. A reload that fails asks
// for a catch-up, which retries it among the rest.
func (c *Cache) applyNotifications(ctx context.Context, notes <-chan pki.Serial, kick chan<- struct{}) {
	for {
		select {
		case <-ctx.Done():
			return
		case s := <-notes:
			if _, ok := keyFromSerial(s); !ok {
				c.opts.Log.Debug("ignoring an OCSP notification that names no pkid serial", "payload", string(s))
				continue
			}
			r, err := c.st.OCSPResponse(ctx, s, c.opts.Now())
			switch {
			case errors.Is(err, pki.ErrNotFound):
			case err != nil:
				nudge(kick)
			default:
				c.installStored(r)
			}
		}
	}
}

// nudge asks for a catch-up without blocking; one pending request is enough.
func nudge(kick chan<- struct{}) {
	select {
	case kick <- struct{}{}:
	default:
	}
}

// sleep waits d or until ctx ends, and reports whether it waited d.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
