// Package lint runs zlint v3 on what pkid is about to sign: every certificate
// and every CRL, as the to-be-signed bytes with a placeholder signature that
// verifies under no key, so that nothing trusted exists yet. A result of Error or Fatal from any lint that applies refuses the
// signature; the caller then signs nothing.
//
// pkid is a private CA that issues mTLS client certificates (and one TLS
// server certificate for its own listener), so it runs the lint sources that
// describe what a well-formed certificate is, and leaves out those that
// describe membership of a public root program or certificate types pkid never
// issues. The choice is made once, in [New], and is listed in [ExcludedSources]
// and [ExcludedLints] with the reason for each, so that nothing is hidden.
package lint

import (
	"fmt"
	"sort"
	"strings"

	"github.com/zmap/zcrypto/x509"
	zl "github.com/zmap/zlint/v3/lint"
	"github.com/zmap/zlint/v3/util"

	// The zlint root package imports every lint package, each of which
	// registers its lints in the global registry.
	_ "github.com/zmap/zlint/v3"
)

// ExcludedSources are the zlint lint sources that pkid does not run, each with
// the reason. It and ExcludedLints are read by New and are documentation;
// treat them as read-only. Everything else runs: RFC 5280 and the RFCs it leans on (3279,
// 5480, 5891, 8813, 6960), the CA/Browser Forum TLS Baseline Requirements
// (zlint applies them only to certificates that can authenticate a TLS server:
// CA certificates without an EKU, the TLS listener's own certificate, and the
// OCSP-responder lints that apply to every delegated responder) and the
// community lints.
var ExcludedSources = map[zl.LintSource]string{
	zl.MozillaRootStorePolicy:        "Mozilla root store policy: binds CAs in Mozilla's root program; pkid's root is in none",
	zl.AppleRootStorePolicy:          "Apple root program policy: binds publicly trusted CAs only",
	zl.ChromeRootStorePolicy:         "Chrome root program policy: binds publicly trusted CAs only",
	zl.EtsiEsi:                       "ETSI EN 319 412: EU qualified certificates (eIDAS), which pkid does not issue",
	zl.CABFEVGuidelines:              "CA/B Forum EV Guidelines: extended-validation TLS certificates, which pkid does not issue",
	zl.CABFSMIMEBaselineRequirements: "CA/B Forum S/MIME BRs: e-mail protection certificates, which pkid does not issue",
	zl.CABFCSBaselineRequirements:    "CA/B Forum code-signing BRs: code-signing certificates, which pkid does not issue",
	zl.RFC6962:                       "RFC 6962 Certificate Transparency: pkid's certificates are private and never logged, so there are no precertificates or SCT lists",
}

// ExcludedLints are individual lints from otherwise included sources that
// pkid does not run, each with the reason.
var ExcludedLints = map[string]string{
	// BR 7.1.2.10.2 wants a countryName in every publicly trusted CA's
	// subject, to tie it to a jurisdiction for root programs. pkid's CAs are
	// private, named by their operator (O, CN), and RFC 5280 asks for no
	// country.
	"e_ca_country_name_missing": "BR 7.1.2.10.2 countryName in CA subjects ties publicly trusted CAs to a jurisdiction for root programs; pkid's CAs are private and RFC 5280 does not require it",
	// It verifies the certificate's signature against the eight P-384 keys of
	// a public CA's compromised intermediates (about 5 ms per certificate,
	// more than every other lint together). pkid lints certificates whose
	// signature is a placeholder that verifies under no key, so the check can
	// never fire.
	"e_cert_issued_by_compromised_emudhra_ca": "checks for signatures by eight compromised public eMudhra CA keys; pkid lints certificates before they are signed, with a placeholder signature, so it cannot fire, and it costs ~5 ms per certificate",
}

// config tunes the lints that take options.
//
// e_ecdsa_small_private_key looks for ECDSA keys whose private scalar d is at
// most 2^Bits (or its negation), which anyone can recover from the public key.
// At zlint's default of 16 bits it costs about 0.1 ms per certificate (some
// twenty generic elliptic-curve additions), a quarter of all linting. 8 bits
// needs four additions, a third of the cost, and still catches the incident
// the lint was written for: the eight compromised eMudhra intermediate keys
// all had d < 256. A key this weak comes from a broken generator, not from bad
// luck, so a wider search buys little.
const config = `
[e_ecdsa_small_private_key]
Bits = 8
`

