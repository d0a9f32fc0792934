package server

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pkid/pkid/internal/clientip"
)

// quiet stands in for the OCSP responder: it answers with what follows
// "/ocsp" in the path as routed, which the responder reads the same way.
var quiet = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
	p := req.URL.RawPath
	if p == "" {
		p = req.URL.Path
	}
	w.Header()["Content-Type"] = []string{"application/ocsp-response"}
	_, _ = io.WriteString(w, "quiet:"+strings.TrimPrefix(p, "/ocsp"))
})

func TestQuietHandler(t *testing.T) {
	m := NewMetrics()
	rest := chi.NewRouter()
	rest.Get("/*", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "rest") })
	h := QuietHandler([]QuietRoutes{{Prefix: "/ocsp", Handler: quiet}}, rest, m, slog.New(slog.DiscardHandler))
	for path, want := range map[string]string{
		"/ocsp":             "quiet:",
		"/ocsp/":            "quiet:/",
		"/ocsp/MEow/+x==":   "quiet:/MEow/+x==",
		"/ocsp/MEow%2F%2B":  "quiet:/MEow%2F%2B",
		"/ocsp//MEow":       "quiet://MEow",
		"/ocspx":            "rest",
		"/ocs":              "rest",
		"/api/v1/something": "rest",
		"//ocsp/MEow":       "rest",
		"/%6Fcsp/MEow":      "rest", // not /ocsp as routed: a router would not match it either
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if got := rec.Body.String(); got != want {
			t.Errorf("%s: %q, want %q", path, got, want)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("BREW", "/ocsp/x", nil))
	// The quiet requests are counted by route pattern, as a router would
	// name them, and a method the client made up is "other".
	for _, c := range []struct {
		route, method string
		want          float64
	}{
		{"/ocsp", "GET", 1},
		{"/ocsp/*", "GET", 4},
		{"/ocsp/*", "other", 1},
	} {
		if n := testutil.ToFloat64(m.httpRequests.WithLabelValues(c.route, c.method, "200")); n != c.want {
			t.Errorf("pkid_http_requests_total{route=%s,method=%s} = %v, want %v", c.route, c.method, n, c.want)
		}
	}
	if n := testutil.CollectAndCount(m.httpDuration); n != 2 {
		t.Errorf("%d duration series, want 2 (/ocsp and /ocsp/*)", n)
	}
}

// BenchmarkQuietChain measures what routing and middleware add to one OCSP
// GET, without the network: the main router's chain (request id, recovery,
// metrics, chi's wildcard), which /ocsp went through before it had its own,
// against QuietHandler.
func BenchmarkQuietChain(b *testing.B) {
	path := "/ocsp/" + strings.Repeat("MEow", 25)
	log := slog.New(slog.DiscardHandler)
	m := NewMetrics()
	main := chi.NewRouter()
	main.Use(middleware.RequestID, recoverer(log), m.instrument)
	main.Handle("/ocsp", quiet)
	main.Handle("/ocsp/*", quiet)
	for _, c := range []struct {
		name string
		h    http.Handler
	}{
		{"main", main},
		{"quiet", QuietHandler([]QuietRoutes{{Prefix: "/ocsp", Handler: quiet}}, main, m, log)},
		{"none", quiet},
	} {
		b.Run(c.name, func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, path, nil)
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				c.h.ServeHTTP(w, req)
			}
		})
	}
}

type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(int)             {}

// TestAccessLogClient: the access log names the connection's peer and the
// client as the resolver sees it, the address a trusted proxy forwarded.
func TestAccessLogClient(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	trusted := clientip.New([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")})
	h := accessLog(log, trusted.Addr)(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusTeapot)
	}))
	for _, c := range []struct {
		peer, forwarded, client string
	}{
		{"10.1.2.3:4567", "203.0.113.9", "203.0.113.9"},      // through the trusted proxy
		{"198.51.100.7:4567", "203.0.113.9", "198.51.100.7"}, // a peer that is not trusted cannot name another
		{"10.1.2.3:4567", "", "10.1.2.3"},                    // the proxy's own request
	} {
		buf.Reset()
		req := httptest.NewRequest(http.MethodGet, "/x", nil)
		req.RemoteAddr = c.peer
		if c.forwarded != "" {
			req.Header.Set("X-Forwarded-For", c.forwarded)
		}
		h.ServeHTTP(httptest.NewRecorder(), req)
		var line struct {
			Remote, Client string
			Status         int
		}
		if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
			t.Fatalf("%q: %v", buf.String(), err)
		}
		if line.Remote != c.peer || line.Client != c.client || line.Status != http.StatusTeapot {
			t.Errorf("peer %s, X-Forwarded-For %q: logged %+v, want remote %s client %s", c.peer, c.forwarded, line, c.peer, c.client)
		}
	}
}
