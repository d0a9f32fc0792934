package policy

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/pkid/pkid/internal/pki"
)

// This file holds the per-account rules: which names, URI SANs and keys an
// account may have certified, and for how long. They are pure functions of a
// pki.AccountPolicy; the ca package loads the policy and applies them before
// anything is signed.

// Bounds on what an account policy may say. They keep a policy small enough
// to be read on every issuance, and the quota counts bounded: every
// issuance counts an account's certificates up to just past each cap, at
// roughly half a millisecond per thousand, so a cap of the maximum costs
// tens of milliseconds once an account nears it. An account that needs
// more has no cap (0).
const (
	MaxNameRules = 1000
	MaxQuota     = 100_000
)

// maxURILength bounds a URI SAN (the SPIFFE ID specification's limit).
const maxURILength = 2048

// maxURISANs bounds the URI SANs of one CSR. A workload has one SPIFFE ID;
// a few allow for migrations between names.
const maxURISANs = 10

// AnyName is the allowed-names rule that admits every name the CA accepts.
const AnyName = "*"

// CAKeyTypes returns every key type the CA accepts (CheckPublicKey), the
// default and the widest choice of an account policy.
func CAKeyTypes() []pki.KeyType {
	return []pki.KeyType{pki.KeyECDSAP256, pki.KeyECDSAP384, pki.KeyRSA2048, pki.KeyRSA3072, pki.KeyRSA4096}
}

// KeyTypeOf returns the key type of pub, which should have passed
// CheckPublicKey; ok is false for any key the CA does not accept.
func KeyTypeOf(pub crypto.PublicKey) (t pki.KeyType, ok bool) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k == nil {
			return "", false
		}
		switch k.Curve {
		case elliptic.P256():
			return pki.KeyECDSAP256, true
		case elliptic.P384():
			return pki.KeyECDSAP384, true
		}
	case *rsa.PublicKey:
		if k == nil || k.N == nil {
			return "", false
		}
		switch k.N.BitLen() {
		case 2048:
			return pki.KeyRSA2048, true
		case 3072:
			return pki.KeyRSA3072, true
		case 4096:
			return pki.KeyRSA4096, true
		}
	}
	return "", false
}

// CheckAccountPolicy validates a policy that an administrator submits.
// caMaxDays is the CA's maximum validity in days, which MaxValidityDays may
// not exceed (0 stands for it). Refusals are *pki.RequestError of kind
// malformed, naming the field as the admin API spells it.
func CheckAccountPolicy(p *pki.AccountPolicy, caMaxDays int) error {
	if len(p.AllowedNames) > MaxNameRules {
		return pki.Malformed("allowed_names holds more than %d rules", MaxNameRules)
	}
	for i, rule := range p.AllowedNames {
		if err := CheckNameRule(rule); err != nil {
			return pki.Malformed("allowed_names[%d]: %v", i, err)
		}
		if slices.Contains(p.AllowedNames[:i], rule) {
			return pki.Malformed("allowed_names[%d] repeats an earlier rule", i)
		}
	}
	if len(p.KeyTypes) == 0 {
		return pki.Malformed("key_types must name at least one key type: %s", keyTypeList(CAKeyTypes()))
	}
	for i, t := range p.KeyTypes {
		if !slices.Contains(CAKeyTypes(), t) {
			return pki.Malformed("key_types[%d] is not a key type the CA accepts: %s", i, keyTypeList(CAKeyTypes()))
		}
		if slices.Contains(p.KeyTypes[:i], t) {
			return pki.Malformed("key_types[%d] repeats an earlier key type", i)
		}
	}
	if p.MaxValidityDays < 0 || p.MaxValidityDays > caMaxDays {
		return pki.Malformed("max_validity_days must be from 1 to %d (the CA's maximum), or 0 for the CA's maximum", caMaxDays)
	}
	if p.MaxActiveCertificates < 0 || p.MaxActiveCertificates > MaxQuota {
		return pki.Malformed("max_active_certificates must be from 1 to %d, or 0 for no cap", MaxQuota)
	}
	if p.MaxIssuancesPerHour < 0 || p.MaxIssuancesPerHour > MaxQuota {
		return pki.Malformed("max_issuances_per_hour must be from 1 to %d, or 0 for no limit", MaxQuota)
	}
	return nil
}

