package edge

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"sync"
	"time"

	"github.com/pkid/pkid/internal/pki"
)

// maxLearnedIssuers bounds the CA certificates the CRL source remembers from
// verified client chains (intermediates that are not in the --ca bundle).
// pkid has one issuing intermediate, two during a rotation.
const maxLearnedIssuers = 16

// errCRLRejected: a fetched CRL was well-formed but may not replace the one
// held: bad signature, not current, no number, a number that went down.
var errCRLRejected = errors.New("edge: CRL rejected")

// crlState is an accepted CRL, indexed for lookups.
type crlState struct {
	list    *x509.RevocationList
	issuer  *x509.Certificate // the CA certificate its signature verified under
	scope   crlScope
	revoked map[string]x509.RevocationListEntry // by serial magnitude bytes
}

// fetched is a CRL as received, before it is accepted.
type fetched struct {
	list  *x509.RevocationList
	scope crlScope
}

// crlSource keeps the CA's current CRL: it fetches it with conditional GETs,
// accepts a new one only when it verifies and moves forward, and answers
// for certificates of the issuer that signed it.
//
// A CRL is verified against the CA certificates the edge knows: those of
// the --ca bundle and the issuers of client chains that verified. Until one
// of those matches, a fetched CRL waits as pending (a bundle holding only
// the root learns the intermediate from the first verified client).
type crlSource struct {
	url      string
	client   *http.Client
	maxBytes int64
	skew     time.Duration
	grace    time.Duration
	now      func() time.Time
	log      *slog.Logger
	m        *metrics

	mu           sync.RWMutex
	cur          *crlState
	pending      *fetched
	bundle       []*x509.Certificate
	learned      map[certKey]*x509.Certificate
	etag         string
	lastModified string
}

// setBundle replaces the CA certificates of the --ca bundle (at start and
// on reload).
func (s *crlSource) setBundle(certs []*x509.Certificate) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bundle = certs
}

// learn records issuer, the verified issuer of a client's chain, as one a
// CRL may be verified with, and accepts a pending CRL it signed.
func (s *crlSource) learn(issuer *x509.Certificate) {
	k := keyOf(issuer)
	s.mu.RLock()
	_, known := s.learned[k]
	pending := s.pending
	s.mu.RUnlock()
	if known && pending == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.learned[k]; !ok {
		if s.learned == nil || len(s.learned) >= maxLearnedIssuers {
			s.learned = make(map[certKey]*x509.Certificate)
		}
		s.learned[k] = issuer
	}
	if p := s.pending; p != nil && bytes.Equal(p.list.RawIssuer, issuer.RawSubject) {
		if err := s.acceptLocked(p, issuer); err != nil {
			s.m.crlFetches.WithLabelValues("rejected").Inc()
			s.log.Warn("edge: pending CRL refused", "err", err)
			s.etag, s.lastModified = "", ""
		}
		s.pending = nil
	}
}

