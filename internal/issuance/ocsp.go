package issuance

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/pkid/pkid/internal/pki"
)

// OCSPStatus is what an OCSP response says about one certificate.
type OCSPStatus struct {
	Serial     pki.Serial
	Revoked    bool
	RevokedAt  time.Time            // when Revoked
	Reason     pki.RevocationReason // when Revoked; unspecified is omitted from the response
	ThisUpdate time.Time
	NextUpdate time.Time
}

// ErrBadOCSP: SignOCSP was asked for a response that must not exist: a
// responder that cannot vouch for issuer, an interval that ends before it
// starts, a revocation without a date or with a reason pkid never uses. It
// is a bug or a misconfiguration of the caller; nothing was signed.
var ErrBadOCSP = errors.New("issuance: OCSP response cannot be signed")

// SignOCSP signs, as the delegated OCSP responder r, a response about a
// certificate that issuer issued. hash is the CertID's hash algorithm:
// crypto.SHA1 for the stored form (RFC 5019 clients and nginx), crypto.SHA256
// for RFC 9919 clients. The response carries r's certificate so that clients
// can verify it against issuer (RFC 6960 §4.2.2.2), names r by its subject
// (responderID byName), and has exactly one SingleResponse without
// singleExtensions: the reason of a revocation is the revocationReason of
// RevokedInfo, omitted when unspecified (RFC 5280 §5.3.1, BR 7.3), never a
// reasonCode extension.
//
// It refuses, with an error wrapping ErrBadOCSP and without signing:
//   - r without id-kp-OCSPSigning, or not certified by issuer itself (RFC
//     6960 §4.2.2.2: a delegated responder is certified directly by the CA
//     whose certificates it answers for, or clients reject its responses);
//   - r whose certificate has expired by thisUpdate (SECURITY.md O-21);
//   - nextUpdate not after thisUpdate;
//   - a revocation without a date, or with a reason pkid never uses
//     (certificateHold, removeFromCRL and unassigned codes);
//   - a serial that is not in canonical form.
func (r *Issuer) SignOCSP(issuer *x509.Certificate, st OCSPStatus, hash crypto.Hash) ([]byte, error) {
	if r == nil || r.Cert == nil || issuer == nil {
		return nil, fmt.Errorf("%w: no responder or no issuer", ErrBadOCSP)
	}
	if err := checkResponder(r.Cert, issuer); err != nil {
		return nil, err
	}
	if canon, err := pki.ParseSerial(string(st.Serial)); err != nil || canon != st.Serial {
		return nil, fmt.Errorf("%w: serial %q is not in canonical form", ErrBadOCSP, st.Serial)
	}
	if !st.NextUpdate.After(st.ThisUpdate) {
		return nil, fmt.Errorf("%w: nextUpdate must be after thisUpdate", ErrBadOCSP)
	}
	if !st.ThisUpdate.Before(r.Cert.NotAfter) {
		return nil, fmt.Errorf("%w: the responder certificate expired at %s", ErrBadOCSP, stamp(r.Cert.NotAfter))
	}
	if st.Revoked {
		if st.RevokedAt.IsZero() {
			return nil, fmt.Errorf("%w: revoked without a revocation time", ErrBadOCSP)
		}
		if !ocspReason(st.Reason) {
			return nil, fmt.Errorf("%w: revocation reason %d is not one pkid uses", ErrBadOCSP, int(st.Reason))
		}
	}
	der, err := r.signOCSP(issuer, st, hash, time.Now())
	if err != nil {
		return nil, fmt.Errorf("issuance: signing OCSP response for %s: %w", st.Serial, err)
	}
	return der, nil
}

