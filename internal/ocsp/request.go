package ocsp

import (
	"bytes"
	"crypto"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"math/big"
	"strings"

	"golang.org/x/crypto/cryptobyte"
	casn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/pkid/pkid/internal/pki"
)

// maxRequestSize caps a request: a POST body larger than this is refused
// before it is parsed (Boulder's limit; SECURITY.md O-06). A real request
// with one CertID and a nonce is under 150 bytes.
const maxRequestSize = 10000

// errTooLarge is a POST body over maxRequestSize.
var errTooLarge = errors.New("ocsp: request larger than 10000 bytes")

// requestError is a request that is not one well-formed OCSPRequest with one
// Request. The message is for debug logs; clients get malformedRequest.
type requestError string

func (e requestError) Error() string { return "ocsp: malformed request: " + string(e) }

// Explicitly tagged optional fields of OCSPRequest and TBSRequest (RFC 6960
// §4.1.1).
var (
	tagExplicit0 = casn1.Tag(0).Constructed().ContextSpecific()
	tagExplicit1 = casn1.Tag(1).Constructed().ContextSpecific()
	tagExplicit2 = casn1.Tag(2).Constructed().ContextSpecific()
)

// certRequest is the one CertID of a request (RFC 6960 §4.1.1). Its byte
// slices point into the request.
type certRequest struct {
	hash     crypto.Hash // SHA-1, SHA-256, SHA-384 or SHA-512
	nameHash []byte
	keyHash  []byte
	serial   []byte // the INTEGER's content octets, two's complement, minimal
}

// parseRequest parses one DER OCSPRequest:
//
//	OCSPRequest ::= SEQUENCE {
//	    tbsRequest                  TBSRequest,
//	    optionalSignature   [0]     EXPLICIT Signature OPTIONAL }
//	TBSRequest ::= SEQUENCE {
//	    version             [0]     EXPLICIT Version DEFAULT v1,
//	    requestorName       [1]     EXPLICIT GeneralName OPTIONAL,
//	    requestList                 SEQUENCE OF Request,
//	    requestExtensions   [2]     EXPLICIT Extensions OPTIONAL }
//	Request ::= SEQUENCE {
//	    reqCert                     CertID,
//	    singleRequestExtensions [0] EXPLICIT Extensions OPTIONAL }
//	CertID ::= SEQUENCE {
//	    hashAlgorithm       AlgorithmIdentifier,
//	    issuerNameHash      OCTET STRING,
//	    issuerKeyHash       OCTET STRING,
//	    serialNumber        CertificateSerialNumber }
//
// in DER (cryptobyte refuses indefinite and non-minimal lengths), without
// allocating. It accepts exactly one Request in the requestList: a client
// that asked about two certificates must not be told about one as if that
// were the whole answer (RFC 5019 §2.1.1; SECURITY.md O-13; x/crypto's
// ParseRequest silently takes the first). The signature of a signed request
// and the requestor name are skipped unread (RFC 5019 §2.1.2), and so are
// extensions, the nonce among them (see the package documentation). The hash
// algorithm must be one that x/crypto knows (SHA-1, SHA-256, SHA-384,
// SHA-512; MD5 and the rest are malformed).
//
// It reads what x/crypto's ParseRequest reads, the same way, and refuses
// more (trailing elements inside the structures, which encoding/asn1
// tolerates); FuzzOCSPRequest checks that whatever it accepts x/crypto reads
// alike. It exists because ParseRequest, through encoding/asn1's
// reflection, costs several times the rest of the request.
func parseRequest(der []byte) (certRequest, error) {
	var q certRequest
	in := cryptobyte.String(der)
	var outer, tbs cryptobyte.String
	if !in.ReadASN1(&outer, casn1.SEQUENCE) || !in.Empty() {
		return q, requestError("not one DER SEQUENCE")
	}
	if !outer.ReadASN1(&tbs, casn1.SEQUENCE) {
		return q, requestError("no tbsRequest")
	}
	if !outer.SkipOptionalASN1(tagExplicit0) || !outer.Empty() {
		return q, requestError("bad optionalSignature or trailing data")
	}
	var version cryptobyte.String
	var hasVersion bool
	if !tbs.ReadOptionalASN1(&version, &hasVersion, tagExplicit0) {
		return q, requestError("bad version")
	}
	if hasVersion {
		var v int
		if !version.ReadASN1Integer(&v) || !version.Empty() {
			return q, requestError("bad version")
		}
	}
	if !tbs.SkipOptionalASN1(tagExplicit1) {
		return q, requestError("bad requestorName")
	}
	var list cryptobyte.String
	if !tbs.ReadASN1(&list, casn1.SEQUENCE) {
		return q, requestError("no requestList")
	}
	if !tbs.SkipOptionalASN1(tagExplicit2) || !tbs.Empty() {
		return q, requestError("bad requestExtensions or trailing data")
	}
	var one cryptobyte.String
	if !list.ReadASN1(&one, casn1.SEQUENCE) {
		return q, requestError("no Request in requestList")
	}
	if !list.Empty() {
		return q, requestError("more than one Request in requestList")
	}
	var id, alg, oid cryptobyte.String
	if !one.ReadASN1(&id, casn1.SEQUENCE) || !one.SkipOptionalASN1(tagExplicit0) || !one.Empty() {
		return q, requestError("bad Request")
	}
	if !id.ReadASN1(&alg, casn1.SEQUENCE) || !alg.ReadASN1(&oid, casn1.OBJECT_IDENTIFIER) {
		return q, requestError("bad hashAlgorithm")
	}
	// Parameters: NULL, absent, or anything (x/crypto reads them as ANY).
	var params cryptobyte.String
	var paramsTag casn1.Tag
	if !alg.Empty() && (!alg.ReadAnyASN1(&params, &paramsTag) || !alg.Empty()) {
		return q, requestError("bad hashAlgorithm parameters")
	}
	if q.hash = hashFromOID(oid); q.hash == 0 {
		return q, requestError("unknown CertID hash algorithm")
	}
	var serial cryptobyte.String
	if !id.ReadASN1Bytes(&q.nameHash, casn1.OCTET_STRING) || !id.ReadASN1Bytes(&q.keyHash, casn1.OCTET_STRING) ||
		!id.ReadASN1(&serial, casn1.INTEGER) || !id.Empty() || !minimalInteger(serial) {
		return q, requestError("bad CertID")
	}
	q.serial = serial
	return q, nil
}

