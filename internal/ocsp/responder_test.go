package ocsp_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"math/big"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	xocsp "golang.org/x/crypto/ocsp"

	"github.com/pkid/pkid/internal/ocsp"
	"github.com/pkid/pkid/internal/pki"
)

// Unsigned answers, byte for byte (RFC 6960 §4.2.1).
var (
	malformedRequest = []byte{0x30, 0x03, 0x0a, 0x01, 0x01}
	tryLater         = []byte{0x30, 0x03, 0x0a, 0x01, 0x03}
	unauthorized     = []byte{0x30, 0x03, 0x0a, 0x01, 0x06}
)

// memoryStore is a Store with nothing in it: every miss is unknown. It
// stands for a database that has no row, for tests about what the cache
// holds.
type memoryStore struct{}

func (memoryStore) OCSPResponse(context.Context, pki.Serial, time.Time) (*pki.OCSPResponse, error) {
	return nil, pki.ErrNotFound
}
func (memoryStore) FirstOCSPResponse(context.Context, pki.Serial, time.Time, func(*pki.Certificate) (*pki.OCSPResponse, error)) (*pki.OCSPResponse, error) {
	return nil, pki.ErrNotFound
}
func (memoryStore) EachOCSPResponse(context.Context, time.Time, func(*pki.OCSPResponse) error) error {
	return nil
}
func (memoryStore) OCSPResponsesSince(context.Context, time.Time, pki.Serial, int) ([]*pki.OCSPResponse, error) {
	return nil, nil
}
func (memoryStore) ListenOCSP(ctx context.Context, listening func(), _ func(pki.Serial)) error {
	listening()
	<-ctx.Done()
	return ctx.Err()
}

// checkSuccess checks an answer with a signed response and returns it
// parsed and verified against the intermediate.
func checkSuccess(t *testing.T, h *hierarchy, a answer, serial pki.Serial, hash crypto.Hash) *xocsp.Response {
	t.Helper()
	if a.code != http.StatusOK {
		t.Fatalf("HTTP %d, body %x", a.code, a.body)
	}
	if ct := a.header.Values("Content-Type"); len(ct) != 1 || ct[0] != "application/ocsp-response" {
		t.Errorf("Content-Type = %q", ct)
	}
	resp, err := xocsp.ParseResponse(a.body, h.inter.Cert)
	if err != nil {
		t.Fatalf("response does not parse or verify: %v", err)
	}
	if pki.SerialFromBig(resp.SerialNumber) != serial {
		t.Errorf("serial %x, want %s", resp.SerialNumber, serial)
	}
	if resp.IssuerHash != hash {
		t.Errorf("CertID hash %v, want %v", resp.IssuerHash, hash)
	}
	if resp.Certificate == nil || !bytes.Equal(resp.Certificate.Raw, h.signer.Cert.Raw) {
		t.Error("response does not carry the delegated responder's certificate")
	}
	now := time.Now()
	if resp.ThisUpdate.After(now) || !resp.NextUpdate.After(now) {
		t.Errorf("thisUpdate %s, nextUpdate %s: not current at %s", resp.ThisUpdate, resp.NextUpdate, now)
	}
	// RFC 5019 §6.2 caching headers.
	cc := a.header.Get("Cache-Control")
	maxAge, ok := strings.CutPrefix(cc, "max-age=")
	age, err := strconv.Atoi(strings.Split(maxAge, ",")[0])
	if !ok || err != nil || !strings.HasSuffix(cc, ", public, no-transform, must-revalidate") {
		t.Errorf("Cache-Control = %q", cc)
	}
	// The server computed max-age at some moment after the request was
	// sent, so what was left of the response's life then bounds it.
	if limit := resp.NextUpdate.Sub(a.sent); time.Duration(age)*time.Second > limit || age < 0 {
		t.Errorf("max-age %d outlives nextUpdate (%s away)", age, limit)
	}
	if got := a.header.Get("Last-Modified"); got != resp.ThisUpdate.UTC().Format(http.TimeFormat) {
		t.Errorf("Last-Modified = %q, thisUpdate %s", got, resp.ThisUpdate)
	}
	if got := a.header.Get("Expires"); got != resp.NextUpdate.UTC().Format(http.TimeFormat) {
		t.Errorf("Expires = %q, nextUpdate %s", got, resp.NextUpdate)
	}
	if etag := a.header.Get("ETag"); len(etag) < 3 || etag[0] != '"' || etag[len(etag)-1] != '"' {
		t.Errorf("ETag = %q", etag)
	}
	return resp
}

