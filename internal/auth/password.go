package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"

	"github.com/pkid/pkid/internal/pki"
)

// Argon2id parameters for new password hashes. They are OWASP's Password
// Storage Cheat Sheet configuration m=19 MiB, t=2, p=1, rather than RFC 9106's
// second recommendation (64 MiB, t=3, p=4): the admin login is an
// unauthenticated endpoint on a small host, and at 64 MiB a burst of a few
// dozen concurrent login attempts would take gigabytes of memory. 19 MiB with
// two passes costs an offline attacker about as much per guess as OWASP's other
// equivalent settings and keeps a login near a few tens of milliseconds. The
// parameters are stored in each hash, so they can be raised later without
// invalidating existing hashes.
const (
	argonMemoryKiB = 19 * 1024
	argonTime      = 2
	argonThreads   = 1
	argonSaltLen   = 16
	argonKeyLen    = 32
)

// Bounds accepted when reading a stored hash. They keep a corrupt or hostile
// row from making VerifyPassword allocate without limit or spin for minutes.
const (
	maxArgonMemoryKiB = 1 << 20 // 1 GiB
	maxArgonTime      = 16
	maxArgonThreads   = 16
	minArgonSaltLen   = 8
	maxArgonSaltLen   = 64
	minArgonKeyLen    = 16
	maxArgonKeyLen    = 64
)

// Password length limits for new passwords, in characters. The minimum is
// OWASP ASVS 4.0.3 V2.1.1 (12 characters for passwords set by users); the
// maximum admits long passphrases while keeping the input to argon2 bounded.
const (
	MinPasswordLength = 12
	MaxPasswordLength = 1024
)

// ErrBadPasswordHash is returned by VerifyPassword for a stored hash that is
// not an argon2id PHC string pkid can check.
var ErrBadPasswordHash = errors.New("auth: malformed password hash")

// argonSlots bounds how many argon2 computations run at once in this process.
// Each one holds argonMemoryKiB of memory; without a bound, a flood of login
// attempts would turn CPU contention into memory exhaustion. Callers queue
// instead, which a rate limiter in front of the login turns into 429s.
var argonSlots = make(chan struct{}, max(2, runtime.GOMAXPROCS(0)))

func argonIDKey(pw, salt []byte, t, m uint32, p uint8, keyLen uint32) []byte {
	argonSlots <- struct{}{}
	defer func() { <-argonSlots }()
	return argon2.IDKey(pw, salt, t, m, p, keyLen)
}

// HashPassword returns an argon2id hash of pw in the PHC string format
// ($argon2id$v=19$m=19456,t=2,p=1$salt$hash, unpadded standard base64) with a
// fresh random salt. It refuses, with a *pki.RequestError, a password shorter
// than MinPasswordLength or longer than MaxPasswordLength characters, or one
// that is not valid UTF-8.
func HashPassword(pw string) (string, error) {
	if !utf8.ValidString(pw) {
		return "", pki.Malformed("the password is not valid UTF-8")
	}
	if n := utf8.RuneCountInString(pw); n < MinPasswordLength || n > MaxPasswordLength {
		return "", pki.Malformed("the password must be between %d and %d characters long", MinPasswordLength, MaxPasswordLength)
	}
	salt := make([]byte, argonSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("auth: drawing a password salt: %w", err)
	}
	key := argonIDKey([]byte(pw), salt, argonTime, argonMemoryKiB, argonThreads, argonKeyLen)
	return formatPHC(phc{memory: argonMemoryKiB, time: argonTime, threads: argonThreads, salt: salt, key: key}), nil
}

// VerifyPassword reports whether pw matches hash, a PHC string made by
// HashPassword (possibly with other argon2id parameters). The comparison takes
// constant time. A hash pkid cannot read is an error (ErrBadPasswordHash), not
// a mismatch, so that a corrupt row is noticed.
func VerifyPassword(hash, pw string) (bool, error) {
	h, err := parsePHC(hash)
	if err != nil {
		return false, err
	}
	got := argonIDKey([]byte(pw), h.salt, h.time, h.memory, h.threads, uint32(len(h.key)))
	return subtle.ConstantTimeCompare(got, h.key) == 1, nil
}

