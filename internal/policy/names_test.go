package policy

import (
	"errors"
	"strings"
	"testing"

	"github.com/pkid/pkid/internal/pki"
)

func TestCheckDNSName(t *testing.T) {
	allow := Limits{AllowWildcards: true}
	cases := []struct {
		name string
		in   string
		lim  Limits
		kind pki.Kind // "" means accepted
	}{
		{"plain", "svc.example.com", Limits{}, ""},
		{"two labels", "example.com", Limits{}, ""},
		{"digits in labels", "1a.2b.example", Limits{}, ""},
		{"numeric non-final label", "10.svc.example", Limits{}, ""},
		{"A-label", "xn--bcher-kva.example", Limits{}, ""},
		{"A-label Cyrillic", "xn--e1afmkfd.xn--p1ai", Limits{}, ""},
		{"inner hyphens", "a-b--c.example", Limits{}, ""},
		{"wildcard allowed", "*.svc.example.com", allow, ""},
		{"wildcard refused", "*.svc.example.com", Limits{}, pki.KindRejectedIdentifier},
		{"empty", "", Limits{}, pki.KindBadCSR},
		{"NUL", "a\x00.example", Limits{}, pki.KindBadCSR},
		{"space", "a .example", Limits{}, pki.KindBadCSR},
		{"tab", "a\t.example", Limits{}, pki.KindBadCSR},
		{"upper case", "A.example", Limits{}, pki.KindBadCSR},
		{"underscore", "a_b.example", Limits{}, pki.KindBadCSR},
		{"U-label", "bücher.example", Limits{}, pki.KindBadCSR},
		{"invalid UTF-8", "a\xff.example", Limits{}, pki.KindBadCSR},
		{"trailing dot", "example.com.", Limits{}, pki.KindBadCSR},
		{"only a dot", ".", Limits{}, pki.KindBadCSR},
		{"single label", "example", Limits{}, pki.KindBadCSR},
		{"label 64", strings.Repeat("a", 64) + ".example", Limits{}, pki.KindBadCSR},
		{"name 254", strings.Repeat("a.", 125) + "abcd", Limits{}, pki.KindBadCSR},
		{"all-numeric last label", "svc.example.123", Limits{}, pki.KindBadCSR},
		{"IPv4", "127.0.0.1", Limits{}, pki.KindBadCSR},
		{"IPv6", "::1", Limits{}, pki.KindBadCSR},
		{"slash", "a/b.example", Limits{}, pki.KindBadCSR},
		{"R-LDH", "ab--c.example", Limits{}, pki.KindBadCSR},
		{"bad punycode", "xn--zz.example", Limits{}, pki.KindBadCSR},
		{"punycode decoding to ASCII", "xn--abc-.example", Limits{}, pki.KindBadCSR},
		{"punycode of a disallowed code point", "xn--a-ecp.example", Limits{}, pki.KindBadCSR},
		{"upper-case A-label", "xn--Bcher-kva.example", Limits{}, pki.KindBadCSR},
		{"wildcard alone", "*", allow, pki.KindBadCSR},
		{"wildcard dot", "*.", allow, pki.KindBadCSR},
		{"wildcard over TLD", "*.com", allow, pki.KindBadCSR},
		{"two wildcards", "*.*.example.com", allow, pki.KindBadCSR},
		{"partial wildcard", "f*.example.com", allow, pki.KindBadCSR},
		{"wildcard suffix", "*f.example.com", allow, pki.KindBadCSR},
		{"inner wildcard", "a.*.example.com", allow, pki.KindBadCSR},
		{"double star", "**.example.com", allow, pki.KindBadCSR},
		{"wildcard over numeric", "*.10.0.0.1", allow, pki.KindBadCSR},
		{"malformed wildcard without grant is still 400", "*.*.example.com", Limits{}, pki.KindBadCSR},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckDNSName(tc.in, tc.lim)
			switch {
			case tc.kind == "":
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
			case tc.kind == pki.KindRejectedIdentifier:
				var pe *pki.PolicyError
				if !errors.As(err, &pe) || pe.Kind != tc.kind {
					t.Fatalf("CheckDNSName = %v, want PolicyError %s", err, tc.kind)
				}
			default:
				var re *pki.RequestError
				if !errors.As(err, &re) || re.Kind != tc.kind {
					t.Fatalf("CheckDNSName = %v, want RequestError %s", err, tc.kind)
				}
				if len(tc.in) >= 4 && strings.Contains(re.Detail, tc.in) {
					t.Fatalf("detail %q echoes the name", re.Detail)
				}
			}
		})
	}
}

func TestCheckCommonName(t *testing.T) {
	cases := []struct {
		name string
		in   string
		ok   bool
	}{
		{"ascii", "build-agent-7", true},
		{"inner spaces", "Billing API (prod)", true},
		{"DNS-like", "svc.example.com", true},
		{"accented", "Zoë's laptop", true},
		{"CJK", "支払いサービス", true},
		{"64 characters", strings.Repeat("x", 64), true},
		{"64 four-byte characters", strings.Repeat("𝄞", 64), true},
		{"empty", "", false},
		{"65 characters", strings.Repeat("x", 65), false},
		{"65 four-byte characters", strings.Repeat("𝄞", 65), false},
		{"NUL", "a\x00b", false},
		{"newline", "a\nb", false},
		{"tab", "a\tb", false},
		{"DEL", "a\x7fb", false},
		{"C1 control", "a\u0085b", false},
		{"no-break space", "a\u00a0b", false},
		{"zero-width space", "a\u200bb", false},
		{"bidi override", "a\u202eb", false},
		{"invalid UTF-8", "a\xffb", false},
		{"leading space", " a", false},
		{"trailing space", "a ", false},
		{"IPv4", "10.0.0.1", false},
		{"IPv6", "fe80::1", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckCommonName(tc.in)
			if tc.ok {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var re *pki.RequestError
			if !errors.As(err, &re) || re.Kind != pki.KindBadCSR {
				t.Fatalf("CheckCommonName = %v, want badCSR", err)
			}
		})
	}
}

func TestDefaultLimits(t *testing.T) {
	lim := DefaultLimits()
	if lim.MaxDNSNames != 100 || lim.AllowWildcards {
		t.Fatalf("DefaultLimits() = %+v", lim)
	}
	if (Limits{}).maxDNSNames() != 100 || (Limits{MaxDNSNames: -1}).maxDNSNames() != 100 {
		t.Fatal("a non-positive MaxDNSNames must mean the default")
	}
}
