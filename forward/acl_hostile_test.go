package forward_test

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warren-p2p/warren/config"
	"github.com/warren-p2p/warren/forward"
)

// The tests here try to reach what a peer's ACL does not allow: through
// names that resolve to forbidden addresses, other spellings of forbidden
// addresses, the unspecified address (which Linux connects to loopback)
// and association datagrams. "A peer can never reach what its ACL does
// not allow."

func TestPolicyHostile(t *testing.T) {
	peers := []config.Peer{
		{Name: "exiter", Exit: true},
		{Name: "lim", Targets: []string{"10.1.0.0/16:*", "*.web.corp:80", "db.corp:5432"}},
		// "Any IPv6", which must not open IPv4 through a translator.
		{Name: "v6any", Targets: []string{"[::/0]:*"}},
		// NAT64 space explicitly, and the IPv4 addresses meant.
		{Name: "nat", Targets: []string{"[64:ff9b::/96]:*", "10.1.0.0/16:*"}},
		// The first CIDRs of "everything but loopback" (0.0.0.0/0 minus
		// 127.0.0.0/8, ::/0 minus ::1/128), as calculators print them.
		{Name: "most", Targets: []string{"0.0.0.0/5:*", "[::/128]:*", "[::2/127]:*"}},
	}
	// Names resolve as a hostile or sloppy DNS (or glibc) would have them.
	r := newResolver(map[string]string{
		"rebind.test":      "127.0.0.1,10.1.0.5,10.9.9.9",
		"evil.test":        "127.0.0.1,::1",
		"mapped-evil.test": "::ffff:127.0.0.1,::ffff:7f00:2",
		"nat64-evil.test":  "64:ff9b::7f00:1,64:ff9b::a09:909",
		"blocked.test":     "0.0.0.0,::",
		"zoned.test":       "fe80::1%eth0,10.1.0.9",
		"a.web.corp":       "64:ff9b::7f00:1",
		"db.corp":          "127.0.0.1",
		// What getaddrinfo (inet_aton) makes of IPv4 addresses in
		// disguise; the exit must not even ask.
		"127.1":      "127.0.0.1",
		"0x7f.1":     "127.0.0.1",
		"2130706433": "127.0.0.1",
		"0177.0.0.1": "127.0.0.1",
		"010.1.0.1":  "8.1.0.1",
		"10.1.0.1.":  "10.1.0.1",
		"0x0a.1.0.1": "10.1.0.1",
	})
	pol, err := forward.NewPolicy(peers, nil, r)
	if err != nil {
		t.Fatal(err)
	}
	tcp, udp := forward.TargetRequest, func(hp string) forward.Request {
		return forward.Request{Kind: forward.KindUDPTarget, Payload: hp}
	}
	const (
		denied      = forward.CodeNotAllowed
		notAnAddr   = forward.CodeAddrNotSupported
		unreachable = forward.CodeHostUnreachable
	)

	tests := []authorizeCase{
		// A name is resolved once, at the exit, and only the addresses
		// that pass are granted: the server dials those, never the name.
		{"lim", tcp("rebind.test:80"), 0, []string{"10.1.0.5:80"}},
		{"lim", udp("rebind.test:53"), 0, []string{"10.1.0.5:53"}},
		{"lim", tcp("evil.test:80"), denied, nil},
		{"lim", tcp("mapped-evil.test:80"), denied, nil},
		{"lim", tcp("localhost.:80"), unreachable, nil},
		{"exiter", tcp("rebind.test:80"), 0, []string{"127.0.0.1:80", "10.1.0.5:80", "10.9.9.9:80"}},
		// A name pattern allows whatever the name resolves to: the
		// admin trusts that name's DNS, not the peer.
		{"lim", tcp("a.web.corp:80"), 0, []string{"[64:ff9b::7f00:1]:80"}},
		{"lim", tcp("db.corp:5432"), 0, []string{"127.0.0.1:5432"}},
		{"lim", tcp("db.corp:22"), denied, nil},

		// IPv4-mapped IPv6 is IPv4: the kernel dials it as such.
		{"lim", tcp("[::ffff:127.0.0.1]:80"), denied, nil},
		{"lim", tcp("[::ffff:7f00:1]:80"), denied, nil},
		{"lim", tcp("[::ffff:a01:5]:80"), 0, []string{"10.1.0.5:80"}},
		{"v6any", tcp("[::ffff:127.0.0.1]:80"), denied, nil},
		{"v6any", tcp("[::ffff:a01:5]:80"), denied, nil},
		{"v6any", tcp("mapped-evil.test:80"), denied, nil},
		{"v6any", udp("[::ffff:10.1.0.5]:53"), denied, nil},
		// NAT64, 6to4 and IPv4-compatible forms reach their IPv4
		// address, which must be allowed too.
		{"v6any", tcp("[2001:db8::1]:80"), 0, []string{"[2001:db8::1]:80"}},
		{"v6any", tcp("[64:ff9b::7f00:1]:80"), denied, nil},
		{"v6any", tcp("[64:ff9b::127.0.0.1]:80"), denied, nil},
		{"v6any", tcp("[64:ff9b::a01:5]:80"), denied, nil},
		{"v6any", udp("[64:ff9b::808:808]:53"), denied, nil},
		{"v6any", tcp("nat64-evil.test:80"), denied, nil},
		{"v6any", tcp("[2002:7f00:1::1]:80"), denied, nil},
		{"v6any", tcp("[2002:a01:5::1]:80"), denied, nil},
		{"v6any", tcp("[::7f00:1]:80"), denied, nil},
		{"v6any", tcp("[::1]:80"), 0, []string{"[::1]:80"}}, // ::/0 does cover ::1
		{"lim", tcp("[64:ff9b::a01:5]:80"), denied, nil},    // 10.1/16 is no IPv6 pattern
		{"nat", tcp("[64:ff9b::a01:5]:80"), 0, []string{"[64:ff9b::a01:5]:80"}},
		{"nat", tcp("[64:ff9b::10.1.0.5]:80"), 0, []string{"[64:ff9b::a01:5]:80"}},
		{"nat", tcp("[64:ff9b::7f00:1]:80"), denied, nil},
		{"nat", tcp("nat64-evil.test:80"), denied, nil},

		// The unspecified address connects to loopback on Linux: nobody
		// may dial it, not even an exit peer, however it is spelled.
		{"most", tcp("1.2.3.4:80"), 0, []string{"1.2.3.4:80"}},
		{"most", tcp("[::2]:80"), 0, []string{"[::2]:80"}},
		{"most", tcp("127.0.0.1:80"), denied, nil},
		{"most", tcp("0.0.0.0:80"), denied, nil},
		{"most", udp("0.0.0.0:53"), denied, nil},
		{"most", tcp("[::]:80"), denied, nil},
		{"most", tcp("[::ffff:0.0.0.0]:80"), denied, nil},
		{"most", tcp("[0:0:0:0:0:0:0:0]:80"), denied, nil},
		{"most", tcp("blocked.test:80"), denied, nil},
		{"exiter", tcp("0.0.0.0:80"), denied, nil},
		{"exiter", udp("[::]:53"), denied, nil},
		{"exiter", tcp("blocked.test:80"), denied, nil},
		{"exiter", tcp("127.0.0.1:80"), 0, []string{"127.0.0.1:80"}}, // exit = true is anything else

		// Zones: never in a request, dropped from resolver answers (a
		// zone would pick the exit's interface; Match ignores it).
		{"exiter", tcp("[fe80::1%eth0]:80"), notAnAddr, nil},
		{"exiter", tcp("[fe80::1%25eth0]:80"), notAnAddr, nil},
		{"v6any", tcp("[fe80::1%1]:80"), notAnAddr, nil},
		{"v6any", tcp("zoned.test:80"), denied, nil},
		{"exiter", tcp("zoned.test:80"), 0, []string{"10.1.0.9:80"}},
		{"lim", tcp("zoned.test:80"), 0, []string{"10.1.0.9:80"}},

		// IPv4 addresses in disguise are no names: what they meant would
		// depend on the exit's resolver (inet_aton or DNS).
		{"lim", tcp("127.1:80"), notAnAddr, nil},
		{"lim", tcp("0x7f.1:80"), notAnAddr, nil},
		{"lim", tcp("2130706433:80"), notAnAddr, nil},
		{"lim", tcp("0177.0.0.1:80"), notAnAddr, nil},
		{"lim", tcp("010.1.0.1:80"), notAnAddr, nil},
		{"lim", tcp("10.1.0.1.:80"), notAnAddr, nil},
		{"lim", tcp("0x0a.1.0.1:80"), notAnAddr, nil},
		{"lim", udp("127.1:53"), notAnAddr, nil},
		{"exiter", tcp("127.1:80"), notAnAddr, nil},
		{"lim", tcp("127.0.0.1.web.corp:80"), unreachable, nil}, // a name; NXDOMAIN here
	}
	checkAuthorize(t, pol, tests)
	for _, name := range []string{"127.1", "0x7f.1", "2130706433", "0177.0.0.1", "010.1.0.1", "10.1.0.1.", "0x0a.1.0.1"} {
		if slices.Contains(r.Calls(), name) {
			t.Errorf("the exit resolved %q", name)
		}
	}
}

