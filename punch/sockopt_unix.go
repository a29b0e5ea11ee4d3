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
		opErr = linearTimeouts(int(fd))
	})
	if err != nil {
		return err
	}
	return opErr
}
