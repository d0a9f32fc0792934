package client

import (
	"bytes"
	"context"
	"crypto"
	_ "crypto/sha1" // CertID hashes
	_ "crypto/sha256"
	_ "crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"
	"mime"
	"net/http"
	"net/url"
	"time"

	"golang.org/x/crypto/ocsp"
)

// maxOCSPResponseBytes bounds an OCSP response: one SingleResponse and the
// responder's certificate are well under 4 KiB.
const maxOCSPResponseBytes = 64 << 10

// ocspClockSkew is how far an OCSP response's thisUpdate may lie in the
// future and its nextUpdate in the past before it is refused: the responder's
// and this machine's clocks differ a little.
const ocspClockSkew = 5 * time.Minute

// ErrOCSP is wrapped by every refusal of an OCSP answer: no responder, a
// transport failure, an answer that is not a valid, fresh response about
// this certificate signed by someone entitled to sign it.
var ErrOCSP = errors.New("client: OCSP")

// OCSPStatus is a verified OCSP answer about one certificate.
type OCSPStatus struct {
	URL        string    // the responder asked
	Status     string    // "good", "revoked" or "unknown"
	RevokedAt  time.Time // when revoked
	Reason     int       // RFC 5280 CRLReason code, when revoked
	ProducedAt time.Time
	ThisUpdate time.Time
	NextUpdate time.Time
}

// CheckOCSP asks the OCSP responder named in leaf's AIA extension about leaf,
// which issuer issued, and verifies the answer at now before believing it:
//   - it is signed by issuer, or by a delegated responder certificate that
//     issuer signed, that is valid now and carries id-kp-OCSPSigning (RFC 6960
//     §4.2.2.2; x/crypto/ocsp checks the signatures but not the purpose or
//     the validity of the responder);
//   - its CertID for leaf's serial names issuer by the hashes of issuer's name
//     and key (x/crypto/ocsp matches the serial alone, which another CA's
//     response for the same serial would also match);
//   - it is fresh: thisUpdate not in the future and nextUpdate, which must be
//     present, not in the past (RFC 5019 §4), give or take ocspClockSkew.
//
// hc carries the request (nil: a client with DefaultTimeout); OCSP is plain
// HTTP by design (RFC 5019 §5), its integrity is the signature.
func CheckOCSP(ctx context.Context, hc *http.Client, leaf, issuer *x509.Certificate, now time.Time) (*OCSPStatus, error) {
	if len(leaf.OCSPServer) == 0 {
		return nil, fmt.Errorf("%w: the certificate names no OCSP responder", ErrOCSP)
	}
	u, err := url.Parse(leaf.OCSPServer[0])
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: the certificate's OCSP URL %q is not an http(s) URL", ErrOCSP, clean(leaf.OCSPServer[0]))
	}
	reqDER, err := ocsp.CreateRequest(leaf, issuer, &ocsp.RequestOptions{Hash: crypto.SHA1})
	if err != nil {
		return nil, fmt.Errorf("%w: making the request: %v", ErrOCSP, err)
	}
	der, err := postOCSP(ctx, hc, u.String(), reqDER)
	if err != nil {
		return nil, err
	}
	st, err := VerifyOCSPResponse(der, leaf, issuer, now)
	if err != nil {
		return nil, err
	}
	st.URL = u.String()
	return st, nil
}

// postOCSP sends an RFC 6960 POST request and returns the response's DER.
func postOCSP(ctx context.Context, hc *http.Client, u string, reqDER []byte) ([]byte, error) {
	if hc == nil {
		hc = &http.Client{Timeout: DefaultTimeout}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(reqDER))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrOCSP, err)
	}
	req.Header.Set("Content-Type", "application/ocsp-request")
	req.Header.Set("Accept", "application/ocsp-response")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrOCSP, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxOCSPResponseBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w: reading the response: %v", ErrOCSP, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w: the responder answered %s", ErrOCSP, resp.Status)
	}
	if len(body) > maxOCSPResponseBytes {
		return nil, fmt.Errorf("%w: the response exceeds %d bytes", ErrOCSP, maxOCSPResponseBytes)
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "application/ocsp-response" {
		return nil, fmt.Errorf("%w: the responder answered with content type %q", ErrOCSP, clean(resp.Header.Get("Content-Type")))
	}
	return body, nil
}

// VerifyOCSPResponse parses and verifies an OCSP response about leaf, which
// issuer issued, at now (the checks of CheckOCSP).
func VerifyOCSPResponse(der []byte, leaf, issuer *x509.Certificate, now time.Time) (*OCSPStatus, error) {
	r, err := ocsp.ParseResponseForCert(der, leaf, issuer)
	if err != nil {
		var re ocsp.ResponseError
		if errors.As(err, &re) {
			return nil, fmt.Errorf("%w: the responder refused: %s", ErrOCSP, re.Status.String())
		}
		return nil, fmt.Errorf("%w: %v", ErrOCSP, err)
	}
	if err := checkResponder(r.Certificate, issuer, now); err != nil {
		return nil, err
	}
	if err := checkCertIDs(der, leaf.SerialNumber, issuer); err != nil {
		return nil, err
	}
	switch {
	case r.ThisUpdate.After(now.Add(ocspClockSkew)):
		return nil, fmt.Errorf("%w: the response's thisUpdate %s is in the future", ErrOCSP, r.ThisUpdate.UTC().Format(time.RFC3339))
	case r.NextUpdate.IsZero():
		return nil, fmt.Errorf("%w: the response has no nextUpdate, so its freshness is unknown", ErrOCSP)
	case r.NextUpdate.Before(now.Add(-ocspClockSkew)):
		return nil, fmt.Errorf("%w: the response is stale (nextUpdate %s)", ErrOCSP, r.NextUpdate.UTC().Format(time.RFC3339))
	}
	st := &OCSPStatus{ProducedAt: r.ProducedAt, ThisUpdate: r.ThisUpdate, NextUpdate: r.NextUpdate}
	switch r.Status {
	case ocsp.Good:
		st.Status = "good"
	case ocsp.Revoked:
		st.Status, st.RevokedAt, st.Reason = "revoked", r.RevokedAt, r.RevocationReason
	default:
		st.Status = "unknown"
	}
	return st, nil
}

