package policy

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"math/big"

	"github.com/titanous/rocacheck"

	"github.com/pkid/pkid/internal/pki"
)

// acceptedKeys is appended to every key refusal so that the client knows what
// to generate instead.
const acceptedKeys = "accepted keys are ECDSA P-256 or P-384, and RSA with a 2048-, 3072- or 4096-bit modulus and exponent 65537"

// fermatRounds is how many steps of Fermat's factorisation are tried on every
// RSA modulus. BR §6.1.1.3(5)(3) asks for at least 100; Boulder uses 110.
// With the quadratic-residue filter in fermatFactor a round costs a few
// machine-word operations, so the number could be far higher at no cost; it
// stays at Boulder's figure so that results match a widely reviewed CA.
const fermatRounds = 110

// CheckPublicKey applies the key rules alone: it is what CheckCSR does first,
// and what renewal without a new CSR re-runs on the key being certified
// again. Refusals are *pki.RequestError of kind badPublicKey.
//
// Accepted: *ecdsa.PublicKey on P-256 or P-384 whose point is on the curve,
// and *rsa.PublicKey with a 2048-, 3072- or 4096-bit odd modulus, exponent
// 65537, no prime factor below 752, not a ROCA (CVE-2017-15361) key, and not
// factorable by Fermat's method in 110 rounds (BR §6.1.1.3, §6.1.5, §6.1.6).
// Everything else is refused, including P-224, P-521, Ed25519, DSA and RSA
// keys whose SPKI says RSA-PSS (which crypto/x509 leaves unparsed, as nil).
//
// Debian weak keys (BR §6.1.1.3(5)(1)) are not checked: the published lists
// are not bundled with pkid. Restricting RSA to three sizes keeps a later
// block-list complete, as in Boulder.
func CheckPublicKey(pub crypto.PublicKey) error {
	_, err := validateKey(pub, x509.UnknownPublicKeyAlgorithm)
	return err
}

// SPKIHash returns the SHA-256 of the DER SubjectPublicKeyInfo of pub, as
// x509.MarshalPKIXPublicKey encodes it: the canonical encoding, so that the
// same key always has the same hash, whatever encoding a CSR used. It does not
// apply the key rules. The error is a *pki.RequestError of kind badPublicKey
// when pub cannot be encoded.
func SPKIHash(pub crypto.PublicKey) ([32]byte, error) {
	if k, ok := pub.(*ecdsa.PublicKey); ok {
		if err := ecdsaUsable(k); err != nil {
			return [32]byte{}, err
		}
		if prefix := ecSPKIPrefix(k.Curve); prefix != nil {
			point, err := k.Bytes()
			if err != nil {
				return [32]byte{}, badKey("the ECDSA public key is not a valid point on its curve")
			}
			return ecSPKIHash(prefix, point), nil
		}
	}
	if k, ok := pub.(*rsa.PublicKey); ok && (k == nil || k.N == nil) {
		return [32]byte{}, badKey("the RSA public key is empty")
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return [32]byte{}, badKey("the public key cannot be encoded: " + acceptedKeys)
	}
	return sha256.Sum256(der), nil
}

// checkKey validates pub and returns its SPKI hash. alg is what the CSR says
// the key is, used only to name a refused algorithm. For ECDSA the hash reuses
// the point encoding that validation produced, which keeps the common P-256
// path free of an ASN.1 marshalling.
func checkKey(pub crypto.PublicKey, alg x509.PublicKeyAlgorithm) ([32]byte, error) {
	point, err := validateKey(pub, alg)
	if err != nil {
		return [32]byte{}, err
	}
	if k, ok := pub.(*ecdsa.PublicKey); ok {
		return ecSPKIHash(ecSPKIPrefix(k.Curve), point), nil
	}
	return SPKIHash(pub)
}

