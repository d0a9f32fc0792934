// Command pkid is the certificate authority daemon and its operator commands.
//
//	pkid migrate                               apply the database migrations
//	pkid init                                  create the CA hierarchy (idempotent)
//	pkid ca rotate                             create a new issuing intermediate (needs the root key)
//	pkid ca export-root-key --out FILE         move the root key out of the database
//	pkid serve                                 run the service
//	pkid admin create-user --username NAME     create an administrator (password on stdin)
//	pkid admin token --username NAME [--ttl 1h] print an admin API token
//	pkid crl fetch --url URL --ca FILE --out FILE  download and verify CRLs (for nginx)
//	pkid audit verify                          check the audit trail's hash chain
//
// Configuration comes from the environment (see internal/config and the
// README); secrets never come from flags.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `pkid: a private certificate authority for mTLS client certificates

Usage:
  pkid migrate                                 apply the SQL migrations (creates the database if missing)
  pkid init [flags]                            create the CA hierarchy if none exists; prints the root fingerprint
      [--pkcs11-module LIB --pkcs11-token LABEL --pkcs11-pin-file FILE]
                                               generate the root and intermediate keys on an HSM
  pkid ca rotate [--root-key FILE] [flags]     create a new issuing intermediate under the root; new certificates
                                               come from it, the previous one keeps answering for its own
  pkid ca export-root-key --out FILE           move the root key out of the database into FILE (keep it offline)
  pkid serve                                   run the service
  pkid admin create-user --username NAME       create an administrator; the password is read from stdin
  pkid admin token --username NAME [--ttl 1h]  print an admin API token (a JWT) on stdout
  pkid crl fetch --url URL --ca FILE --out FILE [--root-crl] [--intermediates]
                                               download pkid's CRL(s), verify them, replace FILE atomically
  pkid audit verify                            walk the audit trail's hash chain; exit 1 at the first broken link

Environment: DATABASE_URL, PKID_HTTP_ADDR, PKID_TLS_ADDR, PKID_TLS_HOSTNAMES,
PKID_PUBLIC_URL, PKID_KEY_PASSPHRASE (or PKID_KEY_PASSPHRASE_FILE), the HSM's
PKID_PKCS11_MODULE, PKID_PKCS11_TOKEN and PKID_PKCS11_PIN_FILE (also flags of
init and serve), and the tuning variables listed in the README.
`

// errUsage marks a command-line mistake: exit status 2 and the usage text.
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	switch {
	case err == nil:
	case errors.Is(err, errUsage):
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "pkid:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errUsage
	}
	env := envFromOS
	switch args[0] {
	case "migrate":
		return cmdMigrate(ctx, env, args[1:], stderr)
	case "init":
		return cmdInit(ctx, env, args[1:], stdout, stderr)
	case "serve":
		return cmdServe(ctx, env, args[1:], stderr)
	case "admin":
		if len(args) < 2 {
			return errUsage
		}
		switch args[1] {
		case "create-user":
			return cmdCreateUser(ctx, env, args[2:], stdin, stdout, stderr)
		case "token":
			return cmdAdminToken(ctx, env, args[2:], stdout, stderr)
		}
	case "ca":
		if len(args) < 2 {
			return errUsage
		}
		switch args[1] {
		case "rotate":
			return cmdRotate(ctx, env, args[2:], stdout, stderr)
		case "export-root-key":
			return cmdExportRootKey(ctx, env, args[2:], stdout, stderr)
		}
	case "audit":
		return cmdAuditVerify(ctx, env, args[1:], stdout, stderr)
	case "crl":
		if len(args) < 2 || args[1] != "fetch" {
			return errUsage
		}
		return cmdCRLFetch(ctx, args[2:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	return errUsage
}

func envFromOS(name string) (string, bool) { return os.LookupEnv(name) }
