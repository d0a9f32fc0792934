package issuance

import (
	"bytes"
	"crypto"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/pkid/pkid/internal/pki"
)

// The parts of a BasicOCSPResponse (RFC 6960 §4.2.1) that the tests look
// at, parsed independently of x/crypto.
type (
	ocspResponseASN1 struct {
		Status   asn1.Enumerated
		Response struct {
			Type  asn1.ObjectIdentifier
			Bytes []byte
		} `asn1:"explicit,tag:0"`
	}
	basicResponseASN1 struct {
		TBS struct {
			Raw        asn1.RawContent
			Version    int           `asn1:"optional,explicit,default:0,tag:0"`
			Responder  asn1.RawValue // [1] byName or [2] byKey
			ProducedAt time.Time     `asn1:"generalized"`
			Responses  []singleResponseASN1
			Extensions []pkix.Extension `asn1:"optional,explicit,tag:1"`
		}
		SignatureAlgorithm pkix.AlgorithmIdentifier
		Signature          asn1.BitString
		Certs              []asn1.RawValue `asn1:"explicit,tag:0,optional"`
	}
	singleResponseASN1 struct {
		CertID struct {
			HashAlgorithm pkix.AlgorithmIdentifier
			NameHash      []byte
			KeyHash       []byte
			Serial        *big.Int
		}
		Status     asn1.RawValue    // [0] good, [1] revoked, [2] unknown
		ThisUpdate time.Time        `asn1:"generalized"`
		NextUpdate time.Time        `asn1:"generalized,explicit,tag:0,optional"`
		Extensions []pkix.Extension `asn1:"explicit,tag:1,optional"`
	}
)

func parseBasic(t *testing.T, der []byte) *basicResponseASN1 {
	t.Helper()
	var resp ocspResponseASN1
	if rest, err := asn1.Unmarshal(der, &resp); err != nil || len(rest) > 0 {
		t.Fatalf("OCSPResponse: %v (%d bytes left)", err, len(rest))
	}
	var basic basicResponseASN1
	if rest, err := asn1.Unmarshal(resp.Response.Bytes, &basic); err != nil || len(rest) > 0 {
		t.Fatalf("BasicOCSPResponse: %v (%d bytes left)", err, len(rest))
	}
	return &basic
}

