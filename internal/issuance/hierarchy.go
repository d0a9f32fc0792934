package issuance

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"strings"
	"time"

	"github.com/pkid/pkid/internal/lint"
	"github.com/pkid/pkid/internal/pki"
)

// HierarchyConfig describes pkid's CA hierarchy. Zero fields take the
// defaults documented on each.
type HierarchyConfig struct {
	// Organization is the subject O of the CA certificates. Default: the
	// parent's O (so that a renewed OCSP signer keeps the hierarchy's name),
	// else "pkid".
	Organization string
	// RootCommonName is the root's subject CN. Default "pkid Root CA".
	RootCommonName string
	// IntermediateCommonName is the issuing intermediate's subject CN.
	// Default "pkid Issuing CA".
	IntermediateCommonName string
	// OCSPCommonName is the delegated OCSP responder's subject CN. Default
	// "pkid OCSP Responder".
	OCSPCommonName string
	// RootValidity is the root's lifetime. Default 20 years.
	RootValidity time.Duration
	// IntermediateValidity is the intermediate's lifetime, cut to the
	// root's notAfter. Default 5 years.
	IntermediateValidity time.Duration
	// OCSPValidity is the delegated responder's lifetime, cut to the
	// intermediate's notAfter. It is short because a responder certificate
	// carries id-pkix-ocsp-nocheck and so cannot itself be revoked: its
	// expiry is its revocation. Default 30 days; serve renews it.
	OCSPValidity time.Duration
	// PublicURL is the base URL written into certificates, e.g.
	// "http://127.0.0.1:8080". The intermediate's CRL distribution point is
	// {PublicURL}/ca/root.crl. It must be plain http: relying parties fetch
	// revocation data before they can trust any TLS connection, and RFC 5280
	// §4.2.1.13 and the CA/B Forum BRs (7.1.2.11.2) expect http.
	PublicURL string
}

// Defaults of HierarchyConfig.
const (
	DefaultOrganization           = "pkid"
	DefaultRootCommonName         = "pkid Root CA"
	DefaultIntermediateCommonName = "pkid Issuing CA"
	DefaultOCSPCommonName         = "pkid OCSP Responder"
	DefaultRootValidity           = 20 * 365 * 24 * time.Hour
	DefaultIntermediateValidity   = 5 * 365 * 24 * time.Hour
	DefaultOCSPValidity           = 30 * 24 * time.Hour
)

// caBackdate is how far before "now" CA certificates start, so that a
// relying party whose clock is a little behind already accepts them.
const caBackdate = 5 * time.Minute

// maxOCSPValidity bounds the delegated responder's lifetime: it cannot be
// revoked, so a long one would be a long exposure if its key leaked.
const maxOCSPValidity = 90 * 24 * time.Hour

// oidOCSPNoCheck is id-pkix-ocsp-nocheck (RFC 6960 §4.2.2.2.1).
var oidOCSPNoCheck = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 5}

// oidAnyPolicy is anyPolicy (RFC 5280 §4.2.1.4).
var oidAnyPolicy = mustOID(2, 5, 29, 32, 0)

func mustOID(ids ...uint64) x509.OID {
	oid, err := x509.OIDFromInts(ids)
	if err != nil {
		panic(err)
	}
	return oid
}

// asn1Null is the DER of an ASN.1 NULL, the value of id-pkix-ocsp-nocheck.
var asn1Null = []byte{0x05, 0x00}

func (c HierarchyConfig) withDefaults(parent *x509.Certificate) HierarchyConfig {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	if c.Organization == "" && parent != nil && len(parent.Subject.Organization) > 0 {
		c.Organization = parent.Subject.Organization[0]
	}
	def(&c.Organization, DefaultOrganization)
	def(&c.RootCommonName, DefaultRootCommonName)
	def(&c.IntermediateCommonName, DefaultIntermediateCommonName)
	def(&c.OCSPCommonName, DefaultOCSPCommonName)
	if c.RootValidity == 0 {
		c.RootValidity = DefaultRootValidity
	}
	if c.IntermediateValidity == 0 {
		c.IntermediateValidity = DefaultIntermediateValidity
	}
	if c.OCSPValidity == 0 {
		c.OCSPValidity = DefaultOCSPValidity
	}
	return c
}

// baseURL checks that raw is an absolute http URL with a host and nothing
// after the path, and returns it without a trailing slash.
func baseURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("%w: public URL %q must be an absolute http:// URL without user, query or fragment", ErrBadRequest, raw)
	}
	return strings.TrimRight(raw, "/"), nil
}

