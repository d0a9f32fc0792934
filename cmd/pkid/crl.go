package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"
)

// maxCRLBytes bounds a downloaded CRL: a million entries take 45 MiB, so
// this leaves room for ten times as many and no more.
const maxCRLBytes = 512 << 20

// crlFetch is what `pkid crl fetch` was asked to do.
type crlFetch struct {
	url     string
	caFile  string
	out     string
	rootCRL bool
	// intermediates: fetch the CRL of every live intermediate, as
	// ca/intermediates beside url lists them, instead of url's alone.
	intermediates bool
	timeout       time.Duration
	now           func() time.Time
	client        *http.Client
}

// fetchedCRL is one CRL of the output file: where it came from and what it
// is.
type fetchedCRL struct {
	url      string
	der      []byte
	crl      *x509.RevocationList
	state    fetchState
	modified bool // downloaded now, not kept from the existing file
}

// fetchState is what the sidecar file keeps per URL for the next
// conditional GET: the validators the server sent and the SHA-256 of the
// CRL they belong to, so that a 304 is only believed for a CRL the output
// file still holds.
type fetchState struct {
	ETag         string `json:"etag,omitempty"`
	LastModified string `json:"last_modified,omitempty"`
	SHA256       string `json:"sha256"`
}

// cmdCRLFetch is `pkid crl fetch --url URL --ca FILE --out FILE [--root-crl]
// [--intermediates]`: it downloads pkid's CRL (with --intermediates the CRL
// of every live intermediate, as ca/intermediates next to URL lists them:
// two or more after `pkid ca rotate`; with --root-crl also the root's CRL,
// from ca/root.crl next to URL) with a conditional GET, verifies each CRL's
// signature against the CA certificates in FILE, checks that it is current
// (thisUpdate passed, nextUpdate ahead) and that its number did not go down
// from the CRL of the same issuer in the existing output, and replaces the
// output, PEM, atomically. nginx's ssl_crl reads that file: checking the
// whole chain (ssl_verify_depth 2) needs the root's CRL beside the
// intermediate's. It prints "unchanged" when the server had nothing new and
// fails, leaving the output as it was, on anything else.
func cmdCRLFetch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("pkid crl fetch", flag.ContinueOnError)
	fs.SetOutput(stderr)
	f := crlFetch{now: time.Now}
	fs.StringVar(&f.url, "url", "", "URL of the issuing CA's CRL, e.g. http://pkid.internal:8080/crl")
	fs.StringVar(&f.caFile, "ca", "", "PEM file of the CA certificates the CRLs must be signed by (the root, or the chain)")
	fs.StringVar(&f.out, "out", "", "file to write the CRLs to, PEM; replaced atomically")
	fs.BoolVar(&f.rootCRL, "root-crl", false, "also fetch the root's CRL (ca/root.crl beside --url) into --out, for checking the whole chain")
	fs.BoolVar(&f.intermediates, "intermediates", false, "fetch the CRL of every live intermediate (ca/intermediates beside --url lists them; several after `pkid ca rotate`) instead of --url's alone; --ca must then hold them all (GET /ca/bundle.pem)")
	fs.DurationVar(&f.timeout, "timeout", 30*time.Second, "time limit for the whole fetch")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if f.url == "" || f.caFile == "" || f.out == "" || fs.NArg() != 0 {
		fmt.Fprintln(stderr, "pkid crl fetch: --url, --ca and --out are required")
		return errUsage
	}
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	f.client = &http.Client{}
	changed, crls, err := f.run(ctx)
	if err != nil {
		return fmt.Errorf("crl fetch: %w", err)
	}
	if !changed {
		fmt.Fprintln(stdout, "unchanged")
		return nil
	}
	for _, c := range crls {
		verb := "kept"
		if c.modified {
			verb = "updated"
		}
		fmt.Fprintf(stdout, "%s %s: number %s, %d entries, next update %s\n", verb, c.url, c.crl.Number,
			len(c.crl.RevokedCertificateEntries), c.crl.NextUpdate.UTC().Format(time.RFC3339))
	}
	return nil
}

