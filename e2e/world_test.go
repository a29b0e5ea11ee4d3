package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// world is a rendezvous server and the files of one test.
type world struct {
	t      testing.TB
	dir    string
	rvAddr string
	// rvAddr6 is the server's IPv6 address, in a dual-stack lab
	// (labWorld): what an IPv6-only daemon dials.
	rvAddr6 string
	rvKey   string
	rv      *process // nil when the test brings its own server
	rvArgs  []string
	rvOn    machine
	// logLevel is what render sets; tests want "debug" for their failure
	// output, benchmarks the "info" of a deployment.
	logLevel string
}

var rvKeyLine = regexp.MustCompile(`rendezvous public key: (\S+)`)

// newWorld starts a rendezvous server binary on m at listen.
func newWorld(t testing.TB, m machine, listen string, extra ...string) *world {
	w := &world{t: t, dir: t.TempDir(), rvAddr: listen, logLevel: "debug"}
	args := append([]string{"rendezvous", "-listen", listen, "-key", filepath.Join(w.dir, "rendezvous.key")}, extra...)
	p := start(t, m, "rendezvous", args...)
	w.rv, w.rvArgs, w.rvOn = p, args, m
	w.rvKey = p.waitOutput(t, rvKeyLine, 10*time.Second)
	return w
}

// restartRendezvous stops the server and, after down, starts it again.
func (w *world) restartRendezvous(down time.Duration) {
	w.t.Helper()
	w.stopRendezvous()
	time.Sleep(down)
	w.startRendezvous()
}

// stopRendezvous stops the server (SIGTERM, waiting for it to exit).
func (w *world) stopRendezvous() {
	w.t.Helper()
	w.rv.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-w.rv.done:
	case <-time.After(10 * time.Second):
		w.t.Fatal("rendezvous server did not stop")
	}
}

// startRendezvous starts the stopped server again with the same key and
// addresses.
func (w *world) startRendezvous() {
	w.t.Helper()
	w.rv = start(w.t, w.rvOn, "rendezvous-again", w.rvArgs...)
	w.rv.waitOutput(w.t, rvKeyLine, 10*time.Second)
}

// keygen creates name.key in the world's directory and returns its public
// key.
func (w *world) keygen(name string) string { return newKey(w.t, w.dir, name) }

// placeholder is how examples/ spell a key that a deployment fills in.
func placeholder(name string) string {
	s := strings.ToUpper(name) + "_PUBLIC_KEY_"
	return s + strings.Repeat("x", 43-len(s))
}

// render writes examples/<example> as name.toml in the world's directory,
// with the placeholder keys filled in, every "old" replaced by its "new",
// then the placeholder server address filled in, and admin_listen set. It
// returns the path.
func (w *world) render(example, name, admin string, keys map[string]string, replace ...string) string {
	w.t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "examples", example))
	if err != nil {
		w.t.Fatal(err)
	}
	s := strings.ReplaceAll(string(b), placeholder("rendezvous"), w.rvKey)
	for n, k := range keys {
		s = strings.ReplaceAll(s, placeholder(n), k)
	}
	s = strings.NewReplacer(replace...).Replace(s)
	// The server's address goes in last: a replacement of the example's
	// "127.0.0.1:1080" would otherwise also rewrite a server on port
	// 10800-10809 (CI once failed on "127.0.0.1:10805").
	s = strings.ReplaceAll(s, "rv.example.net:7777", w.rvAddr)
	// The test's admin address replaces the example's, if it sets one.
	s = regexp.MustCompile(`(?m)^admin_listen = .*\n`).ReplaceAllString(s, "")
	s = fmt.Sprintf("admin_listen = %q\nlog_level = %q\n", admin, w.logLevel) + s
	path := filepath.Join(w.dir, name+".toml")
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		w.t.Fatal(err)
	}
	return path
}

// handedOut holds every port freePort has returned in this test binary.
// A port is only free until a daemon binds it, and two calls before that
// happens (a forward and an admin listener of one config) must not get the
// same one; random picks alone collide often enough to fail CI.
var handedOut sync.Map

// freePort returns a TCP port free on m's loopback now and never returned
// before in this process. It picks from below Linux's ephemeral range
// (32768-60999), so that no socket bound to port 0 or connecting out can
// take it before the daemon binds it.
func freePort(t testing.TB, m machine) string {
	t.Helper()
	for range 100 {
		p := strconv.Itoa(10000 + rand.IntN(22000))
		if _, taken := handedOut.LoadOrStore(p, true); taken {
			continue
		}
		ln, err := m.Listen("tcp", "127.0.0.1:"+p)
		if err != nil {
			continue
		}
		ln.Close()
		return p
	}
	t.Fatal("no free port below the ephemeral range")
	return ""
}

// servePage serves body over HTTP on m's loopback and returns the port.
func servePage(t testing.TB, m machine, body string) string {
	t.Helper()
	_, p, _ := net.SplitHostPort(servePageOn(t, m, "127.0.0.1:0", body))
	return p
}

// servePageOn is servePage listening on addr; it returns the bound
// address.
func servePageOn(t testing.TB, m machine, addr, body string) string {
	t.Helper()
	ln, err := m.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, body)
	}), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// serveHasher runs a TCP service on m's loopback that reads until EOF and
// answers with the SHA-256 of what it read, hex encoded. It returns the port.
func serveHasher(t testing.TB, m machine) string {
	return serveTCP(t, m, func(c net.Conn) {
		h := sha256.New()
		io.Copy(h, c)
		io.WriteString(c, hex.EncodeToString(h.Sum(nil)))
	})
}

// serveTCP runs handle for every connection to a listener on m's loopback
// (closing the connection after it) until the test ends; it returns the
// port.
func serveTCP(t testing.TB, m machine, handle func(net.Conn)) string {
	return serveTCPOn(t, m, "127.0.0.1:0", handle)
}

// serveTCPOn is serveTCP listening on addr.
func serveTCPOn(t testing.TB, m machine, addr string, handle func(net.Conn)) string {
	t.Helper()
	ln, err := m.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
	_, p, _ := net.SplitHostPort(ln.Addr().String())
	return p
}

// sendAndHash sends size pseudo-random bytes to addr from m, half-closes,
// checks the service's SHA-256 matches what was sent, and returns the
// rate in Mbit/s.
func sendAndHash(t testing.TB, m machine, addr string, size int) float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := m.DialContext(ctx, &net.Dialer{}, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	h := sha256.New()
	src := io.TeeReader(io.LimitReader(rand.NewChaCha8([32]byte{7}), int64(size)), h)
	start := time.Now()
	if _, err := io.Copy(c, src); err != nil {
		t.Fatalf("send %d bytes: %v", size, err)
	}
	c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read hash: %v", err)
	}
	if want := hex.EncodeToString(h.Sum(nil)); string(got) != want {
		t.Fatalf("service hashed %q, sent %s", got, want)
	}
	mbps := float64(size) * 8 / time.Since(start).Seconds() / 1e6
	t.Logf("%d MiB to %s, checksum ok, %.0f Mbit/s", size>>20, addr, mbps)
	return mbps
}

// curl runs curl on m and returns stdout and its exit code.
func curl(t testing.TB, m machine, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := m.Command(ctx, "curl", append([]string{"-sS", "--max-time", "20"}, args...)...)
	out, err := cmd.Output()
	code := 0
	if err != nil {
		code = -1
		if cmd.ProcessState != nil {
			code = cmd.ProcessState.ExitCode()
		}
	}
	return string(out), code
}

func hostPort(host, port string) string { return net.JoinHostPort(host, port) }
