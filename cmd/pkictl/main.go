// Command pkictl is the customer's client for pkid: it makes a key pair
// locally, has pkid certify it, renews the certificate over mTLS, revokes it
// and shows its status. The logic is in internal/client; this is wiring:
// flags, environment, output and exit codes.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/pkid/pkid/internal/client"
)

// Exit codes, documented in usage.
const (
	exitOK      = 0
	exitFailed  = 1 // refused by pkid, network failure, untrusted answer, local files unusable
	exitUsage   = 2 // bad command line
	exitNotDue  = 3 // renew --check-only: not due yet
	exitNotGood = 4 // status: expired, revoked or unknown to the responder
)

const usage = `pkictl: the customer's client for the pkid certificate authority

Usage:
  pkictl enroll --server URL --token T --cn NAME --out DIR [options]
  pkictl renew  --dir DIR [--force] [--rekey] [--watch] [options]
  pkictl revoke --dir DIR --reason REASON --token T
  pkictl status --dir DIR
  pkictl help [COMMAND]

The key is made on this machine and never leaves it. Every flag may also be
set in the environment as PKICTL_<FLAG> (upper case, dashes as underscores:
PKICTL_SERVER, PKICTL_TOKEN, PKICTL_DIR, ...); the command line wins. Prefer
PKICTL_TOKEN to --token: the command line is visible to other local users.

Exit codes:
  0  success (renew: renewed, or not due yet)
  1  failed: refused by pkid (its problem title and detail are printed),
     network failure, an answer that does not verify, unusable local files
  2  usage error
  3  renew --check-only: the certificate is not due for renewal yet
  4  status: the certificate is expired, revoked or unknown to the responder

Run "pkictl help COMMAND" (or "pkictl COMMAND --help") for a command's flags
and examples.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// env is what a command needs from its process.
type env struct {
	getenv func(string) string
	stdout io.Writer
	stderr io.Writer
	now    func() time.Time
}

// command is one subcommand: its help text and what it runs.
type command struct {
	help string
	run  func(ctx context.Context, e *env, args []string) int
}

var commands = map[string]command{
	"enroll": {enrollHelp, runEnroll},
	"renew":  {renewHelp, runRenew},
	"revoke": {revokeHelp, runRevoke},
	"status": {statusHelp, runStatus},
}

// run is main without the process: it returns the exit code.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	return (&env{getenv: getenv, stdout: stdout, stderr: stderr, now: time.Now}).run(ctx, args)
}

// run dispatches to the command args name and returns the exit code.
func (e *env) run(ctx context.Context, args []string) int {
	stdout, stderr := e.stdout, e.stderr
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch name := args[0]; name {
	case "help", "-h", "-help", "--help":
		if len(args) > 1 {
			if c, ok := commands[args[1]]; ok {
				fmt.Fprint(stdout, c.help)
				return exitOK
			}
			fmt.Fprintf(stderr, "pkictl: no command %q\n\n%s", args[1], usage)
			return exitUsage
		}
		fmt.Fprint(stdout, usage)
		return exitOK
	default:
		c, ok := commands[name]
		if !ok {
			fmt.Fprintf(stderr, "pkictl: no command %q\n\n%s", name, usage)
			return exitUsage
		}
		return c.run(ctx, e, args[1:])
	}
}

// usageError is a bad command line: exit code 2.
type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

// parse parses a command's flags, then fills each flag not given on the
// command line from PKICTL_<FLAG>. It returns errHelp for -h/--help.
func parse(e *env, fs *flag.FlagSet, args []string) error {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] || err != nil {
			return
		}
		name := "PKICTL_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := e.getenv(name); v != "" {
			if serr := f.Value.Set(v); serr != nil {
				err = usagef("%s: %v", name, serr)
			}
		}
	})
	return err
}

// finish turns a command's error into output and an exit code.
func finish(e *env, name, help string, err error) int {
	if err == nil {
		return exitOK
	}
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(e.stdout, help)
		return exitOK
	}
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(e.stderr, "pkictl %s: %s\nRun \"pkictl help %s\" for usage.\n", name, ue.msg, name)
		return exitUsage
	}
	var pe *client.Error
	if errors.As(err, &pe) {
		fmt.Fprintf(e.stderr, "pkictl %s: pkid refused: %s (HTTP %d)\n", name, orDash(pe.Title), pe.Status)
		if pe.Detail != "" {
			fmt.Fprintf(e.stderr, "  %s\n", pe.Detail)
		}
		if hint := hintFor(pe); hint != "" {
			fmt.Fprintf(e.stderr, "  %s\n", hint)
		}
		return exitFailed
	}
	fmt.Fprintf(e.stderr, "pkictl %s: %s\n", name, strings.TrimPrefix(err.Error(), "client: "))
	return exitFailed
}

// hintFor says what to do about the refusals that have one obvious next step.
func hintFor(pe *client.Error) string {
	switch pe.Kind() {
	case "unauthenticated":
		return "Check the account token (--token or PKICTL_TOKEN); ask your administrator for a new one if it expired or was revoked."
	case "alreadyReplaced":
		return "This certificate was renewed already (perhaps by another pkictl, or an answer was lost). Enroll again, or renew the newer certificate."
	case "certificateRevoked", "certificateExpired":
		return "A revoked or expired certificate cannot be renewed: enroll again with an account token."
	case "rateLimited":
		return "Wait and try again later."
	}
	return ""
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// listFlag is a repeatable flag; each value may also be a comma-separated
// list (which is how PKICTL_DNS carries several names).
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

// formatLeft says how long until t, in days and hours.
func formatLeft(d time.Duration) string {
	if d <= 0 {
		return "expired " + formatDuration(-d) + " ago"
	}
	return "in " + formatDuration(d)
}

func formatDuration(d time.Duration) string {
	days := int(d / (24 * time.Hour))
	hours := int((d % (24 * time.Hour)) / time.Hour)
	if days == 0 {
		mins := int((d % time.Hour) / time.Minute)
		return fmt.Sprintf("%dh %dm", hours, mins)
	}
	return fmt.Sprintf("%dd %dh", days, hours)
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }
