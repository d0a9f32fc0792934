package keystore

import (
	"errors"
	"fmt"
	"strings"
)

// keyURI is the part of an RFC 7512 PKCS#11 URI that pkid writes and reads:
// the token's label, the key's CKA_LABEL and CKA_ID, and type=private. The
// PIN is never part of it (RFC 7512 allows pin-value; pkid refuses it).
type keyURI struct {
	Token  string
	Object string
	ID     []byte
}

// maxURI bounds what parseKeyURI reads: the database is trusted, but a
// bound costs nothing.
const maxURI = 1024

// String encodes u as pkcs11:token=…;object=…;id=…;type=private, every
// byte outside RFC 3986's unreserved set percent-encoded (RFC 7512 §2.3),
// the ID entirely.
func (u keyURI) String() string {
	var b strings.Builder
	b.WriteString("pkcs11:token=")
	escape(&b, []byte(u.Token), false)
	b.WriteString(";object=")
	escape(&b, []byte(u.Object), false)
	b.WriteString(";id=")
	escape(&b, u.ID, true)
	b.WriteString(";type=private")
	return b.String()
}

func escape(b *strings.Builder, v []byte, all bool) {
	const hexDigits = "0123456789ABCDEF"
	for _, c := range v {
		unreserved := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~'
		if unreserved && !all {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&15])
	}
}

// parseKeyURI reads what keyURI.String writes (attributes in any order). It
// refuses query attributes, pin-value and every path attribute pkid does
// not write, so that a reference means one thing only.
func parseKeyURI(s string) (keyURI, error) {
	var u keyURI
	bad := func(why string) (keyURI, error) {
		return keyURI{}, fmt.Errorf("keystore: bad PKCS#11 key URI: %s", why)
	}
	if len(s) > maxURI {
		return bad("too long")
	}
	rest, ok := strings.CutPrefix(s, "pkcs11:")
	if !ok {
		return bad(`no "pkcs11:" scheme`)
	}
	if strings.ContainsAny(rest, "?#") {
		return bad("query attributes (pin-value, module-path, …) are not accepted")
	}
	seen := map[string]bool{}
	for _, attr := range strings.Split(rest, ";") {
		name, raw, ok := strings.Cut(attr, "=")
		if !ok {
			return bad(fmt.Sprintf("attribute %q has no value", attr))
		}
		if seen[name] {
			return bad(fmt.Sprintf("attribute %q given twice", name))
		}
		seen[name] = true
		v, err := unescape(raw)
		if err != nil {
			return bad(err.Error())
		}
		switch name {
		case "token":
			u.Token = string(v)
		case "object":
			u.Object = string(v)
		case "id":
			u.ID = v
		case "type":
			if string(v) != "private" {
				return bad(fmt.Sprintf("type %q is not private", v))
			}
		default:
			return bad(fmt.Sprintf("attribute %q is not one pkid writes", name))
		}
	}
	if u.Token == "" || len(u.ID) == 0 {
		return bad("token and id are required")
	}
	return u, nil
}

func unescape(s string) ([]byte, error) {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '%':
			if i+2 >= len(s) {
				return nil, errors.New("truncated percent-encoding")
			}
			hi, lo := unhex(s[i+1]), unhex(s[i+2])
			if hi < 0 || lo < 0 {
				return nil, errors.New("bad percent-encoding")
			}
			out = append(out, byte(hi<<4|lo))
			i += 2
		case c < 0x21 || c > 0x7e || c == '/' || c == '"' || c == '<' || c == '>' || c == '\\' || c == '^' || c == '`' || c == '{' || c == '|' || c == '}':
			return nil, fmt.Errorf("character %q must be percent-encoded", c)
		default:
			out = append(out, c)
		}
	}
	return out, nil
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}