// signOCSP encodes and signs the response SignOCSP describes, producedAt
// now, byte for byte as golang.org/x/crypto/ocsp.CreateResponse does
// (TestOCSPEncodingMatchesXCrypto): the same structure written directly
// rather than through encoding/asn1's reflection, which made CreateResponse
// cost about 1.7 times the P-256 signature alone (BenchmarkSignOCSP). Like
// CreateResponse it signs with the responder's key under the algorithm its
// key type implies (RSA and ECDSA only) and does not verify the signature.
func (r *Issuer) signOCSP(issuer *x509.Certificate, st OCSPStatus, hash crypto.Hash, now time.Time) ([]byte, error) {
	sigAlgID, ok := ocspSignatureAlgorithms[r.sigAlg]
	if !ok {
		return nil, errors.New("only RSA and ECDSA responder keys are supported")
	}
	hashOID, ok := ocspHashOIDs[hash]
	if !ok || !hash.Available() {
		return nil, fmt.Errorf("unsupported issuer hash algorithm %v", hash)
	}
	// CertID (RFC 6960 §4.1.1): the hashes of the issuer's name and of the
	// value of its subjectPublicKey BIT STRING.
	spki := cryptobyte.String(issuer.RawSubjectPublicKeyInfo)
	var spkiBody cryptobyte.String
	var pub asn1.BitString
	if !spki.ReadASN1(&spkiBody, cbasn1.SEQUENCE) || !spkiBody.SkipASN1(cbasn1.SEQUENCE) ||
		!spkiBody.ReadASN1BitString(&pub) {
		return nil, errors.New("cannot read the issuer's public key")
	}
	h := hash.New()
	h.Write(pub.RightAlign())
	keyHash := h.Sum(nil)
	h.Reset()
	h.Write(issuer.RawSubject)
	nameHash := h.Sum(nil)

	// ResponseData (RFC 6960 §4.2.1): version v1 (the default, omitted),
	// responderID byName, producedAt, one SingleResponse, no extensions.
	tbs := cryptobyte.NewBuilder(make([]byte, 0, 256+len(r.Cert.RawSubject)))
	tbs.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.Tag(1).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddBytes(r.Cert.RawSubject)
		})
		b.AddASN1GeneralizedTime(now.Truncate(time.Minute).UTC())
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // responses
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // SingleResponse
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // CertID
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1ObjectIdentifier(hashOID)
						b.AddASN1NULL()
					})
					b.AddASN1OctetString(nameHash)
					b.AddASN1OctetString(keyHash)
					b.AddASN1BigInt(st.Serial.Big())
				})
				if !st.Revoked {
					b.AddASN1(cbasn1.Tag(0).ContextSpecific(), func(*cryptobyte.Builder) {}) // good: [0] IMPLICIT NULL
				} else {
					b.AddASN1(cbasn1.Tag(1).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) { // revoked: [1] IMPLICIT RevokedInfo
						b.AddASN1GeneralizedTime(st.RevokedAt.UTC())
						if st.Reason != pki.ReasonUnspecified {
							b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
								b.AddASN1Enum(int64(st.Reason))
							})
						}
					})
				}
				b.AddASN1GeneralizedTime(st.ThisUpdate.UTC())
				b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
					b.AddASN1GeneralizedTime(st.NextUpdate.UTC())
				})
			})
		})
	})
	tbsDER, err := tbs.Bytes()
	if err != nil {
		return nil, err
	}

	digest := tbsDER
	if sigHash := signatureHash(r.sigAlg); sigHash != 0 {
		d := sigHash.New()
		d.Write(tbsDER)
		digest = d.Sum(nil)
	}
	sig, err := countingSigner{r}.Sign(rand.Reader, digest, signatureHash(r.sigAlg))
	if err != nil {
		return nil, err
	}

	// OCSPResponse (RFC 6960 §4.2.1): successful, with a BasicOCSPResponse
	// that carries the responder's certificate.
	out := cryptobyte.NewBuilder(make([]byte, 0, len(tbsDER)+len(sig)+len(r.Cert.Raw)+64))
	out.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Enum(0) // successful
		b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // ResponseBytes
				b.AddASN1ObjectIdentifier(oidOCSPBasic)
				b.AddASN1(cbasn1.OCTET_STRING, func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // BasicOCSPResponse
						b.AddBytes(tbsDER)
						b.AddBytes(sigAlgID)
						b.AddASN1BitString(sig)
						b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
							b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
								b.AddBytes(r.Cert.Raw)
							})
						})
					})
				})
			})
		})
	})
	return out.Bytes()
}

