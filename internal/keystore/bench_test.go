package keystore_test

import (
	"crypto"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/pkid/pkid/internal/issuance"
	"github.com/pkid/pkid/internal/keystore"
	"github.com/pkid/pkid/internal/lint"
	"github.com/pkid/pkid/internal/pki"
	"github.com/pkid/pkid/internal/testhsm"
)

// The benchmarks compare a key sealed in software (opened into memory) with
// the same kind of key on a PKCS#11 token (SoftHSM2), for what pkid signs:
//
//   - Sign: one ECDSA P-256 signature of a digest;
//   - Issue: one client certificate from the intermediate (Prepare without
//     zlint, whose cost does not depend on where the key is, then Issue:
//     the signature and its verification);
//   - OCSP: one OCSP response, which the re-signer and every issuance and
//     revocation make, signed by a key in software (pkid's choice for the
//     delegated signer) or on the token (the alternative).
//
// Each runs on one goroutine and on GOMAXPROCS (/parallel; crypto11 keeps a
// pool of token sessions). docs/BENCHMARKS.md has the figures:
//
//	go test -run '^$' -bench . -benchtime 2s ./internal/keystore
func BenchmarkSign(b *testing.B) {
	for _, p := range places(b) {
		key, _, err := p.store.Generate(elliptic.P256(), pki.IssuerIntermediate)
		if err != nil {
			b.Fatal(err)
		}
		digest := sha256.Sum256([]byte("benchmark"))
		sign := func() error { _, err := key.Sign(rand.Reader, digest[:], crypto.SHA256); return err }
		run(b, p.name, "sigs/s", sign)
	}
}

func BenchmarkIssue(b *testing.B) {
	for _, p := range places(b) {
		_, inter, _ := hierarchy(b, p.store)
		profile := issuance.ClientProfile{PublicURL: "http://pkid.bench"}
		leaf, err := issuance.GenerateKey(elliptic.P256())
		if err != nil {
			b.Fatal(err)
		}
		issue := func() error {
			serial, err := pki.NewSerial(rand.Reader)
			if err != nil {
				return err
			}
			now := time.Now()
			prep, err := inter.Prepare(profile, issuance.ClientRequest{
				Serial: serial, PublicKey: leaf.Public(), CommonName: "svc.bench.example",
				DNSNames: []string{"svc.bench.example"}, Organization: "Bench", AccountID: "7",
				NotBefore: now.Add(-5 * time.Minute), NotAfter: now.Add(90 * 24 * time.Hour),
			}, lint.Disabled())
			if err != nil {
				return err
			}
			_, err = inter.Issue(prep)
			return err
		}
		run(b, p.name, "certs/s", issue)
	}
}

func BenchmarkOCSP(b *testing.B) {
	for _, p := range places(b) {
		_, inter, ocsp := hierarchy(b, p.store)
		sign := func() error {
			serial, err := pki.NewSerial(rand.Reader)
			if err != nil {
				return err
			}
			this, next := issuance.OCSPWindow(time.Now(), 24*time.Hour)
			_, err = ocsp.SignOCSP(inter.Cert, issuance.OCSPStatus{Serial: serial, ThisUpdate: this, NextUpdate: next}, crypto.SHA1)
			return err
		}
		run(b, p.name, "responses/s", sign)
	}
}

type place struct {
	name  string
	store *keystore.Store
}

// places returns a software store and, when SoftHSM2 is installed, a store
// on a fresh SoftHSM2 token.
func places(b *testing.B) []place {
	out := []place{{"software", keystore.Sealed([]byte("bench"))}}
	if !keystore.Supported {
		return out
	}
	if _, err := testhsm.ModulePath(); err != nil {
		b.Logf("no SoftHSM2 figures: %v", err)
		return out
	}
	tok := testhsm.New(b, "")
	s, err := keystore.Open(keystore.Config{PKCS11: tok.Config(), Init: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	return append(out, place{"softhsm2", s})
}

// hierarchy makes a root, an intermediate and an OCSP signer with keys from
// ks, all generated as CA kinds so that a token store holds every one (pkid
// itself keeps the OCSP signer's key in software).
func hierarchy(b *testing.B, ks *keystore.Store) (root, inter, ocsp *issuance.Issuer) {
	b.Helper()
	l := lint.Disabled()
	cfg := issuance.HierarchyConfig{PublicURL: "http://pkid.bench"}
	now := time.Now()
	rk, _, err := ks.Generate(elliptic.P384(), pki.IssuerRoot)
	if err != nil {
		b.Fatal(err)
	}
	if root, err = issuance.NewRoot(cfg, rk, now, l); err != nil {
		b.Fatal(err)
	}
	ik, _, err := ks.Generate(elliptic.P256(), pki.IssuerIntermediate)
	if err != nil {
		b.Fatal(err)
	}
	if inter, err = issuance.NewIntermediate(root, cfg, ik, now, l); err != nil {
		b.Fatal(err)
	}
	ok, _, err := ks.Generate(elliptic.P256(), pki.IssuerIntermediate)
	if err != nil {
		b.Fatal(err)
	}
	if ocsp, err = issuance.NewOCSPSigner(inter, cfg, ok, now, l); err != nil {
		b.Fatal(err)
	}
	return root, inter, ocsp
}

// run measures op serially and on GOMAXPROCS goroutines, reporting unit
// (operations per second of wall time) and cpu-µs/op, the process CPU time
// per operation, which a machine busy with other work inflates far less
// than wall time.
func run(b *testing.B, name, unit string, op func() error) {
	report := func(b *testing.B, cpu0 time.Duration) {
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), unit)
		if cpu := processCPUTime() - cpu0; cpu > 0 {
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/op")
		}
	}
	b.Run(name, func(b *testing.B) {
		cpu0 := processCPUTime()
		for b.Loop() {
			if err := op(); err != nil {
				b.Fatal(err)
			}
		}
		report(b, cpu0)
	})
	b.Run(name+"/parallel", func(b *testing.B) {
		cpu0 := processCPUTime()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := op(); err != nil {
					b.Error(err)
					return
				}
			}
		})
		report(b, cpu0)
	})
}
