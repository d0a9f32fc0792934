package ocsp

import (
	"encoding/asn1"
	"errors"

	"golang.org/x/crypto/cryptobyte"
	casn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Status names the answers the responder gives, as metrics label them: the
// certificate statuses of a successful response and the OCSPResponseStatus
// of the others.
const (
	StatusGood         = "good"
	StatusRevoked      = "revoked"
	StatusUnauthorized = "unauthorized"
	StatusMalformed    = "malformedRequest"
	StatusTryLater     = "tryLater"
)

// Sources of an answer, as metrics label them.
const (
	SourceMemory = "memory" // held by the cache
	SourceDB     = "db"     // read from the database on a cache miss
	SourceSigned = "signed" // the SHA-256 form, signed on first demand
	SourceFirst  = "first"  // a certificate's first response, signed from its row on a miss
	SourceNone   = "none"   // no stored response was involved (errors)
)

// The unsigned error responses: an OCSPResponse that is only a
// responseStatus (RFC 6960 §4.2.1).
var (
	malformedBody    = []byte{0x30, 0x03, 0x0a, 0x01, 0x01}
	tryLaterBody     = []byte{0x30, 0x03, 0x0a, 0x01, 0x03}
	unauthorizedBody = []byte{0x30, 0x03, 0x0a, 0x01, 0x06}
)

// oidBasicResponse is id-pkix-ocsp-basic, the only response type pkid signs.
var oidBasicResponse = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 1}

// oidSHA1 is the CertID hash algorithm of stored responses.
var oidSHA1 = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}

// CertStatus choices (RFC 6960 §4.2.1): good [0] IMPLICIT NULL, revoked [1]
// IMPLICIT RevokedInfo, unknown [2] IMPLICIT UnknownInfo.
var (
	tagGood    = casn1.Tag(0).ContextSpecific()
	tagRevoked = casn1.Tag(1).Constructed().ContextSpecific()
)

// errBadStored is a stored response that pkid must not serve: not a
// successful basic response with one SingleResponse, a SHA-1 CertID and a
// good or revoked status.
var errBadStored = errors.New("ocsp: stored response is not a successful basic response with one SHA-1 CertID")

// inspect walks a stored response far enough to check what the cache
// relies on, without verifying the signature (the response comes from
// pkid's own database; a full parse with verification costs about a
// hundred times as much, which matters when a node loads a million):
//
//	OCSPResponse ::= SEQUENCE { responseStatus ENUMERATED (successful),
//	    responseBytes [0] EXPLICIT SEQUENCE { id-pkix-ocsp-basic, OCTET STRING {
//	      BasicOCSPResponse ::= SEQUENCE { tbsResponseData SEQUENCE {
//	          version [0] OPTIONAL, responderID, producedAt,
//	          responses SEQUENCE OF SingleResponse (exactly one) ...
//	      SingleResponse ::= SEQUENCE { certID SEQUENCE { SHA-1, nameHash,
//	          keyHash, serialNumber }, certStatus (good or revoked), ... }
//
// It returns whether the status is revoked and the serial number's content
// octets.
func inspect(der []byte) (revoked bool, serial []byte, err error) {
	in := cryptobyte.String(der)
	var resp, rb, basicOctets cryptobyte.String
	var status int
	var oid asn1.ObjectIdentifier
	if !in.ReadASN1(&resp, casn1.SEQUENCE) || !in.Empty() ||
		!resp.ReadASN1Enum(&status) || status != 0 ||
		!resp.ReadASN1(&rb, tagExplicit0) || !resp.Empty() ||
		!rb.ReadASN1(&rb, casn1.SEQUENCE) ||
		!rb.ReadASN1ObjectIdentifier(&oid) || !oid.Equal(oidBasicResponse) ||
		!rb.ReadASN1(&basicOctets, casn1.OCTET_STRING) {
		return false, nil, errBadStored
	}
	var basic, tbs, responses, single, certID cryptobyte.String
	if !basicOctets.ReadASN1(&basic, casn1.SEQUENCE) ||
		!basic.ReadASN1(&tbs, casn1.SEQUENCE) ||
		!tbs.SkipOptionalASN1(tagExplicit0) ||
		!skipResponderID(&tbs) ||
		!tbs.SkipASN1(casn1.GeneralizedTime) ||
		!tbs.ReadASN1(&responses, casn1.SEQUENCE) ||
		!responses.ReadASN1(&single, casn1.SEQUENCE) || !responses.Empty() ||
		!single.ReadASN1(&certID, casn1.SEQUENCE) {
		return false, nil, errBadStored
	}
	var alg cryptobyte.String
	var serialElem cryptobyte.String
	if !certID.ReadASN1(&alg, casn1.SEQUENCE) || !alg.ReadASN1ObjectIdentifier(&oid) || !oid.Equal(oidSHA1) ||
		!certID.SkipASN1(casn1.OCTET_STRING) || !certID.SkipASN1(casn1.OCTET_STRING) ||
		!certID.ReadASN1(&serialElem, casn1.INTEGER) || !certID.Empty() {
		return false, nil, errBadStored
	}
	switch {
	case single.PeekASN1Tag(tagGood):
		return false, serialElem, nil
	case single.PeekASN1Tag(tagRevoked):
		return true, serialElem, nil
	}
	return false, nil, errBadStored
}

// skipResponderID skips a ResponderID: [1] EXPLICIT Name (byName) or [2]
// EXPLICIT KeyHash (byKey).
func skipResponderID(s *cryptobyte.String) bool {
	switch {
	case s.PeekASN1Tag(tagExplicit1):
		return s.SkipASN1(tagExplicit1)
	case s.PeekASN1Tag(tagExplicit2):
		return s.SkipASN1(tagExplicit2)
	}
	return false
}
