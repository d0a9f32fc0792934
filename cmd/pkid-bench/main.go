// Command pkid-bench measures end-to-end certificate issuance: POST
// /api/v1/certificates over loopback HTTP with keep-alive connections,
// ECDSA P-256 CSRs, against a real Postgres (fsync on, the server's own
// settings), at several concurrencies. In the same run it measures the
// ceiling, CSR check + signing on all cores in process with no HTTP and no
// database, so that every figure comes with its distance from the limit.
//
//	go run ./cmd/pkid-bench [-duration 10s] [-concurrency 1,8,64] [-database-url URL]
//	    [-pkcs11-module LIB -pkcs11-token LABEL -pkcs11-pin-file FILE]
//
// With the -pkcs11-* flags the root and intermediate keys are generated on
// that token (as `pkid init --pkcs11-*` does; each run adds two keys to
// it, so use a scratch token) and every certificate is signed there.
//
// It creates a scratch database (pkid_bench_<random>) on the server named by
// -database-url and drops it at the end. The server under test runs in this
// process (same binary code as `pkid serve`: internal/app); the load
// generator shares the machine's cores with it, as the issue asks.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pkid/pkid/internal/app"
	"github.com/pkid/pkid/internal/auth"
	"github.com/pkid/pkid/internal/benchkit"
	"github.com/pkid/pkid/internal/ca"
	"github.com/pkid/pkid/internal/config"
	"github.com/pkid/pkid/internal/issuance"
	"github.com/pkid/pkid/internal/lint"
	"github.com/pkid/pkid/internal/pki"
	"github.com/pkid/pkid/internal/policy"
	"github.com/pkid/pkid/internal/server"
	"github.com/pkid/pkid/internal/store"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "pkid-bench:", err)
		os.Exit(1)
	}
}

