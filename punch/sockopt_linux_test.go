package punch

import (
	"context"
	"net"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// punchedPair returns both ends of a loopback connection made as punches
// make them: dialled with DialFrom to a Listen listener.
func punchedPair(t *testing.T) (dialled, accepted net.Conn) {
	t.Helper()
	ctx := context.Background()
	ln, err := Listen(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := DialFrom(ctx, 0, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return c, s
}

// tcpOption reads an IPPROTO_TCP socket option of conn.
func tcpOption(t *testing.T, conn net.Conn, opt int) int {
	t.Helper()
	raw, err := conn.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var gerr error
	if err := raw.Control(func(fd uintptr) { v, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, opt) }); err != nil {
		t.Fatal(err)
	}
	if gerr != nil {
		t.Fatal(gerr)
	}
	return v
}

// Both ends of a punched connection, dialled and accepted, retransmit with
// linear timeouts while thin.
func TestLinearTimeoutsOnBothEnds(t *testing.T) {
	c, s := punchedPair(t)
	for name, conn := range map[string]net.Conn{"dialled": c, "accepted": s} {
		if v := tcpOption(t, conn, unix.TCP_THIN_LINEAR_TIMEOUTS); v != 1 {
			t.Errorf("%s: TCP_THIN_LINEAR_TIMEOUTS = %d", name, v)
		}
	}
}

// Every TCP connection the punch package makes or takes, and one dialled
// with ClampMSS, sends segments of at most SafeMSS, even over loopback
// (MTU 65536): a PMTU black hole drops nothing it sends.
func TestSegmentsFitSafeMSS(t *testing.T) {
	c, s := punchedPair(t)
	plain, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	d := net.Dialer{Control: ClampMSS}
	r, err := d.DialContext(context.Background(), "tcp", plain.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rs, err := plain.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	// The unclamped end takes the clamped one's announcement: what it
	// sends fits too.
	for name, conn := range map[string]net.Conn{"dialled": c, "accepted": s, "ClampMSS dialled": r, "its unclamped peer": rs} {
		if mss := tcpOption(t, conn, unix.TCP_MAXSEG); mss > SafeMSS || mss < SafeMSS-40 {
			t.Errorf("%s: TCP_MAXSEG = %d, want at most %d", name, mss, SafeMSS)
		}
	}
}