// oidOCSPBasic is id-pkix-ocsp-basic (RFC 6960 §4.2.1).
var oidOCSPBasic = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 1}

// ocspHashOIDs are the CertID hash algorithms x/crypto's CreateResponse
// accepts.
var ocspHashOIDs = map[crypto.Hash]asn1.ObjectIdentifier{
	crypto.SHA1:   {1, 3, 14, 3, 2, 26},
	crypto.SHA256: {2, 16, 840, 1, 101, 3, 4, 2, 1},
	crypto.SHA384: {2, 16, 840, 1, 101, 3, 4, 2, 2},
	crypto.SHA512: {2, 16, 840, 1, 101, 3, 4, 2, 3},
}

// ocspSignatureAlgorithms are the signatureAlgorithm of a response signed
// under each algorithm a responder may have, DER as x/crypto writes them:
// ECDSA without parameters (RFC 5758 §3.2), RSA with NULL (RFC 4055 §5).
var ocspSignatureAlgorithms = map[x509.SignatureAlgorithm][]byte{
	x509.ECDSAWithSHA256: {0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02},
	x509.ECDSAWithSHA384: {0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03},
	x509.ECDSAWithSHA512: {0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04},
	x509.SHA256WithRSA:   {0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05, 0x00},
}

// checkResponder reports whether responder may sign OCSP responses for the
// certificates of issuer: it has id-kp-OCSPSigning and issuer certified it
// (same name, and the same key identifier when both certificates carry one).
// Names and key identifiers are compared rather than the signature verified:
// this runs for every response signed, and the hierarchy verified the
// signature when it loaded.
func checkResponder(responder, issuer *x509.Certificate) error {
	if !hasOCSPSigning(responder) {
		return fmt.Errorf("%w: OCSP responses must be signed by a certificate with id-kp-OCSPSigning", ErrBadOCSP)
	}
	if !bytes.Equal(responder.RawIssuer, issuer.RawSubject) ||
		(len(responder.AuthorityKeyId) > 0 && len(issuer.SubjectKeyId) > 0 &&
			!bytes.Equal(responder.AuthorityKeyId, issuer.SubjectKeyId)) {
		return fmt.Errorf("%w: responder %q is not certified by %q", ErrBadOCSP, responder.Subject, issuer.Subject)
	}
	return nil
}

// CanSignOCSPFor reports whether r, a delegated OCSP responder, may sign
// responses about the certificates issuer issued (see SignOCSP).
func (r *Issuer) CanSignOCSPFor(issuer *x509.Certificate) bool {
	return r != nil && r.Cert != nil && issuer != nil && checkResponder(r.Cert, issuer) == nil
}

// ocspReason reports whether a revocation reason may appear in an OCSP
// response: the RFC 5280 codes pkid uses, never certificateHold (6, pkid
// never suspends: BR 4.9.13), removeFromCRL (8) or unassigned codes.
func ocspReason(r pki.RevocationReason) bool {
	switch r {
	case pki.ReasonUnspecified, pki.ReasonKeyCompromise, pki.ReasonCACompromise,
		pki.ReasonAffiliationChanged, pki.ReasonSuperseded, pki.ReasonCessationOfOperation,
		pki.ReasonPrivilegeWithdrawn:
		return true
	}
	return false
}

func hasOCSPSigning(c *x509.Certificate) bool {
	for _, u := range c.ExtKeyUsage {
		if u == x509.ExtKeyUsageOCSPSigning {
			return true
		}
	}
	return false
}

// OCSPWindow returns the thisUpdate and nextUpdate of a response signed at
// now with the given validity. thisUpdate is truncated to the minute and
// backdated by one minute, so that relying parties whose clocks run a little
// behind never see a response from the future (RFC 6960 §3.2); nextUpdate is
// a second short of the validity so that the interval is exactly as long as
// configured, inclusive of both ends (Boulder's convention).
func OCSPWindow(now time.Time, validity time.Duration) (thisUpdate, nextUpdate time.Time) {
	thisUpdate = now.UTC().Truncate(time.Minute).Add(-time.Minute)
	return thisUpdate, thisUpdate.Add(validity - time.Second)
}
