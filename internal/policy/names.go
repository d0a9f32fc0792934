package policy

import (
	"crypto/x509"
	"encoding/asn1"
	"net/netip"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"
	"golang.org/x/text/unicode/norm"

	"github.com/pkid/pkid/internal/pki"
)

// Length bounds from RFC 1035 §2.3.4 (a name of 255 octets on the wire is 253
// characters of text without the root dot) and RFC 5280 Appendix A
// (ub-common-name).
const (
	maxDNSNameLength    = 253
	maxLabelLength      = 63
	maxCommonNameLength = 64
)

// rejectedIdentifierTitle is the PolicyError title for names policy refuses.
const rejectedIdentifierTitle = "A requested name is not allowed"

var oidCommonName = asn1.ObjectIdentifier{2, 5, 4, 3}

// CheckDNSName reports whether name may appear as a dNSName in a client
// certificate. A malformed name is a *pki.RequestError of kind badCSR; a
// well-formed wildcard when lim.AllowWildcards is false is a *pki.PolicyError
// of kind rejectedIdentifier.
//
// A name must be lower-case LDH A-labels (RFC 5890): at most 253 characters,
// at least two labels of 1 to 63 characters, no leading or trailing hyphen, no
// trailing dot, no NUL, space, underscore, upper case or non-ASCII byte (upper
// case is refused rather than folded, so that the name certified is the name
// sent), no reserved "??--" label other than an "xn--" label that is valid
// IDNA2008 punycode and round-trips, and a last label that is not all digits
// (which would make an IPv4 address a DNS name). A wildcard is a single
// leading "*." followed by at least two labels (SECURITY.md C-25, C-28, C-29).
func CheckDNSName(name string, lim Limits) error {
	wildcard, fault := checkDNSSyntax(name)
	if fault != "" {
		return badCSR("the DNS name %s", fault)
	}
	if wildcard && !lim.AllowWildcards {
		return wildcardRefused()
	}
	return nil
}

func wildcardRefused() error {
	return &pki.PolicyError{
		Kind:   pki.KindRejectedIdentifier,
		Title:  rejectedIdentifierTitle,
		Detail: "wildcard DNS names are not allowed",
	}
}

// checkDNSSyntax applies the syntax rules of CheckDNSName. It returns whether
// name is a well-formed wildcard, or a fault completing the sentence "the DNS
// name ...". The fault never quotes the name.
func checkDNSSyntax(name string) (wildcard bool, fault string) {
	if name == "" {
		return false, "is empty"
	}
	if len(name) > maxDNSNameLength {
		return false, "is longer than 253 characters"
	}
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '.', c == '*':
		case c == 0:
			return false, "contains a NUL byte"
		case c == ' ':
			return false, "contains a space"
		case 'A' <= c && c <= 'Z':
			return false, "contains upper case; write it in lower case"
		case c == '_':
			return false, "contains an underscore"
		case c >= utf8.RuneSelf:
			return false, "contains non-ASCII characters; write internationalised labels as A-labels (xn--...)"
		default:
			return false, "contains a character other than a-z, 0-9, '-' and '.'"
		}
	}
	if name[len(name)-1] == '.' {
		return false, "ends in a dot"
	}
	base := name
	if strings.HasPrefix(name, "*.") {
		wildcard, base = true, name[2:]
	}
	if strings.IndexByte(base, '*') >= 0 {
		return false, `is a malformed wildcard: only a whole first label "*" followed by at least two labels is allowed`
	}
	labels := 0
	for rest := base; ; {
		label, tail, more := strings.Cut(rest, ".")
		if fault := checkLabel(label); fault != "" {
			return false, fault
		}
		labels++
		if !more {
			if allDigits(label) {
				return false, "ends in an all-numeric label (an IP address is not a DNS name)"
			}
			break
		}
		rest = tail
	}
	if labels < 2 {
		if wildcard {
			return false, "is a malformed wildcard: it must be followed by at least two labels"
		}
		return false, "has fewer than two labels"
	}
	return wildcard, ""
}

// checkLabel checks one label already known to hold only a-z, 0-9 and '-'.
func checkLabel(label string) string {
	switch {
	case label == "":
		return "has an empty label"
	case len(label) > maxLabelLength:
		return "has a label longer than 63 characters"
	case label[0] == '-' || label[len(label)-1] == '-':
		return "has a label that starts or ends with a hyphen"
	case len(label) >= 4 && label[2:4] == "--":
		if label[:2] != "xn" {
			return `has a reserved label (two characters then "--") that is not an A-label`
		}
		if !validALabel(label) {
			return "has an xn-- label that is not valid IDNA2008 punycode"
		}
	}
	return ""
}

// validALabel reports whether an "xn--" label decodes under the IDNA2008
// registration profile to an NFC U-label that encodes back to exactly the
// same A-label (RFC 5891 §5.4, Boulder's errMalformedIDN). The round trip
// refuses the many encodings that punycode decoders tolerate but that are
// not the one canonical A-label of a name.
func validALabel(label string) bool {
	u, err := idna.Registration.ToUnicode(label)
	if err != nil || !norm.NFC.IsNormalString(u) {
		return false
	}
	a, err := idna.Registration.ToASCII(u)
	return err == nil && a == label
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// CheckCommonName reports whether cn may be a certificate's subject common
// name. cn must be non-empty (whether a CN is required at all is the caller's
// decision), at most 64 characters (RFC 5280 ub-common-name), valid UTF-8,
// printable (no NUL or other control character, no format character such as
// a bidirectional override, no space other than U+0020), without a leading or
// trailing space, and not an IP address (SECURITY.md C-26, C-30). Refusals
// are *pki.RequestError of kind badCSR.
func CheckCommonName(cn string) error {
	if cn == "" {
		return badCSR("the common name is empty")
	}
	if !utf8.ValidString(cn) {
		return badCSR("the common name is not valid UTF-8")
	}
	if utf8.RuneCountInString(cn) > maxCommonNameLength {
		return badCSR("the common name is longer than 64 characters")
	}
	for _, r := range cn {
		if r == 0 {
			return badCSR("the common name contains a NUL character")
		}
		if !unicode.IsPrint(r) {
			return badCSR("the common name contains a control or other non-printable character")
		}
	}
	if cn[0] == ' ' || cn[len(cn)-1] == ' ' {
		return badCSR("the common name starts or ends with a space")
	}
	if _, err := netip.ParseAddr(cn); err == nil {
		return badCSR("the common name is an IP address; certificates for IP addresses are not issued")
	}
	return nil
}

// commonName returns the CSR's subject common name, "" when there is none.
// Every other subject attribute is ignored: pkid builds the subject itself
// (SECURITY.md C-30). Several common names are ambiguous and refused, and so
// is a common name crypto/x509 could not read as a string, which it would
// otherwise drop silently.
func commonName(csr *x509.CertificateRequest) (string, error) {
	found := false
	for _, atv := range csr.Subject.Names {
		if !atv.Type.Equal(oidCommonName) {
			continue
		}
		if found {
			return "", badCSR("the subject has more than one common name")
		}
		found = true
		if _, ok := atv.Value.(string); !ok {
			return "", badCSR("the subject common name is not a character string")
		}
	}
	cn := csr.Subject.CommonName
	if !found {
		if cn != "" {
			return "", badCSR("the certificate request's common name does not match its subject")
		}
		return "", nil
	}
	if err := CheckCommonName(cn); err != nil {
		return "", err
	}
	return cn, nil
}
