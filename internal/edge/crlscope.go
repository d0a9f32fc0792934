package edge

import (
	"crypto/x509"
	"crypto/x509/pkix"
	encasn1 "encoding/asn1"
	"errors"
	"fmt"
	"net/url"
	"slices"

	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"
)

// Extension OIDs a CRL may carry (RFC 5280 §5.2, §5.3).
var (
	oidAuthorityKeyID   = encasn1.ObjectIdentifier{2, 5, 29, 35}
	oidCRLNumber        = encasn1.ObjectIdentifier{2, 5, 29, 20}
	oidIssuingDP        = encasn1.ObjectIdentifier{2, 5, 29, 28}
	oidDeltaCRL         = encasn1.ObjectIdentifier{2, 5, 29, 27}
	oidFreshestCRL      = encasn1.ObjectIdentifier{2, 5, 29, 46}
	oidIssuerAltName    = encasn1.ObjectIdentifier{2, 5, 29, 18}
	oidAuthorityInfo    = encasn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 1}
	oidReasonCode       = encasn1.ObjectIdentifier{2, 5, 29, 21}
	oidInvalidityDate   = encasn1.ObjectIdentifier{2, 5, 29, 24}
	oidCertificateIssue = encasn1.ObjectIdentifier{2, 5, 29, 29}
)

// errCRLScope: the CRL is not one the edge may rely on for pkid's client
// certificates, whatever its signature.
var errCRLScope = errors.New("edge: CRL out of scope")

// crlScope is what a CRL covers, read from its extensions.
type crlScope struct {
	// dpURIs are the fullName URIs of the issuingDistributionPoint; empty
	// for a full CRL (no IDP, or an IDP without a distribution point).
	dpURIs []string
}

// checkCRLScope reads rl's extensions and refuses, with errCRLScope, a CRL
// the edge cannot treat as complete for end-entity certificates (RFC 5280
// §6.3.3): a delta CRL, an indirect CRL (CRL-level indirectCRL or an entry
// with certificateIssuer), one limited to CA or attribute certificates or
// to some reasons, a distribution point named relative to the issuer, an
// unknown critical extension at either level, or an extension that appears
// twice. The IDP parser is strict DER and never panics (GHSA-82j2-j2ch-gfr8
// was a panic on an empty onlySomeReasons).
func checkCRLScope(rl *x509.RevocationList) (crlScope, error) {
	var sc crlScope
	if err := noDuplicates(rl.Extensions); err != nil {
		return sc, err
	}
	for _, ext := range rl.Extensions {
		switch {
		case ext.Id.Equal(oidIssuingDP):
			uris, err := parseIDP(ext.Value)
			if err != nil {
				return sc, err
			}
			sc.dpURIs = uris
		case ext.Id.Equal(oidDeltaCRL):
			return sc, fmt.Errorf("%w: a delta CRL", errCRLScope)
		case ext.Id.Equal(oidAuthorityKeyID), ext.Id.Equal(oidCRLNumber),
			ext.Id.Equal(oidFreshestCRL), ext.Id.Equal(oidIssuerAltName), ext.Id.Equal(oidAuthorityInfo):
		default:
			if ext.Critical {
				return sc, fmt.Errorf("%w: unknown critical extension %s", errCRLScope, ext.Id)
			}
		}
	}
	for _, e := range rl.RevokedCertificateEntries {
		if err := noDuplicates(e.Extensions); err != nil {
			return sc, err
		}
		for _, ext := range e.Extensions {
			switch {
			case ext.Id.Equal(oidCertificateIssue):
				return sc, fmt.Errorf("%w: an indirect CRL (certificateIssuer entry extension)", errCRLScope)
			case ext.Id.Equal(oidReasonCode), ext.Id.Equal(oidInvalidityDate):
			default:
				if ext.Critical {
					return sc, fmt.Errorf("%w: unknown critical entry extension %s", errCRLScope, ext.Id)
				}
			}
		}
	}
	return sc, nil
}

func noDuplicates(exts []pkix.Extension) error {
	for i := range exts {
		for j := i + 1; j < len(exts); j++ {
			if exts[i].Id.Equal(exts[j].Id) {
				return fmt.Errorf("%w: extension %s appears twice", errCRLScope, exts[i].Id)
			}
		}
	}
	return nil
}

