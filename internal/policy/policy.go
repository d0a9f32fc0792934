// Package policy decides whether a certificate signing request may become a
// client certificate: the PEM and DER framing, the public key, the signature
// algorithm and self-signature, the requested extensions and the names.
//
// The package does no I/O and keeps no state. Every refusal is a
// *pki.RequestError (400-class: badCSR, badPublicKey, badSignatureAlgorithm)
// or a *pki.PolicyError (403-class: rejectedIdentifier), and no error detail
// ever echoes the submitted bytes, which might be a private key pasted by
// mistake.
//
// A CSR only ever contributes its public key, its common name, its DNS names
// and, when the account's policy allows them, SPIFFE IDs within the
// account's namespace to a certificate (see Checked). The CA decides every extension;
// requested extensions are either refused, when they ask for something a
// client certificate must never have, or ignored.
package policy

import (
	"crypto"
	"crypto/x509"
	"net/url"

	"github.com/pkid/pkid/internal/pki"
)

// Checked is a CSR that passed every check; only these fields are ever used to
// build a certificate (the CA decides all extensions, never the CSR).
type Checked struct {
	PublicKey  crypto.PublicKey // *ecdsa.PublicKey (P-256/P-384) or *rsa.PublicKey (2048/3072/4096, e=65537)
	CommonName string           // validated, may be "" only if DNSNames non-empty
	DNSNames   []string         // validated, lower-case A-labels, deduplicated, in CSR order
	URIs       []*url.URL       // SPIFFE IDs within Limits.URINamespace, deduplicated, in CSR order
	SPKISHA256 [32]byte         // SHA-256 of the DER SubjectPublicKeyInfo, canonically encoded (as x509.MarshalPKIXPublicKey)
}

// Limits configures what is accepted; DefaultLimits returns the defaults.
type Limits struct {
	// MaxDNSNames caps the dNSName entries of the subjectAltName extension,
	// counted before duplicates are removed. Zero or negative means the
	// default (100), so that a zero Limits is safe to use.
	MaxDNSNames int
	// AllowWildcards permits well-formed wildcard names ("*.x.y"). Without
	// it such a name is a policy refusal (403 rejectedIdentifier); malformed
	// wildcards are 400 badCSR either way.
	AllowWildcards bool
	// URINamespace, when set, admits URI SANs that are SPIFFE IDs equal to
	// it or below it (see URINamespace and CheckURI): the account's own
	// namespace, passed in by the CA when the account's policy allows URI
	// SANs. A SPIFFE ID outside it is a policy refusal (403
	// rejectedIdentifier), a URI that is not a well-formed SPIFFE ID is
	// malformed (400 badCSR). Empty refuses every URI SAN (400 badCSR), as
	// SECURITY.md C-27 asks unless a profile allows them.
	URINamespace string
}

// defaultMaxDNSNames follows Boulder's default cap on identifiers per
// certificate (SECURITY.md C-31).
const defaultMaxDNSNames = 100

// DefaultLimits returns the limits pkid applies unless configured otherwise:
// at most 100 DNS names, no wildcards.
func DefaultLimits() Limits {
	return Limits{MaxDNSNames: defaultMaxDNSNames}
}

func (l Limits) maxDNSNames() int {
	if l.MaxDNSNames <= 0 {
		return defaultMaxDNSNames
	}
	return l.MaxDNSNames
}

// CheckCSR applies every rule to csr, which should come from ParseCSR, and
// returns the only parts of it a certificate may be built from.
//
// The order is Boulder's (csr.VerifyCSR): the key first, so that a 16k-bit
// RSA key is refused before it costs a signature verification; then the
// signature algorithm allow-list, because Go's CheckSignature accepts SHA-1;
// then the self-signature, which proves possession of the private key; then
// the attributes and extensions; and last the subject and names. Malformed
// input (400) is reported before policy refusals (403), so a client fixes its
// CSR before it learns what its account may hold.
func CheckCSR(csr *x509.CertificateRequest, lim Limits) (*Checked, error) {
	if csr == nil {
		return nil, badCSR("no certificate request")
	}
	spki, err := checkKey(csr.PublicKey, csr.PublicKeyAlgorithm)
	if err != nil {
		return nil, err
	}
	if !allowedSignatureAlgorithm(csr.SignatureAlgorithm) {
		return nil, &pki.RequestError{
			Kind:   pki.KindBadSignatureAlgorithm,
			Detail: "the certificate request is not signed with an accepted algorithm; use ECDSA or RSA PKCS#1 v1.5 with SHA-256, SHA-384 or SHA-512",
		}
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, badCSR("invalid signature: the certificate request is not signed by the private key of the public key it contains")
	}
	cn, names, err := checkContents(csr, lim)
	if err != nil {
		return nil, err
	}
	uris, err := checkURIs(csr.URIs, lim.URINamespace)
	if err != nil {
		return nil, err
	}
	return &Checked{
		PublicKey:  csr.PublicKey,
		CommonName: cn,
		DNSNames:   names,
		URIs:       uris,
		SPKISHA256: spki,
	}, nil
}

