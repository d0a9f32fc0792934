// Command nodes measures what several pkid nodes on one Postgres do
// together against what one does: the aggregate issuance rate (POST
// /api/v1/certificates) and OCSP rate (GET /ocsp/{request}) over loopback
// HTTP, with one `pkid serve` and then with three, on the same database, in
// one run.
//
//	go run ./bench/nodes [-duration 10s] [-issue-clients 32] [-ocsp-clients 64]
//
// It builds cmd/pkid (or takes -pkid), creates a scratch database on the
// server of -database-url (dropped at the end), sets it up as an operator
// does (pkid migrate, pkid init, an administrator), and starts the nodes as
// real processes with their background jobs. Each phase drives the first
// node alone, then all three, with requests spread round-robin per request
// (as a load balancer does with keep-alive connections to each node); the
// clients are the same in number whatever the node count, so the figures
// compare what the nodes deliver, not what the load generator asks.
//
// The nodes, Postgres and this load generator share the machine's cores: on
// a small machine three nodes cannot be three times one, and the report
// gives each phase's CPU time per request of the pkid processes beside the
// rates, which says whether a node does more work per request when it has
// company (coordination between nodes would show there). The load average
// at the start of each phase is printed too.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pkid/pkid/internal/benchkit"
	"github.com/pkid/pkid/internal/testbin"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench/nodes:", err)
		os.Exit(1)
	}
}

// passphrase protects the scratch CA's keys.
const passphrase = "bench nodes passphrase"

func run() error {
	dbURL := flag.String("database-url", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "a Postgres server to create the scratch database on")
	pkid := flag.String("pkid", "", "the pkid binary to run (default: go build ./cmd/pkid)")
	duration := flag.Duration("duration", 10*time.Second, "how long each measurement runs")
	issueClients := flag.Int("issue-clients", 32, "concurrent issuing clients, spread over the nodes")
	ocspClients := flag.Int("ocsp-clients", 64, "concurrent OCSP clients, spread over the nodes")
	nodeCount := flag.Int("nodes", 3, "nodes of the second phase")
	flag.Parse()
	if *issueClients < 1 || *ocspClients < 1 || *nodeCount < 2 || *duration <= 0 {
		return errors.New("-issue-clients and -ocsp-clients must be positive, -nodes at least 2, -duration positive")
	}

	bin := *pkid
	if bin == "" {
		paths, err := testbin.Build("pkid")
		if err != nil {
			return err
		}
		defer testbin.Remove()
		bin = paths[0]
	}
	ctx := context.Background()
	scratch, drop, err := benchkit.ScratchDatabase(ctx, *dbURL, "pkid_bench_nodes_")
	if err != nil {
		return err
	}
	defer drop()
	env := testbin.Env(scratch, passphrase, "PKID_PUBLIC_URL=http://pkid.bench", "PKID_LOG_LEVEL=warn")
	admin, err := testbin.Setup(bin, env)
	if err != nil {
		return err
	}

	var nodes []*testbin.Node
	defer func() {
		for _, n := range nodes {
			_ = n.Stop(15 * time.Second)
		}
	}()
	start := func(i int) error {
		addr, err := testbin.PickAddr()
		if err != nil {
			return err
		}
		n, err := testbin.Launch(bin, fmt.Sprintf("node %c", 'A'+i), env, addr)
		if err != nil {
			return err
		}
		nodes = append(nodes, n)
		if err := n.WaitReady(60 * time.Second); err != nil {
			return fmt.Errorf("%v\n%s", err, n.Logs())
		}
		return nil
	}
	if err := start(0); err != nil {
		return err
	}
	token, err := benchAccount(nodes[0].URL, admin)
	if err != nil {
		return err
	}
	csrs, err := requestBodies(2048)
	if err != nil {
		return err
	}
	issuer, err := fetchIssuer(nodes[0].URL)
	if err != nil {
		return err
	}

	fmt.Printf("# bench/nodes  %s  %s  %d cores  %s\n", time.Now().UTC().Format(time.RFC3339), runtime.Version(), runtime.NumCPU(), strings.Join(os.Args[1:], " "))
	fmt.Printf("# issuance: %d clients; OCSP: %d clients, GET form, SHA-1 CertIDs; %s per measurement; requests round-robin over the nodes\n\n",
		*issueClients, *ocspClients, *duration)
	l := &loader{token: token, csrs: csrs, issuer: issuer}
	var rows []phase
	for _, n := range []int{1, *nodeCount} {
		for len(nodes) < n {
			if err := start(len(nodes)); err != nil {
				return err
			}
		}
		// New nodes load every OCSP response at start; let them settle.
		time.Sleep(2 * time.Second)
		p, err := l.measure(nodes[:n], *issueClients, *ocspClients, *duration)
		if err != nil {
			return err
		}
		p.backends, err = backends(ctx, *dbURL, scratch)
		if err != nil {
			return err
		}
		rows = append(rows, p)
	}
	report(rows)
	return nil
}

// backends counts the server's connections to the scratch database: what
// the nodes hold after a phase (pools and LISTEN connections).
func backends(ctx context.Context, adminURL, scratch string) (int, error) {
	u, err := url.Parse(scratch)
	if err != nil {
		return 0, err
	}
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return 0, err
	}
	defer conn.Close(ctx)
	var n int
	err = conn.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE datname = $1", strings.TrimPrefix(u.Path, "/")).Scan(&n)
	return n, err
}

// report prints one row per phase and the ratio of the last to the first.
func report(rows []phase) {
	fmt.Println("| nodes | load avg | issued/s | p50 ms | p99 ms | errors | pkid CPU ms/cert | OCSP/s | p50 ms | p99 ms | errors | pkid CPU µs/OCSP | DB connections |")
	fmt.Println("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, p := range rows {
		fmt.Printf("| %d | %.1f | %.0f | %.1f | %.1f | %d | %.2f | %.0f | %.2f | %.2f | %d | %.0f | %d |\n",
			p.nodes, p.load, p.issue.rate, ms(p.issue.p50), ms(p.issue.p99), p.issue.errors, p.issueCPU.Seconds()*1e3,
			p.ocsp.rate, ms(p.ocsp.p50), ms(p.ocsp.p99), p.ocsp.errors, p.ocspCPU.Seconds()*1e6, p.backends)
	}
	first, last := rows[0], rows[len(rows)-1]
	fmt.Printf("\n%d nodes against 1: issuance ×%.2f, OCSP ×%.2f\n", last.nodes, last.issue.rate/first.issue.rate, last.ocsp.rate/first.ocsp.rate)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
