package auth

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os/exec"
	"strings"
	"testing"

	"github.com/pkid/pkid/internal/pki"
)

const testPassword = "correct horse battery staple"

func TestHashPasswordRoundTrip(t *testing.T) {
	h, err := HashPassword(testPassword)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Errorf("hash %q does not carry the expected parameters", h)
	}
	ok, err := VerifyPassword(h, testPassword)
	if err != nil || !ok {
		t.Errorf("VerifyPassword(own hash, right password) = %v, %v; want true, nil", ok, err)
	}
	for _, wrong := range []string{"", "correct horse battery stapl", "Correct horse battery staple", testPassword + " "} {
		ok, err := VerifyPassword(h, wrong)
		if err != nil || ok {
			t.Errorf("VerifyPassword(own hash, %q) = %v, %v; want false, nil", wrong, ok, err)
		}
	}
	h2, err := HashPassword(testPassword)
	if err != nil {
		t.Fatal(err)
	}
	if h2 == h {
		t.Error("two hashes of one password are equal: the salt is not random")
	}
}

func TestHashPasswordRefusesBadPasswords(t *testing.T) {
	tests := []struct {
		name string
		pw   string
	}{
		{"empty", ""},
		{"eleven characters", "abcdefghijk"},
		{"too long", strings.Repeat("a", MaxPasswordLength+1)},
		{"invalid UTF-8", "abcdefghijkl\xff"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := HashPassword(tt.pw)
			var re *pki.RequestError
			if !errors.As(err, &re) || re.Kind != pki.KindMalformed {
				t.Errorf("HashPassword = %v, want a malformed RequestError", err)
			}
		})
	}
	// Twelve characters counted as characters, not bytes.
	if _, err := HashPassword("ééééééééééé"); err == nil {
		t.Error("11 two-byte characters were accepted")
	}
	if _, err := HashPassword("éééééééééééé"); err != nil {
		t.Errorf("12 two-byte characters were refused: %v", err)
	}
}

// TestVerifyPasswordReferenceImplementation checks hashes made by the Argon2
// reference implementation (the argon2 command of the Debian package argon2),
// so that pkid reads the PHC format as the rest of the world writes it.
func TestVerifyPasswordReferenceImplementation(t *testing.T) {
	vectors := []struct {
		name, hash string
	}{
		// echo -n "correct horse battery staple" | argon2 saltsaltsaltsalt -id -t 2 -k 19456 -p 1 -l 32 -e
		{"pkid parameters", "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$QKHrg5tayLGcN+Y0HVPNaBqykOVLUxlMkZycXE1uWRM"},
		// echo -n "correct horse battery staple" | argon2 anothersalt1234 -id -t 3 -k 8192 -p 2 -l 24 -e
		{"other parameters", "$argon2id$v=19$m=8192,t=3,p=2$YW5vdGhlcnNhbHQxMjM0$xnfB1Z6DsjT9ABIy0DnmZoEuEPT26Qxt"},
	}
	for _, v := range vectors {
		t.Run(v.name, func(t *testing.T) {
			ok, err := VerifyPassword(v.hash, testPassword)
			if err != nil || !ok {
				t.Errorf("right password: %v, %v", ok, err)
			}
			ok, err = VerifyPassword(v.hash, "correct horse battery stapler")
			if err != nil || ok {
				t.Errorf("wrong password: %v, %v", ok, err)
			}
		})
	}

	t.Run("live", func(t *testing.T) {
		bin, err := exec.LookPath("argon2")
		if err != nil {
			t.Skip("argon2 reference command not installed (apt-get install argon2)")
		}
		salt := make([]byte, 8)
		if _, err := rand.Read(salt); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, hex.EncodeToString(salt), "-id", "-t", "2", "-k", "19456", "-p", "1", "-l", "32", "-e")
		cmd.Stdin = strings.NewReader(testPassword)
		out, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		ok, err := VerifyPassword(string(bytes.TrimSpace(out)), testPassword)
		if err != nil || !ok {
			t.Errorf("VerifyPassword(%s) = %v, %v", out, ok, err)
		}
	})
}

