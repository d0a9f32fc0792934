package sealedkey

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var passphrase = []byte("correct horse battery staple")

// sealedP256 is one P-256 key sealed once and shared by the tests that only
// need some sealed key: every Seal and Open costs a full scrypt run.
var sealedP256 = sync.OnceValues(func() (*ecdsa.PrivateKey, []byte) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	pemBytes, err := Seal(key, passphrase)
	if err != nil {
		panic(err)
	}
	return key, pemBytes
})

func TestRoundTrip(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p256, _ := sealedP256()
	for name, key := range map[string]crypto.Signer{
		"ECDSA P-256": p256,
		"ECDSA P-384": p384,
		"RSA 2048":    rsaKey,
		"Ed25519":     edKey,
	} {
		t.Run(name, func(t *testing.T) {
			sealed, err := Seal(key, passphrase)
			if err != nil {
				t.Fatalf("Seal: %v", err)
			}
			block, rest := pem.Decode(sealed)
			if block == nil || block.Type != PEMType || len(rest) != 0 {
				t.Fatalf("Seal output is not one %q PEM block", PEMType)
			}
			opened, err := Open(sealed, passphrase)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			type equaler interface{ Equal(crypto.PrivateKey) bool }
			if !opened.(equaler).Equal(key) {
				t.Fatal("opened key differs from the sealed one")
			}
			// The opened key signs, and the original public key verifies.
			digest := sha256.Sum256([]byte("pkid"))
			opts := crypto.SignerOpts(crypto.SHA256)
			msg := digest[:]
			if _, ok := key.(ed25519.PrivateKey); ok {
				opts, msg = crypto.Hash(0), []byte("pkid")
			}
			sig, err := opened.Sign(rand.Reader, msg, opts)
			if err != nil {
				t.Fatalf("Sign: %v", err)
			}
			if !verify(key.Public(), msg, sig) {
				t.Fatal("signature by the opened key does not verify")
			}
		})
	}
}

func verify(pub crypto.PublicKey, msg, sig []byte) bool {
	switch pub := pub.(type) {
	case *ecdsa.PublicKey:
		return ecdsa.VerifyASN1(pub, msg, sig)
	case *rsa.PublicKey:
		return rsa.VerifyPKCS1v15(pub, crypto.SHA256, msg, sig) == nil
	case ed25519.PublicKey:
		return ed25519.Verify(pub, msg, sig)
	}
	return false
}

func TestSealIsSalted(t *testing.T) {
	key, first := sealedP256()
	second, err := Seal(key, passphrase)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(first, second) {
		t.Fatal("sealing the same key twice gave the same bytes: salt or IV is not fresh")
	}
}

func TestWrongPassphrase(t *testing.T) {
	_, sealed := sealedP256()
	for name, pass := range map[string][]byte{
		"different":  []byte("correct horse battery stapler"),
		"prefix":     passphrase[:len(passphrase)-1],
		"case":       bytes.ToUpper(passphrase),
		"one letter": []byte("x"),
	} {
		t.Run(name, func(t *testing.T) {
			key, err := Open(sealed, pass)
			if !errors.Is(err, ErrWrongPassphrase) || key != nil {
				t.Fatalf("Open = %v, %v; want nil, ErrWrongPassphrase", key, err)
			}
		})
	}
}

func TestEmptyPassphrase(t *testing.T) {
	key, sealed := sealedP256()
	if _, err := Seal(key, nil); !errors.Is(err, ErrEmptyPassphrase) {
		t.Errorf("Seal with no passphrase = %v, want ErrEmptyPassphrase", err)
	}
	if _, err := Open(sealed, []byte{}); !errors.Is(err, ErrEmptyPassphrase) {
		t.Errorf("Open with no passphrase = %v, want ErrEmptyPassphrase", err)
	}
}

// hsmSigner stands for a key that cannot be exported.
type hsmSigner struct{ crypto.Signer }

func TestSealRefusesNonExportableKey(t *testing.T) {
	key, _ := sealedP256()
	if _, err := Seal(hsmSigner{key}, passphrase); err == nil {
		t.Fatal("Seal accepted a key it cannot export")
	}
}

// TestNoPlaintextKey checks that neither the PKCS#8 encoding of the key nor its
// private scalar appears in the sealed PEM, raw or base64.
func TestNoPlaintextKey(t *testing.T) {
	key, sealed := sealedP256()
	plain, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	scalar, err := key.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(sealed)
	for name, secret := range map[string][]byte{"PKCS#8": plain, "scalar": scalar} {
		for where, hay := range map[string][]byte{"PEM": sealed, "DER": block.Bytes} {
			if bytes.Contains(hay, secret) {
				t.Errorf("the %s contains the %s in the clear", where, name)
			}
		}
		if bytes.Contains(sealed, []byte(base64.StdEncoding.EncodeToString(secret)[:16])) {
			t.Errorf("the PEM contains the %s, base64-encoded", name)
		}
	}
}

