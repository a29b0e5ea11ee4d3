package forward

import (
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	socks5 "github.com/armon/go-socks5"
	"github.com/sirupsen/logrus"
)

// socksUDPHeader is RSV (2 bytes) and FRAG (1) of a SOCKS5 UDP datagram;
// the address and data that follow are an association frame's body.
const socksUDPHeader = 3

// associate serves a SOCKS5 UDP association (RFC 1928 section 7) over
// stream, the exit's datagram stream. It binds a UDP socket on the address
// the client reached us at, replies with it, and relays until the client's
// TCP connection ends (the association lives as long as it does), the
// stream ends, or the listeners stop. Datagrams are taken only from the
// client's IP address and, once one arrived (or if the request named it),
// from that one port; fragments are dropped, as most servers do.
func (s *socksSession) associate(stream net.Conn, req *socks5.Request, log logrus.FieldLogger) {
	start := time.Now()
	defer stream.Close()
	s.conn.hijack()
	tcp := s.conn.Conn
	local, lok := tcp.LocalAddr().(*net.TCPAddr)
	remote, rok := tcp.RemoteAddr().(*net.TCPAddr)
	if !lok || !rok {
		log.Error("udp associate over a non-TCP connection")
		return
	}
	sock, err := net.ListenUDP("udp", &net.UDPAddr{IP: local.IP})
	if err != nil {
		log.WithError(err).Warn("udp associate: cannot bind a socket")
		tcp.Write([]byte{5, CodeGeneralFailure, 0, atypIPv4, 0, 0, 0, 0, 0, 0})
		return
	}
	defer sock.Close()
	bound := sock.LocalAddr().(*net.UDPAddr).AddrPort()
	if _, err := tcp.Write(appendUDPAddr([]byte{5, CodeSucceeded, 0}, bound)); err != nil {
		return
	}
	log = log.WithField("udp", bound.String())
	log.Debug("udp association open")

	clientIP := remote.AddrPort().Addr().Unmap()
	var client atomic.Pointer[netip.AddrPort] // where replies go: set by the first datagram
	if req.DestAddr != nil && req.DestAddr.Port != 0 {
		if ip, ok := netip.AddrFromSlice(req.DestAddr.IP); ok && !ip.IsUnspecified() {
			clientIP = ip.Unmap()
		}
		ap := netip.AddrPortFrom(clientIP, uint16(req.DestAddr.Port))
		client.Store(&ap)
	}

	// The TCP connection carries nothing more; its end is the
	// association's.
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		io.Copy(io.Discard, tcp)
		sock.Close()
	})

	var r datagramResult
	r.idle = datagramPump{stream: stream, closeOther: func() { sock.Close(); tcp.Close() }}.run(s.ctx,
		func(w *idleWatch) {
			buf := datagramBuf()
			out := datagramWriter{w: stream}
			for {
				n, from, err := sock.ReadFromUDPAddrPort(buf)
				if err != nil {
					if transientUDP(err) {
						continue
					}
					return
				}
				from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
				if from.Addr() != clientIP {
					r.strangers++
					continue
				}
				if c := client.Load(); c == nil {
					client.Store(&from)
				} else if *c != from {
					r.strangers++
					continue
				}
				b := buf[:n]
				if n < socksUDPHeader+1 || b[0] != 0 || b[1] != 0 || b[2] != 0 {
					r.dropped++ // short, or a fragment
					continue
				}
				body := b[socksUDPHeader:]
				_, data, err := parseUDPAddr(body)
				if err != nil {
					r.dropped++
					continue
				}
				w.touch()
				if out.write(body) != nil {
					return
				}
				r.datagramsOut++
				r.out += int64(len(data))
			}
		},
		func(w *idleWatch) {
			// Frames land after room for the SOCKS5 header.
			buf := make([]byte, socksUDPHeader+maxDatagram)
			eachDatagram(stream, w, buf[socksUDPHeader:], func(b []byte) bool {
				_, data, err := parseUDPAddr(b)
				if err != nil {
					log.WithError(err).Warn("bad datagram frame from the exit; closing the association")
					return false
				}
				c := client.Load()
				if c == nil {
					return true // nobody to give it to yet
				}
				pkt := buf[:socksUDPHeader+len(b)]
				pkt[0], pkt[1], pkt[2] = 0, 0, 0
				if _, err := sock.WriteToUDPAddrPort(pkt, *c); err != nil && !transientUDP(err) {
					return false
				}
				r.datagramsIn++
				r.in += int64(len(data))
				return true
			})
		})
	s.l.stats.bytes(r.in, r.out)
	log.WithFields(r.fields()).WithFields(logrus.Fields{
		"bytes_in":  r.in,
		"bytes_out": r.out,
		"duration":  time.Since(start),
	}).Debug("udp association closed")
}
