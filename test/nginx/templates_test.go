package nginx

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestTemplates checks what an operator relies on without running
// anything: every placeholder of deploy/ is explained in deploy/nginx's
// README, the two recipes share everything but their revocation settings,
// the refresh script is valid shell and executable, and the systemd units
// fit together (the timer starts the service, the service runs the script
// with every variable it requires, and writes the CRL where the README
// tells crl.conf to read it).
func TestTemplates(t *testing.T) {
	readme := read(t, filepath.Join(deployDir, "nginx", "README.md"))
	files := []string{
		filepath.Join(deployDir, "nginx", "ocsp.conf"),
		filepath.Join(deployDir, "nginx", "crl.conf"),
		filepath.Join(deployDir, "systemd", "pkid-crl-fetch.service"),
	}
	for _, f := range files {
		for _, ph := range placeholderRE.FindAllString(read(t, f), -1) {
			if !strings.Contains(readme, "`"+ph+"`") {
				t.Errorf("%s uses %s, which deploy/nginx/README.md does not explain", f, ph)
			}
		}
	}

	t.Run("recipes differ only in revocation", func(t *testing.T) {
		// Directives (comments dropped) outside the revocation settings
		// must be the same in both files, so a fix to one is not lost in
		// the other.
		revocation := regexp.MustCompile(`^(ssl_ocsp|ssl_ocsp_responder|ssl_ocsp_cache|ssl_crl|ssl_session_cache|ssl_session_timeout|ssl_session_tickets)\s`)
		directives := func(file string) []string {
			var out []string
			for _, line := range strings.Split(read(t, file), "\n") {
				line = strings.TrimSpace(line)
				if line == "" || strings.HasPrefix(line, "#") || revocation.MatchString(line) {
					continue
				}
				out = append(out, line)
			}
			return out
		}
		ocsp, crl := directives(files[0]), directives(files[1])
		if strings.Join(ocsp, "\n") != strings.Join(crl, "\n") {
			t.Errorf("ocsp.conf and crl.conf differ outside their revocation settings:\nocsp.conf:\n%s\n\ncrl.conf:\n%s",
				strings.Join(ocsp, "\n"), strings.Join(crl, "\n"))
		}
	})

	t.Run("refresh script", func(t *testing.T) {
		script := filepath.Join(deployDir, "systemd", "pkid-crl-refresh")
		if out, err := exec.Command("sh", "-n", script).CombinedOutput(); err != nil {
			t.Errorf("sh -n %s: %v: %s", script, err, out)
		}
		if fi, err := os.Stat(script); err != nil || fi.Mode().Perm()&0o111 == 0 {
			t.Errorf("%s is not executable: %v", script, err)
		}
		// Without its settings it fails, saying which, and fetches nothing.
		out, err := runScript(t, script, "PKID=/bin/false", "PKID_URL=", "PKID_CA=", "CRL_FILE=")
		if err == nil || !strings.Contains(err.Error(), "PKID_URL is not set") {
			t.Errorf("pkid-crl-refresh without settings: %v %q; want a failure naming PKID_URL", err, out)
		}
	})

	t.Run("systemd units", func(t *testing.T) {
		service := unitFile(t, filepath.Join(deployDir, "systemd", "pkid-crl-fetch.service"))
		timer := unitFile(t, filepath.Join(deployDir, "systemd", "pkid-crl-fetch.timer"))
		if unit := timer["Timer.Unit"]; len(unit) > 0 && unit[0] != "pkid-crl-fetch.service" {
			t.Errorf("the timer starts %v, want pkid-crl-fetch.service (or nothing: the same name)", unit)
		}
		if len(timer["Timer.OnUnitActiveSec"]) != 1 || len(timer["Install.WantedBy"]) != 1 {
			t.Errorf("the timer has no period or cannot be enabled: %v", timer)
		}
		execStart := service["Service.ExecStart"]
		if len(execStart) != 1 || filepath.Base(execStart[0]) != "pkid-crl-refresh" {
			t.Errorf("the service runs %v, want pkid-crl-refresh", execStart)
		}
		env := map[string]string{}
		for _, e := range service["Service.Environment"] {
			k, v, _ := strings.Cut(strings.Trim(e, `"`), "=")
			env[k] = v
		}
		for _, k := range []string{"PKID", "PKID_URL", "PKID_CA", "CRL_FILE", "NGINX_RELOAD"} {
			if env[k] == "" {
				t.Errorf("the service does not set %s", k)
			}
		}
		state := service["Service.StateDirectory"]
		if len(state) != 1 || filepath.Dir(env["CRL_FILE"]) != "/var/lib/"+state[0] {
			t.Errorf("CRL_FILE %q is not in the unit's StateDirectory %v, the only place it may write", env["CRL_FILE"], state)
		}
		if !strings.Contains(readme, env["CRL_FILE"]) {
			t.Errorf("the README does not tell crl.conf to read %s, where the service writes", env["CRL_FILE"])
		}
	})
}

// unitFile reads a systemd unit as "Section.Key" → values, in order.
func unitFile(t *testing.T, file string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(strings.NewReader(read(t, file)))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = strings.Trim(line, "[]")
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Errorf("%s: %q is not key=value", file, line)
				continue
			}
			out[section+"."+k] = append(out[section+"."+k], v)
		}
	}
	return out
}

func read(t *testing.T, file string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
