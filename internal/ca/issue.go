package ca

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/pkid/pkid/internal/issuance"
	"github.com/pkid/pkid/internal/lint"
	"github.com/pkid/pkid/internal/pki"
	"github.com/pkid/pkid/internal/policy"
)

// Audit actions written by the certificate use cases.
const (
	ActionIssueRefused = "certificate.issue.refused"
	ActionSigning      = "certificate.signing"
	ActionIssued       = "certificate.issued"
	ActionLintFailed   = "certificate.lint.failed"
)

// Options configures a Service. Zero durations take the defaults in
// config.Defaults.
type Options struct {
	PublicURL       string
	DefaultValidity time.Duration
	MaxValidity     time.Duration
	Backdate        time.Duration
	Limits          policy.Limits
	Now             func() time.Time // the clock; time.Now when nil
	Rand            io.Reader        // serial randomness; crypto/rand when nil
	OCSPValidity    time.Duration    // of pre-signed OCSP responses
	Log             *slog.Logger
	Observer        Observer
	// Publisher is told about every committed change of revocation status,
	// so that this node's responder and CRL job act on it at once.
	Publisher Publisher
}

// Publisher receives committed changes of revocation status.
type Publisher interface {
	// PublishOCSP installs committed OCSP responses in this node's
	// responder.
	PublishOCSP(resps ...*pki.OCSPResponse)
	// RevocationCommitted tells this node's CRL job that an issuer's CRL is
	// out of date.
	RevocationCommitted(issuerID string)
}

type nopPublisher struct{}

func (nopPublisher) PublishOCSP(...*pki.OCSPResponse) {}
func (nopPublisher) RevocationCommitted(string)       {}

// Observer receives the timing of each issuance stage, for metrics.
type Observer interface {
	// IssueStage reports how long one stage took: "policy" (reading the
	// account's policy and quota use), "parse" (the CSR's encoding), "check"
	// (its key, self-signature and names, against the policy), "lint",
	// "record", "sign", "commit".
	IssueStage(stage string, d time.Duration)
	// IssueOutcome reports how an issuance ended: "issued", "refused",
	// "error".
	IssueOutcome(outcome string, d time.Duration)
}

type nopObserver struct{}

func (nopObserver) IssueStage(string, time.Duration)   {}
func (nopObserver) IssueOutcome(string, time.Duration) {}

// Service runs the certificate use cases.
type Service struct {
	store     Store
	hierarchy *Hierarchy
	linter    *lint.Linter
	profile   issuance.ClientProfile
	opts      Options
}

// New returns a Service that records in st and signs with h's issuing
// intermediate, linting every certificate with l before it is signed.
func New(st Store, h *Hierarchy, l *lint.Linter, opts Options) *Service {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Observer == nil {
		opts.Observer = nopObserver{}
	}
	if opts.Publisher == nil {
		opts.Publisher = nopPublisher{}
	}
	if opts.OCSPValidity == 0 {
		opts.OCSPValidity = 24 * time.Hour
	}
	return &Service{
		store:     st,
		hierarchy: h,
		linter:    l,
		profile:   issuance.ClientProfile{PublicURL: opts.PublicURL, MaxValidity: opts.MaxValidity, Now: opts.Now},
		opts:      opts,
	}
}

// Hierarchy returns the CA hierarchy the service signs with.
func (s *Service) Hierarchy() *Hierarchy { return s.hierarchy }

// IssueRequest is a request for a client certificate.
type IssueRequest struct {
	CSR          string // PEM
	ValidityDays int    // 0: the default; capped by policy
	RequestID    string // for the audit trail
}

// Issue checks req for the account acct (as read for this request) and, if
// everything holds, records, signs and returns a new certificate. Refusals are
// *pki.RequestError (bad CSR, bad key), *pki.PolicyError (plan, suspension,
// names) or other pki errors; every refusal is audited and none makes a
// signature.
func (s *Service) Issue(ctx context.Context, p pki.Principal, acct *pki.Account, req IssueRequest) (*pki.Certificate, error) {
	start := s.opts.Now()
	c, err := s.issue(ctx, p, acct, req)
	switch {
	case err == nil:
		s.opts.Observer.IssueOutcome("issued", s.opts.Now().Sub(start))
	case isRefusal(err):
		s.opts.Observer.IssueOutcome("refused", s.opts.Now().Sub(start))
	default:
		s.opts.Observer.IssueOutcome("error", s.opts.Now().Sub(start))
	}
	return c, err
}

