package ca

import (
	"context"
	"crypto/x509"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/pkid/pkid/internal/issuance"
	"github.com/pkid/pkid/internal/pki"
)

// Intermediate is a live issuing intermediate: its key, its generation (1
// for the one `pkid init` made, one more per `pkid ca rotate`) and its
// delegated OCSP signer, which serve renews while the intermediate stays.
type Intermediate struct {
	Issuer     *issuance.Issuer
	Generation int
	// Superseded is when a rotation replaced it for issuance; zero for the
	// current intermediate.
	Superseded time.Time
	ocsp       atomic.Pointer[issuance.Issuer]
}

// OCSPSigner returns the intermediate's delegated OCSP signer.
func (in *Intermediate) OCSPSigner() *issuance.Issuer { return in.ocsp.Load() }

// CRLPath is the path, under the public URL, of this intermediate's CRL:
// what its certificates name as their CRL distribution point.
func (in *Intermediate) CRLPath() string { return issuance.CRLPath(in.Generation) }

// IssuerPath is the path, under the public URL, of this intermediate's
// certificate (DER): what its certificates name as their CA issuer.
func (in *Intermediate) IssuerPath() string { return issuance.IssuerPath(in.Generation) }

// intermediateSet is what a Hierarchy has loaded at one time.
type intermediateSet struct {
	live  []*Intermediate     // newest generation first; live[0] is current
	certs []*x509.Certificate // live's certificates, in the same order
	// chains holds, for every intermediate by ID (retired ones too), the
	// chain of the certificates it issued: it then the root, PEM encoded.
	// Every certificate response carries one, and they change only with
	// the set, so they are encoded once per set rather than per response.
	chains map[string]string
}

func (s *intermediateSet) byID(id string) *Intermediate {
	for _, in := range s.live {
		if in.Issuer.ID == id {
			return in
		}
	}
	return nil
}

// Current returns the intermediate that issues.
func (h *Hierarchy) Current() *Intermediate { return h.set.Load().live[0] }

// Intermediates returns the live intermediates, newest generation (the
// current one) first.
func (h *Hierarchy) Intermediates() []*Intermediate { return h.set.Load().live }

// IntermediateByGeneration returns the live intermediate of generation gen,
// or nil.
func (h *Hierarchy) IntermediateByGeneration(gen int) *Intermediate {
	for _, in := range h.Intermediates() {
		if in.Generation == gen {
			return in
		}
	}
	return nil
}

// IntermediateByID returns the live intermediate with this ID, or nil.
func (h *Hierarchy) IntermediateByID(id string) *Intermediate { return h.set.Load().byID(id) }

// Reload reads the issuers from the database again and takes in what
// changed: an intermediate that `pkid ca rotate` created on another machine
// (it becomes current), one that was retired (it leaves), an OCSP signer
// that another node renewed. Keys already open are kept, not opened again.
// On error nothing changes. It reports whether anything did.
func (h *Hierarchy) Reload(ctx context.Context, st HierarchyStore, keys KeyStore, now time.Time) (bool, error) {
	h.reload.Lock()
	defer h.reload.Unlock()
	return h.reloadLocked(ctx, st, keys, now)
}

func (h *Hierarchy) reloadLocked(ctx context.Context, st HierarchyStore, keys KeyStore, now time.Time) (bool, error) {
	recs, err := st.Issuers(ctx)
	if err != nil {
		return false, err
	}
	prev := h.set.Load()
	next, err := loadIntermediates(ctx, st, h.root, recs, prev, keys, now)
	if err != nil {
		return false, err
	}
	if sameSet(prev, next) {
		return false, nil
	}
	h.set.Store(next)
	return true, nil
}

// sameSet reports whether a and b hold the same intermediates, in the same
// roles, with the same OCSP signers.
func sameSet(a, b *intermediateSet) bool {
	return slices.EqualFunc(a.live, b.live, func(x, y *Intermediate) bool {
		return x.Issuer == y.Issuer && x.Superseded.Equal(y.Superseded) && x.OCSPSigner() == y.OCSPSigner()
	})
}

