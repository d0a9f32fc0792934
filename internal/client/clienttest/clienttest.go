// Package clienttest is a fake pkid for the tests of package client and of
// pkictl: a throwaway CA (root, issuing intermediate, delegated OCSP
// responder) behind the account API routes, served over plain HTTP and over
// a TLS listener that asks for client certificates, with an OCSP responder.
// It answers like CONTRACT.md says pkid does — certificate objects, problem
// documents, renewal by token or by the certificate itself — without a
// database; the real pkid is exercised by test/e2e.
package clienttest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/pkid/pkid/internal/client"
	"github.com/pkid/pkid/internal/pki"
)

// CA is a throwaway two-level CA with a delegated OCSP responder.
type CA struct {
	Root, Intermediate, Responder          *x509.Certificate
	RootKey, IntermediateKey, ResponderKey crypto.Signer
}

// NewCA makes a CA whose names start with name.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	ca := &CA{}
	now := time.Now()
	ca.RootKey = newKey(t)
	ca.Root = sign(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: name + " Root"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(10 * 365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}, nil, ca.RootKey.Public(), ca.RootKey)
	ca.IntermediateKey = newKey(t)
	ca.Intermediate = sign(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: name + " Issuing CA"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(5 * 365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}, ca.Root, ca.IntermediateKey.Public(), ca.RootKey)
	ca.ResponderKey = newKey(t)
	ca.Responder = sign(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: name + " OCSP"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(30 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning},
	}, ca.Intermediate, ca.ResponderKey.Public(), ca.IntermediateKey)
	return ca
}

// ChainPEM returns the intermediate then the root, as pkid's chain field.
func (ca *CA) ChainPEM() string { return PEM(ca.Intermediate) + PEM(ca.Root) }

// Leaf issues a client certificate for pub, valid from notBefore for life.
func (ca *CA) Leaf(t testing.TB, cn string, dns []string, pub crypto.PublicKey, notBefore time.Time, life time.Duration, ocspURL string) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		Subject: pkix.Name{CommonName: cn}, DNSNames: dns, NotBefore: notBefore, NotAfter: notBefore.Add(life),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if ocspURL != "" {
		tmpl.OCSPServer = []string{ocspURL}
	}
	return sign(t, tmpl, ca.Intermediate, pub, ca.IntermediateKey)
}

// PEM encodes c.
func PEM(c *x509.Certificate) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
}

func newKey(t testing.TB) crypto.Signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

var serialPrefix = big.NewInt(0x70)

func sign(t testing.TB, tmpl, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer) *x509.Certificate {
	t.Helper()
	r := make([]byte, 16)
	rand.Read(r)
	tmpl.SerialNumber = new(big.Int).Or(new(big.Int).Lsh(serialPrefix, 128), new(big.Int).SetBytes(r))
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// record is one certificate the fake issued.
type record struct {
	cert        *x509.Certificate
	revokedAt   *time.Time
	reason      string
	renewedFrom string
	renewed     bool
}

// Server is the fake pkid.
type Server struct {
	CA        *CA
	URL       string // plain HTTP: every route
	TLSURL    string // the TLS listener: every route, client certificate optional
	Token     string // the account token the API accepts
	AccountID string

	// Validity is the lifetime of issued certificates (default 90 days).
	Validity time.Duration
	// Tamper, when set, may change a certificate object before it is sent,
	// to play a pkid (or a network) that cannot be trusted.
	Tamper func(*client.Certificate)
	// OCSP, when set, answers OCSP requests instead of the responder.
	OCSP func(req *ocsp.Request) []byte
	// Intercept, when set, sees every request first; returning true means
	// it answered (to play an outage, say).
	Intercept func(w http.ResponseWriter, r *http.Request) bool

	t     testing.TB
	mu    sync.Mutex
	certs map[string]*record
	calls map[string]int
}

// New starts a fake pkid; t's cleanup stops it.
func New(t testing.TB) *Server {
	t.Helper()
	s := &Server{
		CA: NewCA(t, "Fake pkid"), Token: "account-token", AccountID: "acct-1",
		Validity: 90 * 24 * time.Hour, t: t, certs: map[string]*record{}, calls: map[string]int{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ca/root.pem", func(w http.ResponseWriter, r *http.Request) {
		s.count("root")
		w.Header().Set("Content-Type", "application/x-pem-file")
		_, _ = w.Write([]byte(PEM(s.CA.Root)))
	})
	mux.HandleFunc("POST /api/v1/certificates", s.issue)
	mux.HandleFunc("POST /api/v1/certificates/{serial}/renew", s.renew)
	mux.HandleFunc("POST /api/v1/certificates/{serial}/revoke", s.revoke)
	mux.HandleFunc("POST /ocsp", s.ocsp)

	var handler http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f := s.intercept(); f != nil && f(w, r) {
			return
		}
		mux.ServeHTTP(w, r)
	})
	plain := httptest.NewServer(handler)
	t.Cleanup(plain.Close)
	s.URL = plain.URL

	secure := httptest.NewUnstartedServer(handler)
	srvKey := newKey(t)
	srvCert := sign(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: "fake pkid TLS"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
	}, s.CA.Intermediate, srvKey.Public(), s.CA.IntermediateKey)
	clientCAs := x509.NewCertPool()
	clientCAs.AddCert(s.CA.Root)
	secure.TLS = &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{{Certificate: [][]byte{srvCert.Raw, s.CA.Intermediate.Raw}, PrivateKey: srvKey, Leaf: srvCert}},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    clientCAs,
	}
	// Handshakes that tests make fail on purpose are not news.
	secure.Config.ErrorLog = log.New(io.Discard, "", 0)
	secure.StartTLS()
	t.Cleanup(secure.Close)
	s.TLSURL = secure.URL
	return s
}

