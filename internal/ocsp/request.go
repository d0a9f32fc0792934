package ocsp

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"math/big"
	"net/url"
	"strings"

	"golang.org/x/crypto/cryptobyte"
	casn1 "golang.org/x/crypto/cryptobyte/asn1"
	xocsp "golang.org/x/crypto/ocsp"

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

// parseRequest parses one DER OCSPRequest. It accepts exactly one Request in
// the requestList: x/crypto's ParseRequest would silently take the first of
// several, and a client that asked about two certificates must not be told
// about one as if that were the whole answer (RFC 5019 §2.1.1; SECURITY.md
// O-13). A signed request is answered as unsigned (RFC 5019 §2.1.2): its
// signature and requestor name are dropped before x/crypto sees it, since
// x/crypto refuses signatures and misreads requestor names (a GeneralName,
// which it parses as a distinguished name). Request extensions, the nonce
// among them, are ignored (see the package documentation).
func parseRequest(der []byte) (*xocsp.Request, error) {
	plain, err := oneRequest(der)
	if err != nil {
		return nil, err
	}
	req, err := xocsp.ParseRequest(plain)
	if err != nil {
		return nil, requestError(err.Error())
	}
	return req, nil
}

// oneRequest walks the outer structure of an OCSPRequest:
//
//	OCSPRequest ::= SEQUENCE {
//	    tbsRequest                  TBSRequest,
//	    optionalSignature   [0]     EXPLICIT Signature OPTIONAL }
//	TBSRequest ::= SEQUENCE {
//	    version             [0]     EXPLICIT Version DEFAULT v1,
//	    requestorName       [1]     EXPLICIT GeneralName OPTIONAL,
//	    requestList                 SEQUENCE OF Request,
//	    requestExtensions   [2]     EXPLICIT Extensions OPTIONAL }
//
// in DER (cryptobyte refuses indefinite and non-minimal lengths), and checks
// that requestList holds exactly one Request. It returns der itself, or for a
// signed or named request the equivalent request with the requestList alone.
// It allocates only in that last case.
func oneRequest(der []byte) ([]byte, error) {
	in := cryptobyte.String(der)
	var outer, tbs cryptobyte.String
	if !in.ReadASN1(&outer, casn1.SEQUENCE) || !in.Empty() {
		return nil, requestError("not one DER SEQUENCE")
	}
	if !outer.ReadASN1(&tbs, casn1.SEQUENCE) {
		return nil, requestError("no tbsRequest")
	}
	signed := outer.PeekASN1Tag(tagExplicit0)
	if !outer.SkipOptionalASN1(tagExplicit0) || !outer.Empty() {
		return nil, requestError("bad optionalSignature or trailing data")
	}
	if !tbs.SkipOptionalASN1(tagExplicit0) {
		return nil, requestError("bad version")
	}
	named := tbs.PeekASN1Tag(tagExplicit1)
	if !tbs.SkipOptionalASN1(tagExplicit1) {
		return nil, requestError("bad requestorName")
	}
	var listElem cryptobyte.String
	if !tbs.ReadASN1Element(&listElem, casn1.SEQUENCE) {
		return nil, requestError("no requestList")
	}
	if !tbs.SkipOptionalASN1(tagExplicit2) || !tbs.Empty() {
		return nil, requestError("bad requestExtensions or trailing data")
	}
	list, items := listElem, cryptobyte.String(nil)
	if !list.ReadASN1(&items, casn1.SEQUENCE) {
		return nil, requestError("bad requestList")
	}
	var one cryptobyte.String
	if !items.ReadASN1(&one, casn1.SEQUENCE) {
		return nil, requestError("no Request in requestList")
	}
	if !items.Empty() {
		return nil, requestError("more than one Request in requestList")
	}
	if !signed && !named {
		return der, nil
	}
	var b cryptobyte.Builder
	b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddBytes(listElem) })
	})
	return b.Bytes()
}

// decodeGET returns the DER request of the GET form, RFC 6960 appendix A.1:
// {url}/{url-encoding of base-64 encoding of the DER OCSPRequest}. path is
// what follows "/ocsp/", still escaped. A leading "/" is tolerated (clients
// that join URLs carelessly send "//"; the DER of a request always begins
// 0x30, so its base64 begins "M", never "/"). Escapes are undone, and a
// space, which is what a "+" becomes when someone decoded the path as a query
// string, is a "+" again (Boulder did the same). The base64 must be the
// standard alphabet, padded or not.
func decodeGET(path string, dst []byte) ([]byte, error) {
	path = strings.TrimLeft(path, "/")
	if path == "" {
		return nil, requestError("empty GET request")
	}
	if len(path) > 3*maxRequestSize {
		return nil, errTooLarge
	}
	s, err := url.PathUnescape(path)
	if err != nil {
		return nil, requestError("bad %-escape in GET request")
	}
	s = strings.ReplaceAll(s, " ", "+")
	enc := base64.StdEncoding
	if len(s)%4 != 0 {
		enc = base64.RawStdEncoding
	}
	n := enc.DecodedLen(len(s))
	if n > maxRequestSize {
		return nil, errTooLarge
	}
	if cap(dst) < n {
		dst = make([]byte, n)
	}
	n, err = enc.Decode(dst[:n], []byte(s))
	if err != nil {
		return nil, requestError("bad base64 in GET request")
	}
	return dst[:n], nil
}

// serialKey is a pkid serial number as the 17 bytes of the integer: the
// cache's map key, compared without allocating. pkid's serials are
// pki.SerialRandomBytes random bytes behind the prefix byte 0x70
// (internal/pki/serial.go), so every one has exactly this length.
type serialKey [1 + pki.SerialRandomBytes]byte

// serialPrefix is the first byte of every pkid serial (internal/pki/serial.go).
const serialPrefix = 0x70

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
