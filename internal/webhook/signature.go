package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"
)

// Headers of a notice.
const (
	// HeaderSignature carries "t=<unix seconds>,v1=<hex HMAC-SHA256>", with
	// one v1 per secret in use (two for a while after a rotation).
	HeaderSignature = "Pkid-Signature"
	// HeaderDelivery carries the delivery id, the same on every attempt of
	// one notice: receivers deduplicate on it.
	HeaderDelivery = "Pkid-Delivery"
	// HeaderEvent carries the notice's type, as in the body.
	HeaderEvent = "Pkid-Event"
)

// DefaultTolerance is how far a signature's timestamp may be from the
// receiver's clock before Verify refuses it: a captured notice cannot be
// replayed later than this.
const DefaultTolerance = 5 * time.Minute

// Sign returns the hex HMAC-SHA256, keyed with secret (the secret string as
// shown to the administrator, as bytes), of "<unix seconds of t>.<body>".
func Sign(secret []byte, t time.Time, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(strconv.FormatInt(t.Unix(), 10)))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return hex.EncodeToString(mac.Sum(nil))
}

// SignatureHeader returns the Pkid-Signature value for body sent at t, with
// a v1 signature by each secret.
func SignatureHeader(t time.Time, body []byte, secrets ...[]byte) string {
	var b strings.Builder
	b.WriteString("t=")
	b.WriteString(strconv.FormatInt(t.Unix(), 10))
	for _, s := range secrets {
		b.WriteString(",v1=")
		b.WriteString(Sign(s, t, body))
	}
	return b.String()
}

// Errors of Verify.
var (
	ErrNoSignature  = errors.New("webhook: no valid signature")
	ErrBadTimestamp = errors.New("webhook: signature timestamp outside the tolerance")
	ErrBadHeader    = errors.New("webhook: malformed signature header")
)

// Verify checks a notice as a receiver should: header is the
// Pkid-Signature value, body the raw request body (before any JSON
// decoding), secret the receiver's secret. It accepts when some v1
// signature in the header is the HMAC of "t.body" under secret and t is
// within tolerance of now (DefaultTolerance when 0). t and v1 must be
// written as Sign writes them (decimal without sign or leading zeros,
// lowercase hex); anything else is malformed or ignored. Signatures are compared
// in constant time; unknown schemes (not v1) are ignored, so that a later
// scheme can be added beside v1.
func Verify(header string, body, secret []byte, now time.Time, tolerance time.Duration) error {
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	if len(header) > 1024 {
		return ErrBadHeader
	}
	var ts int64 = -1
	var sigs [][]byte
	for _, part := range strings.Split(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return ErrBadHeader
		}
		switch k {
		case "t":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 || ts != -1 || strconv.FormatInt(n, 10) != v {
				return ErrBadHeader
			}
			ts = n
		case "v1":
			// Only the form Sign writes, lowercase hex: a signature has one
			// spelling, so a receiver that remembers the signatures it has
			// seen (to refuse replays) cannot be passed the same one again
			// in other letters.
			if sig, err := hex.DecodeString(v); err == nil && len(sig) == sha256.Size && hex.EncodeToString(sig) == v {
				sigs = append(sigs, sig)
			}
		}
	}
	if ts == -1 {
		return ErrBadHeader
	}
	t := time.Unix(ts, 0)
	if d := now.Sub(t); d > tolerance || d < -tolerance {
		return ErrBadTimestamp
	}
	want, _ := hex.DecodeString(Sign(secret, t, body))
	for _, sig := range sigs {
		if hmac.Equal(sig, want) {
			return nil
		}
	}
	return ErrNoSignature
}
