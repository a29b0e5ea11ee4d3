//go:build unix

package punch

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// reuseControl lets the listener, the rendezvous connection and every punch
// attempt share one local port, so the NAT maps them all to one public port.
func reuseControl(network, address string, c syscall.RawConn) error {
	var opErr error
	err := c.Control(func(fd uintptr) {
		if opErr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); opErr != nil {
			return
		}
		if opErr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); opErr != nil {
			return
		}
		if opErr = linearTimeouts(int(fd)); opErr != nil {
			return
		}
		opErr = clampMSS(int(fd))
	})
	if err != nil {
		return err
	}
	return opErr
}

// ClampMSS is a net.Dialer or net.ListenConfig Control function that
// limits a TCP socket's segments to SafeMSS, for connections that
// reusable ports are not wanted for: a relay's, the rendezvous server's.
func ClampMSS(network, address string, c syscall.RawConn) error {
	var opErr error
	if err := c.Control(func(fd uintptr) { opErr = clampMSS(int(fd)) }); err != nil {
		return err
	}
	return opErr
}

// clampMSS sets TCP_MAXSEG before the connection is made, so that the
// SYN (or a listener's SYN-ACK) announces SafeMSS and both ends send no
// larger segment.
func clampMSS(fd int) error {
	return unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_MAXSEG, SafeMSS)
}
