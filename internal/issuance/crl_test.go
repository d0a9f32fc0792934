package issuance

import (
	"bytes"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pkid/pkid/internal/lint"
	"github.com/pkid/pkid/internal/pki"
)

const testCRLURL = testPublicURL + "/crl"

// crlEntries returns n revoked entries with fresh serials, revoked before
// at, cycling through every reason a CRL may carry.
func crlEntries(n int, at time.Time) []pki.RevokedEntry {
	reasons := []pki.RevocationReason{
		pki.ReasonUnspecified, pki.ReasonKeyCompromise, pki.ReasonAffiliationChanged,
		pki.ReasonSuperseded, pki.ReasonCessationOfOperation, pki.ReasonPrivilegeWithdrawn,
	}
	out := make([]pki.RevokedEntry, n)
	for k := range out {
		out[k] = pki.RevokedEntry{
			Serial:    pki.MustNewSerial(),
			RevokedAt: at.Add(-time.Duration(k)*time.Second - 500*time.Millisecond),
			Reason:    reasons[k%len(reasons)],
		}
	}
	return out
}

func crlTemplate(entries []pki.RevokedEntry) CRLTemplate {
	return CRLTemplate{
		Number:     42,
		ThisUpdate: testNow,
		NextUpdate: testNow.Add(24 * time.Hour),
		Entries:    entries,
		IDPURL:     testCRLURL,
	}
}

// goCRL signs t with x509.CreateRevocationList, the reference encoder, and
// the issuer's key.
func goCRL(t *testing.T, is *Issuer, tmpl CRLTemplate) []byte {
	t.Helper()
	var entries []x509.RevocationListEntry
	for _, e := range tmpl.Entries {
		entries = append(entries, x509.RevocationListEntry{
			SerialNumber: e.Serial.Big(), RevocationTime: e.RevokedAt, ReasonCode: int(e.Reason),
		})
	}
	rl := &x509.RevocationList{
		Number:                    big.NewInt(tmpl.Number),
		ThisUpdate:                tmpl.ThisUpdate,
		NextUpdate:                tmpl.NextUpdate,
		RevokedCertificateEntries: entries,
	}
	if tmpl.IDPURL != "" {
		// The IDP as Boulder's crl/idp encodes it with encoding/asn1.
		type dpName struct {
			FullName []asn1.RawValue `asn1:"optional,tag:0"`
		}
		type idp struct {
			DistributionPoint     dpName `asn1:"optional,tag:0"`
			OnlyContainsUserCerts bool   `asn1:"optional,tag:1"`
		}
		v, err := asn1.Marshal(idp{
			DistributionPoint:     dpName{FullName: []asn1.RawValue{{Class: 2, Tag: 6, Bytes: []byte(tmpl.IDPURL)}}},
			OnlyContainsUserCerts: true,
		})
		if err != nil {
			t.Fatal(err)
		}
		rl.ExtraExtensions = []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 28}, Critical: true, Value: v}}
	}
	der, err := x509.CreateRevocationList(rand.Reader, rl, is.Cert, is.Signer)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func tbsOf(t *testing.T, der []byte) []byte {
	t.Helper()
	parts, err := splitSigned(der)
	if err != nil {
		t.Fatal(err)
	}
	return parts.TBS
}

func sortedEntries(e []pki.RevokedEntry) []pki.RevokedEntry {
	e = slices.Clone(e)
	slices.SortFunc(e, func(a, b pki.RevokedEntry) int { return a.Serial.Big().Cmp(b.Serial.Big()) })
	return e
}

