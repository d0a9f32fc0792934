package nginx

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pkid/pkid/internal/testbin"
	"github.com/pkid/pkid/internal/testdb"
)

func TestMain(m *testing.M) { testbin.Main(m) }

// nginxBin is where Debian's nginx package puts nginx (and where CI's
// .ci/run installs it).
const nginxBin = "/usr/sbin/nginx"

// deployDir is the repository's deploy/ directory, seen from this package.
const deployDir = "../../deploy"

// ---------------------------------------------------------------- pkid

// pkid is a running `pkid serve` on a fresh database, set up the way an
// operator does it: migrate, init, an administrator and its token.
type pkid struct {
	bin        string
	url        string // plain-HTTP base URL, also PKID_PUBLIC_URL
	env        []string
	adminToken string
	stop       func() // SIGTERM and wait; idempotent
}

// startPKID runs pkid (built once per test binary by internal/testbin) on a
// fresh database until the test ends.
func startPKID(t *testing.T) *pkid {
	t.Helper()
	p := &pkid{bin: testbin.Binary(t, "pkid")}
	p.env = testbin.Env(testdb.Missing(t), "nginx test passphrase")
	p.adminToken = testbin.MustSetup(t, p.env)
	addr := testbin.FreeAddr(t)
	p.url = "http://" + addr
	n := testbin.LaunchNode(t, "pkid serve", append(p.env, "PKID_PUBLIC_URL="+p.url), addr)
	if err := n.WaitReady(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	p.stop = func() { _ = n.Stop(10 * time.Second) }
	return p
}

// run runs a pkid command to completion and returns its standard output.
func (p *pkid) run(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	return testbin.MustRun(t, p.bin, p.env, stdin, args...)
}

// api sends a JSON request to pkid with a bearer token and decodes the
// answer, which must have status want.
func (p *pkid) api(t *testing.T, method, path, token, body string, want int) map[string]any {
	t.Helper()
	req, err := http.NewRequest(method, p.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s %s: %d, want %d: %s", method, path, resp.StatusCode, want, b)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s %s: %v: %s", method, path, err, b)
	}
	return m
}

// get returns the body of a public pkid route.
func (p *pkid) get(t *testing.T, path string) []byte {
	t.Helper()
	resp, err := http.Get(p.url + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %v %s: %s", path, err, resp.Status, b)
	}
	return b
}

// enterpriseAccount creates an Enterprise account and returns a token for it.
func (p *pkid) enterpriseAccount(t *testing.T, name string) string {
	t.Helper()
	acct := p.api(t, "POST", "/admin/api/accounts", p.adminToken, `{"name":"`+name+`","plan":"enterprise"}`, 201)
	tok := p.api(t, "POST", "/admin/api/accounts/"+acct["id"].(string)+"/tokens", p.adminToken, `{"name":"nginx test","ttl_hours":1}`, 201)
	return tok["token"].(string)
}

// clientCert is a client certificate and its key, as files and for Go's TLS.
type clientCert struct {
	serial string // lowercase hex, as pkid's API writes it
	cert   tls.Certificate
}

// issue makes a P-256 key and a CSR with openssl, as a customer would, and
// has pkid certify it for the account of token.
func (p *pkid) issue(t *testing.T, token, dir, name string) *clientCert {
	t.Helper()
	key, csr := filepath.Join(dir, name+".key"), filepath.Join(dir, name+".csr")
	openssl(t, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key)
	openssl(t, "req", "-new", "-key", key, "-subj", "/CN="+name+".nginx.test",
		"-addext", "subjectAltName=DNS:"+name+".nginx.test", "-out", csr)
	csrPEM, err := os.ReadFile(csr)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]string{"csr": string(csrPEM)})
	m := p.api(t, "POST", "/api/v1/certificates", token, string(body), 201)
	return &clientCert{serial: m["serial"].(string), cert: keyPair(t, []byte(m["certificate"].(string)), key)}
}

// revoke revokes a certificate through the account API; pkid answers once
// its own OCSP responder says "revoked".
func (p *pkid) revoke(t *testing.T, token string, c *clientCert) {
	t.Helper()
	m := p.api(t, "POST", "/api/v1/certificates/"+c.serial+"/revoke", token, `{"reason":"keyCompromise"}`, 200)
	if m["status"] != "revoked" {
		t.Fatalf("revoke %s: status %v", c.serial, m["status"])
	}
}

