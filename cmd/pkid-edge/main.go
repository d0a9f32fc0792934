// Command pkid-edge is an mTLS reverse proxy for the API edge: it verifies
// client certificates against pkid's CA, checks their revocation with pkid's
// OCSP responder and CRL, and forwards the requests it accepts to the
// upstream with X-Client-Account, X-Client-Serial and X-Client-Subject set
// by itself. The work is done by internal/edge; this is the wiring.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/pkid/pkid/internal/edge"
)

const usage = `pkid-edge: an mTLS reverse proxy that admits only clients holding a valid,
unrevoked pkid certificate, and tells the upstream who they are.

Usage:
  pkid-edge --listen ADDR --upstream URL --ca FILE --cert FILE --key FILE --ocsp URL --crl URL [flags]

Example, in front of an API on 127.0.0.1:9000, with pkid on 127.0.0.1:8080:
  curl -s http://127.0.0.1:8080/ca/root.pem > root.pem
  pkid-edge --listen :8443 --upstream http://127.0.0.1:9000 \
    --ca root.pem --cert edge.pem --key edge.key \
    --ocsp http://127.0.0.1:8080/ocsp --crl http://127.0.0.1:8080/crl
  curl --cert client.pem --key client.key --cacert server-ca.pem https://localhost:8443/

What it does:
  - TLS 1.2 and 1.3; the client must present a certificate that chains to a root
    in --ca (intermediates from --ca or from the client), valid now, for clientAuth,
    naming its account in a urn:pkid:account:<id> URI SAN;
  - revocation: OCSP (POST --ocsp), cached per certificate until the soonest of
    nextUpdate, max-age and --ocsp-cache-max; the CRL (--crl, refreshed in the
    background) when OCSP cannot answer; refused when neither answer is fresh
    (past nextUpdate by more than --grace): fail closed;
  - refusals: revoked, unknown, unverifiable or unchecked certificates are refused
    at the TLS handshake (alert bad_certificate); a certificate revoked during a
    keep-alive connection gets 403 on its next request (503 if its status cannot
    be checked);
  - the upstream gets X-Client-Account, X-Client-Serial (lowercase hex),
    X-Client-Subject (RFC 4514) and X-Forwarded-For/Host/Proto, never a client's
    own X-Client-* header;
  - SIGHUP reloads --ca, --cert and --key (a bad file keeps the old ones);
    SIGTERM or SIGINT shuts down gracefully;
  - Prometheus metrics on --metrics at /metrics; a JSON log line per request on
    standard error.

Every flag may also be given in the environment as PKID_EDGE_<FLAG>, upper case
with '-' as '_' (PKID_EDGE_OCSP_CACHE_MAX=30s); a flag on the command line wins.

Exit codes: 0 after a clean shutdown or --help, 1 on a runtime failure, 2 on bad
usage or configuration.

Flags:
`

// options are the command line, before it becomes an edge.Config.
type options struct {
	listen, metrics, upstream string
	ca, cert, key             string
	ocsp, crl                 string
	revocation                string
	logLevel                  string
	cfg                       edge.Config
}

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	o, err := parse(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "pkid-edge:", err)
		return 2
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		fmt.Fprintln(stderr, "pkid-edge: --log-level:", err)
		return 2
	}
	logger := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))
	o.cfg.Logger = logger

	e, err := edge.New(o.cfg)
	if err != nil {
		fmt.Fprintln(stderr, "pkid-edge:", err)
		return 2
	}
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		fmt.Fprintln(stderr, "pkid-edge:", err)
		return 1
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-hup:
				_ = e.Reload() // it logs the outcome; a failure keeps the old files
			case <-ctx.Done():
				return
			}
		}
	}()

	var metricsSrv *http.Server
	if o.metrics != "" && o.metrics != "off" {
		mln, err := net.Listen("tcp", o.metrics)
		if err != nil {
			fmt.Fprintln(stderr, "pkid-edge: --metrics:", err)
			return 1
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", e.MetricsHandler())
		mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
		metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := metricsSrv.Serve(mln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				logger.Error("pkid-edge: metrics listener failed", "err", err)
			}
		}()
	}

	err = e.Run(ctx, ln)
	if metricsSrv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = metricsSrv.Shutdown(sctx)
		cancel()
	}
	if err != nil {
		logger.Error("pkid-edge: stopped", "err", err)
		return 1
	}
	logger.Info("pkid-edge: stopped")
	return 0
}