// TestCRLEncodingMatchesGo: the tbsCertList pkid encodes is byte for byte the
// one x509.CreateRevocationList writes, for every shape of entry and both
// time encodings.
func TestCRLEncodingMatchesGo(t *testing.T) {
	h := newHierarchy(t, HierarchyConfig{})
	gen := time.Date(2051, 3, 4, 5, 6, 7, 0, time.UTC)
	oddSerials := []pki.RevokedEntry{
		{Serial: "1", RevokedAt: testNow.Add(-time.Hour)},
		{Serial: "7f", RevokedAt: testNow.Add(-time.Hour), Reason: pki.ReasonSuperseded},
		{Serial: "80", RevokedAt: testNow.Add(-time.Hour), Reason: pki.ReasonKeyCompromise},
		{Serial: "abc", RevokedAt: testNow.Add(-time.Hour)},
		{Serial: "ff00ff00ff00ff00ff00", RevokedAt: testNow.Add(-time.Hour)},
		{Serial: "7fffffffffffffffffffffffffffffffffffffff", RevokedAt: rfc2459},
	}
	tests := []struct {
		name string
		tmpl CRLTemplate
		is   *Issuer
	}{
		{"empty", crlTemplate(nil), h.intermediate},
		{"one entry", crlTemplate(crlEntries(1, testNow)), h.intermediate},
		{"every reason", crlTemplate(crlEntries(30, testNow)), h.intermediate},
		{"serial lengths and signs", crlTemplate(oddSerials), h.intermediate},
		{"no IDP", func() CRLTemplate { c := crlTemplate(crlEntries(3, testNow)); c.IDPURL = ""; return c }(), h.intermediate},
		{"large number", func() CRLTemplate { c := crlTemplate(nil); c.Number = 1<<63 - 1; return c }(), h.intermediate},
		{"generalized time from 2050", CRLTemplate{
			Number: 9, ThisUpdate: gen, NextUpdate: gen.Add(time.Hour), IDPURL: testCRLURL,
			Entries: []pki.RevokedEntry{
				{Serial: pki.MustNewSerial(), RevokedAt: gen.Add(-time.Minute), Reason: pki.ReasonKeyCompromise},
				{Serial: pki.MustNewSerial(), RevokedAt: time.Date(2049, 12, 31, 23, 59, 59, 0, time.UTC)},
			},
		}, h.intermediate},
		{"root, P-384", CRLTemplate{Number: 1, ThisUpdate: testNow, NextUpdate: testNow.AddDate(0, 0, 365), CA: true}, h.root},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			der, err := tc.is.SignCRL(tc.tmpl, testLinter(t))
			if err != nil {
				t.Fatalf("SignCRL: %v", err)
			}
			ref := tc.tmpl
			ref.Entries = sortedEntries(ref.Entries)
			// Go writes fractions of a second away the same way.
			want := tbsOf(t, goCRL(t, tc.is, ref))
			if got := tbsOf(t, der); !bytes.Equal(got, want) {
				t.Fatalf("tbsCertList differs from x509.CreateRevocationList's\n got %x\nwant %x", got, want)
			}
			crl, err := x509.ParseRevocationList(der)
			if err != nil {
				t.Fatal(err)
			}
			if err := crl.CheckSignatureFrom(tc.is.Cert); err != nil {
				t.Fatalf("signature: %v", err)
			}
			if len(crl.RevokedCertificateEntries) != len(tc.tmpl.Entries) {
				t.Fatalf("%d entries, want %d", len(crl.RevokedCertificateEntries), len(tc.tmpl.Entries))
			}
		})
	}
}

