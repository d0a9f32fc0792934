package policy

import (
	"crypto/x509"
	"encoding/asn1"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// maxExtensions bounds the requested extensions looked at. Real CSRs carry a
// handful; the bound keeps the duplicate check linear in practice on a
// hostile CSR packed with thousands of tiny extensions.
const maxExtensions = 32

// Requested extensions that pkid reads. Anything else a CSR requests
// (must-staple, CT poison, policies, private OIDs...) is ignored: it is never
// copied into a certificate (SECURITY.md C-20, C-22).
var (
	oidExtSubjectAltName   = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidExtBasicConstraints = asn1.ObjectIdentifier{2, 5, 29, 19}
	oidExtKeyUsage         = asn1.ObjectIdentifier{2, 5, 29, 15}
	oidExtExtKeyUsage      = asn1.ObjectIdentifier{2, 5, 29, 37}
	oidEKUClientAuth       = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 2}
)

// Key usage bits (RFC 5280 §4.2.1.3) that only a CA may hold.
const (
	keyUsageCertSign = 5
	keyUsageCRLSign  = 6
)

// pkidDecides ends every refusal of a requested extension: the CSR asked for
// something pkid would never issue, and saying so beats silently issuing
// something other than what was asked for.
const pkidDecides = "; pkid decides every extension of a certificate itself and issues end-entity client certificates only: remove it from the CSR"

// checkExtensions refuses duplicate extensions and requests for CA powers or
// for uses other than client authentication, and returns the DNS names of the
// subjectAltName extension in CSR order, unvalidated. maxNames caps their number.
// URI SANs are refused unless uriNamespace is set; then they must be
// well-formed SPIFFE IDs (whether they are in the namespace is checked
// later, so that every malformation is reported before a policy refusal).
func checkExtensions(csr *x509.CertificateRequest, maxNames int, uriNamespace string) ([]string, error) {
	exts := csr.Extensions
	if len(exts) > maxExtensions {
		return nil, badCSR("the certificate request asks for more than %d extensions", maxExtensions)
	}
	sanCount, uriCount := 0, 0
	for i, ext := range exts {
		for _, prev := range exts[:i] {
			if prev.Id.Equal(ext.Id) {
				return nil, badCSR("the certificate request repeats an extension (RFC 5280 §4.2)")
			}
		}
		var err error
		switch {
		case ext.Id.Equal(oidExtSubjectAltName):
			sanCount, uriCount, err = checkSAN(ext.Value, csr, maxNames, uriNamespace != "")
		case ext.Id.Equal(oidExtBasicConstraints):
			err = checkBasicConstraints(ext.Value)
		case ext.Id.Equal(oidExtKeyUsage):
			err = checkKeyUsage(ext.Value)
		case ext.Id.Equal(oidExtExtKeyUsage):
			err = checkExtKeyUsage(ext.Value)
		}
		if err != nil {
			return nil, err
		}
	}
	// The names must be exactly those of the signed extension: a
	// CertificateRequest whose fields were changed after parsing is refused.
	if sanCount != len(csr.DNSNames) || len(csr.EmailAddresses) != 0 ||
		len(csr.IPAddresses) != 0 || uriCount != len(csr.URIs) {
		return nil, badCSR("the certificate request's names do not match its subjectAltName extension")
	}
	return csr.DNSNames, nil
}

