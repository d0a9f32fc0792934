package policy

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"strings"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/pkid/pkid/internal/pki"
)

// maxCSRSize is the largest CSR text ParseCSR decodes. A CSR with a 4096-bit
// RSA key and a hundred long names fits in well under 16 KiB; the cap bounds
// the PEM and ASN.1 work on hostile input (SECURITY.md C-02, C-33).
const maxCSRSize = 64 << 10

// The PEM labels accepted for a CSR. RFC 7468 §7: generators MUST use
// "CERTIFICATE REQUEST"; parsers MAY accept "NEW CERTIFICATE REQUEST", which
// older Netscape and Microsoft tools still write.
const (
	labelCSR    = "CERTIFICATE REQUEST"
	labelNewCSR = "NEW CERTIFICATE REQUEST"
)

// ParseCSR decodes the CSR text of an API request: exactly one PEM block
// labelled "CERTIFICATE REQUEST" (or "NEW CERTIFICATE REQUEST"), with nothing
// but whitespace before and after, and no PEM headers. Raw DER, junk around
// the block, a second block, other labels and DER with trailing bytes are all
// refused, because encoding/pem silently skips leading junk and returns only
// the first block, and a lenient reading of ambiguous input is how a CA ends
// up certifying something the client did not mean.
//
// Errors are *pki.RequestError of kind badCSR, except that a public key which
// crypto/x509 cannot parse (an unsupported curve such as secp256k1, a point
// off the curve) is badPublicKey (SECURITY.md C-16, C-17). No error detail
// echoes the input: the block might be a private key. Input larger than
// 64 KiB is refused before any decoding.
//
// ParseCSR does not verify the signature or apply any policy; CheckCSR does.
func ParseCSR(text string) (*x509.CertificateRequest, error) {
	if len(text) > maxCSRSize {
		return nil, badCSR("the certificate request is larger than %d KiB", maxCSRSize>>10)
	}
	body := trimSpace(text)
	if body == "" {
		return nil, badCSR("the certificate request is empty")
	}
	if !strings.HasPrefix(body, "-----BEGIN ") {
		return nil, badCSR("the certificate request must be PEM text starting with -----BEGIN CERTIFICATE REQUEST-----, with nothing but whitespace before it")
	}
	// Counting the armour lines makes "exactly one block" exact: pem.Decode
	// skips a malformed first block and returns a later one, and base64 never
	// contains a dash.
	if strings.Count(body, "-----BEGIN") != 1 || strings.Count(body, "-----END") != 1 {
		return nil, badCSR("the certificate request must be exactly one PEM block")
	}
	block, rest := pem.Decode([]byte(body))
	if block == nil {
		return nil, badCSR("the PEM block is malformed: bad BEGIN/END lines or bad base64")
	}
	if len(trimSpace(string(rest))) != 0 {
		return nil, badCSR("nothing but whitespace may follow the PEM block")
	}
	if block.Type != labelCSR && block.Type != labelNewCSR {
		return nil, badCSR("the PEM block is %s, not a CERTIFICATE REQUEST", describeLabel(block.Type))
	}
	if len(block.Headers) != 0 {
		return nil, badCSR("PEM headers are not allowed in a certificate request (RFC 7468)")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, parseError(block.Bytes, err)
	}
	return csr, nil
}

// trimSpace trims ASCII whitespace only: what a JSON string or a file may
// carry around a PEM block. strings.TrimSpace would also accept Unicode spaces.
func trimSpace(s string) string {
	return strings.Trim(s, " \t\r\n\v\f")
}

// describeLabel names the kind of a wrongly labelled PEM block from a fixed
// vocabulary, so that the label itself is never echoed.
func describeLabel(label string) string {
	switch {
	case strings.Contains(label, "PRIVATE KEY"):
		return "a private key (never send a private key anywhere; make a new key and a CSR)"
	case strings.Contains(label, "PUBLIC KEY"):
		return "a public key (a CSR signed by the matching private key is required)"
	case strings.Contains(label, "CERTIFICATE"):
		return "a certificate"
	case strings.Contains(label, "CRL"):
		return "a CRL"
	case strings.Contains(label, "PKCS7"), strings.Contains(label, "CMS"):
		return "a PKCS #7 / CMS message"
	default:
		return "of another type"
	}
}

// parseError turns a crypto/x509 parse failure into a RequestError. The
// details come from a fixed vocabulary because some crypto/x509 messages quote
// parts of the input (a URI SAN, for example).
func parseError(der []byte, err error) error {
	if fault := spkiFault(der); fault != "" {
		return &pki.RequestError{Kind: pki.KindBadPublicKey, Detail: fault}
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "duplicate"):
		return badCSR("the certificate request repeats an extension (RFC 5280 §4.2)")
	case strings.Contains(msg, "dNSName"):
		return badCSR("a subjectAltName DNS name is not ASCII; write internationalised names as A-labels (xn--...)")
	case strings.Contains(msg, "SAN"), strings.Contains(msg, "URI"), strings.Contains(msg, "IP address"):
		return badCSR("the subjectAltName extension holds a malformed entry")
	case strings.Contains(msg, "UTF-8"), strings.Contains(msg, "String"):
		return badCSR("a string in the certificate request is not valid for its ASN.1 type (for example, invalid UTF-8 or a bad PrintableString)")
	case strings.Contains(msg, "trailing data"):
		return badCSR("the DER certificate request has trailing data")
	default:
		return badCSR("the PEM block is not a DER PKCS #10 certificate request (RFC 2986)")
	}
}

