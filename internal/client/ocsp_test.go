package client_test

import (
	"context"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/pkid/pkid/internal/client"
	"github.com/pkid/pkid/internal/client/clienttest"
)

// TestVerifyOCSPResponse signs responses that are right, and responses
// that x/crypto/ocsp accepts but a careful client must not.
func TestVerifyOCSPResponse(t *testing.T) {
	t.Parallel()
	ca := clienttest.NewCA(t, "Test")
	other := clienttest.NewCA(t, "Other")
	now := time.Now()
	key, _ := client.GenerateKey(client.KeyEC)
	leaf := ca.Leaf(t, "svc.test", nil, key.Public(), now.Add(-time.Hour), 24*time.Hour, "http://ocsp.test")

	// A responder certificate like ca.Responder but with other properties.
	responder := func(mod func(*x509.Certificate)) *x509.Certificate {
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(99), Subject: pkix.Name{CommonName: "Odd OCSP"},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning},
		}
		mod(tmpl)
		der, err := x509.CreateCertificate(nil, tmpl, ca.Intermediate, ca.ResponderKey.Public(), ca.IntermediateKey)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := x509.ParseCertificate(der)
		return c
	}
	good := ocsp.Response{Status: ocsp.Good, SerialNumber: leaf.SerialNumber, ThisUpdate: now.Add(-time.Minute), NextUpdate: now.Add(time.Hour)}
	with := func(mod func(*ocsp.Response)) ocsp.Response { r := good; mod(&r); return r }

	tests := []struct {
		name      string
		issuer    *x509.Certificate // whose hashes go in the CertID
		responder *x509.Certificate // embedded (nil: signed by the issuing CA itself)
		key       crypto.Signer
		tmpl      ocsp.Response
		want      string // status, or the error's text
	}{
		{"good, delegated responder", ca.Intermediate, ca.Responder, ca.ResponderKey, good, "good"},
		{"good, signed by the CA itself", ca.Intermediate, nil, ca.IntermediateKey, good, "good"},
		{"revoked with a reason", ca.Intermediate, ca.Responder, ca.ResponderKey, with(func(r *ocsp.Response) {
			r.Status, r.RevokedAt, r.RevocationReason = ocsp.Revoked, now.Add(-time.Minute).Truncate(time.Second), ocsp.KeyCompromise
		}), "revoked"},
		{"unknown", ca.Intermediate, ca.Responder, ca.ResponderKey, with(func(r *ocsp.Response) { r.Status = ocsp.Unknown }), "unknown"},
		{"CertID names another issuer", other.Intermediate, ca.Responder, ca.ResponderKey, good, "another issuer"},
		{"responder without OCSPSigning", ca.Intermediate, responder(func(c *x509.Certificate) {
			c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		}), ca.ResponderKey, good, "not authorised for OCSP signing"},
		{"expired responder", ca.Intermediate, responder(func(c *x509.Certificate) {
			c.NotBefore, c.NotAfter = now.Add(-48*time.Hour), now.Add(-24*time.Hour)
		}), ca.ResponderKey, good, "not valid now"},
		{"responder from another CA", ca.Intermediate, other.Responder, other.ResponderKey, good, "bad OCSP signature"},
		{"signed by a key that is not the responder's", ca.Intermediate, ca.Responder, other.ResponderKey, good, "signature"},
		{"stale", ca.Intermediate, ca.Responder, ca.ResponderKey, with(func(r *ocsp.Response) {
			r.ThisUpdate, r.NextUpdate = now.Add(-3*time.Hour), now.Add(-time.Hour)
		}), "stale"},
		{"from the future", ca.Intermediate, ca.Responder, ca.ResponderKey, with(func(r *ocsp.Response) {
			r.ThisUpdate, r.NextUpdate = now.Add(time.Hour), now.Add(2*time.Hour)
		}), "in the future"},
		{"no nextUpdate", ca.Intermediate, ca.Responder, ca.ResponderKey, with(func(r *ocsp.Response) { r.NextUpdate = time.Time{} }), "no nextUpdate"},
		{"another serial", ca.Intermediate, ca.Responder, ca.ResponderKey, with(func(r *ocsp.Response) { r.SerialNumber = big.NewInt(7) }), "no response matching"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			signer := tc.responder
			if signer == nil {
				signer = ca.Intermediate
			}
			tmpl := tc.tmpl
			tmpl.Certificate = tc.responder
			der, err := ocsp.CreateResponse(tc.issuer, signer, tmpl, tc.key)
			if err != nil {
				t.Fatal(err)
			}
			st, err := client.VerifyOCSPResponse(der, leaf, ca.Intermediate, now)
			switch tc.want {
			case "good", "revoked", "unknown":
				if err != nil || st.Status != tc.want {
					t.Fatalf("VerifyOCSPResponse: %+v, %v; want %s", st, err, tc.want)
				}
				if tc.want == "revoked" && (st.Reason != ocsp.KeyCompromise || !st.RevokedAt.Equal(tmpl.RevokedAt)) {
					t.Errorf("revocation %v %d", st.RevokedAt, st.Reason)
				}
			default:
				if !errors.Is(err, client.ErrOCSP) || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("VerifyOCSPResponse: %v, want ErrOCSP mentioning %q", err, tc.want)
				}
			}
		})
	}
	t.Run("responder refuses", func(t *testing.T) {
		_, err := client.VerifyOCSPResponse(ocsp.UnauthorizedErrorResponse, leaf, ca.Intermediate, now)
		if !errors.Is(err, client.ErrOCSP) || !strings.Contains(err.Error(), "unauthorized") {
			t.Fatalf("VerifyOCSPResponse: %v", err)
		}
	})
	t.Run("trailing garbage", func(t *testing.T) {
		der, _ := ocsp.CreateResponse(ca.Intermediate, ca.Responder, good, ca.ResponderKey)
		if _, err := client.VerifyOCSPResponse(append(der, 0), leaf, ca.Intermediate, now); !errors.Is(err, client.ErrOCSP) {
			t.Fatalf("VerifyOCSPResponse: %v", err)
		}
	})
}