func run() error {
	dbURL := flag.String("database-url", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "a Postgres server to create the scratch database on")
	duration := flag.Duration("duration", 10*time.Second, "how long each measurement runs")
	concList := flag.String("concurrency", "1,8,64", "comma-separated client concurrencies")
	noLintConc := flag.Int("nolint-concurrency", 64, "concurrency of the run with linting off (0 skips it)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the end-to-end runs to this file")
	dbConns := flag.Int("db-conns", 0, "database connections of the server under test (0: pkid serve's default, max(8, 4*GOMAXPROCS))")
	withCeiling := flag.Bool("ceiling", true, "measure the in-process ceiling first (false: skip it, for quick comparisons)")
	revocations := flag.Int("revocations", 100, "revocations whose visibility on a second node is measured (0 skips it)")
	flag.BoolVar(&benchJobs, "jobs", true, "run pkid serve's background jobs during the end-to-end runs, the audit chain's linker among them (false: as a node without them, the chain unlinked)")
	var hsm config.Config
	flag.StringVar(&hsm.PKCS11Module, "pkcs11-module", "", "PKCS#11 library: generate and use the CA keys on an HSM token")
	flag.StringVar(&hsm.PKCS11Token, "pkcs11-token", "", "the token's label (with -pkcs11-module)")
	flag.StringVar(&hsm.PKCS11PINFile, "pkcs11-pin-file", "", "file holding the token's user PIN (with -pkcs11-module)")
	flag.Parse()
	benchDBConns = *dbConns
	var concs []int
	for _, s := range strings.Split(*concList, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return fmt.Errorf("bad -concurrency %q", *concList)
		}
		concs = append(concs, n)
	}

	ctx := context.Background()
	scratch, drop, err := benchkit.ScratchDatabase(ctx, *dbURL, "pkid_bench_")
	if err != nil {
		return err
	}
	defer drop()
	su, err := url.Parse(scratch)
	if err != nil {
		return err
	}
	meter := cpuMeter{adminURL: *dbURL, database: strings.TrimPrefix(su.Path, "/")}

	app.TuneRuntime(os.LookupEnv) // as pkid serve does
	// pkid serve builds the small-key tables at start; build them here before
	// any run, so that no measured run waits for them (with -ceiling=false
	// the first end-to-end run would).
	policy.PrepareKeyChecks()
	cfg := config.Defaults()
	cfg.DatabaseURL = scratch
	cfg.KeyPassphrase = []byte("bench passphrase")
	cfg.PublicURL = "http://pkid.bench"
	if hsm.HSM() {
		cfg.PKCS11Module, cfg.PKCS11Token, cfg.PKCS11PINFile = hsm.PKCS11Module, hsm.PKCS11Token, hsm.PKCS11PINFile
		cfg.KeyPassphrase = nil // the token's secret seals the software keys, as in production
	}
	if err := store.Migrate(ctx, scratch, slog.New(slog.DiscardHandler)); err != nil {
		return err
	}
	if err := initCA(ctx, cfg); err != nil {
		return err
	}

	csrs, err := benchkit.CSRs(2048, "bench.test")
	if err != nil {
		return err
	}
	fmt.Printf("# pkid-bench  %s  GOMAXPROCS=%d  %s\n\n", time.Now().UTC().Format(time.RFC3339), runtime.GOMAXPROCS(0), runtime.Version())
	if cfg.HSM() {
		fmt.Printf("CA keys on PKCS#11 token %q (%s)\n\n", cfg.PKCS11Token, cfg.PKCS11Module)
	}

	// The ceiling: CSR check + lint + sign on every core, no HTTP, no DB.
	fmt.Println("## Ceiling: in process, all cores, no HTTP, no database")
	fmt.Println()
	fmt.Println("| stage | certificates/s |")
	fmt.Println("| --- | ---: |")
	ceilNoLint, ceilLint := math.NaN(), math.NaN()
	if *withCeiling {
		if ceilNoLint, err = ceiling(ctx, cfg, csrs, *duration, false); err != nil {
			return err
		}
		fmt.Printf("| CSR check + sign | %.0f |\n", ceilNoLint)
		if ceilLint, err = ceiling(ctx, cfg, csrs, *duration, true); err != nil {
			return err
		}
		fmt.Printf("| CSR check + lint + sign | %.0f |\n\n", ceilLint)
	}

	fmt.Println("## End to end: POST /api/v1/certificates over loopback, Postgres fsync on")
	fmt.Println()
	fmt.Println("| lint | concurrency | certificates/s | p50 ms | p99 ms | errors | of ceiling | pkid-bench CPU µs/cert | Postgres CPU µs/cert |")
	fmt.Println("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	// One account for every run: its keys are certified by the first run,
	// and pkid refuses to certify a key for a second account.
	token, err := benchToken(ctx, cfg)
	if err != nil {
		return err
	}
	stages := &stageObserver{}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	var unlinked []string
	for _, c := range concs {
		res, err := endToEnd(ctx, cfg, meter, token, csrs, c, *duration, false, stages)
		if err != nil {
			return err
		}
		fmt.Printf("| on | %d | %.0f | %.1f | %.1f | %d | %s | %.0f | %.0f |\n", c, res.rate, ms(res.p50), ms(res.p99), res.errors, ofCeiling(res.rate, ceilLint), res.selfCPU, res.pgCPU)
		unlinked = append(unlinked, fmt.Sprintf("%d at concurrency %d", res.unlinked, c))
	}
	if *noLintConc > 0 {
		res, err := endToEnd(ctx, cfg, meter, token, csrs, *noLintConc, *duration, true, nil)
		if err != nil {
			return err
		}
		fmt.Printf("| off | %d | %.0f | %.1f | %.1f | %d | %s | %.0f | %.0f |\n", *noLintConc, res.rate, ms(res.p50), ms(res.p99), res.errors, ofCeiling(res.rate, ceilNoLint), res.selfCPU, res.pgCPU)
	}
	if benchJobs {
		fmt.Printf("\nBackground jobs of pkid serve running, the audit chain's linker among them; audit events not yet linked when each lint-on run ended: %s\n", strings.Join(unlinked, ", "))
	} else {
		fmt.Println("\nBackground jobs off (-jobs=false): the audit chain's linker did not run.")
	}
	if *revocations > 0 {
		// Fresh CSRs: keyCompromise blocks each key it revokes.
		fresh, err := benchkit.CSRs(*revocations, "bench.test")
		if err != nil {
			return err
		}
		lat, err := revocationVisibility(ctx, cfg, token, fresh, *revocations)
		if err != nil {
			return err
		}
		fmt.Println()
		fmt.Println("## Revocation visible on another node (revoke on A, poll B's OCSP)")
		fmt.Println()
		fmt.Println("| revocations | p50 ms | p99 ms | max ms |")
		fmt.Println("| ---: | ---: | ---: | ---: |")
		fmt.Printf("| %d | %.1f | %.1f | %.1f |\n", len(lat), ms(lat[len(lat)/2]), ms(lat[len(lat)*99/100]), ms(lat[len(lat)-1]))
	}
	if err := printTableStats(ctx, scratch); err != nil {
		return err
	}
	fmt.Println()
	fmt.Println("## Cost of each issuance stage (mean over the lint-on runs, server side)")
	fmt.Println()
	fmt.Println("| stage | mean µs |")
	fmt.Println("| --- | ---: |")
	for _, s := range stages.summary() {
		fmt.Printf("| %s | %.0f |\n", s.name, s.meanMicros)
	}
	return nil
}