func (s *Server) intercept() func(http.ResponseWriter, *http.Request) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.Intercept
}

// SetIntercept sets Intercept while the server runs.
func (s *Server) SetIntercept(f func(w http.ResponseWriter, r *http.Request) bool) {
	s.mu.Lock()
	s.Intercept = f
	s.mu.Unlock()
}

// Calls returns how many times a route was called: "root", "issue",
// "renew", "revoke", "ocsp".
func (s *Server) Calls(route string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[route]
}

func (s *Server) count(route string) {
	s.mu.Lock()
	s.calls[route]++
	s.mu.Unlock()
}

// Revoked returns whether serial is revoked, and why.
func (s *Server) Revoked(serial string) (bool, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.certs[serial]
	if r == nil || r.revokedAt == nil {
		return false, ""
	}
	return true, r.reason
}

// problem writes an RFC 9457 problem document like pkid's.
func problem(w http.ResponseWriter, status int, kind, title, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"type": client.ProblemTypePrefix + kind, "title": title, "status": status, "detail": detail,
	})
}

func (s *Server) tokenOK(r *http.Request) bool {
	return r.Header.Get("Authorization") == "Bearer "+s.Token
}

func (s *Server) issue(w http.ResponseWriter, r *http.Request) {
	s.count("issue")
	if !s.tokenOK(r) {
		problem(w, 401, "unauthenticated", "Authentication required", "the bearer token is missing, malformed, expired or revoked")
		return
	}
	var req struct {
		CSR          string `json:"csr"`
		ValidityDays int    `json:"validity_days"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		problem(w, 400, "malformed", "Malformed request", "not JSON")
		return
	}
	csr, ok := parseCSR(w, req.CSR)
	if !ok {
		return
	}
	if csr.Subject.CommonName == "forbidden.example" {
		problem(w, 403, "rejectedIdentifier", "Name not allowed", "the account's policy does not allow forbidden.example")
		return
	}
	s.respond(w, http.StatusCreated, s.newCert(csr.Subject.CommonName, csr.DNSNames, csr.PublicKey, req.ValidityDays, ""))
}

func parseCSR(w http.ResponseWriter, p string) (*x509.CertificateRequest, bool) {
	block, _ := pem.Decode([]byte(p))
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		problem(w, 400, "badCSR", "Bad certificate signing request", "not a PEM CSR")
		return nil, false
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil || csr.CheckSignature() != nil {
		problem(w, 400, "badCSR", "Bad certificate signing request", "the CSR does not parse or its signature is invalid")
		return nil, false
	}
	return csr, true
}

func (s *Server) newCert(cn string, dns []string, pub crypto.PublicKey, days int, from string) *record {
	life := s.Validity
	if days > 0 {
		life = time.Duration(days) * 24 * time.Hour
	}
	c := s.CA.Leaf(s.t, cn, dns, pub, time.Now().Add(-5*time.Minute), life, s.URL+"/ocsp")
	rec := &record{cert: c, renewedFrom: from}
	s.mu.Lock()
	s.certs[c.SerialNumber.Text(16)] = rec
	s.mu.Unlock()
	return rec
}

func (s *Server) respond(w http.ResponseWriter, status int, rec *record) {
	s.mu.Lock()
	obj := &client.Certificate{
		Serial: rec.cert.SerialNumber.Text(16), Status: "active",
		Certificate: PEM(rec.cert), Chain: s.CA.ChainPEM(),
		NotBefore: rec.cert.NotBefore, NotAfter: rec.cert.NotAfter,
		FingerprintSHA256: client.Fingerprint(rec.cert), AccountID: s.AccountID,
		CommonName: rec.cert.Subject.CommonName, RenewedFrom: rec.renewedFrom,
		RevokedAt: rec.revokedAt, RevocationReason: rec.reason,
	}
	if rec.revokedAt != nil {
		obj.Status = "revoked"
	}
	s.mu.Unlock()
	if s.Tamper != nil {
		s.Tamper(obj)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(obj)
}

func (s *Server) renew(w http.ResponseWriter, r *http.Request) {
	s.count("renew")
	serial := strings.ToLower(r.PathValue("serial"))
	s.mu.Lock()
	old := s.certs[serial]
	s.mu.Unlock()
	switch {
	case s.tokenOK(r):
	case r.Header.Get("Authorization") != "":
		problem(w, 401, "unauthenticated", "Authentication required", "the bearer token is missing, malformed, expired or revoked")
		return
	case r.TLS == nil || len(r.TLS.VerifiedChains) == 0:
		problem(w, 401, "unauthenticated", "Authentication required", "renew with a token, or over the TLS listener with the certificate itself")
		return
	case old == nil || !r.TLS.PeerCertificates[0].Equal(old.cert):
		problem(w, 403, "forbidden", "Client certificate does not match", "the client certificate is not the certificate named in the path")
		return
	}
	if old == nil {
		problem(w, 404, "notFound", "Not found", "no such resource")
		return
	}
	var req struct {
		CSR            string `json:"csr"`
		ValidityDays   int    `json:"validity_days"`
		RevokePrevious bool   `json:"revoke_previous"`
	}
	if r.ContentLength != 0 {
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			problem(w, 400, "malformed", "Malformed request", err.Error())
			return
		}
	}
	s.mu.Lock()
	revoked, renewed := old.revokedAt != nil, old.renewed
	old.renewed = true
	s.mu.Unlock()
	switch {
	case revoked:
		problem(w, 409, "certificateRevoked", "Certificate revoked", "certificate "+serial+" is revoked")
		return
	case renewed:
		problem(w, 409, "alreadyReplaced", "Certificate already renewed", "certificate "+serial+" was renewed already")
		return
	}
	pub := old.cert.PublicKey
	if req.CSR != "" {
		csr, ok := parseCSR(w, req.CSR)
		if !ok {
			return
		}
		pub = csr.PublicKey
	}
	rec := s.newCert(old.cert.Subject.CommonName, old.cert.DNSNames, pub, req.ValidityDays, serial)
	if req.RevokePrevious {
		s.markRevoked(serial, "superseded")
	}
	s.respond(w, http.StatusCreated, rec)
}

func (s *Server) markRevoked(serial, reason string) *record {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := s.certs[serial]
	if rec != nil && rec.revokedAt == nil {
		now := time.Now().UTC().Truncate(time.Second)
		rec.revokedAt, rec.reason = &now, reason
	}
	return rec
}

func (s *Server) revoke(w http.ResponseWriter, r *http.Request) {
	s.count("revoke")
	if !s.tokenOK(r) {
		problem(w, 401, "unauthenticated", "Authentication required", "the bearer token is missing, malformed, expired or revoked")
		return
	}
	var req struct {
		Reason string `json:"reason"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		problem(w, 400, "malformed", "Malformed request", "not JSON")
		return
	}
	rec := s.markRevoked(strings.ToLower(r.PathValue("serial")), req.Reason)
	if rec == nil {
		problem(w, 404, "notFound", "Not found", "no such resource")
		return
	}
	s.respond(w, http.StatusOK, rec)
}