// run does the fetch and reports whether the output changed.
func (f *crlFetch) run(ctx context.Context) (bool, []*fetchedCRL, error) {
	cas, err := readCertificates(f.caFile)
	if err != nil {
		return false, nil, err
	}
	urls := []string{f.url}
	if f.intermediates {
		if urls, err = f.intermediateCRLs(ctx); err != nil {
			return false, nil, err
		}
	}
	if f.rootCRL {
		root, err := siblingURL(f.url, "ca/root.crl")
		if err != nil {
			return false, nil, err
		}
		urls = append(urls, root)
	}
	existing := f.readExisting()
	states := f.readStates()

	var crls []*fetchedCRL
	changed := false
	for _, u := range urls {
		c, err := f.fetch(ctx, u, states[u], existing)
		if err != nil {
			return false, nil, err
		}
		if err := f.check(c, cas, existing); err != nil {
			return false, nil, fmt.Errorf("%s: %w", u, err)
		}
		changed = changed || c.modified
		crls = append(crls, c)
	}
	for i := range crls {
		for j := i + 1; j < len(crls); j++ {
			if bytes.Equal(crls[i].crl.RawIssuer, crls[j].crl.RawIssuer) {
				return false, nil, fmt.Errorf("%s and %s are CRLs of the same issuer", crls[i].url, crls[j].url)
			}
		}
	}
	if !changed && len(existing) == len(crls) {
		return false, crls, nil
	}
	var out bytes.Buffer
	next := map[string]fetchState{}
	for _, c := range crls {
		_ = pem.Encode(&out, &pem.Block{Type: "X509 CRL", Bytes: c.der})
		next[c.url] = c.state
	}
	if err := writeAtomically(f.out, out.Bytes(), 0o644); err != nil {
		return false, nil, err
	}
	// The state only saves a download next time: failing to write it loses
	// nothing but that, and must not make the fetch look failed.
	if b, err := json.MarshalIndent(next, "", "  "); err == nil {
		_ = writeAtomically(f.statePath(), append(b, '\n'), 0o644)
	}
	return true, crls, nil
}

// maxIndexBytes bounds the answer of ca/intermediates: a few kilobytes per
// live intermediate, and there are rarely more than two.
const maxIndexBytes = 1 << 20

// crlPathRE is the form of the crl_path that ca/intermediates gives: pkid's
// own CRL routes and nothing else, so that the answer cannot point the
// fetch anywhere but at pkid.
var crlPathRE = regexp.MustCompile(`^/crl(/[1-9][0-9]{0,5})?$`)

