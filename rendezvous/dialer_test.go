package rendezvous

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warren-p2p/warren/identity"
	"github.com/warren-p2p/warren/internal/benchtest"
	"github.com/warren-p2p/warren/punch"
)

// echoServer accepts connections and writes name to each, until the test
// ends.
func echoServer(t *testing.T, name string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte(name))
			c.Close()
		}
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String()
}

func readAll(t *testing.T, c net.Conn) string {
	t.Helper()
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestDialerFallsBackWhenRefused(t *testing.T) {
	fb := echoServer(t, "fallback")
	d := &Dialer{Address: benchtest.ClosedAddr(t), Fallback: fb}
	c, r, err := d.Dial(context.Background(), d.Address, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, c); got != "fallback" {
		t.Errorf("reached %q, want the fallback", got)
	}
	if !r.Fallback || r.Addr != fb || r.Asked != d.Address || r.Restriction() != RestrictedTCP443 {
		t.Errorf("route %+v, want the fallback %s (restriction %s)", r, fb, RestrictedTCP443)
	}
	if d.LastRoute() != r {
		t.Errorf("LastRoute %+v, want %+v", d.LastRoute(), r)
	}
}

// A configured port whose SYNs are dropped costs the fallback's head
// start, not a dial timeout.
func TestDialerFallsBackWhenSilent(t *testing.T) {
	main, fb := "192.0.2.1:7777", echoServer(t, "fallback")
	silent := func(ctx context.Context, addr string) (net.Conn, error) {
		if addr == main {
			<-ctx.Done() // a dropped SYN
			return nil, ctx.Err()
		}
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
	d := &Dialer{Address: main, Fallback: fb, FallbackDelay: 50 * time.Millisecond}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	c, r, err := d.Dial(ctx, main, silent)
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("fallback took %v", took)
	}
	if got := readAll(t, c); got != "fallback" || !r.Fallback {
		t.Errorf("reached %q over %+v, want the fallback", got, r)
	}
}

// A reachable configured port wins, and DialLikeLast goes where Dial
// went last.
func TestDialerPrefersTheAddressAndRelaysFollow(t *testing.T) {
	mainAddr, fb := echoServer(t, "main"), echoServer(t, "fallback")
	d := &Dialer{Address: mainAddr, Fallback: fb}
	c, r, err := d.Dial(context.Background(), mainAddr, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, c); got != "main" || r.Fallback || r.Restriction() != "" {
		t.Errorf("reached %q over %+v, want the configured address", got, r)
	}
	// Only the fallback is reachable now: the control connection moves,
	// and a relay dial takes the fallback first (no head start lost).
	d.Address = benchtest.ClosedAddr(t)
	if _, r, err = d.Dial(context.Background(), d.Address, nil); err != nil || !r.Fallback {
		t.Fatalf("Dial: %+v, %v", r, err)
	}
	d.FallbackDelay = time.Hour // only an ordered dial could succeed
	c, r, err = d.DialLikeLast(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, c); got != "fallback" || !r.Fallback {
		t.Errorf("relay reached %q over %+v, want the fallback", got, r)
	}
}

func TestDialerFails(t *testing.T) {
	d := &Dialer{Address: benchtest.ClosedAddr(t), Fallback: benchtest.ClosedAddr(t)}
	_, _, err := d.Dial(context.Background(), d.Address, nil)
	if err == nil || !strings.Contains(err.Error(), d.Address) || !strings.Contains(err.Error(), d.Fallback) {
		t.Errorf("error %v, want both addresses named", err)
	}
}

// connectProxy is a minimal HTTP CONNECT proxy that lets through only
// port allow, and checks Basic auth when user is set. Its 200 answer
// comes in one write with the first bytes of the tunnel, as a proxy's
// may.
func connectProxy(t *testing.T, allow, user, pass string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	serve := func(c net.Conn) {
		defer c.Close()
		br := bufio.NewReader(c)
		line, _ := br.ReadString('\n')
		var target string
		fmt.Sscanf(line, "CONNECT %s HTTP/1.1", &target)
		auth := ""
		for {
			h, err := br.ReadString('\n')
			if err != nil || h == "\r\n" {
				break
			}
			if v, ok := strings.CutPrefix(h, "Proxy-Authorization: "); ok {
				auth = strings.TrimSpace(v)
			}
		}
		if user != "" && auth != "Basic "+base64.StdEncoding.EncodeToString([]byte(user+":"+pass)) {
			io.WriteString(c, "HTTP/1.1 407 Proxy Authentication Required\r\n\r\n")
			return
		}
		if _, port, _ := net.SplitHostPort(target); port != allow {
			io.WriteString(c, "HTTP/1.1 403 Access violation\r\n\r\n")
			return
		}
		up, err := net.Dial("tcp", target)
		if err != nil {
			io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\n\r\n")
			return
		}
		defer up.Close()
		first := make([]byte, 64)
		up.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, _ := up.Read(first)
		c.Write(append([]byte("HTTP/1.1 200 Connection established\r\nProxy-agent: test\r\n\r\n"), first[:n]...))
		io.Copy(c, up)
	}
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { serve(c) })
		}
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String()
}

