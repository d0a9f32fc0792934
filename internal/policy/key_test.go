package policy

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"math/big"
	"testing"

	"github.com/pkid/pkid/internal/pki"
)

func TestCheckPublicKey(t *testing.T) {
	p256 := keyP256().Public().(*ecdsa.PublicKey)
	rsa2048 := &rsaKey(keyRSA2048()).PublicKey
	cases := []struct {
		name string
		pub  func(t *testing.T) crypto.PublicKey
		ok   bool
	}{
		{"P-256", func(*testing.T) crypto.PublicKey { return p256 }, true},
		{"P-384", func(*testing.T) crypto.PublicKey { return keyP384().Public() }, true},
		{"RSA-2048", func(*testing.T) crypto.PublicKey { return rsa2048 }, true},
		{"nil", func(*testing.T) crypto.PublicKey { return nil }, false},
		{"typed nil ECDSA", func(*testing.T) crypto.PublicKey { return (*ecdsa.PublicKey)(nil) }, false},
		{"typed nil RSA", func(*testing.T) crypto.PublicKey { return (*rsa.PublicKey)(nil) }, false},
		{"zero ECDSA key", func(*testing.T) crypto.PublicKey { return &ecdsa.PublicKey{} }, false},
		{"ECDSA curve without point", func(*testing.T) crypto.PublicKey { return &ecdsa.PublicKey{Curve: elliptic.P256()} }, false},
		{"ECDSA point at infinity", func(*testing.T) crypto.PublicKey { return ecKey(elliptic.P256(), big.NewInt(0), big.NewInt(0)) }, false},
		{"ECDSA x = p", func(*testing.T) crypto.PublicKey {
			return ecKey(elliptic.P256(), elliptic.P256().Params().P, big.NewInt(1))
		}, false},
		{"ECDSA negative y", func(*testing.T) crypto.PublicKey {
			return ecKey(elliptic.P256(), big.NewInt(1), big.NewInt(-1))
		}, false},
		{"ECDSA P-256 point with P-384 curve", func(*testing.T) crypto.PublicKey {
			x, y := ecCoordinates(p256)
			return ecKey(elliptic.P384(), x, y)
		}, false},
		{"P-224", func(*testing.T) crypto.PublicKey { return keyP224().Public() }, false},
		{"P-521", func(*testing.T) crypto.PublicKey { return keyP521().Public() }, false},
		{"Ed25519", func(*testing.T) crypto.PublicKey { return keyEd25519().Public() }, false},
		{"RSA without modulus", func(*testing.T) crypto.PublicKey { return &rsa.PublicKey{E: 65537} }, false},
		{"RSA negative modulus", func(*testing.T) crypto.PublicKey {
			return &rsa.PublicKey{N: new(big.Int).Neg(rsa2048.N), E: 65537}
		}, false},
		{"RSA-1024", func(*testing.T) crypto.PublicKey { return keyRSA1024().Public() }, false},
		{"RSA-3072 shape", func(*testing.T) crypto.PublicKey { return &rsa.PublicKey{N: roughModulus(3072, 7), E: 65537} }, true},
		{"RSA-4096 shape", func(*testing.T) crypto.PublicKey { return &rsa.PublicKey{N: roughModulus(4096, 8), E: 65537} }, true},
		{"RSA e=2^31+1", func(*testing.T) crypto.PublicKey { return &rsa.PublicKey{N: rsa2048.N, E: 1<<31 + 1} }, false},
		{"RSA e=-65537", func(*testing.T) crypto.PublicKey { return &rsa.PublicKey{N: rsa2048.N, E: -65537} }, false},
		{"RSA product of 743 and a large number", func(*testing.T) crypto.PublicKey { return &rsa.PublicKey{N: multipleOf(743), E: 65537} }, false},
		{"RSA Fermat-close primes", func(*testing.T) crypto.PublicKey { return &rsa.PublicKey{N: fermatModulus(), E: 65537} }, false},
		{"RSA ROCA", func(t *testing.T) crypto.PublicKey {
			pub, err := x509.ParsePKIXPublicKey(fixtureSPKI(t, "roca-rsa2048.pub.pem"))
			if err != nil {
				t.Fatal(err)
			}
			return pub
		}, false},
		{"RSA value instead of pointer", func(*testing.T) crypto.PublicKey { return *rsa2048 }, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckPublicKey(tc.pub(t))
			if tc.ok {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var re *pki.RequestError
			if !errors.As(err, &re) || re.Kind != pki.KindBadPublicKey {
				t.Fatalf("CheckPublicKey = %v, want badPublicKey", err)
			}
		})
	}
}