// ---------------------------------------------------------------- openssl

// openssl runs the openssl command line and fails the test if it fails.
func openssl(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("openssl", args...).CombinedOutput(); err != nil {
		t.Fatalf("openssl %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// opensslCA is a throwaway CA made with openssl: for nginx's server
// certificate (nginx is a server like any other; pkid certifies clients
// only) and for client certificates nginx must refuse.
type opensslCA struct {
	dir, name, certFile, keyFile string
}

// newOpensslCA makes a self-signed CA with subject subj, e.g. "/CN=test CA".
func newOpensslCA(t *testing.T, dir, name, subj string) *opensslCA {
	t.Helper()
	ca := &opensslCA{dir: dir, name: name, certFile: filepath.Join(dir, name+".pem"), keyFile: filepath.Join(dir, name+".key")}
	openssl(t, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
		"-keyout", ca.keyFile, "-out", ca.certFile, "-subj", subj, "-days", "2",
		"-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
	return ca
}

// issue certifies a new P-256 key with subject subj and the X.509v3
// extensions ext (openssl -extfile syntax) and returns the files.
func (ca *opensslCA) issue(t *testing.T, name, subj, ext string) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile = filepath.Join(ca.dir, name+".pem"), filepath.Join(ca.dir, name+".key")
	csr, extFile := filepath.Join(ca.dir, name+".csr"), filepath.Join(ca.dir, name+".ext")
	if err := os.WriteFile(extFile, []byte(ext), 0o600); err != nil {
		t.Fatal(err)
	}
	openssl(t, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
		"-keyout", keyFile, "-out", csr, "-subj", subj)
	openssl(t, "x509", "-req", "-in", csr, "-CA", ca.certFile, "-CAkey", ca.keyFile, "-CAcreateserial",
		"-days", "1", "-extfile", extFile, "-out", certFile)
	return certFile, keyFile
}

// keyPair loads a certificate (PEM, possibly followed by its chain) and a
// key file made by openssl for Go's TLS client.
func keyPair(t *testing.T, certPEM []byte, keyFile string) tls.Certificate {
	t.Helper()
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// ---------------------------------------------------------------- upstream

// upstream is the application behind nginx: it answers 200 and records
// the headers each request path arrived with.
type upstream struct {
	srv  *httptest.Server
	mu   sync.Mutex
	seen map[string]http.Header
}

func newUpstream(t *testing.T) *upstream {
	u := &upstream{seen: map[string]http.Header{}}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.seen[r.URL.Path] = r.Header.Clone()
		u.mu.Unlock()
		_, _ = io.WriteString(w, "upstream ok")
	}))
	t.Cleanup(u.srv.Close)
	return u
}

// addr is the upstream's host:port, for nginx's upstream block.
func (u *upstream) addr() string { return strings.TrimPrefix(u.srv.URL, "http://") }

// headers returns what the request for path arrived with, nil if it never
// arrived.
func (u *upstream) headers(path string) http.Header {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.seen[path]
}

// ---------------------------------------------------------------- nginx

// edge is an nginx running one of the recipes of deploy/nginx.
type edge struct {
	name      string
	dir       string // the -p prefix: configuration, pid, logs, temp files
	conf      string
	addr      string // 127.0.0.1:port
	accessLog string
	errorLog  string
	serverCA  *x509.CertPool
	master    int // the nginx master process's pid
	requests  int
	mu        sync.Mutex
}

// oneWorker fails while the nginx master has more than one child: after a
// reload the old worker finishes gracefully, and until it exits it may still
// accept a connection and answer it with the old configuration (its CRLs,
// its CA bundle). The configuration runs one worker and no cache processes.
func (e *edge) oneWorker() error {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return err
	}
	var children []string
	for _, d := range entries {
		if _, err := strconv.Atoi(d.Name()); err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", d.Name(), "stat"))
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid ...: comm may hold spaces, so read after
		// the last parenthesis.
		fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(fields) > 1 && fields[1] == strconv.Itoa(e.master) {
			children = append(children, d.Name())
		}
	}
	if len(children) != 1 {
		return fmt.Errorf("nginx %s master %d has %d worker processes %v, want 1", e.name, e.master, len(children), children)
	}
	return nil
}