// TestCRLEntriesSorted: entries come out sorted by serial number, with their
// times and reasons.
func TestCRLEntriesSorted(t *testing.T) {
	h := newHierarchy(t, HierarchyConfig{})
	entries := crlEntries(50, testNow)
	entries = append(entries, pki.RevokedEntry{Serial: "abc", RevokedAt: testNow, Reason: pki.ReasonKeyCompromise})
	want := sortedEntries(entries)
	der, err := h.intermediate.SignCRL(crlTemplate(entries), testLinter(t))
	if err != nil {
		t.Fatal(err)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	if want[0].Serial != "abc" {
		t.Fatalf("the short serial should sort first, got %s", want[0].Serial)
	}
	for k, got := range crl.RevokedCertificateEntries {
		w := want[k]
		if pki.SerialFromBig(got.SerialNumber) != w.Serial ||
			!got.RevocationTime.Equal(w.RevokedAt.Truncate(time.Second)) || got.ReasonCode != int(w.Reason) {
			t.Fatalf("entry %d = %x %s %d, want %s %s %d", k, got.SerialNumber, got.RevocationTime, got.ReasonCode,
				w.Serial, w.RevokedAt, w.Reason)
		}
	}
}

// TestCRLRefusals: templates that cannot be signed, and CRLs that zlint
// refuses, make no signature.
func TestCRLRefusals(t *testing.T) {
	h := newHierarchy(t, HierarchyConfig{})
	entry := func(serial pki.Serial, at time.Time, r pki.RevocationReason) []pki.RevokedEntry {
		return []pki.RevokedEntry{{Serial: serial, RevokedAt: at, Reason: r}}
	}
	ok := pki.MustNewSerial()
	tests := []struct {
		name   string
		is     *Issuer
		mutate func(*CRLTemplate)
		lint   bool // a *CRLLintError, else ErrBadRequest
	}{
		{name: "number zero", mutate: func(c *CRLTemplate) { c.Number = 0 }},
		{name: "nextUpdate not after thisUpdate", mutate: func(c *CRLTemplate) { c.NextUpdate = c.ThisUpdate.Add(999 * time.Millisecond) }},
		{name: "cACompromise", mutate: func(c *CRLTemplate) { c.Entries = entry(ok, testNow, pki.ReasonCACompromise) }},
		{name: "certificateHold", mutate: func(c *CRLTemplate) { c.Entries = entry(ok, testNow, 6) }},
		{name: "unassigned 7", mutate: func(c *CRLTemplate) { c.Entries = entry(ok, testNow, 7) }},
		{name: "removeFromCRL", mutate: func(c *CRLTemplate) { c.Entries = entry(ok, testNow, 8) }},
		{name: "revoked after thisUpdate", mutate: func(c *CRLTemplate) { c.Entries = entry(ok, testNow.Add(time.Second), 1) }},
		{name: "revoked before 1999", mutate: func(c *CRLTemplate) { c.Entries = entry(ok, rfc2459.Add(-time.Second), 1) }},
		{name: "serial with leading zero", mutate: func(c *CRLTemplate) { c.Entries = entry("0a", testNow, 1) }},
		{name: "serial in upper case", mutate: func(c *CRLTemplate) { c.Entries = entry("AB", testNow, 1) }},
		{name: "serial of 21 octets", mutate: func(c *CRLTemplate) { c.Entries = entry("80ffffffffffffffffffffffffffffffffffffff", testNow, 1) }},
		{name: "empty serial", mutate: func(c *CRLTemplate) { c.Entries = entry("", testNow, 1) }},
		{name: "serial twice", mutate: func(c *CRLTemplate) { c.Entries = append(entry(ok, testNow, 1), entry(ok, testNow, 4)...) }},
		{name: "https IDP", mutate: func(c *CRLTemplate) { c.IDPURL = "https://pki.example/crl" }},
		{name: "IDP with a space", mutate: func(c *CRLTemplate) { c.IDPURL = "http://pki.example/c rl" }},
		{name: "CA CRL with IDP", mutate: func(c *CRLTemplate) { c.CA = true }},
		{name: "issuer without cRLSign", is: h.ocsp},
		{name: "nextUpdate 11 days on", mutate: func(c *CRLTemplate) { c.NextUpdate = c.ThisUpdate.Add(11 * 24 * time.Hour) }, lint: true},
		{name: "CA CRL for 13 months", is: h.root, mutate: func(c *CRLTemplate) {
			c.CA, c.IDPURL, c.NextUpdate = true, "", c.ThisUpdate.AddDate(0, 13, 0)
		}, lint: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			is := tc.is
			if is == nil {
				is = h.intermediate
			}
			tmpl := crlTemplate(crlEntries(3, testNow))
			if tc.mutate != nil {
				tc.mutate(&tmpl)
			}
			before := is.Signatures()
			der, err := is.SignCRL(tmpl, testLinter(t))
			var lerr *CRLLintError
			switch {
			case der != nil:
				t.Fatal("signed a CRL that should have been refused")
			case tc.lint && !errors.As(err, &lerr):
				t.Fatalf("err = %v, want *CRLLintError", err)
			case !tc.lint && !errors.Is(err, ErrBadRequest):
				t.Fatalf("err = %v, want ErrBadRequest", err)
			}
			if is.Signatures() != before {
				t.Fatal("a refused CRL was signed")
			}
		})
	}
	if _, err := h.intermediate.SignCRL(crlTemplate(nil), nil); err == nil {
		t.Fatal("SignCRL without a linter succeeded")
	}
}

