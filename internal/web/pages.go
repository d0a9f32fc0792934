package web

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/pkid/pkid/internal/account"
	"github.com/pkid/pkid/internal/ca"
	"github.com/pkid/pkid/internal/pki"
)

// expiringSoon is the dashboard's "expiring soon" horizon.
const expiringSoon = 7 * 24 * time.Hour

type dashboardData struct {
	Plans    []planCount
	Accounts int
	Active   int
	Expiring int
	Revoked  int
	Issuers  []issuerRow
	CRL      *pki.CRL
	CRLState string // "", "none" (no CRL signed yet) or "unavailable"
}

type planCount struct {
	Plan      pki.Plan
	Active    int
	Suspended int
}

type issuerRow struct {
	Role        string
	Subject     string
	Serial      string
	NotBefore   time.Time
	NotAfter    time.Time
	DaysLeft    int
	Fingerprint string
	KeyType     string
	Download    string // where to download it
	Warn        bool   // less than a tenth of its life left
}

func issuerRows(h *ca.Hierarchy, now time.Time) []issuerRow {
	row := func(role string, c *x509.Certificate, download string) issuerRow {
		sum := sha256.Sum256(c.Raw)
		left := c.NotAfter.Sub(now)
		return issuerRow{
			Role: role, Subject: c.Subject.String(), Serial: pki.SerialFromBig(c.SerialNumber).String(),
			NotBefore: c.NotBefore, NotAfter: c.NotAfter, DaysLeft: int(left / (24 * time.Hour)),
			Fingerprint: colonHex(sum[:]), KeyType: keyType(c.PublicKey), Download: download,
			Warn: left < c.NotAfter.Sub(c.NotBefore)/10,
		}
	}
	rows := []issuerRow{
		row("Root", h.Root(), "/ca/root.pem"),
		row("Issuing intermediate", h.Intermediate().Cert, "/ca/chain.pem"),
		row("OCSP signer", h.OCSPSigner().Cert, "/admin/ca/ocsp-signer.pem"),
	}
	// After `pkid ca rotate`, the intermediates it superseded answer for
	// their certificates until the last one expires: their expiry and their
	// OCSP signers' matter as much.
	for _, in := range h.Intermediates() {
		if in.Superseded.IsZero() {
			continue
		}
		gen := strconv.Itoa(in.Generation)
		rows = append(rows,
			row("Superseded intermediate, generation "+gen+" (no longer issues; answers for its certificates until they expire)",
				in.Issuer.Cert, in.IssuerPath()),
			row("OCSP signer of generation "+gen, in.OCSPSigner().Cert, "/admin/ca/ocsp-signer.pem?generation="+gen))
	}
	return rows
}

// dashboard shows the state of the CA at a glance: accounts by plan,
// certificates active, expiring within 7 days and revoked, the expiry of
// every CA certificate, and the current CRL.
func (a *Admin) dashboard(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/admin" {
		http.Redirect(w, r, "/admin/", http.StatusMovedPermanently)
		return
	}
	ctx := r.Context()
	now := a.certs.Now()
	counts, err := a.store.AccountCounts(ctx)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	d := &dashboardData{}
	for _, plan := range []pki.Plan{pki.PlanEnterprise, pki.PlanStandard} {
		pc := planCount{Plan: plan, Active: counts[plan][pki.AccountActive], Suspended: counts[plan][pki.AccountSuspended]}
		d.Accounts += pc.Active + pc.Suspended
		d.Plans = append(d.Plans, pc)
	}
	if d.Active, d.Expiring, d.Revoked, err = a.store.CertificateCounts(ctx, now, now.Add(expiringSoon)); err != nil {
		a.fail(w, r, err)
		return
	}
	h := a.certs.Hierarchy()
	d.Issuers = issuerRows(h, now)
	// The CRL tile degrades on its own: the rest of the dashboard is worth
	// showing when the CRL cannot be read.
	switch crl, err := a.store.LatestCRLInfo(ctx, h.Intermediate().ID); {
	case err == nil:
		d.CRL = crl
	case errors.Is(err, pki.ErrNotFound):
		d.CRLState = "none"
	default:
		a.opts.Log.WarnContext(ctx, "reading the CRL for the dashboard", "error", err)
		d.CRLState = "unavailable"
	}
	a.render(w, r, http.StatusOK, "dashboard.html", view{Title: "Dashboard", Nav: "dashboard", Data: d})
}