func TestSignOCSP(t *testing.T) {
	h := newHierarchy(t, HierarchyConfig{})
	this, next := OCSPWindow(testNow, 24*time.Hour)
	revokedAt := testNow.Add(-time.Hour).UTC().Truncate(time.Second)
	tests := []struct {
		name       string
		hash       crypto.Hash
		revoked    bool
		reason     pki.RevocationReason
		wantReason bool // revocationReason present in RevokedInfo
	}{
		{"good, SHA-1", crypto.SHA1, false, 0, false},
		{"good, SHA-256", crypto.SHA256, false, 0, false},
		{"revoked, keyCompromise", crypto.SHA1, true, pki.ReasonKeyCompromise, true},
		{"revoked, unspecified (omitted)", crypto.SHA1, true, pki.ReasonUnspecified, false},
		{"revoked, privilegeWithdrawn, SHA-256", crypto.SHA256, true, pki.ReasonPrivilegeWithdrawn, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			serial := pki.MustNewSerial()
			st := OCSPStatus{Serial: serial, ThisUpdate: this, NextUpdate: next}
			if tt.revoked {
				st.Revoked, st.RevokedAt, st.Reason = true, revokedAt, tt.reason
			}
			before := h.ocsp.Signatures()
			der, err := h.ocsp.SignOCSP(h.intermediate.Cert, st, tt.hash)
			if err != nil {
				t.Fatal(err)
			}
			if got := h.ocsp.Signatures() - before; got != 1 {
				t.Errorf("%d signatures, want 1", got)
			}
			// x/crypto verifies the signature, the responder certificate
			// against the intermediate, and matches the CertID.
			resp, err := ocsp.ParseResponse(der, h.intermediate.Cert)
			if err != nil {
				t.Fatalf("ParseResponse: %v", err)
			}
			if pki.SerialFromBig(resp.SerialNumber) != serial || resp.IssuerHash != tt.hash ||
				!resp.ThisUpdate.Equal(this) || !resp.NextUpdate.Equal(next) {
				t.Errorf("response: serial %x hash %v %s..%s", resp.SerialNumber, resp.IssuerHash, resp.ThisUpdate, resp.NextUpdate)
			}
			if err := resp.CheckSignatureFrom(h.ocsp.Cert); err != nil {
				t.Errorf("not signed by the delegated responder: %v", err)
			}

			basic := parseBasic(t, der)
			if len(basic.TBS.Responses) != 1 {
				t.Fatalf("%d SingleResponses, want exactly 1", len(basic.TBS.Responses))
			}
			// x/crypto names the responder byName: its subject.
			if r := basic.TBS.Responder; r.Class != asn1.ClassContextSpecific || r.Tag != 1 || !bytes.Equal(r.Bytes, h.ocsp.Cert.RawSubject) {
				t.Errorf("responderID is not the responder's name: tag %d", r.Tag)
			}
			if len(basic.Certs) != 1 || !bytes.Equal(basic.Certs[0].FullBytes, h.ocsp.Cert.Raw) {
				t.Error("the response does not carry exactly the responder's certificate")
			}
			single := basic.TBS.Responses[0]
			if len(single.Extensions) != 0 {
				t.Errorf("singleExtensions %v: BR 7.3 forbids reasonCode there, and pkid needs none", single.Extensions)
			}
			wantTag := 0
			if tt.revoked {
				wantTag = 1
			}
			if single.Status.Tag != wantTag {
				t.Fatalf("certStatus tag %d, want %d", single.Status.Tag, wantTag)
			}
			if !tt.revoked {
				return
			}
			var when time.Time
			rest, err := asn1.UnmarshalWithParams(single.Status.Bytes, &when, "generalized")
			if err != nil || !when.Equal(revokedAt) {
				t.Fatalf("revocationTime %s (%v), want %s", when, err, revokedAt)
			}
			if hasReason := len(rest) > 0; hasReason != tt.wantReason {
				t.Errorf("revocationReason present = %v, want %v", hasReason, tt.wantReason)
			}
			if tt.wantReason && resp.RevocationReason != int(tt.reason) {
				t.Errorf("revocationReason %d, want %d", resp.RevocationReason, tt.reason)
			}
		})
	}
}

