package webhook

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pkid/pkid/internal/pki"
)

func TestCheckURL(t *testing.T) {
	prod := TargetPolicy{}
	dev := TargetPolicy{AllowHTTPLocalhost: true}
	private := TargetPolicy{AllowPrivateNetworks: true}
	tests := []struct {
		name   string
		policy TargetPolicy
		url    string
		ok     bool
	}{
		{"https", prod, "https://hooks.example.com/pkid?token=x", true},
		{"https with port", prod, "https://hooks.example.com:8443/pkid", true},
		{"https public IP", prod, "https://93.184.215.14/hook", true},
		{"A-label", prod, "https://xn--bcher-kva.example/hook", true},
		{"empty", prod, "", false},
		{"too long", prod, "https://hooks.example.com/" + strings.Repeat("a", MaxURLLength), false},
		{"http", prod, "http://hooks.example.com/pkid", false},
		{"ftp", prod, "ftp://hooks.example.com/pkid", false},
		{"javascript", prod, "javascript:alert(1)", false},
		{"relative", prod, "/pkid", false},
		{"no host", prod, "https:///pkid", false},
		{"opaque", prod, "https:hooks.example.com", false},
		{"userinfo", prod, "https://user:pass@hooks.example.com/", false},
		{"user only", prod, "https://user@hooks.example.com/", false},
		{"fragment", prod, "https://hooks.example.com/#x", false},
		{"empty fragment", prod, "https://hooks.example.com/#", false},
		{"space", prod, "https://hooks.example.com/a b", false},
		{"newline", prod, "https://hooks.example.com/\n", false},
		{"unicode host", prod, "https://bücher.example/", false},
		{"bad port", prod, "https://hooks.example.com:99999/", false},
		{"empty port", prod, "https://hooks.example.com:/", false},
		{"underscore host", prod, "https://a_b.example.com/", false},
		{"hyphen label", prod, "https://-a.example.com/", false},
		{"zone", prod, "https://[fe80::1%25eth0]/", false},
		{"loopback IP", prod, "https://127.0.0.1/", false},
		{"private IP", prod, "https://10.1.2.3/", false},
		{"metadata IP", prod, "https://169.254.169.254/latest", false},
		{"CGNAT", prod, "https://100.64.0.1/", false},
		{"IPv6 loopback", prod, "https://[::1]/", false},
		{"IPv6 ULA", prod, "https://[fd00::1]/", false},
		{"IPv4-mapped private", prod, "https://[::ffff:10.0.0.1]/", false},
		{"NAT64 private", prod, "https://[64:ff9b::a00:1]/", false},
		{"unspecified", private, "https://0.0.0.0/", false},
		{"private allowed", private, "https://10.1.2.3/", true},
		{"http localhost in dev", dev, "http://localhost:8080/hook", true},
		{"http loopback in dev", dev, "http://127.0.0.1:8080/hook", true},
		{"http IPv6 loopback in dev", dev, "http://[::1]:8080/hook", true},
		{"http other host in dev", dev, "http://hooks.example.com/", false},
		{"http private in dev", dev, "http://10.0.0.1/", false},
		{"http localhost in production", prod, "http://localhost:8080/hook", false},
		{"http localhost with private allowed", private, "http://localhost/hook", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.policy.CheckURL(tt.url)
			if tt.ok && err != nil {
				t.Fatalf("CheckURL(%q) = %v, want nil", tt.url, err)
			}
			var re *pki.RequestError
			if !tt.ok && !errors.As(err, &re) {
				t.Fatalf("CheckURL(%q) = %v, want a *pki.RequestError", tt.url, err)
			}
		})
	}
}

func TestCheckIP(t *testing.T) {
	for _, s := range []string{"127.0.0.1", "10.0.0.1", "172.16.0.1", "192.168.1.1", "169.254.169.254",
		"100.64.0.1", "0.0.0.0", "224.0.0.1", "255.255.255.255", "::1", "fe80::1", "fc00::1", "::", "ff02::1",
		"::ffff:127.0.0.1", "64:ff9b::7f00:1", "2002:a00:1::1"} {
		if err := (TargetPolicy{}).checkIP(netip.MustParseAddr(s)); err == nil {
			t.Errorf("%s was allowed by the production policy", s)
		}
	}
	for _, s := range []string{"93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c", "64:ff9b::5db8:d70e"} {
		if err := (TargetPolicy{}).checkIP(netip.MustParseAddr(s)); err != nil {
			t.Errorf("%s was refused: %v", s, err)
		}
	}
}

