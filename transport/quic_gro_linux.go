package transport

import (
	"encoding/binary"
	"net"

	"golang.org/x/sys/unix"
)

// enableGRO asks the kernel to hand the socket coalesced runs of datagrams
// (UDP generic receive offload): a burst that a sender wrote with
// segmentation offload can then cross the stack, NATs included, as one
// packet instead of dozens.
func enableGRO(conn *net.UDPConn) bool {
	rc, err := conn.SyscallConn()
	if err != nil {
		return false
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_GRO, 1)
	}); err != nil || serr != nil {
		return false
	}
	return true
}

// groSegmentSize returns the segment size of a coalesced datagram from its
// control messages, or 0 if it was not coalesced.
func groSegmentSize(oob []byte) int {
	for len(oob) > 0 {
		hdr, body, rest, err := unix.ParseOneSocketControlMessage(oob)
		if err != nil {
			return 0
		}
		if hdr.Level == unix.SOL_UDP && hdr.Type == unix.UDP_GRO && len(body) >= 2 {
			if len(body) >= 4 {
				return int(binary.NativeEndian.Uint32(body))
			}
			return int(binary.NativeEndian.Uint16(body))
		}
		oob = rest
	}
	return 0
}
