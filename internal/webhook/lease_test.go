package webhook_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/pkid/pkid/internal/app"
	"github.com/pkid/pkid/internal/store"
	"github.com/pkid/pkid/internal/webhook"
)

// startSlowDelivery issues a certificate due a notice to an account whose
// receiver takes delay to answer, starts one round of the job and returns
// once the receiver holds the request, with the round's result to come on
// done.
func startSlowDelivery(t *testing.T, e *env, delay time.Duration) (done <-chan error) {
	t.Helper()
	rc, srv := newReceiver(t, http.StatusOK, false)
	rc.delay = delay
	acct := e.account("Slow receiver")
	e.configure(acct, srv.URL+"/pkid", nil)
	e.issue(acct, 5)
	ch := make(chan error, 1)
	go func() { ch <- e.app.WebhookJob.RunOnce(context.Background()) }()
	deadline := time.Now().Add(10 * time.Second)
	for len(rc.notices()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the receiver got no notice")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return ch
}

// TestSlowReceiverHoldsNoConnection: while a receiver keeps an attempt
// waiting, the node holds no database connection for it (the delivery is
// leased: other nodes see it due only after the lease), and the outcome is
// recorded when the answer comes.
func TestSlowReceiverHoldsNoConnection(t *testing.T) {
	e := newEnv(t, nil, app.Options{})
	const delay = 2 * time.Second
	done := startSlowDelivery(t, e, delay)
	// The job's other worker may still be finding nothing to claim: wait
	// for it, well inside the receiver's delay.
	deadline := time.Now().Add(delay / 2)
	for n := e.app.DB.Pool().Stat().AcquiredConns(); n != 0; n = e.app.DB.Pool().Stat().AcquiredConns() {
		if time.Now().After(deadline) {
			t.Fatalf("%d pool connections held while the receiver answers, want 0", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	var leased time.Time
	if err := e.db.Pool().QueryRow(context.Background(),
		"SELECT next_attempt_at FROM webhook_deliveries WHERE state = 'pending'").Scan(&leased); err != nil {
		t.Fatal(err)
	}
	if !leased.After(e.clock.Now()) {
		t.Errorf("the delivery in flight is due at %s, not leased past now (%s)", leased, e.clock.Now())
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var state string
	if err := e.db.Pool().QueryRow(context.Background(), "SELECT state FROM webhook_deliveries").Scan(&state); err != nil {
		t.Fatal(err)
	}
	if state != "delivered" {
		t.Errorf("state %s after the receiver answered, want delivered", state)
	}
}

// TestLeaseLost: when another node has claimed the delivery meanwhile (its
// lease ran out), the late outcome is not recorded and the round says so.
func TestLeaseLost(t *testing.T) {
	e := newEnv(t, nil, app.Options{})
	done := startSlowDelivery(t, e, time.Second)
	// What another node's claim after the lease ran out leaves: a new due
	// time, its own lease.
	if _, err := e.db.Pool().Exec(context.Background(),
		"UPDATE webhook_deliveries SET next_attempt_at = next_attempt_at + interval '1 second'"); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("RunOnce = %v, want ErrLeaseLost", err)
	}
	var state string
	var audited int
	if err := e.db.Pool().QueryRow(context.Background(), `SELECT
		(SELECT state FROM webhook_deliveries), (SELECT count(*) FROM audit_events WHERE action = $1)`,
		webhook.ActionDelivered).Scan(&state, &audited); err != nil {
		t.Fatal(err)
	}
	if state != "pending" || audited != 0 {
		t.Errorf("state %s, %d delivered events: the late outcome was recorded", state, audited)
	}
}
