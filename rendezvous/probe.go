package rendezvous

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/warren-p2p/warren/punch"
)

// UDP probes. A plain probe's header is probeMagic + 12 random bytes; a
// session probe's is sessionProbeMagic + session ID + side + local port (2
// bytes) + 9 random bytes, and also tells the server which punch
// session's socket it came from. Clients pad the header with zeros to
// probeSize bytes. The answer is the header followed by the observed
// source "ip:port", sent only if it is no longer than the probe: the
// server must not amplify what a forged source sends it. Servers of
// before that rule answer only the bare header (with the same answer), so
// clients send the bare header too.
const (
	probeMagic        = "WRP\x01"
	sessionProbeMagic = "WRP\x02"
	probeLen          = 16 // a plain probe's header
	sessionProbeLen   = 32 // a session probe's header
	// probeSize is a padded probe's length: room for either header and
	// the longest "ip:port" a server observes (an IPv6 address with a
	// zone and a port).
	probeSize = sessionProbeLen + 64
)

// A TCP session probe is a plain TCP connection to the control port that
// sends tcpProbeMagic + session ID + side (21 bytes) instead of a TLS
// ClientHello; the server answers with the observed "ip:port\n" and
// closes. Its port is the base of the peer's prediction for a sequential
// NAT.
const (
	tcpProbeMagic = "WRP\x03"
	tcpProbeLen   = 21
)

// ProbeSessionTCP sends a TCP session probe to server over conn (dialled
// from the port the punch will use) and returns the endpoint the server saw.
// It closes conn.
func ProbeSessionTCP(ctx context.Context, conn net.Conn, session punch.SessionID, side int) (netip.AddrPort, error) {
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := conn.Write(header(tcpProbeMagic, session, side)); err != nil {
		return netip.AddrPort{}, fmt.Errorf("tcp probe: %w", err)
	}
	line, err := bufio.NewReader(io.LimitReader(conn, 64)).ReadString('\n')
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("tcp probe: %w", err)
	}
	return netip.ParseAddrPort(strings.TrimSpace(line))
}

// sessionProbe is what a session probe tells the server.
type sessionProbe struct {
	session punch.SessionID
	side    int
	// localPort is the socket's own port, which a peer on the same LAN
	// reaches directly (the server cannot observe it).
	localPort uint16
}

// parseProbe reads UDP probe req from from (already unmapped): it returns
// the answer, or nil if the answer would be longer than req, and the
// session it names if it is a session probe. Anything else is not ok.
func parseProbe(req []byte, from netip.AddrPort) (reply []byte, sp *sessionProbe, ok bool) {
	var hdr int
	switch {
	case len(req) >= probeLen && string(req[:4]) == probeMagic:
		hdr = probeLen
	case len(req) >= sessionProbeLen && string(req[:4]) == sessionProbeMagic && req[20] <= 1:
		hdr = sessionProbeLen
		sp = &sessionProbe{side: int(req[20]), localPort: binary.BigEndian.Uint16(req[21:23])}
		copy(sp.session[:], req[4:20])
	default:
		return nil, nil, false
	}
	addr := from.String()
	if hdr+len(addr) > len(req) {
		return nil, sp, true
	}
	return append(bytes.Clone(req[:hdr]), addr...), sp, true
}

// ProbeUDP sends one probe from pc to server and returns the address the
// server saw it come from. It returns when ctx ends without an answer.
func ProbeUDP(ctx context.Context, pc net.PacketConn, server net.Addr) (netip.AddrPort, error) {
	return probe(ctx, pc, server, plainProbe())
}

// plainProbe returns a new plain probe header.
func plainProbe() []byte {
	req := make([]byte, probeLen)
	copy(req, probeMagic)
	rand.Read(req[len(probeMagic):])
	return req
}

// writeProbe sends the probe with header hdr to server: padded, then
// bare for older servers (see probeSize).
func writeProbe(pc net.PacketConn, hdr []byte, server net.Addr) error {
	padded := make([]byte, probeSize)
	copy(padded, hdr)
	if _, err := pc.WriteTo(padded, server); err != nil {
		return err
	}
	_, err := pc.WriteTo(hdr, server)
	return err
}

// parseReply reports whether reply answers the probe with header req and,
// if so, returns the endpoint it names.
func parseReply(req, reply []byte) (mapped netip.AddrPort, ok bool, err error) {
	addr, ok := bytes.CutPrefix(reply, req)
	if !ok || len(addr) == 0 {
		return netip.AddrPort{}, false, nil
	}
	mapped, err = netip.ParseAddrPort(string(addr))
	return mapped, true, err
}

// unmap turns an IPv4-mapped IPv6 address (as a dual-stack socket reports
// IPv4 peers) into plain IPv4.
func unmap(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

// ProbeSession is ProbeUDP from a punch session's socket: the server also
// passes the observed endpoint, and the socket's local port, to the peer on
// the session's other side.
func ProbeSession(ctx context.Context, pc net.PacketConn, server net.Addr, session punch.SessionID, side int) (netip.AddrPort, error) {
	req := make([]byte, sessionProbeLen)
	copy(req, sessionProbeMagic)
	copy(req[4:], session[:])
	req[20] = byte(side)
	if ua, ok := pc.LocalAddr().(*net.UDPAddr); ok {
		binary.BigEndian.PutUint16(req[21:23], uint16(ua.Port))
	}
	rand.Read(req[23:])
	return probe(ctx, pc, server, req)
}

// probeResend is how long a probe waits for its answer before it goes
// again, doubling up to probeResendMax. A session probe is sent once per
// session and the peer's punches wait for it: on a lossy uplink (a few
// packets in a hundred lost, in bursts) one lost probe or answer would
// cost the session every direct path.
const (
	probeResend    = 250 * time.Millisecond
	probeResendMax = time.Second
)

func probe(ctx context.Context, pc net.PacketConn, server net.Addr, req []byte) (netip.AddrPort, error) {
	stop := context.AfterFunc(ctx, func() { pc.SetReadDeadline(time.Unix(1, 0)) })
	defer pc.SetReadDeadline(time.Time{}) // after stop: the socket goes on to punch
	defer stop()
	buf := make([]byte, 128)
	for wait := probeResend; ; wait = min(2*wait, probeResendMax) {
		if err := writeProbe(pc, req, server); err != nil {
			return netip.AddrPort{}, fmt.Errorf("udp probe %s: %w", server, err)
		}
		resend := time.Now().Add(wait)
		deadline := resend
		if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
			deadline = dl
		}
		pc.SetReadDeadline(deadline)
		if err := ctx.Err(); err != nil {
			// AfterFunc may have fired before the line above.
			return netip.AddrPort{}, fmt.Errorf("udp probe %s: %w", server, err)
		}
		mapped, err := readReply(pc, req, buf)
		var ne net.Error
		if err == nil || !errors.As(err, &ne) || !ne.Timeout() || deadline.Before(resend) || ctx.Err() != nil {
			if err != nil {
				return netip.AddrPort{}, fmt.Errorf("udp probe %s: %w", server, err)
			}
			return mapped, nil
		}
	}
}

// readReply reads from pc until the answer to req arrives, or an error.
func readReply(pc net.PacketConn, req, buf []byte) (netip.AddrPort, error) {
	for {
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			return netip.AddrPort{}, err
		}
		if mapped, ok, err := parseReply(req, buf[:n]); ok {
			return mapped, err
		}
	}
}