// caCRLConfig adds, for CRLs that list CA certificates (the root's CRL), the
// BRs' longer nextUpdate ceiling of 12 months (4.9.7) in place of the 10 days of subscriber CRLs.
const caCRLConfig = config + `
[e_crl_next_update_invalid]
SubscriberCRL = false
`

// Linter runs a fixed, filtered zlint registry. Building the registry is
// expensive (filtering copies every lint), so a Linter is built once and
// shared; it is safe for concurrent use.
type Linter struct {
	config      zl.Configuration
	caCRLConfig zl.Configuration
	certs       []*zl.CertificateLint
	crls        []*zl.RevocationListLint
	// notTLSServer is certs without the CA/B Forum TLS BR lints that zlint
	// itself answers NA for certificates that cannot authenticate a TLS
	// server (client-only leaves, OCSP responders): the same rule, applied
	// once per certificate instead of once per lint, which saves about a
	// tenth of the cost of linting a client certificate.
	notTLSServer []*zl.CertificateLint
	// disabled makes every check pass without looking: see Disabled.
	disabled bool
}

// Disabled returns a Linter that passes everything without parsing it. It
// exists for one purpose: the load benchmark's "linting off" figure, which
// shows what linting costs. Nothing that issues real certificates may use it;
// cmd/pkid never does, and the architecture test checks that only the
// benchmark command and tests refer to it.
func Disabled() *Linter { return &Linter{disabled: true} }

// New builds the filtered registry: zlint's global registry minus
// ExcludedSources and ExcludedLints.
func New() (*Linter, error) {
	opts := zl.FilterOptions{}
	for src := range ExcludedSources {
		opts.ExcludeSources = append(opts.ExcludeSources, src)
	}
	for name := range ExcludedLints {
		opts.ExcludeNames = append(opts.ExcludeNames, name)
	}
	reg, err := zl.GlobalRegistry().Filter(opts)
	if err != nil {
		return nil, fmt.Errorf("lint: filtering the zlint registry: %w", err)
	}
	cfg, err := zl.NewConfigFromString(config)
	if err != nil {
		return nil, fmt.Errorf("lint: parsing the zlint configuration: %w", err)
	}
	caCRLCfg, err := zl.NewConfigFromString(caCRLConfig)
	if err != nil {
		return nil, fmt.Errorf("lint: parsing the zlint configuration: %w", err)
	}
	l := &Linter{
		config:      cfg,
		caCRLConfig: caCRLCfg,
		certs:       reg.CertificateLints().Lints(),
		crls:        reg.RevocationListLints().Lints(),
	}
	for _, c := range l.certs {
		if c.Source != zl.CABFBaselineRequirements || c.OverrideFrameworkFilter {
			l.notTLSServer = append(l.notTLSServer, c)
		}
	}
	if len(l.certs) == 0 || len(l.crls) == 0 {
		return nil, fmt.Errorf("lint: the filtered registry is empty (%d certificate lints, %d CRL lints)", len(l.certs), len(l.crls))
	}
	return l, nil
}

// CertificateLints returns the names of the certificate lints this Linter
// runs, sorted.
func (l *Linter) CertificateLints() []string {
	names := make([]string, 0, len(l.certs))
	for _, c := range l.certs {
		names = append(names, c.Name)
	}
	sort.Strings(names)
	return names
}

// Certificate lints a DER certificate. It returns nil when no lint reports
// Error or Fatal, and otherwise an *Error naming every lint that did, with the
// warnings of the same run for context. Warnings and notices alone are not
// failures: zlint's warnings are SHOULDs, and pkid's own profiles are tested
// to raise none beyond a documented few, so a new warning in production means
// a new zlint release has an opinion, which is worth reading but not worth
// stopping issuance for.
//
// der that zcrypto cannot parse is reported as an *Error with the pseudo-lint
// "x509_parse".
func (l *Linter) Certificate(der []byte) error {
	if l.disabled {
		return nil
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return &Error{Subject: "certificate", Lints: []string{"x509_parse"}, Details: map[string]string{"x509_parse": err.Error()}}
	}
	lints := l.certs
	if !util.IsServerAuthCert(cert) {
		// The condition of zlint's framework filter for BR lints
		// (lint.CertificateLint.execute).
		lints = l.notTLSServer
	}
	e := &Error{Subject: "certificate"}
	for _, lint := range lints {
		e.add(lint.Name, lint.Execute(cert, l.config))
	}
	return e.orNil()
}