// Algorithm and curve identifiers of the public keys crypto/x509 parses.
var (
	oidKeyRSA     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
	oidKeyECDSA   = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
	oidKeyDSA     = asn1.ObjectIdentifier{1, 2, 840, 10040, 4, 1}
	oidKeyEd25519 = asn1.ObjectIdentifier{1, 3, 101, 112}
	oidCurveP256  = asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}
	oidCurveP384  = asn1.ObjectIdentifier{1, 3, 132, 0, 34}
)

// spkiFault reports, for a CSR that crypto/x509 refused, whether the public
// key is at fault, and why. It returns "" when the key parses, when its
// algorithm is unknown (crypto/x509 does not fail on those; CheckCSR refuses
// them) or when the CSR is too broken to reach the key.
func spkiFault(der []byte) string {
	in := cryptobyte.String(der)
	var csr, info, spki cryptobyte.String
	if !in.ReadASN1(&csr, cbasn1.SEQUENCE) ||
		!csr.ReadASN1(&info, cbasn1.SEQUENCE) ||
		!info.SkipASN1(cbasn1.INTEGER) ||
		!info.SkipASN1(cbasn1.SEQUENCE) ||
		!info.ReadASN1Element(&spki, cbasn1.SEQUENCE) {
		return ""
	}
	outer := spki
	var body, alg cryptobyte.String
	var algOID asn1.ObjectIdentifier
	if !outer.ReadASN1(&body, cbasn1.SEQUENCE) ||
		!body.ReadASN1(&alg, cbasn1.SEQUENCE) ||
		!alg.ReadASN1ObjectIdentifier(&algOID) {
		return ""
	}
	if !algOID.Equal(oidKeyRSA) && !algOID.Equal(oidKeyECDSA) &&
		!algOID.Equal(oidKeyDSA) && !algOID.Equal(oidKeyEd25519) {
		return ""
	}
	if _, err := x509.ParsePKIXPublicKey(spki); err == nil {
		return ""
	}
	if algOID.Equal(oidKeyECDSA) {
		var curve asn1.ObjectIdentifier
		if !alg.ReadASN1ObjectIdentifier(&curve) {
			return "the ECDSA public key does not name its curve; explicit curve parameters are not accepted, use P-256 or P-384"
		}
		if !curve.Equal(oidCurveP256) && !curve.Equal(oidCurveP384) {
			return "the ECDSA public key is on an unsupported curve; use P-256 or P-384"
		}
		return "the ECDSA public key is not a valid point on its curve"
	}
	return fmt.Sprintf("the public key is malformed (%s)", keyAlgorithmName(algOID))
}

func keyAlgorithmName(oid asn1.ObjectIdentifier) string {
	switch {
	case oid.Equal(oidKeyRSA):
		return "RSA"
	case oid.Equal(oidKeyDSA):
		return "DSA"
	case oid.Equal(oidKeyEd25519):
		return "Ed25519"
	default:
		return "ECDSA"
	}
}

// oidExtensionRequestDER is the DER contents of PKCS #9 extensionRequest
// (1.2.840.113549.1.9.14), compared as bytes to spare an allocation per
// attribute.
var oidExtensionRequestDER = []byte{0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x0e}

// checkAttributes walks the CSR's attributes. crypto/x509 reads only the
// first value of each extensionRequest and merges several such attributes;
// PKCS #9 makes extensionRequest single-valued, and a CSR that hides a second
// set of extensions is ambiguous, so both are refused. Other attributes
// (challengePassword, unstructuredName, Microsoft's name-value pairs) are
// ignored: they never reach a certificate (SECURITY.md C-24).
func checkAttributes(tbs []byte) error {
	in := cryptobyte.String(tbs)
	var info, attrs cryptobyte.String
	var present bool
	if !in.ReadASN1(&info, cbasn1.SEQUENCE) ||
		!info.SkipASN1(cbasn1.INTEGER) ||
		!info.SkipASN1(cbasn1.SEQUENCE) ||
		!info.SkipASN1(cbasn1.SEQUENCE) ||
		!info.ReadOptionalASN1(&attrs, &present, cbasn1.Tag(0).Constructed().ContextSpecific()) {
		return badCSR("the certificate request's attributes are malformed")
	}
	requests := 0
	for !attrs.Empty() {
		var attr, oid, values cryptobyte.String
		if !attrs.ReadASN1(&attr, cbasn1.SEQUENCE) ||
			!attr.ReadASN1(&oid, cbasn1.OBJECT_IDENTIFIER) ||
			!attr.ReadASN1(&values, cbasn1.SET) {
			return badCSR("the certificate request's attributes are malformed")
		}
		if !bytes.Equal(oid, oidExtensionRequestDER) {
			continue
		}
		requests++
		if !values.SkipASN1(cbasn1.SEQUENCE) || !values.Empty() {
			return badCSR("the extensionRequest attribute must hold exactly one set of extensions")
		}
	}
	if requests > 1 {
		return badCSR("the certificate request has more than one extensionRequest attribute")
	}
	return nil
}

// badCSR is shorthand for a RequestError of kind badCSR.
func badCSR(format string, args ...any) error {
	return &pki.RequestError{Kind: pki.KindBadCSR, Detail: fmt.Sprintf(format, args...)}
}
