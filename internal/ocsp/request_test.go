package ocsp

import (
	"crypto"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pkid/pkid/internal/pki"
)

// TestParseSeeds parses the requests that openssl made (testdata/README.md).
func TestParseSeeds(t *testing.T) {
	tests := []struct {
		file    string
		hash    crypto.Hash
		several bool // more than one Request: refused
	}{
		{"sha1.der", crypto.SHA1, false},
		{"sha1-nonce.der", crypto.SHA1, false},
		{"sha256-nonce.der", crypto.SHA256, false},
		{"sha384.der", crypto.SHA384, false},
		{"signed.der", crypto.SHA1, false},
		{"serial-1.der", crypto.SHA1, false},
		{"two-requests.der", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			der, err := os.ReadFile(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			req, err := parseRequest(der)
			if tt.several {
				var re requestError
				if !errors.As(err, &re) || !strings.Contains(err.Error(), "more than one Request") {
					t.Fatalf("parseRequest = %v, want a refusal of several requests", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if req.hash != tt.hash {
				t.Errorf("hash %v, want %v", req.hash, tt.hash)
			}
		})
	}
}

func TestKeys(t *testing.T) {
	pkid, _ := new(big.Int).SetString("70"+strings.Repeat("ab", 16), 16)
	tests := []struct {
		name string
		n    *big.Int
		ok   bool
	}{
		{"pkid serial", pkid, true},
		{"nil", nil, false},
		{"zero", big.NewInt(0), false},
		{"negative", new(big.Int).Neg(pkid), false},
		{"one", big.NewInt(1), false},
		{"16 bytes", new(big.Int).Rsh(pkid, 8), false},
		{"18 bytes", new(big.Int).Lsh(pkid, 8), false},
		{"17 bytes, first byte 0x71", new(big.Int).Add(pkid, new(big.Int).Lsh(big.NewInt(1), 128)), false},
	}
	for _, tt := range tests {
		k, ok := keyFromBig(tt.n)
		if tt.n != nil && tt.n.Sign() > 0 {
			// The same serial as the content octets of its DER INTEGER.
			content := tt.n.Bytes()
			if content[0]&0x80 != 0 {
				content = append([]byte{0}, content...)
			}
			if k2, ok2 := keyFromInteger(content); ok2 != ok || (ok && k2 != k) {
				t.Errorf("%s: keyFromInteger = %x, %v; keyFromBig %x, %v", tt.name, k2, ok2, k, ok)
			}
		}
		if ok != tt.ok {
			t.Errorf("%s: keyFromBig ok = %v, want %v", tt.name, ok, tt.ok)
			continue
		}
		if !ok {
			continue
		}
		back, ok := keyFromSerial(k.serial())
		if !ok || back != k || string(k.serial()) != "70"+strings.Repeat("ab", 16) {
			t.Errorf("%s: %s does not round-trip", tt.name, k.serial())
		}
	}
	for _, s := range []string{"", "70", "70" + strings.Repeat("AB", 16), "71" + strings.Repeat("ab", 16), "70" + strings.Repeat("zz", 16), "0070" + strings.Repeat("ab", 15)} {
		if _, ok := keyFromSerial(pki.Serial(s)); ok {
			t.Errorf("keyFromSerial(%q) accepted", s)
		}
	}
}
