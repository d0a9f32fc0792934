package pki

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/big"
	"strings"
)

// SerialRandomBytes is how many bytes of a serial number come from the CSPRNG:
// 128 bits, twice the CA/Browser Forum minimum of 64.
const SerialRandomBytes = 16

// serialPrefix is the fixed first byte of every serial. It keeps the number
// positive and gives every serial the same length (17 bytes, 34 hex digits), so
// that the text form sorts and prefix-searches the way the number does.
const serialPrefix = 0x70

// Serial is a certificate serial number in its canonical text form: lowercase
// hexadecimal, no separators, no leading zeros. It is what the API shows and
// what the database stores.
type Serial string

// ErrBadSerial is returned by ParseSerial for text that is not a serial.
var ErrBadSerial = errors.New("pki: malformed serial number")

// NewSerial draws a fresh serial from r (crypto/rand.Reader in production; tests
// inject a reader to force collisions).
func NewSerial(r io.Reader) (Serial, error) {
	var b [1 + SerialRandomBytes]byte
	b[0] = serialPrefix
	if _, err := io.ReadFull(r, b[1:]); err != nil {
		return "", fmt.Errorf("pki: reading serial randomness: %w", err)
	}
	return Serial(hex.EncodeToString(b[:])), nil
}

// MustNewSerial draws a serial from crypto/rand, which never fails on the
// platforms Go supports.
func MustNewSerial() Serial {
	s, err := NewSerial(rand.Reader)
	if err != nil {
		panic(err)
	}
	return s
}

// ParseSerial accepts a serial as users write it (upper or lower case, with or
// without colons, leading zeros) and returns its canonical form. It refuses
// anything longer than RFC 5280's 20 octets.
func ParseSerial(s string) (Serial, error) {
	s = strings.ToLower(strings.ReplaceAll(s, ":", ""))
	s = strings.TrimLeft(s, "0")
	if s == "" || len(s) > 40 {
		return "", ErrBadSerial
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return "", ErrBadSerial
		}
	}
	return Serial(s), nil
}

// SerialFromBig returns the canonical form of n, which must be positive.
func SerialFromBig(n *big.Int) Serial {
	return Serial(n.Text(16))
}

// Big returns the serial as the integer that goes into a certificate.
func (s Serial) Big() *big.Int {
	n, ok := new(big.Int).SetString(string(s), 16)
	if !ok {
		panic("pki: Big on a non-canonical serial " + string(s))
	}
	return n
}

func (s Serial) String() string { return string(s) }
