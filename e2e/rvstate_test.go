package e2e

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/warren-p2p/warren/daemon"
)

// TestTwoDaemonsOneKey performs issue 19's finding 3: a second daemon
// started with the first's key file. The first is told why it lost its
// registration, says "another daemon uses this key" at error level with
// the second's address, shows it in its status, and stays away, so the
// second keeps its registration (they flapped every 0.2 to 1.4 s).
func TestTwoDaemonsOneKey(t *testing.T) {
	w := newWorld(t, localhost{}, hostPort("127.0.0.1", freePort(t, localhost{})))
	keys := map[string]string{"laptop": w.keygen("laptop"), "home": w.keygen("home")}
	firstAdmin := hostPort("127.0.0.1", freePort(t, localhost{}))
	secondAdmin := hostPort("127.0.0.1", freePort(t, localhost{}))
	registered := func(st daemon.Status) bool { return st.Rendezvous == "registered" }
	first := start(t, localhost{}, "home", "up", "-c", w.render("browser-exit/home.toml", "home", firstAdmin, keys))
	waitStatus(t, localhost{}, firstAdmin, 10*time.Second, "registration", registered)
	second := start(t, localhost{}, "home2", "up", "-c", w.render("browser-exit/home.toml", "home2", secondAdmin, keys))
	waitStatus(t, localhost{}, secondAdmin, 10*time.Second, "registration", registered)

	first.waitOutput(t, regexp.MustCompile(`level=error msg="another daemon uses this key \(registered from 127\.0\.0\.1:\d+\)`), 5*time.Second)
	st := waitStatus(t, localhost{}, firstAdmin, 5*time.Second, "rendezvous error", func(st daemon.Status) bool { return st.RendezvousError != "" })
	if st.Rendezvous != "connecting" || !strings.Contains(st.RendezvousError, "another daemon uses this key (registered from 127.0.0.1:") || st.RendezvousSince == nil {
		t.Errorf("the first daemon's status: %q %q since %v", st.Rendezvous, st.RendezvousError, st.RendezvousSince)
	}
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if st, err := status(context.Background(), localhost{}, secondAdmin); err == nil && st.Rendezvous != "registered" {
			t.Fatalf("the second daemon lost its registration: %+v", st)
		}
	}
	for _, p := range []*process{first, second} {
		if n := strings.Count(p.output(), "rendezvous connection lost"); n > 0 {
			t.Errorf("%s: %d lines \"rendezvous connection lost\"", p.name, n)
		}
	}
}
