package edge

import (
	"context"
	"crypto/x509"
	"net/url"
	"slices"
	"sync"
	"time"
)

// maxCRLSources bounds the CRLs the edge keeps: the --crl one and those of
// other intermediates it found through client certificates (pkid has one
// issuing intermediate, two for a while after `pkid ca rotate`).
const maxCRLSources = 8

// crlSet keeps one crlSource per CRL: the one --crl names, and one for
// each CRL distribution point of a verified client certificate that is on
// --crl's origin (scheme and host) and names another CRL. After pkid's
// intermediate rollover the certificates of the new intermediate name its
// own CRL (/crl/{generation}), while /crl stays the first one's: the edge
// follows them there without a new flag. Restricting the distribution
// points to --crl's origin keeps a certificate from sending the edge
// anywhere else (and only a certificate whose chain verified counts).
type crlSet struct {
	primary  *crlSource
	origin   string                        // scheme://host of --crl
	newFrom  func(u string) *crlSource     // a source for another CRL of the same CA
	interval time.Duration                 // CRLRefresh
	timeout  time.Duration                 // CRLTimeout, of a new source's first fetch
	run      func(f func(context.Context)) // starts f in the background; nil until Run

	mu      sync.RWMutex
	sources []*crlSource // primary first
	bundle  []*x509.Certificate
	queued  []*crlSource // added before Run started
}

// newCRLSet returns the set of primary's CRL, whose URL must be absolute.
func newCRLSet(primary *crlSource, newFrom func(string) *crlSource, interval, timeout time.Duration) *crlSet {
	s := &crlSet{primary: primary, newFrom: newFrom, interval: interval, timeout: timeout, sources: []*crlSource{primary}}
	if u, err := url.Parse(primary.url); err == nil {
		s.origin = u.Scheme + "://" + u.Host
	}
	return s
}

// setBundle gives every source the CA certificates of the --ca bundle.
func (s *crlSet) setBundle(certs []*x509.Certificate) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bundle = certs
	for _, src := range s.sources {
		src.setBundle(certs)
	}
}

// learn tells every source about issuer, the verified issuer of leaf's
// chain, and adds a source for each CRL distribution point of leaf on
// --crl's origin that has none.
func (s *crlSet) learn(leaf, issuer *x509.Certificate) {
	for _, src := range s.list() {
		src.learn(issuer)
	}
	for _, dp := range leaf.CRLDistributionPoints {
		s.follow(dp, issuer)
	}
}

// follow adds a source for the CRL at dp if dp is on --crl's origin, not
// yet followed, and the set is not full; its first fetch starts at once.
func (s *crlSet) follow(dp string, issuer *x509.Certificate) {
	u, err := url.Parse(dp)
	if err != nil || s.origin == "" || u.Scheme+"://"+u.Host != s.origin || u.User != nil || u.Fragment != "" {
		return
	}
	s.mu.RLock()
	known := slices.ContainsFunc(s.sources, func(src *crlSource) bool { return src.url == dp })
	full := len(s.sources) >= maxCRLSources
	s.mu.RUnlock()
	if known || full {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if slices.ContainsFunc(s.sources, func(src *crlSource) bool { return src.url == dp }) || len(s.sources) >= maxCRLSources {
		return
	}
	src := s.newFrom(dp)
	src.setBundle(s.bundle)
	src.learn(issuer)
	s.sources = append(s.sources, src)
	src.log.Info("edge: following another CRL of the CA, named by a client certificate", "crl", dp)
	if s.run == nil {
		s.queued = append(s.queued, src)
		return
	}
	s.start(src)
}

// start fetches src's CRL now and keeps it fresh; s.mu is held.
func (s *crlSet) start(src *crlSource) {
	s.run(func(ctx context.Context) {
		first, cancel := context.WithTimeout(ctx, s.timeout)
		err := src.refresh(first)
		cancel()
		src.run(ctx, s.interval, err)
	})
}

// begin starts the sources added so far other than the primary (Run starts
// that one itself) and those added later, with run.
func (s *crlSet) begin(run func(func(context.Context))) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.run = run
	for _, src := range s.queued {
		s.start(src)
	}
	s.queued = nil
}

// lookup answers for leaf from the first source that holds a usable CRL
// of its issuer covering it.
func (s *crlSet) lookup(leaf, issuer *x509.Certificate, now time.Time) (Answer, bool) {
	for _, src := range s.list() {
		if a, ok := src.lookup(leaf, issuer, now); ok {
			return a, true
		}
	}
	return Answer{}, false
}

func (s *crlSet) list() []*crlSource {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.sources
}
