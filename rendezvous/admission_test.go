package rendezvous

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"
)

// holdIdle keeps n idle connections (no byte sent) from ip open against
// addr until ctx ends, opening a new one for each the server closes or
// refuses.
func holdIdle(ctx context.Context, wg *sync.WaitGroup, ip, addr string, n int) {
	dial := dialerFrom(ip)
	for range n {
		wg.Go(func() {
			for ctx.Err() == nil {
				c, err := dial(ctx, addr)
				if err != nil {
					time.Sleep(10 * time.Millisecond)
					continue
				}
				c.(*net.TCPConn).SetLinger(0) // no TIME_WAIT on the source's ports
				stop := context.AfterFunc(ctx, func() { c.Close() })
				c.Read(make([]byte, 1)) // until the server closes it
				stop()
				c.Close()
				time.Sleep(50 * time.Millisecond) // as a client would back off
			}
		})
	}
}

// registrations registers n fresh keys one after another from ip and
// returns how long each took, failing the test if any fails.
func registrations(t *testing.T, ts testServer, ip string, n int) []time.Duration {
	t.Helper()
	var took []time.Duration
	for i := range n {
		start := time.Now()
		c, _, err := registerRaw(t, ip, ts.addr, ts.srv.PublicKey())
		if err != nil {
			t.Fatalf("registration %d from %s: %v", i, ip, err)
		}
		took = append(took, time.Since(start))
		c.Close()
	}
	return took
}

// quantiles returns the median and the 99th percentile of d.
func quantiles(d []time.Duration) (p50, p99 time.Duration) {
	d = slices.Clone(d)
	slices.Sort(d)
	return d[len(d)/2], d[min(len(d)-1, len(d)*99/100)]
}

// TestFewSourcesCannotFillTheHandshakePool: 40 sources hold every
// connection they may in handshake (32 each, 1,280 in all, past the
// default pool of 1,024) and open a new one for each closed; a peer from
// another source still registers, every time, at once. (The pool used to
// be first come first served: 33 such sources kept every registration
// out for as long as they kept at it.)
func TestFewSourcesCannotFillTheHandshakePool(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ts := startServer(t, ctx, ServerConfig{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for i := range 40 {
		holdIdle(ctx, &wg, fmt.Sprintf("127.0.0.%d", 100+i), ts.addr, 32)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		// Nearly full: past half of it, early drop makes each last
		// slot ever harder for the attackers to take.
		_, shaking, _, _ := ts.srv.guard.counts(netip.Addr{})
		if shaking >= ts.srv.cfg.MaxHandshakes*95/100 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the attack holds only %d handshakes", shaking)
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := registrations(t, ts, "127.0.0.2", 20)
	p50, p99 := quantiles(took)
	_, shaking, _, _ := ts.srv.guard.counts(netip.Addr{})
	t.Logf("20 registrations while 40 sources fill the handshake pool (%d held): p50 %v, p99 %v",
		shaking, p50.Round(time.Millisecond), p99.Round(time.Millisecond))
	if p99 > 3*time.Second*raceSlowdown {
		t.Errorf("a registration took %v", p99)
	}
}

// TestFewSourcesCannotFillTheConnectionPool: with the connection cap at
// 300, 10 sources keep 40 registered connections each; a peer from
// another source still registers, taking the oldest connection of the
// source that holds the most.
func TestFewSourcesCannotFillTheConnectionPool(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ts := startServer(t, ctx, ServerConfig{MaxConns: 300, ConnRate: -1})
	for i := range 10 {
		ip := fmt.Sprintf("127.0.0.%d", 150+i)
		for range 40 {
			c, _, err := registerRaw(t, ip, ts.addr, ts.srv.PublicKey())
			if err != nil {
				continue // the pool is full, and ip holds no less than the others
			}
			t.Cleanup(func() { c.Close() })
		}
	}
	if conns, _, _, _ := ts.srv.guard.counts(netip.Addr{}); conns < 300 {
		t.Fatalf("the attack holds only %d connections", conns)
	}
	took := registrations(t, ts, "127.0.0.3", 20)
	p50, p99 := quantiles(took)
	t.Logf("20 registrations while 10 sources fill the connection pool: p50 %v, p99 %v", p50.Round(time.Millisecond), p99.Round(time.Millisecond))
}

// TestEvictionTakesFromTheHeaviest: in a full handshake pool, a source
// with fewer handshakes takes the oldest of the source with the most,
// and a source never takes from one that would then hold no more than
// it.
func TestEvictionTakesFromTheHeaviest(t *testing.T) {
	g := newGuard(ServerConfig{MaxConns: -1, MaxHandshakes: 4, MaxConnsPerSource: -1, MaxHandshakesPerSource: -1,
		ConnRate: -1, ConnectRate: -1}.withDefaults())
	g.random = func() float64 { return 1 } // no early drop: eviction alone
	a, b, c := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.3")
	var aConns []net.Conn // the server's ends; the test holds the others
	admit := func(src netip.Addr) (net.Conn, string) {
		server, client := net.Pipe()
		t.Cleanup(func() { server.Close(); client.Close() })
		_, reason := g.admit(src, server, time.Now())
		return client, reason
	}
	for range 3 {
		cl, reason := admit(a)
		if reason != "" {
			t.Fatal(reason)
		}
		aConns = append(aConns, cl)
	}
	if _, reason := admit(b); reason != "" {
		t.Fatal(reason)
	}
	if _, reason := admit(c); reason != "" {
		t.Fatalf("c was refused (%s) while a held 3 of 4 handshakes", reason)
	}
	if !closedWithin(aConns[0], time.Second) {
		t.Error("a's oldest handshake was not the one closed")
	}
	for _, cl := range aConns[1:] {
		if closedWithin(cl, 10*time.Millisecond) {
			t.Error("a newer handshake of a was closed")
		}
	}
	if _, _, n, _ := g.counts(a); n != 2 {
		t.Errorf("a holds %d connections, want 2", n)
	}
	// a holds 2, b 1: b taking one would leave a no busier than b.
	if _, reason := admit(b); reason != refusedHandshakes {
		t.Errorf("b admitted (%q) by taking from a source as busy as it would be", reason)
	}
}

// TestEarlyDrop: past half the handshake pool, a source with two or more
// handshakes under way is dropped with a probability that rises with the
// pool's use; a source with fewer never is.
func TestEarlyDrop(t *testing.T) {
	g := newGuard(ServerConfig{MaxConns: -1, MaxHandshakes: 100, MaxConnsPerSource: -1, MaxHandshakesPerSource: -1,
		ConnRate: -1, ConnectRate: -1}.withDefaults())
	g.random = func() float64 { return 0.5 }
	hog, peer := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	admit := func(src netip.Addr) string {
		server, client := net.Pipe()
		t.Cleanup(func() { server.Close(); client.Close() })
		_, reason := g.admit(src, server, time.Now())
		return reason
	}
	admitted := 0
	for admit(hog) == "" {
		admitted++
	}
	// Dropped once the chance, (n-50+1)/51, passes 0.5: at n = 75.
	if admitted != 75 {
		t.Errorf("the hog got %d handshakes before the first drop, want 75", admitted)
	}
	for i := range 2 {
		if reason := admit(peer); reason != "" {
			t.Fatalf("a peer's handshake %d was refused (%s) with the pool at %d of 100", i, reason, admitted+i)
		}
	}
	if reason := admit(peer); reason != refusedShed {
		t.Errorf("a source's third handshake: %q, want %q", reason, refusedShed)
	}
}