// TestCRLZlint: CRLs with 0, 1 and many entries and every reason pass zlint
// as they are signed (SignCRL lints the copy; this lints the real CRL too).
func TestCRLZlint(t *testing.T) {
	h := newHierarchy(t, HierarchyConfig{})
	l := testLinter(t)
	for _, n := range []int{0, 1, 6, 2000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			der, err := h.intermediate.SignCRL(crlTemplate(crlEntries(n, testNow)), l)
			if err != nil {
				t.Fatal(err)
			}
			if err := l.CRL(der); err != nil {
				t.Fatalf("the signed CRL fails lint: %v (%v)", err, lintDetails(err))
			}
		})
	}
	root := CRLTemplate{Number: 1, ThisUpdate: testNow, NextUpdate: testNow.AddDate(0, 0, 365), CA: true,
		Entries: crlEntries(2, testNow)}
	der, err := h.root.SignCRL(root, l)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.CACRL(der); err != nil {
		t.Fatalf("root CRL fails lint: %v", err)
	}
}

func lintDetails(err error) map[string]string {
	var le *lint.Error
	if errors.As(err, &le) {
		return le.Details
	}
	return nil
}

// recordingLinter keeps what it was asked to lint and asks the real linter.
type recordingLinter struct {
	real *lint.Linter
	mu   sync.Mutex
	seen [][]byte
}

func (r *recordingLinter) CRL(der []byte) error {
	r.mu.Lock()
	r.seen = append(r.seen, bytes.Clone(der))
	r.mu.Unlock()
	return r.real.CRL(der)
}

func (r *recordingLinter) CACRL(der []byte) error { return r.CRL(der) }

// TestCRLSampledLint: a CRL beyond fullLintMax entries is linted as a copy
// with the same header and extensions and a sample of its entries, each
// byte-identical to the signed one and covering every reason; the signed CRL
// has every entry.
func TestCRLSampledLint(t *testing.T) {
	h := newHierarchy(t, HierarchyConfig{})
	rec := &recordingLinter{real: testLinter(t)}
	n := fullLintMax + 1500
	entries := crlEntries(n, testNow)
	der, err := h.intermediate.signCRL(crlTemplate(entries), rec)
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.seen) != 1 {
		t.Fatalf("linted %d times", len(rec.seen))
	}
	lintCRL, err := x509.ParseRevocationList(rec.seen[0])
	if err != nil {
		t.Fatal(err)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	if len(crl.RevokedCertificateEntries) != n {
		t.Fatalf("signed CRL has %d entries, want %d", len(crl.RevokedCertificateEntries), n)
	}
	sampled := lintCRL.RevokedCertificateEntries
	if len(sampled) >= n || len(sampled) < lintSampleSpread {
		t.Fatalf("lint copy has %d entries", len(sampled))
	}
	// Same issuer, times, extensions; entries byte-identical and in order.
	if !bytes.Equal(lintCRL.RawIssuer, crl.RawIssuer) || !lintCRL.ThisUpdate.Equal(crl.ThisUpdate) ||
		!lintCRL.NextUpdate.Equal(crl.NextUpdate) || lintCRL.Number.Cmp(crl.Number) != 0 {
		t.Fatal("the lint copy's header differs")
	}
	if fmt.Sprint(lintCRL.Extensions) != fmt.Sprint(crl.Extensions) {
		t.Fatal("the lint copy's extensions differ")
	}
	byRaw := map[string]int{}
	for k, e := range crl.RevokedCertificateEntries {
		byRaw[string(e.Raw)] = k
	}
	reasons := map[int]bool{}
	last := -1
	for _, e := range sampled {
		k, ok := byRaw[string(e.Raw)]
		if !ok || k <= last {
			t.Fatalf("sampled entry %x is not an entry of the signed CRL, in order", e.SerialNumber)
		}
		last = k
		reasons[e.ReasonCode] = true
	}
	if len(reasons) != 6 {
		t.Errorf("the sample covers reasons %v, want all six", reasons)
	}
	first, end := crl.RevokedCertificateEntries[0], crl.RevokedCertificateEntries[n-1]
	if !bytes.Equal(sampled[0].Raw, first.Raw) || !bytes.Equal(sampled[len(sampled)-1].Raw, end.Raw) {
		t.Error("the sample lacks the first or the last entry")
	}

	// A bad entry anywhere is refused before lint, sampled or not.
	bad := sortedEntries(entries)
	bad[n/2+1].Reason = 6
	if _, err := h.intermediate.signCRL(crlTemplate(bad), rec); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("err = %v, want ErrBadRequest", err)
	}
}

