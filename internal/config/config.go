// Package config loads pkid's configuration from the environment (and, where
// the command offers them, flags), validates it and fails fast. Secrets come
// from the environment or from a file named by the *_FILE variant, never from
// a flag, so that they do not show in the process list.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pkid/pkid/internal/clientip"
	"github.com/pkid/pkid/internal/ratelimit"
)

// Config is the whole of pkid's configuration.
type Config struct {
	DatabaseURL  string
	HTTPAddr     string
	TLSAddr      string   // "" disables the TLS listener
	TLSHostnames []string // DNS names and IP addresses for the TLS listener's certificate
	PublicURL    string   // base URL written into certificates
	// KeyPassphrase protects the CA and token keys at rest. Empty unless set.
	KeyPassphrase []byte
	// PKCS11Module, PKCS11Token and PKCS11PINFile name the HSM that holds
	// the CA keys: the PKCS#11 library, the token's label and a file holding
	// the user PIN (read when the token is opened, never logged). All three
	// or none; with them PKID_KEY_PASSPHRASE is optional.
	PKCS11Module  string
	PKCS11Token   string
	PKCS11PINFile string
	// PKCS11RootToken and PKCS11RootPINFile name a second token of the same
	// module that holds the root key alone, for `pkid init` and `pkid ca
	// rotate`; serving nodes are not given them, so the root stays offline.
	PKCS11RootToken   string
	PKCS11RootPINFile string

	AutoMigrate bool // serve applies migrations at start
	// DBMaxConns caps serve's pool of database connections; 0 means the
	// store's default, max(8, 4*GOMAXPROCS). Each node also holds one
	// LISTEN connection per notification channel besides the pool.
	DBMaxConns int

	DefaultValidity time.Duration // of client certificates when the request names none
	MaxValidity     time.Duration // hard cap on client certificate validity
	Backdate        time.Duration // notBefore = now - Backdate, for clock skew

	// OCSPValidity is the validity of pre-signed OCSP responses.
	OCSPValidity time.Duration
	// CRLValidity is nextUpdate - thisUpdate of the CRL.
	CRLValidity time.Duration
	// CRLInterval is how often the CRL is re-signed with no revocation.
	CRLInterval time.Duration
	// RootCRLValidity is the nextUpdate of the root's CRL.
	RootCRLValidity time.Duration

	// TrustedProxies are the load balancers and reverse proxies whose
	// X-Forwarded-For names the client, for the limits that count per
	// client address; empty: the connection's peer is the client.
	TrustedProxies []netip.Prefix
	// UnauthenticatedLimit is each client address's budget of requests to
	// the account and admin APIs that fail authentication, per node; the
	// zero Rate turns it off.
	UnauthenticatedLimit ratelimit.Rate
	// UnauthenticatedClients bounds how many client addresses that limit
	// remembers, which bounds its memory.
	UnauthenticatedClients int
	// LoginUserAttempts and LoginAddressAttempts are the admin sign-in
	// attempts one username and one client address get per LoginWindow,
	// counted in Postgres across nodes.
	LoginUserAttempts    int
	LoginAddressAttempts int
	LoginWindow          time.Duration

	LogLevel  string // debug, info, warn, error
	LogFormat string // json or text

	Webhook Webhook // expiry notifications (webhook.go)
}

// Bounds of PKID_DB_MAX_CONNS. Below MinDBConns a node's background jobs
// (the CRL job's transaction, OCSP re-signing, the audit linker) would leave
// requests waiting for a connection; above MaxDBConns the number is a
// mistake, as Postgres's max_connections is shared by every node.
const (
	MinDBConns = 4
	MaxDBConns = 1000
)

// Defaults returns the configuration that applies when nothing is set.
func Defaults() Config {
	return Config{
		DatabaseURL:     "postgres://postgres@127.0.0.1:5432/pkid?sslmode=disable",
		HTTPAddr:        "127.0.0.1:8080",
		TLSHostnames:    []string{"localhost", "127.0.0.1"},
		PublicURL:       "http://127.0.0.1:8080",
		AutoMigrate:     true,
		DefaultValidity: 90 * 24 * time.Hour,
		MaxValidity:     90 * 24 * time.Hour,
		Backdate:        5 * time.Minute,
		OCSPValidity:    24 * time.Hour,
		CRLValidity:     24 * time.Hour,
		CRLInterval:     time.Hour,
		RootCRLValidity: 365 * 24 * time.Hour,

		UnauthenticatedLimit:   ratelimit.Rate{Limit: 30, Period: time.Minute},
		UnauthenticatedClients: 100_000,
		LoginUserAttempts:      5,
		LoginAddressAttempts:   50,
		LoginWindow:            15 * time.Minute,

		LogLevel:  "info",
		LogFormat: "json",

		Webhook: defaultWebhook(),
	}
}

