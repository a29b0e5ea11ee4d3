package forward

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
)

// datagramResult is what one datagram stream carried, for its log line.
type datagramResult struct {
	in, out                   int64  // payload bytes, as a stream's bytes_in and bytes_out
	datagramsIn, datagramsOut uint64 // datagrams, the same ways
	denied                    uint64 // refused by the ACL
	dropped                   uint64 // could not be sent
	strangers                 uint64 // came from an address nothing was sent to
	idle                      bool   // ended by the idle timeout
}

func (r *datagramResult) fields() logrus.Fields {
	f := logrus.Fields{"datagrams_in": r.datagramsIn, "datagrams_out": r.datagramsOut}
	if r.denied > 0 {
		f["datagrams_denied"] = r.denied
	}
	if r.dropped > 0 {
		f["datagrams_dropped"] = r.dropped
	}
	if r.strangers > 0 {
		f["datagrams_from_strangers"] = r.strangers
	}
	if r.idle {
		f["reason"] = "idle"
	}
	return f
}

// idleWatch closes what a datagram stream holds once nothing passed for
// d. UDP has no end of stream: without it, a client that goes quiet
// would hold its stream and sockets forever.
type idleWatch struct {
	last atomic.Int64 // unix nanoseconds of the last datagram
	idle atomic.Bool
}

func (w *idleWatch) touch() { w.last.Store(time.Now().UnixNano()) }

// run calls stop once d passes without touch, or when ctx or done ends.
func (w *idleWatch) run(ctx context.Context, done <-chan struct{}, d time.Duration, stop func()) {
	w.touch()
	t := time.NewTicker(min(max(d/4, 10*time.Millisecond), time.Second))
	defer t.Stop()
	for {
		select {
		case <-t.C:
			if time.Since(time.Unix(0, w.last.Load())) >= d {
				w.idle.Store(true)
				stop()
				return
			}
		case <-ctx.Done():
			stop()
			return
		case <-done:
			return
		}
	}
}

// datagramPump carries one datagram stream's two directions under an idle
// watch.
type datagramPump struct {
	stream net.Conn
	// closeOther closes the other side (its socket), so that the
	// direction reading it ends too.
	closeOther func()
	// idle ends both directions after this long without a datagram;
	// zero means never.
	idle time.Duration
}

// run runs up in this goroutine and down in another. When either ends (or
// ctx, or the idle timeout), the stream and the other side are closed, so
// that both end. It reports whether the idle timeout ended them.
func (p datagramPump) run(ctx context.Context, up, down func(w *idleWatch)) (idled bool) {
	var w idleWatch
	var once sync.Once
	closeBoth := func() {
		once.Do(func() {
			p.stream.Close()
			p.closeOther()
		})
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	idle := p.idle
	if idle <= 0 {
		idle = 1<<63 - 1 // no idle timeout
	}
	wg.Go(func() { w.run(ctx, done, idle, closeBoth) })
	wg.Go(func() {
		defer closeBoth()
		down(&w)
	})
	up(&w)
	closeBoth()
	close(done)
	wg.Wait()
	return w.idle.Load()
}

// eachDatagram reads stream's frames into buf until the stream ends or f
// returns false, touching w and calling f for each.
func eachDatagram(stream io.Reader, w *idleWatch, buf []byte, f func(b []byte) bool) {
	for {
		b, err := readDatagram(stream, buf)
		if err != nil {
			return
		}
		w.touch()
		if !f(b) {
			return
		}
	}
}

// relayConnected carries a UDP forward's datagrams between stream and
// sock, a UDP socket connected to the target.
func relayConnected(ctx context.Context, stream net.Conn, sock *net.UDPConn, idle time.Duration) datagramResult {
	var r datagramResult
	r.idle = datagramPump{stream: stream, closeOther: func() { sock.Close() }, idle: idle}.run(ctx,
		func(w *idleWatch) {
			eachDatagram(stream, w, datagramBuf(), func(b []byte) bool {
				r.datagramsIn++
				r.in += int64(len(b))
				_, err := sock.Write(b)
				return err == nil || transientUDP(err)
			})
		},
		func(w *idleWatch) {
			buf := datagramBuf()
			out := datagramWriter{w: stream}
			for {
				n, err := sock.Read(buf)
				if err != nil {
					if transientUDP(err) {
						continue
					}
					return
				}
				w.touch()
				if out.write(buf[:n]) != nil {
					return
				}
				r.datagramsOut++
				r.out += int64(n)
			}
		})
	return r
}

// transientUDP reports errors that end one datagram, not the flow: an
// ICMP port unreachable for an earlier datagram reaches a connected UDP
// socket as ECONNREFUSED, and a DNS client, say, simply retries.
func transientUDP(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) ||
		errors.Is(err, syscall.ENETUNREACH) || errors.Is(err, syscall.EMSGSIZE)
}

