package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"sync/atomic"
	"time"
)

// TLSListener is the state of the optional HTTPS listener: the server
// certificate it presents, issued by pkid's own intermediate for
// PKID_TLS_HOSTNAMES and replaced before it expires without a restart.
type TLSListener struct {
	app  *App
	cert atomic.Pointer[tls.Certificate]
}

// NewTLSListener issues the listener's first certificate.
func (a *App) NewTLSListener(ctx context.Context) (*TLSListener, error) {
	l := &TLSListener{app: a}
	if err := l.renew(ctx); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *TLSListener) renew(ctx context.Context) error {
	c, err := l.app.Certs.IssueServerCertificate(ctx, l.app.Config.TLSHostnames)
	if err != nil {
		return err
	}
	l.cert.Store(c)
	return nil
}

// Config returns the listener's TLS configuration: TLS 1.2 or later, the
// current server certificate, and a client certificate asked for but not
// required. A client certificate that is given must chain to pkid's root; it
// is then used for one thing only, renewing that very certificate.
func (l *TLSListener) Config() *tls.Config {
	roots := x509.NewCertPool()
	roots.AddCert(l.app.Hierarchy.Root())
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return l.cert.Load(), nil
		},
		ClientAuth: tls.VerifyClientCertIfGiven,
		ClientCAs:  roots,
	}
}

// Run replaces the certificate once a third of its lifetime is left,
// checking every ten minutes, until ctx ends. A failure is logged and
// retried; the current certificate stays in use meanwhile.
func (l *TLSListener) Run(ctx context.Context) {
	t := time.NewTicker(10 * time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		leaf := l.cert.Load().Leaf
		life := leaf.NotAfter.Sub(leaf.NotBefore)
		if time.Until(leaf.NotAfter) > life/3 {
			continue
		}
		if err := l.renew(ctx); err != nil && !errors.Is(err, context.Canceled) {
			l.app.Log.Error("renewing the TLS listener's certificate failed; will retry", "error", err)
			continue
		}
		l.app.Log.Info("renewed the TLS listener's certificate", "not_after", l.cert.Load().Leaf.NotAfter)
	}
}