// Getenv looks a variable up; os.LookupEnv in production, a map in tests.
type Getenv func(string) (string, bool)

// FromEnv returns Defaults overridden by the environment. It does not
// validate: call Validate once flags have been applied too.
func FromEnv(getenv Getenv) (Config, error) {
	c := Defaults()
	env := &envReader{getenv: getenv}
	env.str("DATABASE_URL", &c.DatabaseURL)
	env.str("PKID_HTTP_ADDR", &c.HTTPAddr)
	env.str("PKID_TLS_ADDR", &c.TLSAddr)
	env.str("PKID_PUBLIC_URL", &c.PublicURL)
	env.str("PKID_LOG_LEVEL", &c.LogLevel)
	env.str("PKID_LOG_FORMAT", &c.LogFormat)
	env.str("PKID_PKCS11_MODULE", &c.PKCS11Module)
	env.str("PKID_PKCS11_TOKEN", &c.PKCS11Token)
	env.str("PKID_PKCS11_PIN_FILE", &c.PKCS11PINFile)
	env.str("PKID_PKCS11_ROOT_TOKEN", &c.PKCS11RootToken)
	env.str("PKID_PKCS11_ROOT_PIN_FILE", &c.PKCS11RootPINFile)
	if v, ok := env.lookup("PKID_TLS_HOSTNAMES"); ok {
		c.TLSHostnames = splitList(v)
	}
	env.boolean("PKID_AUTO_MIGRATE", &c.AutoMigrate)
	parseInto(env, "PKID_DB_MAX_CONNS", &c.DBMaxConns, strconv.Atoi)
	env.duration("PKID_DEFAULT_VALIDITY", &c.DefaultValidity)
	env.duration("PKID_MAX_VALIDITY", &c.MaxValidity)
	env.duration("PKID_BACKDATE", &c.Backdate)
	env.duration("PKID_OCSP_VALIDITY", &c.OCSPValidity)
	env.duration("PKID_CRL_VALIDITY", &c.CRLValidity)
	env.duration("PKID_CRL_INTERVAL", &c.CRLInterval)
	env.duration("PKID_ROOT_CRL_VALIDITY", &c.RootCRLValidity)

	parseInto(env, "PKID_TRUSTED_PROXIES", &c.TrustedProxies, clientip.ParsePrefixes)
	parseInto(env, "PKID_UNAUTHENTICATED_LIMIT", &c.UnauthenticatedLimit, ratelimit.ParseRate)
	env.integer("PKID_UNAUTHENTICATED_LIMIT_CLIENTS", &c.UnauthenticatedClients)
	env.integer("PKID_LOGIN_LIMIT_USER", &c.LoginUserAttempts)
	env.integer("PKID_LOGIN_LIMIT_ADDRESS", &c.LoginAddressAttempts)
	env.duration("PKID_LOGIN_WINDOW", &c.LoginWindow)

	webhookFromEnv(env, &c.Webhook)

	pass, err := secret(getenv, "PKID_KEY_PASSPHRASE")
	if err != nil {
		env.fail(err)
	}
	c.KeyPassphrase = pass
	return c, errors.Join(env.errs...)
}

// envReader reads typed variables into a configuration, collecting the
// errors so that FromEnv reports every bad variable at once. A variable set
// to "" counts as unset; a variable that does not parse leaves dst as it was.
type envReader struct {
	getenv Getenv
	errs   []error
}

// lookup returns the variable's value, and whether it is set and not empty.
func (e *envReader) lookup(name string) (string, bool) {
	v, ok := e.getenv(name)
	return v, ok && v != ""
}

func (e *envReader) fail(err error) { e.errs = append(e.errs, err) }

func (e *envReader) str(name string, dst *string) {
	if v, ok := e.lookup(name); ok {
		*dst = v
	}
}

func (e *envReader) duration(name string, dst *time.Duration) { parseInto(e, name, dst, ParseDuration) }

func (e *envReader) boolean(name string, dst *bool) { parseInto(e, name, dst, strconv.ParseBool) }