// intermediateCRLs asks ca/intermediates beside f.url for the live
// intermediates and returns the URL of each one's CRL, resolved like
// ca/root.crl against f.url.
func (f *crlFetch) intermediateCRLs(ctx context.Context) ([]string, error) {
	index, err := siblingURL(f.url, "ca/intermediates")
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, index, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", index, resp.Status)
	}
	var body struct {
		Intermediates []struct {
			CRLPath string `json:"crl_path"`
		} `json:"intermediates"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxIndexBytes)).Decode(&body); err != nil {
		return nil, fmt.Errorf("GET %s: %w", index, err)
	}
	var urls []string
	for _, in := range body.Intermediates {
		if !crlPathRE.MatchString(in.CRLPath) {
			return nil, fmt.Errorf("GET %s: %q is not a pkid CRL path", index, in.CRLPath)
		}
		u, err := siblingURL(f.url, strings.TrimPrefix(in.CRLPath, "/"))
		if err != nil {
			return nil, err
		}
		urls = append(urls, u)
	}
	if len(urls) == 0 {
		return nil, fmt.Errorf("GET %s lists no intermediate", index)
	}
	return urls, nil
}

// fetch downloads one CRL, conditionally when the output still holds the
// one the saved validators are for.
func (f *crlFetch) fetch(ctx context.Context, u string, st fetchState, existing map[string][]byte) (*fetchedCRL, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", u, err)
	}
	held, conditional := existing[st.SHA256]
	if conditional {
		if st.ETag != "" {
			req.Header.Set("If-None-Match", st.ETag)
		}
		if st.LastModified != "" {
			req.Header.Set("If-Modified-Since", st.LastModified)
		}
	}
	req.Header.Set("Accept", "application/pkix-crl")
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotModified && conditional:
		c := &fetchedCRL{url: u, der: held, state: st}
		if c.crl, err = x509.ParseRevocationList(held); err != nil {
			return nil, fmt.Errorf("%s: the CRL held in %s: %w", u, f.out, err)
		}
		return c, nil
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxCRLBytes+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	if len(body) > maxCRLBytes {
		return nil, fmt.Errorf("GET %s: the CRL is larger than %d bytes", u, maxCRLBytes)
	}
	der := body
	if block, rest := pem.Decode(body); block != nil {
		if block.Type != "X509 CRL" || len(bytes.TrimSpace(rest)) != 0 {
			return nil, fmt.Errorf("GET %s: the PEM answer is not one X509 CRL", u)
		}
		der = block.Bytes
	}
	c := &fetchedCRL{url: u, der: der, modified: true}
	if c.crl, err = x509.ParseRevocationList(der); err != nil {
		return nil, fmt.Errorf("GET %s: not a CRL: %w", u, err)
	}
	sum := sha256.Sum256(der)
	c.state = fetchState{ETag: resp.Header.Get("ETag"), LastModified: resp.Header.Get("Last-Modified"), SHA256: hex.EncodeToString(sum[:])}
	return c, nil
}

// check verifies c's signature against one of cas, that it is current, and
// that its number is not below that of the CRL of the same issuer in the
// existing output (equal only for the same CRL).
func (f *crlFetch) check(c *fetchedCRL, cas []*x509.Certificate, existing map[string][]byte) error {
	verified := false
	for _, ca := range cas {
		if bytes.Equal(ca.RawSubject, c.crl.RawIssuer) && c.crl.CheckSignatureFrom(ca) == nil {
			verified = true
			break
		}
	}
	if !verified {
		return fmt.Errorf("the CRL's signature does not verify with any certificate in %s (after `pkid ca rotate`, --ca needs every live intermediate: GET /ca/bundle.pem)", f.caFile)
	}
	now := f.now()
	switch {
	case c.crl.NextUpdate.IsZero() || !now.Before(c.crl.NextUpdate):
		return fmt.Errorf("the CRL expired at %s (nextUpdate): OpenSSL would refuse every certificate with it", c.crl.NextUpdate.UTC().Format(time.RFC3339))
	case c.crl.ThisUpdate.After(now):
		return fmt.Errorf("the CRL's thisUpdate %s is in the future: OpenSSL would refuse it (are the clocks in step?)", c.crl.ThisUpdate.UTC().Format(time.RFC3339))
	case c.crl.Number == nil:
		return errors.New("the CRL has no number")
	}
	for _, der := range existing {
		old, err := x509.ParseRevocationList(der)
		if err != nil || !bytes.Equal(old.RawIssuer, c.crl.RawIssuer) || old.Number == nil {
			continue
		}
		switch cmp := c.crl.Number.Cmp(old.Number); {
		case cmp < 0:
			return fmt.Errorf("the CRL number went down, from %s to %s: refusing to replace the newer CRL", old.Number, c.crl.Number)
		case cmp == 0 && !bytes.Equal(der, c.der):
			return fmt.Errorf("CRL number %s names two different CRLs", c.crl.Number)
		}
	}
	return nil
}

// readExisting returns the CRLs of the existing output by their SHA-256
// (hex); none when there is no output yet. An output that cannot be read is
// reported and replaced: it is this command's own file.
func (f *crlFetch) readExisting() map[string][]byte {
	out := map[string][]byte{}
	b, err := os.ReadFile(f.out)
	if err != nil {
		return out
	}
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return out
		}
		if block.Type == "X509 CRL" {
			sum := sha256.Sum256(block.Bytes)
			out[hex.EncodeToString(sum[:])] = block.Bytes
		}
	}
}

func (f *crlFetch) statePath() string { return f.out + ".fetch.json" }

// readStates returns the saved validators by URL; none when the sidecar is
// missing or unreadable (the next fetch is then unconditional).
func (f *crlFetch) readStates() map[string]fetchState {
	states := map[string]fetchState{}
	if b, err := os.ReadFile(f.statePath()); err == nil {
		_ = json.Unmarshal(b, &states)
	}
	return states
}

// readCertificates reads every CERTIFICATE of a PEM file.
func readCertificates(file string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%s holds no PEM certificate", file)
	}
	return certs, nil
}

// siblingURL resolves ref against base as a relative reference:
// http://h/crl and "ca/root.crl" give http://h/ca/root.crl, and a pkid
// behind a path prefix keeps it.
func siblingURL(base, ref string) (string, error) {
	u, err := url.Parse(base)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return "", fmt.Errorf("--url %q is not an absolute URL", base)
	}
	r, err := url.Parse(ref)
	if err != nil {
		return "", err
	}
	return u.ResolveReference(r).String(), nil
}

// writeAtomically replaces file with data: a temporary file in the same
// directory is written, synced and renamed over it, and the directory is
// synced, so that a reader sees the old file or the new one, never a part,
// and a crash leaves one of the two.
func writeAtomically(file string, data []byte, mode os.FileMode) (err error) {
	dir := filepath.Dir(file)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(file)+".*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err = tmp.Write(data); err != nil {
		return err
	}
	if err = tmp.Chmod(mode); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp.Name(), file); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	// Some file systems cannot sync a directory (EINVAL); the rename
	// stands either way.
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return err
	}
	return nil
}