// The content octets of the hash algorithm OIDs that x/crypto knows.
var hashOIDs = []struct {
	hash crypto.Hash
	oid  []byte
}{
	{crypto.SHA1, oidContent(1, 3, 14, 3, 2, 26)},
	{crypto.SHA256, oidContent(2, 16, 840, 1, 101, 3, 4, 2, 1)},
	{crypto.SHA384, oidContent(2, 16, 840, 1, 101, 3, 4, 2, 2)},
	{crypto.SHA512, oidContent(2, 16, 840, 1, 101, 3, 4, 2, 3)},
}

func oidContent(ids ...int) []byte {
	der, err := asn1.Marshal(asn1.ObjectIdentifier(ids))
	if err != nil {
		panic(err)
	}
	return der[2:] // tag and one-byte length
}

func hashFromOID(oid []byte) crypto.Hash {
	for _, h := range hashOIDs {
		if bytes.Equal(oid, h.oid) {
			return h.hash
		}
	}
	return 0
}

// minimalInteger reports whether b is the content of a DER INTEGER: not
// empty, and no leading byte that the sign does not need (X.690 §8.3.2).
func minimalInteger(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	if len(b) > 1 && (b[0] == 0 && b[1]&0x80 == 0 || b[0] == 0xff && b[1]&0x80 != 0) {
		return false
	}
	return true
}

// maxGETPath caps the escaped path of a GET request: the base64 of a
// request of maxRequestSize bytes, with room for escapes. Anything longer is
// refused unread.
const maxGETPath = 16 << 10

// bufSize is the scratch space a request needs: a POST body (one byte more
// than allowed, to see that it is too large), or a GET path unescaped and
// its decoded bytes.
const bufSize = maxGETPath + maxRequestSize + 1

