package webhook

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pkid/pkid/internal/pki"
)

// MaxURLLength bounds a webhook URL, in bytes.
const MaxURLLength = 2048

// TargetPolicy says which webhook targets pkid accepts and may connect to.
type TargetPolicy struct {
	// AllowPrivateNetworks lets webhooks reach loopback, private (RFC 1918,
	// RFC 4193), link-local, shared (RFC 6598) and other non-global
	// addresses. Off by default: a webhook URL should not be a way to reach
	// the CA's own network, its metadata service or its database.
	// Deployments whose receivers are internal services turn it on.
	AllowPrivateNetworks bool
	// AllowHTTPLocalhost accepts plain-http URLs whose host is localhost or
	// a loopback address, and lets the dialer reach loopback addresses, for
	// development. Every other URL must be https.
	AllowHTTPLocalhost bool
}

// CheckURL validates a webhook URL: printable ASCII (IDNs as A-labels), at
// most MaxURLLength bytes, absolute https (or http to localhost when the
// policy allows it) with a host, no user information, no fragment, a port
// in range, and, when the host is an IP address, one the policy lets pkid
// connect to. Host names are checked again at every connection, on the
// addresses they resolve to.
func (p TargetPolicy) CheckURL(raw string) error {
	if raw == "" || len(raw) > MaxURLLength {
		return pki.Malformed(`"url" must be 1 to %d bytes`, MaxURLLength)
	}
	for i := 0; i < len(raw); i++ {
		if raw[i] <= ' ' || raw[i] > '~' {
			return pki.Malformed(`"url" must be printable ASCII without spaces (write international names as xn-- A-labels)`)
		}
	}
	if strings.ContainsRune(raw, '#') {
		return pki.Malformed(`"url" must not have a fragment`)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return pki.Malformed(`"url" is not a URL`)
	}
	if u.User != nil {
		return pki.Malformed(`"url" must not contain user information (user:password@): pkid signs its notices instead`)
	}
	if u.Opaque != "" || u.Host == "" {
		return pki.Malformed(`"url" must be an absolute URL with a host, such as https://hooks.example.com/pkid`)
	}
	host := u.Hostname()
	if port := u.Port(); port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return pki.Malformed(`"url" has a port out of range`)
		}
	} else if strings.HasSuffix(u.Host, ":") {
		return pki.Malformed(`"url" has an empty port`)
	}
	addr, isIP := parseHostIP(host)
	switch {
	case strings.Contains(host, "%"):
		return pki.Malformed(`"url" must not name an IPv6 zone`)
	case !isIP && !validHostname(host):
		return pki.Malformed(`"url" has an invalid host name`)
	}
	loopback := strings.EqualFold(host, "localhost") || (isIP && addr.IsLoopback())
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && p.AllowHTTPLocalhost && loopback:
	case u.Scheme == "http" && loopback:
		return pki.Malformed(`"url" must be https (plain http to localhost is for development, with PKID_WEBHOOK_ALLOW_HTTP_LOCALHOST)`)
	default:
		return pki.Malformed(`"url" must be https`)
	}
	if isIP {
		if err := p.checkIP(addr); err != nil {
			return pki.Malformed(`"url" %s`, err.Error())
		}
	}
	return nil
}

// parseHostIP parses an IP literal host (url.Hostname strips IPv6 brackets).
func parseHostIP(host string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(host)
	return a, err == nil
}

// validHostname checks DNS syntax: dot-separated labels of letters, digits
// and hyphens, 1 to 63 bytes each, not starting or ending with a hyphen, at
// most 253 bytes in all (a final dot allowed).
func validHostname(h string) bool {
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// Address ranges that are not on the public internet and are not caught by
// netip.Addr's own predicates.
var nonGlobal = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network" (RFC 1122)
	netip.MustParsePrefix("100.64.0.0/10"),   // shared address space, carrier-grade NAT (RFC 6598)
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments (RFC 6890)
	netip.MustParsePrefix("192.0.2.0/24"),    // documentation (RFC 5737)
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking (RFC 2544)
	netip.MustParsePrefix("198.51.100.0/24"), // documentation
	netip.MustParsePrefix("203.0.113.0/24"),  // documentation
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, and the broadcast address
	netip.MustParsePrefix("100::/64"),        // discard (RFC 6666)
	netip.MustParsePrefix("2001::/32"),       // Teredo: tunnels to an IPv4 address that cannot be checked
	netip.MustParsePrefix("2001:db8::/32"),   // documentation (RFC 3849)
	netip.MustParsePrefix("2002::/16"),       // 6to4: likewise
}