// checkError checks an unsigned error answer.
func checkError(t *testing.T, a answer, code int, body []byte) {
	t.Helper()
	if a.code != code || !bytes.Equal(a.body, body) {
		t.Errorf("HTTP %d body %x, want %d %x", a.code, a.body, code, body)
	}
	if ct := a.header.Values("Content-Type"); len(ct) != 1 || ct[0] != "application/ocsp-response" {
		t.Errorf("Content-Type = %q", ct)
	}
	if cc := a.header.Get("Cache-Control"); cc != "max-age=0, no-cache" {
		t.Errorf("Cache-Control = %q", cc)
	}
}

func TestGoodThenRevoked(t *testing.T) {
	t.Parallel()
	h := testHierarchy(t)
	s := newServer(t, h, memoryStore{}, ocsp.CacheOptions{})
	serial := pki.MustNewSerial()
	good := h.response(t, serial, status{})
	good.UpdatedAt = time.Now()
	s.cache.Install(good)

	forms := []struct {
		name string
		hash crypto.Hash
		send func(der []byte) answer
	}{
		{"POST SHA-1", crypto.SHA1, func(der []byte) answer { return post(t, s.URL, der) }},
		{"GET SHA-1", crypto.SHA1, func(der []byte) answer { return get(t, s.URL, getPath(der)) }},
		{"POST SHA-256", crypto.SHA256, func(der []byte) answer { return post(t, s.URL, der) }},
		{"GET SHA-256", crypto.SHA256, func(der []byte) answer { return get(t, s.URL, getPath(der)) }},
	}
	for _, f := range forms {
		t.Run("good/"+f.name, func(t *testing.T) {
			resp := checkSuccess(t, h, f.send(request(t, h.inter.Cert, serial, f.hash)), serial, f.hash)
			if resp.Status != xocsp.Good {
				t.Fatalf("status %d, want good", resp.Status)
			}
			if f.hash == crypto.SHA256 && (!resp.ThisUpdate.Equal(good.ThisUpdate) || !resp.NextUpdate.Equal(good.NextUpdate)) {
				t.Errorf("SHA-256 form has %s..%s, the stored one %s..%s", resp.ThisUpdate, resp.NextUpdate, good.ThisUpdate, good.NextUpdate)
			}
		})
	}

	revokedAt := time.Now().Add(-time.Minute).UTC().Truncate(time.Second)
	revoked := h.response(t, serial, status{revokedAt: revokedAt, reason: pki.ReasonKeyCompromise})
	revoked.UpdatedAt = good.UpdatedAt.Add(time.Millisecond)
	s.cache.Install(revoked)
	for _, f := range forms {
		t.Run("revoked/"+f.name, func(t *testing.T) {
			resp := checkSuccess(t, h, f.send(request(t, h.inter.Cert, serial, f.hash)), serial, f.hash)
			if resp.Status != xocsp.Revoked || !resp.RevokedAt.Equal(revokedAt) || resp.RevocationReason != xocsp.KeyCompromise {
				t.Fatalf("status %d at %s reason %d, want revoked at %s for keyCompromise",
					resp.Status, resp.RevokedAt, resp.RevocationReason, revokedAt)
			}
		})
	}

	// An older response arriving late (a slow catch-up) changes nothing.
	s.cache.Install(good)
	resp := checkSuccess(t, h, post(t, s.URL, request(t, h.inter.Cert, serial, crypto.SHA1)), serial, crypto.SHA1)
	if resp.Status != xocsp.Revoked {
		t.Fatal("an older good response replaced the revocation")
	}
	if n := s.metrics.count(ocsp.StatusRevoked, ocsp.SourceMemory) + s.metrics.count(ocsp.StatusRevoked, ocsp.SourceSigned); n != 5 {
		t.Errorf("metrics counted %d revoked answers, want 5", n)
	}
}