// DummyVerify spends the time VerifyPassword spends on a hash made with the
// current parameters, and discards the answer. A login for an unknown
// username calls it so that response times do not reveal which usernames
// exist (Vault CVE-2025-6011).
func DummyVerify(pw string) {
	_, _ = VerifyPassword(dummyHash(), pw)
}

// dummyHash is a hash of a random password nobody knows, made once.
var dummyHash = sync.OnceValue(func() string {
	pw := make([]byte, 32)
	if _, err := rand.Read(pw); err != nil {
		panic("auth: crypto/rand failed: " + err.Error())
	}
	salt := make([]byte, argonSaltLen)
	if _, err := rand.Read(salt); err != nil {
		panic("auth: crypto/rand failed: " + err.Error())
	}
	key := argonIDKey(pw, salt, argonTime, argonMemoryKiB, argonThreads, argonKeyLen)
	return formatPHC(phc{memory: argonMemoryKiB, time: argonTime, threads: argonThreads, salt: salt, key: key})
})

// CanonicalUsername returns the form in which usernames are stored and
// compared: surrounding white space removed, lower case. Lookups and lockouts
// keyed on it cannot be dodged with "Admin " or "ADMIN" (Vault CVE-2025-6004).
func CanonicalUsername(s string) string {
	return strings.ToLower(strings.TrimSpace(s))
}

// phc is a decoded argon2id PHC string.
type phc struct {
	memory  uint32 // KiB
	time    uint32
	threads uint8
	salt    []byte
	key     []byte
}

var phcB64 = base64.RawStdEncoding.Strict()

func formatPHC(h phc) string {
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, h.memory, h.time, h.threads, phcB64.EncodeToString(h.salt), phcB64.EncodeToString(h.key))
}

// parsePHC reads "$argon2id$v=19$m=M,t=T,p=P$salt$hash" strictly: the fields
// in this order, decimal numbers without signs or leading zeros, parameters
// within the bounds above.
func parsePHC(s string) (phc, error) {
	var h phc
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return h, fmt.Errorf("%w: not an argon2id PHC string", ErrBadPasswordHash)
	}
	if parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return h, fmt.Errorf("%w: unsupported argon2 version %q", ErrBadPasswordHash, parts[2])
	}
	params := strings.Split(parts[3], ",")
	if len(params) != 3 {
		return h, fmt.Errorf("%w: want parameters m, t and p", ErrBadPasswordHash)
	}
	m, err1 := phcParam(params[0], "m", 1, maxArgonMemoryKiB)
	t, err2 := phcParam(params[1], "t", 1, maxArgonTime)
	p, err3 := phcParam(params[2], "p", 1, maxArgonThreads)
	if err := errors.Join(err1, err2, err3); err != nil {
		return h, err
	}
	if m < 8*p {
		return h, fmt.Errorf("%w: memory below 8 KiB per lane", ErrBadPasswordHash)
	}
	salt, err := phcB64.DecodeString(parts[4])
	if err != nil || len(salt) < minArgonSaltLen || len(salt) > maxArgonSaltLen {
		return h, fmt.Errorf("%w: bad salt", ErrBadPasswordHash)
	}
	key, err := phcB64.DecodeString(parts[5])
	if err != nil || len(key) < minArgonKeyLen || len(key) > maxArgonKeyLen {
		return h, fmt.Errorf("%w: bad hash value", ErrBadPasswordHash)
	}
	return phc{memory: m, time: t, threads: uint8(p), salt: salt, key: key}, nil
}

func phcParam(field, name string, lo, hi uint32) (uint32, error) {
	v, ok := strings.CutPrefix(field, name+"=")
	if !ok || v == "" || len(v) > 1 && v[0] == '0' || strings.TrimLeft(v, "0123456789") != "" {
		return 0, fmt.Errorf("%w: bad parameter %q", ErrBadPasswordHash, field)
	}
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil || uint32(n) < lo || uint32(n) > hi {
		return 0, fmt.Errorf("%w: parameter %s out of range", ErrBadPasswordHash, name)
	}
	return uint32(n), nil
}
