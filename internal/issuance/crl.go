package issuance

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/big"
	"net/url"
	"slices"
	"strconv"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/pkid/pkid/internal/lint"
	"github.com/pkid/pkid/internal/pki"
)

// CRLTemplate describes a certificate revocation list (RFC 5280 §5) for
// SignCRL.
type CRLTemplate struct {
	// Number is the cRLNumber: positive, and greater than the number of
	// every CRL this issuer signed before (the caller's business: pkid takes
	// it from a database sequence).
	Number int64
	// ThisUpdate and NextUpdate bound the CRL's validity. They are encoded to
	// the second (fractions are cut off) and NextUpdate must be later. lint
	// caps NextUpdate at ThisUpdate + 10 days, or + 12 months when CA is set.
	ThisUpdate, NextUpdate time.Time
	// Entries are the revoked certificates, in any order: the CRL lists them
	// sorted by serial number (SignCRL leaves the slice as it is). Each
	// serial must be canonical and unique, each revocation time between
	// 1999 and ThisUpdate (to the second), each reason one of unspecified (written as no reasonCode, RFC 5280 §5.3.1),
	// keyCompromise, affiliationChanged, superseded, cessationOfOperation or
	// privilegeWithdrawn: the codes the CA/B Forum BRs (7.2.2) allow.
	Entries []pki.RevokedEntry
	// IDPURL, when set, is written as a critical issuingDistributionPoint
	// (RFC 5280 §5.2.5) whose fullName is this URI, with
	// onlyContainsUserCerts TRUE. It must be byte-identical to the CRL
	// distribution point of the certificates the CRL covers: use CRLURL.
	// "" writes no IDP (the root's CRL).
	IDPURL string
	// CA says the CRL covers CA certificates (the root's CRL, listing
	// revoked intermediates): it is linted with the 12-month nextUpdate
	// ceiling, and may not carry an IDP.
	CA bool
}

// CRLLintError reports a CRL that zlint refused. Nothing was signed by a
// real key. Err is the linter's error, a *lint.Error in practice.
type CRLLintError struct {
	Number int64 // the cRLNumber of the refused CRL
	Err    error
}

func (e *CRLLintError) Error() string {
	return fmt.Sprintf("issuance: CRL number %d refused by lint: %v", e.Number, e.Err)
}

func (e *CRLLintError) Unwrap() error { return e.Err }

// CRLURL returns the CRL distribution point that client certificates carry
// for publicURL, {publicURL}/crl, exactly as the client profile writes it: an
// IssuingDistributionPoint must match it byte for byte (RFC 5280 §5.2.5;
// Boulder's crl/idp). It fails for what Prepare would refuse. It is the
// first intermediate's; CRLURLOf gives any generation's.
func CRLURL(publicURL string) (string, error) {
	return CRLURLOf(publicURL, 1)
}

// CRLURLOf returns the CRL distribution point that the certificates of the
// intermediate of generation gen carry: {publicURL}{CRLPath(gen)}.
func CRLURLOf(publicURL string, gen int) (string, error) {
	base, err := baseURL(publicURL)
	if err != nil {
		return "", err
	}
	return base + CRLPath(gen), nil
}

// CRLPath returns the path, under the public URL, of the CRL of the
// intermediate of generation gen, as the certificates it issues name it:
// /crl for the first (the one `pkid init` makes, and the only one until
// `pkid ca rotate` runs: CONTRACT.md's distribution point), /crl/{gen} for
// each one a rotation makes. A URL in a certificate must name the same CRL
// for the certificate's whole life, so a later intermediate cannot take over
// /crl while certificates of the first still name it.
func CRLPath(gen int) string {
	if gen <= 1 {
		return "/crl"
	}
	return "/crl/" + strconv.Itoa(gen)
}

// IssuerPath returns the path, under the public URL, of the DER certificate
// of the intermediate of generation gen, as its certificates' caIssuers
// name it: /ca/issuer.cer for the first, /ca/issuer/{gen}.cer after.
func IssuerPath(gen int) string {
	if gen <= 1 {
		return "/ca/issuer.cer"
	}
	return "/ca/issuer/" + strconv.Itoa(gen) + ".cer"
}

