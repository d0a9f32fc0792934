package client

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// The files of a certificate directory.
const (
	KeyFile   = "key.pem"
	CertFile  = "cert.pem"
	ChainFile = "chain.pem"
	RootFile  = "root.pem"
	StateFile = "pkictl.json"
	// nextSuffix marks the new key and certificate of a rekey while they are
	// being put in place (see finishRekey).
	nextSuffix = ".next"
	// lockFile serialises the commands that change a directory.
	lockFile = ".pkictl.lock"
)

// maxFileBytes bounds every file read from a certificate directory.
const maxFileBytes = 1 << 20

// Errors about the certificate directory.
var (
	// ErrNotEnrolled: the directory holds no certificate.
	ErrNotEnrolled = errors.New("client: no certificate in this directory; run pkictl enroll first")
	// ErrEnrolled: enrolment would overwrite a key or certificate.
	ErrEnrolled = errors.New("client: this directory already holds a key or certificate; renew it, or enroll into another directory")
	// ErrBusy: another pkictl is changing the directory right now.
	ErrBusy = errors.New("client: another pkictl is changing this directory")
)

// State is what pkictl remembers beside the certificate (pkictl.json).
type State struct {
	// Server is pkid's base URL for token-authenticated calls (revoke).
	Server string `json:"server,omitempty"`
	// TLSServer is the base URL of pkid's TLS listener, where the
	// certificate renews itself.
	TLSServer string `json:"tls_server,omitempty"`
	// Serial is the serial of cert.pem when this file was written, in
	// pkid's form (lowercase hex); cert.pem itself is authoritative.
	Serial string `json:"serial"`
	// AccountID is the account the certificate belongs to.
	AccountID string `json:"account_id,omitempty"`
}

// Bundle is a loaded certificate directory. Load checks that the key and
// the certificate belong together and that the root is a self-signed CA; it
// does not check validity, so that an expired or foreign certificate can
// still be shown and reasoned about (Verify does that).
type Bundle struct {
	Dir   string
	Key   crypto.Signer
	Leaf  *x509.Certificate
	Chain []*x509.Certificate // chain.pem: intermediate then root
	Root  *x509.Certificate   // root.pem: the trust anchor
	State State
}

// Serial returns the certificate's serial in pkid's form.
func (b *Bundle) Serial() string { return SerialText(b.Leaf) }

// SerialText returns c's serial as pkid writes it: lowercase hex without
// leading zeros or separators.
func SerialText(c *x509.Certificate) string { return c.SerialNumber.Text(16) }

// Verify checks that the certificate chains to root.pem at now for client
// authentication; it returns the certificate that issued it.
func (b *Bundle) Verify(now time.Time) (*x509.Certificate, error) {
	return verifyLeaf(b.Leaf, b.Chain, b.Root, b.Key.Public(), now)
}

// Issuer returns the certificate of chain.pem that signed the certificate,
// nil when none did.
func (b *Bundle) Issuer() *x509.Certificate {
	for _, c := range b.Chain {
		if b.Leaf.CheckSignatureFrom(c) == nil {
			return c
		}
	}
	return nil
}

// TLSCertificate returns the certificate, its intermediates and the key as a
// TLS client certificate. The root is left out: the peer has its own.
func (b *Bundle) TLSCertificate() tls.Certificate {
	tc := tls.Certificate{Certificate: [][]byte{b.Leaf.Raw}, PrivateKey: b.Key, Leaf: b.Leaf}
	for _, c := range b.Chain {
		if !c.Equal(b.Root) {
			tc.Certificate = append(tc.Certificate, c.Raw)
		}
	}
	return tc
}

// Roots returns a pool holding root.pem alone.
func (b *Bundle) Roots() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(b.Root)
	return p
}

// Load reads the certificate directory dir, first finishing or undoing a
// rekey that a crash interrupted. Without such leftovers it only reads, so it
// works on a directory the caller may not write.
func Load(dir string) (*Bundle, error) {
	if !rekeyLeftovers(dir) {
		return load(dir)
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := finishRekey(dir); err != nil {
		return nil, err
	}
	return load(dir)
}

// load reads dir; the caller holds the lock.
func load(dir string) (*Bundle, error) {
	certPEM, err := readFile(dir, CertFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w (%s)", ErrNotEnrolled, dir)
	}
	if err != nil {
		return nil, err
	}
	b := &Bundle{Dir: dir}
	if b.Leaf, err = parseOneCertificatePEM(certPEM, CertFile); err != nil {
		return nil, err
	}
	keyPEM, err := readFile(dir, KeyFile)
	if err != nil {
		return nil, err
	}
	if b.Key, err = ParseKeyPEM(keyPEM); err != nil {
		return nil, fmt.Errorf("%s: %w", KeyFile, err)
	}
	if !samePublicKey(b.Key.Public(), b.Leaf.PublicKey) {
		return nil, fmt.Errorf("client: %s does not hold the key of %s", KeyFile, CertFile)
	}
	chainPEM, err := readFile(dir, ChainFile)
	if err != nil {
		return nil, err
	}
	if b.Chain, err = ParseCertificatesPEM(chainPEM); err != nil {
		return nil, fmt.Errorf("%s: %w", ChainFile, err)
	}
	rootPEM, err := readFile(dir, RootFile)
	if err != nil {
		return nil, err
	}
	if b.Root, err = parseOneCertificatePEM(rootPEM, RootFile); err != nil {
		return nil, err
	}
	if err := checkRoot(b.Root); err != nil {
		return nil, fmt.Errorf("%s: %w", RootFile, err)
	}
	stateJSON, err := readFile(dir, StateFile)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// A directory assembled by hand: no remembered URLs.
	case err != nil:
		return nil, err
	default:
		if err := json.Unmarshal(stateJSON, &b.State); err != nil {
			return nil, fmt.Errorf("client: %s: %w", StateFile, err)
		}
	}
	return b, nil
}