func TestSignOCSPRefusals(t *testing.T) {
	h := newHierarchy(t, HierarchyConfig{})
	other := newHierarchy(t, HierarchyConfig{})
	this, next := OCSPWindow(testNow, 24*time.Hour)
	good := OCSPStatus{Serial: pki.MustNewSerial(), ThisUpdate: this, NextUpdate: next}
	with := func(f func(*OCSPStatus)) OCSPStatus {
		st := good
		f(&st)
		return st
	}
	tests := []struct {
		name      string
		responder *Issuer
		issuer    *Issuer
		st        OCSPStatus
	}{
		{"the intermediate itself (no id-kp-OCSPSigning)", h.intermediate, h.intermediate, good},
		{"another CA's responder", other.ocsp, h.intermediate, good},
		{"a responder for another CA", h.ocsp, other.intermediate, good},
		{"nextUpdate = thisUpdate", h.ocsp, h.intermediate, with(func(s *OCSPStatus) { s.NextUpdate = s.ThisUpdate })},
		{"nextUpdate before thisUpdate", h.ocsp, h.intermediate, with(func(s *OCSPStatus) { s.NextUpdate = s.ThisUpdate.Add(-time.Hour) })},
		{"responder expired by thisUpdate", h.ocsp, h.intermediate, with(func(s *OCSPStatus) {
			s.ThisUpdate, s.NextUpdate = h.ocsp.Cert.NotAfter, h.ocsp.Cert.NotAfter.Add(time.Hour)
		})},
		{"revoked without a time", h.ocsp, h.intermediate, with(func(s *OCSPStatus) { s.Revoked = true })},
		{"certificateHold", h.ocsp, h.intermediate, with(func(s *OCSPStatus) { s.Revoked, s.RevokedAt, s.Reason = true, testNow, 6 })},
		{"removeFromCRL", h.ocsp, h.intermediate, with(func(s *OCSPStatus) { s.Revoked, s.RevokedAt, s.Reason = true, testNow, 8 })},
		{"unassigned reason 7", h.ocsp, h.intermediate, with(func(s *OCSPStatus) { s.Revoked, s.RevokedAt, s.Reason = true, testNow, 7 })},
		{"non-canonical serial", h.ocsp, h.intermediate, with(func(s *OCSPStatus) { s.Serial = "0A" })},
		{"empty serial", h.ocsp, h.intermediate, with(func(s *OCSPStatus) { s.Serial = "" })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := tt.responder.Signatures()
			der, err := tt.responder.SignOCSP(tt.issuer.Cert, tt.st, crypto.SHA1)
			if !errors.Is(err, ErrBadOCSP) || der != nil {
				t.Fatalf("SignOCSP = %d bytes, %v; want ErrBadOCSP", len(der), err)
			}
			if tt.responder.Signatures() != before {
				t.Error("a refused response was signed")
			}
		})
	}
	if _, err := h.ocsp.SignOCSP(h.intermediate.Cert, good, crypto.MD5); err == nil {
		t.Error("signed a response with an MD5 CertID")
	}
}

func TestCanSignOCSPFor(t *testing.T) {
	h := newHierarchy(t, HierarchyConfig{})
	other := newHierarchy(t, HierarchyConfig{})
	for _, tt := range []struct {
		name      string
		responder *Issuer
		issuer    *Issuer
		want      bool
	}{
		{"own responder", h.ocsp, h.intermediate, true},
		{"responder of another intermediate", other.ocsp, h.intermediate, false},
		{"the intermediate", h.intermediate, h.intermediate, false},
		{"nil responder", nil, h.intermediate, false},
	} {
		if got := tt.responder.CanSignOCSPFor(tt.issuer.Cert); got != tt.want {
			t.Errorf("%s: CanSignOCSPFor = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestOCSPWindow(t *testing.T) {
	for _, now := range []time.Time{testNow, testNow.Truncate(time.Minute), time.Date(2026, 12, 31, 23, 59, 59, 999, time.UTC)} {
		for _, validity := range []time.Duration{8 * time.Hour, 24 * time.Hour, 10 * 24 * time.Hour} {
			this, next := OCSPWindow(now, validity)
			if this.After(now.Add(-time.Minute)) || now.Sub(this) >= 2*time.Minute || this.Second() != 0 || this.Nanosecond() != 0 {
				t.Errorf("OCSPWindow(%s): thisUpdate %s, want a whole minute, a minute or two back", now, this)
			}
			// BR 4.9.9 counts the interval inclusive of both ends.
			if got := next.Sub(this) + time.Second; got != validity {
				t.Errorf("OCSPWindow(%s, %s): interval %s inclusive", now, validity, got)
			}
		}
	}
}

// BenchmarkSignOCSP is one good response with a SHA-1 CertID, the stored
// form: the encoding and the responder's P-256 signature.
func BenchmarkSignOCSP(b *testing.B) {
	h := newHierarchy(b, HierarchyConfig{})
	this, next := OCSPWindow(testNow, 24*time.Hour)
	st := OCSPStatus{Serial: pki.MustNewSerial(), ThisUpdate: this, NextUpdate: next}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := h.ocsp.SignOCSP(h.intermediate.Cert, st, crypto.SHA1); err != nil {
			b.Fatal(err)
		}
	}
}