func TestDialerThroughProxy(t *testing.T) {
	fb := echoServer(t, "fallback")
	_, fbPort, _ := net.SplitHostPort(fb)
	proxy := connectProxy(t, fbPort, "alice", "s3cret")
	u, err := ParseProxy("http://alice:s3cret@" + proxy)
	if err != nil {
		t.Fatal(err)
	}
	// The configured port is refused by the proxy (as a proxy that lets
	// only 443 through does); its fallback passes.
	mainAddr := echoServer(t, "main")
	d := &Dialer{Address: mainAddr, Fallback: fb, Proxy: u}
	c, r, err := d.Dial(context.Background(), mainAddr, func(context.Context, string) (net.Conn, error) {
		t.Error("dialled directly although a proxy is set")
		return nil, fmt.Errorf("no")
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, c); got != "fallback" {
		t.Errorf("tunnel carried %q, want the fallback's first bytes", got)
	}
	if r.Proxy != proxy || !r.Fallback || r.Restriction() != RestrictedProxy {
		t.Errorf("route %+v, want the fallback via %s", r, proxy)
	}
	if c.RemoteAddr().String() != fb {
		t.Errorf("RemoteAddr %s, want the server's %s", c.RemoteAddr(), fb)
	}

	u.User = url.UserPassword("alice", "wrong")
	_, _, err = d.Dial(context.Background(), mainAddr, nil)
	if err == nil || !strings.Contains(err.Error(), "407") {
		t.Errorf("wrong password: %v, want the proxy's 407", err)
	}
	if strings.Contains(fmt.Sprint(err), "wrong") {
		t.Errorf("error %v shows the password", err)
	}
}

func TestParseProxy(t *testing.T) {
	for in, want := range map[string]string{
		"http://proxy:3128":         "proxy:3128",
		"proxy:8080":                "proxy:8080",
		"http://u:p@10.0.0.1:8888/": "10.0.0.1:8888",
	} {
		u, err := ParseProxy(in)
		if err != nil || u.Host != want {
			t.Errorf("ParseProxy(%q) = %v, %v; want host %s", in, u, err, want)
		}
	}
	for _, in := range []string{"https://proxy:443", "socks5://proxy:1080", "http://proxy", "http://proxy:80/path", "http://u:pw@:80"} {
		if _, err := ParseProxy(in); err == nil {
			t.Errorf("ParseProxy(%q) accepted", in)
		} else if strings.Contains(err.Error(), "pw") {
			t.Errorf("ParseProxy(%q): error %v shows the password", in, err)
		}
	}
}

// The server serves its fallback listener like its main one: a client
// whose configured port is closed registers through it, and the
// handshake offers and gets HTTP/1.1 as its ALPN, as HTTPS would.
func TestRegisterThroughFallbackListener(t *testing.T) {
	key, _ := identity.Generate()
	_, addrs := listenAndServe(t, ServerConfig{Key: key, Log: quietLog(), FallbackListen: "127.0.0.1:0"}, "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	var fallback string
	for _, a := range addrs[1:] {
		if a.Network() == "tcp" {
			fallback = a.String()
		}
	}
	if fallback == "" {
		t.Fatalf("no fallback TCP listener among %v", addrs)
	}
	// The fallback serves TLS with HTTP/1.1 as ALPN.
	cert, _ := identity.Certificate(key)
	conf := identity.TLSConfig(cert, identity.Pinned(key.Public()))
	looksLikeHTTPS(conf, fallback)
	tc, err := tls.Dial("tcp", fallback, conf)
	if err != nil {
		t.Fatal(err)
	}
	if p := tc.ConnectionState().NegotiatedProtocol; p != "http/1.1" {
		t.Errorf("ALPN %q, want http/1.1", p)
	}
	tc.Close()

	d := &Dialer{Address: benchtest.ClosedAddr(t), Fallback: fallback}
	ckey, _ := identity.Generate()
	c, err := NewClient(ClientConfig{Address: d.Address, ServerKey: key.Public(), Key: ckey, Log: quietLog(),
		Dial: func(ctx context.Context, addr string) (net.Conn, error) {
			c, _, err := d.Dial(ctx, addr, nil)
			return c, err
		}})
	if err != nil {
		t.Fatal(err)
	}
	wg.Go(func() { c.Run(ctx) })
	waitRegistered(t, c)
	if r := d.LastRoute(); !r.Fallback {
		t.Errorf("registered over %+v, want the fallback", r)
	}
	// A relay goes the same way: the fallback answers its header too (a
	// TCP session probe shows the server read it).
	rc, _, err := d.DialLikeLast(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var id punch.SessionID
	if _, err := rc.Write(append(append([]byte(tcpProbeMagic), id[:]...), 0)); err != nil {
		t.Fatal(err)
	}
	rc.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(rc).ReadString('\n')
	if err != nil || !strings.Contains(line, "127.0.0.1:") {
		t.Errorf("TCP probe through the fallback answered %q, %v", line, err)
	}
}

// A peer's restricted network reaches the other side with the punch, so
// that both go to the relay at once.
func TestRestrictionReachesThePeer(t *testing.T) {
	a, b := twoClients(t)
	if err := a.c.Report(NATReport{Restricted: RestrictedProxy}); err != nil {
		t.Fatal(err)
	}
	if err := b.c.SetNAT(punch.NAT{Behind: true, Mapping: punch.MappingEndpointIndependent}); err != nil {
		t.Fatal(err)
	}
	if err := b.c.Connect(a.key.Public()); err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"", RestrictedProxy} {
		c := []testClient{a, b}[i]
		select {
		case p := <-c.punches:
			if p.PeerRestricted != want {
				t.Errorf("side %d told the peer's network is %q, want %q", i, p.PeerRestricted, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("side %d: no punch", i)
		}
	}
}

// FuzzProxyAnswer feeds the proxy's answer to CONNECT: whatever a proxy
// sends, reading it takes a prefix that ends a line, within the limit,
// and leaves the rest to the tunnel.
func FuzzProxyAnswer(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 Connection established\r\nProxy-agent: tinyproxy/1.11.1\r\n\r\n\x16\x03\x01"))
	f.Add([]byte("HTTP/1.0 403 Access violation\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 200 OK\n\nrest"))
	f.Add([]byte("SSH-2.0-OpenSSH\r\n"))
	f.Add([]byte(strings.Repeat("X-Long: "+strings.Repeat("a", 4000)+"\r\n", 3)))
	f.Fuzz(func(t *testing.T, in []byte) {
		br := bufio.NewReaderSize(strings.NewReader(string(in)), 4096)
		status, err := readProxyAnswer(br)
		rest, _ := io.ReadAll(br)
		used := len(in) - len(rest)
		if err != nil {
			return
		}
		if used > proxyHeaderLimit || used == 0 || in[used-1] != '\n' || string(in[used:]) != string(rest) {
			t.Fatalf("took %d bytes of %q (status %q), leaving %q", used, in, status, rest)
		}
		if len(status) < 3 {
			t.Fatalf("status %q", status)
		}
	})
}

// listenAndServe runs a server with cfg on ListenAndServe(listen) until
// the test ends, and returns it with its bound addresses.
func listenAndServe(t *testing.T, cfg ServerConfig, listen string) (*Server, []net.Addr) {
	t.Helper()
	srv, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	bound := make(chan []net.Addr, 1)
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	t.Cleanup(cancel)
	wg.Go(func() {
		if err := srv.ListenAndServe(ctx, listen, "", func(a []net.Addr) { bound <- a }); err != nil {
			t.Error(err)
		}
	})
	select {
	case addrs := <-bound:
		return srv, addrs
	case <-time.After(5 * time.Second):
		t.Fatal("server did not bind")
		return nil, nil
	}
}