// render replaces the placeholders of a deploy template; every one must
// be given.
func render(t *testing.T, file string, vars map[string]string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	pairs := make([]string, 0, 2*len(vars))
	for k, v := range vars {
		pairs = append(pairs, "{{"+k+"}}", v)
	}
	out := strings.NewReplacer(pairs...).Replace(string(b))
	if left := placeholderRE.FindAllString(out, -1); len(left) > 0 {
		t.Fatalf("%s: placeholders not rendered: %v", file, left)
	}
	return out
}

var placeholderRE = regexp.MustCompile(`\{\{[A-Z_]+\}\}`)

// startEdge renders deploy/nginx/<recipe>.conf with vars (LISTEN and
// ACCESS_LOG are filled in here), lets edit change the result (for the
// variants the README discusses), wraps it in a minimal nginx.conf the way
// Debian's includes conf.d/*.conf, and runs nginx in the foreground with a
// master process, so that `nginx -s reload` works as in production. nginx
// stops when the test ends.
func startEdge(t *testing.T, name, recipe string, vars map[string]string, serverCA *x509.CertPool, edit func(string) string) *edge {
	t.Helper()
	e := &edge{name: name, dir: t.TempDir(), addr: freeAddr(t), serverCA: serverCA}
	e.conf = filepath.Join(e.dir, "nginx.conf")
	e.accessLog, e.errorLog = filepath.Join(e.dir, "access.log"), filepath.Join(e.dir, "error.log")
	all := map[string]string{"LISTEN": e.addr, "ACCESS_LOG": e.accessLog}
	for k, v := range vars {
		all[k] = v
	}
	site := render(t, filepath.Join(deployDir, "nginx", recipe+".conf"), all)
	if edit != nil {
		site = edit(site)
	}
	writeFile(t, filepath.Join(e.dir, "pkid-edge.conf"), site)
	// Workers run as root when the test does: the temporary directories
	// are private to root, and this nginx serves only this test.
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;\n"
	}
	writeFile(t, e.conf, fmt.Sprintf(`%sdaemon off;
master_process on;
worker_processes 1;
pid %[2]s/nginx.pid;
error_log %[3]s info;
events { worker_connections 128; }
http {
    client_body_temp_path %[2]s/client_body;
    proxy_temp_path %[2]s/proxy;
    fastcgi_temp_path %[2]s/fastcgi;
    uwsgi_temp_path %[2]s/uwsgi;
    scgi_temp_path %[2]s/scgi;
    include %[2]s/pkid-edge.conf;
}
`, user, e.dir, e.errorLog))

	cmd := exec.Command(nginxBin, "-p", e.dir, "-c", e.conf)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	e.master = cmd.Process.Pid
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			e.dump(t, out.String())
		}
	})
	waitFor(t, "nginx "+name+" listening", 10*time.Second, func() error {
		select {
		case <-done:
			e.dump(t, out.String())
			t.Fatalf("nginx %s exited at start", name)
		default:
		}
		c, err := net.DialTimeout("tcp", e.addr, time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	})
	return e
}

// dump logs what nginx said, for a failed test.
func (e *edge) dump(t *testing.T, stdout string) {
	errLog, _ := os.ReadFile(e.errorLog)
	accLog, _ := os.ReadFile(e.accessLog)
	t.Logf("nginx %s output:\n%s\nerror.log:\n%s\naccess.log:\n%s", e.name, stdout, errLog, accLog)
}

// reloadCommand is `nginx -s reload` for this nginx, for NGINX_RELOAD.
func (e *edge) reloadCommand() string {
	return nginxBin + " -p " + e.dir + " -c " + e.conf + " -s reload"
}

// outcome is what became of one request through nginx.
type outcome struct {
	path    string
	status  int    // 0 when the TLS handshake or the request failed
	body    string // nginx's or the upstream's
	err     error
	verify  string // $ssl_client_verify from the access log, "" if not logged
	resumed bool   // the TLS session was resumed
}

func (o outcome) String() string {
	if o.err != nil {
		return fmt.Sprintf("GET %s: %v", o.path, o.err)
	}
	return fmt.Sprintf("GET %s: %d %q, client_verify=%q, resumed=%v", o.path, o.status, summary(o.body), o.verify, o.resumed)
}

