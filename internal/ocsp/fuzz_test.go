package ocsp_test

import (
	"bytes"
	"crypto"
	"encoding/base64"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"
	"golang.org/x/crypto/cryptobyte"
	casn1 "golang.org/x/crypto/cryptobyte/asn1"
	xocsp "golang.org/x/crypto/ocsp"

	"github.com/pkid/pkid/internal/ocsp"
	"github.com/pkid/pkid/internal/pki"
)

// FuzzOCSPRequest sends arbitrary bytes to the responder as a POST body,
// as the base64 of a GET and as a raw GET path, and checks what must hold
// for any input: no panic, no 5xx (the cache holds what it needs; there is
// no database to fail), Content-Type application/ocsp-response, and a
// signed answer only for a request that asks, with one CertID of the
// intermediate, about the one serial the cache holds. It also checks the
// responder's parser against x/crypto's ParseRequest: whatever the former
// accepts, the latter reads alike (once the signature and requestor name,
// which x/crypto refuses and pkid ignores, are dropped).
func FuzzOCSPRequest(f *testing.F) {
	h := testHierarchy(f)
	c := ocsp.NewCache(memoryStore{}, ocsp.CacheOptions{})
	serial := pki.MustNewSerial()
	c.Install(h.response(f, serial, status{}))
	router := chi.NewRouter()
	ocsp.NewResponder(c, h.issuers, h.current, nil, nil).Routes(router)

	seeds, err := filepath.Glob(filepath.Join("testdata", "*.der"))
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range seeds {
		der, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(der)
	}
	id := idFor(f, h.inter.Cert, serial.Big(), crypto.SHA1)
	f.Add(request(f, h.inter.Cert, serial, crypto.SHA1))
	f.Add(request(f, h.inter.Cert, serial, crypto.SHA256))
	f.Add(buildRequest(f, []certID{id}, reqOpts{signed: true, requestor: h.inter.Cert.RawSubject, nonce: []byte{1}}))
	f.Add(buildRequest(f, []certID{id, id}, reqOpts{}))
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, in []byte) {
		checkParser(t, in)
		b64 := base64.StdEncoding.EncodeToString(in)
		reqs := []*http.Request{
			httptest.NewRequest(http.MethodPost, "/ocsp", bytes.NewReader(in)),
			httptest.NewRequest(http.MethodGet, "/ocsp/"+strings.NewReplacer("/", "%2F", "+", "%2B").Replace(b64), nil),
		}
		if raw := "/ocsp/" + string(in); validRequestURI(raw) {
			reqs = append(reqs, httptest.NewRequest(http.MethodGet, raw, nil))
		}
		for _, req := range reqs {
			w := httptest.NewRecorder()
			router.ServeHTTP(w, req)
			if w.Code >= 500 {
				t.Fatalf("%s: HTTP %d", req.Method, w.Code)
			}
			if ct := w.Header().Values("Content-Type"); len(ct) != 1 || ct[0] != "application/ocsp-response" {
				t.Fatalf("%s: Content-Type %q", req.Method, ct)
			}
			body := w.Body.Bytes()
			if w.Code != http.StatusOK || bytes.Equal(body, unauthorized) {
				continue
			}
			resp, err := xocsp.ParseResponse(body, h.inter.Cert)
			if err != nil {
				t.Fatalf("%s: HTTP 200 with an answer that does not verify: %v", req.Method, err)
			}
			if pki.SerialFromBig(resp.SerialNumber) != serial {
				t.Fatalf("%s: answered about %x", req.Method, resp.SerialNumber)
			}
			q, err := xocsp.ParseRequest(in)
			if err == nil && q.SerialNumber.Cmp(serial.Big()) != 0 {
				t.Fatalf("%s: asked about %x, answered about %s", req.Method, q.SerialNumber, serial)
			}
		}
	})
}

// checkParser compares the responder's request parser with x/crypto's.
func checkParser(t *testing.T, in []byte) {
	got, err := ocsp.ParseRequest(in)
	if err != nil {
		return
	}
	ref, err := xocsp.ParseRequest(unsigned(t, in))
	if err != nil {
		t.Fatalf("accepted a request that x/crypto refuses: %v", err)
	}
	if got.Hash != ref.HashAlgorithm || !bytes.Equal(got.NameHash, ref.IssuerNameHash) ||
		!bytes.Equal(got.KeyHash, ref.IssuerKeyHash) || integer(got.Serial).Cmp(ref.SerialNumber) != 0 {
		t.Fatalf("read %+v, x/crypto %+v", got, ref)
	}
}

// integer returns the value of a DER INTEGER's content octets (two's
// complement, big-endian).
func integer(b []byte) *big.Int {
	n := new(big.Int).SetBytes(b)
	if len(b) > 0 && b[0]&0x80 != 0 {
		n.Sub(n, new(big.Int).Lsh(big.NewInt(1), uint(8*len(b))))
	}
	return n
}

// unsigned returns der, a request the responder accepted, without its
// optionalSignature, requestorName and extensions: the request as the
// responder treats it, in the form x/crypto reads.
func unsigned(t *testing.T, der []byte) []byte {
	in := cryptobyte.String(der)
	var outer, tbs, list cryptobyte.String
	if !in.ReadASN1(&outer, casn1.SEQUENCE) || !outer.ReadASN1(&tbs, casn1.SEQUENCE) ||
		!tbs.SkipOptionalASN1(explicit0) || !tbs.SkipOptionalASN1(explicit1) || !tbs.ReadASN1Element(&list, casn1.SEQUENCE) {
		t.Fatal("the responder accepted a request without the structure it requires")
	}
	var b cryptobyte.Builder
	b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddBytes(list) })
	})
	return b.BytesOrPanic()
}

// validRequestURI reports whether httptest.NewRequest would accept path as
// a request target (it panics otherwise).
func validRequestURI(path string) bool {
	for i := 0; i < len(path); i++ {
		if c := path[i]; c <= ' ' || c >= 0x7f || c == '#' || c == '?' {
			return false
		}
	}
	_, err := http.ReadRequest(bufioReader("GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n"))
	return err == nil
}