// caValidity returns [now-caBackdate, now+life], truncated to the second
// (certificates carry seconds) and cut to parent's notAfter when there is a
// parent, so that no certificate outlives its issuer.
func caValidity(now time.Time, life time.Duration, parent *x509.Certificate) (time.Time, time.Time, error) {
	if life <= 0 {
		return time.Time{}, time.Time{}, fmt.Errorf("%w: validity %s is not positive", ErrBadRequest, life)
	}
	notBefore := now.Add(-caBackdate).Truncate(time.Second)
	notAfter := now.Add(life).Truncate(time.Second)
	if parent != nil {
		if !now.Before(parent.NotAfter) {
			return time.Time{}, time.Time{}, fmt.Errorf("%w: issuer %q expired at %s", ErrBadRequest, parent.Subject.CommonName, parent.NotAfter.UTC().Format(time.RFC3339))
		}
		if notAfter.After(parent.NotAfter) {
			notAfter = parent.NotAfter
		}
	}
	return notBefore, notAfter, nil
}

func newSerial() (*big.Int, error) {
	s, err := pki.NewSerial(rand.Reader)
	if err != nil {
		return nil, err
	}
	return s.Big(), nil
}

// NewRoot creates pkid's self-signed root: CA:TRUE (critical) without a path
// length (the root's reach is bounded by its intermediate's pathLen 0),
// keyUsage keyCertSign and cRLSign (critical), a subject key identifier, a
// 128-bit random serial, and no extended key usage (RFC 5280 and the BRs
// leave a root unconstrained). key is normally ECDSA P-384 (GenerateKey);
// the template is linted before the key signs (see below). The returned
// Issuer has Signatures() == 1: its own.
func NewRoot(cfg HierarchyConfig, key crypto.Signer, now time.Time, l *lint.Linter) (*Issuer, error) {
	cfg = cfg.withDefaults(nil)
	if key == nil {
		return nil, errors.New("issuance: no root key")
	}
	alg, err := signatureAlgorithm(key.Public())
	if err != nil {
		return nil, err
	}
	notBefore, notAfter, err := caValidity(now, cfg.RootValidity, nil)
	if err != nil {
		return nil, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{cfg.Organization}, CommonName: cfg.RootCommonName},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            -1,
	}
	// A self-signed certificate can only be linted as self-signed: zlint
	// tells a root from a subordinate by verifying the self-signature, and
	// applies the subordinate rules (AKI, CRL DP, policies) otherwise. So the
	// template is first signed by a throwaway key as its own subject, a twin
	// that differs only in the public key and key identifier, and linted;
	// then the real key signs, and the real root is linted again. A root that
	// fails the second lint is discarded: a fresh key's self-signature binds
	// no one until the root is distributed.
	twin, err := newThrowawayKey(key.Public())
	if err != nil {
		return nil, fmt.Errorf("issuance: generating throwaway key: %w", err)
	}
	tmpl.SignatureAlgorithm = alg
	twinDER, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, twin.Public(), twin)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	if l == nil {
		return nil, errors.New("issuance: no linter: pkid never signs what it has not linted")
	}
	if err := l.Certificate(twinDER); err != nil {
		return nil, &LintError{Serial: pki.SerialFromBig(serial), Err: err}
	}
	self := &Issuer{Signer: key, sigAlg: alg}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), countingSigner{self})
	if err != nil {
		return nil, fmt.Errorf("issuance: signing root: %w", err)
	}
	if err := l.Certificate(der); err != nil {
		return nil, &LintError{Serial: pki.SerialFromBig(serial), Err: err}
	}
	root, err := NewIssuer(der, key)
	if err != nil {
		return nil, err
	}
	root.signatures.Store(self.Signatures())
	return root, nil
}

