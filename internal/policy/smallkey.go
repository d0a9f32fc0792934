package policy

import (
	"bytes"
	"crypto/ecdh"
	"crypto/elliptic"
	"encoding/binary"
	"math/big"
	"slices"
	"sync"
)

// smallKeyBits bounds the private scalars that CheckCSR and CheckPublicKey
// look for: an ECDSA public key Q = d·G with 1 ≤ d ≤ 2^smallKeyBits, or
// with n−d in that range, gives its private key away to anyone who searches
// (zlint's e_ecdsa_small_private_key, whose default bound this is; the
// eMudhra intermediates that prompted that lint all had d < 256). Such a key
// comes from a broken generator, never from chance.
//
// This check replaces that lint, which walked points with crypto/elliptic's
// generic arithmetic on every certificate (about 27 µs at 8 bits). Here a
// table of the x-coordinates of d·G is built once per curve and process, and
// each key costs one binary search. d·G and (n−d)·G = −d·G share their
// x-coordinate, so one table covers both signs.
//
// The CA's own keys (root, intermediates, OCSP signer, the TLS listener's
// key) are not checked: internal/keystore and issuance.GenerateKey make them
// from crypto/rand or on the PKCS#11 token; none comes from outside. Every
// key that does (a CSR's, on issuance and on renewal with a new key, and the
// reused key of a renewal without one) goes through checkECDSA.
const smallKeyBits = 16

// A smallKeyTable lists x(d·G) for d = 1 … 2^smallKeyBits, compactly: each
// entry is the first 48 bits of the x-coordinate, with d−1 in the low 16
// bits, sorted. 512 KiB per curve instead of the 2 or 3 MiB of the full
// coordinates; a match on 48 bits is confirmed by computing d·G again, which
// happens for a truly small key and, for any other key, with probability
// about 2^16/2^48.
type smallKeyTable struct {
	curve   ecdh.Curve
	size    int // bytes in a coordinate
	entries []uint64
}

const smallKeyLowMask = 1<<smallKeyBits - 1

var (
	smallKeysP256 = sync.OnceValue(func() *smallKeyTable {
		return newSmallKeyTable(elliptic.P256().Params(), ecdh.P256())
	})
	smallKeysP384 = sync.OnceValue(func() *smallKeyTable {
		return newSmallKeyTable(elliptic.P384().Params(), ecdh.P384())
	})
)

// PrepareKeyChecks builds the small-key tables now rather than on the first
// CSR of each curve, which would otherwise wait for them (a few hundred
// milliseconds). pkid serve calls it in the background at start; tests and
// one-shot commands never need to.
func PrepareKeyChecks() {
	smallKeysP256()
	smallKeysP384()
}

// smallPrivateKey reports whether point, the uncompressed encoding of a
// public key that checkECDSA has validated on curve c, is d·G or −d·G for
// some 1 ≤ d ≤ 2^smallKeyBits. It builds the curve's table on first use.
func smallPrivateKey(c elliptic.Curve, point []byte) bool {
	var t *smallKeyTable
	switch c {
	case elliptic.P256():
		t = smallKeysP256()
	case elliptic.P384():
		t = smallKeysP384()
	default:
		return false
	}
	return t.contains(point[1 : 1+t.size])
}

// contains reports whether x is the x-coordinate of d·G for some d in the
// table.
func (t *smallKeyTable) contains(x []byte) bool {
	key := binary.BigEndian.Uint64(x) &^ smallKeyLowMask
	// The first entry not below key is the first with the same 48 bits, if
	// there is one.
	i, _ := slices.BinarySearch(t.entries, key)
	for ; i < len(t.entries) && t.entries[i]&^smallKeyLowMask == key; i++ {
		d := t.entries[i]&smallKeyLowMask + 1
		scalar := make([]byte, t.size)
		binary.BigEndian.PutUint32(scalar[t.size-4:], uint32(d))
		k, err := t.curve.NewPrivateKey(scalar)
		if err != nil {
			// Unreachable: 1 ≤ d ≤ 2^16 is a valid scalar on every curve.
			panic("policy: small-key table holds an invalid scalar: " + err.Error())
		}
		if bytes.Equal(k.PublicKey().Bytes()[1:1+t.size], x) {
			return true
		}
	}
	return false
}