// crlLinter is what SignCRL needs of a linter; *lint.Linter is one.
type crlLinter interface {
	CRL(der []byte) error
	CACRL(der []byte) error
}

// fullLintMax is the largest CRL that zlint sees whole. zcrypto's parser and
// zlint's CRL lints cost about 10 µs per entry (10 s for a million, twice
// pkid's whole budget for generating one), so beyond this size zlint lints a
// sample instead: see lintCopy.
const fullLintMax = 10_000

// lintSampleSpread is how many entries, evenly spaced, a sampled lint copy
// holds besides the first entry of every encoding shape.
const lintSampleSpread = 512

// SignCRL signs a CRL as issuer i: version 2, i's subject as issuer
// (byte-identical, from RawSubject), authorityKeyIdentifier from i's
// subjectKeyIdentifier, cRLNumber t.Number (non-critical), and the optional
// issuingDistributionPoint; revokedCertificates is omitted when there are no
// entries (RFC 5280 §5.1.2.6) and sorted by serial otherwise.
//
// Like a certificate, the CRL is linted before the real key signs: the same
// tbsCertList, with a placeholder signature, goes through zlint, then
// the real key signs the very bytes that were linted and the signature is
// verified. A CRL of more than fullLintMax entries is linted as described at
// lintCopy. A refusal is a *CRLLintError and makes no real signature; a
// template that cannot be signed as it stands is an error wrapping
// ErrBadRequest.
//
// The tbsCertList is encoded here rather than by x509.CreateRevocationList,
// which takes 5 s and 1 GB for a million entries, where SignCRL takes
// 0.6 s and 160 MB (docs/BENCHMARKS.md); the DER is written once, into the
// buffer returned. The tests check the encoding against
// CreateRevocationList's byte for byte.
func (i *Issuer) SignCRL(t CRLTemplate, l *lint.Linter) ([]byte, error) {
	if l == nil {
		return nil, errors.New("issuance: no linter: pkid never signs what it has not linted")
	}
	return i.signCRL(t, l)
}

func (i *Issuer) signCRL(t CRLTemplate, l crlLinter) ([]byte, error) {
	if i.Cert == nil || i.sigAlg == x509.UnknownSignatureAlgorithm {
		return nil, errors.New("issuance: issuer not made by NewIssuer")
	}
	enc, err := i.crlEncoder(t)
	if err != nil {
		return nil, err
	}
	plan, err := planEntries(t.Entries, enc.thisUpdate)
	if err != nil {
		return nil, err
	}

	// The real tbsCertList, written once into the buffer that becomes the
	// signed CRL: room for the outer SEQUENCE header in front of it and for
	// the algorithm and signature behind it.
	tbsLen := enc.tbsLen(plan.entriesLen, len(t.Entries))
	buf := make([]byte, outerHeaderRoom, outerHeaderRoom+tbsLen+len(enc.sigAlg)+maxSignatureTLV)
	buf, offsets := enc.appendTBS(buf, plan)
	tbs := buf[outerHeaderRoom:]
	if len(tbs) != tbsLen {
		return nil, fmt.Errorf("issuance: CRL %d: encoded %d bytes, planned %d", t.Number, len(tbs), tbsLen)
	}

	lintTBS := tbs
	if len(plan.list) > fullLintMax {
		// Everything but the unsampled entries must be the bytes that will
		// be signed.
		lintTBS = enc.lintCopy(tbs, offsets)
		if err := sameOutsideEntries(lintTBS, tbs); err != nil {
			return nil, fmt.Errorf("%w (CRL %d): %v", ErrTBSMismatch, t.Number, err)
		}
	}
	if err := i.lintCRL(lintTBS, enc.sigAlg, t, l); err != nil {
		return nil, err
	}

	sig, err := i.signBytes(tbs)
	if err != nil {
		return nil, fmt.Errorf("issuance: signing CRL %d: %w", t.Number, err)
	}
	der := wrapSigned(buf, enc.sigAlg, sig)
	parts, err := splitSigned(der)
	if err != nil || !bytes.Equal(parts.TBS, tbs) {
		return nil, fmt.Errorf("%w (CRL %d)", ErrTBSMismatch, t.Number)
	}
	return der, nil
}

