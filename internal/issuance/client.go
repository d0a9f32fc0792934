package issuance

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/pkid/pkid/internal/lint"
	"github.com/pkid/pkid/internal/pki"
)

// MaxClientValidity is the hard cap on a client certificate's lifetime, the
// time from issuance to notAfter. It follows the CA/B Forum's TLS ceiling
// from March 2026 (ballot SC-081: 200 days): client certificates are not
// bound by the BRs, but a certificate that lives longer than that outlives
// the revocation practices of most relying parties. Configuration may only
// lower it.
const MaxClientValidity = 200 * 24 * time.Hour

// MaxBackdate bounds how far before issuance a client certificate's
// notBefore may lie (Boulder's limit): enough for any clock skew, not enough
// to make a certificate appear to have existed when it did not.
const MaxBackdate = 24 * time.Hour

// maxFutureNotBefore bounds how far after issuance notBefore may lie: a
// certificate that is not yet valid is a bug of the caller's clock.
const maxFutureNotBefore = time.Minute

// maxOrganizationLength is ub-organization-name (RFC 5280 appendix A.1), in
// characters.
const maxOrganizationLength = 64

// AccountURIPrefix is the URI SAN prefix that names the account a client
// certificate belongs to: "urn:pkid:account:<account id>". Relying parties
// (pkid-edge) read the account from it.
const AccountURIPrefix = "urn:pkid:account:"

// ClientRequest is a validated request for a client certificate: policy has
// checked the CSR, the key and the names before it gets here. Issuance
// decides every extension; nothing is copied from the CSR.
type ClientRequest struct {
	Serial     pki.Serial
	PublicKey  crypto.PublicKey
	CommonName string   // subject CN; may be empty
	DNSNames   []string // DNS subject alternative names; may be empty
	// Organization is the account's name, the subject O. It is a label, not
	// an identity (the account URI is), so it is trimmed to RFC 5280's 64
	// characters rather than refused.
	Organization string
	// AccountID is the account's id: the URI SAN urn:pkid:account:<id>.
	AccountID string
	// URIs are further URI SANs (SPIFFE IDs in the account's namespace),
	// written after the account's URI. Policy has checked them against the
	// account's namespace; issuance only refuses one that could pass for
	// the account URI, which relying parties must find exactly once.
	URIs      []*url.URL
	NotBefore time.Time
	NotAfter  time.Time
}

// ClientProfile is what pkid's deployment contributes to every client
// certificate.
type ClientProfile struct {
	// PublicURL is the base of the URLs written into certificates: OCSP
	// {PublicURL}/ocsp and CA issuers {PublicURL}/ca/issuer.cer in
	// authorityInformationAccess, and CRL distribution point {PublicURL}/crl
	// (other paths for a later Generation).
	// It must be plain http (see HierarchyConfig.PublicURL).
	PublicURL string
	// Generation is the issuing intermediate's generation (1 for the one
	// `pkid init` made; 0 means 1): it chooses the CRL distribution point
	// and caIssuers paths, CRLPath and IssuerPath.
	Generation int
	// MaxValidity caps notAfter - issuance time. Zero means
	// MaxClientValidity, which it may not exceed.
	MaxValidity time.Duration
	// Now is the clock the request's validity is checked against; time.Now
	// when nil. Give it the clock the caller computed notBefore with.
	Now func() time.Time

	// mutate, set only by this package's tests, changes the template after
	// the profile has built it: a deliberately broken profile, to show that
	// lint stops it.
	mutate func(*x509.Certificate)
}

// Prepare builds the client certificate for req and lints it; it returns the
// single-use token that Issue signs. The certificate has:
//
//   - subject CN (when given) and O (the account's name);
//   - keyUsage digitalSignature, critical: the key only signs TLS handshakes
//     (also for RSA keys: TLS 1.3 and ECDHE suites never encrypt to it);
//   - extKeyUsage clientAuth only;
//   - basicConstraints CA:FALSE, critical;
//   - subject key identifier (RFC 7093 method 1) and authority key identifier;
//   - authorityInformationAccess: OCSP and CA issuers; CRL distribution point;
//   - subjectAltName: req.DNSNames, urn:pkid:account:<AccountID> and
//     req.URIs.
//
// Prepare refuses, with an error wrapping ErrBadRequest, a notAfter beyond the
// issuer's, a notBefore more than a minute ahead of the profile's clock or
// more than MaxBackdate behind it, a lifetime beyond the profile's cap, and a
// malformed serial, key or account id. When zlint reports an error it
// returns a *LintError. In every case no real signature is made.
func (i *Issuer) Prepare(p ClientProfile, req ClientRequest, l *lint.Linter) (*Prepared, error) {
	if l == nil {
		return nil, errors.New("issuance: no linter: pkid never signs what it has not linted")
	}
	return i.prepareClient(p, req, l)
}