func (s *Service) issue(ctx context.Context, p pki.Principal, acct *pki.Account, req IssueRequest) (*pki.Certificate, error) {
	ev := pki.AuditEvent{Actor: p.Actor(), AccountID: acct.ID, RequestID: req.RequestID}
	refuse := func(err error) error {
		return s.auditRefusal(ctx, ev, ActionIssueRefused, err)
	}

	t0 := s.opts.Now()
	if err := acct.MayHoldCertificates(); err != nil {
		return nil, refuse(err)
	}
	rules, err := s.accountRules(ctx, acct, nil)
	if err != nil {
		return nil, s.refusal(ctx, ev, ActionIssueRefused, err)
	}
	s.opts.Observer.IssueStage("policy", s.opts.Now().Sub(t0))
	t0 = s.opts.Now()
	csr, err := policy.ParseCSR(req.CSR)
	if err != nil {
		return nil, refuse(err)
	}
	s.opts.Observer.IssueStage("parse", s.opts.Now().Sub(t0))
	t0 = s.opts.Now()
	checked, err := policy.CheckCSR(csr, rules.limits)
	if err != nil {
		return nil, refuse(err)
	}
	if err := rules.check(checked); err != nil {
		return nil, refuse(err)
	}
	validity, err := s.validity(req.ValidityDays)
	if err != nil {
		return nil, refuse(err)
	}
	validity = rules.validity(validity)
	s.opts.Observer.IssueStage("check", s.opts.Now().Sub(t0))

	return s.sign(ctx, signRequest{
		event:     ev,
		account:   acct,
		checked:   checked,
		validity:  validity,
		requestID: req.RequestID,
	})
}

// signRequest is a request that has passed every check that needs no
// database: what remains is to lint, record, sign and store it.
type signRequest struct {
	event pki.AuditEvent
	// account holds the client certificate; nil for a server certificate of
	// pkid's TLS listener, whose hostnames are in checked.DNSNames.
	account     *pki.Account
	checked     *policy.Checked
	validity    time.Duration
	renewedFrom *pki.Serial
	requestID   string
}

