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
		_, shaking, _, _ := ts.srv.guard.counts(netip.Addr{})
		if shaking >= ts.srv.cfg.MaxHandshakes {
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