// lintCRL lints tbs as a CRL whose signature is the issuer's placeholder
// (see placeholderSignature): the bytes zlint sees are those the real key
// will sign, and nothing is signed to see them.
func (i *Issuer) lintCRL(tbs, sigAlg []byte, t CRLTemplate, l crlLinter) error {
	if len(i.placeholder) == 0 {
		return errors.New("issuance: issuer not made by NewIssuer")
	}
	lintDER := assembleSigned(tbs, sigAlg, i.placeholder)
	check := l.CRL
	if t.CA {
		check = l.CACRL
	}
	if err := check(lintDER); err != nil {
		return &CRLLintError{Number: t.Number, Err: err}
	}
	return nil
}

// outerHeaderRoom is the room left in front of a tbsCertList for the
// CertificateList's SEQUENCE header: a tag and a length of up to 4 GiB.
const outerHeaderRoom = 6

// maxSignatureTLV bounds the signature BIT STRING: an RSA-8192 signature
// (1024 bytes) with its header. Larger ones still work, with one copy.
const maxSignatureTLV = 1024 + 8

// wrapSigned completes buf, which holds outerHeaderRoom spare bytes and then
// a tbsCertList, into a CertificateList: it appends the signature algorithm
// and signature and writes the outer SEQUENCE header just in front of the
// tbsCertList, returning the DER (a sub-slice of buf).
func wrapSigned(buf, sigAlg, sig []byte) []byte {
	buf = append(buf, sigAlg...)
	buf = appendHeader(buf, 0x03, len(sig)+1)
	buf = append(buf, 0) // no unused bits
	buf = append(buf, sig...)
	hdr := appendHeader(nil, 0x30, len(buf)-outerHeaderRoom)
	start := outerHeaderRoom - len(hdr)
	copy(buf[start:], hdr)
	return buf[start:]
}

// crlEncoder holds the parts of a tbsCertList that do not depend on the
// entries, each already encoded.
type crlEncoder struct {
	sigAlg     []byte // AlgorithmIdentifier
	issuer     []byte // Name
	thisUpdate time.Time
	times      []byte // thisUpdate then nextUpdate
	exts       []byte // [0] EXPLICIT Extensions
}

// RFC 5280 OIDs, as the content octets of an OBJECT IDENTIFIER.
var (
	oidAuthorityKeyIDBytes = []byte{0x55, 0x1d, 0x23} // 2.5.29.35
	oidCRLNumberBytes      = []byte{0x55, 0x1d, 0x14} // 2.5.29.20
	oidIDPBytes            = []byte{0x55, 0x1d, 0x1c} // 2.5.29.28
)

// sigAlgIDs are the AlgorithmIdentifiers of the algorithms
// signatureAlgorithm picks, as x509 encodes them: no parameters for ECDSA
// and Ed25519 (RFC 5758 §3.2, RFC 8410 §3), NULL for RSA (RFC 4055 §5).
var sigAlgIDs = map[x509.SignatureAlgorithm][]byte{
	x509.ECDSAWithSHA256: {0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02},
	x509.ECDSAWithSHA384: {0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03},
	x509.ECDSAWithSHA512: {0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04},
	x509.SHA256WithRSA:   {0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05, 0x00},
	x509.PureEd25519:     {0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70},
}

