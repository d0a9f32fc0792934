package policy

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"math/big"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/pkid/pkid/internal/pki"
)

var smallKeyCurves = []struct {
	name  string
	curve elliptic.Curve
	ecdh  ecdh.Curve
	table func() *smallKeyTable
}{
	{"P-256", elliptic.P256(), ecdh.P256(), smallKeysP256},
	{"P-384", elliptic.P384(), ecdh.P384(), smallKeysP384},
}

// scalarKey returns the private key with scalar d on c, d taken modulo the
// group order.
func scalarKey(t testing.TB, c elliptic.Curve, d *big.Int) *ecdsa.PrivateKey {
	t.Helper()
	size := (c.Params().BitSize + 7) / 8
	k, err := ecdsa.ParseRawPrivateKey(c, new(big.Int).Mod(d, c.Params().N).FillBytes(make([]byte, size)))
	if err != nil {
		t.Fatalf("scalar %v: %v", d, err)
	}
	return k
}

// TestSmallKeyTable compares the table's x-coordinates with crypto/ecdh's
// scalar multiplication: every d up to 1024, every power of two and its
// neighbours, and random d up to 2^16. The table is built layer on layer, so
// a wrong step would spoil every later point.
func TestSmallKeyTable(t *testing.T) {
	rng := mrand.New(mrand.NewChaCha8([32]byte{16}))
	var ds []uint64
	for d := uint64(1); d <= 1024; d++ {
		ds = append(ds, d)
	}
	for k := 10; k <= smallKeyBits; k++ {
		ds = append(ds, 1<<k-1, 1<<k, 1<<k+1)
	}
	for range 300 {
		ds = append(ds, 1+rng.Uint64N(1<<smallKeyBits))
	}
	for _, c := range smallKeyCurves {
		t.Run(c.name, func(t *testing.T) {
			tab := c.table()
			if len(tab.entries) != 1<<smallKeyBits || !slices.IsSorted(tab.entries) {
				t.Fatalf("%d entries, sorted %v", len(tab.entries), slices.IsSorted(tab.entries))
			}
			byD := make(map[uint64]uint64, len(tab.entries))
			for _, e := range tab.entries {
				byD[e&smallKeyLowMask+1] = e &^ smallKeyLowMask
			}
			for _, d := range ds {
				x := scalarKey(t, c.curve, new(big.Int).SetUint64(d)).PublicKey
				point, err := x.Bytes()
				if err != nil {
					t.Fatal(err)
				}
				xb := point[1 : 1+tab.size]
				prefix, ok := byD[d]
				want := d <= 1<<smallKeyBits
				if want != ok {
					t.Fatalf("d = %d: in table %v, want %v", d, ok, want)
				}
				if ok && prefix != binary.BigEndian.Uint64(xb)&^smallKeyLowMask {
					t.Fatalf("d = %d: table holds %x, want the top 48 bits of %x", d, prefix, xb)
				}
				if got := tab.contains(xb); got != want {
					t.Fatalf("d = %d: contains = %v, want %v", d, got, want)
				}
			}
		})
	}
}

// TestSmallPrivateKeyRefused submits CSRs whose keys have small private
// scalars, of either sign, on both curves, and keys just outside the bound
// and random keys, which must pass.
func TestSmallPrivateKeyRefused(t *testing.T) {
	for _, c := range smallKeyCurves {
		n := c.curve.Params().N
		minus := func(d int64) *big.Int { return new(big.Int).Sub(n, big.NewInt(d)) }
		random, err := ecdsa.GenerateKey(c.curve, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		cases := []struct {
			name  string
			key   crypto.Signer
			small bool
		}{
			{"d=1", scalarKey(t, c.curve, big.NewInt(1)), true},
			{"d=2", scalarKey(t, c.curve, big.NewInt(2)), true},
			{"d=255", scalarKey(t, c.curve, big.NewInt(255)), true},
			{"d=2^16", scalarKey(t, c.curve, big.NewInt(1<<16)), true},
			{"d=n-1", scalarKey(t, c.curve, minus(1)), true},
			{"d=n-2^16", scalarKey(t, c.curve, minus(1<<16)), true},
			{"d=2^16+1", scalarKey(t, c.curve, big.NewInt(1<<16+1)), false},
			{"d=n-2^16-1", scalarKey(t, c.curve, minus(1<<16+1)), false},
			{"d=2^32", scalarKey(t, c.curve, big.NewInt(1<<32)), false},
			{"random", random, false},
		}
		for _, tc := range cases {
			t.Run(c.name+"/"+tc.name, func(t *testing.T) {
				_, err := parseAndCheck(csrPEM(csrDER(t, names("client", "svc.example.com"), tc.key)), DefaultLimits())
				if errPub := CheckPublicKey(tc.key.Public()); (errPub == nil) != (err == nil) {
					t.Errorf("CheckCSR: %v; CheckPublicKey: %v", err, errPub)
				}
				if !tc.small {
					if err != nil {
						t.Fatalf("refused: %v", err)
					}
					return
				}
				var re *pki.RequestError
				if !errors.As(err, &re) || re.Kind != pki.KindBadPublicKey {
					t.Fatalf("CheckCSR = %v, want badPublicKey", err)
				}
				if !strings.Contains(re.Detail, "private key is at most 2^16") {
					t.Errorf("detail %q does not name the reason", re.Detail)
				}
			})
		}
	}
}

// BenchmarkSmallPrivateKey measures the lookup for an ordinary key, which is
// what every CSR pays once the table exists.
func BenchmarkSmallPrivateKey(b *testing.B) {
	for _, c := range smallKeyCurves {
		b.Run(c.name, func(b *testing.B) {
			k, err := ecdsa.GenerateKey(c.curve, rand.Reader)
			if err != nil {
				b.Fatal(err)
			}
			point, err := k.PublicKey.Bytes()
			if err != nil {
				b.Fatal(err)
			}
			c.table()
			b.ResetTimer()
			for b.Loop() {
				if smallPrivateKey(c.curve, point) {
					b.Fatal("a random key is small")
				}
			}
		})
	}
}

// BenchmarkSmallKeyTableBuild measures the one-off cost of a curve's table,
// paid by the first CSR on that curve.
func BenchmarkSmallKeyTableBuild(b *testing.B) {
	for _, c := range smallKeyCurves {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				newSmallKeyTable(c.curve.Params(), c.ecdh)
			}
		})
	}
}