// newSmallKeyTable computes d·G for d = 1 … 2^smallKeyBits on a short
// Weierstrass curve with a = −3 (every NIST prime curve). The standard
// library offers no fast public point addition (crypto/elliptic's deprecated
// Curve.Add converts through big.Int and inverts on every call: about 0.4 s
// for P-256 and 1.6 s for P-384 at this size), so this adds affine points
// itself, with math/big, doubling the range at each step: having d·G for
// d ≤ m, it computes (m+i)·G = i·G + m·G for 1 ≤ i < m, all m−1 inversions
// in one by Montgomery's trick, and 2m·G by doubling m·G. That takes six
// modular multiplications per point. The tests compare the result with
// crypto/ecdh's scalar multiplication.
func newSmallKeyTable(params *elliptic.CurveParams, curve ecdh.Curve) *smallKeyTable {
	const count = 1 << smallKeyBits
	f := &field{p: params.P}
	xs := make([]big.Int, count) // xs[d-1], ys[d-1] = d·G
	ys := make([]big.Int, count)
	xs[0].Set(params.Gx)
	ys[0].Set(params.Gy)
	var lambda, inv, t, u big.Int
	prefix := make([]big.Int, count/2)
	for m := 1; m < count; m *= 2 {
		xm, ym := &xs[m-1], &ys[m-1]
		// prefix[i-1] = ∏ (x_i − x_m) for 1 ≤ i < m; no factor is zero,
		// because i·G ≠ ±m·G for 0 < i < m < n/2.
		for i := 1; i < m; i++ {
			f.sub(&prefix[i-1], &xs[i-1], xm)
			if i > 1 {
				f.mul(&prefix[i-1], &prefix[i-1], &prefix[i-2])
			}
		}
		if m > 1 {
			inv.ModInverse(&prefix[m-2], f.p)
		}
		for i := m - 1; i >= 1; i-- {
			x1, y1 := &xs[i-1], &ys[i-1]
			// inv is 1/∏_{j≤i}(x_j − x_m), so 1/(x_i − x_m) is inv
			// times the product of the factors before i.
			if i > 1 {
				f.mul(&lambda, &inv, &prefix[i-2])
				f.sub(&t, x1, xm)
				f.mul(&inv, &inv, &t)
			} else {
				lambda.Set(&inv)
			}
			f.sub(&t, y1, ym)
			f.mul(&lambda, &lambda, &t)
			f.addAffine(&xs[m+i-1], &ys[m+i-1], x1, y1, xm, &lambda)
		}
		// 2m·G: λ = (3x² + a)/(2y) with a = −3.
		f.mul(&t, xm, xm)
		f.sub(&t, &t, bigOne)
		f.add(&u, &t, &t)
		f.add(&t, &u, &t)
		f.add(&u, ym, ym)
		lambda.ModInverse(&u, f.p)
		f.mul(&lambda, &lambda, &t)
		f.addAffine(&xs[2*m-1], &ys[2*m-1], xm, ym, xm, &lambda)
	}
	size := (params.BitSize + 7) / 8
	buf := make([]byte, size)
	entries := make([]uint64, count)
	for i := range xs {
		xs[i].FillBytes(buf)
		entries[i] = binary.BigEndian.Uint64(buf)&^smallKeyLowMask | uint64(i)
	}
	slices.Sort(entries)
	return &smallKeyTable{curve: curve, size: size, entries: entries}
}

// field is arithmetic modulo the prime p on values in [0, p), with scratch
// space so that the 400,000 operations of a table allocate almost nothing
// (big.Int.Mod allocates its quotient on every call). Its methods accept
// z aliasing x or y.
type field struct {
	p       *big.Int
	product big.Int
	q       big.Int
}

// mul sets z = x·y mod p.
func (f *field) mul(z, x, y *big.Int) {
	f.product.Mul(x, y)
	f.q.QuoRem(&f.product, f.p, z)
}

// sub sets z = x − y mod p.
func (f *field) sub(z, x, y *big.Int) {
	z.Sub(x, y)
	if z.Sign() < 0 {
		z.Add(z, f.p)
	}
}

// add sets z = x + y mod p.
func (f *field) add(z, x, y *big.Int) {
	z.Add(x, y)
	if z.Cmp(f.p) >= 0 {
		z.Sub(z, f.p)
	}
}

// addAffine sets (x3, y3) to P1 + P2 given the slope lambda of the line
// through them (or of the tangent at P1 = P2): x3 = λ² − x1 − x2,
// y3 = λ(x1 − x3) − y1. x3 and y3 must not alias the inputs.
func (f *field) addAffine(x3, y3, x1, y1, x2, lambda *big.Int) {
	f.mul(x3, lambda, lambda)
	f.sub(x3, x3, x1)
	f.sub(x3, x3, x2)
	f.sub(y3, x1, x3)
	f.mul(y3, y3, lambda)
	f.sub(y3, y3, y1)
}