func (s *Server) ocsp(w http.ResponseWriter, r *http.Request) {
	s.count("ocsp")
	der, _ := io.ReadAll(io.LimitReader(r.Body, 4096))
	req, err := ocsp.ParseRequest(der)
	if err != nil {
		w.Header().Set("Content-Type", "application/ocsp-response")
		_, _ = w.Write(ocsp.MalformedRequestErrorResponse)
		return
	}
	w.Header().Set("Content-Type", "application/ocsp-response")
	if s.OCSP != nil {
		_, _ = w.Write(s.OCSP(req))
		return
	}
	s.mu.Lock()
	rec := s.certs[req.SerialNumber.Text(16)]
	tmpl := ocsp.Response{Status: ocsp.Unknown, SerialNumber: req.SerialNumber,
		ThisUpdate: time.Now().Add(-time.Minute), NextUpdate: time.Now().Add(time.Hour), Certificate: s.CA.Responder}
	if rec != nil {
		tmpl.Status = ocsp.Good
		if rec.revokedAt != nil {
			tmpl.Status, tmpl.RevokedAt = ocsp.Revoked, *rec.revokedAt
			if code, err := pki.ParseRevocationReason(rec.reason, true); err == nil {
				tmpl.RevocationReason = int(code)
			}
		}
	}
	s.mu.Unlock()
	resp, err := ocsp.CreateResponse(s.CA.Intermediate, s.CA.Responder, tmpl, s.CA.ResponderKey)
	if err != nil {
		s.t.Errorf("clienttest: signing OCSP: %v", err)
	}
	_, _ = w.Write(resp)
}

// RootFingerprint returns the root's SHA-256 fingerprint in hex.
func (s *Server) RootFingerprint() string { return client.Fingerprint(s.CA.Root) }
