package daemon

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/warren-p2p/warren/punch"
	"github.com/warren-p2p/warren/transport"
)

// udpStream turns a punched UDP path into a reliable stream for the link:
// KCP over the very socket whose NAT mapping the punch opened.
func (d *Daemon) udpStream(res punch.UDPResult, id punch.SessionID) (net.Conn, error) {
	sock, ok := res.Conn.(*net.UDPConn)
	if !ok {
		return nil, fmt.Errorf("punched socket is a %T, not a UDP socket", res.Conn)
	}
	dm, err := transport.NewDemux(sock)
	if err != nil {
		return nil, err
	}
	// Copies of the nomination and late pings still arrive after the
	// punch; they are for nobody now.
	if err := dm.Handle([]byte(punch.UDPPrefix), func([]byte, netip.AddrPort) {}); err != nil {
		dm.Close()
		return nil, err
	}
	c, err := dm.Dial(res.Remote, transport.MakeConv(id.Conv()), nil)
	if err != nil {
		dm.Close()
		return nil, err
	}
	return &udpConn{Conn: c, demux: dm}, nil
}

// udpConn is a KCP stream that owns its socket.
type udpConn struct {
	*transport.Conn
	demux *transport.Demux
}

// Close closes the stream and, once its close handshake is over (at most
// the transport's CloseTimeout), the socket: closing the socket at once
// would turn the peer's clean EOF into a reset.
func (c *udpConn) Close() error {
	err := c.Conn.Close()
	go func() {
		<-c.Conn.Done()
		c.demux.Close()
	}()
	return err
}
