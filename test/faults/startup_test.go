package faults

import (
	"bufio"
	"errors"
	"math"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pkid/pkid/internal/app"
	"github.com/pkid/pkid/internal/issuance"
	"github.com/pkid/pkid/internal/testbin"
	"github.com/pkid/pkid/internal/testdb"
)

const day = 24 * time.Hour

// TestStartupRefusals: `pkid serve` refuses to start, with a non-zero exit
// and a message that says why, when it cannot sign safely (issue 6): the
// passphrase is wrong, `pkid init` never ran, or the issuing intermediate
// or the OCSP signer has expired. The expired hierarchies are real ones,
// made by ca.Init with a clock in the past, so every certificate is
// properly signed and only time makes it unusable.
func TestStartupRefusals(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T) string // returns the database URL
		env   []string
		want  []string // in the error message
	}{
		{
			name: "wrong passphrase",
			setup: func(t *testing.T) string {
				url := testdb.Missing(t)
				mustPkid(t, pkidEnv(url), "", "migrate")
				mustPkid(t, pkidEnv(url), "", "init")
				return url
			},
			env:  []string{"PKID_KEY_PASSPHRASE=not the passphrase"},
			want: []string{"wrong passphrase"},
		},
		{
			name: "init never ran",
			setup: func(t *testing.T) string {
				return testdb.New(t)
			},
			want: []string{"pkid init"},
		},
		{
			name: "intermediate expired",
			setup: func(t *testing.T) string {
				url := testdb.New(t)
				initHierarchy(t, url, issuance.HierarchyConfig{IntermediateValidity: day}, time.Now().Add(-2*day))
				return url
			},
			want: []string{"expired", "intermediate"},
		},
		{
			name: "OCSP signer expired",
			setup: func(t *testing.T) string {
				url := testdb.New(t)
				initHierarchy(t, url, issuance.HierarchyConfig{OCSPValidity: day}, time.Now().Add(-2*day))
				return url
			},
			want: []string{"expired", "ocsp"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			url := tc.setup(t)
			d := testbin.LaunchNode(t, "pkid serve", pkidEnv(url, tc.env...), testbin.FreeAddr(t))
			select {
			case <-d.Done():
			case <-time.After(30 * time.Second):
				t.Fatal("pkid serve is still running after 30 s")
			}
			var exit *exec.ExitError
			if !errors.As(d.Err(), &exit) || exit.ExitCode() == 0 {
				t.Fatalf("pkid serve exited with %v, want a non-zero status", d.Err())
			}
			out := d.Logs()
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("the message does not say %q:\n%s", w, out)
				}
			}
			if !strings.HasPrefix(lastLine(out), "pkid: ") {
				t.Errorf("the last line is not pkid's error: %q", lastLine(out))
			}
		})
	}
}

// TestReadyzFailsOnceExpired: a node that was started while its CA
// certificates were valid answers /readyz 503 once the intermediate or the
// OCSP signer has expired, so that a load balancer takes it out.
func TestReadyzFailsOnceExpired(t *testing.T) {
	for _, tc := range []struct {
		name string
		hc   issuance.HierarchyConfig
		want string
	}{
		{"intermediate", issuance.HierarchyConfig{IntermediateValidity: day}, "issuing intermediate expired"},
		{"OCSP signer", issuance.HierarchyConfig{OCSPValidity: day}, "OCSP signer of intermediate generation 1 expired"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // most of the time goes to scrypt, one core each
			url := testdb.New(t)
			initHierarchy(t, url, tc.hc, time.Now().Add(-2*day))
			// Loaded as if it were 47 hours ago, when everything was valid;
			// /readyz looks at the real time.
			past := func() time.Time { return time.Now().Add(-47 * time.Hour) }
			n := startNode(t, tc.name, url, app.Options{Now: past}, false)
			r, err := send(newClient(), "GET", n.base+"/readyz", "", nil)
			if err != nil || r.status != http.StatusServiceUnavailable || !strings.Contains(string(r.body), tc.want) {
				t.Errorf("/readyz: %d %v %q, want 503 saying %q", r.status, err, r.body, tc.want)
			}
		})
	}
}