// crlEncoder checks the parts of t that do not concern entries and encodes
// them.
func (i *Issuer) crlEncoder(t CRLTemplate) (*crlEncoder, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: CRL %d: %s", ErrBadRequest, t.Number, fmt.Sprintf(format, args...))
	}
	if i.Cert.KeyUsage&x509.KeyUsageCRLSign == 0 {
		return nil, bad("issuer %s lacks the cRLSign key usage", i.ID)
	}
	if len(i.Cert.SubjectKeyId) == 0 {
		return nil, bad("issuer %s has no subject key identifier for the CRL's authority key identifier", i.ID)
	}
	sigAlg, ok := sigAlgIDs[i.sigAlg]
	if !ok {
		return nil, bad("no encoding for signature algorithm %s", i.sigAlg)
	}
	if t.Number <= 0 {
		return nil, bad("the CRL number must be positive")
	}
	thisUpdate, nextUpdate := t.ThisUpdate.UTC().Truncate(time.Second), t.NextUpdate.UTC().Truncate(time.Second)
	if !nextUpdate.After(thisUpdate) {
		return nil, bad("nextUpdate %s is not after thisUpdate %s", stamp(nextUpdate), stamp(thisUpdate))
	}
	if !encodableTime(thisUpdate) || !encodableTime(nextUpdate) {
		return nil, bad("thisUpdate or nextUpdate outside the years 1950 to 9999")
	}
	var idp []byte
	if t.IDPURL != "" {
		if t.CA {
			return nil, bad("the CRL of CA certificates carries no issuing distribution point")
		}
		if err := checkIDPURL(t.IDPURL); err != nil {
			return nil, bad("%v", err)
		}
		idp = issuingDistributionPoint(t.IDPURL)
	}

	enc := &crlEncoder{sigAlg: sigAlg, issuer: i.Cert.RawSubject, thisUpdate: thisUpdate}
	enc.times = appendTime(enc.times, thisUpdate)
	enc.times = appendTime(enc.times, nextUpdate)

	// Extensions in the order x509.CreateRevocationList writes them.
	var exts []byte
	aki := appendHeader(nil, 0x80, len(i.Cert.SubjectKeyId))
	aki = append(aki, i.Cert.SubjectKeyId...)
	exts = appendExtension(exts, oidAuthorityKeyIDBytes, false, appendTLV(nil, 0x30, aki))
	number, err := asn1.Marshal(t.Number)
	if err != nil {
		return nil, bad("%v", err)
	}
	exts = appendExtension(exts, oidCRLNumberBytes, false, number)
	if idp != nil {
		exts = appendExtension(exts, oidIDPBytes, true, idp)
	}
	enc.exts = appendTLV(nil, 0xa0, appendTLV(nil, 0x30, exts))
	return enc, nil
}

// checkIDPURL accepts an absolute http URL made of printable ASCII, which an
// IA5String holds as is.
func checkIDPURL(raw string) error {
	for i := 0; i < len(raw); i++ {
		if raw[i] <= ' ' || raw[i] > '~' {
			return fmt.Errorf("issuing distribution point %q is not printable ASCII", raw)
		}
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return fmt.Errorf("issuing distribution point %q is not an absolute http URL", raw)
	}
	return nil
}

// issuingDistributionPoint encodes
//
//	IssuingDistributionPoint ::= SEQUENCE {
//	    distributionPoint          [0] DistributionPointName OPTIONAL,
//	    onlyContainsUserCerts      [1] BOOLEAN DEFAULT FALSE, ... }
//	DistributionPointName ::= CHOICE { fullName [0] GeneralNames, ... }
//
// with one uniformResourceIdentifier [6] and onlyContainsUserCerts TRUE
// (RFC 5280 §5.2.5, implicit tags; a tagged CHOICE is explicit). pkid's
// intermediate CRL only ever lists leaves, and saying so lets relying
// parties refuse it as evidence about a CA certificate.
func issuingDistributionPoint(uri string) []byte {
	gn := appendTLV(nil, 0x86, []byte(uri)) // uniformResourceIdentifier
	fullName := appendTLV(nil, 0xa0, gn)    // fullName [0] GeneralNames
	dp := appendTLV(nil, 0xa0, fullName)    // distributionPoint [0]
	dp = append(dp, 0x81, 0x01, 0xff)       // onlyContainsUserCerts [1] TRUE
	return appendTLV(nil, 0x30, dp)         // IssuingDistributionPoint
}

// appendExtension appends an Extension: SEQUENCE { extnID, critical
// (only when TRUE: DER omits a DEFAULT), extnValue OCTET STRING }.
func appendExtension(b, oid []byte, critical bool, value []byte) []byte {
	n := 2 + len(oid) + headerLen(len(value)) + len(value)
	if critical {
		n += 3
	}
	b = appendHeader(b, 0x30, n)
	b = appendTLV(b, 0x06, oid)
	if critical {
		b = append(b, 0x01, 0x01, 0xff)
	}
	return appendTLV(b, 0x04, value)
}