func TestNotModified(t *testing.T) {
	t.Parallel()
	h := testHierarchy(t)
	s := newServer(t, h, memoryStore{}, ocsp.CacheOptions{})
	serial := pki.MustNewSerial()
	s.cache.Install(h.response(t, serial, status{}))
	path := getPath(request(t, h.inter.Cert, serial, crypto.SHA1))
	first := get(t, s.URL, path)
	etag := first.header.Get("ETag")

	tests := []struct {
		name        string
		ifNoneMatch string
		want        int
	}{
		{"same ETag", etag, http.StatusNotModified},
		{"weak form", "W/" + etag, http.StatusNotModified},
		{"in a list", `"other", ` + etag, http.StatusNotModified},
		{"star", "*", http.StatusNotModified},
		{"another ETag", `"other"`, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := get(t, s.URL, path, "If-None-Match", tt.ifNoneMatch)
			if a.code != tt.want {
				t.Fatalf("HTTP %d, want %d", a.code, tt.want)
			}
			if tt.want == http.StatusNotModified {
				if len(a.body) != 0 || a.header.Get("ETag") != etag || a.header.Get("Cache-Control") != first.header.Get("Cache-Control") {
					t.Errorf("304 with body %x, ETag %q, Cache-Control %q", a.body, a.header.Get("ETag"), a.header.Get("Cache-Control"))
				}
			}
		})
	}

	// The SHA-256 form is another representation with another ETag.
	a := get(t, s.URL, getPath(request(t, h.inter.Cert, serial, crypto.SHA256)), "If-None-Match", etag)
	if a.code != http.StatusOK || a.header.Get("ETag") == etag {
		t.Errorf("SHA-256 form: HTTP %d, ETag %q (SHA-1 form's %q)", a.code, a.header.Get("ETag"), etag)
	}
}

