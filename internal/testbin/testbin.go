// Package testbin builds pkid's commands the way an operator does (go build,
// no race detector: the processes under test run at production speed) and
// runs them as processes: one-shot commands such as `pkid migrate`, and
// `pkid serve` nodes on a database of the caller's (internal/testdb for
// tests). The tests that run the binaries (test/e2e, test/faults,
// test/nginx, cmd/pkid) and the multi-node benchmark (bench/nodes) start
// pkid through it, so that how a node is set up, started, found ready and
// stopped is written once.
//
// The functions that take a testing.TB fail the test on error and register
// their cleanup with it; the others return errors, for programs.
package testbin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// module is the import path of pkid's commands.
const module = "github.com/pkid/pkid/cmd/"

// builds holds the commands built by this process, by name, in one
// directory removed by Remove.
var builds struct {
	mu    sync.Mutex
	dir   string
	paths map[string]string
}

// Build builds the named commands of cmd/ ("pkid", "pkictl", "pkid-edge",
// …) that this process has not built yet, in one go build, and returns the
// path of each, in the order asked. The working directory must be inside
// the module.
func Build(names ...string) ([]string, error) {
	builds.mu.Lock()
	defer builds.mu.Unlock()
	if builds.dir == "" {
		dir, err := os.MkdirTemp("", "pkid-testbin-")
		if err != nil {
			return nil, err
		}
		builds.dir, builds.paths = dir, map[string]string{}
	}
	var pkgs []string
	for _, n := range names {
		if _, ok := builds.paths[n]; !ok && !strings.ContainsAny(n, `/\.`) {
			pkgs = append(pkgs, module+n)
		}
	}
	if len(pkgs) > 0 {
		args := append([]string{"build", "-o", builds.dir + string(filepath.Separator)}, pkgs...)
		if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("testbin: go build %s: %v: %s", strings.Join(pkgs, " "), err, out)
		}
		for _, p := range pkgs {
			n := strings.TrimPrefix(p, module)
			builds.paths[n] = filepath.Join(builds.dir, n)
		}
	}
	out := make([]string, len(names))
	for i, n := range names {
		p, ok := builds.paths[n]
		if !ok {
			return nil, fmt.Errorf("testbin: %q is not a command of cmd/", n)
		}
		out[i] = p
	}
	return out, nil
}

// Binary is Build for one command in a test.
func Binary(tb testing.TB, name string) string {
	tb.Helper()
	p, err := Build(name)
	if err != nil {
		tb.Fatal(err)
	}
	return p[0]
}

// Remove deletes what Build built. A test binary calls it after its tests
// have run (see Main); a program, before it exits.
func Remove() {
	builds.mu.Lock()
	defer builds.mu.Unlock()
	if builds.dir != "" {
		os.RemoveAll(builds.dir)
		builds.dir, builds.paths = "", nil
	}
}

// Main runs the tests of m, removes what they built, and exits: a package's
// TestMain is testbin.Main(m).
func Main(m *testing.M) {
	code := m.Run()
	Remove()
	os.Exit(code)
}

// Env returns the environment of a pkid command on the database at
// databaseURL: this process's environment without any pkid setting it may
// carry (PKID_*, DATABASE_URL), then DATABASE_URL, PKID_KEY_PASSPHRASE,
// PKID_LOG_FORMAT=text, then extra (NAME=value; a later entry wins).
func Env(databaseURL, passphrase string, extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PKID_") && !strings.HasPrefix(kv, "DATABASE_URL=") {
			env = append(env, kv)
		}
	}
	env = append(env, "DATABASE_URL="+databaseURL, "PKID_KEY_PASSPHRASE="+passphrase, "PKID_LOG_FORMAT=text")
	return append(env, extra...)
}

// runTimeout bounds a one-shot command.
const runTimeout = 2 * time.Minute

// Run runs bin with args to completion, within two minutes, with env as
// its whole environment and stdin as its input. A command that ran and
// failed gives an *exec.ExitError.
func Run(bin string, env []string, stdin string, args ...string) (stdout, stderr string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return out.String(), errb.String(), err
}