// prepareClient is Prepare with any linter; benchmarks measure the cost of
// everything but zlint through it. The tbsCertificate is pkid's own encoding
// (encodeClientTBS), except when a test has set the profile's mutate hook,
// which only a template can honour.
func (i *Issuer) prepareClient(p ClientProfile, req ClientRequest, l certLinter) (*Prepared, error) {
	c, err := i.clientContent(p, req)
	if err != nil {
		return nil, err
	}
	if p.mutate != nil {
		tmpl := c.template()
		p.mutate(tmpl)
		return i.prepare(tmpl, req.PublicKey, l)
	}
	tbs, err := i.encodeClientTBS(c)
	if err != nil {
		return nil, err
	}
	return i.prepareTBS(tbs, req.Serial, l) // canonical: checkSerial
}

// clientContent is what a client certificate says, decided by the profile
// from a checked request. It has two encodings that must agree byte for
// byte: encodeClientTBS, which issuance uses, and template, the
// x509.Certificate from which x509.CreateCertificate builds the same
// tbsCertificate (captureTBS), the reference TestClientTBSMatchesX509 holds
// the first to. A field added here must go into both.
type clientContent struct {
	serial                *big.Int
	commonName            string // empty: no CN
	organization          string // empty: no O
	notBefore, notAfter   time.Time
	publicKey             crypto.PublicKey
	spki                  []byte // DER SubjectPublicKeyInfo of publicKey
	ski                   []byte // its key identifier (subjectKeyID)
	ocspURL, caIssuersURL string
	crlURL                string
	dnsNames              []string
	uris                  []*url.URL // the account's URI first
}

// clientContent applies the profile to req, refusing what it cannot
// certify.
func (i *Issuer) clientContent(p ClientProfile, req ClientRequest) (*clientContent, error) {
	if i.Cert == nil || i.sigAlg == x509.UnknownSignatureAlgorithm {
		return nil, errors.New("issuance: issuer not made by NewIssuer")
	}
	if !i.Cert.IsCA || i.Cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("%w: issuer %s is not a CA", ErrBadRequest, i.ID)
	}
	base, err := baseURL(p.PublicURL)
	if err != nil {
		return nil, err
	}
	serial, err := checkSerial(req.Serial)
	if err != nil {
		return nil, err
	}
	if err := checkSubscriberKey(req.PublicKey); err != nil {
		return nil, err
	}
	accountURI, err := accountURI(req.AccountID)
	if err != nil {
		return nil, err
	}
	uris := []*url.URL{accountURI}
	for _, u := range req.URIs {
		if u == nil {
			return nil, fmt.Errorf("%w: nil URI SAN", ErrBadRequest)
		}
		if s := u.String(); !u.IsAbs() || strings.HasPrefix(s, AccountURIPrefix) {
			return nil, fmt.Errorf("%w: URI SAN %q is not absolute or names an account", ErrBadRequest, s)
		}
		uris = append(uris, u)
	}
	if err := p.checkValidity(req.NotBefore, req.NotAfter, i.Cert); err != nil {
		return nil, err
	}
	spki, ski, err := subjectPublicKeyInfo(req.PublicKey)
	if err != nil {
		return nil, err
	}
	return &clientContent{
		serial:       serial,
		commonName:   req.CommonName,
		organization: organization(req.Organization),
		notBefore:    req.NotBefore,
		notAfter:     req.NotAfter,
		publicKey:    req.PublicKey,
		spki:         spki,
		ski:          ski,
		ocspURL:      base + "/ocsp",
		caIssuersURL: base + IssuerPath(p.Generation),
		crlURL:       base + CRLPath(p.Generation),
		dnsNames:     append([]string(nil), req.DNSNames...),
		uris:         uris,
	}, nil
}

// template returns c as the x509.Certificate that x509.CreateCertificate
// turns into c's tbsCertificate.
func (c *clientContent) template() *x509.Certificate {
	subject := pkix.Name{CommonName: c.commonName}
	if c.organization != "" {
		subject.Organization = []string{c.organization}
	}
	return &x509.Certificate{
		SerialNumber:          c.serial,
		Subject:               subject,
		NotBefore:             c.notBefore,
		NotAfter:              c.notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  false,
		SubjectKeyId:          c.ski,
		OCSPServer:            []string{c.ocspURL},
		IssuingCertificateURL: []string{c.caIssuersURL},
		CRLDistributionPoints: []string{c.crlURL},
		DNSNames:              c.dnsNames,
		URIs:                  c.uris,
	}
}

