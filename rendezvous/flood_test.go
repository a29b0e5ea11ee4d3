package rendezvous

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/warren-p2p/warren/identity"
	"github.com/warren-p2p/warren/punch"
)

// lineCounter counts the lines written to it.
type lineCounter struct{ n atomic.Int64 }

func (c *lineCounter) Write(b []byte) (int, error) {
	c.n.Add(int64(bytes.Count(b, []byte{'\n'})))
	return len(b), nil
}

// floodSource plays one attacking source until ctx ends: by kind, it
// holds idle connections in handshake, registers fresh keys and floods
// connect requests at the victims, or fills relays between two keys of
// its own.
func floodSource(ctx context.Context, t *testing.T, wg *sync.WaitGroup, ts testServer, ip string, kind int, victims []identity.PublicKey) {
	switch kind {
	case 0:
		holdIdle(ctx, wg, ip, ts.addr, 32)
	case 1:
		wg.Go(func() { floodRegistrations(ctx, t, ts, ip, victims) })
	case 2:
		wg.Go(func() { fillRelays(ctx, t, ts, ip) })
	}
}

// floodRegistrations registers fresh keys from ip as fast as the server
// lets it, holding the last 40, each asking for 20 sessions with victims.
func floodRegistrations(ctx context.Context, t *testing.T, ts testServer, ip string, victims []identity.PublicKey) {
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for i := 0; ctx.Err() == nil; i++ {
		c, _, err := registerRaw(t, ip, ts.addr, ts.srv.PublicKey())
		if err != nil {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		held = append(held, c)
		if len(held) > 40 {
			held[0].Close()
			held = held[1:]
		}
		for j := range 20 {
			c.SetWriteDeadline(time.Now().Add(time.Second))
			if WriteMessage(c, &Message{Type: TypeConnect, Peer: victims[(i+j)%len(victims)].String()}) != nil {
				break
			}
		}
	}
}

// fillRelays registers two keys from ip and opens relays between them,
// for as long as the server issues sessions, holding the last 64 pairs.
func fillRelays(ctx context.Context, t *testing.T, ts testServer, ip string) {
	var conns []*tls.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	var keys []identity.PublicKey
	for len(conns) < 2 {
		c, key, err := registerRaw(t, ip, ts.addr, ts.srv.PublicKey())
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			conns, keys = append(conns, c), append(keys, key)
		}
	}
	asked := make(chan punch.SessionID, 16)
	go func() {
		for {
			m, err := ReadMessage(conns[0])
			if err != nil {
				return
			}
			if id, err := punch.ParseSessionID(m.Session); m.Type == TypePunch && err == nil {
				asked <- id
			}
		}
	}()
	go io.Copy(io.Discard, conns[1])
	for _, c := range conns {
		WriteMessage(c, natMessage(punch.NAT{Behind: true}))
	}
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for ctx.Err() == nil {
		conns[0].SetWriteDeadline(time.Now().Add(time.Second))
		if WriteMessage(conns[0], &Message{Type: TypeConnect, Peer: keys[1].String()}) != nil {
			return
		}
		var id punch.SessionID
		select {
		case id = <-asked:
		case <-time.After(time.Second):
			continue
		case <-ctx.Done():
			return
		}
		for side := range 2 {
			if c, err := dialerFrom(ip)(ctx, ts.addr); err == nil {
				c.(*net.TCPConn).SetLinger(0)
				c.Write(relayHeader(id, side, RelayToken{}))
				held = append(held, c)
			}
		}
		for len(held) > 128 {
			held[0].Close()
			held = held[1:]
		}
	}
}

// legitPeer is one of the flood test's legitimate peers.
type legitPeer struct {
	c       *Client
	ip      string
	punches chan Punch
}

// startLegit starts a client from ip with key, which keeps the punches
// about partner (the attackers' are many, and must not block it).
func startLegit(t *testing.T, ctx context.Context, ts testServer, ip string, key identity.PrivateKey, partner identity.PublicKey) *legitPeer {
	lp := &legitPeer{ip: ip, punches: make(chan Punch, 16)}
	onPunch := func(p Punch) {
		if p.Peer == partner {
			select {
			case lp.punches <- p:
			default:
			}
		}
	}
	c, err := NewClient(ClientConfig{Address: ts.addr, ServerKey: ts.srv.PublicKey(), Key: key, Log: quietLog(),
		Dial: dialerFrom(ip), OnPunch: onPunch, Consent: func(k identity.PublicKey) bool { return k == partner }})
	if err != nil {
		t.Fatal(err)
	}
	lp.c = c
	var wg sync.WaitGroup
	wg.Go(func() { c.Run(ctx) })
	t.Cleanup(wg.Wait)
	return lp
}

// relayTo waits for the punch about peer and opens its relay, returning
// the relayed connection.
func (lp *legitPeer) relayTo(ctx context.Context, peer identity.PublicKey, addr string) (net.Conn, error) {
	for {
		select {
		case p := <-lp.punches:
			if p.Peer != peer {
				continue
			}
			id, err := punch.ParseSessionID(p.Session)
			if err != nil {
				return nil, err
			}
			c, err := dialerFrom(lp.ip)(ctx, addr)
			if err != nil {
				return nil, err
			}
			return DialRelay(ctx, c, id, p.Side, p.RelayToken)
		case <-ctx.Done():
			return nil, fmt.Errorf("no punch from the server: %w", ctx.Err())
		}
	}
}

