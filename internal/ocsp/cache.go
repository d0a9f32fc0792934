package ocsp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pkid/pkid/internal/issuance"
	"github.com/pkid/pkid/internal/pki"
)

// ErrStale: the only stored response for a serial is past its nextUpdate
// and the certificate has not expired, so it must not be served
// (SECURITY.md O-19). It means the re-signing job is failing.
var ErrStale = errors.New("ocsp: stored response is past its nextUpdate")

// CacheOptions tunes a Cache. Zero fields take the defaults given.
type CacheOptions struct {
	Now func() time.Time // the clock; time.Now when nil
	Log *slog.Logger     // discarded when nil
	// CatchUpInterval is how often Run reads the responses that changed
	// since it last looked, healing missed notifications. Default 2s.
	CatchUpInterval time.Duration
	// CatchUpMargin is how far before the newest change seen each catch-up
	// starts reading again: a transaction stamps updated_at when it writes
	// but becomes visible when it commits, so a slow commit can surface
	// behind rows already seen. Default 5s.
	CatchUpMargin time.Duration
	// NegativeTTL is how long a serial found unknown is answered without
	// asking the database again. Default 1s.
	NegativeTTL time.Duration
	// NegativeMax bounds how many unknown serials are remembered. Default
	// 65,536.
	NegativeMax int
	// MaxConcurrentReads bounds the database reads that cache misses make
	// at once, so that requests for serials pkid never issued cannot take
	// the pool from the CA. Default 4.
	MaxConcurrentReads int

	// Issuers and Signer, when both are set, let the cache answer for a
	// certificate that has no stored response yet: issuance stores none,
	// so the first request for a certificate's status finds only its row
	// (pending, issued or revoked), and the cache signs the response from
	// it with the delegated responder of its issuer, stores it
	// (Store.FirstOCSPResponse) and serves it. Without them such a
	// certificate is unknown until some response is stored.
	Issuers func() []*x509.Certificate
	Signer  func(issuerID string) *issuance.Issuer
	// Validity is nextUpdate - thisUpdate of the responses it signs: the
	// Resigner's. Default 24h.
	Validity time.Duration
}

func (o CacheOptions) withDefaults() CacheOptions {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.CatchUpInterval <= 0 {
		o.CatchUpInterval = 2 * time.Second
	}
	if o.CatchUpMargin <= 0 {
		o.CatchUpMargin = 5 * time.Second
	}
	if o.NegativeTTL <= 0 {
		o.NegativeTTL = time.Second
	}
	if o.NegativeMax <= 0 {
		o.NegativeMax = 1 << 16
	}
	if o.MaxConcurrentReads <= 0 {
		o.MaxConcurrentReads = 4
	}
	if o.Validity <= 0 {
		o.Validity = 24 * time.Hour
	}
	return o
}

// shardCount splits the map so that installing (a catch-up, a re-signing
// batch, the minute's sweep) never holds up more than a sliver of readers.
const shardCount = 64

// Cache holds the current pre-signed response of every certificate, in
// memory, keyed by serial. Install, Lookup and Len are safe for concurrent
// use; Run keeps it in step with the database.
type Cache struct {
	st     Store
	opts   CacheOptions
	shards [shardCount]shard
	neg    negativeCache
	reads  chan struct{} // a semaphore: database reads in flight
	loaded atomic.Bool
	errLog rateLimitedLog

	// cursor is the newest UpdatedAt that a load or catch-up has seen;
	// only Run's goroutine touches it.
	cursor time.Time
}

type shard struct {
	mu sync.RWMutex
	m  map[serialKey]*entry
}

// NewCache returns an empty cache that reads misses from st. Call Run to
// load it and keep it current; until then it holds only what is installed.
func NewCache(st Store, opts CacheOptions) *Cache {
	opts = opts.withDefaults()
	c := &Cache{
		st:    st,
		opts:  opts,
		neg:   negativeCache{m: map[serialKey]negative{}, ttl: opts.NegativeTTL, max: opts.NegativeMax},
		reads: make(chan struct{}, opts.MaxConcurrentReads),
	}
	for i := range c.shards {
		c.shards[i].m = map[serialKey]*entry{}
	}
	return c
}