// MustRun is Run that fails the test unless the command exits 0, and
// returns its standard output.
func MustRun(tb testing.TB, bin string, env []string, stdin string, args ...string) string {
	tb.Helper()
	out, errOut, err := Run(bin, env, stdin, args...)
	if err != nil {
		tb.Fatalf("%s %s: %v\nstdout: %s\nstderr: %s", filepath.Base(bin), strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// Admin names the administrator that Setup creates.
const Admin = "ops"

// adminPassword is the administrator's password; tests log in with tokens.
const adminPassword = "a long enough password"

// Setup does with the pkid binary at bin what an operator does on a new
// database: pkid migrate, pkid init, an administrator (Admin), and returns
// an admin API token valid for two hours.
func Setup(bin string, env []string) (adminToken string, err error) {
	steps := []struct {
		stdin string
		args  []string
	}{
		{"", []string{"migrate"}},
		{"", []string{"init"}},
		{adminPassword + "\n", []string{"admin", "create-user", "--username", Admin}},
		{"", []string{"admin", "token", "--username", Admin, "--ttl", "2h"}},
	}
	var out string
	for _, s := range steps {
		var errOut string
		if out, errOut, err = Run(bin, env, s.stdin, s.args...); err != nil {
			return "", fmt.Errorf("pkid %s: %v: %s", strings.Join(s.args, " "), err, errOut)
		}
	}
	return strings.TrimSpace(out), nil
}

// MustSetup is Setup with the pkid of this module, in a test.
func MustSetup(tb testing.TB, env []string) string {
	tb.Helper()
	tok, err := Setup(Binary(tb, "pkid"), env)
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

// Buffer is a bytes.Buffer that a process and its reader may use at once.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Node is a running `pkid serve`.
type Node struct {
	Name string
	Addr string // the plain-HTTP listener, host:port
	URL  string // http://Addr
	cmd  *exec.Cmd
	logs *Buffer
	done chan struct{}
	err  error // how the process ended, once done is closed
}

// Launch starts `pkid serve` (bin) with env and PKID_HTTP_ADDR=addr, and
// does not wait for it: see WaitReady. name labels it in messages. Its
// standard output and error go to Logs.
func Launch(bin, name string, env []string, addr string) (*Node, error) {
	n := &Node{Name: name, Addr: addr, URL: "http://" + addr, logs: &Buffer{}, done: make(chan struct{})}
	n.cmd = exec.Command(bin, "serve")
	n.cmd.Env = append(append([]string{}, env...), "PKID_HTTP_ADDR="+addr)
	n.cmd.Stdout, n.cmd.Stderr = n.logs, n.logs
	if err := n.cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	go func() { n.err = n.cmd.Wait(); close(n.done) }()
	return n, nil
}

// WaitReady polls /readyz until it answers 200, the process exits, or
// timeout passes.
func (n *Node) WaitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	c := &http.Client{Timeout: 2 * time.Second}
	for {
		select {
		case <-n.done:
			return fmt.Errorf("%s: pkid serve exited: %v", n.Name, n.err)
		default:
		}
		if resp, err := c.Get(n.URL + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: /readyz did not answer 200 within %s", n.Name, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Done is closed once the process has exited; Err then says how.
func (n *Node) Done() <-chan struct{} { return n.done }

// Err is how the process ended (nil for exit status 0); call it after Done.
func (n *Node) Err() error { return n.err }

// Logs returns what the process has written so far.
func (n *Node) Logs() string { return n.logs.String() }

// Pid is the process id.
func (n *Node) Pid() int { return n.cmd.Process.Pid }

// Kill sends SIGKILL and waits for the process to be gone.
func (n *Node) Kill() {
	_ = n.cmd.Process.Signal(syscall.SIGKILL)
	<-n.done
}

// ErrKilled is what Stop returns when the process outlived its grace.
var ErrKilled = errors.New("testbin: pkid serve did not stop after SIGTERM and was killed")

// Stop asks for a graceful shutdown (SIGTERM) and waits up to grace for
// it, then kills the process and returns ErrKilled. Stopping a node that
// has exited does nothing.
func (n *Node) Stop(grace time.Duration) error {
	select {
	case <-n.done:
		return nil
	default:
	}
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
		return nil
	case <-time.After(grace):
		n.Kill()
		return ErrKilled
	}
}

// stopGrace is how long a test gives a node to shut down gracefully.
const stopGrace = 15 * time.Second

// readyTimeout is how long a test waits for a node to become ready.
const readyTimeout = 30 * time.Second

// LaunchNode is Launch with this module's pkid in a test: the node is
// stopped when the test ends (an error if it ignores SIGTERM), and its
// log is printed if the test failed.
func LaunchNode(tb testing.TB, name string, env []string, addr string) *Node {
	tb.Helper()
	n, err := Launch(Binary(tb, "pkid"), name, env, addr)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := n.Stop(stopGrace); err != nil {
			tb.Errorf("%s: %v", name, err)
		}
		if tb.Failed() {
			tb.Logf("%s log:\n%s", name, n.Logs())
		}
	})
	return n
}

// StartNode is LaunchNode on a free loopback port, waiting until the node
// is ready.
func StartNode(tb testing.TB, name string, env []string) *Node {
	tb.Helper()
	n := LaunchNode(tb, name, env, FreeAddr(tb))
	if err := n.WaitReady(readyTimeout); err != nil {
		tb.Fatalf("%v\nlog:\n%s", err, n.Logs())
	}
	return n
}

// FreeAddr returns a loopback address that nothing listens on right now.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	a, err := freeAddr()
	if err != nil {
		tb.Fatal(err)
	}
	return a
}

// PickAddr is FreeAddr for programs.
func PickAddr() (string, error) { return freeAddr() }

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}
