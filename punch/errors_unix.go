//go:build unix

package punch

import "syscall"

// Errors from connect when the 4-tuple is taken: by a connection the
// listener accepted from the same peer endpoint, or one in TIME_WAIT.
const (
	errAddrInUse    = syscall.EADDRINUSE
	errAddrNotAvail = syscall.EADDRNOTAVAIL
)

// errNetUnreach is connect's error when no route leads to the address's
// network: IPv4 from a host with IPv6 alone.
const errNetUnreach = syscall.ENETUNREACH