func TestVerifyPasswordBadHashes(t *testing.T) {
	const good = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$QKHrg5tayLGcN+Y0HVPNaBqykOVLUxlMkZycXE1uWRM"
	if ok, err := VerifyPassword(good, testPassword); err != nil || !ok {
		t.Fatalf("the unmodified hash does not verify: %v, %v", ok, err)
	}
	tests := []struct {
		name, hash string
	}{
		{"empty", ""},
		{"bcrypt", "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW"},
		{"argon2i", "$argon2i$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$YwjQ4src0wfskLx1Fo/zbPnLWopM6XnS42fesFj2sKQ"},
		{"version 16", strings.Replace(good, "v=19", "v=16", 1)},
		{"no version", strings.Replace(good, "$v=19", "", 1)},
		{"parameters out of order", strings.Replace(good, "m=19456,t=2,p=1", "t=2,m=19456,p=1", 1)},
		{"extra parameter", strings.Replace(good, "p=1", "p=1,k=0", 1)},
		{"plus sign", strings.Replace(good, "t=2", "t=+2", 1)},
		{"leading zero", strings.Replace(good, "t=2", "t=02", 1)},
		{"zero passes", strings.Replace(good, "t=2", "t=0", 1)},
		{"zero lanes", strings.Replace(good, "p=1", "p=0", 1)},
		{"too many passes", strings.Replace(good, "t=2", "t=100000", 1)},
		{"too much memory", strings.Replace(good, "m=19456", "m=4294967295", 1)},
		{"memory overflows uint32", strings.Replace(good, "m=19456", "m=4294967296", 1)},
		{"too many lanes", strings.Replace(good, "p=1", "p=255", 1)},
		{"memory below 8 KiB per lane", strings.Replace(good, "m=19456", "m=7", 1)},
		{"padded salt", strings.Replace(good, "c2FsdHNhbHRzYWx0c2FsdA", "c2FsdHNhbHRzYWx0c2FsdA==", 1)},
		{"URL-safe base64 salt", "$argon2id$v=19$m=19456,t=2,p=1$-_-_-_-_-_-_-_-_$QKHrg5tayLGcN+Y0HVPNaBqykOVLUxlMkZycXE1uWRM"},
		{"short salt", "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$QKHrg5tayLGcN+Y0HVPNaBqykOVLUxlMkZycXE1uWRM"},
		{"short hash", "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$QKHrg5tayLGc"},
		{"trailing field", good + "$"},
		{"missing leading dollar", good[1:]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, err := VerifyPassword(tt.hash, testPassword)
			if ok || !errors.Is(err, ErrBadPasswordHash) {
				t.Errorf("VerifyPassword = %v, %v; want false, ErrBadPasswordHash", ok, err)
			}
		})
	}
}

// TestDummyVerifyMatchesVerifyPassword checks that DummyVerify does the work
// of a real verification with the current parameters, which is what makes an
// unknown username cost as much as a wrong password.
func TestDummyVerifyMatchesVerifyPassword(t *testing.T) {
	h, err := parsePHC(dummyHash())
	if err != nil {
		t.Fatal(err)
	}
	if h.memory != argonMemoryKiB || h.time != argonTime || h.threads != argonThreads || len(h.salt) != argonSaltLen || len(h.key) != argonKeyLen {
		t.Errorf("dummy hash parameters %+v differ from HashPassword's", h)
	}
	DummyVerify(testPassword) // must not panic
}

func TestCanonicalUsername(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"already canonical", "alice", "alice"},
		{"upper case", "ALICE", "alice"},
		{"mixed case", "Alice", "alice"},
		{"surrounding spaces", "  alice ", "alice"},
		{"tabs and newline", "\talice\n", "alice"},
		{"inner space kept", "alice smith", "alice smith"},
		{"non-ASCII", "ÉLODIE", "élodie"},
		{"empty", "", ""},
		{"only spaces", "   ", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := CanonicalUsername(tt.in); got != tt.want {
				t.Errorf("CanonicalUsername(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if got := CanonicalUsername(tt.want); got != tt.want {
				t.Errorf("CanonicalUsername is not idempotent on %q", tt.want)
			}
		})
	}
}
