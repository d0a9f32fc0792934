package client

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"
)

// EnrollRequest describes a first certificate.
type EnrollRequest struct {
	Dir          string   // the certificate directory; made (0700) if missing
	CommonName   string   // the subject common name
	DNSNames     []string // subjectAltName DNS names, may be empty
	KeyType      KeyType  // "" is KeyEC
	ValidityDays int      // 0: the policy's default
	// Root is the trust anchor, from FetchRoot: the chain pkid returns must
	// end in it and the certificate must chain to it. It is written to
	// root.pem, the only anchor later commands use.
	Root *x509.Certificate
	// State is recorded in pkictl.json; Serial and AccountID are filled in.
	State State
	// Now is the clock the certificate is verified at; nil is time.Now.
	Now func() time.Time
}

// Enroll makes a key in req.Dir, has pkid certify it with c (which must carry
// an account token), verifies the answer and writes the directory.
//
// The key is written (0600) before the CSR is sent, so that a certificate
// pkid issues always has its key on disk; if pkid refuses, or if the answer
// cannot be trusted, the key is removed and nothing else is written. The
// answer is trusted only if its chain ends in req.Root and the certificate
// chains to it, is valid now, is for client authentication and certifies the
// key just made.
func Enroll(ctx context.Context, c *Client, req EnrollRequest) (*Bundle, error) {
	now := time.Now
	if req.Now != nil {
		now = req.Now
	}
	if req.CommonName == "" {
		return nil, errors.New("client: a common name is required")
	}
	if req.Root == nil {
		return nil, errors.New("client: enrolment needs a trust anchor (FetchRoot)")
	}
	if err := checkRoot(req.Root); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(req.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	unlock, err := lockDir(req.Dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	for _, name := range []string{KeyFile, CertFile, KeyFile + nextSuffix, CertFile + nextSuffix} {
		if _, err := os.Lstat(filepath.Join(req.Dir, name)); err == nil {
			return nil, fmt.Errorf("%w (%s)", ErrEnrolled, filepath.Join(req.Dir, name))
		}
	}

	key, err := GenerateKey(req.KeyType)
	if err != nil {
		return nil, err
	}
	keyPEM, err := MarshalKeyPEM(key)
	if err != nil {
		return nil, err
	}
	csr, err := NewCSR(key, req.CommonName, req.DNSNames)
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(req.Dir, KeyFile, keyPEM, 0o600); err != nil {
		return nil, err
	}
	keep := false
	defer func() {
		if !keep {
			_ = os.Remove(filepath.Join(req.Dir, KeyFile))
			_ = syncDir(req.Dir)
		}
	}()

	issued, err := c.Issue(ctx, IssueRequest{CSR: csr, ValidityDays: req.ValidityDays})
	if err != nil {
		return nil, err
	}
	b := &Bundle{Dir: req.Dir, Key: key, Root: req.Root, State: req.State}
	if err := acceptIssued(b, issued, now()); err != nil {
		return nil, fmt.Errorf("%w; pkid issued serial %s, which you may want to revoke", err, clean(issued.Serial))
	}
	b.State.Serial, b.State.AccountID = b.Serial(), issued.AccountID
	if err := writeIssued(b, true); err != nil {
		return nil, err
	}
	keep = true
	return b, nil
}

// acceptIssued parses the certificate object pkid returned into b, whose Key
// and Root are set, and checks it: the serials agree, the chain ends in
// b.Root, the certificate chains to b.Root at now for client authentication
// and certifies b.Key.
func acceptIssued(b *Bundle, issued *Certificate, now time.Time) error {
	leaf, err := parseOneCertificatePEM([]byte(issued.Certificate), "the issued certificate")
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUntrusted, err)
	}
	chain, err := ParseCertificatesPEM([]byte(issued.Chain))
	if err != nil {
		return fmt.Errorf("%w: the chain: %v", ErrUntrusted, err)
	}
	if issued.Serial != SerialText(leaf) {
		return fmt.Errorf("%w: the certificate object's serial is not the certificate's", ErrUntrusted)
	}
	if last := chain[len(chain)-1]; !last.Equal(b.Root) {
		return fmt.Errorf("%w: the chain ends in a root with fingerprint %s, not the trusted root %s", ErrUntrusted, Fingerprint(last), Fingerprint(b.Root))
	}
	if _, err := verifyLeaf(leaf, chain, b.Root, b.Key.Public(), now); err != nil {
		return err
	}
	b.Leaf, b.Chain = leaf, chain
	return nil
}

// FetchRoot fetches pkid's root certificate from base/ca/root.pem, before
// anything is trusted, and returns it once it is fit to be a trust anchor.
//
// With pin (a SHA-256 fingerprint, see ParseFingerprint) the root must have
// that fingerprint: the pin authenticates it, so the transport need not, and
// an https URL whose certificate the system does not trust (pkid's own TLS
// listener) is fetched without verifying it — nothing secret is sent, and
// what comes back is checked against the pin. Without a pin the root is
// trusted on first use: an https URL must then verify against the system's
// roots, and the caller must show the user the root's fingerprint to check.
func FetchRoot(ctx context.Context, base string, pin []byte) (*x509.Certificate, error) {
	u, err := ParseServerURL(base)
	if err != nil {
		return nil, err
	}
	hc := HTTPClient(SystemRootsWith(nil), nil)
	if pin != nil && u.Scheme == "https" {
		tr := hc.Transport.(*http.Transport)
		// Authenticated by the pin below, not by the transport.
		tr.TLSClientConfig.InsecureSkipVerify = true
	}
	defer hc.CloseIdleConnections()
	c, err := New(u.String(), hc, "")
	if err != nil {
		return nil, err
	}
	raw, err := c.RootPEM(ctx)
	if err != nil {
		var ue *url.Error
		var ua x509.UnknownAuthorityError
		if errors.As(err, &ue) && errors.As(err, &ua) {
			return nil, fmt.Errorf("client: fetching the root: %s presents a certificate this system does not trust; pin the root with its fingerprint, or fetch it over pkid's plain-HTTP URL", u.Host)
		}
		return nil, fmt.Errorf("client: fetching the root: %w", err)
	}
	root, err := parseOneCertificatePEM(raw, "the root from /ca/root.pem")
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUntrusted, err)
	}
	if pin != nil {
		if root, err = pinnedRoot([]*x509.Certificate{root}, pin); err != nil {
			return nil, err
		}
	}
	if err := checkRoot(root); err != nil {
		return nil, err
	}
	return root, nil
}

// writeIssued writes the certificate, chain and state of b, and root.pem
// when withRoot. cert.pem goes last but one so that a crash leaves either
// the old certificate with a chain that also serves it, or the new one.
func writeIssued(b *Bundle, withRoot bool) error {
	if withRoot {
		if err := writeFileAtomic(b.Dir, RootFile, encodeCertificatesPEM(b.Root), 0o644); err != nil {
			return err
		}
	}
	if err := writeFileAtomic(b.Dir, ChainFile, encodeCertificatesPEM(b.Chain...), 0o644); err != nil {
		return err
	}
	if err := writeFileAtomic(b.Dir, CertFile, encodeCertificatesPEM(b.Leaf), 0o644); err != nil {
		return err
	}
	return writeState(b.Dir, b.State)
}