// checkResponder checks the responder certificate embedded in a response
// (nil when the issuer signed it directly, which x/crypto/ocsp verified): the
// issuer itself, or a certificate the issuer signed — x/crypto/ocsp verified
// that signature — that names the issuer as its issuer, is valid at now and
// is for OCSP signing.
func checkResponder(rc, issuer *x509.Certificate, now time.Time) error {
	if rc == nil || rc.Equal(issuer) {
		return nil
	}
	if !bytes.Equal(rc.RawIssuer, issuer.RawSubject) {
		return fmt.Errorf("%w: the responder's certificate was not issued by the certificate's issuer", ErrOCSP)
	}
	if now.Before(rc.NotBefore) || now.After(rc.NotAfter) {
		return fmt.Errorf("%w: the responder's certificate is not valid now (%s to %s)", ErrOCSP,
			rc.NotBefore.UTC().Format(time.RFC3339), rc.NotAfter.UTC().Format(time.RFC3339))
	}
	for _, eku := range rc.ExtKeyUsage {
		if eku == x509.ExtKeyUsageOCSPSigning {
			return nil
		}
	}
	return fmt.Errorf("%w: the responder's certificate is not authorised for OCSP signing (no id-kp-OCSPSigning)", ErrOCSP)
}

// The part of RFC 6960's ASN.1 that checkCertIDs reads. encoding/asn1 lets a
// SEQUENCE end after the last field a struct names, so the status and the
// dates of a SingleResponse need no fields here.
type (
	ocspResponseASN1 struct {
		Status   asn1.Enumerated
		Response struct {
			Type     asn1.ObjectIdentifier
			Response []byte
		} `asn1:"explicit,tag:0,optional"`
	}
	basicResponseASN1 struct {
		TBS struct {
			Version     int `asn1:"optional,explicit,default:0,tag:0"`
			ResponderID asn1.RawValue
			ProducedAt  time.Time `asn1:"generalized"`
			Responses   []singleResponseASN1
		}
	}
	singleResponseASN1 struct {
		CertID struct {
			HashAlgorithm pkix.AlgorithmIdentifier
			NameHash      []byte
			KeyHash       []byte
			Serial        *big.Int
		}
	}
)

// certIDHashes maps the CertID hash algorithms RFC 6960 clients meet to Go's.
var certIDHashes = []struct {
	oid  asn1.ObjectIdentifier
	hash crypto.Hash
}{
	{asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}, crypto.SHA1},
	{asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}, crypto.SHA256},
	{asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}, crypto.SHA384},
	{asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 3}, crypto.SHA512},
}

// checkCertIDs checks that every SingleResponse about serial names issuer:
// issuerNameHash is the hash of issuer's DER subject and issuerKeyHash the
// hash of its subjectPublicKey BIT STRING value (RFC 6960 §4.1.1).
func checkCertIDs(der []byte, serial *big.Int, issuer *x509.Certificate) error {
	var outer ocspResponseASN1
	if _, err := asn1.Unmarshal(der, &outer); err != nil {
		return fmt.Errorf("%w: %v", ErrOCSP, err)
	}
	var basic basicResponseASN1
	if _, err := asn1.Unmarshal(outer.Response.Response, &basic); err != nil {
		return fmt.Errorf("%w: %v", ErrOCSP, err)
	}
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(issuer.RawSubjectPublicKeyInfo, &spki); err != nil {
		return fmt.Errorf("%w: the issuer's public key: %v", ErrOCSP, err)
	}
	found := false
	for _, sr := range basic.TBS.Responses {
		id := sr.CertID
		if id.Serial == nil || id.Serial.Cmp(serial) != 0 {
			continue
		}
		found = true
		var h crypto.Hash
		for _, c := range certIDHashes {
			if id.HashAlgorithm.Algorithm.Equal(c.oid) {
				h = c.hash
			}
		}
		if h == 0 || !h.Available() {
			return fmt.Errorf("%w: the response's CertID uses an unknown hash algorithm %v", ErrOCSP, id.HashAlgorithm.Algorithm)
		}
		nh, kh := h.New(), h.New()
		nh.Write(issuer.RawSubject)
		kh.Write(spki.PublicKey.RightAlign())
		if !bytes.Equal(id.NameHash, nh.Sum(nil)) || !bytes.Equal(id.KeyHash, kh.Sum(nil)) {
			return fmt.Errorf("%w: the response is about serial %s of another issuer", ErrOCSP, serial.Text(16))
		}
	}
	if !found {
		return fmt.Errorf("%w: the response says nothing about serial %s", ErrOCSP, serial.Text(16))
	}
	return nil
}