// CheckNameRule reports whether rule may be an allowed-names rule: AnyName,
// an exact DNS name, or "*." followed by a suffix of one or more labels.
// Rules are written as the names they admit are: lower-case A-labels,
// checked by the rules of CheckDNSName, so that a rule can never hold a
// U-label that merely looks like a name in the list.
func CheckNameRule(rule string) error {
	if rule == AnyName {
		return nil
	}
	if suffix, ok := strings.CutPrefix(rule, "*."); ok {
		// A suffix is valid when a name one label below it is: this applies
		// every label rule and the length limit, and allows a one-label
		// suffix such as "*.internal", which a private CA may well use.
		if _, fault := checkDNSSyntax("x." + suffix); fault != "" || strings.Contains(suffix, "*") {
			return fmt.Errorf("the pattern's suffix is not a valid DNS name (lower-case A-labels)")
		}
		return nil
	}
	wildcard, fault := checkDNSSyntax(rule)
	switch {
	case fault != "":
		return fmt.Errorf("the rule %s; write a DNS name in lower-case A-labels, \"*.suffix\" or \"*\"", fault)
	case wildcard:
		return fmt.Errorf("the rule is malformed")
	}
	return nil
}

// nameAllowed reports whether name, a common name or a DNS name, matches one
// of rules. Matching compares exact strings: an exact rule admits that very
// string; "*.suffix" admits a well-formed DNS name that ends in ".suffix",
// and a wildcard name "*.b" when b is the suffix or below it (every name the
// wildcard covers is then below the suffix). A homograph of a listed name is
// a different A-label and matches nothing.
func nameAllowed(rules []string, name string) bool {
	wildcard, fault := checkDNSSyntax(name)
	base := name
	if wildcard {
		base = name[2:]
	}
	for _, rule := range rules {
		if rule == AnyName {
			return true
		}
		suffix, pattern := strings.CutPrefix(rule, "*.")
		switch {
		case !pattern:
			if !wildcard && rule == name {
				return true
			}
		case fault != "":
			// Only a DNS name can be below a suffix.
		case wildcard && base == suffix:
			return true
		case strings.HasSuffix(base, "."+suffix):
			return true
		}
	}
	return false
}

// CheckNames applies the policy's allowed names to a certificate's common
// name (may be empty) and DNS names. A name that matches no rule is a
// *pki.PolicyError of kind rejectedIdentifier that names the name and the
// rule it fails, so that the client knows what to change.
func CheckNames(p *pki.AccountPolicy, cn string, dnsNames []string) error {
	if cn != "" && !nameAllowed(p.AllowedNames, cn) {
		return nameRefused(p, fmt.Sprintf("the common name %q", cn))
	}
	for _, n := range dnsNames {
		if !nameAllowed(p.AllowedNames, n) {
			return nameRefused(p, fmt.Sprintf("the DNS name %q", n))
		}
	}
	return nil
}

// maxRulesShown bounds the rules a refusal lists.
const maxRulesShown = 5

func nameRefused(p *pki.AccountPolicy, what string) error {
	var rules string
	switch n := len(p.AllowedNames); {
	case n == 0:
		rules = "it is empty: this account may not have common or DNS names certified"
	case n <= maxRulesShown:
		rules = "it holds " + strings.Join(p.AllowedNames, ", ")
	default:
		rules = fmt.Sprintf("it holds %s, and %d more", strings.Join(p.AllowedNames[:maxRulesShown], ", "), n-maxRulesShown)
	}
	return &pki.PolicyError{
		Kind:  pki.KindRejectedIdentifier,
		Title: rejectedIdentifierTitle,
		Detail: what + " matches no rule of this account's policy (allowed_names: exact names or *.suffix patterns, compared as lower-case A-labels); " +
			rules,
	}
}

