//go:build !linux

package session

import (
	"net"
	"time"
)

// tcpRTT reports no round trip where reading the kernel's takes code of
// its own (TCP_INFO is Linux's): the race's gate then waits for the UDP
// path's measurement.
func tcpRTT(net.Conn) (time.Duration, bool) { return 0, false }
