package forward_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/warren-p2p/warren/config"
	"github.com/warren-p2p/warren/forward"
	"github.com/warren-p2p/warren/internal/benchtest"
)

// socksConnect does a no-auth SOCKS5 CONNECT to hostport (host sent as a
// name unless it is an IPv4 literal) and returns the reply code.
func socksConnect(t *testing.T, c net.Conn, hostport string) byte {
	t.Helper()
	return socksCommand(t, c, 1, hostport)
}

func socksCommand(t *testing.T, c net.Conn, cmd byte, hostport string) byte {
	t.Helper()
	if _, err := c.Write([]byte{5, 1, 0}); err != nil {
		t.Fatal(err)
	}
	var sel [2]byte
	if _, err := io.ReadFull(c, sel[:]); err != nil || sel != [2]byte{5, 0} {
		t.Fatalf("method selection %v, %v", sel, err)
	}
	host, ps, _ := net.SplitHostPort(hostport)
	port, _ := strconv.Atoi(ps)
	req := []byte{5, cmd, 0}
	if ip := net.ParseIP(host).To4(); ip != nil {
		req = append(append(req, 1), ip...)
	} else {
		req = append(append(req, 3, byte(len(host))), host...)
	}
	req = binary.BigEndian.AppendUint16(req, uint16(port))
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	var reply [10]byte // always IPv4 BND.ADDR from go-socks5
	if _, err := io.ReadFull(c, reply[:]); err != nil {
		t.Fatalf("read reply: %v", err)
	}
	if reply[0] != 5 || reply[3] != 1 {
		t.Fatalf("bad reply %v", reply)
	}
	return reply[1]
}

func requireCurl(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl not installed")
	}
	return path
}

// runCurl runs curl with args and returns stdout, stderr and exit code.
func runCurl(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	curl := requireCurl(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, curl, append([]string{"-sS", "--max-time", "15"}, args...)...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errOut.String(), code
}

// curlEnv is an HTTP server reachable by the exit as somename.test, and a
// SOCKS5 listener whose exit is that exit.
type curlEnv struct {
	*exitEnv
	port  string // HTTP server's port
	socks string // SOCKS5 listener's address
	hosts chan string
}

func newCurlEnv(t *testing.T, peer config.Peer, sc config.Socks) *curlEnv {
	hosts := make(chan string, 10)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case hosts <- r.Host:
		default:
		}
		fmt.Fprint(w, "hello from the exit side")
	}))
	t.Cleanup(hs.Close)
	_, port, _ := net.SplitHostPort(hs.Listener.Addr().String())
	r := newResolver(map[string]string{"somename.test": "127.0.0.1"})
	peer.Name = "alice"
	e := newExit(t, []config.Peer{peer}, nil, r, forward.Config{DialTimeout: time.Second})
	sc.Listen, sc.Peer = "127.0.0.1:0", "exit"
	l := startListeners(t, e, []config.Socks{sc}, nil, forward.Config{})
	return &curlEnv{exitEnv: e, port: port, socks: l.SocksAddrs()[0].String(), hosts: hosts}
}

