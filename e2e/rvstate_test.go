package e2e

import (
	"context"
	"io"
	"net"
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

// socksConnectReply sends a SOCKS5 CONNECT for 192.0.2.1:80 to the proxy
// at addr and returns the reply code, and how long it took.
func socksConnectReply(t *testing.T, addr string) (byte, time.Duration) {
	t.Helper()
	start := time.Now()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	var b [10]byte
	if _, err := c.Write([]byte{5, 1, 0}); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, b[:2]); err != nil || b[1] != 0 {
		t.Fatalf("SOCKS5 greeting: % x, %v", b[:2], err)
	}
	if _, err := c.Write([]byte{5, 1, 0, 1, 192, 0, 2, 1, 0, 80}); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, b[:]); err != nil {
		t.Fatalf("SOCKS5 reply: %v", err)
	}
	return b[1], time.Since(start)
}

// TestOfflinePeer performs issue 19's finding 1: laptop runs while home
// does not. Its status says home is offline (not registered with the
// server) and since when, it logs so at info, and a SOCKS5 request through
// home is answered "host unreachable" (4) at once, not after 15 s. When
// home starts, the link comes up.
func TestOfflinePeer(t *testing.T) {
	w := newWorld(t, localhost{}, hostPort("127.0.0.1", freePort(t, localhost{})))
	keys := map[string]string{"laptop": w.keygen("laptop"), "home": w.keygen("home")}
	laptopAdmin, homeAdmin := hostPort("127.0.0.1", freePort(t, localhost{})), hostPort("127.0.0.1", freePort(t, localhost{}))
	socks := hostPort("127.0.0.1", freePort(t, localhost{}))
	laptop := start(t, localhost{}, "laptop", "up", "-c", w.render("browser-exit/laptop.toml", "laptop", laptopAdmin, keys,
		"127.0.0.1:1080", socks))
	st := waitStatus(t, localhost{}, laptopAdmin, 10*time.Second, "offline peer", func(st daemon.Status) bool {
		return len(st.Peers) == 1 && st.Peers[0].State == daemon.StateOffline
	})
	if row := st.Peers[0]; row.Error != "offline (not registered with the server)" || row.Since == nil || time.Since(*row.Since) > time.Minute {
		t.Errorf("home's row: %+v", row)
	}
	// The line says where the config sets home's key: with consent, a
	// wrong key there looks like an offline peer.
	laptop.waitOutput(t, regexp.MustCompile(`level=info msg="peer is offline \(not registered with the server\)" peer=home `+
		`what_to_check="if home is running: that its public_key at \S+laptop\.toml:\d+ is the key it runs with`), time.Second)
	code, took := socksConnectReply(t, socks)
	if code != 4 || took > 5*time.Second {
		t.Errorf("SOCKS5 to an offline peer: reply %d after %v, want 4 at once", code, took)
	}
	laptop.waitOutput(t, regexp.MustCompile(`level=info msg="cannot reach peer".*offline`), 5*time.Second)

	start(t, localhost{}, "home", "up", "-c", w.render("browser-exit/home.toml", "home", homeAdmin, keys))
	waitStatus(t, localhost{}, laptopAdmin, 20*time.Second, "link to home", func(st daemon.Status) bool {
		return st.Peers[0].State == daemon.StateConnected
	})
}

// TestWrongServerKey performs issue 19's finding 4 with the real binary:
// a daemon that pins another key than the server's says so once at error
// level, naming rendezvous.public_key, shows it in its status, and does
// not try again within seconds (it warned and retried four times a
// second at first, forever).
func TestWrongServerKey(t *testing.T) {
	w := newWorld(t, localhost{}, hostPort("127.0.0.1", freePort(t, localhost{})))
	keys := map[string]string{"laptop": w.keygen("laptop"), "home": w.keygen("home")}
	wrong := w.keygen("not-the-server")
	admin := hostPort("127.0.0.1", freePort(t, localhost{}))
	home := start(t, localhost{}, "home", "up", "-c", w.render("browser-exit/home.toml", "home", admin, keys, w.rvKey, wrong))
	st := waitStatus(t, localhost{}, admin, 10*time.Second, "rendezvous error", func(st daemon.Status) bool { return st.RendezvousError != "" })
	if !strings.Contains(st.RendezvousError, "rendezvous.public_key") {
		t.Errorf("rendezvous_error %q does not name rendezvous.public_key", st.RendezvousError)
	}
	time.Sleep(2 * time.Second)
	out := home.output()
	if n := strings.Count(out, `level=error msg="the rendezvous server refuses this daemon; fix rendezvous.public_key"`); n != 1 {
		t.Errorf("%d error lines naming rendezvous.public_key in 2 s, want 1", n)
	}
	if strings.Contains(out, "rendezvous connection lost") {
		t.Error("a wrong server key was retried as a transient error")
	}
}
