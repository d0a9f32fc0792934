package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/pkid/pkid/internal/client"
)

// hookTimeout bounds a --hook command.
const hookTimeout = 5 * time.Minute

const renewHelp = `pkictl renew: renew the certificate in a directory, over mTLS

Usage:
  pkictl renew --dir DIR [--force] [--rekey] [--check-only] [options]
  pkictl renew --dir DIR --watch [--hook CMD] [options]

Renews once two thirds of the certificate's lifetime have passed (--force:
now). The certificate itself is the credential: pkictl connects to pkid's TLS
listener presenting cert.pem and key.pem, and trusts root.pem alone for the
server. The new certificate must chain to root.pem and certify the right key
before cert.pem and chain.pem are replaced, atomically (a reader sees the old
files or the new ones). The old certificate stays valid until it expires
unless --revoke-previous. An expired or revoked certificate cannot renew
itself: enroll again.

Options:
  --dir DIR            the certificate directory (PKICTL_DIR)
  --force              renew even if not due
  --check-only         renew nothing; exit 0 if due, 3 if not
  --rekey              make a new key (same type unless --key-type) and send
                       a CSR for it with the certificate's names; key.pem is
                       replaced atomically together with cert.pem
  --key-type ec|rsa    the new key's type with --rekey
  --validity-days N    ask for N days (default: pkid's policy)
  --revoke-previous    have pkid revoke the old certificate (superseded)
  --tls-server URL     pkid's TLS listener (default: remembered at enrolment;
                       a URL given here is remembered after a renewal)
  --token T            renew with the account token instead of the
                       certificate (PKICTL_TOKEN), at --server (or the
                       remembered server) when there is no TLS listener
  --server URL         pkid's base URL for --token renewals
  --watch              keep running: sleep until the certificate is due
                       (±10% jitter, so that a fleet does not renew at once),
                       renew, repeat; retry failures with backoff (10 s up to
                       10 min); exit 0 on SIGTERM or SIGINT, 1 when renewal
                       can never succeed (revoked, expired, already renewed,
                       account refused)
  --hook CMD           run "sh -c CMD" after each renewal (e.g. to reload the
                       service that uses the certificate), with PKICTL_DIR,
                       PKICTL_SERIAL and PKICTL_PREVIOUS_SERIAL set

Examples:
  pkictl renew --dir /etc/acme/billing-client
  pkictl renew --dir ./worker-7 --force --rekey
  pkictl renew --dir /certs --watch --hook 'kill -HUP $(cat /run/app.pid)'

A sidecar runs "pkictl renew --dir /certs --watch". With systemd, either a
long-running service:

  # /etc/systemd/system/pkictl-renew.service
  [Unit]
  Description=Keep the pkid client certificate renewed
  After=network-online.target
  Wants=network-online.target
  [Service]
  ExecStart=/usr/local/bin/pkictl renew --dir /etc/acme/billing-client --watch --hook 'systemctl reload billing'
  Restart=on-failure
  RestartSec=5min
  [Install]
  WantedBy=multi-user.target

or a oneshot service (ExecStart without --watch, Type=oneshot) started by a
timer, since "pkictl renew" does nothing until the certificate is due:

  # /etc/systemd/system/pkictl-renew.timer
  [Timer]
  OnCalendar=daily
  RandomizedDelaySec=4h
  Persistent=true
  [Install]
  WantedBy=timers.target

Exit codes: 0 renewed or not due yet (or --watch stopped by a signal),
1 failed (pkid's problem title and detail are printed), 2 usage error,
3 --check-only and not due.
`

func runRenew(ctx context.Context, e *env, args []string) int {
	code, err := renew(ctx, e, args)
	if err != nil {
		return finish(e, "renew", renewHelp, err)
	}
	return code
}