// CheckKeyType refuses a key whose type the policy does not list. The
// refusal is a *pki.RequestError of kind badPublicKey (400, as for any key
// of a refused type), naming the types the account may use.
func CheckKeyType(p *pki.AccountPolicy, pub crypto.PublicKey) error {
	t, ok := KeyTypeOf(pub)
	if ok && slices.Contains(p.KeyTypes, t) {
		return nil
	}
	what := "this key type"
	if ok {
		what = "a " + string(t) + " key"
	}
	return badKey(what + " is not allowed by this account's policy (key_types); use one of: " + keyTypeList(p.KeyTypes))
}

func keyTypeList(ts []pki.KeyType) string {
	s := make([]string, len(ts))
	for i, t := range ts {
		s[i] = string(t)
	}
	return strings.Join(s, ", ")
}

// CapValidity returns d capped by the policy's maximum validity (0: no cap
// of the policy's own; the CA's maximum applies in any case).
func CapValidity(p *pki.AccountPolicy, d time.Duration) time.Duration {
	if p.MaxValidityDays <= 0 {
		return d
	}
	return min(d, time.Duration(p.MaxValidityDays)*24*time.Hour)
}

// TrustDomain returns the SPIFFE trust domain of a pkid deployment: the host
// of its public URL, lower case, without a port. An error means the host
// cannot be a trust domain (an IPv6 literal, for one), and so no account
// can hold URI SANs.
func TrustDomain(publicURL string) (string, error) {
	u, err := url.Parse(publicURL)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("policy: public URL %q has no host", publicURL)
	}
	td := strings.ToLower(u.Hostname())
	if td == "" || len(td) > 255 || strings.Trim(td, "abcdefghijklmnopqrstuvwxyz0123456789.-_") != "" {
		return "", fmt.Errorf("policy: host %q of the public URL is not a SPIFFE trust domain (a-z, 0-9, '.', '-', '_')", td)
	}
	return td, nil
}

// URINamespace returns the SPIFFE ID under which an account's URI SANs
// live: spiffe://<trustDomain>/account/<accountID>. Account ids are UUIDs,
// so no account's namespace is a prefix of another's.
func URINamespace(trustDomain, accountID string) string {
	return "spiffe://" + trustDomain + "/account/" + accountID
}