// entry is one certificate's response as served. It never changes once in
// the map, except that the SHA-256 form is added on first demand; a newer
// response is a new entry.
type entry struct {
	key        serialKey
	issuerID   string
	der        []byte // SHA-1 CertID, as stored
	revoked    bool
	thisUpdate time.Time
	nextUpdate time.Time
	updatedAt  time.Time

	// Header values, computed once: the hot path only assigns them.
	etag          []string
	lastModified  []string
	expires       []string
	contentLength []string

	signMu sync.Mutex              // one signature of the SHA-256 form at a time
	sha256 atomic.Pointer[variant] // the SHA-256 form, once signed
}

// variant is a response about the same status with another CertID hash.
type variant struct {
	der           []byte
	etag          []string
	contentLength []string
}

// newEntry checks a stored response and prepares it for serving: it must be
// one of pkid's serials, a successful basic response with one SingleResponse
// about that very serial with a SHA-1 CertID, and have a nextUpdate after its
// thisUpdate.
func newEntry(r *pki.OCSPResponse) (*entry, error) {
	if r == nil {
		return nil, errors.New("ocsp: nil response")
	}
	k, ok := keyFromSerial(r.Serial)
	if !ok {
		return nil, fmt.Errorf("ocsp: %q is not a serial pkid issues", r.Serial)
	}
	if r.IssuerID == "" || !r.NextUpdate.After(r.ThisUpdate) {
		return nil, fmt.Errorf("ocsp: response for %s has no issuer or an empty validity interval", r.Serial)
	}
	revoked, serial, err := inspect(r.DER)
	if err != nil {
		return nil, fmt.Errorf("%w (serial %s)", err, r.Serial)
	}
	if !bytes.Equal(serial, k[:]) {
		return nil, fmt.Errorf("ocsp: stored response for %s is about another serial", r.Serial)
	}
	e := &entry{
		key:          k,
		issuerID:     r.IssuerID,
		der:          r.DER,
		revoked:      revoked,
		thisUpdate:   r.ThisUpdate,
		nextUpdate:   r.NextUpdate,
		updatedAt:    r.UpdatedAt,
		lastModified: []string{r.ThisUpdate.UTC().Format(http.TimeFormat)},
		expires:      []string{r.NextUpdate.UTC().Format(http.TimeFormat)},
	}
	e.etag, e.contentLength = bodyHeaders(r.DER)
	return e, nil
}

// sameResponse reports whether r holds e's response: the same DER, issuer
// and validity interval, whatever r's UpdatedAt.
func (e *entry) sameResponse(r *pki.OCSPResponse) bool {
	return e.issuerID == r.IssuerID && e.thisUpdate.Equal(r.ThisUpdate) && e.nextUpdate.Equal(r.NextUpdate) &&
		bytes.Equal(e.der, r.DER)
}

// restamped returns the entry newEntry would make from r, which holds e's
// response (sameResponse), reusing what e computed from the same bytes.
func (e *entry) restamped(r *pki.OCSPResponse) *entry {
	return &entry{key: e.key, issuerID: r.IssuerID, der: e.der, revoked: e.revoked,
		thisUpdate: r.ThisUpdate, nextUpdate: r.NextUpdate, updatedAt: r.UpdatedAt,
		etag: e.etag, lastModified: e.lastModified, expires: e.expires, contentLength: e.contentLength}
}

// bodyHeaders returns the ETag (a strong validator: a hash of the body) and
// Content-Length of a response body.
func bodyHeaders(der []byte) (etag, contentLength []string) {
	sum := sha256.Sum256(der)
	return []string{`"` + base64.RawURLEncoding.EncodeToString(sum[:18]) + `"`},
		[]string{strconv.Itoa(len(der))}
}

// status returns the entry's certificate status as metrics label it.
func (e *entry) status() string {
	if e.revoked {
		return StatusRevoked
	}
	return StatusGood
}

// newer reports whether a is a later version of a serial's response than
// b: written later to the database, or, between two writes stamped alike,
// signed later. A response installed before its write was read back has a
// zero UpdatedAt and so loses to any stored version.
func newer(a, b *entry) bool {
	if !a.updatedAt.Equal(b.updatedAt) {
		return a.updatedAt.After(b.updatedAt)
	}
	return a.thisUpdate.After(b.thisUpdate)
}