// validateKey applies the key rules. For ECDSA keys it returns the
// uncompressed point, whose computation is also the point validation.
func validateKey(pub crypto.PublicKey, alg x509.PublicKeyAlgorithm) ([]byte, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return checkECDSA(k)
	case *rsa.PublicKey:
		return nil, checkRSA(k)
	case ed25519.PublicKey:
		return nil, badKey("Ed25519 keys are not accepted: " + acceptedKeys)
	default:
		name := "this public key algorithm"
		if alg == x509.DSA {
			name = "DSA"
		}
		return nil, badKey(name + " is not accepted: " + acceptedKeys)
	}
}

// checkECDSA accepts P-256 and P-384 only: Boulder's goodCurve, and the curves
// every TLS stack verifies in constant time. PublicKey.Bytes performs the
// SP 800-56A §5.6.2.3.3 partial validation (coordinates reduced mod p, point
// on the curve, not the point at infinity) that BR §6.1.6 asks for.
func checkECDSA(k *ecdsa.PublicKey) ([]byte, error) {
	if err := ecdsaUsable(k); err != nil {
		return nil, err
	}
	if ecSPKIPrefix(k.Curve) == nil {
		return nil, badKey("the ECDSA curve is not accepted: " + acceptedKeys)
	}
	point, err := k.Bytes()
	if err != nil {
		return nil, badKey("the ECDSA public key is not a valid point on its curve")
	}
	return point, nil
}

// ecdsaUsable refuses the degenerate keys on which crypto/ecdsa would panic
// rather than fail: a nil key, no curve, or missing coordinates.
func ecdsaUsable(k *ecdsa.PublicKey) error {
	//lint:ignore SA1019 reading the deprecated coordinates only to refuse a zero key, which would make PublicKey.Bytes panic.
	if k == nil || k.Curve == nil || k.X == nil || k.Y == nil {
		return badKey("the ECDSA public key is empty")
	}
	return nil
}

// checkRSA applies the RSA rules, cheapest first, so that an oversized modulus
// is refused before any arithmetic on it.
func checkRSA(k *rsa.PublicKey) error {
	if k == nil || k.N == nil || k.N.Sign() <= 0 {
		return badKey("the RSA public key is empty or its modulus is not positive")
	}
	switch bits := k.N.BitLen(); bits {
	case 2048, 3072, 4096:
	default:
		return badKey(fmt.Sprintf("an RSA modulus of %d bits is not accepted: %s", bits, acceptedKeys))
	}
	if k.E != 65537 {
		return badKey("the RSA public exponent must be 65537")
	}
	if k.N.Bit(0) == 0 {
		return badKey("the RSA modulus is even")
	}
	if hasSmallFactor(k.N) {
		return badKey("the RSA modulus has a prime factor smaller than 752")
	}
	if rocacheck.IsWeak(k) {
		return badKey("the RSA key has the structure of keys from Infineon's vulnerable RSALib (ROCA, CVE-2017-15361); generate a new key elsewhere")
	}
	if _, _, ok := fermatFactor(k.N, fermatRounds); ok {
		return badKey("the RSA modulus is factorable by Fermat's method: its two primes are too close together")
	}
	return nil
}

// smallPrimesProduct is the product of the primes below 752 (BR §6.1.6; zlint
// w_rsa_mod_factors_smaller_than_752). One GCD with it replaces 133 trial
// divisions.
var smallPrimesProduct = func() *big.Int {
	const limit = 752
	var composite [limit]bool
	product := big.NewInt(1)
	for i := 2; i < limit; i++ {
		if composite[i] {
			continue
		}
		product.Mul(product, big.NewInt(int64(i)))
		for j := i * i; j < limit; j += i {
			composite[j] = true
		}
	}
	return product
}()

func hasSmallFactor(n *big.Int) bool {
	return new(big.Int).GCD(nil, nil, n, smallPrimesProduct).Cmp(bigOne) != 0
}

var bigOne = big.NewInt(1)