// spiffeFault applies the SPIFFE ID syntax (SPIFFE-ID specification §2) to a
// URI SAN as it is encoded: scheme "spiffe", a trust domain of a-z, 0-9,
// '.', '-' and '_', then a path of one or more segments of letters, digits,
// '.', '-' and '_' (no empty, "." or ".." segment, no trailing slash),
// nothing else (no port, user info, query, fragment or percent-encoding),
// at most 2048 bytes. The character classes leave no room for a parser to
// read the string two ways. It returns a fault completing "the URI SAN ...",
// which never quotes the URI.
func spiffeFault(raw string) string {
	if len(raw) > maxURILength {
		return "is longer than 2048 bytes"
	}
	rest, ok := strings.CutPrefix(raw, "spiffe://")
	if !ok {
		return "is not a SPIFFE ID (spiffe://trust-domain/path); pkid certifies no other kind of URI"
	}
	td, path, ok := strings.Cut(rest, "/")
	if td == "" || strings.Trim(td, "abcdefghijklmnopqrstuvwxyz0123456789.-_") != "" {
		return "has a trust domain that is empty or not made of a-z, 0-9, '.', '-' and '_'"
	}
	if !ok || path == "" {
		return "has no path: a workload's SPIFFE ID names it below the trust domain"
	}
	for seg := range strings.SplitSeq(path, "/") {
		switch {
		case seg == "":
			return "has an empty path segment or a trailing slash"
		case seg == "." || seg == "..":
			return "has a '.' or '..' path segment"
		case strings.Trim(seg, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_") != "":
			return "has a path character other than letters, digits, '.', '-' and '_'"
		}
	}
	return ""
}

// inNamespace reports whether a SPIFFE ID is the namespace itself or below
// it. The '/' boundary keeps ".../account/<id>" from admitting
// ".../account/<id>x".
func inNamespace(id, namespace string) bool {
	return namespace != "" && (id == namespace || strings.HasPrefix(id, namespace+"/"))
}

// CheckURI reports whether u may be a URI SAN of a certificate of the
// account whose namespace (URINamespace) is given; "" admits none. A URI
// that is not a well-formed SPIFFE ID is a *pki.RequestError of kind badCSR;
// a SPIFFE ID outside the namespace (another trust domain, another
// account's) is a *pki.PolicyError of kind rejectedIdentifier.
func CheckURI(u *url.URL, namespace string) error {
	raw := u.String()
	if fault := spiffeFault(raw); fault != "" {
		return badCSR("the URI SAN %s", fault)
	}
	return checkNamespace(raw, namespace)
}

func checkNamespace(id, namespace string) error {
	if namespace == "" {
		return &pki.PolicyError{Kind: pki.KindRejectedIdentifier, Title: rejectedIdentifierTitle,
			Detail: "this account's policy does not allow URI SANs (allow_uri_sans)"}
	}
	if !inNamespace(id, namespace) {
		return &pki.PolicyError{Kind: pki.KindRejectedIdentifier, Title: rejectedIdentifierTitle,
			Detail: "a URI SAN is outside this account's namespace: its SPIFFE IDs must be " + namespace + " or below it"}
	}
	return nil
}

// Misfits returns why an issued certificate would not be issued under the
// policy today, or nil when it fits: names outside allowed_names, URI SANs
// outside the namespace (or URI SANs at all when the policy allows none), a
// key type not listed, or a lifetime longer than the cap. caMax is the CA's
// maximum validity; namespace is the account's URI namespace when the
// policy allows URI SANs, else "". The account's own urn:pkid:account URI,
// which pkid writes itself, is not a URI SAN the policy governs.
func Misfits(p *pki.AccountPolicy, cert *x509.Certificate, namespace string, caMax time.Duration) []string {
	var out []string
	if cn := cert.Subject.CommonName; cn != "" && !nameAllowed(p.AllowedNames, cn) {
		out = append(out, fmt.Sprintf("common name %q is not in allowed_names", cn))
	}
	for _, n := range cert.DNSNames {
		if !nameAllowed(p.AllowedNames, n) {
			out = append(out, fmt.Sprintf("DNS name %q is not in allowed_names", n))
		}
	}
	for _, u := range cert.URIs {
		s := u.String()
		if strings.HasPrefix(s, accountURNPrefix) {
			continue
		}
		if !p.AllowURISANs || !inNamespace(s, namespace) {
			out = append(out, fmt.Sprintf("URI SAN %q is not allowed (allow_uri_sans, namespace %s)", s, namespace))
		}
	}
	if t, ok := KeyTypeOf(cert.PublicKey); !ok {
		out = append(out, "its key is of a type the CA no longer accepts")
	} else if !slices.Contains(p.KeyTypes, t) {
		out = append(out, "key type "+string(t)+" is not in key_types")
	}
	// Whole days, rounded down: notBefore is backdated for clock skew (by
	// less than a day), which the cap, counted from issuance, does not
	// include.
	const day = 24 * time.Hour
	if days, capDays := int(cert.NotAfter.Sub(cert.NotBefore)/day), int(CapValidity(p, caMax)/day); days > capDays {
		out = append(out, fmt.Sprintf("its lifetime of %d days exceeds max_validity_days (%d)", days, capDays))
	}
	return out
}

// accountURNPrefix is issuance.AccountURIPrefix, which policy may not
// import: the URI that names a certificate's account.
const accountURNPrefix = "urn:pkid:account:"