// TestCRLURLMatchesCDP: the IDP pkid writes is byte for byte the CRL
// distribution point of the certificates it covers.
func TestCRLURLMatchesCDP(t *testing.T) {
	h := newHierarchy(t, HierarchyConfig{})
	for _, base := range []string{testPublicURL, testPublicURL + "/", "http://pki.example:8080/ca/"} {
		p := testProfile()
		p.PublicURL = base
		leaf := issue(t, h.intermediate, p, testRequest(t, mustKey(t, elliptic.P256()).Public()))
		u, err := CRLURL(base)
		if err != nil {
			t.Fatal(err)
		}
		if len(leaf.CRLDistributionPoints) != 1 || leaf.CRLDistributionPoints[0] != u {
			t.Fatalf("%s: CDP %q, CRLURL %q", base, leaf.CRLDistributionPoints, u)
		}
	}
	if _, err := CRLURL("https://pki.example"); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("CRLURL(https) = %v", err)
	}
}

// TestCRLOpenSSL: OpenSSL verifies the CRL's signature, shows the IDP, AKI,
// number and reasons, and rejects a revoked certificate with it, alone and
// with the root's CRL for the whole chain (nginx's ssl_crl).
func TestCRLOpenSSL(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	l := testLinter(t)
	root, err := NewRoot(HierarchyConfig{}, mustKey(t, elliptic.P384()), now, l)
	if err != nil {
		t.Fatal(err)
	}
	inter, err := NewIntermediate(root, HierarchyConfig{PublicURL: testPublicURL}, mustKey(t, elliptic.P256()), now, l)
	if err != nil {
		t.Fatal(err)
	}
	p := ClientProfile{PublicURL: testPublicURL, Now: func() time.Time { return now }}
	newLeaf := func() *x509.Certificate {
		req := testRequest(t, mustKey(t, elliptic.P256()).Public())
		req.NotBefore, req.NotAfter = now.Add(-5*time.Minute).Truncate(time.Second), now.Add(24*time.Hour).Truncate(time.Second)
		return issue(t, inter, p, req)
	}
	revoked, good := newLeaf(), newLeaf()
	thisUpdate := now.Add(-time.Minute)
	entries := append(crlEntries(6, thisUpdate), pki.RevokedEntry{
		Serial: pki.SerialFromBig(revoked.SerialNumber), RevokedAt: thisUpdate.Add(-time.Second), Reason: pki.ReasonKeyCompromise,
	})
	crlDER, err := inter.SignCRL(CRLTemplate{Number: 7, ThisUpdate: thisUpdate, NextUpdate: thisUpdate.Add(24 * time.Hour),
		Entries: entries, IDPURL: testCRLURL}, l)
	if err != nil {
		t.Fatal(err)
	}
	rootCRL, err := root.SignCRL(CRLTemplate{Number: 8, ThisUpdate: thisUpdate, NextUpdate: thisUpdate.AddDate(0, 0, 365), CA: true}, l)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte) string {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	crlPEM := pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: crlDER})
	rootCRLPEM := pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: rootCRL})
	derFile := write("crl.der", crlDER)
	pemFile := write("crl.pem", crlPEM)
	bothFile := write("both.pem", append(slices.Clone(crlPEM), rootCRLPEM...))
	rootFile := writePEM(t, dir, "root.pem", root.Cert.Raw)
	interFile := writePEM(t, dir, "inter.pem", inter.Cert.Raw)
	chainFile := writePEM(t, dir, "chain.pem", inter.Cert.Raw, root.Cert.Raw)
	revokedFile := writePEM(t, dir, "revoked.pem", revoked.Raw)
	goodFile := writePEM(t, dir, "good.pem", good.Raw)

	out, err := openssl(t, "crl", "-inform", "DER", "-in", derFile, "-CAfile", chainFile, "-noout")
	if err != nil || !strings.Contains(out, "verify OK") {
		t.Fatalf("openssl crl -CAfile: %v\n%s", err, out)
	}
	out, err = openssl(t, "crl", "-inform", "DER", "-in", derFile, "-noout", "-text")
	if err != nil {
		t.Fatalf("openssl crl -text: %v\n%s", err, out)
	}
	for _, want := range []string{
		"Version 2 (0x1)",
		"X509v3 Issuing Distribution Point: critical",
		"URI:" + testCRLURL,
		"Only User Certificates",
		"X509v3 Authority Key Identifier",
		"X509v3 CRL Number: \n                7",
		"Key Compromise",
		"Affiliation Changed",
		"Superseded",
		"Cessation Of Operation",
		"Privilege Withdrawn",
		"Serial Number: " + strings.ToUpper(revoked.SerialNumber.Text(16)),
	} {
		if !strings.Contains(out, want) {
			t.Errorf("openssl crl -text lacks %q", want)
		}
	}
	if strings.Contains(out, "Unspecified") {
		t.Error("an unspecified reason was written as a reasonCode")
	}

	tests := []struct {
		name, crls, flag, leaf string
		revoked                bool
	}{
		{"leaf CRL, revoked", pemFile, "-crl_check", revokedFile, true},
		{"leaf CRL, good", pemFile, "-crl_check", goodFile, false},
		{"whole chain, revoked", bothFile, "-crl_check_all", revokedFile, true},
		{"whole chain, good", bothFile, "-crl_check_all", goodFile, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := openssl(t, "verify", tc.flag, "-CRLfile", tc.crls, "-CAfile", rootFile, "-untrusted", interFile, tc.leaf)
			switch {
			case tc.revoked && (err == nil || !strings.Contains(out, "certificate revoked")):
				t.Fatalf("want \"certificate revoked\": %v\n%s", err, out)
			case !tc.revoked && (err != nil || !strings.HasSuffix(strings.TrimSpace(out), ": OK")):
				t.Fatalf("want OK: %v\n%s", err, out)
			}
		})
	}
}

