package edge

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"
)

// fakeClock is the injected clock: it moves only when a test says so.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock(t time.Time) *fakeClock {
	c := &fakeClock{}
	c.ns.Store(t.UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// ca is a test certificate authority: a certificate and its key.
type ca struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func randomSerial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatal(err)
	}
	return n.Add(n, big.NewInt(1))
}

// sign makes a certificate from tmpl for pub, signed by parent (self-signed
// when parent is nil).
func sign(t testing.TB, tmpl *x509.Certificate, parent *ca, pub crypto.PublicKey, self crypto.Signer) *x509.Certificate {
	t.Helper()
	if tmpl.SerialNumber == nil {
		tmpl.SerialNumber = randomSerial(t)
	}
	parentCert, parentKey := tmpl, self
	if parent != nil {
		parentCert, parentKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parentCert, pub, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newRoot(t testing.TB, name string, now time.Time) *ca {
	k := newKey(t)
	c := sign(t, &x509.Certificate{
		Subject:               pkix.Name{CommonName: name, Organization: []string{"pkid test"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}, nil, &k.PublicKey, k)
	return &ca{c, k}
}

func (p *ca) intermediate(t testing.TB, name string, now time.Time) *ca {
	k := newKey(t)
	c := sign(t, &x509.Certificate{
		Subject:               pkix.Name{CommonName: name, Organization: []string{"pkid test"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(5, 0, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}, p, &k.PublicKey, nil)
	return &ca{c, k}
}

// responder makes a delegated OCSP responder certificate issued by p.
func (p *ca) responder(t testing.TB, now time.Time, eku []x509.ExtKeyUsage, notAfter time.Time) *ca {
	k := newKey(t)
	c := sign(t, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "OCSP responder"},
		NotBefore:   now.Add(-time.Hour),
		NotAfter:    notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: eku,
	}, p, &k.PublicKey, nil)
	return &ca{c, k}
}

// client is a client certificate with its chain, ready for tls.
type client struct {
	leaf *x509.Certificate
	tls  tls.Certificate
}

// leaf makes a client certificate for account as pkid does (clientAuth, the
// account URI SAN, CDP and AIA), issued by p; edit changes the template.
func (p *ca) leaf(t testing.TB, account string, now time.Time, crlURL string, edit ...func(*x509.Certificate)) *client {
	k := newKey(t)
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "payments-client", Organization: []string{"Acme, Inc."}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(0, 0, 30),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	if account != "" {
		u, err := url.Parse(AccountURIPrefix + account)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = []*url.URL{u}
	}
	if crlURL != "" {
		tmpl.CRLDistributionPoints = []string{crlURL}
	}
	for _, f := range edit {
		f(tmpl)
	}
	c := sign(t, tmpl, p, &k.PublicKey, nil)
	return &client{leaf: c, tls: tls.Certificate{Certificate: [][]byte{c.Raw, p.cert.Raw}, PrivateKey: k, Leaf: c}}
}

func writePEM(t testing.TB, path, typ string, ders ...[]byte) {
	t.Helper()
	var b strings.Builder
	for _, d := range ders {
		if err := pem.Encode(&b, &pem.Block{Type: typ, Bytes: d}); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

func writeKey(t testing.TB, path string, k crypto.Signer) {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, path, "PRIVATE KEY", der)
}

// fakeOCSP is an RFC 6960 responder for one issuer, signing with a
// delegated responder certificate, on the test's clock.
type fakeOCSP struct {
	srv       *httptest.Server
	issuer    *ca
	signer    *ca
	clock     func() time.Time
	requests  atomic.Int64
	mu        sync.Mutex
	revoked   map[string]time.Time
	unknown   map[string]bool
	down      bool                // answers 503
	status    ocsp.ResponseStatus // an unsuccessful OCSP status to answer with (ocsp.Unauthorized...), 0 for none
	maxAge    int                 // Cache-Control max-age in seconds; -1 for none
	validity  time.Duration       // nextUpdate - thisUpdate
	delay     time.Duration
	thisDelta time.Duration // added to thisUpdate
}

func newFakeOCSP(t testing.TB, issuer *ca, clock func() time.Time) *fakeOCSP {
	f := &fakeOCSP{
		issuer: issuer, clock: clock, revoked: map[string]time.Time{}, unknown: map[string]bool{},
		maxAge: -1, validity: 4 * time.Hour, thisDelta: -time.Minute,
	}
	f.signer = issuer.responder(t, clock(), []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning}, clock().AddDate(1, 0, 0))
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeOCSP) url() string { return f.srv.URL + "/ocsp" }

func (f *fakeOCSP) set(fn func(f *fakeOCSP)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeOCSP) serve(w http.ResponseWriter, r *http.Request) {
	f.requests.Add(1)
	f.mu.Lock()
	down, status, delay, maxAge, validity, thisDelta := f.down, f.status, f.delay, f.maxAge, f.validity, f.thisDelta
	f.mu.Unlock()
	time.Sleep(delay)
	if down {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/ocsp-response")
	if status != 0 {
		switch status {
		case ocsp.Unauthorized:
			_, _ = w.Write(ocsp.UnauthorizedErrorResponse)
		default:
			_, _ = w.Write(ocsp.TryLaterErrorResponse)
		}
		return
	}
	body, _ := io.ReadAll(r.Body)
	req, err := ocsp.ParseRequest(body)
	if err != nil {
		_, _ = w.Write(ocsp.MalformedRequestErrorResponse)
		return
	}
	now := f.clock()
	tmpl := ocsp.Response{
		Status:       ocsp.Good,
		SerialNumber: req.SerialNumber,
		ThisUpdate:   now.Add(thisDelta),
		NextUpdate:   now.Add(thisDelta + validity),
		Certificate:  f.signer.cert,
		IssuerHash:   req.HashAlgorithm,
	}
	f.mu.Lock()
	if at, ok := f.revoked[req.SerialNumber.Text(16)]; ok {
		tmpl.Status, tmpl.RevokedAt, tmpl.RevocationReason = ocsp.Revoked, at, ocsp.KeyCompromise
	} else if f.unknown[req.SerialNumber.Text(16)] {
		tmpl.Status = ocsp.Unknown
	}
	f.mu.Unlock()
	der, err := ocsp.CreateResponse(f.issuer.cert, f.signer.cert, tmpl, f.signer.key)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if maxAge >= 0 {
		w.Header().Set("Cache-Control", fmt.Sprintf("max-age=%d, public, no-transform, must-revalidate", maxAge))
	}
	_, _ = w.Write(der)
}

// fakeCRL publishes the issuer's CRL with an ETag and answers conditional
// GETs with 304.
type fakeCRL struct {
	srv         *httptest.Server
	issuer      *ca
	clock       func() time.Time
	full        atomic.Int64 // 200 answers
	notModified atomic.Int64 // 304 answers
	mu          sync.Mutex
	revoked     map[string]time.Time
	number      int64
	der         []byte
	etag        string
	down        bool
	validity    time.Duration
}

func newFakeCRL(t testing.TB, issuer *ca, clock func() time.Time) *fakeCRL {
	f := &fakeCRL{issuer: issuer, clock: clock, revoked: map[string]time.Time{}, validity: 24 * time.Hour}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	f.publish(t)
	return f
}

func (f *fakeCRL) url() string { return f.srv.URL + "/crl" }

// publish signs a new CRL (the next number) of the revocations so far.
func (f *fakeCRL) publish(t testing.TB, extra ...pkix.Extension) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.number++
	f.der = f.sign(t, f.number, extra...)
	f.etag = fmt.Sprintf(`"crl-%d"`, f.number)
}

// sign makes a CRL with number n without publishing it.
func (f *fakeCRL) sign(t testing.TB, n int64, extra ...pkix.Extension) []byte {
	t.Helper()
	now := f.clock()
	var entries []x509.RevocationListEntry
	for s, at := range f.revoked {
		serial, _ := new(big.Int).SetString(s, 16)
		entries = append(entries, x509.RevocationListEntry{SerialNumber: serial, RevocationTime: at, ReasonCode: 1})
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:                    big.NewInt(n),
		ThisUpdate:                now.Add(-time.Minute),
		NextUpdate:                now.Add(f.validity),
		RevokedCertificateEntries: entries,
		ExtraExtensions:           extra,
	}, f.issuer.cert, f.issuer.key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func (f *fakeCRL) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	der, etag, down := f.der, f.etag, f.down
	f.mu.Unlock()
	if down {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("ETag", etag)
	if r.Header.Get("If-None-Match") == etag {
		f.notModified.Add(1)
		w.WriteHeader(http.StatusNotModified)
		return
	}
	f.full.Add(1)
	w.Header().Set("Content-Type", "application/pkix-crl")
	_, _ = w.Write(der)
}

// upstream records the headers of the requests it gets.
type upstream struct {
	srv  *httptest.Server
	mu   sync.Mutex
	seen []http.Header
}

func newUpstream(t testing.TB) *upstream {
	u := &upstream{}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		h := r.Header.Clone()
		h.Set("X-Test-Trailer-Keys", fmt.Sprint(len(r.Trailer)))
		u.seen = append(u.seen, h)
		u.mu.Unlock()
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, "hello "+r.Header.Get(HeaderAccount))
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upstream) requests() []http.Header {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]http.Header(nil), u.seen...)
}

// harness is an edge on loopback with its CA, responder, CRL and upstream.
type harness struct {
	t        testing.TB
	clock    *fakeClock
	root     *ca
	inter    *ca
	server   *ca // the edge's server certificate (issued by root)
	ocsp     *fakeOCSP
	crl      *fakeCRL
	upstream *upstream
	edge     *Edge
	addr     string
	dir      string
	cancel   context.CancelFunc
	done     chan error
}

// newHarness starts an edge whose --ca holds the root only (the client
// sends the intermediate). edit adjusts the configuration before New.
func newHarness(t testing.TB, edit ...func(*Config)) *harness {
	t.Helper()
	h := &harness{t: t, clock: newFakeClock(time.Now().Truncate(time.Second)), dir: t.TempDir()}
	now := h.clock.Now()
	h.root = newRoot(t, "Test Root", now)
	h.inter = h.root.intermediate(t, "Test Intermediate", now)
	h.ocsp = newFakeOCSP(t, h.inter, h.clock.Now)
	h.crl = newFakeCRL(t, h.inter, h.clock.Now)
	h.upstream = newUpstream(t)
	sk := newKey(t)
	h.server = &ca{sign(t, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "edge"},
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:   now.Add(-time.Hour),
		NotAfter:    now.AddDate(1, 0, 0),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, h.root, &sk.PublicKey, nil), sk}
	writePEM(t, h.path("ca.pem"), "CERTIFICATE", h.root.cert.Raw)
	writePEM(t, h.path("server.pem"), "CERTIFICATE", h.server.cert.Raw)
	writeKey(t, h.path("server.key"), sk)

	up, _ := url.Parse(h.upstream.srv.URL)
	cfg := Config{
		Upstream: up,
		CAFile:   h.path("ca.pem"), CertFile: h.path("server.pem"), KeyFile: h.path("server.key"),
		OCSPURL: h.ocsp.url(), CRLURL: h.crl.url(),
		Now:        h.clock.Now,
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		CRLRefresh: time.Hour, // tests refresh by hand
	}
	if testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	for _, f := range edit {
		f(&cfg)
	}
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.edge = e
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan error, 1)
	go func() { h.done <- e.Run(ctx, ln) }()
	t.Cleanup(h.stop)
	if !cfg.RevocationOff {
		// Run fetches the CRL before it serves; wait for that, so that tests
		// that replace the CRL do not race with it.
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
			e.crl.mu.RLock()
			held := e.crl.cur != nil || e.crl.pending != nil
			e.crl.mu.RUnlock()
			if held {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the edge did not fetch the CRL at start-up")
			}
		}
	}
	return h
}