// decodeGET returns the DER request of the GET form, RFC 6960 appendix A.1:
// {url}/{url-encoding of base-64 encoding of the DER OCSPRequest}. path is
// what follows "/ocsp/", still escaped. A leading "/" is tolerated (clients
// that join URLs carelessly send "//"; the DER of a request always begins
// 0x30, so its base64 begins "M", never "/"). Escapes are undone, and a
// space, which is what a "+" becomes when someone decoded the path as a
// query string, is a "+" again (Boulder did the same). The base64 must be
// the standard alphabet, padded or not. buf (bufSize bytes) holds the
// unescaped text and then the result, which points into it.
func decodeGET(path string, buf []byte) ([]byte, error) {
	path = strings.TrimLeft(path, "/")
	if path == "" {
		return nil, requestError("empty GET request")
	}
	if len(path) > maxGETPath {
		return nil, errTooLarge
	}
	text := buf[:0]
	for i := 0; i < len(path); i++ {
		c := path[i]
		if c == '%' {
			if i+2 >= len(path) || unhex(path[i+1]) < 0 || unhex(path[i+2]) < 0 {
				return nil, requestError("bad %-escape in GET request")
			}
			c = byte(unhex(path[i+1])<<4 | unhex(path[i+2]))
			i += 2
		}
		if c == ' ' {
			c = '+'
		}
		text = append(text, c)
	}
	enc := base64.StdEncoding
	if len(text)%4 != 0 {
		enc = base64.RawStdEncoding
	}
	if enc.DecodedLen(len(text)) > maxRequestSize {
		return nil, errTooLarge
	}
	out := buf[len(text):cap(buf)]
	n, err := enc.Decode(out, text)
	if err != nil {
		return nil, requestError("bad base64 in GET request")
	}
	return out[:n], nil
}

// unhex returns the value of a hexadecimal digit, or -1.
func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c - 'a' + 10)
	case 'A' <= c && c <= 'F':
		return int(c - 'A' + 10)
	}
	return -1
}

// serialKey is a pkid serial number as the 17 bytes of the integer: the
// cache's map key, compared without allocating. pkid's serials are
// pki.SerialRandomBytes random bytes behind the prefix byte 0x70
// (internal/pki/serial.go), so every one has exactly this length.
type serialKey [1 + pki.SerialRandomBytes]byte

// serialPrefix is the first byte of every pkid serial (internal/pki/serial.go).
const serialPrefix = 0x70

// keyFromInteger returns the key of a serial number given as the content
// octets of its DER INTEGER, or false when it cannot be one of pkid's: a
// pkid serial is positive and its first byte, 0x70, has the sign bit clear,
// so its INTEGER is exactly its 17 bytes.
func keyFromInteger(b []byte) (serialKey, bool) {
	var k serialKey
	if len(b) != len(k) || b[0] != serialPrefix {
		return k, false
	}
	copy(k[:], b)
	return k, true
}

// keyFromBig returns the key of n, or false when n cannot be one of pkid's
// serials: not positive, not 17 bytes long, or another first byte.
func keyFromBig(n *big.Int) (serialKey, bool) {
	var k serialKey
	if n == nil || n.Sign() <= 0 || (n.BitLen()+7)/8 != len(k) {
		return k, false
	}
	n.FillBytes(k[:])
	return k, k[0] == serialPrefix
}

// keyFromSerial returns the key of a canonical serial, or false when s
// cannot be one of pkid's.
func keyFromSerial(s pki.Serial) (serialKey, bool) {
	var k serialKey
	if len(s) != 2*len(k) {
		return k, false
	}
	if _, err := hex.Decode(k[:], []byte(s)); err != nil || k[0] != serialPrefix {
		return k, false
	}
	// Canonical means lowercase: the database compares text.
	return k, strings.ToLower(string(s)) == string(s)
}

// serial returns the canonical text form of k.
func (k serialKey) serial() pki.Serial { return pki.Serial(hex.EncodeToString(k[:])) }
