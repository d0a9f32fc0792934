package store

import (
	"slices"
	"time"
	"unicode/utf8"
)

// Audit details are written twice per issuance, and json.Marshal of a
// map[string]any (reflection over each value, sorting the keys, time.Time
// through its MarshalJSON and a validity scan of what that returns) was
// about 1% of pkid's CPU per certificate. appendDetail writes the detail
// maps the use cases build, whose values are strings, lists of strings and
// times, byte for byte as json.Marshal does (detailjson_test.go compares
// the two); a detail holding anything else goes to json.Marshal.

// appendDetail appends detail's JSON to b and reports whether it could:
// false when a value is of a type it does not write.
func appendDetail(b []byte, detail map[string]any) ([]byte, bool) {
	keys := make([]string, 0, len(detail))
	for k, v := range detail {
		switch v := v.(type) {
		case string, []string:
		case time.Time:
			if y := v.Year(); y < 0 || y > 9999 {
				return b, false // json.Marshal fails on it: let it say why
			}
		default:
			return b, false
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, k)
		b = append(b, ':')
		switch v := detail[k].(type) {
		case string:
			b = appendJSONString(b, v)
		case []string:
			if v == nil {
				b = append(b, "null"...)
				break
			}
			b = append(b, '[')
			for j, s := range v {
				if j > 0 {
					b = append(b, ',')
				}
				b = appendJSONString(b, s)
			}
			b = append(b, ']')
		case time.Time:
			b = append(b, '"')
			b = v.AppendFormat(b, time.RFC3339Nano)
			b = append(b, '"')
		}
	}
	return append(b, '}'), true
}

// appendJSONString appends s as encoding/json writes a string: HTML
// characters, control characters, U+2028 and U+2029 escaped, invalid UTF-8
// replaced by U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
