package edge

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/pkid/pkid/internal/pki"
)

// AccountURIPrefix is the URI SAN prefix that names the account a pkid
// client certificate belongs to: "urn:pkid:account:<account id>". It is the
// same string as issuance.AccountURIPrefix; edge may not import issuance, and
// the string is part of what pkid certifies, so it cannot drift silently: the
// tests read certificates made the way pkid makes them.
const AccountURIPrefix = "urn:pkid:account:"

// maxAccountID bounds the account id read from a certificate. pkid's are
// UUIDs (36 characters).
const maxAccountID = 64

// Identity is what the edge tells the upstream about a verified client.
type Identity struct {
	Account string     // from the urn:pkid:account:<id> URI SAN
	Serial  pki.Serial // lowercase hex, no leading zeros: the form pkid's API uses
	Subject string     // RFC 4514 (RFC 2253) string of the subject
}

// ErrNoAccount: the certificate does not name exactly one account in a
// well-formed urn:pkid:account:<id> URI SAN. It chains to the CA, so this is
// a certificate pkid did not make for a client; the edge refuses it rather
// than forward a request it cannot attribute.
var ErrNoAccount = errors.New("edge: the certificate names no account (urn:pkid:account:<id> URI SAN)")

// IdentityOf reads the identity from a verified leaf certificate.
func IdentityOf(leaf *x509.Certificate) (Identity, error) {
	account, err := accountOf(leaf)
	if err != nil {
		return Identity{}, err
	}
	if leaf.SerialNumber == nil || leaf.SerialNumber.Sign() <= 0 {
		return Identity{}, errors.New("edge: the certificate's serial number is not positive")
	}
	return Identity{
		Account: account,
		Serial:  pki.SerialFromBig(leaf.SerialNumber),
		Subject: SubjectString(leaf.RawSubject),
	}, nil
}

// accountOf returns the account id of the leaf's only urn:pkid:account URI.
// The id may contain letters, digits and hyphens only, so that it is safe
// in a header and in a log line as it is.
func accountOf(leaf *x509.Certificate) (string, error) {
	var account string
	found := 0
	for _, u := range leaf.URIs {
		s := u.String()
		if !strings.HasPrefix(s, AccountURIPrefix) {
			continue
		}
		found++
		account = s[len(AccountURIPrefix):]
	}
	if found != 1 || account == "" || len(account) > maxAccountID {
		return "", ErrNoAccount
	}
	for _, c := range account {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
			return "", ErrNoAccount
		}
	}
	return account, nil
}

// certKey identifies a certificate in the revocation cache: the SHA-256 of
// its DER, so that two certificates never share an entry even if a broken CA
// reused a serial.
type certKey [sha256.Size]byte

func keyOf(c *x509.Certificate) certKey { return sha256.Sum256(c.Raw) }

// attribute and attributeSET mirror RFC 5280's AttributeTypeAndValue and
// RelativeDistinguishedName, keeping each value's raw encoding (encoding/asn1
// treats a type whose name ends in SET as a SET OF).
type attribute struct {
	Type  asn1.ObjectIdentifier
	Value asn1.RawValue
}

type attributeSET []attribute

// shortNames are the attribute types RFC 4514 §3 names, plus those Go's
// pkix names; any other type is written as its dotted OID.
var shortNames = map[string]string{
	"2.5.4.3":                    "CN",
	"2.5.4.7":                    "L",
	"2.5.4.8":                    "ST",
	"2.5.4.10":                   "O",
	"2.5.4.11":                   "OU",
	"2.5.4.6":                    "C",
	"2.5.4.9":                    "STREET",
	"2.5.4.5":                    "SERIALNUMBER",
	"2.5.4.17":                   "POSTALCODE",
	"0.9.2342.19200300.100.1.25": "DC",
	"0.9.2342.19200300.100.1.1":  "UID",
}

// SubjectString renders a DER Name as RFC 4514 (which obsoletes RFC 2253,
// same syntax): RDNs from last to first, multi-valued RDNs joined with "+".
// Values are escaped as RFC 4514 §2.4 requires, and further: every byte
// that is not printable ASCII is written as a \XX hex pair of its UTF-8
// encoding (which §2.4 allows), so the result is always a safe, single-line
// HTTP header value. A value that is not a string type, or a string that
// does not decode, is written as #<hex of its DER>, as for unknown types.
func SubjectString(rawName []byte) string {
	var rdns []attributeSET
	if rest, err := asn1.Unmarshal(rawName, &rdns); err != nil || len(rest) != 0 {
		return "#" + hex.EncodeToString(rawName)
	}
	var b strings.Builder
	for i := len(rdns) - 1; i >= 0; i-- {
		if i != len(rdns)-1 {
			b.WriteByte(',')
		}
		for j, atv := range rdns[i] {
			if j > 0 {
				b.WriteByte('+')
			}
			oid := atv.Type.String()
			name, known := shortNames[oid]
			if !known {
				name = oid
			}
			b.WriteString(name)
			b.WriteByte('=')
			if s, ok := decodeString(atv.Value); ok && known {
				escapeValue(&b, s)
			} else {
				b.WriteByte('#')
				b.WriteString(hex.EncodeToString(atv.Value.FullBytes))
			}
		}
	}
	return b.String()
}

// decodeString returns the text of a DirectoryString-like value.
func decodeString(v asn1.RawValue) (string, bool) {
	if v.Class != asn1.ClassUniversal {
		return "", false
	}
	switch v.Tag {
	case asn1.TagUTF8String:
		return string(v.Bytes), utf8.Valid(v.Bytes)
	case asn1.TagPrintableString, asn1.TagIA5String, asn1.TagNumericString, 26: // 26: VisibleString
		for _, c := range v.Bytes {
			if c >= utf8.RuneSelf {
				return "", false
			}
		}
		return string(v.Bytes), true
	case asn1.TagT61String:
		// As Go's x509 does: Latin-1, which T.61's common use coincides with.
		r := make([]rune, len(v.Bytes))
		for i, c := range v.Bytes {
			r[i] = rune(c)
		}
		return string(r), true
	case asn1.TagBMPString:
		if len(v.Bytes)%2 != 0 {
			return "", false
		}
		u := make([]uint16, len(v.Bytes)/2)
		for i := range u {
			u[i] = uint16(v.Bytes[2*i])<<8 | uint16(v.Bytes[2*i+1])
		}
		return string(utf16.Decode(u)), true
	}
	return "", false
}

// escapeValue writes s escaped per RFC 4514 §2.4, with every byte outside
// printable ASCII as a hex pair.
func escapeValue(b *strings.Builder, s string) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c < 0x20 || c >= 0x7f:
			fmt.Fprintf(b, "\\%02X", c)
		case c == '"' || c == '+' || c == ',' || c == ';' || c == '<' || c == '>' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case (c == ' ' || c == '#') && i == 0, c == ' ' && i == len(s)-1:
			b.WriteByte('\\')
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
}