// seqResolver answers the i-th lookup of any name with answers[i] (the
// last one once they run out): a DNS that rebinds between lookups.
type seqResolver struct {
	answers [][]netip.Addr
	calls   atomic.Int32
}

func (r *seqResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	i := int(r.calls.Add(1)) - 1
	return r.answers[min(i, len(r.answers)-1)], nil
}

// trapTCP listens on ip at port (0: any) and counts connections.
func trapTCP(t *testing.T, ip string, port int) (*atomic.Int32, int) {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int32
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			c.Close()
		}
	})
	return &n, ln.Addr().(*net.TCPAddr).Port
}

// echoAndTrap is an echo server on 127.0.0.1 and a trap on 127.0.0.2 at
// the same port.
func echoAndTrap(t *testing.T) (port int, trapped *atomic.Int32) {
	t.Helper()
	for range 20 {
		_, p, _ := net.SplitHostPort(echoServer(t))
		port, _ = strconv.Atoi(p)
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.2", p))
		if err != nil {
			continue // taken on 127.0.0.2; try another port
		}
		ln.Close()
		trapped, _ = trapTCP(t, "127.0.0.2", port)
		return port, trapped
	}
	t.Fatal("no port free on both 127.0.0.1 and 127.0.0.2")
	return 0, nil
}