// caPage shows the CA hierarchy with fingerprints and downloads.
func (a *Admin) caPage(w http.ResponseWriter, r *http.Request) {
	h := a.certs.Hierarchy()
	a.render(w, r, http.StatusOK, "ca.html", view{Title: "Certificate authority", Nav: "ca",
		Data: issuerRows(h, a.certs.Now())})
}

// ocspSignerPEM downloads the delegated OCSP signer's certificate, which
// relying parties do not need (responses carry it) but operators check.
// With ?generation=N it is the signer of that live intermediate.
func (a *Admin) ocspSignerPEM(w http.ResponseWriter, r *http.Request) {
	h := a.certs.Hierarchy()
	c := h.OCSPSigner().Cert
	if g := r.URL.Query().Get("generation"); g != "" {
		n, err := strconv.Atoi(g)
		in := h.IntermediateByGeneration(n)
		if err != nil || in == nil {
			a.fail(w, r, pki.ErrNotFound)
			return
		}
		c = in.OCSPSigner().Cert
	}
	download(w, "ocsp-signer.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
}

// auditPerPage is the length of a page of the audit log.
const auditPerPage = 50

type auditData struct {
	Account, Actor, Action string
	Events                 []auditRow
	NextURL, FirstURL      string
	Actions                []string
}

type auditRow struct {
	pki.AuditEvent
	DetailJSON string
}

// knownActions are offered as suggestions in the action filter.
var knownActions = []string{
	account.ActionAccountCreated, account.ActionAccountUpdated, account.ActionTokenMinted, account.ActionTokenRevoked,
	account.ActionAdminCreated, account.ActionAdminToken,
	ca.ActionIssued, ca.ActionSigning, ca.ActionIssueRefused, ca.ActionLintFailed,
	ca.ActionRevoked, ca.ActionRevokeRefused, ca.ActionKeyBlocked, ca.ActionAccountRevoked,
	ca.ActionHierarchyCreated, ca.ActionOCSPSignerRenew,
	ActionLogin, ActionLoginFailed, ActionLoginThrottled, ActionLogout,
}

// auditPage shows the audit trail newest first, filtered by account, actor
// and action; pages go back by event id.
func (a *Admin) auditPage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	d := &auditData{Account: strings.TrimSpace(q.Get("account")), Actor: strings.TrimSpace(q.Get("actor")),
		Action: strings.TrimSpace(q.Get("action")), Actions: knownActions}
	f := pki.AuditFilter{AccountID: d.Account, Actor: d.Actor, Action: d.Action, Limit: auditPerPage}
	if s := q.Get("before"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 1 {
			a.fail(w, r, pki.Malformed("before must be an event number"))
			return
		}
		f.BeforeID = n
	}
	if len(d.Actor) > 200 || len(d.Action) > 200 {
		a.fail(w, r, pki.Malformed("actor and action must be at most 200 bytes"))
		return
	}
	events, err := a.store.SearchAudit(r.Context(), f)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	for _, ev := range events {
		row := auditRow{AuditEvent: ev}
		if len(ev.Detail) > 0 {
			if b, err := json.Marshal(ev.Detail); err == nil {
				row.DetailJSON = string(b)
			}
		}
		d.Events = append(d.Events, row)
	}
	link := func(before int64) string {
		v := url.Values{}
		for k, s := range map[string]string{"account": d.Account, "actor": d.Actor, "action": d.Action} {
			if s != "" {
				v.Set(k, s)
			}
		}
		if before > 0 {
			v.Set("before", strconv.FormatInt(before, 10))
		}
		return "/admin/audit?" + v.Encode()
	}
	if len(events) == auditPerPage {
		d.NextURL = link(events[len(events)-1].ID)
	}
	if f.BeforeID > 0 {
		d.FirstURL = link(0)
	}
	a.render(w, r, http.StatusOK, "audit.html", view{Title: "Audit log", Nav: "audit", Data: d})
}
