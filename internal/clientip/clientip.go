// Package clientip tells which client a request comes from, for the limits
// that count per client address: the connection's peer, or, when that peer
// is a proxy the operator trusts, the client that the proxy names in
// X-Forwarded-For. Nobody else's X-Forwarded-For is believed, since any
// client can send one and would otherwise choose its own address.
package clientip

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// maxHops bounds how many X-Forwarded-For entries Addr reads: more than any
// real chain of proxies, few enough that a header stuffed with trusted
// addresses costs next to nothing.
const maxHops = 16

// Resolver finds a request's client address. The zero value trusts no
// proxy.
type Resolver struct {
	trusted []netip.Prefix
}

// New returns a Resolver that believes X-Forwarded-For only on connections
// from addresses within trusted (the operator's load balancers and reverse
// proxies).
func New(trusted []netip.Prefix) *Resolver {
	return &Resolver{trusted: trusted}
}

// ParsePrefixes parses a comma-separated list of CIDR prefixes and bare
// addresses (a bare address is its own /32 or /128). A prefix with bits set
// past its length ("10.0.0.1/8") is refused rather than guessed at.
func ParsePrefixes(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !strings.Contains(f, "/") {
			a, err := netip.ParseAddr(f)
			if err != nil || a.Zone() != "" {
				return nil, fmt.Errorf("clientip: %q is neither an IP address nor a CIDR prefix", f)
			}
			a = a.Unmap()
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("clientip: %q is not a CIDR prefix", f)
		}
		if p != p.Masked() {
			return nil, fmt.Errorf("clientip: %q has bits set past its length; did you mean %s?", f, p.Masked())
		}
		out = append(out, p)
	}
	return out, nil
}

// Addr returns the address of r's client: the peer of the connection
// (r.RemoteAddr) unless that peer is trusted, in which case X-Forwarded-For
// is read from the right, the last proxy's entry first, and the first entry
// that is not itself a trusted proxy is the client. An entry that is not an
// address stops the walk at the last address a trusted proxy vouched for.
// Addr returns the zero Addr when RemoteAddr holds no IP address (a Unix
// socket): such requests all count as one client.
func (res *Resolver) Addr(r *http.Request) netip.Addr {
	peer := parseHost(r.RemoteAddr)
	if !res.trusts(peer) {
		return peer
	}
	hop := peer
	vals := r.Header.Values("X-Forwarded-For")
	n := 0
	for i := len(vals) - 1; i >= 0; i-- {
		list := vals[i]
		for list != "" {
			if n++; n > maxHops {
				return hop
			}
			entry := list
			if j := strings.LastIndexByte(list, ','); j >= 0 {
				entry, list = list[j+1:], list[:j]
			} else {
				list = ""
			}
			a := parseHop(strings.TrimSpace(entry))
			if !a.IsValid() {
				return hop
			}
			if !res.trusts(a) {
				return a
			}
			hop = a
		}
	}
	return hop
}

func (res *Resolver) trusts(a netip.Addr) bool {
	if res == nil || !a.IsValid() {
		return false
	}
	for _, p := range res.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// parseHost parses RemoteAddr, "host:port" as net/http sets it.
func parseHost(remote string) netip.Addr {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return a.WithZone("").Unmap()
}

// parseHop parses one X-Forwarded-For entry: an address, or an address with
// a port as some proxies write it ("192.0.2.1:4711", "[2001:db8::1]:4711").
func parseHop(s string) netip.Addr {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.WithZone("").Unmap()
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().WithZone("").Unmap()
	}
	return netip.Addr{}
}

// Prefix returns the block of addresses that one client is taken to hold,
// which is what per-address limits count: an IPv4 address on its own, an
// IPv6 address by its /64, since a single host or home is routinely given a
// whole /64 and could otherwise step through 2^64 addresses to escape a
// limit (or fill a limiter's memory). The zero Addr gives the zero Prefix.
func Prefix(a netip.Addr) netip.Prefix {
	if !a.IsValid() {
		return netip.Prefix{}
	}
	if a.Is4() {
		return netip.PrefixFrom(a, 32)
	}
	p, _ := a.Prefix(64)
	return p
}
