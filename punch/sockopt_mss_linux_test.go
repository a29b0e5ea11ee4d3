package punch

import (
	"context"
	"net"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// Every TCP connection the punch package makes or takes, and one dialled
// with ClampMSS, sends segments of at most SafeMSS, even over loopback
// (MTU 65536): a PMTU black hole drops nothing it sends.
func TestSegmentsFitSafeMSS(t *testing.T) {
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
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	plain, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	d := net.Dialer{Control: ClampMSS}
	r, err := d.DialContext(ctx, "tcp", plain.Addr().String())
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
		raw, err := conn.(syscall.Conn).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var mss int
		var gerr error
		raw.Control(func(fd uintptr) { mss, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_MAXSEG) })
		if gerr != nil || mss > SafeMSS || mss < SafeMSS-40 {
			t.Errorf("%s: TCP_MAXSEG = %d (%v), want at most %d", name, mss, gerr, SafeMSS)
		}
	}
}
