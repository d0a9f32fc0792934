package ocsp_test

import (
	"bytes"
	"crypto"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"
	xocsp "golang.org/x/crypto/ocsp"

	"github.com/pkid/pkid/internal/ocsp"
	"github.com/pkid/pkid/internal/pki"
)

// FuzzOCSPRequest sends arbitrary bytes to the responder as a POST body,
// as the base64 of a GET and as a raw GET path, and checks what must hold
// for any input: no panic, no 5xx (the cache holds what it needs; there is
// no database to fail), Content-Type application/ocsp-response, and a
// signed answer only for a request that asks, with one CertID of the
// intermediate, about the one serial the cache holds.
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
