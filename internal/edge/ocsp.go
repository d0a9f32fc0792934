package edge

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/pkid/pkid/internal/pki"
)

// maxOCSPResponse caps the body read from the responder. pkid's responses,
// with the delegated responder's certificate, are about 1 KiB.
const maxOCSPResponse = 64 << 10

// Errors of one OCSP exchange. They are internal: the checker turns them
// into a decision.
var (
	// errOCSPUnavailable: no usable answer (network, HTTP status, tryLater,
	// internalError, a response that fails verification). The CRL may answer.
	errOCSPUnavailable = errors.New("edge: OCSP responder gave no usable answer")
	// errOCSPUnauthorized: the responder says it cannot answer for this
	// certificate: the CA does not know it. The edge refuses it.
	errOCSPUnauthorized = errors.New("edge: OCSP responder does not know the certificate (unauthorized)")
)

// ocspAnswer is a verified OCSP response, reduced to what the edge uses.
type ocspAnswer struct {
	Answer
	// maxAge is the HTTP freshness lifetime the responder gave (Cache-Control
	// max-age; zero with no-cache or no-store); hasMaxAge says whether it gave
	// one.
	maxAge    time.Duration
	hasMaxAge bool
}

// ocspClient asks one responder, by POST (RFC 6960 appendix A.1).
type ocspClient struct {
	url    string
	client *http.Client
	skew   time.Duration
}

