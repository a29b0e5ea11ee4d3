package e2e

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warren-p2p/warren/daemon"
	"github.com/warren-p2p/warren/natlab"
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
func coneLab(t *testing.T) (*natlab.Site, *natlab.Site, *world) {
	lab, a, b := twoCones(t)
	return a, b, labWorld(t, lab)
}

// TestRendezvousRestart: an established link keeps carrying requests while
// the rendezvous server is down and restarted, and both daemons register
// again on their own.
func TestRendezvousRestart(t *testing.T) {
	a, b, w := coneLab(t)
	keys := map[string]string{"laptop": w.keygen("laptop"), "office": w.keygen("office")}
	echo := serveEcho(t, b.Host())
	fwd := hostPort("127.0.0.1", freePort(t, a.Host()))
	p := startPair(t, w, "rdp", a.Host(), b.Host(), "laptop", "office", keys,
		[]string{"127.0.0.1:13389", fwd}, []string{"127.0.0.1:3389", "127.0.0.1:" + echo})

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
		waitRegistered(t, side.m, side.admin, 30*time.Second)
	}
	time.Sleep(500 * time.Millisecond)
	close(stop)
	<-done
	if failed.Load() > 0 || ok.Load() < 20 {
		t.Fatalf("%d requests ok, %d failed across the restart (last error %v)", ok.Load(), failed.Load(), lastErr.Load())
	}
	t.Logf("%d requests across the rendezvous restart, none failed", ok.Load())
}

func waitRegistered(t *testing.T, m machine, admin string, max time.Duration) {
	t.Helper()
	deadline := time.Now().Add(max)
	for time.Now().Before(deadline) {
		st, err := status(context.Background(), m, admin)
		if err == nil && st.Rendezvous == "registered" {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s did not register again within %v", admin, max)
}

// TestRebinding: the NATs on both sides forget every mapping (conntrack
// flush) while requests run; over a TCP link and over a UDP link, new
// requests work again within 10s.
func TestRebinding(t *testing.T) {
	for _, transport := range []string{"tcp", "udp"} {
		t.Run(transport, func(t *testing.T) {
			a, b, w := coneLab(t)
			keys := map[string]string{"laptop": w.keygen("laptop"), "office": w.keygen("office")}
			echo := serveEcho(t, b.Host())
			fwd := hostPort("127.0.0.1", freePort(t, a.Host()))
			only := fmt.Sprintf("[link]\ntransports = [%q]\n", transport)
			p := startPair(t, w, "rdp", a.Host(), b.Host(), "laptop", "office", keys,
				[]string{"127.0.0.1:13389", fwd, "[[peers]]", only + "\n[[peers]]"},
				[]string{"127.0.0.1:3389", "127.0.0.1:" + echo, "[[peers]]", only + "\n[[peers]]"})
			if p.link.Path != "direct-"+transport {
				t.Fatalf("path %q, want direct-%s", p.link.Path, transport)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			for _, s := range []*natlab.Site{a, b} {
				if err := s.Forget(ctx); err != nil {
					t.Fatal(err)
				}
			}
			forgot := time.Now()
			var recovered time.Duration
			for time.Since(forgot) < 10*time.Second {
				rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
				err := oneEcho(rctx, a.Host(), fwd)
				rcancel()
				if err == nil {
					recovered = time.Since(forgot)
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if recovered == 0 {
				st, _ := status(ctx, a.Host(), p.clientAdmin)
				t.Fatalf("no request got through within 10s of the NATs forgetting their mappings; status %+v", st.Peers)
			}
			st, _ := status(ctx, a.Host(), p.clientAdmin)
			t.Logf("requests work again %v after the flush; link %s %s", recovered.Round(time.Millisecond), st.Peers[0].Path, st.Peers[0].State)
			if st.Peers[0].State != daemon.StateConnected {
				t.Fatalf("state %s", st.Peers[0].State)
			}
		})
	}
}