func (s *Service) sign(ctx context.Context, r signRequest) (*pki.Certificate, error) {
	ev := r.event
	current := s.hierarchy.Current()
	issuer := current.Issuer
	profile := s.profile
	profile.Generation = current.Generation
	now := s.opts.Now()
	serial, err := pki.NewSerial(s.rand())
	if err != nil {
		return nil, err
	}
	notBefore := now.Add(-s.opts.Backdate).Truncate(time.Second)
	notAfter := now.Add(r.validity).Truncate(time.Second)
	if issuerEnd := issuer.Cert.NotAfter; notAfter.After(issuerEnd) {
		// Never issue past the issuer (SECURITY.md R-11): a certificate that
		// outlives its chain fails verification in confusing ways.
		notAfter = issuerEnd
	}

	t0 := s.opts.Now()
	var prepared *issuance.Prepared
	if r.account != nil {
		prepared, err = issuer.Prepare(profile, issuance.ClientRequest{
			Serial:       serial,
			PublicKey:    r.checked.PublicKey,
			CommonName:   r.checked.CommonName,
			DNSNames:     r.checked.DNSNames,
			URIs:         r.checked.URIs,
			Organization: r.account.Name,
			AccountID:    r.account.ID,
			NotBefore:    notBefore,
			NotAfter:     notAfter,
		}, s.linter)
	} else {
		prepared, err = issuer.PrepareServer(profile, issuance.ServerRequest{
			Serial:    serial,
			PublicKey: r.checked.PublicKey,
			Hostnames: r.checked.DNSNames,
			NotBefore: notBefore,
			NotAfter:  notAfter,
		}, s.linter)
	}
	if err != nil {
		ev.Action, ev.Outcome = ActionLintFailed, pki.OutcomeFailure
		ev.Serial = serial
		ev.Detail = map[string]any{"error": err.Error()}
		if aerr := s.store.RecordAudit(ctx, ev); aerr != nil {
			return nil, errors.Join(err, aerr)
		}
		s.opts.Log.Error("certificate failed lint; nothing signed", "serial", serial, "error", err)
		return nil, fmt.Errorf("ca: preparing certificate: %w", err)
	}
	s.opts.Observer.IssueStage("lint", s.opts.Now().Sub(t0))

	spki := hex.EncodeToString(r.checked.SPKISHA256[:])
	rec := &pki.Certificate{
		Serial:      serial,
		IssuerID:    issuer.ID,
		Profile:     pki.ProfileClient,
		State:       pki.StatePending,
		LintDER:     prepared.LintDER,
		SubjectCN:   r.checked.CommonName,
		SPKISHA256:  r.checked.SPKISHA256[:],
		NotBefore:   notBefore,
		NotAfter:    notAfter,
		RenewedFrom: r.renewedFrom,
	}
	if r.account != nil {
		rec.AccountID = r.account.ID
	} else {
		rec.Profile = pki.ProfileServer
	}
	ev.Action, ev.Outcome, ev.Serial = ActionSigning, pki.OutcomeSuccess, serial
	ev.Detail = map[string]any{
		"issuer":      issuer.ID,
		"spki_sha256": spki,
		"common_name": r.checked.CommonName,
		"dns_names":   r.checked.DNSNames,
		"uri_sans":    uriStrings(r.checked.URIs),
		"not_before":  notBefore,
		"not_after":   notAfter,
	}
	if r.renewedFrom != nil {
		ev.Detail["renewed_from"] = *r.renewedFrom
	}

	// From the moment the pending row is committed, before a signature can
	// exist, the OCSP responder answers "good" for it rather than
	// "unauthorized" (SECURITY.md P1, O-10): it signs the certificate's
	// first response from this row when it is first asked, which spares
	// issuance a signature and a write for certificates no one asks about.
	t0 = s.opts.Now()
	if err := s.store.CreatePending(ctx, rec, ev); err != nil {
		if errors.Is(err, pki.ErrKeyBlocked) || errors.Is(err, pki.ErrKeyInUse) {
			return nil, s.auditRefusal(ctx, r.event, ActionIssueRefused,
				&pki.RequestError{Kind: pki.KindBadPublicKey, Detail: err.Error()})
		}
		return nil, fmt.Errorf("ca: recording certificate %s: %w", serial, err)
	}
	s.opts.Observer.IssueStage("record", s.opts.Now().Sub(t0))

	t0 = s.opts.Now()
	der, err := issuer.Issue(prepared)
	if err != nil {
		// The pending row stays: it is the record that a signature may have
		// been attempted, and OCSP/CRL cover it.
		return nil, fmt.Errorf("ca: signing certificate %s: %w", serial, err)
	}
	s.opts.Observer.IssueStage("sign", s.opts.Now().Sub(t0))

	fp := sha256.Sum256(der)
	ev.Action = ActionIssued
	ev.Detail = map[string]any{"fingerprint_sha256": hex.EncodeToString(fp[:])}
	t0 = s.opts.Now()
	if err := s.store.MarkIssued(ctx, serial, der, fp[:], ev); err != nil {
		return nil, fmt.Errorf("ca: storing signed certificate %s: %w", serial, err)
	}
	s.opts.Observer.IssueStage("commit", s.opts.Now().Sub(t0))

	rec.State, rec.DER, rec.FingerprintSHA256 = pki.StateIssued, der, fp[:]
	rec.CreatedAt = now
	s.opts.Log.InfoContext(ctx, "certificate issued", "serial", serial, "profile", rec.Profile, "account", rec.AccountID, "spki_sha256", spki)
	return rec, nil
}

// validity turns the requested number of days into a duration: 0 means the
// default, anything above the maximum is capped (the contract's "capped by
// policy"), a negative number is malformed.
func (s *Service) validity(days int) (time.Duration, error) {
	if days < 0 {
		return 0, pki.Malformed("validity_days must be a positive number of days")
	}
	if days == 0 {
		return s.opts.DefaultValidity, nil
	}
	const maxDays = 100000 // keeps the multiplication far from overflow
	d := time.Duration(min(days, maxDays)) * 24 * time.Hour
	return min(d, s.opts.MaxValidity), nil
}

func (s *Service) rand() io.Reader {
	if s.opts.Rand != nil {
		return s.opts.Rand
	}
	return cryptoRand
}

// auditRefusal records that a request was refused and returns the refusal.
// If the audit write itself fails the request fails with that error instead:
// a refusal that cannot be recorded must not look like a clean answer.
func (s *Service) auditRefusal(ctx context.Context, ev pki.AuditEvent, action string, refusal error) error {
	ev.Action, ev.Outcome = action, pki.OutcomeFailure
	ev.Detail = map[string]any{"reason": refusal.Error()}
	if err := s.store.RecordAudit(ctx, ev); err != nil {
		return fmt.Errorf("ca: auditing refusal (%v): %w", refusal, err)
	}
	return refusal
}

// isRefusal reports whether err is the caller's fault or policy's, as opposed
// to a failure of pkid or its dependencies.
func isRefusal(err error) bool {
	var re *pki.RequestError
	var pe *pki.PolicyError
	var ce *pki.ConflictError
	var rl *pki.RateLimitError
	return errors.As(err, &re) || errors.As(err, &pe) || errors.As(err, &ce) || errors.As(err, &rl) ||
		errors.Is(err, pki.ErrNotFound)
}
