package issuance

import (
	"bytes"
	"encoding/asn1"
	"fmt"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// The client certificate's tbsCertificate, encoded by pkid itself.
//
// Every other certificate pkid makes goes through x509.CreateCertificate
// (captureTBS). Client certificates are made at every request, and there
// encoding/asn1's reflection was the largest cost of building one after
// zlint and the signature, so encodeClientTBS writes the same bytes with
// cryptobyte. "The same bytes" is a rule, not an approximation: the
// reference is what captureTBS returns for clientContent.template, and
// TestClientTBSMatchesX509 holds encodeClientTBS to it on randomised
// requests. Where this file makes a choice (field order, string types, time
// types, what is omitted), it is the choice Go's x509 makes, noted as such.

// OIDs of the client certificate (RFC 5280 §4.1.2.4, §4.2.1, §4.2.2.1).
var (
	oidAttrCommonName                 = asn1.ObjectIdentifier{2, 5, 4, 3}
	oidAttrOrganization               = asn1.ObjectIdentifier{2, 5, 4, 10}
	oidExtensionSubjectKeyID          = asn1.ObjectIdentifier{2, 5, 29, 14}
	oidExtensionKeyUsage              = asn1.ObjectIdentifier{2, 5, 29, 15}
	oidExtensionSubjectAltName        = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidExtensionBasicConstraints      = asn1.ObjectIdentifier{2, 5, 29, 19}
	oidExtensionCRLDistributionPoints = asn1.ObjectIdentifier{2, 5, 29, 31}
	oidExtensionAuthorityKeyID        = asn1.ObjectIdentifier{2, 5, 29, 35}
	oidExtensionExtKeyUsage           = asn1.ObjectIdentifier{2, 5, 29, 37}
	oidExtensionAuthorityInfoAccess   = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 1}
	oidKPClientAuth                   = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 2}
	oidADOCSP                         = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1}
	oidADCAIssuers                    = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 2}
)

// GeneralName choices pkid writes (RFC 5280 §4.2.1.6), IMPLICIT tags on
// IA5String, so primitive.
var (
	tagDNSName = cbasn1.Tag(2).ContextSpecific()
	tagURI     = cbasn1.Tag(6).ContextSpecific()
)

// encodeClientTBS returns the DER tbsCertificate (RFC 5280 §4.1) of c issued
// by i: byte for byte what captureTBS returns for c.template(). It refuses,
// with ErrBadRequest, what x509.CreateCertificate refuses in that template:
// a name that is not valid UTF-8 and a DNS name or URI that is not ASCII.
func (i *Issuer) encodeClientTBS(c *clientContent) ([]byte, error) {
	sigAlg, ok := sigAlgIDs[i.sigAlg]
	if !ok {
		return nil, fmt.Errorf("issuance: no encoding for signature algorithm %s", i.sigAlg)
	}
	subject, err := encodeClientSubject(c.commonName, c.organization)
	if err != nil {
		return nil, err
	}
	// SAN entries are IA5String (RFC 5280 §4.2.1.6): x509 refuses any
	// character beyond ASCII rather than write a malformed name.
	uris := make([]string, len(c.uris))
	for n, u := range c.uris {
		uris[n] = u.String()
	}
	for _, names := range [][]string{c.dnsNames, uris} {
		for _, name := range names {
			if !isASCII(name) {
				return nil, fmt.Errorf("%w: subject alternative name %q is not an IA5String", ErrBadRequest, name)
			}
		}
	}

	b := cryptobyte.NewBuilder(make([]byte, 0, 1024))
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		// version [0] EXPLICIT: v3 (the INTEGER 2), as there are
		// extensions (§4.1.2.1).
		b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddASN1Int64(2)
		})
		// serialNumber (§4.1.2.2): positive, so a leading zero octet
		// when its high bit is set.
		b.AddASN1BigInt(c.serial)
		// signature (§4.1.2.3): the AlgorithmIdentifier the issuer signs
		// with, as x509 writes it.
		b.AddBytes(sigAlg)
		// issuer (§4.1.2.4): the issuer certificate's subject as encoded
		// there, which is what x509 copies and what path building
		// compares (§7.1).
		b.AddBytes(i.Cert.RawSubject)
		// validity (§4.1.2.5).
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			addTime(b, c.notBefore)
			addTime(b, c.notAfter)
		})
		// subject (§4.1.2.6).
		b.AddBytes(subject)
		// subjectPublicKeyInfo (§4.1.2.7), from x509.MarshalPKIXPublicKey.
		b.AddBytes(c.spki)
		// extensions [3] EXPLICIT (§4.1.2.9), in the order x509 writes
		// them.
		b.AddASN1(cbasn1.Tag(3).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				addClientExtensions(b, i, c, subject, uris)
			})
		})
	})
	tbs, err := b.Bytes()
	if err != nil {
		return nil, fmt.Errorf("%w: encoding the tbsCertificate: %v", ErrBadRequest, err)
	}
	return tbs, nil
}

