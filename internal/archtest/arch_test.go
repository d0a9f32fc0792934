package archtest

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/pkid/pkid"

type pkg struct {
	ImportPath string
	Imports    []string
}

// packages lists every package of the module with its direct imports.
func packages(t *testing.T) []pkg {
	t.Helper()
	out, err := exec.Command("go", "list", "-json", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// TestDependencyDirection checks direct imports (zlint itself pulls in
// net/http through publicsuffix-go, so transitive checks would only test
// zlint).
func TestDependencyDirection(t *testing.T) {
	forbidden := map[string][]string{
		// The domain and signing never see HTTP, SQL or JWTs.
		"internal/pki":       {"net/http", "github.com/go-chi", "github.com/jackc/pgx", "github.com/golang-jwt", module + "/internal/"},
		"internal/policy":    {"net/http", "github.com/go-chi", "github.com/jackc/pgx", "github.com/golang-jwt"},
		"internal/issuance":  {"net/http", "github.com/go-chi", "github.com/jackc/pgx", "github.com/golang-jwt", module + "/internal/store"},
		"internal/ca":        {"net/http", "github.com/go-chi", "github.com/jackc/pgx", "github.com/golang-jwt", module + "/internal/store"},
		"internal/account":   {"net/http", "github.com/go-chi", "github.com/jackc/pgx", module + "/internal/store"},
		"internal/lint":      {module + "/internal/"},
		"internal/sealedkey": {module + "/internal/"},
		// Keys are made and opened without a database or a network; the
		// store records where they are.
		"internal/keystore": {"net/http", "github.com/go-chi", "github.com/jackc/pgx", module + "/internal/store"},
		// Rate arithmetic and client addresses are plain functions of their
		// inputs, usable by any layer.
		"internal/ratelimit": {"net/http", "github.com/jackc/pgx", module + "/internal/"},
		"internal/clientip":  {"github.com/go-chi", "github.com/jackc/pgx", module + "/internal/"},
		// Handlers never reach the database but through the use cases.
		"internal/api": {"github.com/jackc/pgx", module + "/internal/store"},
		"internal/web": {"github.com/jackc/pgx", module + "/internal/store"},
		// Expiry notices reach the database through their store interfaces.
		"internal/webhook": {"github.com/go-chi", "github.com/jackc/pgx", module + "/internal/store"},
		// The store knows nothing of the layers above it.
		"internal/store": {module + "/internal/ca", module + "/internal/account", module + "/internal/auth", module + "/internal/api", "net/http"},
	}
	for _, p := range packages(t) {
		rel := strings.TrimPrefix(p.ImportPath, module+"/")
		for _, imp := range p.Imports {
			if strings.HasPrefix(rel, "internal/") && (strings.HasPrefix(imp, module+"/cmd/") || imp == module+"/internal/server") && rel != "internal/app" {
				t.Errorf("%s imports %s: nothing in internal/ but the composition root may", rel, imp)
			}
			for _, bad := range forbidden[rel] {
				if strings.HasPrefix(imp, bad) {
					t.Errorf("%s imports %s, which its layer must not", rel, imp)
				}
			}
		}
	}
}

// TestLintDisabledOnlyInBenchmarks: the linter that checks nothing is for
// the benchmark's "linting off" figure only.
func TestLintDisabledOnlyInBenchmarks(t *testing.T) {
	out, err := exec.Command("grep", "-rln", "--include=*.go", "lint.Disabled()", "../..").Output()
	if err != nil && len(out) == 0 {
		return
	}
	for _, f := range strings.Fields(string(out)) {
		switch {
		case strings.HasSuffix(f, "_test.go"),
			strings.Contains(f, "/cmd/pkid-bench/"),
			strings.HasSuffix(f, "/internal/app/app.go"): // behind Options.DisableLint, set only by pkid-bench
		default:
			t.Errorf("%s uses lint.Disabled(), which is for the benchmark only", f)
		}
	}
}
