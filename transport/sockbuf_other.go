//go:build !linux

package transport

import "net"

// setSocketBuffers asks for size-byte socket buffers (best effort).
func setSocketBuffers(conn *net.UDPConn, size int) {
	_ = conn.SetReadBuffer(size)
	_ = conn.SetWriteBuffer(size)
}

// socketBuffers cannot read the sizes back portably.
func socketBuffers(*net.UDPConn) (rcv, snd int) { return 0, 0 }