// addClientExtensions writes the extensions of a client certificate, in
// x509's order: keyUsage, extKeyUsage, basicConstraints, subject and
// authority key identifiers, authorityInfoAccess, subjectAltName, CRL
// distribution points.
func addClientExtensions(b *cryptobyte.Builder, i *Issuer, c *clientContent, subject []byte, uris []string) {
	// keyUsage, critical (§4.2.1.3): digitalSignature, bit 0, alone. DER
	// drops trailing zero bits of a named bit list (X.690 §11.2.2), so
	// the BIT STRING is one octet, 0x80, with 7 unused bits.
	addExtension(b, oidExtensionKeyUsage, true, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.BIT_STRING, func(b *cryptobyte.Builder) {
			b.AddBytes([]byte{7, 0x80})
		})
	})
	// extKeyUsage (§4.2.1.12): id-kp-clientAuth.
	addExtension(b, oidExtensionExtKeyUsage, false, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(oidKPClientAuth)
		})
	})
	// basicConstraints, critical (§4.2.1.9): cA is FALSE, its DEFAULT,
	// which DER omits (X.690 §11.5), and there is no pathLenConstraint:
	// an empty SEQUENCE.
	addExtension(b, oidExtensionBasicConstraints, true, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {})
	})
	// subjectKeyIdentifier (§4.2.1.2).
	addExtension(b, oidExtensionSubjectKeyID, false, func(b *cryptobyte.Builder) {
		b.AddASN1OctetString(c.ski)
	})
	// authorityKeyIdentifier (§4.2.1.1): keyIdentifier [0] IMPLICIT, the
	// issuer's subject key identifier. x509 leaves it out when the
	// subject is the issuer's name, taking the certificate for
	// self-issued, or when the issuer has no key identifier.
	if len(i.Cert.SubjectKeyId) > 0 && !bytes.Equal(subject, i.Cert.RawSubject) {
		addExtension(b, oidExtensionAuthorityKeyID, false, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.Tag(0).ContextSpecific(), func(b *cryptobyte.Builder) {
					b.AddBytes(i.Cert.SubjectKeyId)
				})
			})
		})
	}
	// authorityInfoAccess (§4.2.2.1): OCSP first, then caIssuers, each an
	// AccessDescription with a URI. x509 writes these URLs as given.
	addExtension(b, oidExtensionAuthorityInfoAccess, false, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			for _, ad := range []struct {
				method asn1.ObjectIdentifier
				uri    string
			}{{oidADOCSP, c.ocspURL}, {oidADCAIssuers, c.caIssuersURL}} {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(ad.method)
					b.AddASN1(tagURI, func(b *cryptobyte.Builder) { b.AddBytes([]byte(ad.uri)) })
				})
			}
		})
	})
	// subjectAltName (§4.2.1.6): DNS names, then URIs. It is critical
	// when the subject is empty, as §4.2.1.6 requires.
	addExtension(b, oidExtensionSubjectAltName, len(subject) == 2, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			for _, name := range c.dnsNames {
				b.AddASN1(tagDNSName, func(b *cryptobyte.Builder) { b.AddBytes([]byte(name)) })
			}
			for _, uri := range uris {
				b.AddASN1(tagURI, func(b *cryptobyte.Builder) { b.AddBytes([]byte(uri)) })
			}
		})
	})
	// cRLDistributionPoints (§4.2.1.13): one DistributionPoint whose
	// distributionPoint [0] (a CHOICE, so explicitly tagged) is a
	// fullName [0] IMPLICIT GeneralNames holding the URI.
	addExtension(b, oidExtensionCRLDistributionPoints, false, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
						b.AddASN1(tagURI, func(b *cryptobyte.Builder) { b.AddBytes([]byte(c.crlURL)) })
					})
				})
			})
		})
	})
}

