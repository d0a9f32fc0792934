package store

import (
	"encoding/json"
	"testing"
	"time"
)

// awkwardStrings are strings whose JSON needs escapes of every kind
// encoding/json writes.
var awkwardStrings = []string{
	"", "plain", `quote " backslash \ slash /`, "<script>&amp;</script>",
	"\x00\x01\x07\b\t\n\v\f\r\x1b\x1f\x7f", "caf\u00e9 \u4e16\u754c \U0001F600",
	"line\u2028para\u2029end", "bad \xff utf-8 \xc3", "\xed\xa0\x80 surrogate", "\xef\xbf\xbd real U+FFFD",
}

// TestAppendDetail checks appendDetail against json.Marshal, byte for
// byte, on the shapes the use cases write and on awkward strings, and that
// it declines what it does not write.
func TestAppendDetail(t *testing.T) {
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		paris = time.FixedZone("CET", 3600)
	}
	now := time.Date(2026, 11, 27, 2, 51, 7, 123456789, time.UTC)
	details := []map[string]any{
		{},
		{"fingerprint_sha256": "5f2a9c3e4b1d0a8f7e6c5b4a3928172635f4e3d2c1b0a9f8e7d6c5b4a3928170"},
		{"issuer": "5f2a", "spki_sha256": "aa", "common_name": "client.example", "dns_names": []string{"a.example", "b.example"},
			"uri_sans": []string{}, "not_before": now, "not_after": now.Add(90 * 24 * time.Hour)},
		{"nil list": []string(nil), "utc second": now.Truncate(time.Second), "paris": now.In(paris),
			"fixed": now.In(time.FixedZone("", -(5*3600 + 30*60))), "zero": time.Time{}, "year 9999": time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)},
	}
	for _, s := range awkwardStrings {
		details = append(details, map[string]any{s: s, "list " + s: []string{s, s}})
	}
	for _, d := range details {
		want, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := appendDetail(nil, d)
		if !ok || string(got) != string(want) {
			t.Errorf("appendDetail(%q) = %s, %v; want %s", d, got, ok, want)
		}
	}
	for _, v := range []any{42, true, nil, []any{"x"}, map[string]any{}, time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)} {
		if got, ok := appendDetail(nil, map[string]any{"k": "v", "x": v}); ok {
			t.Errorf("appendDetail with a %T = %s, want it declined", v, got)
		}
	}
}

func FuzzAppendJSONString(f *testing.F) {
	for _, s := range awkwardStrings {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendJSONString(nil, s); string(got) != string(want) {
			t.Errorf("appendJSONString(%q) = %s, want %s", s, got, want)
		}
	})
}

// BenchmarkDetailJSON encodes the detail of a certificate.signing event,
// the larger of the two events of every issuance.
func BenchmarkDetailJSON(b *testing.B) {
	now := time.Now()
	d := map[string]any{"issuer": "5f2a9c3e4b1d0a8f7e6c5b4a3928172635f4e3d2c1b0a9f8e7d6c5b4a3928170",
		"spki_sha256": "0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c", "common_name": "client-1234.example.com",
		"dns_names": []string{"client-1234.example.com"}, "uri_sans": []string{}, "not_before": now, "not_after": now.Add(time.Hour)}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := detailJSON(d); err != nil {
			b.Fatal(err)
		}
	}
}