// squareFilterModulus is 64·63·65·11. A perfect square is a quadratic residue
// modulo each factor, and only about 0.7% of integers pass all four tests, so
// fermatFactor takes a big-integer square root on roughly one round in 150.
const squareFilterModulus = 64 * 63 * 65 * 11

// Quadratic residues modulo the four factors of squareFilterModulus:
// residuesM[r] says whether r is a square modulo M.
var (
	residues64 = squaresModulo(64)
	residues63 = squaresModulo(63)
	residues65 = squaresModulo(65)
	residues11 = squaresModulo(11)
)

func squaresModulo(m uint64) []bool {
	t := make([]bool, m)
	for x := range m {
		t[x*x%m] = true
	}
	return t
}

// mayBeSquare reports whether an integer congruent to r modulo
// squareFilterModulus may be a perfect square.
func mayBeSquare(r uint64) bool {
	return residues64[r%64] && residues63[r%63] && residues65[r%65] && residues11[r%11]
}

// fermatFactor runs rounds steps of Fermat's factorisation on the odd integer
// n: n = a² − b² = (a+b)(a−b), searching a upward from ⌈√n⌉ until a² − n is a
// perfect square. It finds the factors of a modulus whose primes p, q satisfy
// (p−q)² < 8·√n·rounds roughly, that is primes which agree in their top half
// (Boulder: goodkey checkPrimeFactorsTooClose). Each round updates
// b² = a² − n by 2a+1 and tracks both values modulo squareFilterModulus so
// that the square root is only taken for candidates that may be squares.
func fermatFactor(n *big.Int, rounds int) (p, q *big.Int, ok bool) {
	a := new(big.Int).Sqrt(n)
	b2 := new(big.Int).Mul(a, a)
	if b2.Cmp(n) < 0 {
		a.Add(a, bigOne)
		b2.Mul(a, a)
	}
	b2.Sub(b2, n)
	m := big.NewInt(squareFilterModulus)
	t := new(big.Int)
	ra := t.Mod(a, m).Uint64()
	rb := t.Mod(b2, m).Uint64()
	b := new(big.Int)
	for range rounds {
		if mayBeSquare(rb) {
			b.Sqrt(b2)
			if t.Mul(b, b).Cmp(b2) == 0 {
				return new(big.Int).Add(a, b), new(big.Int).Sub(a, b), true
			}
		}
		// (a+1)² − n = (a² − n) + 2a + 1
		b2.Add(b2, a).Add(b2, a).Add(b2, bigOne)
		a.Add(a, bigOne)
		rb = (rb + 2*ra + 1) % squareFilterModulus
		ra = (ra + 1) % squareFilterModulus
	}
	return nil, nil, false
}

// DER prefixes of the SubjectPublicKeyInfo of an uncompressed point:
// SEQUENCE { AlgorithmIdentifier { id-ecPublicKey, namedCurve }, BIT STRING
// header with no unused bits }. x509.MarshalPKIXPublicKey writes exactly these
// bytes followed by the point (checked in the tests).
var (
	spkiPrefixP256 = []byte{
		0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01,
		0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
	}
	spkiPrefixP384 = []byte{
		0x30, 0x76, 0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01,
		0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22, 0x03, 0x62, 0x00,
	}
)

// ecSPKIPrefix returns the SPKI prefix for an accepted curve, or nil.
func ecSPKIPrefix(c elliptic.Curve) []byte {
	switch c {
	case elliptic.P256():
		return spkiPrefixP256
	case elliptic.P384():
		return spkiPrefixP384
	}
	return nil
}

// ecSPKIHash hashes prefix‖point without allocating: a P-384 SPKI is 120
// bytes.
func ecSPKIHash(prefix, point []byte) [32]byte {
	var buf [128]byte
	n := copy(buf[:], prefix)
	n += copy(buf[n:], point)
	return sha256.Sum256(buf[:n])
}

func badKey(detail string) error {
	return &pki.RequestError{Kind: pki.KindBadPublicKey, Detail: detail}
}
