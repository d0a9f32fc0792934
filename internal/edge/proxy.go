package edge

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The headers the edge sets for the upstream. Any header (or trailer) whose
// name starts with X-Client- in any case, or X_Client_ (which CGI-style
// upstreams map to the same variable), is the client's and is dropped.
const (
	HeaderAccount = "X-Client-Account"
	HeaderSerial  = "X-Client-Serial"
	HeaderSubject = "X-Client-Subject"
)

// ProblemTypePrefix begins the type URI of the edge's problem documents, as
// it does pkid's.
const ProblemTypePrefix = "urn:pkid:error:"

type ctxKey int

const (
	connKey ctxKey = iota
	peerKey
)

// connMemo is computed once per connection, on its first request: the
// client certificate does not change on a connection (the edge never
// renegotiates).
type connMemo struct {
	once sync.Once
	leaf *x509.Certificate
	key  certKey
	id   Identity
	err  error
}

// connContext gives each connection its memo.
func connContext(ctx context.Context, _ net.Conn) context.Context {
	return context.WithValue(ctx, connKey, &connMemo{})
}

// peer is the verified client of one request, as the rewrite and the log
// see it.
type peer struct {
	id            Identity
	upstreamStart time.Time
}

func (e *Edge) newHandler() http.Handler {
	errLog := log.New(serverLog{e.log}, "", 0)
	rp := &httputil.ReverseProxy{
		Rewrite:   e.rewrite,
		Transport: e.cfg.UpstreamTransport,
		ErrorLog:  errLog,
		ModifyResponse: func(resp *http.Response) error {
			if p, ok := resp.Request.Context().Value(peerKey).(*peer); ok {
				e.m.upstream.WithLabelValues(strconv.Itoa(resp.StatusCode)).Observe(time.Since(p.upstreamStart).Seconds())
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if p, ok := r.Context().Value(peerKey).(*peer); ok && !p.upstreamStart.IsZero() {
				e.m.upstream.WithLabelValues("error").Observe(time.Since(p.upstreamStart).Seconds())
			}
			if errors.Is(err, context.Canceled) {
				w.WriteHeader(499) // the client went away; nobody reads this
				return
			}
			e.log.Warn("edge: upstream failed", "err", err.Error(), "path", r.URL.Path)
			writeProblem(w, http.StatusBadGateway, "badGateway", "Upstream unavailable", "the service behind the edge did not answer")
		},
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { e.serve(w, r, rp) })
}

// serve checks the request's client certificate again (revocation may have
// been learnt since the handshake), forwards it, and logs it.
func (e *Edge) serve(w http.ResponseWriter, r *http.Request, rp *httputil.ReverseProxy) {
	start := time.Now()
	rec := &recorder{ResponseWriter: w}
	id, err := e.authorize(r)
	if err != nil {
		refuse(rec, err)
	} else {
		rp.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), peerKey, &peer{id: id})))
	}
	status := rec.code()
	e.m.requests.WithLabelValues(strconv.Itoa(status)).Inc()
	attrs := []slog.Attr{
		slog.String("method", r.Method),
		slog.String("host", r.Host),
		slog.String("path", r.URL.Path),
		slog.String("proto", r.Proto),
		slog.Int("status", status),
		slog.Int64("bytes", rec.bytes),
		slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000),
		slog.String("remote", r.RemoteAddr),
		slog.String("account", id.Account),
		slog.String("serial", id.Serial.String()),
	}
	if r.TLS != nil {
		attrs = append(attrs, slog.String("tls", tls.VersionName(r.TLS.Version)))
	}
	if err != nil {
		attrs = append(attrs, slog.String("refused", err.Error()))
	}
	e.log.LogAttrs(r.Context(), slog.LevelInfo, "request", attrs...)
}

