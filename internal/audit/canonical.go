package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// HashSize is the length of content and chain hashes (SHA-256).
const HashSize = sha256.Size

// Record is one audit_events row as the chain hashes it: every column the
// trail stores, with NULL kept apart from the empty string so that turning
// one into the other is a change too.
type Record struct {
	ID         int64
	OccurredAt time.Time // the column has microsecond precision
	Actor      string
	Action     string
	Outcome    string
	AccountID  *string // the uuid in its canonical text form; nil for NULL
	Serial     *string
	RequestID  *string
	// Detail is the jsonb column as text (any JSON object text will do: the
	// encoding is canonicalised, so whitespace and key order do not count,
	// but every key, string and number literal does).
	Detail []byte
}

// Link is one link of the chain. An event link covers one id (LastID ==
// ID); a gap link covers ids ID..LastID that were handed out and never
// committed.
type Link struct {
	ID          int64
	LastID      int64
	Gap         bool
	ContentHash []byte
	ChainHash   []byte
}

// timeLayout is the canonical form of occurred_at: UTC, always six
// fractional digits.
const timeLayout = "2006-01-02T15:04:05.000000Z"

// Canonical returns the canonical encoding of r, the bytes its content hash
// is taken over (format version 1, docs/AUDIT.md): one JSON object, keys in
// byte order, no white space,
//
//	{"account_id":…,"action":…,"actor":…,"detail":…,"id":…,"occurred_at":…,"outcome":…,"request_id":…,"serial":…}
//
// where NULL columns are null, occurred_at is RFC 3339 in UTC with
// microseconds, and detail is the stored object re-encoded canonically
// (keys sorted by bytes, numbers as written, strings with only `"`, `\`
// and control characters escaped). It fails only when Detail is not JSON.
func Canonical(r Record) ([]byte, error) {
	detail, err := CanonicalJSON(r.Detail)
	if err != nil {
		return nil, fmt.Errorf("audit: event %d: %w", r.ID, err)
	}
	var b bytes.Buffer
	b.Grow(192 + len(detail) + len(r.Actor) + len(r.Action))
	b.WriteString(`{"account_id":`)
	writeNullable(&b, r.AccountID)
	b.WriteString(`,"action":`)
	writeString(&b, r.Action)
	b.WriteString(`,"actor":`)
	writeString(&b, r.Actor)
	b.WriteString(`,"detail":`)
	b.Write(detail)
	b.WriteString(`,"id":`)
	b.WriteString(strconv.FormatInt(r.ID, 10))
	b.WriteString(`,"occurred_at":`)
	writeString(&b, r.OccurredAt.UTC().Format(timeLayout))
	b.WriteString(`,"outcome":`)
	writeString(&b, r.Outcome)
	b.WriteString(`,"request_id":`)
	writeNullable(&b, r.RequestID)
	b.WriteString(`,"serial":`)
	writeNullable(&b, r.Serial)
	b.WriteByte('}')
	return b.Bytes(), nil
}

// ContentHash returns SHA-256 of Canonical(r).
func ContentHash(r Record) ([]byte, error) {
	enc, err := Canonical(r)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(enc)
	return sum[:], nil
}

// GapContent returns the canonical encoding of a gap over ids first..last,
// {"gap":{"first":F,"last":L}}. No event encodes to it: an event's
// encoding starts with "account_id".
func GapContent(first, last int64) []byte {
	return fmt.Appendf(nil, `{"gap":{"first":%d,"last":%d}}`, first, last)
}

// GapHash returns SHA-256 of GapContent(first, last).
func GapHash(first, last int64) []byte {
	sum := sha256.Sum256(GapContent(first, last))
	return sum[:]
}

// ChainHash returns SHA-256(prev || content): the chain hash of a link whose
// predecessor's chain hash is prev (nil or empty for the first link, which
// stands for 32 zero bytes).
func ChainHash(prev, content []byte) []byte {
	if len(prev) == 0 {
		prev = make([]byte, HashSize)
	}
	h := sha256.New()
	h.Write(prev)
	h.Write(content)
	return h.Sum(nil)
}

// CanonicalJSON re-encodes one JSON value canonically: objects with their
// keys in byte order (a repeated key keeps its last value, as jsonb does),
// no white space, numbers exactly as written, strings as writeString
// escapes them. Trailing data after the value is an error.
func CanonicalJSON(doc []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("detail is not JSON: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("detail has data after its JSON value")
	}
	var b bytes.Buffer
	b.Grow(len(doc))
	writeValue(&b, v)
	return b.Bytes(), nil
}

// writeValue writes v, as decoded with UseNumber, canonically.
func writeValue(b *bytes.Buffer, v any) {
	switch v := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		b.WriteString(strconv.FormatBool(v))
	case json.Number:
		b.WriteString(string(v))
	case string:
		writeString(b, v)
	case []any:
		b.WriteByte('[')
		for i, e := range v {
			if i > 0 {
				b.WriteByte(',')
			}
			writeValue(b, e)
		}
		b.WriteByte(']')
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			writeString(b, k)
			b.WriteByte(':')
			writeValue(b, v[k])
		}
		b.WriteByte('}')
	default:
		// encoding/json with UseNumber produces only the types above.
		panic(fmt.Sprintf("audit: unexpected JSON value of type %T", v))
	}
}

// writeString writes s as a JSON string, escaping only what JSON requires:
// `"` and `\` with a backslash, control characters below U+0020 as \u00xx
// (lowercase hex). Everything else, including non-ASCII, is written as its
// UTF-8 bytes; an invalid byte becomes U+FFFD (Postgres text cannot hold
// one). Runs of bytes that need nothing are copied whole.
func writeString(b *bytes.Buffer, s string) {
	const hex = "0123456789abcdef"
	b.WriteByte('"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			i++
			if c >= 0x20 && c != '"' && c != '\\' {
				continue
			}
			b.WriteString(s[start : i-1])
			if c == '"' || c == '\\' {
				b.WriteByte('\\')
				b.WriteByte(c)
			} else {
				b.WriteString(`\u00`)
				b.WriteByte(hex[c>>4])
				b.WriteByte(hex[c&0xf])
			}
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b.WriteString(s[start:i])
			b.WriteString("\uFFFD")
			start = i + 1
		}
		i += size
	}
	b.WriteString(s[start:])
	b.WriteByte('"')
}

// writeNullable writes s as a string, or null when s is nil.
func writeNullable(b *bytes.Buffer, s *string) {
	if s == nil {
		b.WriteString("null")
		return
	}
	writeString(b, *s)
}
