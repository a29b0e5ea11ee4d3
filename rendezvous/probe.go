package rendezvous

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"net/netip"
)

// probeMagic opens every UDP probe request and reply.
const probeMagic = "WRP\x01"

const probeLen = 16

func probeReply(req []byte, from net.Addr) ([]byte, bool) {
	if len(req) != probeLen || string(req[:len(probeMagic)]) != probeMagic {
		return nil, false
	}
	ua, ok := from.(*net.UDPAddr)
	if !ok {
		return nil, false
	}
	ap := ua.AddrPort()
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	return append(bytes.Clone(req), ap.String()...), true
}

// ProbeUDP sends one probe from pc to server and returns the address the
// server saw it come from. It returns when ctx ends without an answer.
func ProbeUDP(ctx context.Context, pc net.PacketConn, server net.Addr) (netip.AddrPort, error) {
	req := make([]byte, probeLen)
	copy(req, probeMagic)
	rand.Read(req[len(probeMagic):])
	if dl, ok := ctx.Deadline(); ok {
		pc.SetReadDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { pc.SetReadDeadline(aLongTimeAgo) })
	defer stop()
	if _, err := pc.WriteTo(req, server); err != nil {
		return netip.AddrPort{}, fmt.Errorf("udp probe %s: %w", server, err)
	}
	buf := make([]byte, 128)
	for {
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			return netip.AddrPort{}, fmt.Errorf("udp probe %s: %w", server, err)
		}
		if n > probeLen && bytes.Equal(buf[:probeLen], req) {
			return netip.ParseAddrPort(string(buf[probeLen:n]))
		}
	}
}