func TestSocksCurlHostname(t *testing.T) {
	requireCurl(t)
	e := newCurlEnv(t, config.Peer{Exit: true}, config.Socks{})
	url := "http://somename.test:" + e.port + "/"
	out, errOut, code := runCurl(t, "--socks5-hostname", e.socks, url)
	if code != 0 || out != "hello from the exit side" {
		t.Fatalf("curl exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if host := <-e.hosts; host != "somename.test:"+e.port {
		t.Errorf("HTTP Host %q", host)
	}
	// The name was resolved at the exit (curl could not have: .test does
	// not resolve here), by the exit's resolver.
	waitFor(t, "exit log", func() bool { return findEntry(e.Hook, "stream closed") != nil })
	if got := findEntry(e.Hook, "stream closed").Data["target"]; got != "somename.test:"+e.port {
		t.Errorf("exit saw target %v", got)
	}
}

func TestSocksCurlRefused(t *testing.T) {
	requireCurl(t)
	silent := blackhole(t)
	e := newCurlEnv(t, config.Peer{Targets: []string{"other.test:*", "127.0.0.1:1-2", silent}}, config.Socks{})

	// Not allowed by the exit's ACL: SOCKS5 reply 2.
	_, errOut, code := runCurl(t, "--socks5-hostname", e.socks, "http://somename.test:"+e.port+"/")
	if code != 97 || !strings.Contains(errOut, "(2)") {
		t.Errorf("denied: curl exit %d, stderr %q; want 97 and reply 2", code, errOut)
	}
	// Allowed but refused by the target: SOCKS5 reply 5.
	_, errOut, code = runCurl(t, "--socks5-hostname", e.socks, "http://127.0.0.1:1/")
	if code != 97 || !strings.Contains(errOut, "(5)") {
		t.Errorf("refused: curl exit %d, stderr %q; want 97 and reply 5", code, errOut)
	}
	// Name that does not resolve at the exit: reply 4.
	_, errOut, code = runCurl(t, "--socks5-hostname", e.socks, "http://other.test:80/")
	if code != 97 || !strings.Contains(errOut, "(4)") {
		t.Errorf("unresolvable: curl exit %d, stderr %q; want 97 and reply 4", code, errOut)
	}
	// A target that never answers: the exit's dial times out, reply 6.
	_, errOut, code = runCurl(t, "--socks5-hostname", e.socks, "http://"+silent+"/")
	if code != 97 || !strings.Contains(errOut, "(6)") {
		t.Errorf("silent target: curl exit %d, stderr %q; want 97 and reply 6 (TTL expired)", code, errOut)
	}
}

func TestSocksCurlAuth(t *testing.T) {
	requireCurl(t)
	e := newCurlEnv(t, config.Peer{Exit: true}, config.Socks{Username: "user", Password: "s3cret"})
	url := "http://somename.test:" + e.port + "/"

	out, errOut, code := runCurl(t, "--socks5-hostname", e.socks, "--proxy-user", "user:s3cret", url)
	if code != 0 || out != "hello from the exit side" {
		t.Errorf("good password: curl exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	_, errOut, code = runCurl(t, "--socks5-hostname", e.socks, "--proxy-user", "user:wrong", url)
	if code != 97 {
		t.Errorf("bad password: curl exit %d, stderr %q; want 97", code, errOut)
	}
	_, errOut, code = runCurl(t, "--socks5-hostname", e.socks, url)
	if code != 97 {
		t.Errorf("no password: curl exit %d, stderr %q; want 97", code, errOut)
	}
}

// blackhole returns a loopback address whose SYNs go unanswered: a
// listener with a full accept queue, which Linux drops new SYNs for, so a
// dial to it times out as one to a vanished host does.
func blackhole(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
	// Fill the queue (a backlog of 0 still takes one connection).
	for range 2 {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			break
		}
		t.Cleanup(func() { c.Close() })
	}
	return addr
}

// TestSocksReplyCodes checks that codes go-socks5 cannot produce from a
// Dial error reach the client unchanged, and that a peer known to be
// offline is "host unreachable" (issue 19 #1).
func TestSocksReplyCodes(t *testing.T) {
	e := newExit(t, []config.Peer{{Name: "alice", Exit: true}}, nil, newResolver(nil), forward.Config{DialTimeout: 300 * time.Millisecond})
	l := startListeners(t, e, []config.Socks{
		{Listen: "127.0.0.1:0", Peer: "exit"},
		{Listen: "127.0.0.1:0", Peer: "nolink"},
		{Listen: "127.0.0.1:0", Peer: "offline"},
	}, nil, forward.Config{})
	e.Opener.Offline("offline")
	socks, nolink, offline := l.SocksAddrs()[0].String(), l.SocksAddrs()[1].String(), l.SocksAddrs()[2].String()

	tests := []struct {
		addr   string
		cmd    byte
		target string
		want   byte
	}{
		{socks, 1, "bad_name!:80", forward.CodeAddrNotSupported},
		{socks, 1, "nxdomain.test:80", forward.CodeHostUnreachable},
		{socks, 1, benchtest.ClosedAddr(t), forward.CodeConnectionRefused},
		{socks, 1, blackhole(t), forward.CodeTTLExpired},
		{socks, 2, "10.0.0.1:80", forward.CodeCommandNotSupported}, // BIND
		{socks, 3, "0.0.0.0:0", forward.CodeSucceeded},             // ASSOCIATE
		{nolink, 1, "10.0.0.1:80", forward.CodeGeneralFailure},
		{nolink, 3, "0.0.0.0:0", forward.CodeGeneralFailure},
		{offline, 1, "10.0.0.1:80", forward.CodeHostUnreachable},
	}
	for _, tt := range tests {
		c, err := net.Dial("tcp", tt.addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if got := socksCommand(t, c, tt.cmd, tt.target); got != tt.want {
			t.Errorf("cmd %d %s: reply %d, want %d", tt.cmd, tt.target, got, tt.want)
		}
		c.Close()
	}
}

func TestSocksHalfClose(t *testing.T) {
	srv := serveTCP(t, func(c *net.TCPConn) {
		n, _ := io.Copy(io.Discard, c)
		fmt.Fprintf(c, "got %d bytes", n)
	})
	e := newExit(t, []config.Peer{{Name: "alice", Exit: true}}, nil, nil, forward.Config{})
	l := startListeners(t, e, []config.Socks{{Listen: "127.0.0.1:0", Peer: "exit"}}, nil, forward.Config{})
	c := dialTCP(t, l.SocksAddrs()[0])
	if code := socksConnect(t, c, srv); code != 0 {
		t.Fatalf("reply %d", code)
	}
	c.Write([]byte("abc"))
	c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "got 3 bytes" {
		t.Fatalf("got %q, %v", got, err)
	}
}

func TestSocksHandshakeTimeout(t *testing.T) {
	e := newExit(t, nil, nil, nil, forward.Config{})
	l := startListeners(t, e, []config.Socks{{Listen: "127.0.0.1:0", Peer: "exit"}}, nil,
		forward.Config{HandshakeTimeout: 200 * time.Millisecond})
	c, err := net.Dial("tcp", l.SocksAddrs()[0].String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte{5}) // a greeting that never completes
	c.SetDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	if _, err := io.ReadAll(c); err != nil {
		t.Fatalf("read: %v (want EOF from the listener closing)", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("closed after %v", d)
	}
}

// TestSocksCurlIPv6 sends an IPv6 literal (ATYP 4) through SOCKS5 to a
// server on the exit's ::1, and an IPv4 one (ATYP 1) to its 127.0.0.1.
func TestSocksCurlIPv6(t *testing.T) {
	requireCurl(t)
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Fatalf("this machine has no IPv6 loopback: %v", err)
	}
	hs := &httptest.Server{Listener: ln, Config: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "hello over IPv6")
	})}}
	hs.Start()
	t.Cleanup(hs.Close)
	e := newCurlEnv(t, config.Peer{Exit: true}, config.Socks{})
	for _, url := range []string{"http://" + ln.Addr().String() + "/", "http://127.0.0.1:" + e.port + "/"} {
		out, errOut, code := runCurl(t, "--socks5-hostname", e.socks, url)
		if code != 0 || !strings.HasPrefix(out, "hello") {
			t.Errorf("%s: curl exit %d, stdout %q, stderr %q", url, code, out, errOut)
		}
	}
	waitFor(t, "the exit's two stream lines", func() bool {
		var targets []string
		for _, en := range e.Hook.AllEntries() {
			if en.Message == "stream closed" {
				targets = append(targets, fmt.Sprint(en.Data["target"]))
			}
		}
		return slices.Contains(targets, ln.Addr().String()) && slices.Contains(targets, "127.0.0.1:"+e.port)
	})
}