// refresh makes one conditional GET of the CRL and offers what it gets.
// It sends the validators of the last CRL received, except when the CRL
// held is past its nextUpdate: then it asks unconditionally, so that a
// server that keeps answering 304 cannot pin an expired CRL.
func (s *crlSource) refresh(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/pkix-crl")
	s.mu.RLock()
	expired := s.cur == nil || !s.now().Before(s.cur.list.NextUpdate)
	if !expired || s.pending != nil {
		if s.etag != "" {
			req.Header.Set("If-None-Match", s.etag)
		}
		if s.lastModified != "" {
			req.Header.Set("If-Modified-Since", s.lastModified)
		}
	}
	s.mu.RUnlock()

	resp, err := s.client.Do(req)
	if err != nil {
		s.m.crlFetches.WithLabelValues("error").Inc()
		return fmt.Errorf("edge: fetching the CRL: %w", err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNotModified:
		s.m.crlFetches.WithLabelValues("not_modified").Inc()
		return nil
	case http.StatusOK:
	default:
		s.m.crlFetches.WithLabelValues("error").Inc()
		return fmt.Errorf("edge: fetching the CRL: HTTP %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, s.maxBytes+1))
	if err != nil {
		s.m.crlFetches.WithLabelValues("error").Inc()
		return fmt.Errorf("edge: reading the CRL: %w", err)
	}
	if int64(len(body)) > s.maxBytes {
		s.m.crlFetches.WithLabelValues("rejected").Inc()
		return fmt.Errorf("%w: larger than %d bytes", errCRLRejected, s.maxBytes)
	}
	f, err := parseCRL(body)
	if err != nil {
		s.m.crlFetches.WithLabelValues("rejected").Inc()
		return err
	}
	if err := s.offer(f, resp.Header.Get("ETag"), resp.Header.Get("Last-Modified")); err != nil {
		s.m.crlFetches.WithLabelValues("rejected").Inc()
		return err
	}
	s.m.crlFetches.WithLabelValues("ok").Inc()
	return nil
}

// parseCRL parses a CRL in DER (pkid's /crl) or PEM (/crl.pem) and checks
// its scope.
func parseCRL(body []byte) (*fetched, error) {
	der := body
	if bytes.HasPrefix(bytes.TrimSpace(body), []byte("-----BEGIN")) {
		block, rest := pem.Decode(body)
		if block == nil || block.Type != "X509 CRL" || len(bytes.TrimSpace(rest)) != 0 {
			return nil, fmt.Errorf("%w: not a single PEM X509 CRL", errCRLRejected)
		}
		der = block.Bytes
	}
	rl, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errCRLRejected, err)
	}
	sc, err := checkCRLScope(rl)
	if err != nil {
		return nil, err
	}
	return &fetched{list: rl, scope: sc}, nil
}

// offer accepts f if a known CA certificate signed it, or keeps it pending
// until one is learned. etag and lastModified are the response's
// validators, remembered for the next conditional GET only when the CRL is
// accepted or held: a refused CRL is asked for again in full.
func (s *crlSource) offer(f *fetched, etag, lastModified string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	issuer := s.issuerLocked(f.list)
	if issuer == nil {
		s.pending = f
		s.etag, s.lastModified = etag, lastModified
		s.log.Info("edge: CRL held until a verified client chain shows its issuer",
			"crl_issuer", SubjectString(f.list.RawIssuer), "number", numberString(f.list.Number))
		return nil
	}
	s.pending = nil
	if err := s.acceptLocked(f, issuer); err != nil {
		return err
	}
	s.etag, s.lastModified = etag, lastModified
	return nil
}

// issuerLocked returns the known CA certificate whose key signed rl, if any.
func (s *crlSource) issuerLocked(rl *x509.RevocationList) *x509.Certificate {
	try := func(c *x509.Certificate) bool {
		return bytes.Equal(c.RawSubject, rl.RawIssuer) && rl.CheckSignatureFrom(c) == nil
	}
	for _, c := range s.bundle {
		if try(c) {
			return c
		}
	}
	for _, c := range s.learned {
		if try(c) {
			return c
		}
	}
	return nil
}

// acceptLocked makes f the current CRL if it verifies under issuer, is
// current at the edge's clock, and moves forward from the CRL held: a
// higher number (the same number only with the same bytes, which changes
// nothing) and a thisUpdate that does not go back (SECURITY.md L-08). A CRL
// from another issuer key (a rotated intermediate) starts a new sequence.
func (s *crlSource) acceptLocked(f *fetched, issuer *x509.Certificate) error {
	rl, now := f.list, s.now()
	if err := rl.CheckSignatureFrom(issuer); err != nil {
		return fmt.Errorf("%w: signature: %v", errCRLRejected, err)
	}
	if len(rl.AuthorityKeyId) > 0 && len(issuer.SubjectKeyId) > 0 && !bytes.Equal(rl.AuthorityKeyId, issuer.SubjectKeyId) {
		return fmt.Errorf("%w: authority key identifier does not match the issuer", errCRLRejected)
	}
	if rl.Number == nil || rl.Number.Sign() < 0 {
		return fmt.Errorf("%w: no CRL number", errCRLRejected)
	}
	if rl.ThisUpdate.After(now.Add(s.skew)) {
		return fmt.Errorf("%w: thisUpdate %s is in the future", errCRLRejected, stamp(rl.ThisUpdate))
	}
	if rl.NextUpdate.IsZero() || !rl.NextUpdate.After(rl.ThisUpdate) {
		return fmt.Errorf("%w: no nextUpdate after thisUpdate", errCRLRejected)
	}
	if !now.Before(rl.NextUpdate.Add(s.grace)) {
		return fmt.Errorf("%w: expired at %s (the CA's CRL publisher is behind)", errCRLRejected, stamp(rl.NextUpdate))
	}
	if cur := s.cur; cur != nil && sameKey(cur.issuer, issuer) {
		switch c := rl.Number.Cmp(cur.list.Number); {
		case c < 0:
			return fmt.Errorf("%w: CRL number went down from %s to %s", errCRLRejected, numberString(cur.list.Number), numberString(rl.Number))
		case c == 0 && bytes.Equal(rl.Raw, cur.list.Raw):
			return nil
		case c == 0:
			return fmt.Errorf("%w: a different CRL with the same number %s", errCRLRejected, numberString(rl.Number))
		}
		if rl.ThisUpdate.Before(cur.list.ThisUpdate) {
			return fmt.Errorf("%w: thisUpdate went back", errCRLRejected)
		}
	}
	st := &crlState{list: rl, issuer: issuer, scope: f.scope, revoked: make(map[string]x509.RevocationListEntry, len(rl.RevokedCertificateEntries))}
	for _, e := range rl.RevokedCertificateEntries {
		if e.SerialNumber.Sign() > 0 {
			st.revoked[string(e.SerialNumber.Bytes())] = e
		}
	}
	s.cur = st
	number, _ := rl.Number.Float64()
	s.m.crlNumber.Set(number)
	s.m.crlNextUpdate.Set(float64(rl.NextUpdate.Unix()))
	s.log.Info("edge: CRL accepted", "number", numberString(rl.Number), "entries", len(st.revoked),
		"this_update", stamp(rl.ThisUpdate), "next_update", stamp(rl.NextUpdate))
	return nil
}

// lookup answers for leaf, issued by issuer (the verified chain's), from the
// current CRL, if the CRL is the issuer's, covers leaf, and is usable at
// now: not from the future, and not past nextUpdate by more than the grace.
func (s *crlSource) lookup(leaf, issuer *x509.Certificate, now time.Time) (Answer, bool) {
	s.learn(issuer)
	s.mu.RLock()
	cur := s.cur
	s.mu.RUnlock()
	if cur == nil || !sameKey(cur.issuer, issuer) || !bytes.Equal(leaf.RawIssuer, cur.list.RawIssuer) ||
		now.Before(cur.list.ThisUpdate.Add(-s.skew)) || !now.Before(cur.list.NextUpdate.Add(s.grace)) ||
		!cur.scope.covers(leaf) {
		return Answer{}, false
	}
	a := Answer{Status: StatusGood, Source: SourceCRL, ThisUpdate: cur.list.ThisUpdate, NextUpdate: cur.list.NextUpdate}
	if e, ok := cur.revoked[string(leaf.SerialNumber.Bytes())]; ok {
		a.Status = StatusRevoked
		a.RevokedAt = e.RevocationTime
		a.Reason = pki.RevocationReason(e.ReasonCode)
	}
	return a, true
}

// nextUpdate returns the nextUpdate of the CRL held.
func (s *crlSource) nextUpdate() (time.Time, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.cur == nil {
		return time.Time{}, false
	}
	return s.cur.list.NextUpdate, true
}

// run refreshes the CRL until ctx ends: every interval, and sooner as
// nextUpdate approaches (at the latest halfway between now and nextUpdate),
// so that the CRL held never expires while the CA publishes (SECURITY.md
// L-12: a stale CRL is an outage). Failures are retried with a doubling
// backoff from one second, capped at interval. last is the outcome of the
// fetch made just before (at start-up), which sets the first wait.
func (s *crlSource) run(ctx context.Context, interval time.Duration, last error) {
	backoff := time.Second
	for {
		wait := interval
		if last != nil {
			s.log.Warn("edge: CRL refresh failed", "err", last, "retry_in", min(backoff, interval).String())
			wait = min(backoff, interval)
			backoff *= 2
		} else {
			backoff = time.Second
			if next, ok := s.nextUpdate(); ok {
				wait = min(wait, max(next.Sub(s.now())/2, time.Second))
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		last = s.refresh(ctx)
		if ctx.Err() != nil {
			return
		}
	}
}

// sameKey reports whether a and b are the same CA: same subject and same
// public key (a re-issued certificate of the same CA counts as the same).
func sameKey(a, b *x509.Certificate) bool {
	return bytes.Equal(a.RawSubject, b.RawSubject) && bytes.Equal(a.RawSubjectPublicKeyInfo, b.RawSubjectPublicKeyInfo)
}

func numberString(n *big.Int) string {
	if n == nil {
		return ""
	}
	return n.String()
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }
