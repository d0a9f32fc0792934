package main

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/pkid/pkid/internal/benchkit"
	"github.com/pkid/pkid/internal/testbin"
)

// loader drives the nodes and remembers the serials it was given, which
// the OCSP load asks about.
type loader struct {
	token  string
	csrs   [][]byte // request bodies
	issuer *x509.Certificate

	mu      sync.Mutex
	serials []string
}

// phase is what one node count delivered.
type phase struct {
	nodes       int
	load        float64 // 1-minute load average at the start
	issue, ocsp result
	issueCPU    time.Duration // CPU time of the pkid processes per certificate
	ocspCPU     time.Duration // … per OCSP answer
	backends    int
}

// result is one measurement.
type result struct {
	rate     float64
	p50, p99 time.Duration
	errors   int64
}

// ocspSample is how many of the issued serials the OCSP load asks about.
const ocspSample = 10000

// warmUp precedes each measurement: connections, statement caches, pools.
const warmUp = time.Second

// measure drives issuance, then OCSP, over nodes.
func (l *loader) measure(nodes []*testbin.Node, issueClients, ocspClients int, d time.Duration) (phase, error) {
	p := phase{nodes: len(nodes), load: loadAverage()}
	rr := &roundRobin{nodes: nodes}

	client := newClient(issueClients)
	issue := func(i int) error { return l.issueOne(client, rr.next(), i) }
	drive(issueClients, warmUp, issue)
	cpu0 := cpuTime(nodes)
	p.issue = drive(issueClients, d, issue)
	if p.issue.rate == 0 {
		return p, fmt.Errorf("%d nodes: no certificate was issued", len(nodes))
	}
	p.issueCPU = (cpuTime(nodes) - cpu0) / time.Duration(p.issue.rate*d.Seconds())

	paths, err := l.ocspPaths()
	if err != nil {
		return p, err
	}
	client = newClient(ocspClients)
	for _, n := range nodes {
		if err := l.checkGood(client, n.URL+paths[0]); err != nil {
			return p, fmt.Errorf("%s: %w", n.Name, err)
		}
	}
	ask := func(i int) error { return ocspOne(client, rr.next()+paths[i%len(paths)]) }
	drive(ocspClients, warmUp, ask)
	cpu0 = cpuTime(nodes)
	p.ocsp = drive(ocspClients, d, ask)
	if p.ocsp.rate == 0 {
		return p, fmt.Errorf("%d nodes: no OCSP answer", len(nodes))
	}
	p.ocspCPU = (cpuTime(nodes) - cpu0) / time.Duration(p.ocsp.rate*d.Seconds())
	return p, nil
}

// roundRobin spreads requests over nodes, one request at a time.
type roundRobin struct {
	nodes []*testbin.Node
	turn  atomic.Uint64
}

func (r *roundRobin) next() string {
	return r.nodes[r.turn.Add(1)%uint64(len(r.nodes))].URL
}

func newClient(conns int) *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns}}
}

// drive runs clients goroutines calling do with increasing indexes for d,
// and returns the rate and latencies of the calls that succeeded.
func drive(clients int, d time.Duration, do func(i int) error) result {
	var mu sync.Mutex
	var all []time.Duration
	var errs atomic.Int64
	var firstErr atomic.Value
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for w := range clients {
		wg.Go(func() {
			var lat []time.Duration
			for i := w; time.Now().Before(deadline); i += clients {
				t0 := time.Now()
				if err := do(i); err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		})
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		fmt.Fprintf(os.Stderr, "bench/nodes: %d failed requests, the first: %v\n", errs.Load(), err)
	}
	if len(all) == 0 {
		return result{errors: errs.Load()}
	}
	slices.Sort(all)
	return result{
		rate:   float64(len(all)) / d.Seconds(),
		p50:    all[len(all)/2],
		p99:    all[len(all)*99/100],
		errors: errs.Load(),
	}
}

// issueOne posts CSR i to base and keeps the serial.
func (l *loader) issueOne(c *http.Client, base string, i int) error {
	req, _ := http.NewRequest("POST", base+"/api/v1/certificates", bytes.NewReader(l.csrs[i%len(l.csrs)]))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+l.token)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("issue: %d: %s", resp.StatusCode, body)
	}
	var m struct{ Serial string }
	if err := json.Unmarshal(body, &m); err != nil || m.Serial == "" {
		return fmt.Errorf("issue: a 201 without a serial: %s", body)
	}
	l.mu.Lock()
	l.serials = append(l.serials, m.Serial)
	l.mu.Unlock()
	return nil
}

// ocspPaths returns GET paths (/ocsp/{base64 request}) for the newest
// ocspSample serials issued.
func (l *loader) ocspPaths() ([]string, error) {
	l.mu.Lock()
	serials := slices.Clone(l.serials[max(0, len(l.serials)-ocspSample):])
	l.mu.Unlock()
	paths := make([]string, len(serials))
	for i, s := range serials {
		n, ok := new(big.Int).SetString(s, 16)
		if !ok {
			return nil, fmt.Errorf("serial %q is not hex", s)
		}
		req, err := ocsp.CreateRequest(&x509.Certificate{SerialNumber: n}, l.issuer, &ocsp.RequestOptions{Hash: crypto.SHA1})
		if err != nil {
			return nil, err
		}
		paths[i] = "/ocsp/" + url.PathEscape(base64.StdEncoding.EncodeToString(req))
	}
	if len(paths) == 0 {
		return nil, errors.New("no serial to ask about")
	}
	return paths, nil
}

// checkGood makes sure that what the OCSP load measures is a signed good
// answer, not an error.
func (l *loader) checkGood(c *http.Client, u string) error {
	resp, err := c.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	der, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	r, err := ocsp.ParseResponse(der, l.issuer)
	if err != nil {
		return fmt.Errorf("OCSP: %w", err)
	}
	if r.Status != ocsp.Good {
		return fmt.Errorf("OCSP: status %d for a certificate just issued, want good", r.Status)
	}
	return nil
}

// ocspOne makes one OCSP GET and reads the answer.
func ocspOne(c *http.Client, u string) error {
	resp, err := c.Get(u)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("OCSP: %d", resp.StatusCode)
	}
	return nil
}

// benchAccount creates an Enterprise account through the admin API, lifts
// its issuance quotas (a load test issues thousands an hour, as an
// operator would allow for one), and returns a token for it.
func benchAccount(base, admin string) (string, error) {
	c := newClient(1)
	var acct struct{ ID string }
	if err := call(c, "POST", base+"/admin/api/accounts", admin, map[string]any{"name": "Bench Nodes", "plan": "enterprise"}, http.StatusCreated, &acct); err != nil {
		return "", err
	}
	var pol map[string]any
	policy := base + "/admin/api/accounts/" + acct.ID + "/policy"
	if err := call(c, "GET", policy, admin, nil, http.StatusOK, &pol); err != nil {
		return "", err
	}
	pol["max_issuances_per_hour"], pol["max_active_certificates"] = 0, 0
	if err := call(c, "PUT", policy, admin, pol, http.StatusOK, nil); err != nil {
		return "", err
	}
	var tok struct{ Token string }
	err := call(c, "POST", base+"/admin/api/accounts/"+acct.ID+"/tokens", admin, map[string]any{"name": "bench", "ttl_hours": 2}, http.StatusCreated, &tok)
	return tok.Token, err
}

// call sends a JSON request and decodes a JSON answer of status want into
// out (unless out is nil).
func call(c *http.Client, method, u, token string, body any, want int, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: %d, want %d: %s", method, u, resp.StatusCode, want, b)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(b, out)
}

// requestBodies returns n issuance request bodies, each a CSR for a fresh
// P-256 key.
func requestBodies(n int) ([][]byte, error) {
	csrs, err := benchkit.CSRs(n, "nodes.bench")
	if err != nil {
		return nil, err
	}
	out := make([][]byte, n)
	for i, csr := range csrs {
		if out[i], err = json.Marshal(map[string]string{"csr": csr}); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// fetchIssuer returns the issuing intermediate that base serves.
func fetchIssuer(base string) (*x509.Certificate, error) {
	resp, err := http.Get(base + "/ca/issuer.cer")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	der, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// clockTicks is Linux's USER_HZ, the unit of /proc/PID/stat's CPU times.
const clockTicks = 100

// cpuTime returns the user and system CPU time the nodes' processes have
// used so far (0 for a process /proc cannot tell about).
func cpuTime(nodes []*testbin.Node) time.Duration {
	var total time.Duration
	for _, n := range nodes {
		if b, err := os.ReadFile("/proc/" + strconv.Itoa(n.Pid()) + "/stat"); err == nil {
			d, _ := statCPU(b)
			total += d
		}
	}
	return total
}

// statCPU returns utime + stime of a /proc/PID/stat line. The command name,
// field 2, is in parentheses and may hold spaces and parentheses itself, so
// the fields are counted from the last ')': state is field 3, utime 14,
// stime 15.
func statCPU(stat []byte) (time.Duration, bool) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return 0, false
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(u+s) * time.Second / clockTicks, true
}

// loadAverage returns the 1-minute load average (0 where unknown).
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}