// TestServerDialsOnlyWhatItAuthorized: the exit resolves a name once and
// dials the addresses it authorized, not the name again, so neither an
// answer listing a forbidden address first nor a rebinding DNS moves the
// peer; and it never dials the unspecified address, which Linux connects
// to loopback.
func TestServerDialsOnlyWhatItAuthorized(t *testing.T) {
	port, trapped := echoAndTrap(t)
	loop, loopPort := trapTCP(t, "127.0.0.1", 0)
	ip := netip.MustParseAddr
	r := &seqResolver{answers: [][]netip.Addr{
		{ip("127.0.0.2"), ip("127.0.0.1")}, // forbidden first
		{ip("127.0.0.2")},                  // then only forbidden
	}}
	e := newExit(t, []config.Peer{{Name: "alice", Targets: []string{
		"127.0.0.1:" + strconv.Itoa(port),
		"0.0.0.0/5:*", // covers 0.0.0.0, not 127.0.0.1
	}}}, nil, r, forward.Config{DialTimeout: 2 * time.Second})

	rebind := forward.TargetRequest("rebind.test:" + strconv.Itoa(port))
	c, err := forward.Dial(context.Background(), e.Opener, "exit", rebind)
	if err != nil {
		t.Fatalf("rebind.test: %v", err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte("hi"))
	got := make([]byte, 2)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "hi" {
		t.Errorf("rebind.test: echo %q, %v", got, err)
	}
	c.Close()
	// Asked again, the DNS answers only the forbidden address.
	if _, err = forward.Dial(context.Background(), e.Opener, "exit", rebind); err == nil {
		t.Error("rebind.test, rebound: dialled")
	} else if code := refusalCode(t, err); code != forward.CodeNotAllowed {
		t.Errorf("rebind.test, rebound: code %d (%v), want %d", code, err, forward.CodeNotAllowed)
	}
	if got := r.calls.Load(); got != 2 {
		t.Errorf("%d lookups for two requests, want one each", got)
	}

	for _, target := range []string{"0.0.0.0", "[::ffff:0.0.0.0]"} {
		c, err := forward.Dial(context.Background(), e.Opener, "exit", forward.TargetRequest(target+":"+strconv.Itoa(loopPort)))
		if err == nil {
			c.Close()
			t.Errorf("%s: dialled", target)
			continue
		}
		if code := refusalCode(t, err); code != forward.CodeNotAllowed {
			t.Errorf("%s: code %d (%v), want %d", target, code, err, forward.CodeNotAllowed)
		}
	}
	time.Sleep(100 * time.Millisecond) // let a stray connection be accepted
	if n := trapped.Load(); n != 0 {
		t.Errorf("%d connections reached the forbidden 127.0.0.2", n)
	}
	if n := loop.Load(); n != 0 {
		t.Errorf("%d connections reached loopback through 0.0.0.0", n)
	}
}

// trapUDP listens on ip at port (0: any) and counts datagrams.
func trapUDP(t *testing.T, ip string, port int) (*atomic.Int32, uint16) {
	t.Helper()
	var n atomic.Int32
	addr := serveUDP(t, netip.AddrPortFrom(netip.MustParseAddr(ip), uint16(port)), func(*net.UDPConn, []byte, netip.AddrPort) {
		n.Add(1)
	})
	return &n, addr.Port()
}

// assocFrame is an association's datagram frame to host:port.
func assocFrame(host string, port uint16, data string) []byte {
	var body []byte
	if ip, err := netip.ParseAddr(host); err == nil && ip.Is4() {
		body = append([]byte{1}, ip.AsSlice()...)
	} else if err == nil {
		body = append([]byte{4}, ip.AsSlice()...)
	} else {
		body = append([]byte{3, byte(len(host))}, host...)
	}
	body = append(binary.BigEndian.AppendUint16(body, port), data...)
	return append(binary.BigEndian.AppendUint16(nil, uint16(len(body))), body...)
}

// TestAssociationAuthorizesEachDatagram: every destination of a SOCKS5
// UDP association is authorized by itself, with what is sent going only
// to the address authorized for it. A verdict cached for one destination
// is not one for another (the same IP at another port, another name,
// another spelling), and the unspecified address is refused.
func TestAssociationAuthorizesEachDatagram(t *testing.T) {
	echo := udpEcho(t)
	samePort, _ := trapUDP(t, "127.0.0.2", int(echo.Port())) // the echo's port, another IP
	other, otherPort := trapUDP(t, "127.0.0.1", 0)           // the echo's IP, another port
	r := newResolver(map[string]string{
		"echo.test":   "127.0.0.2,127.0.0.1", // forbidden first
		"trap.test":   "127.0.0.2",
		"blocked.lan": "0.0.0.0",
	})
	e := newExit(t, []config.Peer{{Name: "alice", Targets: []string{
		echo.String(),
		"0.0.0.0/5:*", // covers 0.0.0.0, not 127.0.0.1
	}}}, nil, r, forward.Config{})
	s, err := forward.Dial(context.Background(), e.Opener, "exit", forward.AssociateRequest())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	frames := make(chan string, 100)
	go func() {
		defer close(frames)
		for {
			var h [2]byte
			if _, err := io.ReadFull(s, h[:]); err != nil {
				return
			}
			b := make([]byte, binary.BigEndian.Uint16(h[:]))
			if _, err := io.ReadFull(s, b); err != nil {
				return
			}
			frames <- string(b)
		}
	}()

	// echoed sends data to the echo by address until its answer comes
	// back (datagrams may be lost), which also shows that every frame
	// sent before it was handled: the exit takes them in order. It
	// returns the other frames that came back meanwhile.
	echoed := func(data string) (others []string) {
		t.Helper()
		want := string(assocFrame("127.0.0.1", echo.Port(), "echo:"+data)[2:])
		for range 3 {
			s.Write(assocFrame("127.0.0.1", echo.Port(), data))
			timeout := time.After(time.Second)
		wait:
			for {
				select {
				case f := <-frames:
					if f == want {
						return others
					}
					others = append(others, f)
				case <-timeout:
					break wait
				}
			}
		}
		t.Fatalf("no answer to %q from the echo", data)
		return nil
	}

	echoed("first") // caches the echo's verdict
	denied := [][]byte{
		assocFrame("127.0.0.1", otherPort, "same IP, other port"),
		assocFrame("::ffff:127.0.0.1", otherPort, "mapped"),
		assocFrame("127.0.0.2", echo.Port(), "other IP, same port"),
		assocFrame("trap.test", echo.Port(), "by name"),
		assocFrame("0.0.0.0", otherPort, "unspecified"),
		assocFrame("::", otherPort, "unspecified v6"),
		assocFrame("blocked.lan", otherPort, "resolves to 0.0.0.0"),
		assocFrame("127.1", otherPort, "inet_aton form"),
		assocFrame("0x7f.1", otherPort, "inet_aton form"),
	}
	for _, f := range denied {
		s.Write(f)
	}
	// Allowed by name: it goes to the one allowed address of the name.
	s.Write(assocFrame("echo.test", echo.Port(), "by allowed name"))
	others := echoed("last")
	byName := string(assocFrame("127.0.0.1", echo.Port(), "echo:by allowed name")[2:])
	if !slices.Contains(others, byName) {
		t.Errorf("no answer to the datagram to echo.test; got %q", others)
	}
	time.Sleep(100 * time.Millisecond) // let stray datagrams land
	if n := other.Load(); n != 0 {
		t.Errorf("%d datagrams reached 127.0.0.1:%d, which alice may not reach", n, otherPort)
	}
	if n := samePort.Load(); n != 0 {
		t.Errorf("%d datagrams reached 127.0.0.2:%d, which alice may not reach", n, echo.Port())
	}
	s.Close()
	waitFor(t, "the association's log line", func() bool { return findEntry(e.Hook, "stream closed") != nil })
	entry := findEntry(e.Hook, "stream closed")
	if got := entry.Data["datagrams_denied"]; got != uint64(len(denied)) {
		t.Errorf("datagrams_denied = %v, want %d", got, len(denied))
	}
}