func TestOpenRefuses(t *testing.T) {
	key, sealed := sealedP256()
	plain, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	plainPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: plain})
	relabelled := pem.EncodeToMemory(&pem.Block{Type: PEMType, Bytes: plain})
	block, _ := pem.Decode(sealed)
	tests := []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"garbage", []byte("not a key")},
		{"unencrypted PKCS#8", plainPEM},
		{"unencrypted PKCS#8 labelled as encrypted", relabelled},
		{"two blocks", append(append([]byte{}, sealed...), sealed...)},
		{"trailing junk", append(append([]byte{}, sealed...), "junk"...)},
		{"truncated DER", pem.EncodeToMemory(&pem.Block{Type: PEMType, Bytes: block.Bytes[:len(block.Bytes)/2]})},
		{"scrypt N too large", withScrypt(t, block.Bytes, 1<<22, 8, 1)},
		{"scrypt N not a power of two", withScrypt(t, block.Bytes, 3<<12, 8, 1)},
		{"scrypt p too large", withScrypt(t, block.Bytes, 1<<14, 8, 1024)},
		{"scrypt r zero", withScrypt(t, block.Bytes, 1<<14, 0, 1)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			got, err := Open(tc.in, passphrase)
			if err == nil || got != nil {
				t.Fatalf("Open = %v, %v; want an error", got, err)
			}
			if errors.Is(err, ErrWrongPassphrase) {
				t.Errorf("Open = %v; a malformed input is not a wrong passphrase", err)
			}
			if d := time.Since(start); d > 50*time.Millisecond {
				t.Errorf("Open took %v to refuse: it ran the KDF on input it should have refused first", d)
			}
			for _, secret := range [][]byte{plain, []byte(base64.StdEncoding.EncodeToString(plain)[:16])} {
				if strings.Contains(err.Error(), string(secret)) {
					t.Errorf("error %q contains key material", err)
				}
			}
		})
	}
}

// withScrypt returns sealed DER with its scrypt parameters replaced.
func withScrypt(t *testing.T, der []byte, n, r, p int) []byte {
	t.Helper()
	var info encryptedPrivateKeyInfo
	if _, err := asn1.Unmarshal(der, &info); err != nil {
		t.Fatal(err)
	}
	var params pbes2Params
	if _, err := asn1.Unmarshal(info.Algorithm.Parameters.FullBytes, &params); err != nil {
		t.Fatal(err)
	}
	kdf, err := asn1.Marshal(scryptParams{Salt: make([]byte, 16), CostParameter: n, BlockSize: r, ParallelizationParameter: p})
	if err != nil {
		t.Fatal(err)
	}
	params.KeyDerivationFunc.Parameters = asn1.RawValue{FullBytes: kdf}
	pb, err := asn1.Marshal(params)
	if err != nil {
		t.Fatal(err)
	}
	info.Algorithm = pkix.AlgorithmIdentifier{Algorithm: oidPBES2, Parameters: asn1.RawValue{FullBytes: pb}}
	out, err := asn1.Marshal(info)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: PEMType, Bytes: out})
}

func openssl(t *testing.T, stdin io.Reader, args ...string) ([]byte, error) {
	t.Helper()
	path, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed")
	}
	cmd := exec.Command(path, args...)
	cmd.Stdin = stdin
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, errors.New(err.Error() + ": " + stderr.String())
	}
	return out, nil
}

// TestOpenSSLOpensSealedKey checks the promise to operators: `openssl pkey`
// decrypts what Seal wrote, with OpenSSL's default scrypt memory cap, and
// refuses a wrong passphrase.
func TestOpenSSLOpensSealedKey(t *testing.T) {
	key, sealed := sealedP256()
	file := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(file, sealed, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := openssl(t, nil, "pkey", "-in", file, "-passin", "pass:"+string(passphrase))
	if err != nil {
		t.Fatalf("openssl pkey: %v", err)
	}
	block, _ := pem.Decode(out)
	if block == nil {
		t.Fatalf("openssl pkey printed no PEM: %q", out)
	}
	got, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !key.Equal(got) {
		t.Fatal("openssl decrypted a different key")
	}
	if _, err := openssl(t, nil, "pkey", "-in", file, "-passin", "pass:wrong"); err == nil {
		t.Fatal("openssl pkey accepted a wrong passphrase")
	}
}

// TestOpenOpensOpenSSLKey checks the other direction: a key that an operator
// encrypted with OpenSSL (scrypt, AES-256-CBC) opens, and one encrypted with
// OpenSSL's default PBKDF2 is refused as not what pkid writes.
func TestOpenOpensOpenSSLKey(t *testing.T) {
	key, _ := sealedP256()
	plain, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	plainPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: plain})
	pass := "pass:" + string(passphrase)

	scrypted, err := openssl(t, bytes.NewReader(plainPEM), "pkcs8", "-topk8", "-v2", "aes-256-cbc",
		"-scrypt", "-scrypt_N", "16384", "-scrypt_r", "8", "-scrypt_p", "1", "-passout", pass)
	if err != nil {
		t.Fatalf("openssl pkcs8 -scrypt: %v", err)
	}
	got, err := Open(scrypted, passphrase)
	if err != nil {
		t.Fatalf("Open(openssl scrypt key): %v", err)
	}
	if !key.Equal(got) {
		t.Fatal("opened a different key")
	}

	pbkdf2, err := openssl(t, bytes.NewReader(plainPEM), "pkcs8", "-topk8", "-v2", "aes-256-cbc", "-passout", pass)
	if err != nil {
		t.Fatalf("openssl pkcs8: %v", err)
	}
	if _, err := Open(pbkdf2, passphrase); err == nil || errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("Open(openssl PBKDF2 key) = %v, want a refusal that is not ErrWrongPassphrase", err)
	}
}
