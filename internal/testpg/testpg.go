// Package testpg runs a private PostgreSQL cluster for tests that stop, kill
// or otherwise break the database. Such tests must never touch the shared
// server on 127.0.0.1:5432 that every other test (and perhaps other test
// binaries at the same moment) uses, so each gets its own cluster: initdb into
// a temporary directory, a free loopback port, trust authentication, and the
// durability settings of production (fsync, synchronous commit and full-page
// writes on), because what a crash leaves behind is what these tests check.
//
// The postmaster is a direct child of the test process, run as the postgres
// user when the test runs as root (PostgreSQL refuses to run as root). That
// lets Kill deliver a real SIGKILL to it and to every backend, and reap it,
// rather than asking pg_ctl for an orderly "immediate" shutdown. The cluster
// is removed when the test ends.
package testpg

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvBinDir names the environment variable that may point at the directory
// holding initdb and postgres. Without it, the newest
// /usr/lib/postgresql/*/bin (Debian's layout) is used, then $PATH.
const EnvBinDir = "PKID_TEST_PG_BINDIR"

// User is the account the server runs as when the test runs as root.
const User = "postgres"

// startTimeout bounds how long a start (including crash recovery) may take
// before the test fails.
const startTimeout = 60 * time.Second

// stopTimeout bounds a fast shutdown; after it the server is killed.
const stopTimeout = 30 * time.Second

// Cluster is one private PostgreSQL server. Its methods fail the test on
// error and must be called from the test's goroutine; they are safe to call
// while other goroutines use the server (that is the point).
type Cluster struct {
	t       testing.TB
	binDir  string
	baseDir string // owned by the server's user: data/, server.log
	port    int
	cred    *syscall.Credential // nil when not root

	mu   sync.Mutex
	proc *exec.Cmd     // the running postmaster, nil when stopped
	done chan struct{} // closed when proc has been reaped
	werr error         // proc's exit, valid once done is closed
}

