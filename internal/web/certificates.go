package web

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/pkid/pkid/internal/pki"
)

// certificatesPerPage is the length of a page of the certificates list.
const certificatesPerPage = 25

// certRow is a certificate as a list shows it.
type certRow struct {
	Serial      pki.Serial
	CommonName  string
	Status      pki.Status
	NotAfter    time.Time
	AccountID   string
	AccountName string
}

// certRows renders certificates with their status at now and their
// account's name where names holds it.
func certRows(certs []*pki.Certificate, now time.Time, names map[string]*pki.Account) []certRow {
	rows := make([]certRow, 0, len(certs))
	for _, c := range certs {
		row := certRow{Serial: c.Serial, CommonName: c.SubjectCN, Status: c.StatusAt(now), NotAfter: c.NotAfter, AccountID: c.AccountID}
		if acct := names[c.AccountID]; acct != nil {
			row.AccountName = acct.Name
		}
		rows = append(rows, row)
	}
	return rows
}

type certListData struct {
	Account   string // account id filter
	Status    string
	Expiring  string // days
	Certs     []certRow
	NextURL   string
	FirstURL  string
	AccountOf *pki.Account // the filtered account, when there is one
}

// expiringChoices are the "expiring within" filters offered, in days.
var expiringChoices = map[string]int{"7": 7, "30": 30, "90": 90}

// certificateList lists certificates newest first through
// ca.Service.Certificates, filtered by account and status; the "expiring
// within" filter lists active certificates soonest-expiring first. Pages
// follow cursors, so a page costs the same however deep it is.
func (a *Admin) certificateList(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	q := r.URL.Query()
	d := &certListData{Account: q.Get("account"), Status: q.Get("status"), Expiring: q.Get("expiring")}
	f := pki.CertificateFilter{AccountID: d.Account, Status: pki.Status(d.Status), Cursor: q.Get("cursor"), Limit: certificatesPerPage}
	var certs []*pki.Certificate
	var next string
	var err error
	if d.Expiring != "" {
		days, ok := expiringChoices[d.Expiring]
		if !ok {
			a.fail(w, r, pki.Malformed("expiring must be 7, 30 or 90 days"))
			return
		}
		now := a.certs.Now()
		f.Now, f.Status = now, ""
		d.Status = ""
		certs, next, err = a.store.ExpiringCertificates(ctx, f, now.Add(time.Duration(days)*24*time.Hour))
	} else {
		certs, next, err = a.certs.Certificates(ctx, principal(r), f)
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	names, err := a.accountNames(ctx, certs)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if d.Account != "" {
		d.AccountOf = names[d.Account]
	}
	d.Certs = certRows(certs, a.certs.Now(), names)
	link := func(cursor string) string {
		v := url.Values{}
		for k, s := range map[string]string{"account": d.Account, "status": d.Status, "expiring": d.Expiring, "cursor": cursor} {
			if s != "" {
				v.Set(k, s)
			}
		}
		return "/admin/certificates?" + v.Encode()
	}
	if next != "" {
		d.NextURL = link(next)
	}
	if f.Cursor != "" {
		d.FirstURL = link("")
	}
	a.render(w, r, http.StatusOK, "certificates.html", view{Title: "Certificates", Nav: "certificates", Data: d})
}

// accountNames reads the accounts that certs belong to, once each.
func (a *Admin) accountNames(ctx context.Context, certs []*pki.Certificate) (map[string]*pki.Account, error) {
	names := map[string]*pki.Account{}
	for _, c := range certs {
		if c.AccountID == "" {
			continue
		}
		if _, done := names[c.AccountID]; done {
			continue
		}
		acct, err := a.accounts.Account(ctx, c.AccountID)
		if err != nil && !errors.Is(err, pki.ErrNotFound) {
			return nil, err
		}
		names[c.AccountID] = acct
	}
	return names, nil
}

type certPageData struct {
	Cert        *pki.Certificate
	Status      pki.Status
	Account     *pki.Account
	Subject     string
	DNSNames    []string
	URIs        []string
	IPs         []string
	KeyType     string
	Fingerprint string
	SPKIHash    string
	Reasons     []string
	PEM         string
}

// revocationReasons are the reasons an administrator may give for one
// certificate: every reason an account may give, and privilegeWithdrawn.
func revocationReasons() []string {
	out := make([]string, 0, len(pki.SubscriberReasons)+1)
	for _, r := range pki.SubscriberReasons {
		out = append(out, r.String())
	}
	return append(out, pki.ReasonPrivilegeWithdrawn.String())
}

func (a *Admin) certificate(r *http.Request) (*pki.Certificate, error) {
	serial, err := pki.ParseSerial(chi.URLParam(r, "serial"))
	if err != nil {
		return nil, pki.ErrNotFound
	}
	return a.certs.Certificate(r.Context(), principal(r), serial)
}

// certificatePage shows one certificate: its fields, its status, a PEM
// download and, while it is active, the revocation form.
func (a *Admin) certificatePage(w http.ResponseWriter, r *http.Request) {
	c, err := a.certificate(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	d := &certPageData{Cert: c, Status: c.StatusAt(a.certs.Now()), Reasons: revocationReasons(),
		Fingerprint: colonHex(c.FingerprintSHA256), SPKIHash: hex.EncodeToString(c.SPKISHA256),
		PEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.DER}))}
	if c.AccountID != "" {
		if d.Account, err = a.accounts.Account(r.Context(), c.AccountID); err != nil && !errors.Is(err, pki.ErrNotFound) {
			a.fail(w, r, err)
			return
		}
	}
	if x, err := x509.ParseCertificate(c.DER); err == nil {
		d.Subject = x.Subject.String()
		d.DNSNames = x.DNSNames
		for _, u := range x.URIs {
			d.URIs = append(d.URIs, u.String())
		}
		for _, ip := range x.IPAddresses {
			d.IPs = append(d.IPs, ip.String())
		}
		d.KeyType = keyType(x.PublicKey)
	}
	a.render(w, r, http.StatusOK, "certificate.html", view{Title: "Certificate " + c.Serial.String(), Nav: "certificates", Flash: flash(r), Data: d})
}