// printTableStats reports how many of the certificates table's updates were
// HOT (heap-only: no index entries written), which is what MarkIssued's
// update costs hinge on.
func printTableStats(ctx context.Context, dbURL string) error {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	// The statistics reach the collector up to a second after the changes.
	time.Sleep(1500 * time.Millisecond)
	var upd, hot int64
	if err := conn.QueryRow(ctx, `SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables
		WHERE relname = 'certificates'`).Scan(&upd, &hot); err != nil {
		return err
	}
	fmt.Printf("\nUpdates of the certificates table: %d, of which HOT (no index entries written): %d\n", upd, hot)
	return nil
}

// benchDBConns is -db-conns.
var benchDBConns int

// benchJobs is -jobs.
var benchJobs bool

// ofCeiling formats rate as a share of ceiling, or "–" when the ceiling was
// not measured.
func ofCeiling(rate, ceiling float64) string {
	if math.IsNaN(ceiling) || ceiling == 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f%%", 100*rate/ceiling)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func initCA(ctx context.Context, cfg config.Config) error {
	db, err := store.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer db.Close()
	l, err := lint.New()
	if err != nil {
		return err
	}
	keys, err := app.OpenKeys(cfg, true)
	if err != nil {
		return err
	}
	defer keys.Close()
	if _, _, err := ca.Init(ctx, db, ca.InitConfig{Hierarchy: issuance.HierarchyConfig{PublicURL: cfg.PublicURL}}, keys, l, time.Now()); err != nil {
		return err
	}
	_, err = auth.EnsureKey(ctx, db, keys.SealingSecret(), time.Now())
	return err
}

// ceiling runs CSR parsing and checking, certificate preparation (with or
// without lint) and signing on GOMAXPROCS goroutines for d.
func ceiling(ctx context.Context, cfg config.Config, csrs []string, d time.Duration, withLint bool) (float64, error) {
	db, err := store.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return 0, err
	}
	keys, err := app.OpenKeys(cfg, false)
	if err != nil {
		db.Close()
		return 0, err
	}
	defer keys.Close() // after the last signature below
	h, err := ca.LoadHierarchy(ctx, db, keys, time.Now())
	db.Close()
	if err != nil {
		return 0, err
	}
	l := lint.Disabled()
	if withLint {
		if l, err = lint.New(); err != nil {
			return 0, err
		}
	}
	issuer := h.Intermediate()
	profile := issuance.ClientProfile{PublicURL: cfg.PublicURL}
	var done atomic.Int64
	var firstErr atomic.Value
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for w := 0; w < runtime.GOMAXPROCS(0); w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; time.Now().Before(deadline); i++ {
				csr, err := policy.ParseCSR(csrs[i%len(csrs)])
				if err == nil {
					var checked *policy.Checked
					if checked, err = policy.CheckCSR(csr, policy.DefaultLimits()); err == nil {
						now := time.Now()
						var p *issuance.Prepared
						p, err = issuer.Prepare(profile, issuance.ClientRequest{
							Serial: pki.MustNewSerial(), PublicKey: checked.PublicKey, CommonName: checked.CommonName,
							Organization: "Bench", AccountID: "00000000-0000-4000-8000-000000000000",
							NotBefore: now.Add(-5 * time.Minute), NotAfter: now.Add(90 * 24 * time.Hour),
						}, l)
						if err == nil {
							_, err = issuer.Issue(p)
						}
					}
				}
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				done.Add(1)
			}
		}(w)
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return 0, err
	}
	return float64(done.Load()) / d.Seconds(), nil
}

type result struct {
	rate     float64
	p50, p99 time.Duration
	errors   int64
	// CPU microseconds per certificate: this process (server and load
	// generator) and the Postgres processes (see cpuMeter).
	selfCPU, pgCPU float64
	// unlinked is how many audit events the chain's linker had yet to link
	// when the run ended.
	unlinked int64
}

