package webhook

import (
	"net/url"
	"strings"
	"testing"
	"time"
)

// FuzzCheckURL: whatever an administrator sends, CheckURL does not panic,
// and what it accepts is an absolute https URL (or http to a loopback host
// under the development setting) without user information or fragment,
// within the length limit.
func FuzzCheckURL(f *testing.F) {
	for _, s := range []string{"https://hooks.example.com/pkid?x=1", "http://127.0.0.1:8080/", "https://[::1]/",
		"https://u:p@h/", "https://h/#f", "javascript:x", "https://10.0.0.1/", "https://[64:ff9b::a00:1]/", "https://h:99999/"} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, raw string, dev bool) {
		p := TargetPolicy{AllowHTTPLocalhost: dev}
		if p.CheckURL(raw) != nil {
			return
		}
		u, err := url.Parse(raw)
		switch {
		case err != nil:
			t.Fatalf("accepted %q, which does not parse: %v", raw, err)
		case len(raw) > MaxURLLength, u.User != nil, u.Host == "", strings.Contains(raw, "#"):
			t.Fatalf("accepted %q", raw)
		case u.Scheme != "https" && !(dev && u.Scheme == "http"):
			t.Fatalf("accepted scheme %q in %q", u.Scheme, raw)
		}
	})
}

// FuzzVerify: a receiver's Verify never panics on any header, and accepts
// only what Sign made.
func FuzzVerify(f *testing.F) {
	at := time.Unix(1_700_000_000, 0)
	f.Add(SignatureHeader(at, []byte("{}"), []byte("k")), []byte("{}"))
	f.Add("t=1700000000,v1=zz,v1=", []byte(""))
	f.Add(",,,=,t=", []byte("x"))
	f.Fuzz(func(t *testing.T, header string, body []byte) {
		if Verify(header, body, []byte("k"), at, 0) == nil && !strings.Contains(header, Sign([]byte("k"), at, body)) {
			t.Fatalf("accepted %q for %q without its signature", header, body)
		}
	})
}
