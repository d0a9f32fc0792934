package webhook_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pkid/pkid/internal/app"
	"github.com/pkid/pkid/internal/ca"
	"github.com/pkid/pkid/internal/config"
	"github.com/pkid/pkid/internal/pki"
	"github.com/pkid/pkid/internal/webhook"
)

// verify checks a notice's signature as a receiver would, without the
// webhook package: HMAC-SHA256 over "t.body" keyed with the secret string.
func verify(t *testing.T, n notice, secret []byte, now time.Time) {
	t.Helper()
	header := n.header.Get("Pkid-Signature")
	var ts string
	var sigs []string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(part, "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sigs = append(sigs, v)
		}
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(ts + "." + string(n.body)))
	want := hex.EncodeToString(mac.Sum(nil))
	found := false
	for _, s := range sigs {
		found = found || hmac.Equal([]byte(s), []byte(want))
	}
	if !found {
		t.Fatalf("no v1 signature in %q verifies with the secret", header)
	}
	if err := webhook.Verify(header, n.body, secret, now, 0); err != nil {
		t.Fatalf("webhook.Verify: %v", err)
	}
}

// A certificate within the notice period gets exactly one signed notice,
// however often the job runs; certificates outside it, renewed, revoked, or
// of an account without a webhook get none.
func TestExpiringCertificateNotifiedOnce(t *testing.T) {
	e := newEnv(t, nil, app.Options{})
	rc, srv := newReceiver(t, http.StatusNoContent, false)
	acct := e.account("Acme")
	secret := e.configure(acct, srv.URL+"/hooks/pkid?token=receiver-secret", nil) // default period: 14 days

	due := e.issue(acct, 10)
	later := e.issue(acct, 30)
	renewed := e.issue(acct, 10)
	p := pki.Principal{Kind: pki.PrincipalAccount, AccountID: acct.ID}
	if _, err := e.app.Certs.Renew(context.Background(), p, acct, ca.RenewRequest{Serial: renewed.Serial, ValidityDays: 60}); err != nil {
		t.Fatal(err)
	}
	revoked := e.issue(acct, 10)
	if _, err := e.app.Certs.Revoke(context.Background(), p, revoked.Serial, "superseded", ""); err != nil {
		t.Fatal(err)
	}
	other := e.account("No webhook")
	unwatched := e.issue(other, 10)

	for range 3 {
		e.run(e.app)
	}
	got := rc.notices()
	if len(got) != 1 {
		t.Fatalf("the receiver got %d notices, want 1", len(got))
	}
	n := got[0]
	verify(t, n, secret, e.clock.Now())
	var body webhook.Notice
	if err := json.Unmarshal(n.body, &body); err != nil {
		t.Fatal(err)
	}
	rows := e.deliveries(due.Serial)
	if len(rows) != 1 || rows[0].state != "delivered" || rows[0].attempts != 1 || rows[0].completedAt == nil {
		t.Fatalf("delivery rows %+v, want one delivered after one attempt", rows)
	}
	wantDays := int(due.NotAfter.Sub(e.clock.Now()) / (24 * time.Hour))
	switch {
	case body.Type != "certificate.expiring", body.Serial != string(due.Serial), body.AccountID != acct.ID,
		!body.NotAfter.Equal(due.NotAfter), body.DaysLeft != wantDays, body.ID != rows[0].id:
		t.Fatalf("notice %+v: want certificate.expiring for %s of %s, not_after %s, %d days left, id %s",
			body, due.Serial, acct.ID, due.NotAfter, wantDays, rows[0].id)
	case n.header.Get("Pkid-Delivery") != rows[0].id, n.header.Get("Pkid-Event") != "certificate.expiring",
		n.header.Get("Content-Type") != "application/json":
		t.Fatalf("headers %v", n.header)
	}

	// Audited once, in the transaction that recorded it, without the
	// receiver's query (its own secret).
	evs := e.audits(webhook.ActionDelivered, due.Serial)
	if len(evs) != 1 || evs[0].Outcome != pki.OutcomeSuccess || evs[0].AccountID != acct.ID ||
		evs[0].Detail["delivery_id"] != rows[0].id || evs[0].Detail["url"] != srv.URL+"/hooks/pkid" {
		t.Fatalf("audit events %+v", evs)
	}
	for _, c := range []*pki.Certificate{later, renewed, revoked, unwatched} {
		if rows := e.deliveries(c.Serial); len(rows) != 0 {
			t.Errorf("certificate %s got deliveries %+v, want none", c.Serial, rows)
		}
	}
	if v := e.metric(`pkid_webhook_deliveries_total{outcome="delivered"}`); v != "1" {
		t.Errorf("delivered metric = %q, want 1", v)
	}
	if v := e.metric(`pkid_webhook_deliveries_pending`); v != "0" {
		t.Errorf("pending metric = %q, want 0", v)
	}

	// The 30-day certificate enters a 14-day notice period 16 days on, and
	// gets its own notice then; the first gets no second one.
	e.clock.Advance(17 * 24 * time.Hour)
	e.run(e.app)
	if got := rc.notices(); len(got) != 2 || !strings.Contains(string(got[1].body), string(later.Serial)) {
		t.Fatalf("after 17 days the receiver has %d notices, want the second for %s", len(got), later.Serial)
	}
}

