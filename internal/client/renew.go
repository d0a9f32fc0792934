package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// ErrExpired: the certificate has expired, so it cannot renew itself (pkid
// refuses with 409 anyway, and pkid's TLS listener would refuse the
// handshake first). Enrolling again with an account token is the way back.
var ErrExpired = errors.New("client: the certificate has expired and cannot be renewed; enroll again with an account token")

// DueAt returns when c should be renewed: once two thirds of its lifetime
// have passed, which leaves a third of it (a month of a 90-day certificate)
// to notice and fix a renewal that keeps failing.
func DueAt(c *x509.Certificate) time.Time {
	life := c.NotAfter.Sub(c.NotBefore)
	return c.NotBefore.Add(life / 3 * 2)
}

// RenewOptions says how to renew.
type RenewOptions struct {
	// Force renews whether or not the certificate is due.
	Force bool
	// Rekey makes a new key and sends a CSR for it (with the certificate's
	// own names), instead of having the same key certified again.
	Rekey bool
	// KeyType is the type of the new key on Rekey; "" keeps the current type.
	KeyType KeyType
	// ValidityDays asks for a validity; 0 is the policy's default.
	ValidityDays int
	// RevokePrevious has pkid revoke the certificate being renewed
	// (reason superseded) once the new one is issued.
	RevokePrevious bool
	// Token authenticates the renewal by account token. Empty uses the
	// certificate itself as the credential, which needs pkid's TLS listener.
	Token string
	// URL is pkid's base URL for this renewal. Empty is the directory's
	// tls_server, or with a token its server when it has no tls_server. A
	// URL that renews the certificate without a token is remembered as the
	// directory's tls_server.
	URL string
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// RenewResult is the outcome of Renew.
type RenewResult struct {
	// Renewed says a new certificate was installed; false means it was not
	// due yet (and Force was not set).
	Renewed bool
	// DueAt is when the certificate that was current on entry is due.
	DueAt time.Time
	// Previous is the certificate that was current on entry.
	Previous *x509.Certificate
	// Bundle is the directory as it now is.
	Bundle *Bundle
}

// Renew renews the certificate in dir when it is due (or opts.Force), and
// replaces the files atomically: a reader of dir sees the old certificate or
// the new one, never a mix. The new certificate must chain to root.pem and be
// for the right key before anything is written.
//
// A rekey writes key.pem.next before sending the CSR and cert.pem.next once
// the certificate is back, then renames both; Load finishes or undoes the
// renames after a crash (finishRekey).
func Renew(ctx context.Context, dir string, opts RenewOptions) (*RenewResult, error) {
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := finishRekey(dir); err != nil {
		return nil, err
	}
	b, err := load(dir)
	if err != nil {
		return nil, err
	}
	res := &RenewResult{DueAt: DueAt(b.Leaf), Previous: b.Leaf, Bundle: b}
	t := now()
	if !opts.Force && t.Before(res.DueAt) {
		return res, nil
	}
	if !t.Before(b.Leaf.NotAfter) {
		return nil, fmt.Errorf("%w (it expired at %s)", ErrExpired, b.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	c, closeIdle, err := renewClient(b, opts)
	if err != nil {
		return nil, err
	}
	defer closeIdle()

	req := RenewRequest{ValidityDays: opts.ValidityDays, RevokePrevious: opts.RevokePrevious}
	next := &Bundle{Dir: dir, Key: b.Key, Root: b.Root, State: b.State}
	if opts.Rekey {
		kt := opts.KeyType
		if kt == "" {
			kt = TypeOf(b.Key.Public())
		}
		if next.Key, err = GenerateKey(kt); err != nil {
			return nil, err
		}
		if req.CSR, err = NewCSR(next.Key, b.Leaf.Subject.CommonName, b.Leaf.DNSNames); err != nil {
			return nil, err
		}
		keyPEM, err := MarshalKeyPEM(next.Key)
		if err != nil {
			return nil, err
		}
		if err := writeFileAtomic(dir, KeyFile+nextSuffix, keyPEM, 0o600); err != nil {
			return nil, err
		}
		// Until cert.pem.next exists, the new key certifies nothing.
		defer func() { _ = finishRekey(dir) }()
	}

	issued, err := c.Renew(ctx, b.Serial(), req)
	if err != nil {
		return nil, err
	}
	if err := acceptIssued(next, issued, now()); err != nil {
		return nil, fmt.Errorf("%w; pkid issued serial %s, which you may want to revoke", err, clean(issued.Serial))
	}
	if issued.RenewedFrom != b.Serial() || next.Serial() == b.Serial() {
		return nil, fmt.Errorf("%w: pkid answered with serial %s renewed from %q, not a renewal of %s",
			ErrUntrusted, clean(issued.Serial), clean(issued.RenewedFrom), b.Serial())
	}
	next.State.Serial = next.Serial()
	if opts.URL != "" && opts.Token == "" {
		// The listener just renewed this certificate: remember it.
		next.State.TLSServer = c.base.String()
	}
	if issued.AccountID != "" {
		next.State.AccountID = issued.AccountID
	}
	if opts.Rekey {
		err = installRekey(next)
	} else {
		err = writeIssued(next, false)
	}
	if err != nil {
		return nil, err
	}
	res.Renewed, res.Bundle = true, next
	return res, nil
}

// installRekey puts a rekeyed certificate in place: chain.pem, then
// cert.pem.next beside key.pem.next (from then on the rekey is complete as
// far as a crash is concerned), then both renamed into place.
func installRekey(b *Bundle) error {
	if err := writeFileAtomic(b.Dir, ChainFile, encodeCertificatesPEM(b.Chain...), 0o644); err != nil {
		return err
	}
	if err := writeFileAtomic(b.Dir, CertFile+nextSuffix, encodeCertificatesPEM(b.Leaf), 0o644); err != nil {
		return err
	}
	if err := finishRekey(b.Dir); err != nil {
		return err
	}
	if _, err := os.Lstat(filepath.Join(b.Dir, CertFile+nextSuffix)); err == nil {
		return fmt.Errorf("client: %s was not put in place", CertFile+nextSuffix)
	}
	return writeState(b.Dir, b.State)
}

// renewClient returns the API client for a renewal of b and a function that
// closes its idle connections (they hold the certificate being replaced).
func renewClient(b *Bundle, opts RenewOptions) (*Client, func(), error) {
	base := opts.URL
	if base == "" {
		base = b.State.TLSServer
		if base == "" && opts.Token != "" {
			base = b.State.Server
		}
	}
	if base == "" {
		return nil, nil, errors.New("client: no URL for pkid's TLS listener: pass it (--tls-server) or enroll with it so that it is remembered")
	}
	u, err := ParseServerURL(base)
	if err != nil {
		return nil, nil, err
	}
	var hc *http.Client
	if opts.Token != "" {
		hc = HTTPClient(SystemRootsWith(b.Root), nil)
	} else {
		if u.Scheme != "https" {
			return nil, nil, fmt.Errorf("client: renewal with the certificate itself needs pkid's TLS listener, an https:// URL, not %s", u.Redacted())
		}
		cert := b.TLSCertificate()
		hc = HTTPClient(b.Roots(), &cert)
	}
	c, err := New(u.String(), hc, opts.Token)
	if err != nil {
		return nil, nil, err
	}
	return c, hc.CloseIdleConnections, nil
}

// HTTPClient returns an HTTP client that trusts roots alone for servers'
// certificates (TLS 1.2 or later) and, when cert is not nil, presents it
// whenever a server asks for a client certificate.
func HTTPClient(roots *x509.CertPool, cert *tls.Certificate) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots}
	if cert != nil {
		// Presented whatever CAs the server names as acceptable: pkid's
		// listener decides, and an empty answer would only hide why.
		tr.TLSClientConfig.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	return &http.Client{Transport: tr, Timeout: DefaultTimeout}
}

// SystemRootsWith returns the system's trusted roots plus root: for pkid's
// plain API URL, which may sit behind a proxy with a public certificate or be
// pkid's own TLS listener.
func SystemRootsWith(root *x509.Certificate) *x509.CertPool {
	p, err := x509.SystemCertPool()
	if err != nil || p == nil {
		p = x509.NewCertPool()
	}
	if root != nil {
		p.AddCert(root)
	}
	return p
}