// checkValidity applies the rules on a client certificate's validity.
// Lifetime is measured from issuance, not from notBefore, so that the
// backdate a caller adds for clock skew does not eat into the cap.
func (p ClientProfile) checkValidity(notBefore, notAfter time.Time, issuer *x509.Certificate) error {
	now := time.Now()
	if p.Now != nil {
		now = p.Now()
	}
	maxValidity := p.MaxValidity
	if maxValidity == 0 {
		maxValidity = MaxClientValidity
	}
	switch {
	case maxValidity < 0 || maxValidity > MaxClientValidity:
		return fmt.Errorf("%w: profile validity cap %s is outside (0, %s]", ErrBadRequest, maxValidity, MaxClientValidity)
	case !notAfter.After(notBefore):
		return fmt.Errorf("%w: notAfter %s is not after notBefore %s", ErrBadRequest, stamp(notAfter), stamp(notBefore))
	case notAfter.After(issuer.NotAfter):
		return fmt.Errorf("%w: notAfter %s is beyond the issuer's notAfter %s", ErrBadRequest, stamp(notAfter), stamp(issuer.NotAfter))
	case notBefore.After(now.Add(maxFutureNotBefore)):
		return fmt.Errorf("%w: notBefore %s is in the future", ErrBadRequest, stamp(notBefore))
	case notBefore.Before(now.Add(-MaxBackdate)):
		return fmt.Errorf("%w: notBefore %s is backdated more than %s", ErrBadRequest, stamp(notBefore), MaxBackdate)
	case notAfter.Sub(now) > maxValidity:
		return fmt.Errorf("%w: lifetime %s exceeds the cap of %s", ErrBadRequest, notAfter.Sub(now).Round(time.Second), maxValidity)
	}
	return nil
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// checkSerial accepts a canonical serial of 9 to 19 bytes (64 to 152 bits of
// which pkid draws 128 at random), which encodes within RFC 5280's 20
// octets.
func checkSerial(s pki.Serial) (*big.Int, error) {
	canon, err := pki.ParseSerial(string(s))
	if err != nil || canon != s {
		return nil, fmt.Errorf("%w: serial %q is not canonical", ErrBadRequest, s)
	}
	n := s.Big()
	if l := len(n.Bytes()); l < 9 || l > 19 {
		return nil, fmt.Errorf("%w: serial %s is %d bytes, want 9 to 19", ErrBadRequest, s, l)
	}
	return n, nil
}

// checkSubscriberKey accepts the key types pkid certifies. Strength (RSA
// size and exponent, weak keys) is policy's business and was checked on the
// CSR; this only keeps the profile's decisions (keyUsage, SKI) well defined.
func checkSubscriberKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
			return nil
		}
	case *rsa.PublicKey:
		if k.N.BitLen() >= 2048 {
			return nil
		}
	case ed25519.PublicKey:
		return nil
	}
	return fmt.Errorf("%w: public key of type %T is not one pkid certifies", ErrBadRequest, pub)
}

// accountURI returns urn:pkid:account:<id>. The id must be made of RFC 3986
// unreserved characters, so that the URI needs no escaping and reads back
// exactly (account ids are UUIDs).
func accountURI(id string) (*url.URL, error) {
	if id == "" || len(id) > 64 || strings.IndexFunc(id, func(r rune) bool {
		return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '-' || r == '.' || r == '_' || r == '~')
	}) >= 0 {
		return nil, fmt.Errorf("%w: account id %q cannot be written into a URI", ErrBadRequest, id)
	}
	return url.Parse(AccountURIPrefix + id)
}

// organization trims an account name to what the subject O may hold.
func organization(name string) string {
	name = strings.TrimSpace(name)
	if utf8.RuneCountInString(name) <= maxOrganizationLength {
		return name
	}
	runes := []rune(name)
	return strings.TrimSpace(string(runes[:maxOrganizationLength]))
}

// subjectKeyID computes a key identifier by RFC 7093 §2 method 1: the
// leftmost 160 bits of the SHA-256 of the subjectPublicKey BIT STRING's
// value. It is what Go generates for CA certificates, so every key
// identifier in the hierarchy is computed the same way.
func subjectKeyID(pub crypto.PublicKey) ([]byte, error) {
	_, ski, err := subjectPublicKeyInfo(pub)
	return ski, err
}

// subjectPublicKeyInfo returns the DER SubjectPublicKeyInfo of pub (RFC 5280
// §4.1.2.7), as x509 writes it into certificates, and its subjectKeyID.
func subjectPublicKeyInfo(pub crypto.PublicKey) (spki, ski []byte, err error) {
	spki, err = x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	in := cryptobyte.String(spki)
	var info cryptobyte.String
	var key []byte
	if !in.ReadASN1(&info, cbasn1.SEQUENCE) || !in.Empty() ||
		!info.SkipASN1(cbasn1.SEQUENCE) || // algorithm
		!info.ReadASN1BitStringAsBytes(&key) || !info.Empty() {
		return nil, nil, errors.New("issuance: re-reading a public key")
	}
	sum := sha256.Sum256(key)
	return spki, sum[:20], nil
}
