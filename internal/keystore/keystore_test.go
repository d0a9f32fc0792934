package keystore_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"

	"github.com/pkid/pkid/internal/keystore"
	"github.com/pkid/pkid/internal/pki"
	"github.com/pkid/pkid/internal/sealedkey"
	"github.com/pkid/pkid/internal/testhsm"
)

// signs checks that s makes ECDSA signatures that its public key verifies.
func signs(t *testing.T, s crypto.Signer) {
	t.Helper()
	digest := sha256.Sum256([]byte("to be signed"))
	sig, err := s.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if !ecdsa.VerifyASN1(s.Public().(*ecdsa.PublicKey), digest[:], sig) {
		t.Fatal("signature does not verify")
	}
}

func samePublic(t *testing.T, a, b crypto.Signer) {
	t.Helper()
	if !a.Public().(*ecdsa.PublicKey).Equal(b.Public()) {
		t.Fatal("the reopened key is not the generated key")
	}
}

func TestSealedWithPassphrase(t *testing.T) {
	if _, err := keystore.Open(keystore.Config{}); !errors.Is(err, keystore.ErrNoSecret) {
		t.Fatalf("no passphrase, no token: %v, want ErrNoSecret", err)
	}
	s, err := keystore.Open(keystore.Config{Passphrase: []byte("pass")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.HasToken() || s.OnToken(pki.IssuerRoot) {
		t.Fatal("a store without a token puts keys on a token")
	}
	key, ref, err := s.Generate(elliptic.P256(), pki.IssuerIntermediate)
	if err != nil {
		t.Fatal(err)
	}
	if ref.URI != "" || len(ref.Sealed) == 0 {
		t.Fatalf("ref %+v: want a sealed key", ref)
	}
	back, err := s.Open(ref)
	if err != nil {
		t.Fatal(err)
	}
	samePublic(t, key, back)
	signs(t, back)

	other, _ := keystore.Open(keystore.Config{Passphrase: []byte("other")})
	if _, err := other.Open(ref); !errors.Is(err, sealedkey.ErrWrongPassphrase) {
		t.Fatalf("wrong passphrase: %v", err)
	}
	if _, err := s.Open(keystore.Ref{URI: "pkcs11:token=t;id=%01"}); err == nil || !strings.Contains(err.Error(), "PKID_PKCS11_MODULE") {
		t.Fatalf("a key on a token without one configured: %v", err)
	}
	if _, err := s.Open(keystore.Ref{}); err == nil {
		t.Fatal("an empty reference opened")
	}
}

// TestToken is the HSM path on SoftHSM2: CA keys are made on the token and
// cannot leave it, the OCSP signer's key is sealed under a secret only the
// token can derive, and a second process (a second node, or the same node
// after a restart) opens both.
func TestToken(t *testing.T) {
	tok := testhsm.New(t, "")
	cfg := keystore.Config{PKCS11: tok.Config()}

	if _, err := keystore.Open(cfg); err == nil || !strings.Contains(err.Error(), "pkid init") {
		t.Fatalf("serving from a token pkid init never saw: %v", err)
	}
	wrong := cfg
	wrong.PKCS11.PIN = []byte("not the pin")
	wrong.Init = true
	if _, err := keystore.Open(wrong); err == nil || !strings.Contains(err.Error(), "CKR_PIN_INCORRECT") {
		t.Fatalf("wrong PIN: %v", err)
	} else if strings.Contains(err.Error(), "not the pin") {
		t.Fatalf("the error shows the PIN: %v", err)
	}

	initCfg := cfg
	initCfg.Init = true
	s, err := keystore.Open(initCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Check(t.Context()); err != nil {
		t.Fatal(err)
	}
	root, rootRef, err := s.Generate(elliptic.P384(), pki.IssuerRoot)
	if err != nil {
		t.Fatal(err)
	}
	if rootRef.Sealed != nil || !strings.HasPrefix(rootRef.URI, "pkcs11:token="+tok.Label+";") {
		t.Fatalf("root ref %+v: want a URI on token %s", rootRef, tok.Label)
	}
	signs(t, root)
	p, err := s.Protection(rootRef)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Kept() {
		t.Fatalf("root key protection %+v: want on the token, private, sensitive, never extractable, value refused", p)
	}
	ocsp, ocspRef, err := s.Generate(elliptic.P256(), pki.IssuerOCSP)
	if err != nil {
		t.Fatal(err)
	}
	if ocspRef.URI != "" || len(ocspRef.Sealed) == 0 {
		t.Fatalf("OCSP ref %+v: want sealed in software", ocspRef)
	}

	// A second Store on the same token: what another node or a restart sees.
	s2, err := keystore.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if string(s2.SealingSecret()) != string(s.SealingSecret()) || len(s.SealingSecret()) != 64 {
		t.Fatal("the sealing secret is not derived the same way twice")
	}
	root2, err := s2.Open(rootRef)
	if err != nil {
		t.Fatal(err)
	}
	samePublic(t, root, root2)
	signs(t, root2)
	ocsp2, err := s2.Open(ocspRef)
	if err != nil {
		t.Fatal(err)
	}
	samePublic(t, ocsp, ocsp2)

	// Without the token, the sealed key does not open with a guess.
	guess, _ := keystore.Open(keystore.Config{Passphrase: []byte("guess")})
	if _, err := guess.Open(ocspRef); !errors.Is(err, sealedkey.ErrWrongPassphrase) {
		t.Fatalf("the OCSP key opened without the token's secret: %v", err)
	}
	// A key on another token is refused by name, not looked up here.
	otherTok := strings.Replace(rootRef.URI, "token="+tok.Label, "token=elsewhere", 1)
	if _, err := s2.Open(keystore.Ref{URI: otherTok}); err == nil || !strings.Contains(err.Error(), "elsewhere") {
		t.Fatalf("a key on another token: %v", err)
	}
	gone := strings.Replace(rootRef.URI, "id=%", "id=%00%", 1)
	if _, err := s2.Open(keystore.Ref{URI: gone}); err == nil || !strings.Contains(err.Error(), "no key pair") {
		t.Fatalf("a key the token does not hold: %v", err)
	}

	// init again on the same token keeps the sealing key it made.
	s3, err := keystore.Open(initCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s3.Close()
	if string(s3.SealingSecret()) != string(s.SealingSecret()) {
		t.Fatal("a second init made a new sealing key")
	}

	// Close may be called twice (deferred and on shutdown); a closed
	// store fails its check rather than pretending to be ready, and a
	// signature it cannot make is "unavailable" (503), not a bad request.
	root3, err := s3.Open(rootRef)
	if err != nil {
		t.Fatal(err)
	}
	if err := s3.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s3.Check(t.Context()); !errors.Is(err, pki.ErrUnavailable) {
		t.Fatalf("check after close: %v, want ErrUnavailable", err)
	}
	digest := sha256.Sum256([]byte("after close"))
	if _, err := root3.Sign(rand.Reader, digest[:], crypto.SHA256); !errors.Is(err, pki.ErrUnavailable) {
		t.Fatalf("signing after close: %v, want ErrUnavailable", err)
	}
}

// TestTokenWithPassphrase: an operator who sets PKID_KEY_PASSPHRASE with a
// token keeps software keys sealed under the passphrase (openssl can open
// them), while CA keys still go on the token.
func TestTokenWithPassphrase(t *testing.T) {
	tok := testhsm.New(t, "")
	s, err := keystore.Open(keystore.Config{PKCS11: tok.Config(), Passphrase: []byte("pass")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if string(s.SealingSecret()) != "pass" {
		t.Fatal("the passphrase does not seal software keys")
	}
	if _, ref, err := s.Generate(elliptic.P256(), pki.IssuerIntermediate); err != nil || ref.URI == "" {
		t.Fatalf("intermediate: %+v, %v: want a key on the token", ref, err)
	}
}

// TestRootToken: with a root token, the root key is made there and the
// intermediate on the serving token; a store given only the serving token
// (what every node runs with) opens the intermediate and the sealed keys,
// and cannot reach the root.
func TestRootToken(t *testing.T) {
	serving := testhsm.New(t, "pkid-serving")
	rootTok := serving.Another(t, "pkid-root")
	ceremony := keystore.Config{PKCS11: serving.Config(), Init: true}
	ceremony.PKCS11.RootToken, ceremony.PKCS11.RootPIN = rootTok.Label, []byte(rootTok.PIN)

	bad := ceremony
	bad.PKCS11.RootToken = serving.Label
	if _, err := keystore.Open(bad); err == nil {
		t.Fatal("the serving token accepted as the root's own token")
	}
	bad.PKCS11.RootToken, bad.PKCS11.RootPIN = rootTok.Label, []byte("wrong")
	if _, err := keystore.Open(bad); err == nil || !strings.Contains(err.Error(), "pkid-root") {
		t.Fatalf("wrong root PIN: %v", err)
	}

	s, err := keystore.Open(ceremony)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	root, rootRef, err := s.Generate(elliptic.P384(), pki.IssuerRoot)
	if err != nil {
		t.Fatal(err)
	}
	signs(t, root)
	_, interRef, err := s.Generate(elliptic.P256(), pki.IssuerIntermediate)
	if err != nil {
		t.Fatal(err)
	}
	_, ocspRef, err := s.Generate(elliptic.P256(), pki.IssuerOCSP)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(rootRef.URI, "pkcs11:token=pkid-root;") || !strings.HasPrefix(interRef.URI, "pkcs11:token=pkid-serving;") {
		t.Fatalf("root %s, intermediate %s: want each on its own token", rootRef.URI, interRef.URI)
	}
	for _, ref := range []keystore.Ref{rootRef, interRef} {
		if p, err := s.Protection(ref); err != nil || !p.Kept() {
			t.Fatalf("%s: %+v, %v", ref.URI, p, err)
		}
	}

	node, err := keystore.Open(keystore.Config{PKCS11: serving.Config()})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	if _, err := node.Open(interRef); err != nil {
		t.Fatal(err)
	}
	if _, err := node.Open(ocspRef); err != nil {
		t.Fatal(err)
	}
	if _, err := node.Open(rootRef); !errors.Is(err, keystore.ErrTokenNotConfigured) || !strings.Contains(err.Error(), "PKID_PKCS11_ROOT_TOKEN") {
		t.Fatalf("a serving node opened the root: %v", err)
	}
}