func (e *envReader) integer(name string, dst *int) {
	parseInto(e, name, dst, func(v string) (int, error) {
		n, err := strconv.Atoi(v)
		if err != nil {
			return 0, fmt.Errorf("%q is not a whole number", v)
		}
		return n, nil
	})
}

// parseInto parses the variable, when set, into dst; an error names the
// variable and leaves dst as it was.
func parseInto[T any](e *envReader, name string, dst *T, parse func(string) (T, error)) {
	if v, ok := e.lookup(name); ok {
		x, err := parse(v)
		if err != nil {
			e.fail(fmt.Errorf("%s: %w", name, err))
			return
		}
		*dst = x
	}
}

// secret reads NAME, or the file named by NAME_FILE (trailing newline
// removed). Setting both is an error: it would be ambiguous which wins.
func secret(getenv Getenv, name string) ([]byte, error) {
	v, hasValue := getenv(name)
	f, hasFile := getenv(name + "_FILE")
	switch {
	case hasValue && v != "" && hasFile && f != "":
		return nil, fmt.Errorf("%s and %s_FILE are both set", name, name)
	case hasFile && f != "":
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("%s_FILE: %w", name, err)
		}
		return []byte(strings.TrimRight(string(b), "\r\n")), nil
	case hasValue:
		return []byte(v), nil
	}
	return nil, nil
}

