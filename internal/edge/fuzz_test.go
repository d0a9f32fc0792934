package edge

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"

	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"
	"golang.org/x/crypto/ocsp"
)

// The parsers below read bytes from the network (OCSP responses, CRLs) or
// from certificates; none may panic, whatever the input.

func FuzzResponseCertIDs(f *testing.F) {
	now := time.Now()
	inter := newRoot(f, "Test Root", now).intermediate(f, "Test Intermediate", now)
	leaf := inter.leaf(f, account, now, "").leaf
	resp := inter.responder(f, now, []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning}, now.Add(time.Hour))
	der, err := ocsp.CreateResponse(inter.cert, resp.cert, ocsp.Response{
		Status: ocsp.Good, SerialNumber: leaf.SerialNumber, ThisUpdate: now, NextUpdate: now.Add(time.Hour), Certificate: resp.cert,
	}, resp.key)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(der)
	f.Add(ocsp.UnauthorizedErrorResponse)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		ids, err := responseCertIDs(b)
		if err != nil {
			return
		}
		for _, id := range ids {
			id.matches(leaf, inter.cert)
		}
	})
}

func FuzzParseIDP(f *testing.F) {
	f.Add(idpDER(fullName("http://pkid.example/crl")))
	f.Add(idpDER(all(fullName("http://a.example/crl", "http://b.example/crl"), flag(1, 0xff))))
	f.Add(idpDER(func(b *cryptobyte.Builder) {
		b.AddASN1(asn1.Tag(3).ContextSpecific(), func(*cryptobyte.Builder) {})
	}))
	f.Add(idpDER(flag(5, 0xff)))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = parseIDP(b)
	})
}

func FuzzParseCRL(f *testing.F) {
	now := time.Now()
	inter := newRoot(f, "Test Root", now).intermediate(f, "Test Intermediate", now)
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(7), ThisUpdate: now, NextUpdate: now.Add(time.Hour),
		RevokedCertificateEntries: []x509.RevocationListEntry{{SerialNumber: big.NewInt(9), RevocationTime: now, ReasonCode: 1}},
		ExtraExtensions:           []pkix.Extension{{Id: oidIssuingDP, Critical: true, Value: idpDER(fullName("http://pkid.example/crl"))}},
	}, inter.cert, inter.key)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(der)
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = parseCRL(b)
	})
}

func FuzzSubjectString(f *testing.F) {
	now := time.Now()
	c := newRoot(f, "Test Root", now).intermediate(f, "Test Intermediate", now).leaf(f, account, now, "").leaf
	f.Add(c.RawSubject)
	f.Add([]byte{0x30, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		s := SubjectString(b)
		for i := 0; i < len(s); i++ {
			if s[i] < 0x20 || s[i] >= 0x7f {
				t.Fatalf("byte %#x in %q", s[i], s)
			}
		}
	})
}
