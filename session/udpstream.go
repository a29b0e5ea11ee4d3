package session

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/warren-p2p/warren/link"
	"github.com/warren-p2p/warren/punch"
	"github.com/warren-p2p/warren/transport"
)

// roamInterval is how often each side of a UDP link says where it is, so
// that the peer follows it when its NAT hands it a new endpoint.
const roamInterval = time.Second

// Stream protocols a UDP path runs over its punched socket, as they
// travel (authenticated) in the punch's nomination. streamQUIC is QUIC
// whose handshake authenticates the link (no TLS of the link's inside);
// streamQUICv1, which ran the link's TLS inside QUIC's, is refused by
// name, so that both ends of a mixed pair say why the UDP path failed.
const (
	streamQUIC   byte = 'Q'
	streamQUICv1 byte = 'q'
	streamKCP    byte = 'k'
)

// streamCode is how a [link] udp_stream choice travels in the punch's
// nomination.
func streamCode(name string) byte {
	if name == "kcp" {
		return streamKCP
	}
	return streamQUIC
}

// udpStream turns a punched UDP path into a reliable stream for the link,
// over the very socket whose NAT mapping the punch opened: QUIC or KCP, as
// the punch agreed.
func (u *UDP) udpStream(ctx context.Context, s *Session, res punch.UDPResult) (*udpConn, error) {
	sock, ok := res.Conn.(*net.UDPConn)
	if !ok {
		return nil, fmt.Errorf("punched socket is a %T, not a UDP socket", res.Conn)
	}
	c := &udpConn{controlling: s.Controlling, remote: res.Remote, log: s.Log, stop: make(chan struct{}), closing: u.Closing}
	switch res.Stream {
	case streamKCP:
		dm, err := transport.NewDemux(sock)
		if err != nil {
			return nil, err
		}
		conv := transport.MakeConv(s.ID.Conv())
		c.sock = dm
		c.rebind = func(from, to netip.AddrPort) error { return dm.Rebind(conv, from, to) }
		if err := c.handlePunchPackets(dm.Handle); err != nil {
			return nil, err
		}
		kc, err := dm.Dial(res.Remote, conv, nil)
		if err != nil {
			dm.Close()
			return nil, err
		}
		c.Conn, c.done = kc, kc.Done()
	case streamQUIC:
		qs, err := transport.NewQUICSocket(sock)
		if err != nil {
			return nil, err
		}
		c.sock = qs
		c.rebind = func(from, to netip.AddrPort) error {
			qs.Rebind(res.Remote, to)
			return nil
		}
		if err := c.handlePunchPackets(qs.Handle); err != nil {
			return nil, err
		}
		qc, err := qs.Dial(ctx, res.Remote, s.Controlling, s.cfg.Self.TLSConfig(s.Peer), nil)
		if err != nil {
			qs.Close()
			return nil, err
		}
		c.Conn, c.done = qc, qc.Done()
	case streamQUICv1:
		sock.Close()
		return nil, fmt.Errorf("the peer proposed UDP stream protocol %q, QUIC with the link's TLS inside, which this version no longer speaks: upgrade the peer", res.Stream)
	default:
		sock.Close()
		return nil, fmt.Errorf("the peer proposed UDP stream protocol %q, which this version does not know (is the peer newer?)", res.Stream)
	}
	c.wg.Go(c.announce)
	return c, nil
}

// udpSocket is what a UDP link needs of the socket below its stream.
type udpSocket interface {
	WriteTo(b []byte, to netip.AddrPort) (int, error)
	Close() error
}

// udpConn is a stream over a UDP socket that it owns, and that follows its
// peer when the peer's endpoint changes (roaming). Roaming starts once the
// link over it is up: its announcements are keyed by the link's TLS
// session (LinkKeys), never by the punch session, which the rendezvous
// server issued and which crossed the wire in clear.
type udpConn struct {
	net.Conn
	done        <-chan struct{} // closed once the closed stream has finished
	sock        udpSocket
	rebind      func(from, to netip.AddrPort) error
	controlling bool // the link's controlling end: which roam key is ours
	log         logrus.FieldLogger
	roam        atomic.Pointer[punch.Roam] // nil until the link is up

	// mu guards remote.
	mu     sync.Mutex
	remote netip.AddrPort

	// closed, if set, is called once when the stream is closed.
	closed func()

	stop      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup  // announce
	closing   *sync.WaitGroup // UDP.Closing: the close handshake
}

// TLSState is the QUIC stream's handshake, which the link takes as its own
// (link.Secured); a KCP stream has none, and the link runs its TLS.
func (c *udpConn) TLSState() (tls.ConnectionState, bool) {
	if s, ok := c.Conn.(link.Secured); ok {
		return s.TLSState()
	}
	return tls.ConnectionState{}, false
}

// handlePunchPackets routes punch-prefixed packets, which now are late
// punch packets (ignored) or the peer's roam announcements, to
// onPunchPacket. On error it closes the socket.
func (c *udpConn) handlePunchPackets(handle func([]byte, func([]byte, netip.AddrPort)) error) error {
	if err := handle([]byte(punch.UDPPrefix), c.onPunchPacket); err != nil {
		c.sock.Close()
		return err
	}
	return nil
}

// LinkKeys arms roaming with keys from the TLS session of the link that
// runs over this stream (link.Keyed).
func (c *udpConn) LinkKeys(export link.Exporter) {
	r, err := punch.NewRoam(punch.Exporter(export), c.controlling)
	if err != nil {
		c.log.WithError(err).Warn("the UDP link will not follow the peer to a new endpoint")
		return
	}
	c.roam.Store(r)
}

// onPunchPacket moves the stream to a new peer endpoint on an
// authenticated, fresh roam announcement from it. It runs on the socket's
// read goroutine.
func (c *udpConn) onPunchPacket(pkt []byte, from netip.AddrPort) {
	r := c.roam.Load()
	if r == nil || !r.Accept(pkt) {
		return // a late punch packet, a replay, a forgery
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if from == c.remote {
		return
	}
	if err := c.rebind(c.remote, from); err != nil {
		c.log.WithError(err).Warn("cannot follow the peer to its new endpoint")
		return
	}
	c.log.WithFields(logrus.Fields{"from": c.remote, "to": from}).Info("peer roamed; the UDP link follows")
	c.remote = from
}

// announce sends a roam announcement to the peer every roamInterval, once
// the link is up.
func (c *udpConn) announce() {
	t := time.NewTicker(roamInterval)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		r := c.roam.Load()
		if r == nil {
			continue
		}
		c.mu.Lock()
		to := c.remote
		c.mu.Unlock()
		c.sock.WriteTo(r.Announce(), to)
	}
}

// Close closes the stream and, once its close handshake is over (bounded
// by the transport's close timeout), the socket: closing the socket at
// once would turn the peer's clean end of stream into an error.
func (c *udpConn) Close() error {
	err := c.Conn.Close()
	c.closeOnce.Do(func() {
		if c.closed != nil {
			c.closed()
		}
		close(c.stop)
		c.closing.Go(func() {
			c.wg.Wait()
			<-c.done
			c.sock.Close()
		})
	})
	return err
}
