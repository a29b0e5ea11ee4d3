package daemon

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/warren-p2p/warren/punch"
	"github.com/warren-p2p/warren/transport"
)

// roamInterval is how often each side of a UDP link says where it is, so
// that the peer follows it when its NAT hands it a new endpoint.
const roamInterval = time.Second

// udpStream turns a punched UDP path into a reliable stream for the link:
// KCP over the very socket whose NAT mapping the punch opened.
func (d *Daemon) udpStream(res punch.UDPResult, id punch.SessionID, log logrus.FieldLogger) (net.Conn, error) {
	sock, ok := res.Conn.(*net.UDPConn)
	if !ok {
		return nil, fmt.Errorf("punched socket is a %T, not a UDP socket", res.Conn)
	}
	dm, err := transport.NewDemux(sock)
	if err != nil {
		return nil, err
	}
	c := &udpConn{demux: dm, id: id, conv: transport.MakeConv(id.Conv()), remote: res.Remote, log: log, stop: make(chan struct{})}
	// Punch-prefixed packets now are late punch packets (ignored) or the
	// peer's roam announcements.
	if err := dm.Handle([]byte(punch.UDPPrefix), c.onPunchPacket); err != nil {
		dm.Close()
		return nil, err
	}
	if c.Conn, err = dm.Dial(res.Remote, c.conv, nil); err != nil {
		dm.Close()
		return nil, err
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.announce()
	}()
	return c, nil
}

// udpConn is a KCP stream that owns its socket and follows its peer when
// the peer's endpoint changes (roaming).
type udpConn struct {
	*transport.Conn
	demux *transport.Demux
	id    punch.SessionID
	conv  uint32
	log   logrus.FieldLogger

	// mu guards remote and lastSeq.
	mu      sync.Mutex
	remote  netip.AddrPort
	lastSeq uint64

	stop      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup // announce
}

// onPunchPacket moves the stream to a new peer endpoint on an
// authenticated, fresh roam announcement from it. It runs on the demux's
// read goroutine.
func (c *udpConn) onPunchPacket(pkt []byte, from netip.AddrPort) {
	seq, ok := c.id.ParseRoam(pkt)
	if !ok {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if seq <= c.lastSeq {
		return // a replay, or out of order
	}
	c.lastSeq = seq
	if from == c.remote {
		return
	}
	if err := c.demux.Rebind(c.conv, c.remote, from); err != nil {
		c.log.WithError(err).Warn("cannot follow the peer to its new endpoint")
		return
	}
	c.log.WithFields(logrus.Fields{"from": c.remote, "to": from}).Info("peer roamed; the UDP link follows")
	c.remote = from
}

// announce sends a roam announcement to the peer every roamInterval.
func (c *udpConn) announce() {
	t := time.NewTicker(roamInterval)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		c.mu.Lock()
		to := c.remote
		c.mu.Unlock()
		c.demux.WriteTo(c.id.RoamPacket(uint64(time.Now().UnixNano())), to)
	}
}

// Close closes the stream and, once its close handshake is over (at most
// the transport's CloseTimeout), the socket: closing the socket at once
// would turn the peer's clean EOF into a reset.
func (c *udpConn) Close() error {
	err := c.Conn.Close()
	c.closeOnce.Do(func() {
		close(c.stop)
		go func() {
			c.wg.Wait()
			<-c.Conn.Done()
			c.demux.Close()
		}()
	})
	return err
}