// checkURIs applies the namespace to URI SANs whose syntax checkExtensions
// has checked, and removes duplicates, keeping the CSR's order.
func checkURIs(uris []*url.URL, namespace string) ([]*url.URL, error) {
	if len(uris) == 0 {
		return nil, nil
	}
	out := make([]*url.URL, 0, len(uris))
	seen := make([]string, 0, len(uris))
	for _, u := range uris {
		s := u.String()
		if err := checkNamespace(s, namespace); err != nil {
			return nil, err
		}
		if !contains(seen, s) {
			seen = append(seen, s)
			out = append(out, u)
		}
	}
	return out, nil
}

// checkContents applies the rules that follow the signature check: version,
// attributes, extensions, subject and names. It returns the common name and
// the validated, deduplicated DNS names.
func checkContents(csr *x509.CertificateRequest, lim Limits) (string, []string, error) {
	if csr.Version != 0 {
		return "", nil, badCSR("unsupported certificate request version; only version 1 (0) exists (RFC 2986)")
	}
	if err := checkAttributes(csr.RawTBSCertificateRequest); err != nil {
		return "", nil, err
	}
	names, err := checkExtensions(csr, lim.maxDNSNames(), lim.URINamespace)
	if err != nil {
		return "", nil, err
	}
	cn, err := commonName(csr)
	if err != nil {
		return "", nil, err
	}
	names, err = checkNames(names, lim)
	if err != nil {
		return "", nil, err
	}
	if cn == "" && len(names) == 0 && len(csr.URIs) == 0 {
		return "", nil, badCSR("the certificate request names nothing: give a subject common name, DNS names in subjectAltName, or both")
	}
	return cn, names, nil
}

// allowedSignatureAlgorithm is the explicit allow-list of CSR signature
// algorithms (Boulder's goodSignatureAlgorithms). SHA-1 and MD5 are refused
// even though crypto/x509 still verifies SHA-1 RSA signatures on CSRs; RSA-PSS
// is refused because the profile issues PKCS#1 v1.5 only and Boulder does the
// same.
func allowedSignatureAlgorithm(alg x509.SignatureAlgorithm) bool {
	switch alg {
	case x509.SHA256WithRSA, x509.SHA384WithRSA, x509.SHA512WithRSA,
		x509.ECDSAWithSHA256, x509.ECDSAWithSHA384, x509.ECDSAWithSHA512:
		return true
	}
	return false
}

// checkNames validates every DNS name and removes duplicates, keeping the
// first occurrence so the result follows the CSR's order. Every name is
// checked for form before a wildcard is refused by policy, so that a CSR with
// both faults gets the 400.
func checkNames(names []string, lim Limits) ([]string, error) {
	if len(names) == 0 {
		return nil, nil
	}
	out := make([]string, 0, len(names))
	wildcard := false
	for i, name := range names {
		w, fault := checkDNSSyntax(name)
		if fault != "" {
			return nil, badCSR("subjectAltName DNS name %d %s", i+1, fault)
		}
		wildcard = wildcard || w
		if !contains(out, name) {
			out = append(out, name)
		}
	}
	if wildcard && !lim.AllowWildcards {
		return nil, wildcardRefused()
	}
	return out, nil
}

// contains is a linear search: the list is short (MaxDNSNames, 100 by
// default), so a map would cost more than it saves on the usual one to three
// names.
func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
