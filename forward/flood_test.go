package forward_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/warren-p2p/warren/config"
	"github.com/warren-p2p/warren/forward"
)

// TestSocksCapsSilentClients is issue 15's finding 8 on the SOCKS5
// listener: clients that connect and never finish their handshake hold
// places only up to the per-source cap (the rest are reset at once, not
// after the handshake timeout), and a client from another address still
// gets through meanwhile.
func TestSocksCapsSilentClients(t *testing.T) {
	echo := echoServer(t)
	e := newExit(t, []config.Peer{{Name: "alice", Exit: true}}, nil, nil, forward.Config{})
	const perSource, flood = 4, 40
	cfg := forward.Config{HandshakeTimeout: time.Minute, MaxPendingPerSource: perSource, MaxPending: 64}
	l := startListeners(t, e, []config.Socks{{Listen: "127.0.0.1:0", Peer: "exit"}}, nil, cfg)
	addr := l.SocksAddrs()[0].String()

	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	closed := 0
	for range flood {
		c, err := net.Dial("tcp", addr)
		if errors.Is(err, syscall.ECONNRESET) { // the reset beat connect's end
			closed++
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(time.Second))
		if _, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
			closed++
		}
	}
	if closed < flood-perSource {
		t.Fatalf("%d of %d silent clients from one address closed at once, want at least %d", closed, flood, flood-perSource)
	}

	d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.2:0"))}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if code := socksConnect(t, c, echo); code != 0 {
		t.Fatalf("another client's CONNECT during the flood: reply %d", code)
	}
}