// tbsContentLen is the length of the content of a tbsCertList with n
// entries whose encodings take entriesLen bytes.
func (e *crlEncoder) tbsContentLen(entriesLen, n int) int {
	content := 3 + len(e.sigAlg) + len(e.issuer) + len(e.times) + len(e.exts) // 3: version
	if n > 0 {
		content += headerLen(entriesLen) + entriesLen
	}
	return content
}

// tbsLen is the length of that tbsCertList, header included.
func (e *crlEncoder) tbsLen(entriesLen, n int) int {
	c := e.tbsContentLen(entriesLen, n)
	return headerLen(c) + c
}

// tbsHeader appends everything of a tbsCertList up to its entries.
func (e *crlEncoder) tbsHeader(b []byte, entriesLen, n int) []byte {
	b = appendHeader(b, 0x30, e.tbsContentLen(entriesLen, n))
	b = append(b, 0x02, 0x01, 0x01) // version v2
	b = append(b, e.sigAlg...)
	b = append(b, e.issuer...)
	b = append(b, e.times...)
	if n > 0 {
		b = appendHeader(b, 0x30, entriesLen)
	}
	return b
}

// appendTBS appends the tbsCertList with entries, laid out by plan, and
// returns the offsets (within the tbsCertList) of the sampled entries.
func (e *crlEncoder) appendTBS(b []byte, plan *entryPlan) ([]byte, []span) {
	start := len(b)
	b = e.tbsHeader(b, plan.entriesLen, len(plan.list))
	var spans []span
	next := 0 // index into plan.sample
	for k := range plan.list {
		at := len(b)
		b = appendEntry(b, &plan.list[k])
		if next < len(plan.sample) && plan.sample[next] == k {
			spans = append(spans, span{at - start, len(b) - start})
			next++
		}
	}
	return append(b, e.exts...), spans
}

// span is the position of one encoded entry in a tbsCertList.
type span struct{ from, to int }

// lintCopy returns the tbsCertList that zlint checks in place of a large
// one: every byte of the real tbsCertList (version, signature algorithm,
// issuer, thisUpdate, nextUpdate, the extensions: AKI, cRLNumber, IDP) and a
// sample of its entries, each byte-identical to the entry in the real
// tbsCertList.
//
// What zlint does not see, the other entries, is covered without it. zlint's
// CRL lints that read entries check, per entry: a unique serial
// (e_crl_unique_revoked_certificate), a revocation date neither before 1999
// (e_crl_revocation_date_too_early) nor after thisUpdate
// (e_crl_revocation_time_after_this_update), an allowed reason code
// (e_crl_has_valid_reason_code, e_cab_crl_has_valid_reason_code), a
// non-critical reasonCode (e_cab_crl_reason_code_not_critical), no
// duplicate entry extension (…_crl_entry_has_no_duplicate_extensions) and
// no empty crlEntryExtensions (e_crl_empty_extn_sequence). planEntries
// checks the first four on every entry before anything is encoded; the
// last three are properties of appendEntry, the one function that encodes
// every entry, whose output has a fixed shape for each (reason, time
// encoding, serial length): the sample holds the first entry of each such
// shape present in the CRL, so zlint has seen every kind of encoding that
// the unsampled entries share. The sample also holds the first and last
// entries and lintSampleSpread entries evenly spaced. The remaining CRL
// lints concern the parts that are copied whole.
func (e *crlEncoder) lintCopy(tbs []byte, spans []span) []byte {
	entriesLen := 0
	for _, s := range spans {
		entriesLen += s.to - s.from
	}
	b := e.tbsHeader(make([]byte, 0, e.tbsLen(entriesLen, len(spans))), entriesLen, len(spans))
	for _, s := range spans {
		b = append(b, tbs[s.from:s.to]...)
	}
	return append(b, e.exts...)
}

