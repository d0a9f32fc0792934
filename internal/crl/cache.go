package crl

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/pkid/pkid/internal/pki"
)

// CacheOptions tunes a Cache. Zero fields take the defaults given.
type CacheOptions struct {
	// Poll is how often Run checks the database for a CRL newer than the
	// one it holds, healing a missed notification. Default 5 seconds.
	Poll time.Duration
	// Log is where the cache logs; discarded when nil.
	Log *slog.Logger
}

// Bounds on reconnecting the LISTEN.
const (
	minBackoff = 500 * time.Millisecond
	maxBackoff = 30 * time.Second
)

// Cache holds the newest CRL of each issuer it serves, in memory. Install
// and the lookups are safe for concurrent use; Load and Run fill it.
type Cache struct {
	st      CacheStore
	issuers func() []string
	opts    CacheOptions

	mu   sync.RWMutex
	crls map[string]*held
}

// held is a CRL as the cache serves it, with what the handler needs
// computed once.
type held struct {
	crl  *pki.CRL
	etag string // strong, of the DER
	// sameSecond: the CRL this one replaced had the same thisUpdate, to the
	// second (two nodes signed within one second), so Last-Modified does
	// not tell the two apart and If-Modified-Since must not be believed.
	sameSecond bool

	pemOnce sync.Once
	pem     []byte
}

func newHeld(c *pki.CRL) *held {
	sum := sha256.Sum256(c.DER)
	return &held{crl: c, etag: `"` + hex.EncodeToString(sum[:16]) + `"`}
}

// pemBytes returns the CRL as PEM, encoding it on first use.
func (h *held) pemBytes() []byte {
	h.pemOnce.Do(func() { h.pem = pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: h.crl.DER}) })
	return h.pem
}

// NewCache returns an empty cache of the CRLs of the issuers that issuers
// returns (asked afresh at every check, so that a rotated intermediate is
// picked up), read from st.
func NewCache(st CacheStore, issuers func() []string, opts CacheOptions) *Cache {
	if opts.Poll <= 0 {
		opts.Poll = 5 * time.Second
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	return &Cache{st: st, issuers: issuers, opts: opts, crls: map[string]*held{}}
}

// Install makes c the CRL served for its issuer unless the cache holds one
// with a number as high already (numbers only grow), and reports whether it
// did. The cache keeps c: the caller must not change it.
func (c *Cache) Install(crl *pki.CRL) bool {
	if crl == nil || len(crl.DER) == 0 {
		return false
	}
	c.mu.RLock()
	cur := c.crls[crl.IssuerID]
	c.mu.RUnlock()
	if cur != nil && cur.crl.Number >= crl.Number {
		return false
	}
	h := newHeld(crl) // hashed outside the lock: tens of milliseconds for a large CRL
	c.mu.Lock()
	defer c.mu.Unlock()
	cur = c.crls[crl.IssuerID]
	if cur != nil && cur.crl.Number >= crl.Number {
		return false
	}
	h.sameSecond = cur != nil && cur.crl.ThisUpdate.Unix() == crl.ThisUpdate.Unix()
	c.crls[crl.IssuerID] = h
	return true
}

// CRL returns the CRL the cache holds for issuerID, whatever its
// nextUpdate, or nil. The caller must not change it.
func (c *Cache) CRL(issuerID string) *pki.CRL {
	if h := c.lookup(issuerID); h != nil {
		return h.crl
	}
	return nil
}

func (c *Cache) lookup(issuerID string) *held {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.crls[issuerID]
}

// Load reads the newest CRL of every issuer from the database. An issuer
// without a CRL yet is not an error; a database that cannot be read is.
// pkid serve calls it before listening, so that a node that starts serves
// CRLs at once (SECURITY.md L-12).
func (c *Cache) Load(ctx context.Context) error {
	var errs []error
	for _, id := range c.issuers() {
		if err := c.refresh(ctx, id); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// refresh installs the issuer's newest CRL if it is newer than the one
// held, reading its DER only then.
func (c *Cache) refresh(ctx context.Context, issuerID string) error {
	info, err := c.st.LatestCRLInfo(ctx, issuerID)
	switch {
	case errors.Is(err, pki.ErrNotFound):
		return nil
	case err != nil:
		return err
	}
	if cur := c.lookup(issuerID); cur != nil && cur.crl.Number >= info.Number {
		return nil
	}
	crl, err := c.st.LatestCRL(ctx, issuerID)
	if err != nil {
		return err
	}
	if c.Install(crl) {
		c.opts.Log.Debug("CRL loaded", "issuer", issuerID, "number", crl.Number)
	}
	return nil
}

// Run keeps the cache in step with the database until ctx ends: it reloads
// an issuer's CRL when a notification announces one, checks every issuer
// every Poll, and checks them all again each time the LISTEN is
// (re)established. Failures are logged once per outage; what the cache
// holds stays served.
func (c *Cache) Run(ctx context.Context) {
	notes := make(chan string, 16)
	go c.listen(ctx, notes)
	t := time.NewTicker(c.opts.Poll)
	defer t.Stop()
	failing := false
	check := func(ids ...string) {
		var errs []error
		for _, id := range ids {
			if err := c.refresh(ctx, id); err != nil {
				errs = append(errs, err)
			}
		}
		switch err := errors.Join(errs...); {
		case err != nil && ctx.Err() == nil && !failing:
			c.opts.Log.Warn("reading CRLs failed; serving the ones held until their nextUpdate", "error", err)
			failing = true
		case err == nil && failing:
			c.opts.Log.Info("reading CRLs again")
			failing = false
		}
	}
	for {
		select {
		case <-ctx.Done():
			return
		case id := <-notes:
			switch ids := c.issuers(); {
			case id == "": // (re)listening: what was missed meanwhile
				check(ids...)
			case slices.Contains(ids, id):
				check(id)
			}
		case <-t.C:
			check(c.issuers()...)
		}
	}
}

// listen keeps a LISTEN on the pkid_crl channel, reconnecting with backoff,
// and passes on the issuer ids notified; "" means the LISTEN was
// (re)established.
func (c *Cache) listen(ctx context.Context, notes chan<- string) {
	backoff := minBackoff
	failing := false
	send := func(id string) {
		select {
		case notes <- id:
		case <-ctx.Done():
		}
	}
	for {
		err := c.st.ListenCRL(ctx,
			func() {
				backoff = minBackoff
				if failing {
					c.opts.Log.Info("listening for CRLs again")
					failing = false
				}
				send("")
			},
			send)
		if ctx.Err() != nil {
			return
		}
		if !failing {
			c.opts.Log.Warn("listening for CRLs failed; relying on polling while retrying", "error", err)
			failing = true
		}
		if !sleep(ctx, backoff) {
			return
		}
		backoff = min(2*backoff, maxBackoff)
	}
}
