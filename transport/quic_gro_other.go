//go:build !linux

package transport

import "net"

func enableGRO(*net.UDPConn) bool { return false }

func groSegmentSize([]byte) int { return 0 }