// nat64 is the well-known NAT64 prefix (RFC 6052): the IPv4 address it
// embeds is the one reached, and is checked instead.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// checkIP says whether pkid may connect to a. Unspecified and multicast
// addresses are never a webhook; loopback is allowed by either setting of
// the policy, and every other non-global address by AllowPrivateNetworks.
func (p TargetPolicy) checkIP(a netip.Addr) error {
	a = a.Unmap()
	if nat64.Contains(a) {
		b := a.As16()
		a = netip.AddrFrom4([4]byte(b[12:16]))
	}
	switch {
	case a.IsUnspecified() || a.IsMulticast():
		return fmt.Errorf("points at %s, an unspecified or multicast address", a)
	case a.IsLoopback():
		if p.AllowPrivateNetworks || p.AllowHTTPLocalhost {
			return nil
		}
		return fmt.Errorf("points at %s, a loopback address (allowed with PKID_WEBHOOK_ALLOW_PRIVATE_NETWORKS)", a)
	case p.AllowPrivateNetworks:
		return nil
	case a.IsPrivate(), a.IsLinkLocalUnicast(), a.IsLinkLocalMulticast(), a.IsInterfaceLocalMulticast():
		return fmt.Errorf("points at %s, a private or link-local address (allowed with PKID_WEBHOOK_ALLOW_PRIVATE_NETWORKS)", a)
	}
	for _, n := range nonGlobal {
		if n.Contains(a) {
			return fmt.Errorf("points at %s, which is not a public address (allowed with PKID_WEBHOOK_ALLOW_PRIVATE_NETWORKS)", a)
		}
	}
	return nil
}

// errRefusedAddress marks a connection the dialer refused by policy.
var errRefusedAddress = errors.New("webhook: refused address")

// Bounds of one delivery.
const (
	// DefaultTimeout bounds a whole attempt: connecting, TLS, sending and
	// reading the answer.
	DefaultTimeout = 10 * time.Second
	// connectTimeout bounds the TCP connection and, separately, the TLS
	// handshake.
	connectTimeout = 5 * time.Second
	// maxResponseRead is how much of an answer's body is read (and thrown
	// away, so that the connection can be reused); the rest is not read.
	maxResponseRead = 64 << 10
	// maxResponseHeader bounds an answer's headers.
	maxResponseHeader = 16 << 10
)

// newClient returns the HTTP client notices go out with: no proxy (a
// notice goes to the address the administrator named, or nowhere), no
// redirects (a 3xx is a failed attempt: a redirect could lead anywhere,
// including where the policy forbids), TLS 1.2 or later verified against
// roots (the system's when nil), bounded times and header sizes, and a
// dialer that checks every address it connects to against the policy, after
// DNS resolution, so that a name that resolves to a forbidden address (at
// once, or only later) is refused.
func newClient(p TargetPolicy, timeout time.Duration, roots *x509.CertPool) *http.Client {
	dialer := &net.Dialer{
		Timeout: connectTimeout,
		Control: func(network, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("%w: %s", errRefusedAddress, address)
			}
			if err := p.checkIP(ap.Addr()); err != nil {
				return fmt.Errorf("%w: %s", errRefusedAddress, err.Error())
			}
			return nil
		},
	}
	transport := &http.Transport{
		Proxy:                  nil,
		DialContext:            dialer.DialContext,
		TLSClientConfig:        &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots},
		TLSHandshakeTimeout:    connectTimeout,
		ResponseHeaderTimeout:  timeout,
		MaxResponseHeaderBytes: maxResponseHeader,
		MaxIdleConnsPerHost:    2,
		IdleConnTimeout:        30 * time.Second,
		ForceAttemptHTTP2:      true,
	}
	return &http.Client{
		Transport: transport,
		Timeout:   timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// attemptError describes a failed attempt for the record, without the
// receiver's words (its body is not kept) and without the URL's query.
func attemptError(ctx context.Context, err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	switch {
	case errors.Is(err, errRefusedAddress):
		return err.Error()
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded):
		return "timed out"
	}
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		return "timed out"
	}
	return err.Error()
}

// redactURL returns u without its query, for logs and the audit trail: a
// receiver may take a token in the query, which is the receiver's secret.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	u.RawQuery, u.ForceQuery, u.Fragment, u.User = "", false, "", nil
	return u.String()
}