// checkSAN walks the GeneralNames of a subjectAltName extension. Only dNSName
// is accepted, and uniformResourceIdentifier when allowURIs is set (the
// account's policy allows SPIFFE IDs): IP addresses, email addresses,
// otherName (including UPN) and directoryName are refused, because
// crypto/x509 silently drops the last two and a client certificate carrying
// an identity pkid did not check is how AD CS ESC6 happened (SECURITY.md
// C-26, C-27). It checks the dNSNames and URIs against those of csr, the
// lists crypto/x509 derived from the same bytes, and returns how many of
// each there are. No string is allocated for a dNSName.
func checkSAN(value []byte, csr *x509.CertificateRequest, maxNames int, allowURIs bool) (dns, uris int, err error) {
	in := cryptobyte.String(value)
	var names cryptobyte.String
	if !in.ReadASN1(&names, cbasn1.SEQUENCE) || !in.Empty() {
		return 0, 0, badCSR("the subjectAltName extension is malformed")
	}
	if names.Empty() {
		return 0, 0, badCSR("the subjectAltName extension is empty (RFC 5280 §4.2.1.6)")
	}
	mismatch := func() error {
		return badCSR("the certificate request's names do not match its subjectAltName extension")
	}
	for !names.Empty() {
		var name cryptobyte.String
		var tag cbasn1.Tag
		if !names.ReadAnyASN1(&name, &tag) {
			return 0, 0, badCSR("the subjectAltName extension is malformed")
		}
		switch {
		case tag == cbasn1.Tag(2).ContextSpecific():
			if dns == maxNames {
				return 0, 0, badCSR("the certificate request has more than %d DNS names", maxNames)
			}
			if dns >= len(csr.DNSNames) || string(name) != csr.DNSNames[dns] {
				return 0, 0, mismatch()
			}
			dns++
		case tag == cbasn1.Tag(6).ContextSpecific() && allowURIs:
			if uris == maxURISANs {
				return 0, 0, badCSR("the certificate request has more than %d URI SANs", maxURISANs)
			}
			if fault := spiffeFault(string(name)); fault != "" {
				return 0, 0, badCSR("subjectAltName URI %d %s", uris+1, fault)
			}
			if uris >= len(csr.URIs) || string(name) != csr.URIs[uris].String() {
				return 0, 0, mismatch()
			}
			uris++
		case allowURIs:
			return 0, 0, badCSR("subjectAltName may hold DNS names and SPIFFE IDs (URIs) only; it holds %s", generalNameKind(tag))
		default:
			return 0, 0, badCSR("subjectAltName may hold DNS names only (this account's policy allows no URI SANs); it holds %s", generalNameKind(tag))
		}
	}
	return dns, uris, nil
}

// generalNameKind names a GeneralName choice (RFC 5280 §4.2.1.6) by its tag.
func generalNameKind(tag cbasn1.Tag) string {
	const classMask = 0xc0
	if tag&classMask != cbasn1.Tag(0).ContextSpecific() {
		return "an entry that is not a GeneralName"
	}
	switch tag &^ cbasn1.Tag(0).Constructed().ContextSpecific() {
	case 0:
		return "an otherName"
	case 1:
		return "an email address (rfc822Name)"
	case 2:
		return "a constructed dNSName"
	case 3:
		return "an x400Address"
	case 4:
		return "a directoryName"
	case 5:
		return "an ediPartyName"
	case 6:
		return "a URI"
	case 7:
		return "an IP address"
	case 8:
		return "a registeredID"
	default:
		return "an unknown kind of name"
	}
}

// checkBasicConstraints refuses cA=TRUE. cA=FALSE is harmless and ignored:
// pkid writes its own basicConstraints.
func checkBasicConstraints(value []byte) error {
	var bc struct {
		IsCA       bool `asn1:"optional"`
		MaxPathLen int  `asn1:"optional,default:-1"`
	}
	if rest, err := asn1.Unmarshal(value, &bc); err != nil || len(rest) != 0 {
		return badCSR("the basicConstraints extension is malformed")
	}
	if bc.IsCA {
		return badCSR("the certificate request asks to be a CA (basicConstraints cA=TRUE)" + pkidDecides)
	}
	return nil
}

// checkKeyUsage refuses keyCertSign and cRLSign; other bits are ignored (pkid
// sets the key usage from the key type).
func checkKeyUsage(value []byte) error {
	var ku asn1.BitString
	if rest, err := asn1.Unmarshal(value, &ku); err != nil || len(rest) != 0 {
		return badCSR("the keyUsage extension is malformed")
	}
	if ku.At(keyUsageCertSign) != 0 || ku.At(keyUsageCRLSign) != 0 {
		return badCSR("the certificate request asks for a CA key usage (keyCertSign or cRLSign)" + pkidDecides)
	}
	return nil
}

// checkExtKeyUsage refuses any purpose but clientAuth: serverAuth,
// codeSigning, OCSPSigning, anyExtendedKeyUsage and private purposes alike.
func checkExtKeyUsage(value []byte) error {
	var ekus []asn1.ObjectIdentifier
	if rest, err := asn1.Unmarshal(value, &ekus); err != nil || len(rest) != 0 || len(ekus) == 0 {
		return badCSR("the extKeyUsage extension is malformed")
	}
	for _, eku := range ekus {
		if !eku.Equal(oidEKUClientAuth) {
			return badCSR("the certificate request asks for an extended key usage other than clientAuth" + pkidDecides)
		}
	}
	return nil
}