// ecKey and ecCoordinates touch the deprecated coordinates on purpose: they
// build the malformed keys that CheckPublicKey must refuse without panicking.
func ecKey(c elliptic.Curve, x, y *big.Int) *ecdsa.PublicKey {
	//lint:ignore SA1019 building a deliberately invalid key.
	return &ecdsa.PublicKey{Curve: c, X: x, Y: y}
}

func ecCoordinates(k *ecdsa.PublicKey) (x, y *big.Int) {
	//lint:ignore SA1019 copying a point onto the wrong curve.
	return k.X, k.Y
}

func TestFermatFactor(t *testing.T) {
	p, q := fermatPrimes()
	n := new(big.Int).Mul(p, q)
	gotP, gotQ, ok := fermatFactor(n, fermatRounds)
	if !ok {
		t.Fatal("primes 2^516 apart not found")
	}
	if new(big.Int).Mul(gotP, gotQ).Cmp(n) != 0 || gotQ.Cmp(bigOne) <= 0 {
		t.Fatalf("factors %v × %v do not make n", gotP, gotQ)
	}
	if _, _, ok := fermatFactor(rsaKey(keyRSA2048()).N, fermatRounds); ok {
		t.Fatal("an ordinary RSA-2048 key was factored")
	}
	// A perfect square and adjacent primes are found in the first round.
	sq := new(big.Int).Mul(p, p)
	if _, _, ok := fermatFactor(sq, 1); !ok {
		t.Fatal("p² not found in one round")
	}
	if _, _, ok := fermatFactor(big.NewInt(10007*10009), 1); !ok {
		t.Fatal("adjacent primes not found in one round")
	}
}

// TestFermatFilterIsExact checks the quadratic-residue filter against the
// direct computation: it may not skip a round in which a² − n is a square.
func TestFermatFilterIsExact(t *testing.T) {
	for i := range uint64(200_000) {
		if !mayBeSquare(i * i % squareFilterModulus) {
			t.Fatalf("%d² rejected by the filter", i)
		}
	}
	passed := 0
	for r := range uint64(squareFilterModulus) {
		if mayBeSquare(r) {
			passed++
		}
	}
	if ratio := float64(passed) / squareFilterModulus; ratio > 0.01 {
		t.Fatalf("filter passes %.2f%% of residues", 100*ratio)
	}
}

func TestSPKIHash(t *testing.T) {
	keys := map[string]crypto.PublicKey{
		"P-256":   keyP256().Public(),
		"P-384":   keyP384().Public(),
		"P-521":   keyP521().Public(),
		"RSA":     keyRSA2048().Public(),
		"Ed25519": keyEd25519().Public(),
	}
	for name, pub := range keys {
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		got, err := SPKIHash(pub)
		if err != nil || got != sha256.Sum256(der) {
			t.Errorf("SPKIHash(%s) = %x, %v; want the hash of MarshalPKIXPublicKey", name, got, err)
		}
	}
	for name, pub := range map[string]crypto.PublicKey{
		"nil":        nil,
		"zero ECDSA": &ecdsa.PublicKey{},
		"typed nil":  (*rsa.PublicKey)(nil),
		"RSA no N":   &rsa.PublicKey{E: 65537},
		"off curve":  ecKey(elliptic.P256(), big.NewInt(1), big.NewInt(1)),
	} {
		var re *pki.RequestError
		if _, err := SPKIHash(pub); !errors.As(err, &re) || re.Kind != pki.KindBadPublicKey {
			t.Errorf("SPKIHash(%s) = %v, want badPublicKey", name, err)
		}
	}
}

func TestSmallPrimesProduct(t *testing.T) {
	// 133 primes below 752, the largest 751.
	count := 0
	n := new(big.Int).Set(smallPrimesProduct)
	for i := int64(2); i < 752; i++ {
		if big.NewInt(i).ProbablyPrime(10) {
			count++
			if new(big.Int).Mod(n, big.NewInt(i)).Sign() != 0 {
				t.Fatalf("%d does not divide the product", i)
			}
		}
	}
	if count != 133 {
		t.Fatalf("%d primes below 752, want 133", count)
	}
	if hasSmallFactor(big.NewInt(757 * 761)) {
		t.Fatal("757·761 has no factor below 752")
	}
}