// Bounds on what one association remembers.
const (
	maxAssociationRoutes = 256  // destinations whose verdict is cached
	maxAssociationPeers  = 1024 // addresses replies are accepted from
)

// associate relays a SOCKS5 UDP association's datagrams through sock, an
// unconnected UDP socket. Each destination is authorized as a UDP target
// request (names resolved here, every address checked) the first time it
// is seen; replies are passed back only from addresses datagrams were sent
// to, as a port-restricted NAT would, so the association is no open door
// into the exit's network.
func (s *Server) associate(ctx context.Context, stream net.Conn, sock *net.UDPConn, peer string, log logrus.FieldLogger) datagramResult {
	var r datagramResult
	var mu sync.Mutex
	sentTo := make(map[netip.AddrPort]bool)
	routes := make(map[udpAddr]netip.AddrPort) // invalid AddrPort: denied

	route := func(dst udpAddr) netip.AddrPort {
		if ap, ok := routes[dst]; ok {
			return ap
		}
		actx, cancel := context.WithTimeout(ctx, s.cfg.DialTimeout)
		g, err := s.policy.Load().Authorize(actx, peer, Request{Kind: KindUDPTarget, Payload: dst.String()})
		cancel()
		var ap netip.AddrPort
		if err != nil {
			log.WithError(err).WithField("destination", dst.String()).Info("datagram refused")
		} else {
			ap = g.Addrs[0]
		}
		if len(routes) >= maxAssociationRoutes {
			clear(routes)
		}
		routes[dst] = ap
		return ap
	}

	r.idle = datagramPump{stream: stream, closeOther: func() { sock.Close() }, idle: s.cfg.UDPIdleTimeout}.run(ctx,
		func(w *idleWatch) {
			eachDatagram(stream, w, datagramBuf(), func(b []byte) bool {
				dst, data, err := parseUDPAddr(b)
				if err != nil {
					log.WithError(err).Warn("bad datagram frame; closing the association")
					return false
				}
				ap := route(dst)
				if !ap.IsValid() {
					r.denied++
					return true
				}
				r.datagramsIn++
				r.in += int64(len(data))
				mu.Lock()
				if len(sentTo) >= maxAssociationPeers {
					clear(sentTo)
				}
				sentTo[ap] = true
				mu.Unlock()
				if _, err := sock.WriteToUDPAddrPort(data, ap); err != nil && !transientUDP(err) {
					r.dropped++
				}
				return true
			})
		},
		func(w *idleWatch) {
			buf := datagramBuf()
			out := datagramWriter{w: stream}
			const room = 1 + 16 + 2 // the largest address header
			for {
				n, from, err := sock.ReadFromUDPAddrPort(buf[room:])
				if err != nil {
					if transientUDP(err) {
						continue
					}
					return
				}
				from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
				mu.Lock()
				known := sentTo[from]
				mu.Unlock()
				if !known {
					r.strangers++
					continue
				}
				w.touch()
				// The address goes in front of the data, in place.
				start := room - (1 + len(from.Addr().AsSlice()) + 2)
				appendUDPAddr(buf[start:start], from)
				if out.write(buf[start:room+n]) != nil {
					return
				}
				r.datagramsOut++
				r.out += int64(n)
			}
		})
	return r
}