func (c *Cache) shard(k serialKey) *shard {
	// The bytes after the prefix are random.
	return &c.shards[k[len(k)-1]%shardCount]
}

func (c *Cache) get(k serialKey) *entry {
	s := c.shard(k)
	s.mu.RLock()
	e := s.m[k]
	s.mu.RUnlock()
	return e
}

// put installs e unless the cache holds a version that is not older, and
// returns the entry the cache holds afterwards. Either way the serial is no
// longer remembered as unknown.
func (c *Cache) put(e *entry) *entry {
	s := c.shard(e.key)
	s.mu.Lock()
	cur := s.m[e.key]
	if cur == nil || newer(e, cur) {
		s.m[e.key] = e
		cur = e
	}
	s.mu.Unlock()
	c.neg.forget(e.key)
	return cur
}

// drop removes e if it is still the serial's entry.
func (c *Cache) drop(e *entry) {
	s := c.shard(e.key)
	s.mu.Lock()
	if s.m[e.key] == e {
		delete(s.m, e.key)
	}
	s.mu.Unlock()
}

// Install puts committed responses into the cache: the CA calls it after
// committing an issuance or a revocation, so that this node answers with
// the new status at once, without waiting for the database's notification.
// A response replaces the cached one only if it is a newer version (a later
// UpdatedAt, the database's stamp; see newer), so installs, notifications and
// catch-ups may arrive in any order. A response that is not fit to serve
// (not a pkid serial, not a successful basic response about that serial) is
// logged and skipped.
func (c *Cache) Install(resps ...*pki.OCSPResponse) {
	for _, r := range resps {
		e, err := newEntry(r)
		if err != nil {
			c.opts.Log.Error("OCSP response not installed", "error", err)
			continue
		}
		c.put(e)
	}
}

// Lookup returns the response the responder would serve for serial (the
// stored, SHA-1 form), reading the database on a miss. It fails with
// pki.ErrNotFound for a serial pkid has no response for, ErrStale for one
// whose response is past its nextUpdate, and an error wrapping
// pki.ErrUnavailable when the database cannot be read. The DER is shared:
// do not modify it.
func (c *Cache) Lookup(ctx context.Context, serial pki.Serial) (*pki.OCSPResponse, error) {
	k, ok := keyFromSerial(serial)
	if !ok {
		return nil, pki.ErrNotFound
	}
	e, _, err := c.lookup(ctx, k)
	if err != nil {
		return nil, err
	}
	return &pki.OCSPResponse{Serial: serial, IssuerID: e.issuerID, DER: e.der,
		ThisUpdate: e.thisUpdate, NextUpdate: e.nextUpdate, UpdatedAt: e.updatedAt}, nil
}

// lookup finds the entry to serve for k and says where it came from.
// Memory first; an entry past its nextUpdate is never served and counts as
// a miss (the database may hold a newer one). A miss is read from the
// database, at most opts.MaxConcurrentReads at a time, unless the serial was
// found unknown less than NegativeTTL ago.
func (c *Cache) lookup(ctx context.Context, k serialKey) (*entry, string, error) {
	now := c.opts.Now()
	if e := c.get(k); e != nil {
		if now.Before(e.nextUpdate) {
			return e, SourceMemory, nil
		}
		c.drop(e)
	}
	if err := c.neg.get(k, now); err != nil {
		return nil, SourceNone, err
	}

	select {
	case c.reads <- struct{}{}:
	case <-ctx.Done():
		return nil, SourceNone, ctx.Err()
	}
	defer func() { <-c.reads }()
	// Another request may have read it while this one waited.
	if e := c.get(k); e != nil && now.Before(e.nextUpdate) {
		return e, SourceMemory, nil
	}
	if err := c.neg.get(k, now); err != nil {
		return nil, SourceNone, err
	}

	serial := k.serial()
	source := SourceDB
	r, err := c.st.OCSPResponse(ctx, serial, now)
	if errors.Is(err, pki.ErrNotFound) && c.opts.Issuers != nil && c.opts.Signer != nil {
		source = SourceFirst
		r, err = c.st.FirstOCSPResponse(ctx, serial, now, c.signFirst(now))
	}
	if errors.Is(err, pki.ErrNotFound) {
		c.neg.put(k, pki.ErrNotFound, now)
		return nil, source, pki.ErrNotFound
	}
	if err != nil {
		return nil, source, fmt.Errorf("ocsp: reading the response for %s: %w", serial, err)
	}
	e, err := newEntry(r)
	if err != nil {
		c.errLog.log(c.opts.Log, now, "stored OCSP response cannot be served", "serial", serial, "error", err)
		return nil, source, err
	}
	if !now.Before(e.nextUpdate) {
		c.neg.put(k, ErrStale, now)
		c.errLog.log(c.opts.Log, now, "stored OCSP response is past its nextUpdate and was not served; is the re-signing job running?",
			"serial", serial, "next_update", e.nextUpdate)
		return nil, source, ErrStale
	}
	return c.put(e), source, nil
}