// loadIntermediates builds the set of live intermediates from recs, reusing
// the keys prev has open (prev may be nil). Superseded intermediates that
// have expired are left out: they cannot sign, and every certificate they
// issued has expired with them (the retirement job retires them).
func loadIntermediates(ctx context.Context, st HierarchyStore, root *x509.Certificate, recs []*pki.IssuerRecord, prev *intermediateSet, keys KeyStore, now time.Time) (*intermediateSet, error) {
	opened := map[string]*issuance.Issuer{}
	if prev != nil {
		for _, in := range prev.live {
			opened[in.Issuer.ID] = in.Issuer
			opened[in.OCSPSigner().ID] = in.OCSPSigner()
		}
	}
	open := func(rec *pki.IssuerRecord) (*issuance.Issuer, error) {
		if is := opened[rec.ID]; is != nil {
			return is, nil
		}
		return openIssuer(rec, keys, now)
	}

	set := &intermediateSet{chains: map[string]string{}}
	current := 0
	for _, rec := range recs {
		if rec.Kind != pki.IssuerIntermediate {
			continue
		}
		in := &Intermediate{Generation: rec.Generation}
		if rec.SupersededAt != nil {
			if !now.Before(rec.NotAfter) {
				continue
			}
			in.Superseded = *rec.SupersededAt
		} else {
			current++
		}
		var err error
		if in.Issuer, err = open(rec); err != nil {
			return nil, err
		}
		signerRec := signerOf(recs, rec.ID)
		if signerRec == nil {
			return nil, fmt.Errorf("%w (intermediate %s has no OCSP signer)", ErrNoHierarchy, rec.Subject)
		}
		signer, err := open(signerRec)
		if err != nil {
			return nil, err
		}
		in.ocsp.Store(signer)
		set.live = append(set.live, in)
	}
	if current != 1 {
		return nil, fmt.Errorf("%w (%d current intermediates)", ErrNoHierarchy, current)
	}
	// The current intermediate first, then the superseded ones, newest
	// first: a rotation always makes a higher generation.
	slices.SortFunc(set.live, func(a, b *Intermediate) int {
		if a.Superseded.IsZero() != b.Superseded.IsZero() {
			if a.Superseded.IsZero() {
				return -1
			}
			return 1
		}
		return b.Generation - a.Generation
	})
	for _, in := range set.live {
		set.certs = append(set.certs, in.Issuer.Cert)
	}
	if prev != nil && sameSet(prev, set) {
		set.chains = prev.chains
		return set, nil
	}
	for _, in := range set.live {
		set.chains[in.Issuer.ID] = chainPEM(in.Issuer.Cert, root)
	}
	retired, err := st.RetiredIntermediates(ctx)
	if err != nil {
		return nil, err
	}
	for _, rec := range retired {
		c, err := x509.ParseCertificate(rec.Certificate)
		if err != nil {
			return nil, fmt.Errorf("ca: parsing retired intermediate %s: %w", rec.ID, err)
		}
		set.chains[rec.ID] = chainPEM(c, root)
	}
	return set, nil
}

// signerOf returns the newest OCSP signer in recs that interID issued, or
// nil.
func signerOf(recs []*pki.IssuerRecord, interID string) *pki.IssuerRecord {
	var found *pki.IssuerRecord
	for _, r := range recs {
		if r.Kind == pki.IssuerOCSP && r.ParentID == interID && (found == nil || r.NotBefore.After(found.NotBefore)) {
			found = r
		}
	}
	return found
}

// PlainCRLIssuer returns the ID of the intermediate whose CRL GET /crl
// serves: the first generation's while it is live, because its
// certificates name /crl as their distribution point (the current
// intermediate's certificates name /crl/{generation}); the current
// intermediate's once it has been retired.
func (h *Hierarchy) PlainCRLIssuer() string {
	if in := h.IntermediateByGeneration(1); in != nil {
		return in.Issuer.ID
	}
	return h.Intermediate().ID
}