// Start creates a cluster in a fresh temporary directory, starts it and
// waits until it accepts connections. t's cleanup stops it with an
// immediate shutdown and deletes its files. Start skips t, saying why, when
// the PostgreSQL server binaries are not installed.
func Start(t testing.TB) *Cluster {
	t.Helper()
	bin, err := BinDir()
	if err != nil {
		t.Skipf("testpg: %v", err)
	}
	c := &Cluster{t: t, binDir: bin}
	if os.Geteuid() == 0 {
		if c.cred, err = credential(User); err != nil {
			t.Fatalf("testpg: running as root, so the server must run as %q: %v", User, err)
		}
	}
	c.baseDir, err = os.MkdirTemp("", "pkid-testpg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.destroy)
	if c.cred != nil {
		if err := os.Chown(c.baseDir, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
			t.Fatal(err)
		}
	}
	c.initdb()
	// A port found free may be taken before the server binds it; try a few.
	for attempt := 1; ; attempt++ {
		c.port = freePort(t)
		c.writeConfig()
		err := c.start()
		if err == nil {
			return c
		}
		if attempt == 3 || !strings.Contains(c.Log(), "could not bind") {
			t.Fatalf("testpg: %v\nserver log:\n%s", err, c.tail())
		}
	}
}

// BinDir returns the directory holding initdb and postgres, or an error
// saying that the server is not installed.
func BinDir() (string, error) {
	has := func(dir string) bool {
		for _, name := range []string{"initdb", "postgres"} {
			if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.IsDir() {
				return false
			}
		}
		return true
	}
	if dir := os.Getenv(EnvBinDir); dir != "" {
		if !has(dir) {
			return "", fmt.Errorf("%s=%s has no initdb and postgres", EnvBinDir, dir)
		}
		return dir, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	// Newest major version first: "16" before "15", numerically.
	sort.Slice(dirs, func(i, j int) bool { return majorOf(dirs[i]) > majorOf(dirs[j]) })
	for _, dir := range dirs {
		if has(dir) {
			return dir, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil && has(filepath.Dir(p)) {
		return filepath.Dir(p), nil
	}
	return "", fmt.Errorf("PostgreSQL server binaries (initdb, postgres) not found in /usr/lib/postgresql/*/bin or $PATH; install them (Debian: postgresql) or set %s", EnvBinDir)
}

func majorOf(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

func credential(name string) (*syscall.Credential, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, err
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, err
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, err
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func (c *Cluster) dataDir() string { return filepath.Join(c.baseDir, "data") }
func (c *Cluster) logFile() string { return filepath.Join(c.baseDir, "server.log") }

// command returns name from the server's bin directory, run as the server's
// user with a minimal environment.
func (c *Cluster) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(c.binDir, name), args...)
	cmd.Dir = c.baseDir
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + c.baseDir, "LC_ALL=C", "TZ=UTC"}
	cmd.SysProcAttr = sysProcAttr(c.cred)
	return cmd
}

func (c *Cluster) initdb() {
	c.t.Helper()
	cmd := c.command("initdb", "-D", c.dataDir(), "-U", "postgres", "--auth=trust",
		"--encoding=UTF8", "--no-locale", "--no-instructions")
	if out, err := cmd.CombinedOutput(); err != nil {
		c.t.Fatalf("testpg: initdb: %v\n%s", err, out)
	}
}

// writeConfig appends the cluster's settings to postgresql.conf; the last
// occurrence of a setting wins, so a retry with another port overrides.
func (c *Cluster) writeConfig() {
	c.t.Helper()
	conf := fmt.Sprintf(`
# testpg
listen_addresses = '127.0.0.1'
port = %d
unix_socket_directories = ''
max_connections = 60
shared_buffers = 16MB
# Durability as in production: these tests check what a crash leaves.
fsync = on
synchronous_commit = on
full_page_writes = on
wal_level = replica
logging_collector = off
log_min_messages = warning
log_line_prefix = '%%m [%%p] '
`, c.port)
	f, err := os.OpenFile(filepath.Join(c.dataDir(), "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		c.t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(conf); err != nil {
		c.t.Fatal(err)
	}
}

// Port returns the TCP port the server listens on (127.0.0.1).
func (c *Cluster) Port() int { return c.port }

// URL returns the connection URL of database db on this server, as the
// superuser postgres.
func (c *Cluster) URL(db string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User("postgres"),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(c.port)),
		Path:     "/" + db,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// CreateDatabase creates database name and returns its URL.
func (c *Cluster) CreateDatabase(name string) string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		c.t.Fatalf("testpg: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		c.t.Fatalf("testpg: creating database %s: %v", name, err)
	}
	return c.URL(name)
}

// Running reports whether the server process is running.
func (c *Cluster) Running() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.proc != nil
}

// Start starts the stopped server again, on the same data directory and
// port, and waits until it accepts connections (after crash recovery, if it
// was killed).
func (c *Cluster) Start() {
	c.t.Helper()
	if c.Running() {
		c.t.Fatal("testpg: Start: the server is running")
	}
	if err := c.start(); err != nil {
		c.t.Fatalf("testpg: %v\nserver log:\n%s", err, c.tail())
	}
}

// start launches the postmaster and waits until it answers. A server killed
// a moment ago may leave backends that still hold its shared memory, which
// makes the new postmaster refuse to start: that is retried until the
// deadline.
func (c *Cluster) start() error {
	deadline := time.Now().Add(startTimeout)
	for {
		err := c.launch(deadline)
		if err == nil {
			return nil
		}
		if !errors.Is(err, errExited) || !strings.Contains(c.tail(), "is still in use") || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

var errExited = errors.New("the server exited during start")

func (c *Cluster) launch(deadline time.Time) error {
	logf, err := os.OpenFile(c.logFile(), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	cmd := c.command("postgres", "-D", c.dataDir())
	cmd.Stdout, cmd.Stderr = logf, logf
	err = cmd.Start()
	logf.Close() // the child holds its own descriptor
	if err != nil {
		return fmt.Errorf("starting postgres: %w", err)
	}
	done := make(chan struct{})
	c.mu.Lock()
	c.proc, c.done = cmd, done
	c.mu.Unlock()
	go func() {
		err := cmd.Wait()
		c.mu.Lock()
		c.werr = err
		if c.proc == cmd {
			c.proc = nil
		}
		c.mu.Unlock()
		close(done)
	}()

	for {
		select {
		case <-done:
			return fmt.Errorf("%w: %v", errExited, c.werr)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, c.URL("postgres"))
		if err == nil {
			err = conn.Ping(ctx)
			conn.Close(ctx)
		}
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			c.signal(syscall.SIGKILL)
			<-done
			return fmt.Errorf("the server did not accept connections within %s: %v", startTimeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// signal sends sig to the postmaster, if it runs.
func (c *Cluster) signal(sig syscall.Signal) (done chan struct{}, pid int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.proc == nil {
		return nil, 0
	}
	_ = c.proc.Process.Signal(sig)
	return c.done, c.proc.Process.Pid
}

// Stop shuts the server down the way an operator's `pg_ctl stop` does (fast
// shutdown: active transactions are rolled back and sessions ended, then a
// checkpoint) and waits until it has exited.
func (c *Cluster) Stop() {
	c.t.Helper()
	done, _ := c.signal(syscall.SIGINT)
	if done == nil {
		c.t.Fatal("testpg: Stop: the server is not running")
	}
	select {
	case <-done:
	case <-time.After(stopTimeout):
		c.t.Errorf("testpg: fast shutdown took over %s; killing the server", stopTimeout)
		c.Kill()
	}
}

// Kill kills the postmaster and every server process with SIGKILL at once,
// as a crash of the database host would (minus the loss of the page cache),
// and waits until all of them are gone. The next Start runs crash recovery
// from the write-ahead log.
func (c *Cluster) Kill() {
	c.t.Helper()
	c.mu.Lock()
	cmd, done := c.proc, c.done
	c.mu.Unlock()
	if cmd == nil {
		c.t.Fatal("testpg: Kill: the server is not running")
	}
	pid := cmd.Process.Pid
	// Freeze the postmaster so that it forks no backend while we collect
	// the ones it has.
	_ = syscall.Kill(pid, syscall.SIGSTOP)
	kids := children(pid)
	for _, k := range kids {
		_ = syscall.Kill(k, syscall.SIGKILL)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	<-done
	// Orphaned backends are reaped by init; wait until none is alive, so
	// that Start finds the shared memory free.
	deadline := time.Now().Add(10 * time.Second)
	for slices.ContainsFunc(kids, alive) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
}

// Log returns the server's log so far.
func (c *Cluster) Log() string {
	b, _ := os.ReadFile(c.logFile())
	return string(b)
}

// tail returns the last lines of the log, for failure messages.
func (c *Cluster) tail() string {
	lines := strings.Split(strings.TrimRight(c.Log(), "\n"), "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return strings.Join(lines, "\n")
}

// destroy stops the server immediately (what `pg_ctl stop -m immediate`
// does: SIGQUIT) and removes the cluster's files.
func (c *Cluster) destroy() {
	if done, _ := c.signal(syscall.SIGQUIT); done != nil {
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			c.signal(syscall.SIGKILL)
			<-done
		}
	}
	if c.t.Failed() {
		c.t.Logf("testpg: server log (%s):\n%s", c.baseDir, c.tail())
	}
	if err := os.RemoveAll(c.baseDir); err != nil {
		c.t.Errorf("testpg: removing %s: %v", c.baseDir, err)
	}
}