// query asks the responder about leaf, which issuer issued, and verifies the
// answer at time now. The request uses a SHA-1 CertID, the form RFC 5019
// requires clients to use and pkid stores its responses in.
func (o *ocspClient) query(ctx context.Context, leaf, issuer *x509.Certificate, now time.Time) (ocspAnswer, error) {
	reqDER, err := ocsp.CreateRequest(leaf, issuer, &ocsp.RequestOptions{Hash: crypto.SHA1})
	if err != nil {
		return ocspAnswer{}, fmt.Errorf("%w: building the request: %v", errOCSPUnavailable, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, o.url, bytes.NewReader(reqDER))
	if err != nil {
		return ocspAnswer{}, fmt.Errorf("%w: %v", errOCSPUnavailable, err)
	}
	req.Header.Set("Content-Type", "application/ocsp-request")
	req.Header.Set("Accept", "application/ocsp-response")
	resp, err := o.client.Do(req)
	if err != nil {
		return ocspAnswer{}, fmt.Errorf("%w: %v", errOCSPUnavailable, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxOCSPResponse+1))
	if err != nil {
		return ocspAnswer{}, fmt.Errorf("%w: reading the response: %v", errOCSPUnavailable, err)
	}
	if len(body) > maxOCSPResponse {
		return ocspAnswer{}, fmt.Errorf("%w: response larger than %d bytes", errOCSPUnavailable, maxOCSPResponse)
	}
	// An unsuccessful OCSP status may come with an HTTP error status; read
	// it first so that "unauthorized" is recognised either way.
	r, err := ocsp.ParseResponse(body, nil)
	var rerr ocsp.ResponseError
	if errors.As(err, &rerr) {
		if rerr.Status == ocsp.Unauthorized {
			return ocspAnswer{}, errOCSPUnauthorized
		}
		return ocspAnswer{}, fmt.Errorf("%w: responder status %s", errOCSPUnavailable, rerr.Status)
	}
	if resp.StatusCode != http.StatusOK {
		return ocspAnswer{}, fmt.Errorf("%w: HTTP %d", errOCSPUnavailable, resp.StatusCode)
	}
	if err != nil {
		return ocspAnswer{}, fmt.Errorf("%w: %v", errOCSPUnavailable, err)
	}
	a, err := verifyOCSP(r, body, leaf, issuer, now, o.skew)
	if err != nil {
		return ocspAnswer{}, fmt.Errorf("%w: %v", errOCSPUnavailable, err)
	}
	out := ocspAnswer{Answer: a}
	out.maxAge, out.hasMaxAge = maxAge(resp.Header)
	return out, nil
}

// verifyOCSP checks a parsed response r (raw is its DER) about leaf and
// returns what it says. r must have been parsed without an issuer, so that
// only the embedded certificate's signature was checked; this function
// decides whether the signer may speak for issuer:
//
//   - no embedded certificate, or the issuer's own: the issuer signed it;
//   - another certificate: issuer must have signed it, it must carry
//     id-kp-OCSPSigning and be valid at now (RFC 6960 §4.2.2.2;
//     SECURITY.md O-21). x/crypto checks the first part only.
//
// The response must hold exactly one SingleResponse, whose CertID names
// leaf's serial under issuer's name and key hashes (SECURITY.md O-22), with
// thisUpdate no later than now+skew and a nextUpdate that is still ahead.
func verifyOCSP(r *ocsp.Response, raw []byte, leaf, issuer *x509.Certificate, now time.Time, skew time.Duration) (Answer, error) {
	ids, err := responseCertIDs(raw)
	if err != nil {
		return Answer{}, err
	}
	if len(ids) != 1 || !ids[0].matches(leaf, issuer) {
		return Answer{}, errors.New("the response is not about this certificate of this issuer")
	}
	switch {
	case r.Certificate == nil || r.Certificate.Equal(issuer):
		if r.Certificate == nil {
			if err := r.CheckSignatureFrom(issuer); err != nil {
				return Answer{}, fmt.Errorf("signature: %v", err)
			}
		}
	default:
		signer := r.Certificate
		if !bytes.Equal(signer.RawIssuer, issuer.RawSubject) {
			return Answer{}, fmt.Errorf("responder %q is not certified by the issuer", signer.Subject)
		}
		if err := signer.CheckSignatureFrom(issuer); err != nil {
			return Answer{}, fmt.Errorf("responder certificate: %v", err)
		}
		if !hasEKU(signer, x509.ExtKeyUsageOCSPSigning) {
			return Answer{}, errors.New("responder certificate lacks id-kp-OCSPSigning")
		}
		if now.Before(signer.NotBefore) || now.After(signer.NotAfter) {
			return Answer{}, errors.New("responder certificate is not valid now")
		}
	}
	if r.ThisUpdate.After(now.Add(skew)) {
		return Answer{}, fmt.Errorf("thisUpdate %s is in the future", r.ThisUpdate.UTC().Format(time.RFC3339))
	}
	if r.NextUpdate.IsZero() {
		return Answer{}, errors.New("no nextUpdate (RFC 5019 §2.2.4 requires one)")
	}
	if !r.NextUpdate.After(now) {
		return Answer{}, fmt.Errorf("nextUpdate %s has passed", r.NextUpdate.UTC().Format(time.RFC3339))
	}
	a := Answer{Source: SourceOCSP, ThisUpdate: r.ThisUpdate, NextUpdate: r.NextUpdate}
	switch r.Status {
	case ocsp.Good:
		a.Status = StatusGood
	case ocsp.Revoked:
		a.Status = StatusRevoked
		a.RevokedAt = r.RevokedAt
		a.Reason = pki.RevocationReason(r.RevocationReason)
	default:
		a.Status = StatusUnknown
	}
	return a, nil
}

func hasEKU(c *x509.Certificate, want x509.ExtKeyUsage) bool {
	for _, u := range c.ExtKeyUsage {
		if u == want {
			return true
		}
	}
	return false
}

// maxAge reads the freshness lifetime of an HTTP response from its
// Cache-Control header (RFC 9111 §5.2.2): max-age=N, or zero for no-cache
// and no-store. With several max-age directives the shortest wins.
func maxAge(h http.Header) (d time.Duration, ok bool) {
	for _, v := range h.Values("Cache-Control") {
		for _, dir := range strings.Split(v, ",") {
			dir = strings.ToLower(strings.TrimSpace(dir))
			var age time.Duration
			switch {
			case dir == "no-cache" || dir == "no-store":
				age = 0
			case strings.HasPrefix(dir, "max-age="):
				n, err := strconv.ParseInt(strings.Trim(dir[len("max-age="):], `"`), 10, 64)
				if err != nil || n < 0 {
					continue
				}
				if n > int64(365*24*time.Hour/time.Second) {
					n = int64(365 * 24 * time.Hour / time.Second)
				}
				age = time.Duration(n) * time.Second
			default:
				continue
			}
			if !ok || age < d {
				d, ok = age, true
			}
		}
	}
	return d, ok
}
