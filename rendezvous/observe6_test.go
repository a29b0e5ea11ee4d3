package rendezvous

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/warren-p2p/warren/identity"
)

// fakeAddr is a TCP address a piped connection claims as its remote.
type fakeAddr netip.AddrPort

func (a fakeAddr) Network() string { return "tcp" }
func (a fakeAddr) String() string  { return netip.AddrPort(a).String() }

type addrConn struct {
	net.Conn
	remote net.Addr
}

func (c addrConn) RemoteAddr() net.Addr { return c.remote }

// pipeListener hands the server connections that come from any address a
// test names: the server's IPv6 side, without IPv6 on the test machine.
type pipeListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error { l.once.Do(func() { close(l.done) }); return nil }
func (l *pipeListener) Addr() net.Addr {
	return fakeAddr(netip.MustParseAddrPort("[2001:db8::2]:7777"))
}

// dialFrom returns a connection to the server that it sees come from src.
func (l *pipeListener) dialFrom(ctx context.Context, src netip.AddrPort) (net.Conn, error) {
	ours, theirs := net.Pipe()
	select {
	case l.conns <- addrConn{theirs, fakeAddr(src)}:
		return ours, nil
	case <-ctx.Done():
		ours.Close()
		return nil, ctx.Err()
	}
}

// TestIPv6Observation: a peer that registered over IPv4 has the server
// observe its IPv6 address over TCP with its registration's token, and a
// punch carries each side's IPv6 endpoint only when both have one; a
// connection with another token sets nobody's address.
func TestIPv6Observation(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	ts := startServer(t, ctx, ServerConfig{NATWait: 50 * time.Millisecond, IPv6Endpoints: []string{"[2001:db8::2]:7777"}})
	ln6 := newPipeListener()
	var wg sync.WaitGroup
	wg.Go(func() { ts.srv.Serve(ctx, ln6) })
	t.Cleanup(wg.Wait)
	start := func(v6 string) testClient {
		punches := make(chan Punch, 4)
		cfg := ClientConfig{OnPunch: func(p Punch) { punches <- p }}
		lan := []netip.AddrPort{netip.MustParseAddrPort("10.1.2.3:4567")}
		if v6 != "" {
			src := netip.MustParseAddrPort(v6)
			lan = append(lan, src)
			cfg.DialPlain = func(ctx context.Context, addr string) (net.Conn, error) {
				if addr != "[2001:db8::2]:7777" {
					t.Errorf("observation dialled %s", addr)
				}
				return ln6.dialFrom(ctx, src)
			}
		}
		cfg.LAN = func() []netip.AddrPort { return lan }
		c := startClient(t, ctx, ts, cfg)
		return testClient{c, c.cfg.Key, punches}
	}
	a, b, c := start("[2001:db8:1::5]:4567"), start("[2001:db8:2::7]:4567"), start("")
	t.Cleanup(cancel)
	for _, x := range []testClient{a, b, c} {
		waitRegistered(t, x.c)
	}
	if got := a.c.Observed6(); got.String() != "[2001:db8:1::5]:4567" {
		t.Fatalf("a observed6 %v", got)
	}
	if c.c.Observed6().IsValid() {
		t.Fatalf("c observed6 %v without an observation", c.c.Observed6())
	}
	// Another token, from elsewhere: recorded for no one.
	conn, err := ln6.dialFrom(ctx, netip.MustParseAddrPort("[2001:db8:66::6]:1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ProbeObserve(ctx, conn, newObserveToken().String()); err != nil {
		t.Fatal(err)
	}
	a.c.Connect(b.key.Public())
	pa, pb := <-a.punches, <-b.punches
	if pa.Public6.String() != "[2001:db8:2::7]:4567" || pb.Public6.String() != "[2001:db8:1::5]:4567" {
		t.Fatalf("punches carry %v and %v", pa.Public6, pb.Public6)
	}
	a.c.Connect(c.key.Public())
	pa, pc := <-a.punches, <-c.punches
	if pa.Public6.IsValid() || pc.Public6.IsValid() {
		t.Fatalf("a pair with one IPv6 side told %v and %v", pa.Public6, pc.Public6)
	}
}

// TestListenBothFamilies: a server listening on [::] registers peers and
// answers UDP probes over IPv4 and IPv6 alike, observing IPv4 peers at
// plain IPv4 addresses (not IPv4-mapped ones, which no peer could punch).
func TestListenBothFamilies(t *testing.T) {
	if ln, err := net.Listen("tcp", "[::1]:0"); err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	} else {
		ln.Close()
	}
	key, _ := identity.Generate()
	srv, addrs := listenAndServe(t, ServerConfig{Key: key, Log: quietLog()}, "[::]:0")
	port := netip.MustParseAddrPort(addrs[0].String()).Port()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, host := range []string{"127.0.0.1", "::1"} {
		server := netip.AddrPortFrom(netip.MustParseAddr(host), port)
		c := startClient(t, ctx, testServer{srv, server.String()}, ClientConfig{})
		waitRegistered(t, c)
		if got := c.Observed().Addr(); got.String() != host {
			t.Errorf("registered over %s, observed at %v", host, got)
		}
		if udp := c.UDPServers(); len(udp) == 0 || udp[0] != server {
			t.Errorf("registered over %s, UDP probes go to %v", host, udp)
		}
		pc, err := net.ListenPacket("udp", net.JoinHostPort(host, "0"))
		if err != nil {
			t.Fatal(err)
		}
		pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
		got, err := ProbeUDP(pctx, pc, net.UDPAddrFromAddrPort(server))
		pcancel()
		pc.Close()
		if err != nil || got.String() != pc.LocalAddr().String() {
			t.Errorf("UDP probe over %s: %v, %v; want %v", host, got, err, pc.LocalAddr())
		}
	}
}

// TestObserveTokenForgotten: a registration's observe token is forgotten
// with it, so the map of tokens does not grow with every peer that ever
// registered, and an old token sets no one's address.
func TestObserveTokenForgotten(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ts := startServer(t, ctx, ServerConfig{IPv6Endpoints: []string{"[2001:db8::2]:7777"}})
	cctx, ccancel := context.WithCancel(ctx)
	c := startClient(t, cctx, ts, ClientConfig{})
	waitRegistered(t, c)
	count := func() (peers, tokens int) {
		ts.srv.mu.Lock()
		defer ts.srv.mu.Unlock()
		return len(ts.srv.peers), len(ts.srv.observers)
	}
	if p, n := count(); p != 1 || n != 1 {
		t.Fatalf("registered: %d peers, %d tokens", p, n)
	}
	ccancel()
	deadline := time.Now().Add(5 * time.Second)
	for {
		p, n := count()
		if p == 0 && n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the peer left: %d peers, %d tokens", p, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