// parseIDP parses an IssuingDistributionPoint (RFC 5280 §5.2.5, implicit
// tags) and returns its fullName URIs, refusing every field that limits the
// CRL's scope below "all end-entity certificates of the issuer, all
// reasons".
func parseIDP(der []byte) ([]string, error) {
	bad := fmt.Errorf("%w: malformed issuingDistributionPoint", errCRLScope)
	in := cryptobyte.String(der)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, asn1.SEQUENCE) || !in.Empty() {
		return nil, bad
	}
	var uris []string
	// distributionPoint [0] DistributionPointName, a CHOICE, hence
	// explicitly tagged: fullName [0] GeneralNames or
	// nameRelativeToCRLIssuer [1].
	var dp cryptobyte.String
	var present bool
	if !seq.ReadOptionalASN1(&dp, &present, asn1.Tag(0).Constructed().ContextSpecific()) {
		return nil, bad
	}
	if present {
		var names cryptobyte.String
		if !dp.ReadASN1(&names, asn1.Tag(0).Constructed().ContextSpecific()) || !dp.Empty() {
			return nil, fmt.Errorf("%w: the distribution point is not a fullName", errCRLScope)
		}
		for !names.Empty() {
			var name cryptobyte.String
			var tag asn1.Tag
			if !names.ReadAnyASN1(&name, &tag) {
				return nil, bad
			}
			if tag == asn1.Tag(6).ContextSpecific() { // uniformResourceIdentifier
				u := string(name)
				if _, err := url.Parse(u); err != nil {
					return nil, bad
				}
				uris = append(uris, u)
			}
		}
	}
	flags := []struct {
		tag  asn1.Tag
		name string
		ok   bool // whether TRUE is acceptable
	}{
		{asn1.Tag(1).ContextSpecific(), "onlyContainsUserCerts", true},
		{asn1.Tag(2).ContextSpecific(), "onlyContainsCACerts", false},
	}
	for _, f := range flags {
		v, err := readImplicitBool(&seq, f.tag)
		if err != nil {
			return nil, bad
		}
		if v && !f.ok {
			return nil, fmt.Errorf("%w: %s", errCRLScope, f.name)
		}
	}
	if seq.PeekASN1Tag(asn1.Tag(3).ContextSpecific()) {
		return nil, fmt.Errorf("%w: onlySomeReasons (a partial CRL)", errCRLScope)
	}
	for _, f := range []struct {
		tag  asn1.Tag
		name string
	}{{asn1.Tag(4).ContextSpecific(), "indirectCRL"}, {asn1.Tag(5).ContextSpecific(), "onlyContainsAttributeCerts"}} {
		v, err := readImplicitBool(&seq, f.tag)
		if err != nil {
			return nil, bad
		}
		if v {
			return nil, fmt.Errorf("%w: %s", errCRLScope, f.name)
		}
	}
	if !seq.Empty() {
		return nil, bad
	}
	return uris, nil
}

// readImplicitBool reads an optional implicitly tagged BOOLEAN. DER encodes
// TRUE as 0xff and never encodes a DEFAULT FALSE value, but the edge only
// refuses what changes the meaning: any nonzero octet is TRUE.
func readImplicitBool(s *cryptobyte.String, tag asn1.Tag) (bool, error) {
	if !s.PeekASN1Tag(tag) {
		return false, nil
	}
	var v cryptobyte.String
	if !s.ReadASN1(&v, tag) || len(v) != 1 {
		return false, errors.New("malformed BOOLEAN")
	}
	return v[0] != 0, nil
}

// covers reports whether a CRL of scope sc covers leaf: a full CRL covers
// every certificate of its issuer; a partitioned one only those whose CRL
// distribution points name one of its URIs (RFC 5280 §6.3.3 (b)(2)(i); every
// distribution point is compared, not just the first: RUSTSEC-2026-0049).
func (sc crlScope) covers(leaf *x509.Certificate) bool {
	if len(sc.dpURIs) == 0 {
		return true
	}
	for _, u := range leaf.CRLDistributionPoints {
		if slices.Contains(sc.dpURIs, u) {
			return true
		}
	}
	return false
}
