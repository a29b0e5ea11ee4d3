//go:build unix

package punch

import "syscall"

// Errors from connect when the 4-tuple is taken: by a connection the
// listener accepted from the same peer endpoint, or one in TIME_WAIT.
const (
	errAddrInUse    = syscall.EADDRINUSE
	errAddrNotAvail = syscall.EADDRNOTAVAIL
)