// readFile reads dir/name, at most maxFileBytes.
func readFile(dir, name string) ([]byte, error) {
	f, err := os.Open(filepath.Join(dir, name))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("client: reading %s: %w", f.Name(), err)
	}
	if len(b) > maxFileBytes {
		return nil, fmt.Errorf("client: %s is larger than %d bytes", f.Name(), maxFileBytes)
	}
	return b, nil
}

// writeFileAtomic replaces dir/name with data and mode perm so that a reader
// (or a crash) sees the old file or the new one, never a mix: a temporary
// file in the same directory, written, synced, renamed over the old name,
// then the directory synced so that the rename itself is durable.
func writeFileAtomic(dir, name string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return fmt.Errorf("client: writing %s: %w", name, err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			_ = os.Remove(tmp)
		}
	}()
	// CreateTemp makes the file 0600; chmod before any byte is written.
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return fmt.Errorf("client: writing %s: %w", name, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("client: writing %s: %w", name, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("client: writing %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("client: writing %s: %w", name, err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("client: writing %s: %w", name, err)
	}
	ok = true
	return syncDir(dir)
}

// renameDurably renames dir/from to dir/to and syncs dir.
func renameDurably(dir, from, to string) error {
	if err := os.Rename(filepath.Join(dir, from), filepath.Join(dir, to)); err != nil {
		return fmt.Errorf("client: %w", err)
	}
	return syncDir(dir)
}

// syncDir makes the directory's entries (a rename, a removal) durable.
// Systems where a directory cannot be synced (Windows) skip it.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) && !errors.Is(err, errors.ErrUnsupported) {
		return fmt.Errorf("client: syncing %s: %w", dir, err)
	}
	return nil
}

// writeState records st in dir.
func writeState(dir string, st State) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	return writeFileAtomic(dir, StateFile, append(b, '\n'), 0o644)
}

// rekeyLeftovers reports whether an interrupted rekey left files in dir.
func rekeyLeftovers(dir string) bool {
	for _, n := range []string{CertFile + nextSuffix, KeyFile + nextSuffix} {
		if _, err := os.Lstat(filepath.Join(dir, n)); err == nil {
			return true
		}
	}
	return false
}

// finishRekey completes or undoes a rekey that stopped half-way; the caller
// holds the lock. A rekey writes key.pem.next before asking for the
// certificate and cert.pem.next once it has it, then renames both into place.
// So cert.pem.next present means the new certificate was received: roll
// forward. key.pem.next alone means it never was: the new key certifies
// nothing, so it goes.
func finishRekey(dir string) error {
	certNext, keyNext := CertFile+nextSuffix, KeyFile+nextSuffix
	certPEM, certErr := readFile(dir, certNext)
	_, keyErr := os.Stat(filepath.Join(dir, keyNext))
	if certErr != nil && !errors.Is(certErr, fs.ErrNotExist) {
		return certErr
	}
	if certErr != nil {
		if keyErr == nil {
			if err := os.Remove(filepath.Join(dir, keyNext)); err != nil {
				return fmt.Errorf("client: removing the key of an interrupted rekey: %w", err)
			}
			return syncDir(dir)
		}
		return nil
	}
	leaf, err := parseOneCertificatePEM(certPEM, certNext)
	if err != nil {
		return err
	}
	keyName := KeyFile
	if keyErr == nil {
		keyName = keyNext
	}
	keyPEM, err := readFile(dir, keyName)
	if err != nil {
		return err
	}
	key, err := ParseKeyPEM(keyPEM)
	if err != nil {
		return fmt.Errorf("%s: %w", keyName, err)
	}
	if !samePublicKey(key.Public(), leaf.PublicKey) {
		return fmt.Errorf("client: an interrupted rekey left %s, which does not match %s; move it away and renew again", certNext, keyName)
	}
	if keyName == keyNext {
		if err := renameDurably(dir, keyNext, KeyFile); err != nil {
			return err
		}
	}
	return renameDurably(dir, certNext, CertFile)
}