func (h *harness) path(name string) string { return filepath.Join(h.dir, name) }

func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	if err := <-h.done; err != nil {
		h.t.Errorf("Run: %v", err)
	}
}

// leaf makes a client certificate of the harness's intermediate.
func (h *harness) leaf(account string, edit ...func(*x509.Certificate)) *client {
	return h.inter.leaf(h.t, account, h.clock.Now(), h.crl.url(), edit...)
}

// transport is an HTTP client transport that presents c (none when nil)
// whatever CAs the edge asks for, and trusts the edge's root.
func (h *harness) transport(c *client, keepAlive, h2 bool) *http.Transport {
	roots := x509.NewCertPool()
	roots.AddCert(h.root.cert)
	return &http.Transport{
		TLSClientConfig: &tls.Config{
			RootCAs:    roots,
			ServerName: "localhost",
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				if c == nil {
					return &tls.Certificate{}, nil
				}
				return &c.tls, nil
			},
		},
		DisableKeepAlives: !keepAlive,
		ForceAttemptHTTP2: h2,
	}
}

// get makes one request on a new connection.
func (h *harness) get(c *client, header http.Header) (*http.Response, []byte, error) {
	return h.do(&http.Client{Transport: h.transport(c, false, false), Timeout: 10 * time.Second}, header)
}

func (h *harness) do(hc *http.Client, header http.Header) (*http.Response, []byte, error) {
	req, err := http.NewRequest(http.MethodGet, "https://"+h.addr+"/resource?x=1", nil)
	if err != nil {
		return nil, nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

// mustGet asserts that a request with c is accepted.
func (h *harness) mustGet(t testing.TB, c *client) {
	t.Helper()
	resp, body, err := h.get(c, nil)
	if err != nil {
		t.Fatalf("request refused: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
}

// mustRefuse asserts that a request with c is refused at the handshake and
// never reaches the upstream.
func (h *harness) mustRefuse(t testing.TB, c *client) {
	t.Helper()
	before := len(h.upstream.requests())
	resp, body, err := h.get(c, nil)
	if err == nil {
		t.Fatalf("request accepted with status %d: %s", resp.StatusCode, body)
	}
	if !strings.Contains(err.Error(), "bad certificate") {
		t.Fatalf("refused, but not at the handshake: %v", err)
	}
	if after := len(h.upstream.requests()); after != before {
		t.Fatalf("the upstream got %d requests from a refused client", after-before)
	}
}