// endToEnd serves a fresh App on a loopback listener and drives it with c
// clients for d.
func endToEnd(ctx context.Context, cfg config.Config, meter cpuMeter, token string, csrs []string, c int, d time.Duration, noLint bool, obs ca.Observer) (result, error) {
	// The pool as pkid serve sizes it unless -db-conns says otherwise: with
	// MarkIssued's group commit, more backends than a few per core only add
	// context switches and lock traffic on this machine (docs/BENCHMARKS.md).
	opts := app.Options{DisableLint: noLint, SkipMigrate: true, MaxDBConns: int32(benchDBConns)}
	if obs != nil {
		opts.CAObserver = obs
	}
	a, err := app.New(ctx, cfg, slog.New(slog.DiscardHandler), opts)
	if err != nil {
		return result{}, err
	}
	defer a.Close()
	if benchJobs {
		// Everything a serving node runs beside its handlers, as pkid serve
		// does: the audit chain's linker, the OCSP and CRL jobs.
		jobsCtx, stopJobs := context.WithCancel(ctx)
		jobsDone := make(chan struct{})
		go func() {
			defer close(jobsDone)
			a.RunJobs(jobsCtx)
		}()
		defer func() {
			stopJobs()
			<-jobsDone
		}()
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return result{}, err
	}
	srv := server.NewHTTPServer(ln.Addr().String(), a.Handler, slog.New(slog.DiscardHandler))
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	base := "http://" + ln.Addr().String()

	bodies := make([][]byte, len(csrs))
	for i, csr := range csrs {
		bodies[i], _ = json.Marshal(map[string]string{"csr": csr})
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: c, MaxConnsPerHost: c}}

	// Warm up connections, statement caches and the pool.
	drive(client, base, token, bodies, c, time.Second)
	before, err := meter.sample(ctx)
	if err != nil {
		return result{}, err
	}
	lat, errs := drive(client, base, token, bodies, c, d)
	after, err := meter.sample(ctx)
	if err != nil {
		return result{}, err
	}
	slices.Sort(lat)
	if len(lat) == 0 {
		return result{}, errors.New("no request succeeded")
	}
	head, err := a.DB.AuditChainHead(ctx)
	if err != nil {
		return result{}, err
	}
	n := float64(len(lat))
	return result{
		unlinked: head.Unlinked,
		rate:     n / d.Seconds(),
		p50:      lat[len(lat)/2],
		p99:      lat[len(lat)*99/100],
		errors:   errs,
		selfCPU:  float64((after.self - before.self).Microseconds()) / n,
		pgCPU:    float64((after.postgres - before.postgres).Microseconds()) / n,
	}, nil
}

// benchToken creates an Enterprise account with a token, through the same
// use cases as the admin API.
func benchToken(ctx context.Context, cfg config.Config) (string, error) {
	a, err := app.New(ctx, cfg, slog.New(slog.DiscardHandler), app.Options{SkipMigrate: true})
	if err != nil {
		return "", err
	}
	defer a.Close()
	sys := pki.Principal{Kind: pki.PrincipalSystem}
	acct, err := a.Accounts.CreateAccount(ctx, sys, "Bench Corp", pki.PlanEnterprise, "")
	if err != nil {
		return "", err
	}
	// The benchmark issues thousands of certificates an hour to one account:
	// lift the default quotas (1,000 active, 100 an hour), as an operator
	// would for a load test. Every request still reads the policy and
	// checks its names and key against it.
	if _, err := a.Certs.SetPolicy(ctx, sys, acct.ID, pki.AccountPolicy{
		AllowedNames: []string{policy.AnyName}, KeyTypes: policy.CAKeyTypes(),
	}, ""); err != nil {
		return "", err
	}
	_, token, err := a.Accounts.MintToken(ctx, sys, acct.ID, "bench", time.Hour, "")
	return token, err
}

// drive runs c clients posting CSRs for d and returns the latencies of the
// 201 answers and the number of other outcomes.
func drive(client *http.Client, base, token string, bodies [][]byte, c int, d time.Duration) ([]time.Duration, int64) {
	var mu sync.Mutex
	var all []time.Duration
	var errs atomic.Int64
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for w := 0; w < c; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			var lat []time.Duration
			for i := w; time.Now().Before(deadline); i += c {
				req, _ := http.NewRequest("POST", base+"/api/v1/certificates", bytes.NewReader(bodies[i%len(bodies)]))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer "+token)
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					errs.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusCreated {
					errs.Add(1)
					continue
				}
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		}(w)
	}
	wg.Wait()
	return all, errs.Load()
}

// stageObserver accumulates the server's per-stage timings.
type stageObserver struct {
	mu     sync.Mutex
	totals map[string]time.Duration
	counts map[string]int64
}

func (s *stageObserver) IssueStage(stage string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.totals == nil {
		s.totals, s.counts = map[string]time.Duration{}, map[string]int64{}
	}
	s.totals[stage] += d
	s.counts[stage]++
}

func (s *stageObserver) IssueOutcome(string, time.Duration) {}

type stageSummary struct {
	name       string
	meanMicros float64
}

func (s *stageObserver) summary() []stageSummary {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []stageSummary
	for _, name := range []string{"policy", "parse", "check", "lint", "record", "sign", "commit"} {
		if n := s.counts[name]; n > 0 {
			out = append(out, stageSummary{name, float64(s.totals[name].Microseconds()) / float64(n)})
		}
	}
	return out
}
