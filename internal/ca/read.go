package ca

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/pkid/pkid/internal/pki"
)

var cryptoRand = rand.Reader

// Certificate returns the certificate with this serial if the principal may
// see it: an administrator sees every certificate, an account only its own.
// Anything else, and a pending certificate, is ErrNotFound, so that another
// account's serial cannot be told from one that does not exist.
func (s *Service) Certificate(ctx context.Context, p pki.Principal, serial pki.Serial) (*pki.Certificate, error) {
	c, err := s.store.Certificate(ctx, serial)
	if err != nil {
		return nil, err
	}
	if c.State != pki.StateIssued || !mayRead(p, c) {
		return nil, pki.ErrNotFound
	}
	return c, nil
}

// Certificates lists certificates for the principal: an account sees only its
// own, whatever the filter says; an administrator sees what the filter
// selects. A filter value that cannot select anything sensible is a
// *pki.RequestError of kind malformed whose detail names the query parameter
// it came from (see validateFilter).
func (s *Service) Certificates(ctx context.Context, p pki.Principal, f pki.CertificateFilter) ([]*pki.Certificate, string, error) {
	if err := validateFilter(f); err != nil {
		return nil, "", err
	}
	if p.Kind == pki.PrincipalAccount {
		f.AccountID = p.AccountID
	}
	f.Now = s.opts.Now()
	return s.store.Certificates(ctx, f)
}

// Bounds of the common-name search text. The trigram index looks text up
// by runs of three letters or digits ("api", "ex-2" has none): text without
// such a run would make the search read every row, so it is refused. No
// common name is longer than 64 characters (RFC 5280 ub-common-name).
const (
	minCommonNameRun    = 3
	maxCommonNameSearch = 64
)

// validateFilter checks what a caller may set in a filter. Each refusal
// names the API's query parameter for the field (the certificate object's
// JSON name): account_id, status, common_name, serial_prefix,
// fingerprint_sha256, spki_sha256, expiring_before, sort. An account's own
// filter is checked too, before its AccountID is forced to the account, so
// that a bad value is reported whoever sends it.
func validateFilter(f pki.CertificateFilter) error {
	switch {
	case f.AccountID != "" && !validUUID(f.AccountID):
		return pki.Malformed("account_id must be an account id (a UUID)")
	case f.Status != "" && !f.Status.Valid():
		return pki.Malformed("status must be active, revoked or expired")
	case !f.Sort.Valid():
		return pki.Malformed("sort must be created_at (newest first) or not_after (soonest expiry first)")
	case f.FingerprintSHA256 != nil && len(f.FingerprintSHA256) != sha256.Size:
		return pki.Malformed("fingerprint_sha256 must be a SHA-256 hash: 64 hexadecimal digits")
	case f.SPKISHA256 != nil && len(f.SPKISHA256) != sha256.Size:
		return pki.Malformed("spki_sha256 must be a SHA-256 hash: 64 hexadecimal digits")
	case !f.ExpiringBefore.IsZero() && f.Status != "" && f.Status != pki.StatusActive:
		return pki.Malformed("expiring_before selects active certificates; it cannot be combined with status=%s", f.Status)
	}
	if f.SerialPrefix != "" {
		if s, err := pki.ParseSerial(f.SerialPrefix); err != nil || string(s) != f.SerialPrefix {
			return pki.Malformed("serial_prefix must be hexadecimal digits, at most 40, not all zeros")
		}
	}
	if f.CommonName != "" {
		switch {
		case !utf8.ValidString(f.CommonName) || strings.ContainsFunc(f.CommonName, unicode.IsControl):
			return pki.Malformed("common_name must be UTF-8 text without control characters")
		case utf8.RuneCountInString(f.CommonName) > maxCommonNameSearch:
			return pki.Malformed("common_name must be at most %d characters long", maxCommonNameSearch)
		case longestAlnumRun(f.CommonName) < minCommonNameRun:
			return pki.Malformed("common_name must contain at least %d letters or digits in a row (a-z, 0-9)", minCommonNameRun)
		}
	}
	return nil
}

// longestAlnumRun returns the length of the longest run of ASCII letters and
// digits in s. Only ASCII counts: whether Postgres sees other letters as
// letters depends on the database's locale.
func longestAlnumRun(s string) int {
	longest, run := 0, 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' {
			run++
			longest = max(longest, run)
		} else {
			run = 0
		}
	}
	return longest
}

// validUUID reports whether s is a UUID in its text form (8-4-4-4-12 hex
// digits), which is how account ids are written.
func validUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if c != '-' {
				return false
			}
		} else if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// Now returns the service's clock reading, for rendering statuses.
func (s *Service) Now() time.Time { return s.opts.Now() }

func mayRead(p pki.Principal, c *pki.Certificate) bool {
	switch p.Kind {
	case pki.PrincipalAdmin:
		return true
	case pki.PrincipalAccount:
		return p.AccountID == c.AccountID
	}
	return false
}