// TestFloodOfSources: 100 attacking sources against a server with the
// default settings (relaying on, as `warren rendezvous` runs it): a
// third hold every connection they may in handshake, a third register
// fresh keys and flood connect requests at the legitimate peers, a third
// fill relays. Meanwhile 20 legitimate peers register, ask for sessions
// in pairs and relay: each registers within 5 s, each pair's relay
// carries data within 5 s of asking, the server's heap stays bounded,
// and once the attack ends its goroutines and heap come back down.
func TestFloodOfSources(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logged := &lineCounter{}
	log := logrus.New()
	log.SetOutput(logged)
	ts := startServer(t, ctx, ServerConfig{Relay: true, Log: log})
	keys := make([]identity.PrivateKey, 20)
	victims := make([]identity.PublicKey, 20)
	for i := range keys {
		keys[i], _ = identity.Generate()
		victims[i] = keys[i].Public()
	}
	runtime.GC()
	var ms0 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	g0 := runtime.NumGoroutine()

	fctx, stopFlood := context.WithCancel(ctx)
	var flood sync.WaitGroup
	defer flood.Wait()
	defer stopFlood()
	for i := range 100 {
		floodSource(fctx, t, &flood, ts, fmt.Sprintf("127.0.0.%d", 100+i), i%3, victims)
	}
	var peakHeap atomic.Uint64
	flood.Go(func() {
		for fctx.Err() == nil {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			peakHeap.Store(max(peakHeap.Load(), ms.HeapInuse))
			time.Sleep(100 * time.Millisecond)
		}
	})
	time.Sleep(4 * time.Second) // the pools fill
	conns, shaking, _, _ := ts.srv.guard.counts(netip.Addr{})
	ts.srv.relays.mu.Lock()
	relays := len(ts.srv.relays.pairs)
	ts.srv.relays.mu.Unlock()
	t.Logf("under attack: %d connections, %d in handshake, %d relays, %d goroutines", conns, shaking, relays, runtime.NumGoroutine())

	regs, relayed := legitRun(t, ctx, ts, keys)
	p50, p99 := quantiles(regs)
	r50, r99 := quantiles(relayed)
	t.Logf("20 legitimate peers: registration p50 %v p99 %v; relay carrying data after asking p50 %v p99 %v",
		p50.Round(time.Millisecond), p99.Round(time.Millisecond), r50.Round(time.Millisecond), r99.Round(time.Millisecond))
	stopFlood()
	flood.Wait()

	g := waitGoroutines(g0+60, 15*time.Second)
	runtime.GC()
	var ms1 runtime.MemStats
	runtime.ReadMemStats(&ms1)
	t.Logf("heap in use: %d MiB before, %d MiB at the peak, %d MiB after; goroutines %d before, %d after; %d log lines",
		ms0.HeapInuse>>20, peakHeap.Load()>>20, ms1.HeapInuse>>20, g0, g, logged.n.Load())
	if grew := int64(peakHeap.Load()) - int64(ms0.HeapInuse); grew > 256<<20 {
		t.Errorf("the heap grew by %d MiB under attack", grew>>20)
	}
	if grew := int64(ms1.HeapInuse) - int64(ms0.HeapInuse); grew > 32<<20 {
		t.Errorf("the heap is %d MiB larger after the attack", grew>>20)
	}
	if g > g0+60 {
		t.Errorf("%d goroutines after the attack, %d before", g, g0)
	}
}

// legitBudget is how long a legitimate peer may take to register, and to
// relay after asking, under the flood.
const legitBudget = 5 * time.Second * raceSlowdown

// legitRun starts the 20 legitimate peers, waits for each to register,
// then has them ask for sessions in pairs and relay; it returns how long
// each registration took, and for each peer how long from asking until
// its relay carried data. Anything over legitBudget fails the test.
func legitRun(t *testing.T, ctx context.Context, ts testServer, keys []identity.PrivateKey) (regs, relayed []time.Duration) {
	peers := make([]*legitPeer, len(keys))
	start := time.Now()
	for i, key := range keys {
		peers[i] = startLegit(t, ctx, ts, fmt.Sprintf("127.0.0.%d", 2+i), key, keys[i^1].Public())
	}
	for i, p := range peers {
		select {
		case <-p.c.Registered():
			regs = append(regs, time.Since(start))
		case <-time.After(legitBudget - time.Since(start)):
			t.Fatalf("legitimate peer %d did not register within %v of starting", i, legitBudget)
		}
		p.c.SetNAT(punch.NAT{Behind: true, Mapping: punch.MappingAddressAndPortDependent})
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := 0; i < len(peers); i += 2 {
		a, b := peers[i], peers[i+1]
		asked := time.Now()
		rctx, cancel := context.WithTimeout(ctx, legitBudget)
		defer cancel()
		for _, x := range []struct{ me, other *legitPeer }{{a, b}, {b, a}} {
			wg.Go(func() {
				c, err := x.me.relayTo(rctx, x.other.c.cfg.Key.Public(), ts.addr)
				if err != nil {
					t.Errorf("%s's relay: %v", x.me.ip, err)
					return
				}
				defer c.Close()
				pairedIn := time.Since(asked)
				c.SetDeadline(time.Now().Add(legitBudget - time.Since(asked)))
				// Written before reading, so that neither side closes
				// before its line is out.
				if _, err := c.Write([]byte(x.me.ip + "\n")); err != nil {
					t.Errorf("%s's relay: %v", x.me.ip, err)
					return
				}
				if _, err := io.ReadFull(c, make([]byte, len(x.other.ip)+1)); err != nil {
					t.Errorf("%s's relay, paired %v after asking, carried nothing: %v", x.me.ip, pairedIn.Round(time.Millisecond), err)
					return
				}
				mu.Lock()
				relayed = append(relayed, time.Since(asked))
				mu.Unlock()
			})
		}
		if err := a.c.Connect(b.c.cfg.Key.Public()); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	if len(relayed) < len(peers) {
		t.FailNow()
	}
	return regs, relayed
}