// parse reads the flags, with PKID_EDGE_* environment variables as their
// defaults, into options.
func parse(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("pkid-edge", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	fs.StringVar(&o.listen, "listen", ":8443", "TLS listen `address`")
	fs.StringVar(&o.upstream, "upstream", "", "`URL` of the service behind the edge (http or https; required)")
	fs.StringVar(&o.ca, "ca", "", "PEM `file`: the root(s) client certificates must chain to, optionally intermediates; pkid's /ca/root.pem (required)")
	fs.StringVar(&o.cert, "cert", "", "PEM `file`: the edge's server certificate, optionally followed by its chain (required)")
	fs.StringVar(&o.key, "key", "", "PEM `file`: the server certificate's private key (required)")
	fs.StringVar(&o.ocsp, "ocsp", "", "OCSP responder `URL`, e.g. {pkid}/ocsp (required unless --revocation=off)")
	fs.StringVar(&o.crl, "crl", "", "CRL `URL`, DER or PEM, e.g. {pkid}/crl (required unless --revocation=off); CRLs that client certificates name on the same host (after `pkid ca rotate`: /crl/2) are followed too")
	fs.StringVar(&o.metrics, "metrics", "127.0.0.1:9090", "`address` of the Prometheus /metrics and /healthz listener (plain HTTP; \"off\" disables)")
	fs.StringVar(&o.revocation, "revocation", "on", "on, or off to skip every revocation check: for benchmarks and emergencies only")
	fs.DurationVar(&o.cfg.Grace, "grace", edge.DefaultGrace, "how long past nextUpdate an OCSP answer or CRL may still be used when no fresher one can be had (0: not at all)")
	fs.DurationVar(&o.cfg.OCSPCacheMax, "ocsp-cache-max", edge.DefaultOCSPCacheMax, "longest reuse of a \"good\" OCSP answer, whatever its nextUpdate and max-age: how late a revocation may reach the edge")
	fs.DurationVar(&o.cfg.OCSPTimeout, "ocsp-timeout", edge.DefaultOCSPTimeout, "time limit of one OCSP request")
	fs.DurationVar(&o.cfg.OCSPRetry, "ocsp-retry", edge.DefaultOCSPRetry, "while the OCSP responder fails, how often it is probed again in the background (the CRL answers meanwhile)")
	fs.DurationVar(&o.cfg.CRLRefresh, "crl-refresh", edge.DefaultCRLRefresh, "longest interval between CRL fetches (conditional GETs; sooner as nextUpdate nears)")
	fs.DurationVar(&o.cfg.CRLTimeout, "crl-timeout", edge.DefaultCRLTimeout, "time limit of one CRL fetch")
	fs.Int64Var(&o.cfg.CRLMaxBytes, "crl-max-bytes", edge.DefaultCRLMaxBytes, "largest CRL accepted, in bytes")
	fs.DurationVar(&o.cfg.ClockSkew, "clock-skew", edge.DefaultClockSkew, "how far in the future an OCSP or CRL thisUpdate may be")
	fs.IntVar(&o.cfg.CacheEntries, "cache-entries", edge.DefaultCacheEntries, "most certificates the revocation cache remembers")
	fs.DurationVar(&o.cfg.ShutdownTimeout, "shutdown-timeout", edge.DefaultShutdownTimeout, "on SIGTERM, how long requests in flight may take to finish")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")

	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		name := "PKID_EDGE_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(name); ok && envErr == nil {
			if err := f.Value.Set(v); err != nil {
				envErr = fmt.Errorf("%s: %v", name, err)
			}
		}
	})
	if envErr != nil {
		return nil, envErr
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (see --help)", fs.Arg(0))
	}

	switch o.revocation {
	case "on":
	case "off":
		o.cfg.RevocationOff = true
	default:
		return nil, fmt.Errorf("--revocation must be on or off, not %q", o.revocation)
	}
	if o.upstream == "" {
		return nil, errors.New("--upstream is required (see --help)")
	}
	u, err := url.Parse(o.upstream)
	if err != nil {
		return nil, fmt.Errorf("--upstream: %v", err)
	}
	o.cfg.Upstream = u
	o.cfg.CAFile, o.cfg.CertFile, o.cfg.KeyFile = o.ca, o.cert, o.key
	o.cfg.OCSPURL, o.cfg.CRLURL = o.ocsp, o.crl
	if err := o.cfg.Validate(); err != nil {
		return nil, err
	}
	return o, nil
}