// ParseDuration accepts Go durations ("90m", "24h") and whole days ("90d").
func ParseDuration(s string) (time.Duration, error) {
	if strings.HasSuffix(s, "d") {
		n, err := strconv.Atoi(strings.TrimSuffix(s, "d"))
		if err != nil || n < 0 {
			return 0, fmt.Errorf("invalid duration %q", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q", s)
	}
	return d, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// HSM reports whether a PKCS#11 token holds the CA keys.
func (c Config) HSM() bool { return c.PKCS11Module != "" }

// Validate checks the configuration as a whole. needPassphrase is true for
// the commands that open CA keys: they need PKID_KEY_PASSPHRASE or a
// PKCS#11 token.
func (c Config) Validate(needPassphrase bool) error {
	var errs []error
	if _, err := url.Parse(c.DatabaseURL); err != nil || c.DatabaseURL == "" {
		errs = append(errs, errors.New("DATABASE_URL is not a URL"))
	}
	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		errs = append(errs, fmt.Errorf("PKID_HTTP_ADDR %q: %w", c.HTTPAddr, err))
	}
	if c.DBMaxConns != 0 && (c.DBMaxConns < MinDBConns || c.DBMaxConns > MaxDBConns) {
		errs = append(errs, fmt.Errorf("PKID_DB_MAX_CONNS %d must be between %d and %d (or unset for the default)", c.DBMaxConns, MinDBConns, MaxDBConns))
	}
	if c.TLSAddr != "" {
		if _, _, err := net.SplitHostPort(c.TLSAddr); err != nil {
			errs = append(errs, fmt.Errorf("PKID_TLS_ADDR %q: %w", c.TLSAddr, err))
		}
		if len(c.TLSHostnames) == 0 {
			errs = append(errs, errors.New("PKID_TLS_HOSTNAMES is empty but PKID_TLS_ADDR is set"))
		}
	}
	u, err := url.Parse(c.PublicURL)
	switch {
	case err != nil:
		errs = append(errs, fmt.Errorf("PKID_PUBLIC_URL: %w", err))
	case u.Scheme != "http" && u.Scheme != "https", u.Host == "":
		errs = append(errs, fmt.Errorf("PKID_PUBLIC_URL %q must be an absolute http(s) URL", c.PublicURL))
	case u.RawQuery != "" || u.Fragment != "":
		errs = append(errs, fmt.Errorf("PKID_PUBLIC_URL %q must not have a query or fragment", c.PublicURL))
	}
	if needPassphrase && len(c.KeyPassphrase) == 0 && !c.HSM() {
		errs = append(errs, errors.New("PKID_KEY_PASSPHRASE (or PKID_KEY_PASSPHRASE_FILE) is required unless a PKCS#11 token holds the keys (PKID_PKCS11_MODULE): it protects the CA keys at rest"))
	}
	if set := c.PKCS11Module != "" || c.PKCS11Token != "" || c.PKCS11PINFile != ""; set {
		if c.PKCS11Module == "" || c.PKCS11Token == "" || c.PKCS11PINFile == "" {
			errs = append(errs, errors.New("PKID_PKCS11_MODULE, PKID_PKCS11_TOKEN and PKID_PKCS11_PIN_FILE go together: set all three or none"))
		}
		if c.PKCS11Module != "" && !filepath.IsAbs(c.PKCS11Module) {
			// A bare name would be looked up by the dynamic loader along
			// LD_LIBRARY_PATH: the library that gets the PIN must be the one
			// the operator named.
			errs = append(errs, fmt.Errorf("PKID_PKCS11_MODULE %q must be an absolute path", c.PKCS11Module))
		}
	}
	if c.PKCS11RootToken != "" || c.PKCS11RootPINFile != "" {
		if c.PKCS11RootToken == "" || c.PKCS11RootPINFile == "" || c.PKCS11Module == "" {
			errs = append(errs, errors.New("PKID_PKCS11_ROOT_TOKEN and PKID_PKCS11_ROOT_PIN_FILE go together, with PKID_PKCS11_MODULE"))
		}
	}
	if c.MaxValidity <= 0 || c.MaxValidity > 200*24*time.Hour {
		errs = append(errs, fmt.Errorf("PKID_MAX_VALIDITY %s must be between 1s and 200 days", c.MaxValidity))
	}
	if c.DefaultValidity <= 0 || c.DefaultValidity > c.MaxValidity {
		errs = append(errs, fmt.Errorf("PKID_DEFAULT_VALIDITY %s must be positive and at most PKID_MAX_VALIDITY", c.DefaultValidity))
	}
	if c.Backdate < 0 || c.Backdate > time.Hour {
		errs = append(errs, fmt.Errorf("PKID_BACKDATE %s must be between 0 and 1h", c.Backdate))
	}
	if c.OCSPValidity < time.Hour || c.OCSPValidity > 7*24*time.Hour {
		errs = append(errs, fmt.Errorf("PKID_OCSP_VALIDITY %s must be between 1h and 7 days", c.OCSPValidity))
	}
	if c.CRLValidity < time.Hour || c.CRLValidity > 10*24*time.Hour {
		errs = append(errs, fmt.Errorf("PKID_CRL_VALIDITY %s must be between 1h and 10 days", c.CRLValidity))
	}
	if c.CRLInterval <= 0 || c.CRLInterval > c.CRLValidity/2 {
		// Half, so that a CRL is replaced well before its nextUpdate even
		// when one attempt fails.
		errs = append(errs, fmt.Errorf("PKID_CRL_INTERVAL %s must be positive and at most half of PKID_CRL_VALIDITY", c.CRLInterval))
	}
	if c.RootCRLValidity < 24*time.Hour {
		errs = append(errs, fmt.Errorf("PKID_ROOT_CRL_VALIDITY %s must be at least a day", c.RootCRLValidity))
	}
	if c.UnauthenticatedClients < 1000 || c.UnauthenticatedClients > 10_000_000 {
		// Below a thousand, a handful of failing clients would push each
		// other out and escape the limit; above ten million the table
		// could take half a gigabyte.
		errs = append(errs, fmt.Errorf("PKID_UNAUTHENTICATED_LIMIT_CLIENTS %d must be between 1000 and 10000000", c.UnauthenticatedClients))
	}
	if c.LoginUserAttempts < 1 || c.LoginUserAttempts > 1000 {
		errs = append(errs, fmt.Errorf("PKID_LOGIN_LIMIT_USER %d must be between 1 and 1000", c.LoginUserAttempts))
	}
	if c.LoginAddressAttempts < 1 || c.LoginAddressAttempts > 100_000 {
		errs = append(errs, fmt.Errorf("PKID_LOGIN_LIMIT_ADDRESS %d must be between 1 and 100000", c.LoginAddressAttempts))
	}
	if c.LoginWindow < time.Minute || c.LoginWindow > 24*time.Hour {
		errs = append(errs, fmt.Errorf("PKID_LOGIN_WINDOW %s must be between 1m and 24h", c.LoginWindow))
	}
	if err := c.Webhook.validate(); err != nil {
		errs = append(errs, err)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("PKID_LOG_LEVEL %q must be debug, info, warn or error", c.LogLevel))
	}
	switch c.LogFormat {
	case "json", "text":
	default:
		errs = append(errs, fmt.Errorf("PKID_LOG_FORMAT %q must be json or text", c.LogFormat))
	}
	return errors.Join(errs...)
}

// PublicBase returns PublicURL without a trailing slash, ready for
// "{base}/ocsp" and the like.
func (c Config) PublicBase() string { return strings.TrimRight(c.PublicURL, "/") }
