package e2e

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/warren-p2p/warren/daemon"
)

// TestPunchPortFlood is issue 15's finding 8 with the real binary: home
// runs with 256 file descriptors, and 40 loopback sources open 30
// connections each to its punch port and hold them, saying nothing. The
// old acceptor closed the port for good at the first EMFILE while status
// still said "registered". Now the port must still accept once the flood
// ends, and laptop must still get its link.
func TestPunchPortFlood(t *testing.T) {
	w := newWorld(t, localhost{}, hostPort("127.0.0.1", freePort(t, localhost{})))
	keys := map[string]string{"laptop": w.keygen("laptop"), "home": w.keygen("home")}
	homeAdmin := hostPort("127.0.0.1", freePort(t, localhost{}))
	laptopAdmin := hostPort("127.0.0.1", freePort(t, localhost{}))
	home := startPath(t, localhost{}, "home", "/bin/sh", "-c", `ulimit -n 256 && exec "$0" "$@"`,
		warrenBin, "up", "-c", w.render("browser-exit/home.toml", "home", homeAdmin, keys))
	st := waitStatus(t, localhost{}, homeAdmin, 10*time.Second, "registration", func(st daemon.Status) bool {
		return st.Rendezvous == "registered" && st.PunchPort != 0
	})
	punchAddr := hostPort("127.0.0.1", strconv.Itoa(st.PunchPort))

	conns, refused := flood(punchAddr, 40, 30)
	t.Logf("flood: %d connections held, %d refused or timed out", len(conns), refused)
	time.Sleep(2 * time.Second) // held while the daemon runs out of descriptors
	for _, c := range conns {
		c.Close()
	}

	// The port accepts again: a connection is taken and held for its
	// hello, not refused.
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", punchAddr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("home's punch port was closed by the flood: %v\n%s", err, home.output())
		}
		if time.Now().After(deadline) {
			t.Fatalf("home's punch port does not accept after the flood: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	start(t, localhost{}, "laptop", "up", "-c", w.render("browser-exit/laptop.toml", "laptop", laptopAdmin, keys,
		"127.0.0.1:1080", hostPort("127.0.0.1", freePort(t, localhost{}))))
	waitPeer(t, localhost{}, laptopAdmin, "home", daemon.StateConnected, 30*time.Second)
	waitPeer(t, localhost{}, homeAdmin, "laptop", daemon.StateConnected, 10*time.Second)
	t.Logf("home ran out of descriptors during the flood: %v", strings.Contains(home.output(), "accept failed; retrying"))
}

// flood opens perSource silent connections to addr from each of sources
// loopback addresses (127.0.1.1 and on), 50 at a time, and returns those
// that connected; connects that fail or take over a second are counted.
func flood(addr string, sources, perSource int) (held []net.Conn, failed int) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 50)
	for s := range sources {
		src := netip.AddrFrom4([4]byte{127, 0, 1, byte(1 + s)})
		d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0)), Timeout: time.Second}
		for range perSource {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				c, err := d.DialContext(context.Background(), "tcp", addr)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					failed++
					return
				}
				held = append(held, c)
			})
		}
	}
	wg.Wait()
	return held, failed
}
