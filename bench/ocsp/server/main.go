// Command server is the OCSP benchmark's responder: a CA hierarchy made in
// memory, N certificates' pre-signed responses installed in an ocsp.Cache,
// and the production Responder behind the same handler as pkid serve puts
// in front of /ocsp (server.QuietHandler: panic recovery and the request
// metrics, no router, no access log). It also serves /fixed, a handler
// that returns a fixed body of the size of a response and does nothing
// else: the ceiling that net/http and loopback allow on this machine,
// measured in the same run.
//
// It writes the requests the wrk scripts replay into -out: get-paths.txt
// (one GET path per line) and post-bodies.hex (one DER request per line,
// hex), for N serials, SHA-1 CertIDs (what nginx and RFC 5019 clients send).
// See bench/ocsp/run.sh.
package main

import (
	"context"
	"crypto"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	xocsp "golang.org/x/crypto/ocsp"

	"github.com/pkid/pkid/internal/issuance"
	"github.com/pkid/pkid/internal/lint"
	"github.com/pkid/pkid/internal/ocsp"
	"github.com/pkid/pkid/internal/pki"
	"github.com/pkid/pkid/internal/server"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18181", "listen address")
	n := flag.Int("n", 10000, "certificates with a pre-signed response")
	out := flag.String("out", "bench/out/ocsp", "directory for the request files")
	profile := flag.String("cpuprofile", "", "write a CPU profile of the serving to this file")
	flag.Parse()
	if err := run(*addr, *n, *out, *profile); err != nil {
		log.Fatal(err)
	}
}

func run(addr string, n int, out, profile string) error {
	start := time.Now()
	inter, signer, err := hierarchy()
	if err != nil {
		return err
	}
	cache := ocsp.NewCache(emptyStore{}, ocsp.CacheOptions{})
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	var gets, posts strings.Builder
	this, next := issuance.OCSPWindow(time.Now(), 24*time.Hour)
	for range n {
		serial := pki.MustNewSerial()
		der, err := signer.SignOCSP(inter.Cert, issuance.OCSPStatus{Serial: serial, ThisUpdate: this, NextUpdate: next}, crypto.SHA1)
		if err != nil {
			return err
		}
		cache.Install(&pki.OCSPResponse{Serial: serial, IssuerID: inter.ID, DER: der, ThisUpdate: this, NextUpdate: next, UpdatedAt: time.Now()})
		req, err := xocsp.CreateRequest(&x509.Certificate{SerialNumber: serial.Big()}, inter.Cert, &xocsp.RequestOptions{Hash: crypto.SHA1})
		if err != nil {
			return err
		}
		gets.WriteString("/ocsp/" + url.PathEscape(base64.StdEncoding.EncodeToString(req)) + "\n")
		posts.WriteString(hex.EncodeToString(req) + "\n")
	}
	if err := os.WriteFile(filepath.Join(out, "get-paths.txt"), []byte(gets.String()), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(out, "post-bodies.hex"), []byte(posts.String()), 0o644); err != nil {
		return err
	}

	metrics := server.NewMetrics()
	issuers := []*x509.Certificate{inter.Cert}
	responder := ocsp.NewResponder(cache, func() []*x509.Certificate { return issuers }, func(string) *issuance.Issuer { return signer }, nil, metrics)
	fixed := make([]byte, 400)
	rest := http.NewServeMux()
	rest.HandleFunc("GET /fixed", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/ocsp-response")
		_, _ = w.Write(fixed)
	})
	// /ocsp exactly as pkid serve mounts it (server.Handler); /fixed with
	// nothing in front.
	router := server.QuietHandler([]server.QuietRoutes{{Prefix: ocsp.Path, Handler: responder}}, rest, metrics, slog.New(slog.DiscardHandler))

	srv := &http.Server{Addr: addr, Handler: router, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 120 * time.Second, MaxHeaderBytes: 32 << 10}
	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.Printf("ready: %d responses (%d cached) on http://%s in %s", n, cache.Len(), addr, time.Since(start).Round(time.Millisecond))
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	fmt.Print(summary(metrics))
	return nil
}

// hierarchy makes a root, an issuing intermediate and its delegated OCSP
// responder, linted as pkid init makes them.
func hierarchy() (inter, signer *issuance.Issuer, err error) {
	l, err := lint.New()
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	cfg := issuance.HierarchyConfig{PublicURL: "http://127.0.0.1:8080"}
	key := func(c elliptic.Curve) crypto.Signer {
		k, err := issuance.GenerateKey(c)
		if err != nil {
			log.Fatal(err)
		}
		return k
	}
	root, err := issuance.NewRoot(cfg, key(elliptic.P384()), now, l)
	if err != nil {
		return nil, nil, err
	}
	if inter, err = issuance.NewIntermediate(root, cfg, key(elliptic.P256()), now, l); err != nil {
		return nil, nil, err
	}
	if signer, err = issuance.NewOCSPSigner(inter, cfg, key(elliptic.P256()), now, l); err != nil {
		return nil, nil, err
	}
	return inter, signer, nil
}

// emptyStore is a database without rows: every request of the benchmark is
// for a response the cache holds.
type emptyStore struct{}

func (emptyStore) OCSPResponse(context.Context, pki.Serial, time.Time) (*pki.OCSPResponse, error) {
	return nil, pki.ErrNotFound
}
func (emptyStore) FirstOCSPResponse(context.Context, pki.Serial, time.Time, func(*pki.Certificate) (*pki.OCSPResponse, error)) (*pki.OCSPResponse, error) {
	return nil, pki.ErrNotFound
}
func (emptyStore) EachOCSPResponse(context.Context, time.Time, func(*pki.OCSPResponse) error) error {
	return nil
}
func (emptyStore) OCSPResponsesSince(context.Context, time.Time, pki.Serial, int) ([]*pki.OCSPResponse, error) {
	return nil, nil
}
func (emptyStore) ListenOCSP(ctx context.Context, listening func(), _ func(pki.Serial)) error {
	listening()
	<-ctx.Done()
	return ctx.Err()
}

// summary returns the OCSP answers counted, one line per status and source.
func summary(m *server.Metrics) string {
	families, err := m.Registry.Gather()
	if err != nil {
		return err.Error() + "\n"
	}
	var b strings.Builder
	for _, f := range families {
		if f.GetName() != "pkid_ocsp_responses_total" {
			continue
		}
		for _, metric := range f.GetMetric() {
			var labels []string
			for _, l := range metric.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			fmt.Fprintf(&b, "answers{%s} %.0f\n", strings.Join(labels, ","), metric.GetCounter().GetValue())
		}
	}
	return b.String()
}