func renew(ctx context.Context, e *env, args []string) (int, error) {
	fs := flag.NewFlagSet("renew", flag.ContinueOnError)
	var (
		dir        = fs.String("dir", "", "")
		force      = fs.Bool("force", false, "")
		checkOnly  = fs.Bool("check-only", false, "")
		rekey      = fs.Bool("rekey", false, "")
		keyType    = fs.String("key-type", "", "")
		days       = fs.Int("validity-days", 0, "")
		revokePrev = fs.Bool("revoke-previous", false, "")
		tlsServer  = fs.String("tls-server", "", "")
		server     = fs.String("server", "", "")
		token      = fs.String("token", "", "")
		watch      = fs.Bool("watch", false, "")
		hook       = fs.String("hook", "", "")
	)
	if err := parse(e, fs, args); err != nil {
		return 0, err
	}
	switch {
	case *dir == "":
		return 0, usagef("--dir is required: the certificate directory")
	case *days < 0:
		return 0, usagef("--validity-days must be positive")
	case *watch && (*force || *checkOnly):
		return 0, usagef("--watch decides when to renew: it cannot be combined with --force or --check-only")
	case *checkOnly && *force:
		return 0, usagef("--check-only and --force contradict each other")
	case *keyType != "" && !*rekey:
		return 0, usagef("--key-type applies to --rekey only")
	}
	var kt client.KeyType
	if *keyType != "" {
		var err error
		if kt, err = client.ParseKeyType(*keyType); err != nil {
			return 0, usagef("--key-type %q: use ec or rsa", *keyType)
		}
	}
	opts := client.RenewOptions{
		Force: *force, Rekey: *rekey, KeyType: kt, ValidityDays: *days, RevokePrevious: *revokePrev,
		Token: *token, URL: *tlsServer, Now: e.now,
	}
	if *token != "" && *tlsServer == "" {
		opts.URL = *server
	}
	for _, u := range []string{*tlsServer, *server} {
		if u != "" {
			if _, err := client.ParseServerURL(u); err != nil {
				return 0, usageError{err.Error()}
			}
		}
	}

	if *checkOnly {
		b, err := client.Load(*dir)
		if err != nil {
			return 0, err
		}
		due := client.DueAt(b.Leaf)
		if e.now().Before(due) {
			fmt.Fprintf(e.stdout, "not due: serial %s renews after %s\n", b.Serial(), stamp(due))
			return exitNotDue, nil
		}
		fmt.Fprintf(e.stdout, "due: serial %s was due at %s; it expires %s\n", b.Serial(), stamp(due), formatLeft(b.Leaf.NotAfter.Sub(e.now())))
		return exitOK, nil
	}

	onRenew := func(ctx context.Context, r *client.RenewResult) error {
		if *hook == "" {
			return nil
		}
		return runHook(ctx, e, *hook, *dir, r)
	}
	if *watch {
		log := slog.New(slog.NewTextHandler(e.stderr, nil))
		err := client.Watch(ctx, *dir, client.WatchOptions{Renew: opts, OnRenew: onRenew, Log: log})
		if err != nil {
			return 0, err
		}
		log.Info("stopped")
		return exitOK, nil
	}

	r, err := client.Renew(ctx, *dir, opts)
	if err != nil {
		return 0, err
	}
	if !r.Renewed {
		fmt.Fprintf(e.stdout, "not due: serial %s renews after %s (two thirds of its lifetime); --force renews now\n",
			client.SerialText(r.Previous), stamp(r.DueAt))
		return exitOK, nil
	}
	b := r.Bundle
	fmt.Fprintf(e.stdout, "renewed: serial %s -> %s\n", client.SerialText(r.Previous), b.Serial())
	fmt.Fprintf(e.stdout, "  not after: %s (%s)\n", stamp(b.Leaf.NotAfter), formatLeft(b.Leaf.NotAfter.Sub(e.now())))
	if *rekey {
		fmt.Fprintf(e.stdout, "  new key:   %s\n", filepath.Join(*dir, client.KeyFile))
	}
	if *revokePrev {
		fmt.Fprintf(e.stdout, "  serial %s was revoked (superseded)\n", client.SerialText(r.Previous))
	}
	if err := onRenew(ctx, r); err != nil {
		return 0, err
	}
	return exitOK, nil
}

// runHook runs the --hook command after a renewal.
func runHook(ctx context.Context, e *env, hook, dir string, r *client.RenewResult) error {
	ctx, cancel := context.WithTimeout(ctx, hookTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", hook)
	cmd.Env = append(os.Environ(),
		"PKICTL_DIR="+dir,
		"PKICTL_SERIAL="+r.Bundle.Serial(),
		"PKICTL_PREVIOUS_SERIAL="+client.SerialText(r.Previous))
	cmd.Stdout, cmd.Stderr = e.stderr, e.stderr
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return fmt.Errorf("the --hook command failed (%v); the certificate was renewed", ee)
		}
		return fmt.Errorf("the --hook command could not run: %w; the certificate was renewed", err)
	}
	return nil
}