// sameOutsideEntries checks that two tbsCertLists differ at most in the
// entries of revokedCertificates: the fields before it, its presence and the
// extensions after it are the same bytes.
func sameOutsideEntries(a, b []byte) error {
	split := func(der []byte) (head []byte, entries bool, exts []byte, ok bool) {
		in := cryptobyte.String(der)
		var tbs cryptobyte.String
		if !in.ReadASN1(&tbs, cbasn1.SEQUENCE) || !in.Empty() {
			return nil, false, nil, false
		}
		all := []byte(tbs)
		var skip cryptobyte.String
		var tag cbasn1.Tag
		for range 5 { // version, signature, issuer, thisUpdate, nextUpdate
			if !tbs.ReadAnyASN1Element(&skip, &tag) {
				return nil, false, nil, false
			}
		}
		head = all[:len(all)-len(tbs)]
		ok = tbs.ReadOptionalASN1(&skip, &entries, cbasn1.SEQUENCE)
		return head, entries, tbs, ok
	}
	ha, ea, xa, oka := split(a)
	hb, eb, xb, okb := split(b)
	if !oka || !okb || ea != eb || !bytes.Equal(ha, hb) || !bytes.Equal(xa, xb) {
		return errors.New("the linted tbsCertList differs outside its entries")
	}
	return nil
}

// entryPlan is what planEntries made of the entries: each checked and in
// a compact form, sorted by serial; the length of their encodings together;
// and, for a CRL linted by sample, the indices of the sampled entries in
// increasing order.
type entryPlan struct {
	list       []crlEntry
	entriesLen int
	sample     []int
}

// crlEntry is a checked entry ready to encode. It holds no pointers: a
// million of them take 32 MB, sort without chasing a string per comparison
// and cost the garbage collector nothing to scan.
type crlEntry struct {
	key    uint64   // n, then the first 7 octets of serial: decides most comparisons
	serial [20]byte // the DER INTEGER's content octets, left-aligned
	n      uint8    // how many of them
	reason uint8    // 0: no reasonCode
	at     int64    // revocation date, Unix seconds
}

// compare orders entries by serial number: a positive DER INTEGER with more
// content octets is larger; for equal lengths the octets decide (the unused
// tail of serial is zero in both).
func (e *crlEntry) compare(o *crlEntry) int {
	if e.key != o.key {
		if e.key < o.key {
			return -1
		}
		return 1
	}
	return bytes.Compare(e.serial[:], o.serial[:])
}

func (e *crlEntry) serialHex() string { return new(big.Int).SetBytes(e.serial[:e.n]).Text(16) }

// rfc2459 is zlint's earliest acceptable revocation date
// (e_crl_revocation_date_too_early).
var rfc2459 = time.Date(1999, time.January, 1, 0, 0, 0, 0, time.UTC)

// crlReasons are the reason codes a CRL entry may carry: those of the
// CA/B Forum BRs 7.2.2 (zlint e_cab_crl_has_valid_reason_code), plus
// unspecified, which is written as no reasonCode at all (RFC 5280 §5.3.1).
// certificateHold (6) and removeFromCRL (8) never appear: pkid does not
// suspend, and its CRLs are full CRLs, not deltas. cACompromise (2) is for
// CA certificates, and the BRs want keyCompromise there too.
var crlReasons = map[pki.RevocationReason]bool{
	pki.ReasonUnspecified:          true,
	pki.ReasonKeyCompromise:        true,
	pki.ReasonAffiliationChanged:   true,
	pki.ReasonSuperseded:           true,
	pki.ReasonCessationOfOperation: true,
	pki.ReasonPrivilegeWithdrawn:   true,
}