// The dialer checks the address it connects to, so a host name that
// resolves to loopback is refused as a loopback literal is.
func TestClientRefusesLoopbackByName(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits.Add(1) }))
	defer srv.Close()
	port := srv.URL[strings.LastIndex(srv.URL, ":"):]
	c := newClient(TargetPolicy{}, 5*time.Second, nil)
	for _, u := range []string{"http://localhost" + port, srv.URL} {
		_, err := c.Post(u, "application/json", strings.NewReader("{}"))
		if !errors.Is(err, errRefusedAddress) {
			t.Errorf("POST %s: err = %v, want the refused address", u, err)
		}
	}
	if hits.Load() != 0 {
		t.Fatalf("the receiver was reached %d times", hits.Load())
	}
	// Allowed for development, the same request goes through.
	resp, err := newClient(TargetPolicy{AllowHTTPLocalhost: true}, 5*time.Second, nil).Post(srv.URL, "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if hits.Load() != 1 {
		t.Fatalf("hits = %d, want 1", hits.Load())
	}
}

// A redirect is the answer, not a path to follow.
func TestClientDoesNotFollowRedirects(t *testing.T) {
	var followed atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/elsewhere" {
			followed.Store(true)
			return
		}
		http.Redirect(w, r, "/elsewhere", http.StatusTemporaryRedirect)
	}))
	defer srv.Close()
	resp, err := newClient(TargetPolicy{AllowHTTPLocalhost: true}, 5*time.Second, nil).Post(srv.URL, "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTemporaryRedirect || followed.Load() {
		t.Fatalf("status %d, followed %v: want the 307 itself", resp.StatusCode, followed.Load())
	}
}

// A receiver that answers forever is cut off by the timeout, and send
// reads no more than maxResponseRead of an answer.
func TestSendBoundsTheAnswer(t *testing.T) {
	var written atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		chunk := []byte(strings.Repeat("x", 32<<10))
		for r.Context().Err() == nil {
			n, err := w.Write(chunk)
			written.Add(int64(n))
			if err != nil {
				return
			}
		}
	}))
	defer srv.Close()
	resp, err := newClient(TargetPolicy{AllowHTTPLocalhost: true}, 5*time.Second, nil).Post(srv.URL, "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	n, _ := io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseRead))
	resp.Body.Close()
	if n != maxResponseRead {
		t.Fatalf("read %d bytes, want %d", n, maxResponseRead)
	}
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer slow.Close()
	defer close(release)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, slow.URL, strings.NewReader("{}"))
	_, err = newClient(TargetPolicy{AllowHTTPLocalhost: true}, time.Second, nil).Do(req)
	if err == nil || attemptError(ctx, err) != "timed out" {
		t.Fatalf("err = %v (%q), want a time-out", err, attemptError(ctx, err))
	}
}

func TestBackoff(t *testing.T) {
	j := &Job{cfg: JobConfig{RetryBase: time.Minute, RetryMax: time.Hour}.withDefaults()}
	for attempt, want := range map[int]time.Duration{1: time.Minute, 2: 2 * time.Minute, 3: 4 * time.Minute,
		6: 32 * time.Minute, 7: time.Hour, 40: time.Hour, 100: time.Hour} {
		for range 50 {
			if d := j.backoff(attempt); d < want/2 || d > want {
				t.Fatalf("backoff(%d) = %s, want within [%s, %s]", attempt, d, want/2, want)
			}
		}
	}
}

func TestRedactURL(t *testing.T) {
	if got := redactURL("https://h.example/p?token=s3cret"); got != "https://h.example/p" {
		t.Fatalf("redactURL = %q", got)
	}
}
