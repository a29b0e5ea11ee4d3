package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/warren-p2p/warren/daemon"
)

// warrenBin is the binary under test, built once by TestMain.
var warrenBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "warren-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	warrenBin = filepath.Join(dir, "warren")
	out, err := exec.Command("go", "build", "-o", warrenBin, "github.com/warren-p2p/warren/cmd/warren").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build warren: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	if path := os.Getenv("WARREN_BENCH_REPORT"); path != "" {
		if err := benchDoc.write(path); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// machine is where a process or socket lives: this host's loopback, or a
// host namespace in the NAT lab.
type machine interface {
	Command(ctx context.Context, name string, args ...string) *exec.Cmd
	Listen(network, address string) (net.Listener, error)
	DialContext(ctx context.Context, d *net.Dialer, network, address string) (net.Conn, error)
}

// localhost is the test's own network namespace.
type localhost struct{}

func (localhost) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, name, args...)
}
func (localhost) Listen(network, address string) (net.Listener, error) {
	return net.Listen(network, address)
}
func (localhost) DialContext(ctx context.Context, d *net.Dialer, network, address string) (net.Conn, error) {
	return d.DialContext(ctx, network, address)
}

// process is a running warren binary whose output is kept for failures.
type process struct {
	name string
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
	err  error
}

func (p *process) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

func (p *process) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// start runs warren with args on m. At cleanup it sends SIGTERM and fails
// the test unless the process exits cleanly (status 0) within 10 s.
func start(t testing.TB, m machine, name string, args ...string) *process {
	t.Helper()
	return startPath(t, m, name, warrenBin, args...)
}

// startPath is start for any program at path that ends warren's way on
// SIGTERM (such as a shell that execs warren).
func startPath(t testing.TB, m machine, name, path string, args ...string) *process {
	t.Helper()
	p := launch(t, m, name, nil, path, args...)
	t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
			if p.err != nil {
				t.Errorf("%s exited with %v on SIGTERM", name, p.err)
			}
		case <-time.After(10 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
			t.Errorf("%s did not stop within 10s of SIGTERM", name)
		}
		if t.Failed() {
			t.Logf("--- output of %s ---\n%s", name, p.output())
		}
	})
	return p
}

// launch starts path with args on m, its output kept, after prepare (if
// any) has seen the command; p.done is closed when it exits.
func launch(t testing.TB, m machine, name string, prepare func(*exec.Cmd), path string, args ...string) *process {
	t.Helper()
	p := &process{name: name, done: make(chan struct{})}
	p.cmd = m.Command(context.Background(), path, args...)
	p.cmd.Stdout, p.cmd.Stderr = p, p
	if prepare != nil {
		prepare(p.cmd)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	return p
}

// waitOutput waits for the process to print a line matching re and returns
// the first submatch.
func (p *process) waitOutput(t testing.TB, re *regexp.Regexp, max time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(max)
	for time.Now().Before(deadline) {
		if m := re.FindStringSubmatch(p.output()); m != nil {
			return m[len(m)-1]
		}
		select {
		case <-p.done:
			t.Fatalf("%s exited (%v) before printing %v:\n%s", p.name, p.err, re, p.output())
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("%s did not print %v within %v:\n%s", p.name, re, max, p.output())
	return ""
}

// run runs warren to completion on m and returns its stdout.
func run(t testing.TB, m machine, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := m.Command(ctx, warrenBin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("warren %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// adminClient is an HTTP client that reaches a daemon's admin API from
// its machine. Close its idle connections when done.
func adminClient(m machine) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return m.DialContext(ctx, &net.Dialer{}, network, addr)
		},
	}, Timeout: 5 * time.Second}
}

// status reads a daemon's status API from its machine.
func status(ctx context.Context, m machine, admin string) (daemon.Status, error) {
	var st daemon.Status
	c := adminClient(m)
	defer c.CloseIdleConnections()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+"/status", nil)
	resp, err := c.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// waitStatus polls the daemon's status until cond holds and returns that
// status; what names the wait, for the failure.
func waitStatus(t testing.TB, m machine, admin string, max time.Duration, what string, cond func(daemon.Status) bool) daemon.Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), max)
	defer cancel()
	var last daemon.Status
	var lastErr error
	for ctx.Err() == nil {
		st, err := status(ctx, m, admin)
		if err == nil {
			if cond(st) {
				return st
			}
			last = st
		}
		lastErr = err
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: no %s within %v; last status %+v (err %v)", admin, what, max, last, lastErr)
	return daemon.Status{}
}

// waitPeer waits until the daemon reports peer in state want and returns
// its row.
func waitPeer(t testing.TB, m machine, admin, peer, want string, max time.Duration) daemon.PeerStatus {
	t.Helper()
	var row daemon.PeerStatus
	waitStatus(t, m, admin, max, fmt.Sprintf("peer %s in state %s", peer, want), func(st daemon.Status) bool {
		for _, p := range st.Peers {
			if p.Name == peer && p.State == want {
				row = p
				return true
			}
		}
		return false
	})
	return row
}

func gitCommit() string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	c := strings.TrimSpace(string(out))
	if st, _ := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); len(st) > 0 {
		c += " (with uncommitted changes)"
	}
	return c
}

func hostDesc() string {
	out, err := exec.Command("uname", "-sr").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}