// TestGETForms sends one request in the spellings RFC 6960 A.1 clients
// and intermediaries produce (SECURITY.md O-02).
func TestGETForms(t *testing.T) {
	t.Parallel()
	h := testHierarchy(t)
	s := newServer(t, h, memoryStore{}, ocsp.CacheOptions{})
	// Find a serial whose request's base64 has both "/" and "+", so that
	// every spelling below changes something.
	var serial pki.Serial
	var b64 string
	for range 1000 {
		serial = pki.MustNewSerial()
		b64 = base64.StdEncoding.EncodeToString(request(t, h.inter.Cert, serial, crypto.SHA1))
		if strings.Contains(b64, "/") && strings.Contains(b64, "+") {
			break
		}
	}
	if !strings.Contains(b64, "/") || !strings.Contains(b64, "+") {
		t.Fatal("no request with both / and + in its base64")
	}
	s.cache.Install(h.response(t, serial, status{}))
	esc := func(s string) string {
		return strings.NewReplacer("/", "%2F", "+", "%2B", "=", "%3D").Replace(s)
	}
	forms := []struct{ name, path string }{
		{"raw / and +", "/ocsp/" + b64},
		{"escaped %2F %2B %3D", "/ocsp/" + esc(b64)},
		{"lowercase escapes", "/ocsp/" + strings.NewReplacer("/", "%2f", "+", "%2b").Replace(b64)},
		{"+ decoded to a space upstream", "/ocsp/" + strings.ReplaceAll(b64, "+", "%20")},
		{"double slash", "//ocsp//" + b64},
		{"leading slash in the wildcard", "/ocsp//" + b64},
		{"no padding", "/ocsp/" + strings.TrimRight(b64, "=")},
	}
	for _, f := range forms {
		t.Run(f.name, func(t *testing.T) {
			a := get(t, s.URL, f.path)
			if f.name == "double slash" {
				// "//ocsp" is not the route: the router does not clean
				// paths, so it must not answer good by accident either.
				if a.code == http.StatusOK && !bytes.Equal(a.body, unauthorized) && !bytes.Equal(a.body, malformedRequest) {
					t.Fatalf("//ocsp answered %d %x", a.code, a.body)
				}
				return
			}
			resp := checkSuccess(t, h, a, serial, crypto.SHA1)
			if resp.Status != xocsp.Good {
				t.Fatalf("status %d", resp.Status)
			}
		})
	}
	head, err := http.NewRequest(http.MethodHead, s.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	head.URL.Opaque = "/ocsp/" + esc(b64)
	if a := do(t, head); a.code != http.StatusOK || len(a.body) != 0 || a.header.Get("ETag") == "" {
		t.Errorf("HEAD: HTTP %d, %d bytes, ETag %q", a.code, len(a.body), a.header.Get("ETag"))
	}
}

// TestBadRequests is SECURITY.md §1.4's catalogue of bad input: never a
// 5xx, never good.
func TestBadRequests(t *testing.T) {
	t.Parallel()
	h := testHierarchy(t)
	s := newServer(t, h, memoryStore{}, ocsp.CacheOptions{})
	serial := pki.MustNewSerial()
	s.cache.Install(h.response(t, serial, status{}))
	good := request(t, h.inter.Cert, serial, crypto.SHA1)
	id := idFor(t, h.inter.Cert, serial.Big(), crypto.SHA1)
	twin := idFor(t, h.twin.Cert, serial.Big(), crypto.SHA1)

	wrongKey := id
	wrongKey.keyHash = twin.keyHash // the intermediate's name, another key
	md5 := id
	md5.alg = oidMD5
	sha384 := idFor(t, h.inter.Cert, serial.Big(), crypto.SHA384)
	other := id
	other.serial = pki.MustNewSerial().Big()
	negative := id
	negative.serial = new(big.Int).Neg(serial.Big())
	short := id
	short.serial = big.NewInt(1)
	huge := id
	huge.serial = new(big.Int).Lsh(serial.Big(), 200)

	tests := []struct {
		name   string
		method string
		path   string // for GET; escaped
		body   []byte // for POST
		code   int
		want   []byte
	}{
		{"empty POST", http.MethodPost, "", nil, 400, malformedRequest},
		{"garbage", http.MethodPost, "", []byte("this is not DER at all"), 400, malformedRequest},
		{"truncated DER", http.MethodPost, "", good[:len(good)-3], 400, malformedRequest},
		{"trailing data", http.MethodPost, "", append(append([]byte{}, good...), 0x00), 400, malformedRequest},
		{"two requests in one", http.MethodPost, "", buildRequest(t, []certID{id, id}, reqOpts{}), 400, malformedRequest},
		{"two requests, good and other", http.MethodPost, "", buildRequest(t, []certID{id, other}, reqOpts{}), 400, malformedRequest},
		{"no request", http.MethodPost, "", buildRequest(t, nil, reqOpts{}), 400, malformedRequest},
		{"MD5 CertID", http.MethodPost, "", buildRequest(t, []certID{md5}, reqOpts{}), 400, malformedRequest},
		{"SHA-384 CertID", http.MethodPost, "", buildRequest(t, []certID{sha384}, reqOpts{}), 200, unauthorized},
		{"unknown issuer", http.MethodPost, "", buildRequest(t, []certID{twin}, reqOpts{}), 200, unauthorized},
		{"right name hash, wrong key hash", http.MethodPost, "", buildRequest(t, []certID{wrongKey}, reqOpts{}), 200, unauthorized},
		{"unknown serial", http.MethodPost, "", buildRequest(t, []certID{other}, reqOpts{}), 200, unauthorized},
		{"negative serial", http.MethodPost, "", buildRequest(t, []certID{negative}, reqOpts{}), 200, unauthorized},
		{"serial 1", http.MethodPost, "", buildRequest(t, []certID{short}, reqOpts{}), 200, unauthorized},
		{"huge serial", http.MethodPost, "", buildRequest(t, []certID{huge}, reqOpts{}), 200, unauthorized},
		{"1 MiB body", http.MethodPost, "", bytes.Repeat([]byte{0x30}, 1<<20), 413, malformedRequest},
		{"10,001-byte body", http.MethodPost, "", append(append([]byte{}, good...), make([]byte, 10001-len(good))...), 413, malformedRequest},
		{"GET /ocsp/", http.MethodGet, "/ocsp/", nil, 400, malformedRequest},
		{"GET /ocsp", http.MethodGet, "/ocsp", nil, 400, malformedRequest},
		{"bad base64 in GET", http.MethodGet, "/ocsp/MEIw!!!", nil, 400, malformedRequest},
		{"GET of garbage", http.MethodGet, "/ocsp/" + base64.StdEncoding.EncodeToString([]byte("garbage")), nil, 400, malformedRequest},
		{"GET of two requests", http.MethodGet, getPath(buildRequest(t, []certID{id, id}, reqOpts{})), nil, 400, malformedRequest},
		{"huge GET", http.MethodGet, "/ocsp/" + strings.Repeat("A", 20000), nil, 413, malformedRequest},
		{"PUT", http.MethodPut, "", good, 405, malformedRequest},
		{"DELETE", http.MethodDelete, "", nil, 405, malformedRequest},
		{"PATCH", http.MethodPatch, "", good, 405, malformedRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var a answer
			switch tt.method {
			case http.MethodGet:
				a = get(t, s.URL, tt.path)
			case http.MethodPost:
				a = post(t, s.URL, tt.body)
			default:
				req, err := http.NewRequest(tt.method, s.URL+"/ocsp", bytes.NewReader(tt.body))
				if err != nil {
					t.Fatal(err)
				}
				a = do(t, req)
				if allow := a.header.Get("Allow"); allow != "GET, HEAD, POST" {
					t.Errorf("Allow = %q", allow)
				}
			}
			checkError(t, a, tt.code, tt.want)
		})
	}

	// net/http refuses a request line with a bad %-escape before any
	// handler runs: a plain 400, which is all O-03 asks.
	if a := get(t, s.URL, "/ocsp/MEIw%zz"); a.code != http.StatusBadRequest {
		t.Errorf("bad escape in GET: HTTP %d", a.code)
	}
}