// planEntries checks every entry (see lintCopy for why these checks, and
// what else covers an entry): a canonical serial of at most 20 octets, no
// serial twice, a revocation date from 1999 to thisUpdate (to the second),
// an allowed reason code. It returns them sorted by serial.
func planEntries(entries []pki.RevokedEntry, thisUpdate time.Time) (*entryPlan, error) {
	p := &entryPlan{list: make([]crlEntry, len(entries))}
	upper, lower := thisUpdate.Unix(), rfc2459.Unix()
	for k := range entries {
		e, c := &entries[k], &p.list[k]
		bad := func(format string, args ...any) error {
			return fmt.Errorf("%w: CRL entry %q: %s", ErrBadRequest, e.Serial, fmt.Sprintf(format, args...))
		}
		if !parseSerial(e.Serial, c) {
			return nil, bad("not a canonical serial number of at most 20 octets")
		}
		if !crlReasons[e.Reason] {
			return nil, bad("reason %s (%d) is not one a CRL may carry", e.Reason, int(e.Reason))
		}
		c.reason = uint8(e.Reason)
		// Unix rounds toward the past, as the encoding cuts fractions off.
		c.at = e.RevokedAt.Unix()
		if c.at < lower || c.at > upper {
			return nil, bad("revocation date %s is not between 1999 and thisUpdate %s", stamp(e.RevokedAt), stamp(thisUpdate))
		}
		p.entriesLen += c.len()
	}
	p.list = sortEntries(p.list)
	for k := 1; k < len(p.list); k++ {
		if p.list[k-1].compare(&p.list[k]) == 0 {
			return nil, fmt.Errorf("%w: CRL entry %s: listed twice", ErrBadRequest, p.list[k].serialHex())
		}
	}
	if n := len(p.list); n > fullLintMax {
		p.sample = sample(p.list)
	}
	return p, nil
}

// sortEntries returns list sorted by serial. Large lists are sorted by key
// with a radix sort (four passes of 16 bits over 16-byte references, a
// third of the time a comparison sort of the entries takes for a million),
// then each run of equal keys, if any, by the whole serial.
func sortEntries(list []crlEntry) []crlEntry {
	byCompare := func(a, b crlEntry) int { return a.compare(&b) }
	if len(list) < 4096 || len(list) > math.MaxUint32 {
		slices.SortFunc(list, byCompare)
		return list
	}
	type ref struct {
		key uint64
		idx uint32
	}
	refs, tmp := make([]ref, len(list)), make([]ref, len(list))
	for i := range list {
		refs[i] = ref{list[i].key, uint32(i)}
	}
	var count [1 << 16]int
	for shift := 0; shift < 64; shift += 16 {
		clear(count[:])
		for _, r := range refs {
			count[r.key>>shift&0xffff]++
		}
		sum := 0
		for d, c := range count {
			count[d], sum = sum, sum+c
		}
		for _, r := range refs {
			d := r.key >> shift & 0xffff
			tmp[count[d]] = r
			count[d]++
		}
		refs, tmp = tmp, refs
	}
	out := make([]crlEntry, len(list))
	for i, r := range refs {
		out[i] = list[r.idx]
	}
	for i := 0; i < len(out); {
		j := i + 1
		for j < len(out) && out[j].key == out[i].key {
			j++
		}
		if j-i > 1 {
			slices.SortFunc(out[i:j], byCompare)
		}
		i = j
	}
	return out
}

// sample picks the entries a sampled lint copy holds (see lintCopy): the
// first of every encoding shape, the first and the last, and
// lintSampleSpread evenly spaced.
func sample(list []crlEntry) []int {
	type shape struct {
		reason, n, timeLen uint8
	}
	seen := map[shape]bool{}
	stride := max(1, len(list)/lintSampleSpread)
	var out []int
	for k := range list {
		e := &list[k]
		s := shape{e.reason, e.n, uint8(timeLen(e.at))}
		if !seen[s] || k%stride == 0 || k == len(list)-1 {
			seen[s] = true
			out = append(out, k)
		}
	}
	return out
}

// parseSerial decodes a canonical serial (lowercase hex, no leading zero)
// into c as the content octets of a DER INTEGER, and reports whether it is
// such a serial of at most 20 octets (RFC 5280 §4.1.2.2).
func parseSerial(s pki.Serial, c *crlEntry) bool {
	if len(s) == 0 || len(s) > 40 || s[0] == '0' {
		return false
	}
	n := (len(s) + 1) / 2
	pad := len(s)%2 == 0 && s[0] >= '8' // a leading zero octet keeps it positive
	if pad {
		n++
	}
	if n > len(c.serial) {
		return false
	}
	c.n = uint8(n)
	i, j := 0, 0
	if pad {
		j++
	}
	if len(s)%2 == 1 {
		v, ok := unhex(s[0])
		if !ok {
			return false
		}
		c.serial[j] = v
		i, j = 1, j+1
	}
	for ; i < len(s); i, j = i+2, j+1 {
		hi, ok1 := unhex(s[i])
		lo, ok2 := unhex(s[i+1])
		if !ok1 || !ok2 {
			return false
		}
		c.serial[j] = hi<<4 | lo
	}
	c.key = uint64(c.n)<<56 | binary.BigEndian.Uint64(c.serial[:8])>>8
	return true
}