// NewIntermediate creates the issuing intermediate under root: CA:TRUE with
// pathLen 0 (it certifies leaves only), keyUsage keyCertSign and cRLSign
// (critical; not digitalSignature, because OCSP responses are signed by the
// delegated responder, not by the intermediate), authority and subject key
// identifiers, and a CRL distribution point {PublicURL}/ca/root.crl, the
// root's CRL, which lists this intermediate if it is ever revoked.
//
// Its extended key usage is clientAuth and serverAuth. EKU in a CA
// certificate constrains everything beneath it in Go's and OpenSSL's path
// validation, so clientAuth alone would stop the TLS listener's server
// certificate (issued by this CA) from verifying; listing the two purposes
// pkid issues for, and nothing else, keeps the intermediate from vouching
// for code signing, e-mail or anything else.
//
// Its certificatePolicies is anyPolicy (RFC 5280 §4.2.1.4): pkid publishes
// no certificate policy of its own, and anyPolicy is what the BRs
// (7.1.2.10.5) allow a CA operator's own subordinate to carry instead.
//
// It carries no authorityInformationAccess: the root is published at
// /ca/root.pem in PEM, and caIssuers must point at DER (RFC 5280 §4.2.2.1);
// a relying party needs the root in its trust store anyway, so the pointer
// would serve no one. key is normally ECDSA P-256.
func NewIntermediate(root *Issuer, cfg HierarchyConfig, key crypto.Signer, now time.Time, l *lint.Linter) (*Issuer, error) {
	if root == nil || root.Cert == nil {
		return nil, errors.New("issuance: no root")
	}
	if key == nil {
		return nil, errors.New("issuance: no intermediate key")
	}
	cfg = cfg.withDefaults(root.Cert)
	base, err := baseURL(cfg.PublicURL)
	if err != nil {
		return nil, err
	}
	if _, err := signatureAlgorithm(key.Public()); err != nil {
		return nil, err
	}
	notBefore, notAfter, err := caValidity(now, cfg.IntermediateValidity, root.Cert)
	if err != nil {
		return nil, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{cfg.Organization}, CommonName: cfg.IntermediateCommonName},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
		CRLDistributionPoints: []string{base + "/ca/root.crl"},
		Policies:              []x509.OID{oidAnyPolicy},
	}
	der, err := root.prepareAndIssue(tmpl, key.Public(), l)
	if err != nil {
		return nil, fmt.Errorf("issuance: creating intermediate: %w", err)
	}
	return NewIssuer(der, key)
}

// NewOCSPSigner creates a delegated OCSP responder certificate under
// intermediate, the profile of RFC 6960 §4.2.2.2 and CA/B Forum BR 7.1.2.8:
// extended key usage id-kp-OCSPSigning only; id-pkix-ocsp-nocheck (NULL,
// non-critical), so that clients do not ask for the responder's own status;
// keyUsage digitalSignature (critical); CA:FALSE; authority and subject key
// identifiers; no CRL distribution point and no authorityInformationAccess
// (BR: MUST NOT and NOT RECOMMENDED). Its lifetime is cfg.OCSPValidity (at
// most 90 days), never beyond the intermediate's notAfter. key is normally
// ECDSA P-256.
func NewOCSPSigner(intermediate *Issuer, cfg HierarchyConfig, key crypto.Signer, now time.Time, l *lint.Linter) (*Issuer, error) {
	if intermediate == nil || intermediate.Cert == nil {
		return nil, errors.New("issuance: no intermediate")
	}
	if key == nil {
		return nil, errors.New("issuance: no OCSP signer key")
	}
	cfg = cfg.withDefaults(intermediate.Cert)
	if cfg.OCSPValidity > maxOCSPValidity {
		return nil, fmt.Errorf("%w: OCSP signer validity %s exceeds %s: it cannot be revoked", ErrBadRequest, cfg.OCSPValidity, maxOCSPValidity)
	}
	if _, err := signatureAlgorithm(key.Public()); err != nil {
		return nil, err
	}
	notBefore, notAfter, err := caValidity(now, cfg.OCSPValidity, intermediate.Cert)
	if err != nil {
		return nil, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	ski, err := subjectKeyID(key.Public())
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{cfg.Organization}, CommonName: cfg.OCSPCommonName},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning},
		BasicConstraintsValid: true,
		IsCA:                  false,
		SubjectKeyId:          ski,
		ExtraExtensions:       []pkix.Extension{{Id: oidOCSPNoCheck, Value: asn1Null}},
	}
	der, err := intermediate.prepareAndIssue(tmpl, key.Public(), l)
	if err != nil {
		return nil, fmt.Errorf("issuance: creating OCSP signer: %w", err)
	}
	return NewIssuer(der, key)
}

// prepareAndIssue lints and signs a CA-hierarchy certificate in one go: these
// are made by `pkid init` and renewals, with no pending row to write between
// the two steps.
func (i *Issuer) prepareAndIssue(tmpl *x509.Certificate, pub crypto.PublicKey, l *lint.Linter) ([]byte, error) {
	if l == nil {
		return nil, errors.New("issuance: no linter: pkid never signs what it has not linted")
	}
	p, err := i.prepare(tmpl, pub, l)
	if err != nil {
		return nil, err
	}
	return i.Issue(p)
}