// BenchmarkSignCRL measures SignCRL alone (checks, sort, encoding, sampled
// zlint, one signature and its verification) for a million entries in
// random order, as the database returns them; BenchmarkEncodeCRL the
// checks, sort and encoding alone, which is what any CRL of that size
// costs before it is signed.
//
//	go test -run '^$' -bench CRL -benchtime 3x ./internal/issuance
func BenchmarkSignCRL(b *testing.B) {
	h := newHierarchy(b, HierarchyConfig{})
	l := testLinter(b)
	entries := crlEntries(1_000_000, testNow)
	var size int
	cpu := processCPUTime()
	for b.Loop() {
		der, err := h.intermediate.SignCRL(crlTemplate(entries), l)
		if err != nil {
			b.Fatal(err)
		}
		size = len(der)
	}
	b.ReportMetric((processCPUTime()-cpu).Seconds()/float64(b.N), "cpu-s/op")
	b.ReportMetric(float64(size), "DER-bytes")
}

func BenchmarkEncodeCRL(b *testing.B) {
	h := newHierarchy(b, HierarchyConfig{})
	entries := crlEntries(1_000_000, testNow)
	tmpl := crlTemplate(entries)
	var size int
	cpu := processCPUTime()
	for b.Loop() {
		enc, err := h.intermediate.crlEncoder(tmpl)
		if err != nil {
			b.Fatal(err)
		}
		plan, err := planEntries(entries, enc.thisUpdate)
		if err != nil {
			b.Fatal(err)
		}
		tbs, _ := enc.appendTBS(make([]byte, 0, enc.tbsLen(plan.entriesLen, len(plan.list))), plan)
		size = len(tbs)
	}
	b.ReportMetric((processCPUTime()-cpu).Seconds()/float64(b.N), "cpu-s/op")
	b.ReportMetric(float64(size), "TBS-bytes")
}

