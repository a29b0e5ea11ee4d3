//go:build linux

package natlab_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/warren-p2p/warren/natlab"
	"github.com/warren-p2p/warren/natlab/labtest"
)

// TestIPv6 checks a dual-stack lab: every single-NAT site's hosts have a
// global address that nothing translates, behind a firewall that lets out
// what they open and nothing in; what hole punching needs over IPv6 works
// between two sites whose IPv4 NATs are both symrand (UDP once both sides
// have sent, TCP simultaneous open); an Open host takes connections; a
// double NAT stays IPv4-only.
func TestIPv6(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	lab := labtest.New(t, natlab.Config{IPv6: true})
	add := func(name string, k natlab.Kind) *natlab.Site {
		s, err := lab.AddSite(ctx, name, k)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	a, b, o := add("a", natlab.SymRand), add("b", natlab.SymRand), add("o", natlab.Open)
	d, err := lab.AddDoubleNAT(ctx, "d", natlab.Cone, natlab.Cone)
	if err != nil {
		t.Fatal(err)
	}
	srv := lab.Server()
	for _, c := range []struct {
		what string
		got  netip.Addr
		want string
	}{
		{"server", srv.Addr6(), "2001:db8::2"},
		{"site a's host", a.Host().Addr6(), "2001:db8:1::2"},
		{"site b's host", b.Host().Addr6(), "2001:db8:2::2"},
		{"open host", o.Host().Addr6(), "2001:db8::1:c"},
	} {
		if c.got != netip.MustParseAddr(c.want) {
			t.Errorf("%s: IPv6 address %v, want %s", c.what, c.got, c.want)
		}
	}
	if a6 := d.Host().Addr6(); a6.IsValid() {
		t.Errorf("double NAT's host has IPv6 address %v, want none", a6)
	}
	if a.Host().Addr() != netip.MustParseAddr("10.1.0.2") {
		t.Errorf("site a's host's primary address %v, want its IPv4 one", a.Host().Addr())
	}

	// Out: the server sees the host's own address.
	ln, err := srv.Listen("tcp6", "[2001:db8::2]:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Write([]byte(c.RemoteAddr().String()))
			c.Close()
		}
	}()
	c, err := a.Host().DialContext(ctx, &net.Dialer{Timeout: 3 * time.Second}, "tcp6", ln.Addr().String())
	if err != nil {
		t.Fatalf("site a to the server over IPv6: %v", err)
	}
	buf := make([]byte, 100)
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	n, _ := c.Read(buf)
	c.Close()
	if seen, err := netip.ParseAddrPort(string(buf[:n])); err != nil || seen.Addr() != a.Host().Addr6() {
		t.Errorf("server saw site a's host as %q, want %v (no NAT66)", buf[:n], a.Host().Addr6())
	}

	// In: nothing reaches a site's host unasked; an Open host is reachable.
	inbound := func(h *natlab.Host) error {
		l, err := h.Listen("tcp6", "[::]:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		go func() {
			if c, err := l.Accept(); err == nil {
				c.Close()
			}
		}()
		to := netip.AddrPortFrom(h.Addr6(), netip.MustParseAddrPort(l.Addr().String()).Port())
		c, err := srv.DialContext(ctx, &net.Dialer{Timeout: time.Second}, "tcp6", to.String())
		if err == nil {
			c.Close()
		}
		return err
	}
	if err := inbound(a.Host()); err == nil {
		t.Error("the server opened a connection to site a's host: the firewall let it in")
	} else if !errors.Is(err, os.ErrDeadlineExceeded) && !isTimeout(err) {
		t.Errorf("inbound to site a's host: %v, want a timeout (dropped silently)", err)
	}
	if err := inbound(o.Host()); err != nil {
		t.Errorf("inbound to the open host over IPv6: %v", err)
	}

	// UDP between the two symrand sites, once both sides have sent.
	udp := func(h *natlab.Host) *net.UDPConn {
		pc, err := h.ListenPacket("udp6", "[::]:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pc.Close() })
		return pc.(*net.UDPConn)
	}
	ua, ub := udp(a.Host()), udp(b.Host())
	ea := netip.AddrPortFrom(a.Host().Addr6(), ua.LocalAddr().(*net.UDPAddr).AddrPort().Port())
	eb := netip.AddrPortFrom(b.Host().Addr6(), ub.LocalAddr().(*net.UDPAddr).AddrPort().Port())
	for range 3 {
		ua.WriteToUDPAddrPort([]byte("punch"), eb)
		ub.WriteToUDPAddrPort([]byte("punch"), ea)
	}
	expectFrom(t, ua, eb, time.Second, "UDP b→a over IPv6")
	expectFrom(t, ub, ea, time.Second, "UDP a→b over IPv6")

	// TCP simultaneous open between them, from fixed ports.
	const pa, pb = 41000, 42000
	da := dialRepeatedly(ctx, a.Host(), "tcp6", pa, netip.AddrPortFrom(b.Host().Addr6(), pb))
	db := dialRepeatedly(ctx, b.Host(), "tcp6", pb, netip.AddrPortFrom(a.Host().Addr6(), pa))
	if err := <-da; err != nil {
		t.Errorf("TCP simultaneous open a→b over IPv6: %v", err)
	}
	if err := <-db; err != nil {
		t.Errorf("TCP simultaneous open b→a over IPv6: %v", err)
	}
}