// summary shortens a body for a message: the title of an nginx error page,
// or the first line.
func summary(body string) string {
	if _, rest, ok := strings.Cut(body, "<title>"); ok {
		title, _, _ := strings.Cut(rest, "</title>")
		return title
	}
	line, _, _ := strings.Cut(strings.TrimSpace(body), "\n")
	return strings.TrimSpace(line)
}

// admitted reports whether the request reached the upstream.
func (o outcome) admitted() bool { return o.status == http.StatusOK && o.body == "upstream ok" }

// refusedCertificate reports whether nginx refused the client's
// certificate. With ssl_verify_client on, nginx completes the handshake
// whatever the certificate and answers 400 "The SSL certificate error"
// (the client learns why only from the access log), so a failed handshake
// is a failure of the test, not a refusal.
func (o outcome) refusedCertificate() bool {
	return o.err == nil && o.status == http.StatusBadRequest && strings.Contains(o.body, "The SSL certificate error")
}

// reqOpts say how a request through the edge is made.
type reqOpts struct {
	cert       *tls.Certificate       // the client certificate; none when nil
	sessions   tls.ClientSessionCache // resumes a TLS session it holds; none when nil
	header     map[string]string      // sent as is: keys are not canonicalised
	maxVersion uint16                 // the highest TLS version offered; TLS 1.3 when 0
}

// request makes a GET through the edge on a new connection.
func (e *edge) request(t *testing.T, label string, opts reqOpts) outcome {
	t.Helper()
	e.mu.Lock()
	e.requests++
	path := fmt.Sprintf("/%s/%s/%d", e.name, label, e.requests)
	e.mu.Unlock()
	cfg := &tls.Config{
		RootCAs: e.serverCA, ServerName: "127.0.0.1", ClientSessionCache: opts.sessions, MaxVersion: opts.maxVersion,
		// Send the certificate whatever CAs nginx says it accepts: Go
		// would otherwise keep a foreign one to itself, and nginx would
		// never get to refuse it.
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if opts.cert == nil {
				return &tls.Certificate{}, nil
			}
			return opts.cert, nil
		},
	}
	client := &http.Client{
		Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true},
		Timeout:   10 * time.Second,
	}
	req, err := http.NewRequest(http.MethodGet, "https://"+e.addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range opts.header {
		req.Header[k] = []string{v}
	}
	o := outcome{path: path}
	resp, err := client.Do(req)
	if err != nil {
		o.err = err
		return o
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	o.status, o.body = resp.StatusCode, string(b)
	o.resumed = resp.TLS != nil && resp.TLS.DidResume
	o.verify = e.loggedVerify(path)
	return o
}

// loggedVerify returns $ssl_client_verify of the access log line of path.
// nginx writes the line after it has sent the answer, so the line may land
// a moment after the client has read it: a short wait covers that.
func (e *edge) loggedVerify(path string) string {
	re := regexp.MustCompile(`"GET ` + regexp.QuoteMeta(path) + ` HTTP/1\.1" .* client_verify="([^"]*)"`)
	for i := 0; i < 20; i++ {
		b, _ := os.ReadFile(e.accessLog)
		if m := re.FindSubmatch(b); m != nil {
			return string(m[1])
		}
		time.Sleep(10 * time.Millisecond)
	}
	return ""
}

// errorLogHas reports whether nginx's error log contains s.
func (e *edge) errorLogHas(s string) bool {
	b, _ := os.ReadFile(e.errorLog)
	return bytes.Contains(b, []byte(s))
}

// ---------------------------------------------------------------- helpers

// freeAddr returns a loopback address nothing listens on right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// waitFor polls check every 50 ms until it returns nil or timeout passes.
func waitFor(t *testing.T, what string, timeout time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// runScript runs a shell script of deploy/ with env added to the test's
// environment and returns its standard output.
func runScript(t *testing.T, script string, env ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", script)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%s: exit status %d: %s", filepath.Base(script), ee.ExitCode(), stderr.String())
		}
	}
	return stdout.String(), err
}

// crlSerials returns the serials (lowercase hex) listed by the CRLs of a
// PEM file, and how many CRLs it holds.
func crlSerials(t *testing.T, file string) (map[string]bool, int) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	serials, n := map[string]bool{}, 0
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return serials, n
		}
		crl, err := x509.ParseRevocationList(block.Bytes)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		n++
		for _, e := range crl.RevokedCertificateEntries {
			serials[e.SerialNumber.Text(16)] = true
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