// certificatePEM downloads the certificate, with ?chain=1 followed by the
// intermediate and the root.
func (a *Admin) certificatePEM(w http.ResponseWriter, r *http.Request) {
	c, err := a.certificate(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	body := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.DER})
	name := c.Serial.String() + ".pem"
	if r.URL.Query().Get("chain") == "1" {
		body = append(body, a.certs.Hierarchy().ChainPEMFor(c.IssuerID)...)
		name = c.Serial.String() + "-chain.pem"
	}
	download(w, name, body)
}

func download(w http.ResponseWriter, name string, body []byte) {
	w.Header().Set("Content-Type", "application/x-pem-file")
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	_, _ = w.Write(body)
}

type confirmRevokeData struct {
	Cert   *pki.Certificate
	Reason string
}

// revokeCertificate revokes a certificate through ca.Service.Revoke. The
// first POST (without confirm) changes nothing: it names the certificate
// and the reason and asks again, since a revocation cannot be undone.
func (a *Admin) revokeCertificate(w http.ResponseWriter, r *http.Request) {
	c, err := a.certificate(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	reason := r.PostForm.Get("reason")
	if _, err := pki.ParseRevocationReason(reason, true); err != nil || reason == "" {
		a.fail(w, r, pki.Malformed("choose a revocation reason"))
		return
	}
	if r.PostForm.Get("confirm") != "yes" {
		a.render(w, r, http.StatusOK, "revoke.html", view{Title: "Revoke certificate", Nav: "certificates",
			Data: confirmRevokeData{Cert: c, Reason: reason}})
		return
	}
	if _, err := a.certs.Revoke(r.Context(), principal(r), c.Serial, reason, requestID(r)); err != nil {
		a.fail(w, r, err)
		return
	}
	seeOther(w, r, "/admin/certificates/"+c.Serial.String()+"?done=revoked")
}

// keyType describes a public key: algorithm and size or curve.
func keyType(pub any) string {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case *rsa.PublicKey:
		return "RSA " + strconv.Itoa(k.N.BitLen())
	case ed25519.PublicKey:
		return "Ed25519"
	default:
		return fmt.Sprintf("%T", pub)
	}
}

// colonHex writes b as uppercase hex pairs separated by colons, the way
// openssl and browsers show fingerprints.
func colonHex(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	out := make([]byte, 0, len(b)*3-1)
	const digits = "0123456789ABCDEF"
	for i, x := range b {
		if i > 0 {
			out = append(out, ':')
		}
		out = append(out, digits[x>>4], digits[x&0xf])
	}
	return string(out)
}
