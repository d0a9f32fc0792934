package faults

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pkid/pkid/internal/config"
	"github.com/pkid/pkid/internal/store"
	"github.com/pkid/pkid/internal/testbin"
	"github.com/pkid/pkid/internal/testdb"
)

// clusterLoad is how long TestThreeNodes keeps its load on: long enough
// for dozens of revocations and several CRLs from different nodes, short
// enough for CI.
const clusterLoad = 10 * time.Second

// clusterIssuers and clusterOCSPClients are the test's concurrent clients.
const (
	clusterIssuers     = 6
	clusterOCSPClients = 3
)

// reasons are the revocation reasons the test picks from.
var reasons = []string{"unspecified", "keyCompromise", "affiliationChanged", "superseded", "cessationOfOperation"}

// TestThreeNodes runs three `pkid serve` processes on one database, as
// they run behind a load balancer (issue 6: several nodes), and spreads
// load over them for clusterLoad: issuance round-robin from several
// clients, revocations on a random node one after another, OCSP queries
// (GET and POST) round-robin on every node, and a poller fetching every
// node's CRL. It checks what a CA sharing nothing but Postgres must keep:
//
//   - every certificate a client received is in the database, byte for
//     byte, and no serial was handed out twice (the client log against the
//     rows, as every fault test does);
//   - after each revocation answers, every node's responder says revoked
//     within 1 s (a poll sent later than that which says good fails the
//     test), and no OCSP query sent more than 1 s after a revocation
//     answered gets good from any node;
//   - CRL numbers only grow: each node serves them in increasing order, one
//     number is one CRL whichever node serves it, a higher number never has
//     an earlier thisUpdate, and the database's CRLs agree; at the end
//     every node serves the newest CRL, which lists every revoked serial;
//   - at the end every node answers the same status for every serial.
//
// The figures (rates, spread over nodes, revocation lag) are logged with
// -v and quoted in docs/SCALING.md. The nodes run with the smallest pool
// PKID_DB_MAX_CONNS allows, and the test checks they stay within it.
func TestThreeNodes(t *testing.T) {
	url := testdb.New(t)
	// The smallest pool a node may have: many nodes on one Postgres must
	// fit its max_connections.
	env := testbin.Env(url, passphrase, "PKID_PUBLIC_URL="+publicURL, fmt.Sprintf("PKID_DB_MAX_CONNS=%d", config.MinDBConns))
	admin := testbin.MustSetup(t, env)
	var nodes []*testbin.Node
	for _, name := range []string{"node A", "node B", "node C"} {
		nodes = append(nodes, testbin.LaunchNode(t, name, env, testbin.FreeAddr(t)))
	}
	for _, n := range nodes {
		if err := n.WaitReady(30 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
	c := newClient()
	// /readyz says the database answers and the CA certificates are valid;
	// the CRL cache fills a moment later, once the node's jobs have read
	// (or signed) the first CRL. A load balancer's OCSP and CRL pool waits
	// for that too (docs/SCALING.md), and so does the test.
	ready := time.Now()
	for _, n := range nodes {
		for {
			r, err := send(c, "GET", n.URL+"/crl", "", nil)
			if err == nil && r.status == http.StatusOK {
				break
			}
			if time.Since(ready) > 30*time.Second {
				t.Fatalf("%s: no CRL served 30 s after /readyz: %d %v", n.Name, r.status, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Logf("%s: first CRL served %s after the nodes were ready", n.Name, time.Since(ready).Round(time.Millisecond))
	}
	cl := &cluster{
		t: t, nodes: nodes, token: newAccount(t, c, nodes[0].URL, admin),
		issuer: fetchIssuer(t, c, nodes[0].URL), revokedAt: map[string]time.Time{},
		crlSeen: make([][]crlSeen, len(nodes)),
	}

	ctx, stop := context.WithTimeout(context.Background(), clusterLoad)
	defer stop()
	start := time.Now()
	var wg sync.WaitGroup
	for range clusterIssuers {
		wg.Go(func() { cl.issueLoop(ctx) })
	}
	for w := range clusterOCSPClients {
		wg.Go(func() { cl.ocspLoop(ctx, rand.New(rand.NewPCG(uint64(w), 1))) })
	}
	wg.Go(func() { cl.revokeLoop(ctx, rand.New(rand.NewPCG(7, 7))) })
	wg.Go(func() { cl.crlLoop(ctx) })
	wg.Wait()
	elapsed := time.Since(start)
	// Each node: its pool, within the cap, and one LISTEN connection per
	// notification channel, named apart.
	pool := queryInt(t, url, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'pkid'`)
	listen := queryInt(t, url, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1`, "pkid"+store.ListenSuffix)
	if limit := len(nodes) * config.MinDBConns; pool > limit {
		t.Errorf("the nodes' pools hold %d connections to the database, want at most %d", pool, limit)
	}
	if listen < 2*len(nodes) {
		t.Errorf("the nodes hold %d LISTEN connections, want at least two each (OCSP and CRL channels)", listen)
	}
	t.Logf("database connections of the three nodes after the load: %d pooled (capped at %d a node), %d listening", pool, config.MinDBConns, listen)

	// Enough happened for the checks to mean something.
	outcomes := cl.l.all()
	issued, revoked := count(outcomes, "issue"), count(outcomes, "revoke")
	if issued < 30 || revoked < 10 || cl.ocspAnswers.Load() < 100 {
		t.Fatalf("too little load to judge: %d issued, %d revoked, %d OCSP answers", issued, revoked, cl.ocspAnswers.Load())
	}
	cl.checkCRLs(c, url)
	cl.checkAgreement(c)
	tl := compare(t, &cl.l, readRows(t, url))
	if tl.transport > 0 || len(tl.pending) > 0 || tl.unanswered > 0 {
		t.Errorf("with nothing broken: %d issuances without an answer, %d pending rows, %d rows no client received",
			tl.transport, len(tl.pending), tl.unanswered)
	}
	cl.report(outcomes, elapsed)
}

// cluster is the state of TestThreeNodes: the nodes, the client log and
// what the clients have seen.
type cluster struct {
	t      *testing.T
	nodes  []*testbin.Node
	token  string
	issuer *x509.Certificate
	l      ledger
	turn   atomic.Uint64 // round-robin over nodes

	mu        sync.Mutex
	serials   []string             // every certificate received
	good      []string             // received and not yet chosen for revocation
	revokedAt map[string]time.Time // serial → when its revocation answered 200
	lags      []time.Duration      // revocation answered → a node said revoked
	fromSent  []time.Duration      // revocation sent → the slowest node said revoked
	crlSeen   [][]crlSeen          // by node, in the order fetched

	ocspAnswers atomic.Int64
}

// crlSeen is one CRL as a node served it.
type crlSeen struct {
	number     int64
	thisUpdate time.Time
	sum        [32]byte
}

func (cl *cluster) next() *testbin.Node {
	return cl.nodes[cl.turn.Add(1)%uint64(len(cl.nodes))]
}

// issueLoop issues certificates round-robin until ctx ends.
func (cl *cluster) issueLoop(ctx context.Context) {
	c := newClient()
	for ctx.Err() == nil {
		o := cl.l.issue(c, cl.next().URL, cl.token)
		if o.status != http.StatusCreated || o.err != nil {
			cl.t.Errorf("issue on %s: %d %v %v", o.base, o.status, o.err, o.problem)
			continue
		}
		cl.mu.Lock()
		cl.serials = append(cl.serials, o.serial)
		cl.good = append(cl.good, o.serial)
		cl.mu.Unlock()
	}
}

// ocspLoop asks the nodes, round-robin, about random certificates received
// so far, alternating GET and POST. An answer other than good or revoked
// fails the test, and so does good for a query sent more than maxVisibility
// after the certificate's revocation answered.
func (cl *cluster) ocspLoop(ctx context.Context, rng *rand.Rand) {
	c := newClient()
	for i := 0; ctx.Err() == nil; i++ {
		cl.mu.Lock()
		var serial string
		if len(cl.serials) > 0 {
			serial = cl.serials[rng.IntN(len(cl.serials))]
		}
		cl.mu.Unlock()
		if serial == "" {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		n := cl.next()
		sent := time.Now()
		st, err := ocspStatus(c, n.URL, cl.issuer, serial, i%2 == 0)
		switch {
		case err != nil:
			cl.t.Errorf("%s: OCSP for %s: %v", n.Name, serial, err)
			continue
		case st != "good" && st != "revoked":
			cl.t.Errorf("%s: OCSP for %s, a certificate a client received: %s", n.Name, serial, st)
			continue
		}
		cl.ocspAnswers.Add(1)
		if st == "good" {
			cl.mu.Lock()
			at, revoked := cl.revokedAt[serial]
			cl.mu.Unlock()
			if revoked && sent.After(at.Add(maxVisibility)) {
				cl.t.Errorf("%s: OCSP good for %s, asked %s after its revocation answered", n.Name, serial, sent.Sub(at))
			}
		}
	}
}

// revokeLoop revokes a random certificate on a random node, waits until
// every node's responder says revoked (at most maxVisibility after the
// revocation answered), and does it again until ctx ends.
func (cl *cluster) revokeLoop(ctx context.Context, rng *rand.Rand) {
	c := newClient()
	for ctx.Err() == nil {
		cl.mu.Lock()
		var serial string
		if len(cl.good) > 0 {
			i := rng.IntN(len(cl.good))
			serial = cl.good[i]
			cl.good = slices.Delete(cl.good, i, i+1)
		}
		cl.mu.Unlock()
		if serial == "" {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		n := cl.nodes[rng.IntN(len(cl.nodes))]
		sent := time.Now()
		o := cl.l.revoke(c, n.URL, cl.token, serial, reasons[rng.IntN(len(reasons))])
		if o.status != http.StatusOK || o.err != nil {
			cl.t.Errorf("revoke %s on %s: %d %v %v", serial, n.Name, o.status, o.err, o.problem)
			continue
		}
		cl.mu.Lock()
		cl.revokedAt[serial] = o.at
		cl.mu.Unlock()
		lags := cl.waitRevoked(serial, o.at)
		cl.mu.Lock()
		cl.lags = append(cl.lags, lags...)
		if len(lags) > 0 {
			cl.fromSent = append(cl.fromSent, slices.Max(lags)+o.at.Sub(sent))
		}
		cl.mu.Unlock()
		time.Sleep(50 * time.Millisecond)
	}
}

// waitRevoked polls every node's responder at once until it says revoked
// for serial, and returns how long after answered each one first did. A
// node that still says good to a query sent after answered+maxVisibility
// fails the test.
func (cl *cluster) waitRevoked(serial string, answered time.Time) []time.Duration {
	lags := make([]time.Duration, len(cl.nodes))
	ok := make([]bool, len(cl.nodes))
	var wg sync.WaitGroup
	for i, n := range cl.nodes {
		wg.Go(func() {
			c := newClient()
			for q := 0; ; q++ {
				sent := time.Now()
				st, err := ocspStatus(c, n.URL, cl.issuer, serial, q%2 == 0)
				switch {
				case err != nil:
					cl.t.Errorf("%s: OCSP for %s after its revocation: %v", n.Name, serial, err)
					return
				case st == "revoked":
					lags[i], ok[i] = time.Since(answered), true
					return
				case st != "good":
					cl.t.Errorf("%s: OCSP for %s after its revocation: %s", n.Name, serial, st)
					return
				case sent.After(answered.Add(maxVisibility)):
					cl.t.Errorf("%s: OCSP still good for %s %s after its revocation answered, want revoked within %s",
						n.Name, serial, sent.Sub(answered).Round(time.Millisecond), maxVisibility)
					return
				}
				time.Sleep(2 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	var out []time.Duration
	for i := range lags {
		if ok[i] {
			out = append(out, lags[i])
		}
	}
	return out
}

// crlLoop fetches every node's CRL in turn until ctx ends, and checks as
// it goes that each node's CRL numbers never go back.
func (cl *cluster) crlLoop(ctx context.Context) {
	c := newClient()
	for ctx.Err() == nil {
		for i, n := range cl.nodes {
			s, ok := cl.fetchCRL(c, n)
			if !ok {
				continue
			}
			cl.mu.Lock()
			seen := cl.crlSeen[i]
			if len(seen) > 0 && s.number < seen[len(seen)-1].number {
				cl.t.Errorf("%s served CRL %d after CRL %d", n.Name, s.number, seen[len(seen)-1].number)
			}
			if len(seen) == 0 || seen[len(seen)-1].sum != s.sum {
				cl.crlSeen[i] = append(seen, s)
			}
			cl.mu.Unlock()
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// fetchCRL fetches n's CRL and checks its signature.
func (cl *cluster) fetchCRL(c *http.Client, n *testbin.Node) (crlSeen, bool) {
	r, err := send(c, "GET", n.URL+"/crl", "", nil)
	if err != nil || r.status != http.StatusOK {
		cl.t.Errorf("%s: GET /crl: %d %v", n.Name, r.status, err)
		return crlSeen{}, false
	}
	crl, err := x509.ParseRevocationList(r.body)
	if err == nil {
		err = crl.CheckSignatureFrom(cl.issuer)
	}
	if err != nil {
		cl.t.Errorf("%s: /crl: %v", n.Name, err)
		return crlSeen{}, false
	}
	return crlSeen{number: crl.Number.Int64(), thisUpdate: crl.ThisUpdate, sum: sha256.Sum256(r.body)}, true
}

// checkCRLs checks what the CRL poller saw against itself and the
// database, then waits until every node serves the newest CRL and it lists
// every revoked certificate.
func (cl *cluster) checkCRLs(c *http.Client, url string) {
	t := cl.t
	byNumber := map[int64]crlSeen{}
	for i, seen := range cl.crlSeen {
		for _, s := range seen {
			if prev, ok := byNumber[s.number]; ok && prev.sum != s.sum {
				t.Errorf("CRL number %d names two different CRLs (one served by %s)", s.number, cl.nodes[i].Name)
			}
			byNumber[s.number] = s
		}
	}
	numbers := slices.Sorted(maps.Keys(byNumber))
	for i := 1; i < len(numbers); i++ {
		if byNumber[numbers[i]].thisUpdate.Before(byNumber[numbers[i-1]].thisUpdate) {
			t.Errorf("CRL %d has an earlier thisUpdate than CRL %d", numbers[i], numbers[i-1])
		}
	}
	if len(numbers) < 2 {
		t.Errorf("the nodes served %d distinct CRLs during the load, want several: the revocations should have made new ones", len(numbers))
	}
	t.Logf("CRLs: %d distinct numbers seen over the three nodes during the load (%v)", len(numbers), numbers)

	// The database's CRLs: one sequence, so per issuer the numbers grow
	// in the order the CRLs were made, and thisUpdate never goes back.
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT issuer_id, number, this_update FROM crls ORDER BY issuer_id, created_at, number`)
	if err != nil {
		t.Fatal(err)
	}
	type dbCRL struct {
		issuer string
		number int64
		at     time.Time
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (dbCRL, error) {
		var x dbCRL
		err := r.Scan(&x.issuer, &x.number, &x.at)
		return x, err
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(list); i++ {
		p, x := list[i-1], list[i]
		if p.issuer == x.issuer && (x.number <= p.number || x.at.Before(p.at)) {
			t.Errorf("database CRLs of %s: %d (thisUpdate %s) made after %d (thisUpdate %s)", x.issuer, x.number, x.at, p.number, p.at)
		}
	}

	// The end state: the newest CRL everywhere, listing every revocation.
	cl.mu.Lock()
	revoked := make([]string, 0, len(cl.revokedAt))
	for s := range cl.revokedAt {
		revoked = append(revoked, s)
	}
	cl.mu.Unlock()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var ders [][]byte
		for _, n := range cl.nodes {
			if r, err := send(c, "GET", n.URL+"/crl", "", nil); err == nil && r.status == http.StatusOK {
				ders = append(ders, r.body)
			}
		}
		if len(ders) == len(cl.nodes) && slices.IndexFunc(ders, func(d []byte) bool { return string(d) != string(ders[0]) }) < 0 {
			if missing := unlisted(t, ders[0], revoked); missing == 0 {
				return
			} else if time.Now().After(deadline) {
				t.Errorf("the nodes' common CRL lacks %d of the %d revoked certificates 20 s after the load", missing, len(revoked))
				return
			}
		} else if time.Now().After(deadline) {
			t.Errorf("the nodes do not serve the same CRL 20 s after the load")
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// unlisted returns how many of serials the CRL der does not list.
func unlisted(t *testing.T, der []byte, serials []string) int {
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, e := range crl.RevokedCertificateEntries {
		listed[e.SerialNumber.Text(16)] = true
	}
	missing := 0
	for _, s := range serials {
		if !listed[s] {
			missing++
		}
	}
	return missing
}

// checkAgreement asks every node about every certificate received: all
// must answer revoked for the revoked ones and good for the others.
func (cl *cluster) checkAgreement(c *http.Client) {
	cl.mu.Lock()
	serials := slices.Clone(cl.serials)
	cl.mu.Unlock()
	for _, s := range serials {
		want := "good"
		if _, ok := cl.revokedAt[s]; ok {
			want = "revoked"
		}
		for _, n := range cl.nodes {
			if got, err := ocspStatus(c, n.URL, cl.issuer, s, false); err != nil || got != want {
				cl.t.Errorf("after the load, %s answers %q (%v) for %s, want %s", n.Name, got, err, s, want)
			}
		}
	}
}

// report logs the figures of the run.
func (cl *cluster) report(outcomes []outcome, elapsed time.Duration) {
	t := cl.t
	perNode := map[string]map[string]int{}
	for _, o := range outcomes {
		if perNode[o.base] == nil {
			perNode[o.base] = map[string]int{}
		}
		perNode[o.base][o.op]++
	}
	for _, n := range cl.nodes {
		t.Logf("%s: %d issued, %d revoked", n.Name, perNode[n.URL]["issue"], perNode[n.URL]["revoke"])
		if perNode[n.URL]["issue"] == 0 {
			t.Errorf("%s issued nothing: the load was not spread", n.Name)
		}
	}
	secs := elapsed.Seconds()
	t.Logf("three nodes, %s of load: %d certificates issued (%.0f/s with %d clients), %d revocations, %d OCSP answers (%.0f/s with %d clients, besides the revocation polls)",
		elapsed.Round(time.Millisecond), count(outcomes, "issue"), float64(count(outcomes, "issue"))/secs, clusterIssuers,
		count(outcomes, "revoke"), cl.ocspAnswers.Load(), float64(cl.ocspAnswers.Load())/secs, clusterOCSPClients)
	if len(cl.lags) > 0 {
		s := slices.Sorted(slices.Values(cl.lags))
		t.Logf("revocation answered → revoked on a node (%d node-observations): p50 %s, p99 %s, max %s; request sent → revoked on every node: max %s",
			len(s), s[len(s)/2].Round(time.Microsecond), s[len(s)*99/100].Round(time.Microsecond),
			s[len(s)-1].Round(time.Microsecond), slices.Max(cl.fromSent).Round(time.Microsecond))
	}
}

// count returns how many outcomes of op were answered 2xx.
func count(outcomes []outcome, op string) int {
	n := 0
	for _, o := range outcomes {
		if o.op == op && o.status/100 == 2 {
			n++
		}
	}
	return n
}
