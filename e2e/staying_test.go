package e2e

import (
	"context"
	"fmt"
	"regexp"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warren-p2p/warren/daemon"
	"github.com/warren-p2p/warren/natlab"
	"github.com/warren-p2p/warren/natlab/labtest"
)

// requestLoop opens a fresh stream through the forward every 50ms and
// checks one echo on it, counting successes and failures, until stop.
func requestLoop(ctx context.Context, m machine, fwd string, stop <-chan struct{}, ok, failed *atomic.Int64, lastErr *atomic.Value) {
	for {
		select {
		case <-stop:
			return
		case <-time.After(50 * time.Millisecond):
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if err := oneEcho(rctx, m, fwd); err != nil {
			failed.Add(1)
			lastErr.Store(err.Error())
		} else {
			ok.Add(1)
		}
		cancel()
	}
}

// coneLab is twoCones with a rendezvous server.
func coneLab(t testing.TB) (*natlab.Site, *natlab.Site, *world) {
	lab, a, b := twoCones(t)
	return a, b, labWorld(t, lab)
}

// TestRendezvousRestart: an established link keeps carrying requests while
// the rendezvous server is down and restarted, and both daemons register
// again on their own.
func TestRendezvousRestart(t *testing.T) {
	a, b, w := coneLab(t)
	p, fwd := echoOver(t, w, a.Host(), b.Host(), "")

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var ok, failed atomic.Int64
	var lastErr atomic.Value
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { defer close(done); requestLoop(ctx, a.Host(), fwd, stop, &ok, &failed, &lastErr) }()

	w.restartRendezvous(2 * time.Second)
	for _, side := range []struct {
		m     machine
		admin string
	}{{a.Host(), p.clientAdmin}, {b.Host(), p.serverAdmin}} {
		waitStatus(t, side.m, side.admin, 30*time.Second, "registration again", func(st daemon.Status) bool {
			return st.Rendezvous == "registered"
		})
	}
	time.Sleep(500 * time.Millisecond)
	close(stop)
	<-done
	if failed.Load() > 0 || ok.Load() < 20 {
		t.Fatalf("%d requests ok, %d failed across the restart (last error %v)", ok.Load(), failed.Load(), lastErr.Load())
	}
	t.Logf("%d requests across the rendezvous restart, none failed", ok.Load())
}

// TestRebinding: the NATs on both sides forget every mapping (conntrack
// flush) while requests run; over a TCP link and over a UDP link, new
// requests work again within 10s.
func TestRebinding(t *testing.T) {
	for _, transport := range []string{"tcp", "udp"} {
		t.Run(transport, func(t *testing.T) {
			a, b, w := coneLab(t)
			p, fwd := echoOver(t, w, a.Host(), b.Host(), transport)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			for _, s := range []*natlab.Site{a, b} {
				if err := s.Forget(ctx); err != nil {
					t.Fatal(err)
				}
			}
			waitRecovered(ctx, t, a.Host(), fwd, p.clientAdmin, "the NATs forgot their mappings")
		})
	}
}

// echoOver starts the rdp example between cm (laptop, with the forward)
// and sm (office, with an echo service) and returns the pair and the
// forward's address once the link is up. With transport set, the daemons
// may use only that transport and the link must be direct over it.
func echoOver(t testing.TB, w *world, cm, sm machine, transport string) (pair, string) {
	t.Helper()
	keys := map[string]string{"laptop": w.keygen("laptop"), "office": w.keygen("office")}
	echo := serveEcho(t, sm)
	fwd := hostPort("127.0.0.1", freePort(t, cm))
	clientRepl := []string{"127.0.0.1:13389", fwd}
	serverRepl := []string{"127.0.0.1:3389", "127.0.0.1:" + echo}
	if transport != "" {
		only := fmt.Sprintf("[link]\ntransports = [%q]\n", transport)
		clientRepl = append(clientRepl, "[[peers]]", only+"\n[[peers]]")
		serverRepl = append(serverRepl, "[[peers]]", only+"\n[[peers]]")
	}
	p := startPair(t, w, "rdp", cm, sm, "laptop", "office", keys, clientRepl, serverRepl)
	if transport != "" && p.link.Path != "direct-"+transport {
		t.Fatalf("path %q, want direct-%s", p.link.Path, transport)
	}
	return p, fwd
}

// recoveryMax is how soon new streams must work again after the network
// changed under a link.
const recoveryMax = 10 * time.Second

// waitRecovered fails the test unless a request through fwd on m succeeds
// within recoveryMax; what names the change, for the messages. It leaves
// the link connected and reports what the peer's link is now.
func waitRecovered(ctx context.Context, t testing.TB, m machine, fwd, admin, what string) {
	t.Helper()
	changed := time.Now()
	var recovered time.Duration
	for time.Since(changed) < recoveryMax {
		rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
		err := oneEcho(rctx, m, fwd)
		rcancel()
		if err == nil {
			recovered = time.Since(changed)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	st, _ := status(ctx, m, admin)
	if recovered == 0 {
		t.Fatalf("no request got through within %v after %s; status %+v", recoveryMax, what, st.Peers)
	}
	t.Logf("requests work again %v after %s; link %s %s", recovered.Round(time.Millisecond), what, st.Peers[0].Path, st.Peers[0].State)
	if st.Peers[0].State != daemon.StateConnected {
		t.Fatalf("state %s", st.Peers[0].State)
	}
}

// TestLocalAddressChange: a host behind a NAT gets a new LAN address (a new
// DHCP lease), stranding every socket bound to the old one. Over a TCP
// link and over a UDP link, with the change on either side, new requests
// work again within 10s: the daemon notices, registers again and punches a
// new link.
func TestLocalAddressChange(t *testing.T) {
	for _, transport := range []string{"tcp", "udp"} {
		for _, side := range []string{"client", "server"} {
			t.Run(transport+"/"+side, func(t *testing.T) {
				a, b, w := coneLab(t)
				p, fwd := echoOver(t, w, a.Host(), b.Host(), transport)
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				if err := oneEcho(ctx, a.Host(), fwd); err != nil {
					t.Fatal(err)
				}
				site := map[string]*natlab.Site{"client": a, "server": b}[side]
				old := site.Host().Addr()
				addr, err := site.Renumber(ctx, site.Host())
				if err != nil {
					t.Fatal(err)
				}
				waitRecovered(ctx, t, a.Host(), fwd, p.clientAdmin, fmt.Sprintf("the %s moved from %s to %s", side, old, addr))
			})
		}
	}
}

// TestRoaming: over a UDP link between a public host and a host behind a
// random-port symmetric NAT, the NAT forgets its mappings, so the link's
// next packets leave from a new public port. The public side follows the
// peer's authenticated roam announcement, and a stream open across the
// move keeps echoing.
func TestRoaming(t *testing.T) {
	lab := labtest.New(t, natlab.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	open, err := lab.AddSite(ctx, "a", natlab.Open)
	if err != nil {
		t.Fatal(err)
	}
	roamer, err := lab.AddSite(ctx, "b", natlab.SymRand)
	if err != nil {
		t.Fatal(err)
	}
	w := labWorld(t, lab)
	p, fwd := echoOver(t, w, open.Host(), roamer.Host(), "udp")
	long := startStream(ctx, t, open.Host(), fwd)
	time.Sleep(500 * time.Millisecond)

	if err := roamer.Forget(ctx); err != nil {
		t.Fatal(err)
	}
	before := long.rounds.Load()
	p.client.waitOutput(t, regexp.MustCompile(`msg="peer roamed; the UDP link follows"`), 10*time.Second)
	long.finish(t, before, "the move")
}

// deadLinkMax is how soon a link whose path died must be declared dead.
const deadLinkMax = 30 * time.Second

// TestDeadLink: every packet between two cone NATs is dropped while both
// daemons keep their rendezvous connections. Over a TCP link and over a
// UDP link, the daemon declares the link dead within 30s and connects
// again, through the relay, so that requests work again.
func TestDeadLink(t *testing.T) {
	for _, transport := range []string{"tcp", "udp"} {
		t.Run(transport, func(t *testing.T) {
			lab, a, b := twoCones(t)
			w := labWorld(t, lab)
			p, fwd := echoOver(t, w, a.Host(), b.Host(), transport)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			if err := lab.Cut(ctx, a.PublicAddr(), b.PublicAddr()); err != nil {
				t.Fatal(err)
			}
			cut := time.Now()
			p.client.waitOutput(t, regexp.MustCompile(`msg="link down"`), deadLinkMax)
			t.Logf("link declared dead %v after its path died", time.Since(cut).Round(100*time.Millisecond))
			st := waitPeer(t, a.Host(), p.clientAdmin, "office", daemon.StateConnected, linkWait)
			if st.Path != "relay" {
				t.Fatalf("path %q after the direct path died, want relay", st.Path)
			}
			if err := oneEcho(ctx, a.Host(), fwd); err != nil {
				t.Fatalf("request over the relay: %v", err)
			}
		})
	}
}
