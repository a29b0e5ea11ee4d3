//go:build windows

package punch

import "golang.org/x/sys/windows"

// Errors from connect when the 4-tuple is taken.
const (
	errAddrInUse    = windows.WSAEADDRINUSE
	errAddrNotAvail = windows.WSAEADDRNOTAVAIL
)

// errNetUnreach is connect's error when no route leads to the address's
// network.
const errNetUnreach = windows.WSAENETUNREACH