// reasonExtLen is the length of crlEntryExtensions holding one reasonCode.
const reasonExtLen = 14

// len is the length of the encoded entry.
func (e *crlEntry) len() int {
	n := 2 + int(e.n) + timeLen(e.at)
	if e.reason != 0 {
		n += reasonExtLen
	}
	return 2 + n // every entry is shorter than 128 bytes
}

// appendEntry appends one revokedCertificates entry:
//
//	SEQUENCE { userCertificate INTEGER, revocationDate Time,
//	           crlEntryExtensions SEQUENCE { reasonCode } OPTIONAL }
//
// with the reasonCode extension (non-critical, ENUMERATED) only for a reason
// other than unspecified. It is the only function that encodes entries.
func appendEntry(b []byte, e *crlEntry) []byte {
	b = append(b, 0x30, byte(e.len()-2), 0x02, e.n)
	b = append(b, e.serial[:e.n]...)
	b = appendTime(b, time.Unix(e.at, 0).UTC())
	if e.reason != 0 {
		// Extensions { Extension { id-ce-cRLReasons, OCTET STRING { ENUMERATED } } }
		b = append(b, 0x30, 0x0c, 0x30, 0x0a, 0x06, 0x03, 0x55, 0x1d, 0x15, 0x04, 0x03, 0x0a, 0x01, e.reason)
	}
	return b
}

// unhex returns the value of a lowercase hex digit.
func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

func encodableTime(t time.Time) bool { y := t.Year(); return 1950 <= y && y <= 9999 }

// timeLen is the length of the encoded Time for a Unix time: a UTCTime
// from 1950 to 2049, a GeneralizedTime otherwise (RFC 5280 §5.1.2.4).
func timeLen(unix int64) int {
	if utcFrom <= unix && unix < utcUntil {
		return 15
	}
	return 17
}

// The Unix times from which and until which Time is a UTCTime.
var (
	utcFrom  = time.Date(1950, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
	utcUntil = time.Date(2050, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
)

// appendTime appends t (UTC, whole seconds) as UTCTime YYMMDDHHMMSSZ or
// GeneralizedTime YYYYMMDDHHMMSSZ, with seconds and Z as RFC 5280 requires.
func appendTime(b []byte, t time.Time) []byte {
	y, mo, d := t.Date()
	h, mi, s := t.Clock()
	if timeLen(t.Unix()) == 15 {
		b = append(b, 0x17, 13)
		b = append2(b, y%100)
	} else {
		b = append(b, 0x18, 15)
		b = append2(b, y/100)
		b = append2(b, y%100)
	}
	b = append2(b, int(mo))
	b = append2(b, d)
	b = append2(b, h)
	b = append2(b, mi)
	b = append2(b, s)
	return append(b, 'Z')
}

func append2(b []byte, v int) []byte { return append(b, byte('0'+v/10), byte('0'+v%10)) }

// headerLen is the length of the tag and length octets for n content octets.
func headerLen(n int) int {
	switch {
	case n < 0x80:
		return 2
	case n < 0x100:
		return 3
	case n < 0x10000:
		return 4
	case n < 0x1000000:
		return 5
	}
	return 6
}

// appendHeader appends a tag and the DER length n.
func appendHeader(b []byte, tag byte, n int) []byte {
	b = append(b, tag)
	l := headerLen(n)
	if l == 2 {
		return append(b, byte(n))
	}
	b = append(b, 0x80|byte(l-2))
	for i := l - 3; i >= 0; i-- {
		b = append(b, byte(n>>(8*i)))
	}
	return b
}

func appendTLV(b []byte, tag byte, content []byte) []byte {
	return append(appendHeader(b, tag, len(content)), content...)
}
