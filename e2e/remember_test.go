package e2e

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/warren-p2p/warren/daemon"
)

// TestRememberedRelay: two cones whose direct packets the lab's internet
// drops link through the relay once its head start for direct paths is
// over. Restarted with their state directory kept, both daemons remember
// that these networks ended on the relay: the relay goes first, the link
// is up well within that head start, and status says why.
func TestRememberedRelay(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rc := relayedCones(ctx, t)
	a, b, w, p, fwd := rc.a, rc.b, rc.w, rc.pair, rc.fwd
	if p.link.Remembered != nil {
		t.Fatalf("first run: remembered %+v; nothing was", p.link.Remembered)
	}
	first := p.link.SetupMs

	stopProcess(t, p.client)
	stopProcess(t, p.server)
	p.server = start(t, b.Host(), "office-again", "up", "-c", filepath.Join(w.dir, "office.toml"))
	p.client = start(t, a.Host(), "laptop-again", "up", "-c", filepath.Join(w.dir, "laptop.toml"))
	for _, end := range []struct {
		m           machine
		admin, peer string
	}{{a.Host(), p.clientAdmin, "office"}, {b.Host(), p.serverAdmin, "laptop"}} {
		st := waitPeer(t, end.m, end.admin, end.peer, daemon.StateConnected, linkWait)
		t.Logf("restarted, %s's link: %s up %.0f ms after the connect request; %s", end.peer, st.Path, st.SetupMs, st.Why)
		if st.Path != "relay" {
			t.Errorf("%s: path %q, want relay", end.peer, st.Path)
		}
		if st.Remembered == nil || st.Remembered.Path != "relay" {
			t.Errorf("%s: remembered %+v, want the first run's relay", end.peer, st.Remembered)
		}
		if !strings.HasPrefix(st.Why, "the relay went first") {
			t.Errorf("%s: why %q does not say the relay went first", end.peer, st.Why)
		}
		// The head start the first run waited out is 3 s on this path.
		if st.SetupMs >= 2000 || st.SetupMs >= first/2 {
			t.Errorf("%s: link up %.0f ms after the connect request (first run %.0f ms): the relay did not go first", end.peer, st.SetupMs, first)
		}
	}
	if err := oneEcho(ctx, a.Host(), fwd); err != nil {
		t.Fatalf("echo over the remembered relay: %v", err)
	}
}