// addExtension writes an Extension (§4.1.2.9). critical is DEFAULT FALSE,
// so DER writes it only when true (X.690 §11.5); the value is the DER of
// the extension's own structure, wrapped in an OCTET STRING.
func addExtension(b *cryptobyte.Builder, oid asn1.ObjectIdentifier, critical bool, value cryptobyte.BuilderContinuation) {
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(oid)
		if critical {
			b.AddASN1Boolean(true)
		}
		b.AddASN1(cbasn1.OCTET_STRING, value)
	})
}

// addTime writes a certificate validity time (§4.1.2.5): in UTC and to the
// second (x509 drops fractions), as UTCTime for the years 1950 to 2049 and
// as GeneralizedTime outside them, which is x509's choice and what
// §4.1.2.5 requires for 2050 and later.
func addTime(b *cryptobyte.Builder, t time.Time) {
	t = t.UTC()
	if y := t.Year(); 1950 <= y && y < 2050 {
		b.AddASN1UTCTime(t)
	} else {
		b.AddASN1GeneralizedTime(t)
	}
}

// encodeClientSubject returns the subject Name of a client certificate
// (§4.1.2.6): the RDNSequence pkix.Name.ToRDNSequence gives x509, with O
// before CN, each attribute in a set of its own and left out when empty.
// Without either it is the empty SEQUENCE.
func encodeClientSubject(commonName, organization string) ([]byte, error) {
	for _, s := range []string{commonName, organization} {
		if !utf8.ValidString(s) {
			return nil, fmt.Errorf("%w: subject attribute %q is not valid UTF-8", ErrBadRequest, s)
		}
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		if organization != "" {
			addAttribute(b, oidAttrOrganization, organization)
		}
		if commonName != "" {
			addAttribute(b, oidAttrCommonName, commonName)
		}
	})
	return b.Bytes()
}

// addAttribute writes a RelativeDistinguishedName of one
// AttributeTypeAndValue. The value is a DirectoryString (§4.1.2.4): a
// PrintableString when every character allows it, a UTF8String otherwise,
// the choice encoding/asn1 makes for x509.
func addAttribute(b *cryptobyte.Builder, oid asn1.ObjectIdentifier, value string) {
	tag := cbasn1.PrintableString
	if !isPrintableString(value) {
		tag = cbasn1.UTF8String
	}
	b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(oid)
			b.AddASN1(tag, func(b *cryptobyte.Builder) { b.AddBytes([]byte(value)) })
		})
	})
}

// isPrintableString reports whether s is made only of PrintableString
// characters (X.680 §41.4): letters, digits, space and '()+,-./:=?. It
// is encoding/asn1's test without the '*' and '&' it tolerates when
// parsing.
func isPrintableString(s string) bool {
	for n := 0; n < len(s); n++ {
		c := s[n]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == ' ' || c == '\'' || c == '(' || c == ')' || c == '+' || c == ',' ||
			c == '-' || c == '.' || c == '/' || c == ':' || c == '=' || c == '?') {
			return false
		}
	}
	return true
}

// isASCII reports whether s fits an IA5String.
func isASCII(s string) bool {
	for n := 0; n < len(s); n++ {
		if s[n] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}
