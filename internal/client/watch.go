package client

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"time"
)

// Defaults of WatchOptions.
const (
	DefaultJitter     = 0.10
	DefaultMinBackoff = 10 * time.Second
	DefaultMaxBackoff = 10 * time.Minute
	// maxNap bounds one sleep, so that the wall clock is looked at again at
	// least this often: a monotonic timer does not advance while a laptop
	// or VM is suspended, and the wall clock may be stepped.
	maxNap = time.Hour
)

// WatchOptions says how Watch renews.
type WatchOptions struct {
	// Renew is passed to every renewal; Force is ignored (Watch decides).
	Renew RenewOptions
	// Jitter spreads renewals: the wait until the due point is stretched or
	// shrunk by up to this fraction, so that a fleet enrolled together does
	// not renew together. 0 is DefaultJitter.
	Jitter float64
	// MinBackoff and MaxBackoff bound the exponential wait between failed
	// attempts; zero takes the defaults.
	MinBackoff, MaxBackoff time.Duration
	// OnRenew runs after every renewal, e.g. to reload a server that uses the
	// certificate. Its error is logged; watching goes on.
	OnRenew func(context.Context, *RenewResult) error
	// Log receives one line per decision; nil discards.
	Log *slog.Logger

	// sleep and random are replaced by tests.
	sleep  func(context.Context, time.Duration) error
	random func() float64
}

// Watch keeps the certificate in dir renewed until ctx ends, which is a clean
// exit (nil). It sleeps until the certificate is due (DueAt, with jitter),
// renews, and starts over with the new certificate. A failure that may pass
// (network, TLS, 429, 5xx, the directory locked by another pkictl) is retried
// with exponential backoff; one that will not — the certificate revoked,
// expired or already renewed, the account refused, the answer untrusted, the
// directory unreadable — ends Watch with that error, for the supervisor to
// report.
func Watch(ctx context.Context, dir string, opts WatchOptions) error {
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := time.Now
	if opts.Renew.Now != nil {
		now = opts.Renew.Now
	}
	jitter := opts.Jitter
	if jitter <= 0 {
		jitter = DefaultJitter
	}
	minB, maxB := opts.MinBackoff, opts.MaxBackoff
	if minB <= 0 {
		minB = DefaultMinBackoff
	}
	if maxB < minB {
		maxB = max(DefaultMaxBackoff, minB)
	}
	sleep := opts.sleep
	if sleep == nil {
		sleep = sleepContext
	}
	random := opts.random
	if random == nil {
		random = rand.Float64
	}
	ro := opts.Renew
	ro.Force = true

	var (
		target       time.Time
		targetSerial string
		backoff      time.Duration
	)
	for {
		b, err := Load(dir)
		if err != nil && !errors.Is(err, ErrBusy) {
			return err
		}
		if err == nil && b.Serial() != targetSerial {
			t := now()
			wait := DueAt(b.Leaf).Sub(t)
			if wait > 0 {
				wait = time.Duration(float64(wait) * (1 + jitter*(2*random()-1)))
			}
			target, targetSerial = t.Add(max(wait, 0)), b.Serial()
			log.Info("next renewal", "serial", targetSerial, "at", target.UTC().Format(time.RFC3339),
				"not_after", b.Leaf.NotAfter.UTC().Format(time.RFC3339))
		}
		if t := now(); err == nil && t.Before(target) {
			if sleep(ctx, min(target.Sub(t), maxNap)) != nil {
				return nil
			}
			continue
		}
		var res *RenewResult
		if err == nil {
			res, err = Renew(ctx, dir, ro)
		}
		if err == nil {
			backoff = 0
			log.Info("renewed", "previous_serial", SerialText(res.Previous), "serial", res.Bundle.Serial(),
				"not_after", res.Bundle.Leaf.NotAfter.UTC().Format(time.RFC3339))
			if opts.OnRenew != nil {
				if herr := opts.OnRenew(ctx, res); herr != nil {
					log.Error("the renewal hook failed", "error", herr)
				}
			}
			continue
		}
		if ctx.Err() != nil {
			return nil
		}
		if !transient(err) {
			return err
		}
		backoff = min(max(2*backoff, minB), maxB)
		wait := time.Duration(float64(backoff) * (0.8 + 0.4*random()))
		var pe *Error
		if errors.As(err, &pe) && pe.RetryAfter > wait {
			wait = pe.RetryAfter
		}
		log.Warn("renewal failed; will retry", "error", err, "retry_in", wait.Round(time.Second).String())
		if sleep(ctx, wait) != nil {
			return nil
		}
	}
}

// transient reports whether err may go away by itself: a refusal pkid marks
// as retryable, a transport failure (connection, TLS, timeout), or the lock
// held by another pkictl.
func transient(err error) bool {
	var pe *Error
	if errors.As(err, &pe) {
		return pe.Retryable()
	}
	var ue *url.Error
	return errors.As(err, &ue) || errors.Is(err, ErrBusy) || errors.Is(err, context.DeadlineExceeded)
}

// sleepContext waits d or until ctx ends (then it returns ctx's error).
func sleepContext(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