// A per-account notice period overrides the default.
func TestNotifyDaysPerAccount(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.Webhook.NotifyDays = 5 }, app.Options{})
	rc, srv := newReceiver(t, http.StatusOK, false)
	short, long := e.account("Default period"), e.account("Long period")
	e.configure(short, srv.URL, nil)
	e.configure(long, srv.URL, 40)
	a := e.issue(short, 10) // outside 5 days
	b := e.issue(long, 30)  // inside 40 days
	e.run(e.app)
	if len(e.deliveries(a.Serial)) != 0 || len(e.deliveries(b.Serial)) != 1 || len(rc.notices()) != 1 {
		t.Fatalf("deliveries: default-period account %d, 40-day account %d, receiver %d; want 0, 1, 1",
			len(e.deliveries(a.Serial)), len(e.deliveries(b.Serial)), len(rc.notices()))
	}
}

// A receiver that keeps answering 500 is tried MaxAttempts times, each wait
// within its exponential, jittered window, and the notice is then marked
// failed; every attempt is audited.
func TestRetriesWithBackoffThenFails(t *testing.T) {
	const attempts = 4
	e := newEnv(t, func(c *config.Config) { c.Webhook.MaxAttempts = attempts }, app.Options{})
	rc, srv := newReceiver(t, http.StatusInternalServerError, false)
	acct := e.account("Flaky")
	e.configure(acct, srv.URL, nil)
	c := e.issue(acct, 7)

	wait := time.Minute // the default RetryBase, doubling
	for attempt := 1; attempt <= attempts; attempt++ {
		e.run(e.app)
		if n := len(rc.notices()); n != attempt {
			t.Fatalf("attempt %d: the receiver got %d requests", attempt, n)
		}
		rows := e.deliveries(c.Serial)
		if len(rows) != 1 {
			t.Fatalf("rows %+v", rows)
		}
		d := rows[0]
		if d.attempts != attempt || d.lastStatus == nil || *d.lastStatus != 500 {
			t.Fatalf("attempt %d: row %+v", attempt, d)
		}
		if attempt == attempts {
			if d.state != "failed" || d.completedAt == nil {
				t.Fatalf("after the last attempt: state %s, want failed", d.state)
			}
			break
		}
		now := e.clock.Now()
		if d.state != "pending" || d.nextAttemptAt.Before(now.Add(wait/2)) || d.nextAttemptAt.After(now.Add(wait)) {
			t.Fatalf("attempt %d: state %s, next attempt %s after now, want pending within [%s, %s]",
				attempt, d.state, d.nextAttemptAt.Sub(now), wait/2, wait)
		}
		// Not before its time...
		e.clock.Set(d.nextAttemptAt.Add(-time.Second))
		e.run(e.app)
		if n := len(rc.notices()); n != attempt {
			t.Fatalf("attempt %d was retried early", attempt)
		}
		// ...and at its time.
		e.clock.Set(d.nextAttemptAt)
		wait *= 2
	}
	e.clock.Advance(24 * time.Hour)
	e.run(e.app)
	if n := len(rc.notices()); n != attempts {
		t.Fatalf("a failed notice was sent again: %d requests", n)
	}

	retries := e.audits(webhook.ActionAttemptFailed, c.Serial)
	failed := e.audits(webhook.ActionFailed, c.Serial)
	if len(retries) != attempts-1 || len(failed) != 1 {
		t.Fatalf("audit: %d retries and %d failures, want %d and 1", len(retries), len(failed), attempts-1)
	}
	for i, ev := range append(retries, failed...) {
		if ev.Outcome != pki.OutcomeFailure || ev.Detail["status"] != float64(500) || ev.Detail["attempt"] != float64(i+1) {
			t.Errorf("audit event %d: %+v", i, ev)
		}
	}
	if v := e.metric(`pkid_webhook_deliveries_total{outcome="retry"}`); v != fmt.Sprint(attempts-1) {
		t.Errorf("retry metric = %q", v)
	}
	if v := e.metric(`pkid_webhook_deliveries_total{outcome="failed"}`); v != "1" {
		t.Errorf("failed metric = %q", v)
	}
}

