//go:build linux

package natlab_test

import (
	"context"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/warren-p2p/warren/natlab"
	"github.com/warren-p2p/warren/natlab/labtest"
)

// TestPunchThroughCones checks that the lab allows what hole punching
// needs between two port-restricted cones: UDP packets crossing once both
// sides have sent, and TCP simultaneous open (which the silent drop of
// unsolicited SYNs makes possible).
func TestPunchThroughCones(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	lab := labtest.New(t, natlab.Config{})
	newResponder(t, lab.Server())
	a, err := lab.AddSite(ctx, "a", natlab.Cone)
	if err != nil {
		t.Fatal(err)
	}
	b, err := lab.AddSite(ctx, "b", natlab.Cone)
	if err != nil {
		t.Fatal(err)
	}

	ca, cb := udpOn(t, a.Host(), 0), udpOn(t, b.Host(), 0)
	ma, mb := mustObserve(t, ca, server(lab, 0, 0)), mustObserve(t, cb, server(lab, 0, 0))
	for range 3 {
		_, _ = ca.WriteToUDPAddrPort([]byte("punch"), mb)
		_, _ = cb.WriteToUDPAddrPort([]byte("punch"), ma)
	}
	expectFrom(t, ca, mb, time.Second, "punched UDP b→a")
	expectFrom(t, cb, ma, time.Second, "punched UDP a→b")

	// Cones preserve ports, so each side knows the other's public TCP
	// endpoint in advance; both connect at once from fixed ports.
	const pa, pb = 41000, 42000
	ea := dialRepeatedly(ctx, a.Host(), "tcp4", pa, netip.AddrPortFrom(b.PublicAddr(), pb))
	eb := dialRepeatedly(ctx, b.Host(), "tcp4", pb, netip.AddrPortFrom(a.PublicAddr(), pa))
	if err := <-ea; err != nil {
		t.Fatalf("TCP simultaneous open a→b: %v", err)
	}
	if err := <-eb; err != nil {
		t.Fatalf("TCP simultaneous open b→a: %v", err)
	}
}

// reuse sets SO_REUSEADDR and SO_REUSEPORT, as punching code does so that
// a listener and dialers can share the local port.
// dialRepeatedly connects from h's local port lport to `to` until it
// succeeds or 8 s have passed, as each side of a TCP simultaneous open
// does; the channel gets nil or the last error.
func dialRepeatedly(ctx context.Context, h *natlab.Host, network string, lport int, to netip.AddrPort) chan error {
	errc := make(chan error, 1)
	go func() {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{Port: lport}, Control: reuse}
		deadline := time.Now().Add(8 * time.Second)
		for {
			cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			c, err := h.DialContext(cctx, d, network, to.String())
			cancel()
			if err == nil {
				c.Close()
				errc <- nil
				return
			}
			if time.Now().After(deadline) {
				errc <- err
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	return errc
}

func reuse(network, address string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
		if serr == nil {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		}
	})
	if err != nil {
		return err
	}
	return serr
}