// TestCAExpiryWarning: a CA certificate within 30 days of its end is
// logged at WARN and exported as pkid_ca_certificate_expiry_seconds. For
// the delegated OCSP signer, which lives 30 days and is renewed with a
// third left, the warning means its renewal is failing.
func TestCAExpiryWarning(t *testing.T) {
	t.Run("intermediate within 30 days, pkid serve", func(t *testing.T) {
		t.Parallel()
		url := testdb.New(t)
		initHierarchy(t, url, issuance.HierarchyConfig{IntermediateValidity: 10 * day}, time.Now())
		d := testbin.StartNode(t, "pkid serve", pkidEnv(url))
		line := waitLog(t, d.Logs, `msg="CA certificate expires soon" kind=intermediate`, 20*time.Second)
		if !strings.Contains(line, "level=WARN") || !strings.Contains(line, "days_left=9") {
			t.Errorf("warning line %q, want level=WARN and days_left=9", line)
		}
		time.Sleep(200 * time.Millisecond)
		for _, kind := range []string{"root", "ocsp"} {
			if strings.Contains(d.Logs(), "kind="+kind) {
				t.Errorf("a warning for the %s, which is not due", kind)
			}
		}
		m := expiryMetrics(t, d.URL)
		checkNear(t, "intermediate", m["intermediate"], 10*day)
		checkNear(t, "ocsp", m["ocsp"], 10*day) // cut to the intermediate's end
		checkNear(t, "root", m["root"], issuance.DefaultRootValidity)
		if r, err := send(newClient(), "GET", d.URL+"/readyz", "", nil); err != nil || r.status != http.StatusOK {
			t.Errorf("/readyz %d %v: a certificate about to expire is a warning, not an outage", r.status, err)
		}
	})

	t.Run("OCSP signer renewal failing", func(t *testing.T) {
		t.Parallel()
		url := testdb.New(t)
		// 25 days into the signer's 30: due for renewal (a third left).
		initHierarchy(t, url, issuance.HierarchyConfig{}, time.Now().Add(-25*day))
		execSQL(t, url, `CREATE FUNCTION fault_issuers_fail() RETURNS trigger LANGUAGE plpgsql AS $$
			BEGIN RAISE EXCEPTION 'fault test: issuers cannot be written'; END $$;
			CREATE TRIGGER fault_issuers_fail BEFORE INSERT ON issuers FOR EACH ROW EXECUTE FUNCTION fault_issuers_fail();`)
		n := startNode(t, "renewal failing", url, app.Options{}, true)
		waitLog(t, n.logs.String, "renewing the OCSP signer failed", 20*time.Second)
		line := waitLog(t, n.logs.String, `msg="CA certificate expires soon" kind=ocsp`, 20*time.Second)
		if !strings.Contains(line, "level=WARN") {
			t.Errorf("warning line %q, want level=WARN", line)
		}
		checkNear(t, "ocsp", expiryMetrics(t, n.base)["ocsp"], 5*day)

		// Renewal works again: the next node renews and has nothing to
		// warn about.
		execSQL(t, url, `DROP TRIGGER fault_issuers_fail ON issuers`)
		n2 := startNode(t, "renewal working", url, app.Options{}, true)
		waitLog(t, n2.logs.String, "renewed the OCSP signer", 20*time.Second)
		time.Sleep(200 * time.Millisecond)
		if strings.Contains(n2.logs.String(), "CA certificate") {
			t.Errorf("a warning after a successful renewal:\n%s", n2.logs.String())
		}
		checkNear(t, "ocsp", expiryMetrics(t, n2.base)["ocsp"], issuance.DefaultOCSPValidity)
	})
}

// waitLog waits until the log that logs returns has a line containing s,
// and returns that line.
func waitLog(t *testing.T, logs func() string, s string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		sc := bufio.NewScanner(strings.NewReader(logs()))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			if strings.Contains(sc.Text(), s) {
				return sc.Text()
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line with %q after %s:\n%s", s, timeout, logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// expiryMetrics reads pkid_ca_certificate_expiry_seconds by kind from
// base's /metrics.
func expiryMetrics(t *testing.T, base string) map[string]time.Duration {
	t.Helper()
	r, err := send(newClient(), "GET", base+"/metrics", "", nil)
	if err != nil || r.status != http.StatusOK {
		t.Fatalf("/metrics: %d %v", r.status, err)
	}
	const prefix = `pkid_ca_certificate_expiry_seconds{kind="`
	out := map[string]time.Duration{}
	for _, line := range strings.Split(string(r.body), "\n") {
		rest, ok := strings.CutPrefix(line, prefix)
		if !ok {
			continue
		}
		kind, value, ok := strings.Cut(rest, `"} `)
		if !ok {
			t.Fatalf("metric line %q", line)
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		out[kind] = time.Duration(v * float64(time.Second))
	}
	if len(out) != 3 {
		t.Fatalf("pkid_ca_certificate_expiry_seconds has kinds %v, want root, intermediate and ocsp", out)
	}
	return out
}

// checkNear checks a seconds-left figure against the expected validity
// left, within the five-minute backdate and the test's own duration.
func checkNear(t *testing.T, kind string, got, want time.Duration) {
	t.Helper()
	if math.Abs(float64(got-want)) > float64(10*time.Minute) {
		t.Errorf("pkid_ca_certificate_expiry_seconds{kind=%q} = %s, want about %s", kind, got, want)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}