// signFirst returns the function that signs a certificate's first
// response, as Store.FirstOCSPResponse calls it.
func (c *Cache) signFirst(now time.Time) func(*pki.Certificate) (*pki.OCSPResponse, error) {
	return func(cert *pki.Certificate) (*pki.OCSPResponse, error) {
		rs, _, err := currentResponders(c.opts.Issuers, c.opts.Signer)
		if err != nil {
			return nil, err
		}
		this, next := issuance.OCSPWindow(now, c.opts.Validity)
		r, err := rs.sign(cert, cert.IssuerID, this, next)
		if err == nil && r == nil {
			err = fmt.Errorf("ocsp: issuer %s of %s has no delegated responder loaded", cert.IssuerID, cert.Serial)
		}
		return r, err
	}
}

// Len returns how many responses the cache holds.
func (c *Cache) Len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}

// Loaded reports whether the cache has loaded every stored response once
// since Run started. Before that, misses are read from the database one by
// one, so the node answers correctly, only more slowly.
func (c *Cache) Loaded() bool { return c.loaded.Load() }

// sweep removes the entries past their nextUpdate, so that memory follows
// the certificates that are still answered for, and returns how many it
// removed. A request for one of them reads the database, which says whether
// the certificate has expired (unauthorized) or the re-signing job is late
// (tryLater).
func (c *Cache) sweep(now time.Time) int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		for k, e := range s.m {
			if !now.Before(e.nextUpdate) {
				delete(s.m, k)
				n++
			}
		}
		s.mu.Unlock()
	}
	return n
}

// negativeCache remembers, briefly, serials that have no servable response,
// so that a flood of requests for them costs one database read per serial
// per TTL.
type negativeCache struct {
	mu  sync.Mutex
	m   map[serialKey]negative
	ttl time.Duration
	max int
}

type negative struct {
	until time.Time
	err   error // pki.ErrNotFound or ErrStale
}

// get returns the remembered error for k, or nil.
func (n *negativeCache) get(k serialKey, now time.Time) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	v, ok := n.m[k]
	if !ok {
		return nil
	}
	if !now.Before(v.until) {
		delete(n.m, k)
		return nil
	}
	return v.err
}

// put remembers err for k. When the map is full it first drops what has
// expired and, if that is not enough, everything: forgetting costs one read
// per serial, while an unbounded map would let garbage requests exhaust
// memory.
func (n *negativeCache) put(k serialKey, err error, now time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.m) >= n.max {
		for key, v := range n.m {
			if !now.Before(v.until) {
				delete(n.m, key)
			}
		}
		if len(n.m) >= n.max {
			clear(n.m)
		}
	}
	n.m[k] = negative{until: now.Add(n.ttl), err: err}
}

func (n *negativeCache) forget(k serialKey) {
	n.mu.Lock()
	if len(n.m) > 0 {
		delete(n.m, k)
	}
	n.mu.Unlock()
}

// rateLimitedLog writes at most one error line per period, counting the
// lines it held back: a failure that affects every request must not flood
// the log.
type rateLimitedLog struct {
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

const logPeriod = 10 * time.Second

func (l *rateLimitedLog) log(log *slog.Logger, now time.Time, msg string, args ...any) {
	l.mu.Lock()
	if !l.last.IsZero() && now.Sub(l.last) < logPeriod {
		l.suppressed++
		l.mu.Unlock()
		return
	}
	l.last = now
	n := l.suppressed
	l.suppressed = 0
	l.mu.Unlock()
	if n > 0 {
		args = append(args, "similar_lines_suppressed", n)
	}
	log.Error(msg, args...)
}
