package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/pkid/pkid/internal/app"
	"github.com/pkid/pkid/internal/config"
	"github.com/pkid/pkid/internal/server"
)

// benchNode is a pkid node served on a loopback port, with its background
// jobs running (the OCSP cache's LISTEN among them).
type benchNode struct {
	app  *app.App
	base string
	stop func()
}

func startNode(ctx context.Context, cfg config.Config) (*benchNode, error) {
	a, err := app.New(ctx, cfg, slog.New(slog.DiscardHandler), app.Options{SkipMigrate: true})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		a.Close()
		return nil, err
	}
	srv := server.NewHTTPServer(ln.Addr().String(), a.Handler, slog.New(slog.DiscardHandler))
	go func() { _ = srv.Serve(ln) }()
	jobs, cancel := context.WithCancel(ctx)
	go a.RunJobs(jobs)
	return &benchNode{app: a, base: "http://" + ln.Addr().String(), stop: func() {
		cancel()
		_ = srv.Close()
		a.Close()
	}}, nil
}

// revocationVisibility revokes n certificates on node A and measures, for
// each, the time from the revoke call's answer until node B's OCSP responder
// says revoked.
func revocationVisibility(ctx context.Context, cfg config.Config, token string, csrs []string, n int) ([]time.Duration, error) {
	a, err := startNode(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer a.stop()
	b, err := startNode(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer b.stop()
	issuer := a.app.Hierarchy.Intermediate().Cert
	client := &http.Client{Timeout: 10 * time.Second}

	var lat []time.Duration
	for i := 0; i < n; i++ {
		body, _ := json.Marshal(map[string]string{"csr": csrs[i%len(csrs)]})
		var issued struct {
			Serial      string `json:"serial"`
			Certificate string `json:"certificate"`
		}
		if err := postJSON(client, a.base+"/api/v1/certificates", token, body, http.StatusCreated, &issued); err != nil {
			return nil, err
		}
		blk, _ := pem.Decode([]byte(issued.Certificate))
		leaf, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, err
		}
		req, err := ocsp.CreateRequest(leaf, issuer, &ocsp.RequestOptions{Hash: crypto.SHA1})
		if err != nil {
			return nil, err
		}
		// B knows the certificate is good before the revocation.
		if st, err := ocspStatus(client, b.base, req, issuer); err != nil || st != ocsp.Good {
			return nil, fmt.Errorf("node B before revocation: status %d, %v", st, err)
		}
		if err := postJSON(client, a.base+"/api/v1/certificates/"+issued.Serial+"/revoke", token,
			[]byte(`{"reason":"keyCompromise"}`), http.StatusOK, nil); err != nil {
			return nil, err
		}
		revoked := time.Now()
		for {
			st, err := ocspStatus(client, b.base, req, issuer)
			if err != nil {
				return nil, err
			}
			if st == ocsp.Revoked {
				lat = append(lat, time.Since(revoked))
				break
			}
			if time.Since(revoked) > 10*time.Second {
				return nil, fmt.Errorf("node B still says %d 10 s after the revocation of %s", st, issued.Serial)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	slices.Sort(lat)
	return lat, nil
}

func ocspStatus(client *http.Client, base string, req []byte, issuer *x509.Certificate) (int, error) {
	resp, err := client.Post(base+"/ocsp", "application/ocsp-request", bytes.NewReader(req))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	der, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	r, err := ocsp.ParseResponse(der, issuer)
	if err != nil {
		return 0, fmt.Errorf("OCSP answer from %s: %w", base, err)
	}
	return r.Status, nil
}

func postJSON(client *http.Client, url, token string, body []byte, want int, out any) error {
	req, err := http.NewRequest("POST", url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		return fmt.Errorf("POST %s: %d: %s", url, resp.StatusCode, b)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}
