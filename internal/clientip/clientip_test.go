package clientip

import (
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

func TestParsePrefixes(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
		bad  bool
	}{
		{in: "", want: nil},
		{in: "10.0.0.0/8, 192.0.2.7 ,2001:db8::/32", want: []string{"10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32"}},
		{in: "::1", want: []string{"::1/128"}},
		{in: "::ffff:192.0.2.1", want: []string{"192.0.2.1/32"}},
		{in: "10.0.0.1/8", bad: true},
		{in: "10.0.0.0/33", bad: true},
		{in: "proxy.example", bad: true},
		{in: "fe80::1%eth0", bad: true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParsePrefixes(tc.in)
			if tc.bad {
				if err == nil {
					t.Fatalf("ParsePrefixes(%q) = %v, want an error", tc.in, got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i].String() != tc.want[i] {
					t.Errorf("prefix %d: %s, want %s", i, got[i], tc.want[i])
				}
			}
		})
	}
}

// TestAddr: X-Forwarded-For is believed only from a trusted peer, read from
// the right, and the first entry that is not a trusted proxy is the client.
func TestAddr(t *testing.T) {
	trusted, err := ParsePrefixes("10.0.0.0/8, 2001:db8:ffff::/48")
	if err != nil {
		t.Fatal(err)
	}
	res := New(trusted)
	for _, tc := range []struct {
		name   string
		remote string
		xff    []string
		want   string
	}{
		{name: "untrusted peer, no header", remote: "192.0.2.1:5000", want: "192.0.2.1"},
		{name: "untrusted peer's header ignored", remote: "192.0.2.1:5000", xff: []string{"198.51.100.9"}, want: "192.0.2.1"},
		{name: "trusted peer, no header", remote: "10.1.2.3:5000", want: "10.1.2.3"},
		{name: "trusted peer names the client", remote: "10.1.2.3:5000", xff: []string{"198.51.100.9"}, want: "198.51.100.9"},
		{name: "client-forged entries left of the real one", remote: "10.1.2.3:5000",
			xff: []string{"203.0.113.66, 198.51.100.9"}, want: "198.51.100.9"},
		{name: "chain of trusted proxies", remote: "10.1.2.3:5000",
			xff: []string{"203.0.113.66, 198.51.100.9, 10.9.9.9"}, want: "198.51.100.9"},
		{name: "several header lines are one list", remote: "10.1.2.3:5000",
			xff: []string{"203.0.113.66", "198.51.100.9, 10.9.9.9"}, want: "198.51.100.9"},
		{name: "only trusted hops", remote: "10.1.2.3:5000", xff: []string{"10.0.0.1, 10.0.0.2"}, want: "10.0.0.1"},
		{name: "garbage stops at the last vouched hop", remote: "10.1.2.3:5000", xff: []string{"198.51.100.9, unknown"}, want: "10.1.2.3"},
		{name: "empty entry stops too", remote: "10.1.2.3:5000", xff: []string{"198.51.100.9, "}, want: "10.1.2.3"},
		{name: "entry with a port", remote: "10.1.2.3:5000", xff: []string{"198.51.100.9:4711"}, want: "198.51.100.9"},
		{name: "IPv6 entry with a port", remote: "10.1.2.3:5000", xff: []string{"[2001:db8::5]:4711"}, want: "2001:db8::5"},
		{name: "IPv4-mapped peer", remote: "[::ffff:10.1.2.3]:5000", xff: []string{"::ffff:198.51.100.9"}, want: "198.51.100.9"},
		{name: "IPv6 trusted proxy", remote: "[2001:db8:ffff:1::1]:443", xff: []string{"2001:db8:1::7"}, want: "2001:db8:1::7"},
		{name: "zone dropped", remote: "[fe80::1%eth0]:5000", want: "fe80::1"},
		{name: "no IP in RemoteAddr", remote: "@", want: "invalid IP"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = tc.remote
			for _, v := range tc.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := res.Addr(r).String(); got != tc.want {
				t.Errorf("Addr = %s, want %s", got, tc.want)
			}
		})
	}
}

// TestAddrBoundedWalk: a header stuffed with trusted addresses is read for
// at most maxHops entries.
func TestAddrBoundedWalk(t *testing.T) {
	res := New([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")})
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "10.0.0.1:5000"
	v := "198.51.100.9"
	for range 1000 {
		v += ", 10.0.0.2"
	}
	r.Header.Set("X-Forwarded-For", v)
	if got := res.Addr(r).String(); got != "10.0.0.2" {
		t.Errorf("Addr = %s, want the last hop read, 10.0.0.2", got)
	}
}

func TestNoTrust(t *testing.T) {
	for _, res := range []*Resolver{nil, New(nil)} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = "192.0.2.1:5000"
		r.Header.Set("X-Forwarded-For", "198.51.100.9")
		if got := res.Addr(r).String(); got != "192.0.2.1" {
			t.Errorf("Addr = %s, want the peer", got)
		}
	}
}

func TestPrefix(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1":            "192.0.2.1/32",
		"2001:db8:1:2:3:4:5:6": "2001:db8:1:2::/64",
		"2001:db8:1:2:ffff::1": "2001:db8:1:2::/64",
		"2001:db8:1:3::1":      "2001:db8:1:3::/64",
		"::1":                  "::/64",
	} {
		if got := Prefix(netip.MustParseAddr(in)).String(); got != want {
			t.Errorf("Prefix(%s) = %s, want %s", in, got, want)
		}
	}
	if p := Prefix(netip.Addr{}); p.IsValid() {
		t.Errorf("Prefix of the zero Addr = %s", p)
	}
}

// FuzzAddr: whatever X-Forwarded-For holds, Addr does not panic, an
// untrusted peer is always its own client, and a trusted peer's answer is
// the peer or an address written in the header.
func FuzzAddr(f *testing.F) {
	f.Add("10.0.0.1:5000", "198.51.100.9, 10.0.0.2")
	f.Add("192.0.2.1:5000", "198.51.100.9")
	f.Add("10.0.0.1:5000", "[2001:db8::1]:80,,unknown, 10.9.9.9")
	f.Add("[::ffff:10.0.0.1]:1", "::ffff:203.0.113.1%eth0")
	res := New([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")})
	f.Fuzz(func(t *testing.T, remote, xff string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = remote
		r.Header.Set("X-Forwarded-For", xff)
		got := res.Addr(r)
		peer := parseHost(remote)
		if !res.trusts(peer) {
			if got != peer {
				t.Fatalf("untrusted peer %q answered %s", remote, got)
			}
			return
		}
		if got == peer {
			return
		}
		for _, e := range strings.Split(xff, ",") {
			if parseHop(strings.TrimSpace(e)) == got {
				return
			}
		}
		t.Fatalf("Addr = %s: neither the peer %s nor in %q", got, peer, xff)
	})
}
