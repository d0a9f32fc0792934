// Package server assembles pkid's HTTP service: the router, the middleware
// every request passes through (request id, panic recovery, access log,
// metrics), the health endpoints and the listeners with their timeouts and
// graceful shutdown.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"

	apidoc "github.com/pkid/pkid/api"
	"github.com/pkid/pkid/internal/api"
	"github.com/pkid/pkid/internal/clientip"
	"github.com/pkid/pkid/internal/pki"
)

// Deps are the parts the router is assembled from.
type Deps struct {
	API     *api.API
	Metrics *Metrics
	Log     *slog.Logger
	// Ready reports whether pkid can serve: database reachable, keys loaded.
	Ready func(context.Context) error
	// Mount registers further routes (the CRLs, the admin web page).
	Mount []func(chi.Router)
	// Quiet are routes that relying parties hit at high rates (the OCSP
	// responder): counted in metrics but not logged one line each.
	Quiet []QuietRoutes
	// Client returns a request's client address, for the access log: the
	// connection's peer, or what a trusted proxy forwarded
	// (clientip.Resolver.Addr). The peer when nil.
	Client func(*http.Request) netip.Addr
	// AuthFailures limits failed authentication per client on the account
	// and admin APIs; the zero value is no limit. The public routes (OCSP,
	// CRLs, CA certificates, health, metrics) are never limited: they are
	// served from memory and meant to be cached by a CDN.
	AuthFailures AuthFailures
}

// QuietRoutes is a handler for high-rate requests under one path prefix.
// Every request for Prefix itself or a path below it ("/ocsp", "/ocsp/...",
// as routed: the escaped path when the client escaped anything) goes to
// Handler and to nothing else, through the least middleware that keeps it
// observable and safe: panic recovery and the request metrics. There is no
// router (Handler finds its parameters in the path itself) and no request
// id (nothing logs a line per request there): at tens of thousands of
// requests a second, those cost a third of what answering does.
type QuietRoutes struct {
	Prefix  string // "/ocsp": no trailing slash
	Handler http.Handler
}

// Handler returns the complete HTTP handler.
func Handler(d Deps) http.Handler {
	root := chi.NewRouter()
	root.Use(middleware.RequestID, recoverer(d.Log), d.Metrics.instrument)
	root.NotFound(func(w http.ResponseWriter, r *http.Request) {
		api.WriteError(w, r, d.Log, pki.ErrNotFound)
	})
	root.Group(func(r chi.Router) {
		r.Use(accessLog(d.Log, d.Client))
		logged(r, d)
	})
	if len(d.Quiet) == 0 {
		return root
	}
	return QuietHandler(d.Quiet, root, d.Metrics, d.Log)
}

// QuietHandler sends the requests under each of routes' prefixes to its
// handler, with panic recovery and request metrics only (see QuietRoutes),
// and every other request to rest. The metrics count a quiet request under
// the route pattern a router would have given it: the prefix itself, or the
// prefix followed by "/*".
func QuietHandler(routes []QuietRoutes, rest http.Handler, m *Metrics, log *slog.Logger) http.Handler {
	h := &splitHandler{rest: rest}
	for _, q := range routes {
		h.quiet = append(h.quiet, quietRoute{
			prefix: q.Prefix,
			exact:  recoverer(log)(m.instrumentRoute(q.Prefix, q.Handler)),
			below:  recoverer(log)(m.instrumentRoute(q.Prefix+"/*", q.Handler)),
		})
	}
	return h
}

type quietRoute struct {
	prefix       string
	exact, below http.Handler
}

// splitHandler sends the paths under the quiet prefixes to their handlers
// and every other path to rest.
type splitHandler struct {
	quiet []quietRoute
	rest  http.Handler
}

func (h *splitHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// The path a router would route on: the escaped one when it differs.
	p := r.URL.RawPath
	if p == "" {
		p = r.URL.Path
	}
	for _, q := range h.quiet {
		if rest, ok := strings.CutPrefix(p, q.prefix); ok {
			switch {
			case rest == "":
				q.exact.ServeHTTP(w, r)
				return
			case rest[0] == '/':
				q.below.ServeHTTP(w, r)
				return
			}
		}
	}
	h.rest.ServeHTTP(w, r)
}

// logged registers the routes whose every request gets an access-log line.
func logged(r chi.Router, d Deps) {
	r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	r.Get("/readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if err := d.Ready(ctx); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = fmt.Fprintf(w, "not ready: %v\n", err)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	r.Method(http.MethodGet, "/metrics", d.Metrics.Handler())
	r.Get("/openapi.yaml", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/yaml")
		w.Header().Set("Cache-Control", "public, max-age=3600")
		_, _ = w.Write(apidoc.OpenAPI)
	})

	d.API.PublicRoutes(r)
	throttle := throttleAuthFailures(d.AuthFailures, d.Metrics, d.Log)
	r.With(throttle).Mount("/api/v1", d.API.AccountRoutes())
	r.With(throttle).Mount("/admin/api", d.API.AdminRoutes())
	for _, m := range d.Mount {
		m(r)
	}
}

// recoverer turns a panic into a logged 500 problem instead of a dropped
// connection.
func recoverer(log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer func() {
				if v := recover(); v != nil {
					if v == http.ErrAbortHandler {
						panic(v)
					}
					log.ErrorContext(r.Context(), "panic serving request", "panic", fmt.Sprint(v),
						"path", r.URL.Path, "request_id", middleware.GetReqID(r.Context()))
					api.WriteError(w, r, log, errors.New("panic"))
				}
			}()
			next.ServeHTTP(w, r)
		})
	}
}

// accessLog logs one line per request: its id, method, path, status, size
// and duration, the connection's peer ("remote") and the client as client
// resolves it ("client": behind a trusted proxy, the address it forwarded,
// which is who the limits count and who an operator looks for).
func accessLog(log *slog.Logger, client func(*http.Request) netip.Addr) func(http.Handler) http.Handler {
	if client == nil {
		client = clientip.New(nil).Addr
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
			next.ServeHTTP(ww, r)
			log.LogAttrs(r.Context(), slog.LevelInfo, "request",
				slog.String("request_id", middleware.GetReqID(r.Context())),
				slog.String("method", r.Method),
				slog.String("path", r.URL.Path),
				slog.Int("status", ww.Status()),
				slog.Int("bytes", ww.BytesWritten()),
				slog.Duration("duration", time.Since(start)),
				slog.String("remote", r.RemoteAddr),
				slog.String("client", client(r).String()),
			)
		})
	}
}

// NewHTTPServer returns an http.Server with the timeouts and header limits a
// service exposed to the network needs (slow-loris, header floods: SECURITY.md
// J-12, O-06).
func NewHTTPServer(addr string, h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// Serve runs srv on ln until ctx is cancelled, then shuts down gracefully,
// letting requests in flight finish for up to 15 seconds.
func Serve(ctx context.Context, srv *http.Server, ln net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return err
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
