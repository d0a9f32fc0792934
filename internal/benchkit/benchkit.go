// Package benchkit holds what pkid's load generators (cmd/pkid-bench,
// bench/nodes) share: a scratch database to run against and the CSRs they
// send. It is for benchmarks only; nothing that serves imports it.
package benchkit

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net/url"

	"github.com/jackc/pgx/v5"
)

// ScratchDatabase creates an empty database named prefix plus random hex on
// the server of adminURL, and returns its URL and a function that drops it.
func ScratchDatabase(ctx context.Context, adminURL, prefix string) (string, func(), error) {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return "", nil, fmt.Errorf("connecting to %s: %w", adminURL, err)
	}
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	name := prefix + hex.EncodeToString(b)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		conn.Close(ctx)
		return "", nil, err
	}
	u, err := url.Parse(adminURL)
	if err != nil {
		conn.Close(ctx)
		return "", nil, err
	}
	u.Path = "/" + name
	return u.String(), func() {
		_, _ = conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
		conn.Close(context.Background())
	}, nil
}

// CSRs returns n PEM CSRs, each for a fresh P-256 key, with common names
// client-<i>.<domain>.
func CSRs(n int, domain string) ([]string, error) {
	out := make([]string, n)
	for i := range out {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
			Subject: pkix.Name{CommonName: fmt.Sprintf("client-%d.%s", i, domain)},
		}, k)
		if err != nil {
			return nil, err
		}
		out[i] = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
	}
	return out, nil
}
