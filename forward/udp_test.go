package forward_test

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/warren-p2p/warren/config"
	"github.com/warren-p2p/warren/forward"
)

// udpEcho answers each datagram with "echo:" and the datagram, until the
// test ends.
func udpEcho(t *testing.T) netip.AddrPort {
	t.Helper()
	return serveUDP(t, netip.MustParseAddrPort("127.0.0.1:0"), func(c *net.UDPConn, b []byte, from netip.AddrPort) {
		c.WriteToUDPAddrPort(append([]byte("echo:"), b...), from)
	})
}

// udpClient is a UDP socket that sends to one address.
func udpClient(t *testing.T, to net.Addr) *net.UDPConn {
	t.Helper()
	c, err := net.DialUDP("udp", nil, to.(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip sends msg and returns the first answer, or "" after a second.
// UDP may drop a datagram, so a missing answer is retried twice.
func roundTrip(t *testing.T, c *net.UDPConn, msg string) string {
	t.Helper()
	buf := make([]byte, 65535)
	for range 3 {
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(time.Second))
		n, err := c.Read(buf)
		if err == nil {
			return string(buf[:n])
		}
	}
	return ""
}

func TestUDPForward(t *testing.T) {
	echo := udpEcho(t)
	e := newExit(t, []config.Peer{{Name: "alice", Exit: true}}, nil, nil, forward.Config{})
	l := startListeners(t, e, nil, []config.Forward{{Listen: "127.0.0.1:0", Peer: "exit", Target: echo.String(),
		Protocol: "udp", IdleTimeout: config.Duration{Duration: 300 * time.Millisecond}}}, forward.Config{})
	addr := l.ForwardAddrs()[0]

	a, b := udpClient(t, addr), udpClient(t, addr)
	for i, msg := range []string{"one", strings.Repeat("x", 8000), "three"} {
		for _, c := range []*net.UDPConn{a, b} {
			want := "echo:" + msg + c.LocalAddr().String()
			if got := roundTrip(t, c, msg+c.LocalAddr().String()); got != want {
				t.Fatalf("datagram %d from %s: got %.40q, want %.40q", i, c.LocalAddr(), got, want)
			}
		}
	}
	if got := e.Server.Stats().Active; got != 2 {
		t.Errorf("%d streams at the exit, want one per client (2)", got)
	}
	waitFor(t, "idle clients' streams to close", func() bool { return e.Server.Stats().Active == 0 })
	entry := findEntry(e.Hook, "udp client done")
	if entry == nil || entry.Data["reason"] != "idle" || entry.Data["datagrams_out"] != uint64(3) {
		t.Errorf("client's log line: %v", entry)
	}
	// A client that comes back gets a new stream.
	if got := roundTrip(t, a, "again"); got != "echo:again" {
		t.Errorf("after the idle timeout: got %q", got)
	}
}

func TestUDPForwardAccess(t *testing.T) {
	echo := udpEcho(t)
	tcpEcho := echoServer(t)
	e := newExit(t, []config.Peer{{Name: "alice", Targets: []string{"10.9.9.9:53"}}},
		[]config.Expose{
			{Name: "dns", Target: echo.String(), Peers: []string{"alice"}, Protocol: "udp"},
			{Name: "web", Target: tcpEcho, Peers: []string{"alice"}, Protocol: "tcp"},
		}, nil, forward.Config{})
	udp := func(f config.Forward) config.Forward {
		f.Listen, f.Peer, f.Protocol, f.IdleTimeout = "127.0.0.1:0", "exit", "udp", config.Duration{Duration: time.Minute}
		return f
	}
	l := startListeners(t, e, nil, []config.Forward{
		udp(config.Forward{Service: "dns"}),
		udp(config.Forward{Service: "web"}),                   // a TCP service
		udp(config.Forward{Target: echo.String()}),            // not in alice's targets
		{Listen: "127.0.0.1:0", Peer: "exit", Service: "dns"}, // a UDP service over TCP
	}, forward.Config{})
	addrs := l.ForwardAddrs()

	if got := roundTrip(t, udpClient(t, addrs[0]), "q"); got != "echo:q" {
		t.Errorf("udp service: got %q", got)
	}
	for i, a := range addrs[1:3] {
		if got := roundTrip(t, udpClient(t, a), "q"); got != "" {
			t.Errorf("forward %d reached a target it may not: %q", i+1, got)
		}
	}
	if got, _ := dialRefused(t, addrs[3]); len(got) != 0 {
		t.Error("a TCP forward got through to a UDP service")
	}
	// Each refused client is held back a while instead of asking again
	// for every datagram (roundTrip sent up to three).
	waitFor(t, "three refusals", func() bool { return e.Server.Stats().Refused >= 3 })
	time.Sleep(100 * time.Millisecond)
	if n := e.Server.Stats().Refused; n != 3 {
		t.Errorf("%d refusals, want 3: one per refused client", n)
	}
}

// socksAssociate opens a SOCKS5 UDP association and returns the control
// connection and the relay address.
func socksAssociate(t *testing.T, socks string) (net.Conn, *net.UDPAddr) {
	t.Helper()
	c, err := net.Dial("tcp", socks)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write([]byte{5, 1, 0})
	var sel [2]byte
	if _, err := io.ReadFull(c, sel[:]); err != nil || sel != [2]byte{5, 0} {
		t.Fatalf("method selection %v, %v", sel, err)
	}
	c.Write([]byte{5, 3, 0, 1, 0, 0, 0, 0, 0, 0})
	var reply [10]byte
	if _, err := io.ReadFull(c, reply[:]); err != nil || reply[1] != 0 || reply[3] != 1 {
		t.Fatalf("associate reply %v, %v", reply, err)
	}
	c.SetDeadline(time.Time{})
	return c, &net.UDPAddr{IP: net.IP(reply[4:8]), Port: int(binary.BigEndian.Uint16(reply[8:]))}
}

// socksDatagram builds a SOCKS5 UDP request to host:port.
func socksDatagram(host string, port uint16, data string) []byte {
	b := []byte{0, 0, 0}
	if ip, err := netip.ParseAddr(host); err == nil && ip.Is4() {
		b = append(append(b, 1), ip.AsSlice()...)
	} else if err == nil {
		b = append(append(b, 4), ip.AsSlice()...)
	} else {
		b = append(append(b, 3, byte(len(host))), host...)
	}
	return append(binary.BigEndian.AppendUint16(b, port), data...)
}

func TestSocksUDPAssociate(t *testing.T) {
	echo := udpEcho(t)
	r := newResolver(map[string]string{"echo.lan": "127.0.0.1", "blocked.lan": "127.0.0.2"})
	e := newExit(t, []config.Peer{{Name: "alice", Targets: []string{"127.0.0.1:*"}}}, nil, r, forward.Config{})
	l := startListeners(t, e, []config.Socks{{Listen: "127.0.0.1:0", Peer: "exit"}}, nil, forward.Config{})
	ctl, relay := socksAssociate(t, l.SocksAddrs()[0].String())
	u := udpClient(t, relay)

	ask := func(host, data string) []byte {
		buf := make([]byte, 65535)
		for range 3 {
			u.Write(socksDatagram(host, echo.Port(), data))
			u.SetReadDeadline(time.Now().Add(time.Second))
			if n, err := u.Read(buf); err == nil {
				return buf[:n]
			}
		}
		return nil
	}
	// The answer names its source as the exit saw it: the echo server.
	want := append(socksDatagram("127.0.0.1", echo.Port(), ""), "echo:by ip"...)
	if got := ask("127.0.0.1", "by ip"); !bytes.Equal(got, want) {
		t.Errorf("by IP: got %q, want %q", got, want)
	}
	want = append(socksDatagram("127.0.0.1", echo.Port(), ""), "echo:by name"...)
	if got := ask("echo.lan", "by name"); !bytes.Equal(got, want) {
		t.Errorf("by name (resolved at the exit): got %q, want %q", got, want)
	}
	if got := ask("blocked.lan", "denied"); got != nil {
		t.Errorf("a destination outside alice's targets answered: %q", got)
	}

	// Closing the control connection ends the association.
	ctl.Close()
	waitFor(t, "the association to end at the exit", func() bool { return e.Server.Stats().Active == 0 })
	entry := findEntry(e.Hook, "stream closed")
	if entry == nil || entry.Data["datagrams_denied"] == nil || entry.Data["datagrams_in"] != uint64(2) {
		t.Errorf("exit's log line: %v", entry)
	}
}

func TestSocksUDPAssociateNotAllowed(t *testing.T) {
	e := newExit(t, []config.Peer{{Name: "alice"}}, nil, nil, forward.Config{})
	l := startListeners(t, e, []config.Socks{{Listen: "127.0.0.1:0", Peer: "exit"}}, nil, forward.Config{})
	c := dialTCP(t, l.SocksAddrs()[0])
	if code := socksCommand(t, c, 3, "0.0.0.0:0"); code != forward.CodeNotAllowed {
		t.Errorf("associate for a peer with no exit rights: reply %d, want %d", code, forward.CodeNotAllowed)
	}
}