// authorize returns the identity of the request's verified client, or a
// *RefusalError. The handshake verified the chain; here the certificate's
// validity period and its revocation status are checked again, through the
// cache (one map lookup while the answer is fresh).
func (e *Edge) authorize(r *http.Request) (Identity, error) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return Identity{}, &RefusalError{ReasonNoCertificate, ErrNoCertificate}
	}
	memo, ok := r.Context().Value(connKey).(*connMemo)
	if !ok {
		memo = &connMemo{}
	}
	memo.once.Do(func() {
		memo.leaf = r.TLS.PeerCertificates[0]
		memo.key = keyOf(memo.leaf)
		memo.id, memo.err = IdentityOf(memo.leaf)
	})
	if memo.err != nil {
		return Identity{}, &RefusalError{ReasonNoAccount, memo.err}
	}
	now := e.cfg.Now()
	if now.After(memo.leaf.NotAfter) || now.Before(memo.leaf.NotBefore) {
		return memo.id, &RefusalError{ReasonExpired, errors.New("edge: the client certificate is outside its validity period")}
	}
	if e.checker == nil {
		return memo.id, nil
	}
	_, known, err := e.checker.checkKnown(r.Context(), memo.key)
	if !known {
		leaf, issuer, verr := e.trust.Load().verify(r.TLS.PeerCertificates, now)
		if verr != nil {
			return memo.id, verr
		}
		_, err = e.checker.check(r.Context(), leaf, issuer)
	}
	if err != nil {
		return memo.id, revocationRefusal(err)
	}
	return memo.id, nil
}

// refuse answers a refused request: 503 when the revocation status cannot
// be known (fail closed; the client may retry), 403 otherwise.
func refuse(w http.ResponseWriter, err error) {
	reason := ReasonInvalid
	var re *RefusalError
	if errors.As(err, &re) {
		reason = re.Reason
	}
	switch reason {
	case ReasonUnavailable:
		w.Header().Set("Retry-After", "5")
		writeProblem(w, http.StatusServiceUnavailable, "serviceUnavailable", "Revocation status unavailable",
			"the client certificate's revocation status cannot be checked right now; try again later")
	case ReasonRevoked:
		writeProblem(w, http.StatusForbidden, "certificateRevoked", "Certificate revoked", "the client certificate has been revoked")
	case ReasonExpired:
		writeProblem(w, http.StatusForbidden, "certificateExpired", "Certificate expired", "the client certificate is expired or not yet valid")
	case ReasonUnknown:
		writeProblem(w, http.StatusForbidden, "unknownCertificate", "Certificate unknown", "the CA does not vouch for the client certificate")
	default:
		writeProblem(w, http.StatusForbidden, "forbidden", "Client certificate refused", "the client certificate is not accepted here")
	}
}

func writeProblem(w http.ResponseWriter, status int, kind, title, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(struct {
		Type   string `json:"type"`
		Status int    `json:"status"`
		Title  string `json:"title"`
		Detail string `json:"detail"`
	}{ProblemTypePrefix + kind, status, title, detail})
}

// rewrite builds the upstream request: the upstream's URL, no client-sent
// X-Client-* header or trailer, the edge's own X-Client-* headers, and
// X-Forwarded-For/Host/Proto set afresh (ReverseProxy has already removed
// the client's Forwarded and X-Forwarded-* headers, and the hop-by-hop ones,
// so a "Connection: X-Client-Account" cannot remove the edge's header).
func (e *Edge) rewrite(pr *httputil.ProxyRequest) {
	pr.SetURL(e.cfg.Upstream)
	dropClientHeaders(pr.Out.Header)
	dropClientHeaders(pr.Out.Trailer)
	p := pr.In.Context().Value(peerKey).(*peer)
	pr.Out.Header.Set(HeaderAccount, p.id.Account)
	pr.Out.Header.Set(HeaderSerial, p.id.Serial.String())
	pr.Out.Header.Set(HeaderSubject, p.id.Subject)
	pr.SetXForwarded()
	p.upstreamStart = time.Now()
}

// dropClientHeaders deletes every X-Client-* field of h, whatever its case
// or spelling with underscores.
func dropClientHeaders(h http.Header) {
	for k := range h {
		if strings.HasPrefix(strings.ReplaceAll(strings.ToLower(k), "_", "-"), "x-client-") {
			delete(h, k)
		}
	}
}

// recorder notes the status and size of a response for the log and the
// metrics. Unwrap lets http.ResponseController (which ReverseProxy uses to
// flush streamed responses) reach the real writer.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 && code >= 200 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *recorder) code() int {
	if r.status == 0 {
		return http.StatusOK
	}
	return r.status
}
