package ocsp_test

import (
	"bytes"
	"context"
	"crypto"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/pkid/pkid/internal/ocsp"
	"github.com/pkid/pkid/internal/pki"
)

// benchResponder is a responder holding n responses, and one request of
// each form per serial.
func benchResponder(b *testing.B, n int) (http.Handler, [][]byte, []string) {
	h := testHierarchy(b)
	c := ocsp.NewCache(memoryStore{}, ocsp.CacheOptions{})
	var posts [][]byte
	var gets []string
	for range n {
		s := pki.MustNewSerial()
		c.Install(h.response(b, s, status{}))
		der := request(b, h.inter.Cert, s, crypto.SHA1)
		posts = append(posts, der)
		gets = append(gets, getPath(der))
	}
	router := chi.NewRouter()
	ocsp.NewResponder(c, h.issuers, h.current, nil, nil).Routes(router)
	return router, posts, gets
}

// discard is a ResponseWriter that keeps nothing, so that the benchmark
// measures the responder rather than a recorder.
type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(b []byte) (int, error) { return len(b), nil }
func (d *discard) WriteHeader(int)             {}

// BenchmarkResponder measures the handler alone, from a parsed HTTP
// request to the bytes written, for responses held in memory. cpu-ns/op is
// the process's CPU time per request, which other work on the machine does
// not inflate as it does ns/op.
func BenchmarkResponder(b *testing.B) {
	router, posts, gets := benchResponder(b, 1000)
	b.Run("GET", func(b *testing.B) {
		reqs := make([]*http.Request, len(gets))
		for i, p := range gets {
			reqs[i] = httptest.NewRequest(http.MethodGet, p, nil)
		}
		w := &discard{h: http.Header{}}
		b.ReportAllocs()
		cpu := processCPUTime()
		i := 0
		for b.Loop() {
			clear(w.h)
			router.ServeHTTP(w, reqs[i%len(reqs)])
			i++
		}
		b.ReportMetric(float64(processCPUTime()-cpu)/float64(i), "cpu-ns/op")
	})
	b.Run("POST", func(b *testing.B) {
		w := &discard{h: http.Header{}}
		rd := new(bytes.Reader)
		req := httptest.NewRequest(http.MethodPost, "/ocsp", rd)
		b.ReportAllocs()
		cpu := processCPUTime()
		i := 0
		for b.Loop() {
			clear(w.h)
			rd.Reset(posts[i%len(posts)])
			req.Body = readCloser{rd}
			req.ContentLength = int64(rd.Len())
			router.ServeHTTP(w, req)
			i++
		}
		b.ReportMetric(float64(processCPUTime()-cpu)/float64(i), "cpu-ns/op")
	})
}

type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }

// BenchmarkCacheMemory measures what a node's cache holds per certificate:
// the heap that installing 20,000 stored responses (as signed by the CA,
// with the delegated responder's certificate) adds, after garbage
// collection. Every node holds one such entry per unexpired certificate,
// so this is what sizing a node's memory starts from (docs/SCALING.md).
func BenchmarkCacheMemory(b *testing.B) {
	const n = 20000
	h := testHierarchy(b)
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		c := ocsp.NewCache(memoryStore{}, ocsp.CacheOptions{})
		for range n {
			c.Install(h.response(b, pki.MustNewSerial(), status{}))
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		if c.Len() != n {
			b.Fatalf("the cache holds %d responses, want %d", c.Len(), n)
		}
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "heap-B/response")
		runtime.KeepAlive(c)
	}
}

// BenchmarkFirstResponse measures what the first request about a
// certificate costs now that issuance stores no response: a cache miss
// that reads the database, finds no response, reads the certificate row,
// signs, stores and installs. Each iteration asks about a certificate
// recorded without a response; a second lookup of the same serial is the
// memory hit every later request gets.
func BenchmarkFirstResponse(b *testing.B) {
	h := testHierarchy(b)
	db := newDatabase(b, h)
	c := ocsp.NewCache(db, ocsp.CacheOptions{Issuers: h.issuers, Signer: h.current})
	notAfter := time.Now().Add(30 * 24 * time.Hour)
	serials := make([]pki.Serial, b.N)
	for i := range serials {
		serials[i] = pki.MustNewSerial()
		db.certificate(b, h, serials[i], notAfter, nil)
	}
	ctx := context.Background()
	b.ResetTimer()
	for _, s := range serials {
		if _, err := c.Lookup(ctx, s); err != nil {
			b.Fatal(err)
		}
	}
}