// TestCheckOCSP asks the fake's responder over HTTP, as pkictl status does.
func TestCheckOCSP(t *testing.T) {
	t.Parallel()
	s := clienttest.New(t)
	b := enroll(t, s, client.EnrollRequest{})
	issuer := b.Issuer()
	if issuer == nil || !issuer.Equal(s.CA.Intermediate) {
		t.Fatalf("Issuer: %v", issuer)
	}
	st, err := client.CheckOCSP(context.Background(), nil, b.Leaf, issuer, time.Now())
	if err != nil || st.Status != "good" || st.URL != s.URL+"/ocsp" {
		t.Fatalf("CheckOCSP: %+v %v", st, err)
	}
	c, _ := client.New(s.URL, nil, s.Token)
	if _, err := c.Revoke(context.Background(), b.Serial(), "keyCompromise"); err != nil {
		t.Fatal(err)
	}
	st, err = client.CheckOCSP(context.Background(), nil, b.Leaf, issuer, time.Now())
	if err != nil || st.Status != "revoked" || st.Reason != ocsp.KeyCompromise {
		t.Fatalf("after revocation: %+v %v", st, err)
	}

	s.SetIntercept(func(w http.ResponseWriter, r *http.Request) bool {
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte("<html>captive portal</html>"))
		return true
	})
	if _, err := client.CheckOCSP(context.Background(), nil, b.Leaf, issuer, time.Now()); !errors.Is(err, client.ErrOCSP) || !strings.Contains(err.Error(), "content type") {
		t.Fatalf("HTML answer: %v", err)
	}
	noAIA := s.CA.Leaf(t, "x.test", nil, b.Key.Public(), time.Now(), time.Hour, "")
	if _, err := client.CheckOCSP(context.Background(), nil, noAIA, issuer, time.Now()); !errors.Is(err, client.ErrOCSP) {
		t.Fatalf("no AIA: %v", err)
	}
}