// TestRequestOptions: a nonce of any length, a version, a requestor name
// and a signature change nothing (RFC 5019 §2.1.2, §2.2.1; SECURITY.md O-14,
// O-15).
func TestRequestOptions(t *testing.T) {
	t.Parallel()
	h := testHierarchy(t)
	s := newServer(t, h, memoryStore{}, ocsp.CacheOptions{})
	serial := pki.MustNewSerial()
	s.cache.Install(h.response(t, serial, status{}))
	id := idFor(t, h.inter.Cert, serial.Big(), crypto.SHA1)
	tests := []struct {
		name string
		o    reqOpts
	}{
		{"1-octet nonce", reqOpts{nonce: []byte{7}}},
		{"16-octet nonce", reqOpts{nonce: bytes.Repeat([]byte{7}, 16)}},
		{"32-octet nonce", reqOpts{nonce: bytes.Repeat([]byte{7}, 32)}},
		{"empty nonce", reqOpts{nonce: []byte{}}},
		{"200-octet nonce", reqOpts{nonce: bytes.Repeat([]byte{7}, 200)}},
		{"explicit version", reqOpts{version: true}},
		{"signed", reqOpts{signed: true}},
		{"requestor name", reqOpts{requestor: h.inter.Cert.RawSubject}},
		{"signed with requestor and nonce", reqOpts{signed: true, requestor: h.inter.Cert.RawSubject, nonce: []byte{1, 2, 3}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := checkSuccess(t, h, post(t, s.URL, buildRequest(t, []certID{id}, tt.o)), serial, crypto.SHA1)
			if resp.Status != xocsp.Good {
				t.Fatalf("status %d", resp.Status)
			}
		})
	}
}

// TestIssuerBinding: a serial's response is only served for the issuer
// that the database says issued it.
func TestIssuerBinding(t *testing.T) {
	t.Parallel()
	h := testHierarchy(t)
	c := ocsp.NewCache(memoryStore{}, ocsp.CacheOptions{})
	// The responder answers for both intermediates; the response was
	// stored as the first one's.
	both := func() []*x509.Certificate { return []*x509.Certificate{h.inter.Cert, h.twin.Cert} }
	s := newServerWith(t, c, both, h.current)
	serial := pki.MustNewSerial()
	c.Install(h.response(t, serial, status{}))

	checkSuccess(t, h, post(t, s.URL, request(t, h.inter.Cert, serial, crypto.SHA1)), serial, crypto.SHA1)
	checkError(t, post(t, s.URL, request(t, h.twin.Cert, serial, crypto.SHA1)), http.StatusOK, unauthorized)
	// The current responder was not certified by the twin, and may not
	// sign the SHA-256 form for it either.
	checkError(t, post(t, s.URL, request(t, h.twin.Cert, serial, crypto.SHA256)), http.StatusOK, unauthorized)
}

// TestSHA256SignedOnce: the SHA-256 form is signed on first demand and then
// served from memory.
func TestSHA256SignedOnce(t *testing.T) {
	t.Parallel()
	h := testHierarchy(t)
	s := newServer(t, h, memoryStore{}, ocsp.CacheOptions{})
	serial := pki.MustNewSerial()
	s.cache.Install(h.response(t, serial, status{revokedAt: time.Now().Add(-time.Hour), reason: pki.ReasonUnspecified}))
	der := request(t, h.inter.Cert, serial, crypto.SHA256)
	first := post(t, s.URL, der)
	second := post(t, s.URL, der)
	if !bytes.Equal(first.body, second.body) {
		t.Error("the SHA-256 form was signed twice")
	}
	if s.metrics.count(ocsp.StatusRevoked, ocsp.SourceSigned) != 1 || s.metrics.count(ocsp.StatusRevoked, ocsp.SourceMemory) != 1 {
		t.Errorf("metrics: %v", s.metrics.counts)
	}
	resp := checkSuccess(t, h, second, serial, crypto.SHA256)
	if resp.Status != xocsp.Revoked || resp.RevocationReason != xocsp.Unspecified {
		t.Errorf("status %d reason %d, want revoked, unspecified", resp.Status, resp.RevocationReason)
	}
}