// PrivateServerCertificate lints the certificate of pkid's own TLS listener:
// a server certificate for names such as localhost and 127.0.0.1 that only
// pkid's private root vouches for. The CA/Browser Forum's TLS Baseline
// Requirements govern publicly trusted certificates and forbid exactly those
// names (internal names, reserved IP addresses), so their lints are left out
// here and every other lint runs, as for client certificates.
func (l *Linter) PrivateServerCertificate(der []byte) error {
	if l.disabled {
		return nil
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return &Error{Subject: "certificate", Lints: []string{"x509_parse"}, Details: map[string]string{"x509_parse": err.Error()}}
	}
	e := &Error{Subject: "certificate"}
	for _, lint := range l.notTLSServer {
		e.add(lint.Name, lint.Execute(cert, l.config))
	}
	return e.orNil()
}

// CRL lints a DER certificate revocation list (RFC 5280 §5) that covers
// subscriber certificates, such as the issuing intermediate's, with zlint's
// revocation-list lints and the same rules as Certificate. Its nextUpdate
// may be at most 10 days after thisUpdate (BR 4.9.7).
func (l *Linter) CRL(der []byte) error { return l.crl(der, l.config) }

// CACRL lints a CRL that covers CA certificates, such as the root's, which
// lists revoked intermediates: as CRL, but nextUpdate may be up to 12 months
// after thisUpdate (BR 4.9.7).
func (l *Linter) CACRL(der []byte) error { return l.crl(der, l.caCRLConfig) }

func (l *Linter) crl(der []byte, cfg zl.Configuration) error {
	if l.disabled {
		return nil
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		return &Error{Subject: "CRL", Lints: []string{"x509_parse"}, Details: map[string]string{"x509_parse": err.Error()}}
	}
	e := &Error{Subject: "CRL"}
	for _, lint := range l.crls {
		e.add(lint.Name, executeCRL(lint, crl, cfg))
	}
	return e.orNil()
}

// executeCRL runs one CRL lint. zlint recovers from a panicking certificate
// lint and reports it as Fatal, but not from a panicking CRL lint; this does
// the same for CRLs, so that a broken lint refuses a CRL instead of taking
// the process down.
func executeCRL(lint *zl.RevocationListLint, crl *x509.RevocationList, cfg zl.Configuration) (r *zl.LintResult) {
	defer func() {
		if p := recover(); p != nil {
			r = &zl.LintResult{Status: zl.Fatal, Details: fmt.Sprintf("lint panicked: %v", p)}
		}
	}()
	return lint.Execute(crl, cfg)
}

// Error reports a certificate or CRL that failed linting. Lints names every
// lint whose result was Error or Fatal, sorted; Details maps each of them (and
// each warning) to zlint's explanation; Warnings names the lints that warned
// in the same run.
type Error struct {
	Subject  string // "certificate" or "CRL"
	Lints    []string
	Warnings []string
	Details  map[string]string
}

func (e *Error) Error() string {
	return fmt.Sprintf("lint: %s failed %s", e.Subject, strings.Join(e.Lints, ", "))
}

func (e *Error) add(name string, r *zl.LintResult) {
	if r == nil {
		// A lint that returns no result is broken; count it as fatal rather
		// than as a pass.
		r = &zl.LintResult{Status: zl.Fatal, Details: "lint returned no result"}
	}
	switch r.Status {
	case zl.Error, zl.Fatal:
		e.Lints = append(e.Lints, name)
	case zl.Warn:
		e.Warnings = append(e.Warnings, name)
	default:
		return
	}
	if r.Details != "" {
		if e.Details == nil {
			e.Details = make(map[string]string)
		}
		e.Details[name] = r.Details
	}
}

func (e *Error) orNil() error {
	if len(e.Lints) == 0 {
		return nil
	}
	sort.Strings(e.Lints)
	sort.Strings(e.Warnings)
	return e
}