// TestSortEntries: the radix sort orders serials as numbers, including
// serials that share their first octets (equal keys) and serials of every
// length.
func TestSortEntries(t *testing.T) {
	var serials []pki.Serial
	for k := range 6000 {
		switch k % 4 {
		case 0:
			serials = append(serials, pki.MustNewSerial())
		case 1: // same first 7 octets, differing later
			serials = append(serials, pki.Serial(fmt.Sprintf("70aabbccddeeff%020x", k)))
		case 2: // every length
			serials = append(serials, pki.SerialFromBig(new(big.Int).Lsh(big.NewInt(int64(k%100+1)), uint(k%140))))
		default: // high bit set: a leading zero octet
			serials = append(serials, pki.Serial(fmt.Sprintf("ff%06x", k)))
		}
	}
	slices.Sort(serials)
	serials = slices.Compact(serials)
	var entries []pki.RevokedEntry
	for _, s := range serials {
		entries = append(entries, pki.RevokedEntry{Serial: s, RevokedAt: testNow})
	}
	if len(entries) < 4096 {
		t.Fatalf("%d entries do not take the radix path", len(entries))
	}
	plan, err := planEntries(entries, testNow)
	if err != nil {
		t.Fatal(err)
	}
	want := sortedEntries(entries)
	for k, e := range plan.list {
		if got := pki.Serial(e.serialHex()); got != want[k].Serial {
			t.Fatalf("entry %d = %s, want %s", k, got, want[k].Serial)
		}
	}
}

// TestSameOutsideEntries: the guard on a sampled lint copy notices any
// difference outside the entries.
func TestSameOutsideEntries(t *testing.T) {
	h := newHierarchy(t, HierarchyConfig{})
	tbsFor := func(tmpl CRLTemplate) []byte {
		der, err := h.intermediate.SignCRL(tmpl, testLinter(t))
		if err != nil {
			t.Fatal(err)
		}
		return tbsOf(t, der)
	}
	base := crlTemplate(crlEntries(3, testNow))
	other := base
	other.Entries = crlEntries(1, testNow)
	if err := sameOutsideEntries(tbsFor(base), tbsFor(other)); err != nil {
		t.Fatalf("differing entries only: %v", err)
	}
	tests := []struct {
		name   string
		mutate func(*CRLTemplate)
	}{
		{"number", func(c *CRLTemplate) { c.Number++ }},
		{"thisUpdate", func(c *CRLTemplate) { c.ThisUpdate = c.ThisUpdate.Add(time.Second) }},
		{"IDP", func(c *CRLTemplate) { c.IDPURL = "http://other.example/crl" }},
		{"no entries", func(c *CRLTemplate) { c.Entries = nil }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := base
			tc.mutate(&m)
			if err := sameOutsideEntries(tbsFor(base), tbsFor(m)); err == nil {
				t.Fatal("difference not noticed")
			}
		})
	}
}

// BenchmarkCRLReference measures, for a million entries, the two costs that
// made SignCRL encode CRLs itself and lint large ones by sample: Go's
// x509.CreateRevocationList, and zlint over the whole CRL (zcrypto's parse
// and every CRL lint).
//
//	go test -run '^$' -bench CRLReference -benchtime 1x ./internal/issuance
func BenchmarkCRLReference(b *testing.B) {
	h := newHierarchy(b, HierarchyConfig{})
	tmpl := crlTemplate(crlEntries(1_000_000, testNow))
	var entries []x509.RevocationListEntry
	for _, e := range tmpl.Entries {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: e.Serial.Big(), RevocationTime: e.RevokedAt, ReasonCode: int(e.Reason)})
	}
	var der []byte
	b.Run("x509.CreateRevocationList", func(b *testing.B) {
		cpu := processCPUTime()
		for b.Loop() {
			var err error
			der, err = x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(1),
				ThisUpdate: tmpl.ThisUpdate, NextUpdate: tmpl.NextUpdate, RevokedCertificateEntries: entries},
				h.intermediate.Cert, h.intermediate.Signer)
			if err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric((processCPUTime()-cpu).Seconds()/float64(b.N), "cpu-s/op")
	})
	b.Run("zlint-whole", func(b *testing.B) {
		l := testLinter(b)
		cpu := processCPUTime()
		for b.Loop() {
			if err := l.CRL(der); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric((processCPUTime()-cpu).Seconds()/float64(b.N), "cpu-s/op")
	})
}