// A notice pending a retry is cancelled, not sent, once the certificate has
// been renewed.
func TestRenewalCancelsPendingRetry(t *testing.T) {
	e := newEnv(t, nil, app.Options{})
	rc, srv := newReceiver(t, http.StatusServiceUnavailable, false)
	acct := e.account("Renews late")
	e.configure(acct, srv.URL, nil)
	c := e.issue(acct, 7)
	e.run(e.app)
	p := pki.Principal{Kind: pki.PrincipalAccount, AccountID: acct.ID}
	if _, err := e.app.Certs.Renew(context.Background(), p, acct, ca.RenewRequest{Serial: c.Serial, ValidityDays: 60}); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Hour)
	e.run(e.app)
	rows := e.deliveries(c.Serial)
	if len(rows) != 1 || rows[0].state != "cancelled" || len(rc.notices()) != 1 {
		t.Fatalf("rows %+v, %d requests: want cancelled after the one attempt", rows, len(rc.notices()))
	}
	if evs := e.audits(webhook.ActionCancelled, c.Serial); len(evs) != 1 || evs[0].Detail["reason"] != "the certificate was renewed" {
		t.Fatalf("audit %+v", evs)
	}
}

// Two nodes whose jobs run at the same moment on one database send each
// notice once, over https.
func TestTwoNodesSendOnce(t *testing.T) {
	rc, srv := newReceiver(t, http.StatusOK, true)
	rc.delay = 50 * time.Millisecond
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	opts := app.Options{WebhookRootCAs: roots}
	e := newEnv(t, func(c *config.Config) { c.Webhook.AllowPrivateNetworks = true }, opts)
	second := e.node(opts)
	acct := e.account("Busy")
	secret := e.configure(acct, srv.URL+"/pkid", nil)
	const certs = 12
	for range certs {
		e.issue(acct, 5)
	}
	for range 3 {
		var wg sync.WaitGroup
		for _, a := range []*app.App{e.app, second} {
			wg.Go(func() {
				if err := a.WebhookJob.RunOnce(context.Background()); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
	}
	got := rc.notices()
	seen := map[string]int{}
	for _, n := range got {
		verify(t, n, secret, e.clock.Now())
		seen[n.header.Get("Pkid-Delivery")]++
	}
	if len(got) != certs || len(seen) != certs {
		t.Fatalf("the receiver got %d notices for %d deliveries, want %d each once", len(got), len(seen), certs)
	}
	var delivered, audited int
	if err := e.db.Pool().QueryRow(context.Background(), `SELECT
		(SELECT count(*) FROM webhook_deliveries WHERE state = 'delivered'),
		(SELECT count(*) FROM audit_events WHERE action = $1)`, webhook.ActionDelivered).Scan(&delivered, &audited); err != nil {
		t.Fatal(err)
	}
	if delivered != certs || audited != certs {
		t.Fatalf("%d rows delivered and %d audit events, want %d", delivered, audited, certs)
	}
}
