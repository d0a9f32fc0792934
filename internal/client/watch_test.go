package client_test

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/pkid/pkid/internal/client"
	"github.com/pkid/pkid/internal/client/clienttest"
)

// fakeClock is moved forward by Watch's sleeps.
type fakeClock struct {
	mu    sync.Mutex
	now   time.Time
	slept []time.Duration
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	c.slept = append(c.slept, d)
	return nil
}

func (c *fakeClock) total() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	var sum time.Duration
	for _, d := range c.slept {
		sum += d
	}
	return sum
}

func TestWatchRenewsWhenDueWithJitter(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		random  float64
		stretch float64 // the wait until the first renewal, as a fraction of the wait until DueAt
	}{
		{"no jitter drawn", 0.5, 1.0},
		{"earliest", 0, 0.9},
		{"latest", 1, 1.1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := clienttest.New(t)
			s.Validity = 3 * time.Hour
			b := enroll(t, s, client.EnrollRequest{})
			start := time.Now()
			clock := &fakeClock{now: start}
			wantWait := client.DueAt(b.Leaf).Sub(start)

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var serials []string
			var firstWait time.Duration
			opts := client.WatchOptions{Renew: client.RenewOptions{Now: clock.Now},
				OnRenew: func(_ context.Context, r *client.RenewResult) error {
					if len(serials) == 0 {
						firstWait = clock.total()
					}
					serials = append(serials, r.Bundle.Serial())
					if len(serials) == 2 {
						cancel()
					}
					return errors.New("the hook fails; watching goes on")
				}}
			client.SetWatchHooks(&opts, clock.sleep, func() float64 { return tc.random })
			if err := client.Watch(ctx, b.Dir, opts); err != nil {
				t.Fatalf("Watch: %v", err)
			}
			if len(serials) != 2 || serials[0] == serials[1] || serials[0] == b.Serial() {
				t.Fatalf("renewals %v from %s", serials, b.Serial())
			}
			want := time.Duration(float64(wantWait) * tc.stretch)
			if d := firstWait - want; d < -time.Second || d > time.Second {
				t.Errorf("first renewal after %v of sleep, want %v", firstWait, want)
			}
			for _, d := range clock.slept {
				if d > time.Hour {
					t.Errorf("slept %v at once; the wall clock must be checked at least hourly", d)
				}
			}
			now, err := client.Load(b.Dir)
			if err != nil || now.Serial() != serials[1] {
				t.Errorf("directory holds %v (%v), want the last renewal %s", now, err, serials[1])
			}
		})
	}
}

func TestWatchRetriesTransientFailures(t *testing.T) {
	t.Parallel()
	s := clienttest.New(t)
	b := enroll(t, s, client.EnrollRequest{})
	clock := &fakeClock{now: client.DueAt(b.Leaf).Add(time.Minute)}
	failures := 3
	var mu sync.Mutex
	s.SetIntercept(func(w http.ResponseWriter, r *http.Request) bool {
		mu.Lock()
		defer mu.Unlock()
		if failures == 0 || r.Method != http.MethodPost {
			return false
		}
		failures--
		return unavailable(w, r)
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	renewed := 0
	opts := client.WatchOptions{Renew: client.RenewOptions{Now: clock.Now}, MinBackoff: 10 * time.Second, MaxBackoff: 15 * time.Second,
		OnRenew: func(context.Context, *client.RenewResult) error { renewed++; cancel(); return nil }}
	client.SetWatchHooks(&opts, clock.sleep, func() float64 { return 0.5 })
	if err := client.Watch(ctx, b.Dir, opts); err != nil {
		t.Fatalf("Watch: %v", err)
	}
	if renewed != 1 {
		t.Fatalf("%d renewals", renewed)
	}
	// Doubling from MinBackoff, capped at MaxBackoff.
	want := []time.Duration{10 * time.Second, 15 * time.Second, 15 * time.Second}
	if len(clock.slept) < len(want) {
		t.Fatalf("slept %v", clock.slept)
	}
	for i, d := range want {
		if clock.slept[i] != d {
			t.Errorf("backoff %d: %v, want %v (all: %v)", i, clock.slept[i], d, clock.slept)
		}
	}
}

func TestWatchStopsOnPermanentRefusal(t *testing.T) {
	t.Parallel()
	s := clienttest.New(t)
	b := enroll(t, s, client.EnrollRequest{})
	c, _ := client.New(s.URL, nil, s.Token)
	if _, err := c.Revoke(context.Background(), b.Serial(), "keyCompromise"); err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{now: client.DueAt(b.Leaf).Add(time.Minute)}
	opts := client.WatchOptions{Renew: client.RenewOptions{Now: clock.Now}}
	client.SetWatchHooks(&opts, clock.sleep, nil)
	err := client.Watch(context.Background(), b.Dir, opts)
	if !client.IsKind(err, "certificateRevoked") {
		t.Fatalf("Watch: %v, want the certificateRevoked refusal", err)
	}
	if s.Calls("renew") != 1 {
		t.Errorf("%d renewal attempts; a permanent refusal is not retried", s.Calls("renew"))
	}
}

func TestWatchExitsCleanlyWhenStopped(t *testing.T) {
	t.Parallel()
	s := clienttest.New(t)
	b := enroll(t, s, client.EnrollRequest{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- client.Watch(ctx, b.Dir, client.WatchOptions{}) }()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Watch: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Watch did not return after its context ended")
	}
	if s.Calls("renew") != 0 {
		t.Errorf("a certificate that is not due was renewed")
	}
}
