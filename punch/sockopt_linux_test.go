package punch

import (
	"context"
	"net"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// Both ends of a punched connection, dialled and accepted, retransmit with
// linear timeouts while thin.
func TestLinearTimeoutsOnBothEnds(t *testing.T) {
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
	for name, conn := range map[string]net.Conn{"dialled": c, "accepted": s} {
		raw, err := conn.(syscall.Conn).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var v int
		var gerr error
		raw.Control(func(fd uintptr) {
			v, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_THIN_LINEAR_TIMEOUTS)
		})
		if gerr != nil || v != 1 {
			t.Errorf("%s: TCP_THIN_LINEAR_TIMEOUTS = %d, %v", name, v, gerr)
		}
	}
}
