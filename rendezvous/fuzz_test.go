package rendezvous

// Fuzz targets for what the rendezvous code reads from the network, beyond
// the control frames (FuzzReadMessage): UDP probes at the server
// (FuzzServeUDP) and their replies at the peer (FuzzProbeReply); the first
// bytes of a TCP connection to the control port, which pick a relay, a TCP
// probe or TLS, and the relay's framing (FuzzServeConn); what a peer reads
// from the server on a TCP probe or relay connection (FuzzServerAnswer);
// and what a registered peer makes of each control message
// (FuzzClientHandle).

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/warren-p2p/warren/identity"
	"github.com/warren-p2p/warren/internal/fuzztest"
	"github.com/warren-p2p/warren/punch"
)

var fzSession = punch.SessionID{0: 0x5e, 1: 0x55, 15: 0x01}

// fzSources are the addresses probes come from (as a dual-stack socket
// reports them: IPv4 may be mapped).
var fzSources = []netip.AddrPort{
	netip.MustParseAddrPort("198.51.100.7:40000"),
	netip.MustParseAddrPort("[2001:db8::7]:1"),
	netip.MustParseAddrPort("[::ffff:203.0.113.9]:65535"),
}

// fzPacketConn is a UDP socket that receives in, one datagram from from,
// and then fails; it records what is written to it.
type fzPacketConn struct {
	in     []byte
	from   net.Addr
	done   bool
	writes []fzDatagram
}

type fzDatagram struct {
	b  []byte
	to net.Addr
}

func (c *fzPacketConn) ReadFrom(b []byte) (int, net.Addr, error) {
	if c.done {
		return 0, nil, io.EOF
	}
	c.done = true
	return copy(b, c.in), c.from, nil
}

func (c *fzPacketConn) WriteTo(b []byte, to net.Addr) (int, error) {
	c.writes = append(c.writes, fzDatagram{bytes.Clone(b), to})
	return len(b), nil
}

func (c *fzPacketConn) Close() error                     { return nil }
func (c *fzPacketConn) LocalAddr() net.Addr              { return &net.UDPAddr{IP: net.IPv4zero, Port: 7777} }
func (c *fzPacketConn) SetDeadline(time.Time) error      { return nil }
func (c *fzPacketConn) SetReadDeadline(time.Time) error  { return nil }
func (c *fzPacketConn) SetWriteDeadline(time.Time) error { return nil }

// FuzzServeUDP has the server's UDP probe endpoint receive one arbitrary
// datagram. It must answer exactly the well-formed probes (a plain probe,
// or a session probe naming side 0 or 1) that leave room for the answer,
// with the probe's header followed by the source it saw, IPv4 unmapped,
// which the prober's own reply parser must read back; never with more
// bytes than the probe (no amplification); and anything else must go
// unanswered (no reflection of strangers' packets).
func FuzzServeUDP(f *testing.F) {
	session := make([]byte, sessionProbeLen)
	copy(session, sessionProbeMagic)
	copy(session[4:], fzSession[:])
	session[20] = 1
	binary.BigEndian.PutUint16(session[21:], 4500)
	f.Add(plainProbe(), uint8(0))
	f.Add(session, uint8(2))
	f.Add(append(plainProbe(), make([]byte, probeSize-probeLen)...), uint8(1))
	f.Add(append(bytes.Clone(session), make([]byte, probeSize-sessionProbeLen)...), uint8(1))
	f.Add(append(plainProbe(), 0), uint8(1))
	f.Add(append([]byte(sessionProbeMagic), make([]byte, 16)...), uint8(0))
	f.Add([]byte("WRU\x01 a punch packet"), uint8(0))
	// Without the probe rate, which would stop answering a source after
	// its burst.
	srv, err := NewServer(ServerConfig{Key: fzServerKey(f), Log: quietLog()}.WithoutLimits())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, req []byte, src uint8) {
		from := fzSources[int(src)%len(fzSources)]
		pc := &fzPacketConn{in: req, from: net.UDPAddrFromAddrPort(from)}
		if err := srv.ServeUDP(context.Background(), pc); err == nil {
			t.Fatal("ServeUDP returned no error for a failed socket")
		}

		plain := len(req) >= probeLen && string(req[:4]) == probeMagic
		sess := len(req) >= sessionProbeLen && string(req[:4]) == sessionProbeMagic && req[20] <= 1
		for _, w := range pc.writes {
			if len(w.b) > len(req) {
				t.Fatalf("a %d-byte datagram %x was answered with %d bytes", len(req), req, len(w.b))
			}
		}
		hdr := probeLen
		if sess {
			hdr = sessionProbeLen
		}
		seen := netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		if !plain && !sess || hdr+len(seen.String()) > len(req) {
			if len(pc.writes) > 0 {
				t.Fatalf("answered %x with %x", req, pc.writes[0].b)
			}
			if !plain && !sess {
				return
			}
		} else {
			if len(pc.writes) != 1 {
				t.Fatalf("probe %x answered %d times", req, len(pc.writes))
			}
			w := pc.writes[0]
			if want := append(bytes.Clone(req[:hdr]), seen.String()...); !bytes.Equal(w.b, want) {
				t.Fatalf("probe %x from %v answered %q, want %q", req, from, w.b, want)
			}
			if w.to.String() != pc.from.String() {
				t.Fatalf("answer sent to %v, not to the prober at %v", w.to, pc.from)
			}
			mapped, ok, err := parseReply(req[:hdr], w.b)
			if !ok || err != nil || mapped != seen {
				t.Fatalf("the prober reads the answer %q as %v, %v, %v; want %v", w.b, mapped, ok, err, seen)
			}
		}
		// The session probe's fields, as the server reads them.
		_, sp, ok := parseProbe(req, seen)
		switch {
		case !ok:
			t.Fatal("parseProbe refused a well-formed probe")
		case plain != (sp == nil):
			t.Fatalf("plain probe %v, session %+v", plain, sp)
		case sess && (sp.side != int(req[20]) || sp.localPort != binary.BigEndian.Uint16(req[21:]) || !bytes.Equal(sp.session[:], req[4:20])):
			t.Fatalf("session probe %x read as %+v", req, sp)
		}
	})
}

var (
	fzKeyOnce sync.Once
	fzKey     identity.PrivateKey
)

// fzServerKey is one key for all of a fuzz process's servers.
func fzServerKey(t testing.TB) identity.PrivateKey {
	fzKeyOnce.Do(func() {
		var err error
		if fzKey, err = identity.Generate(); err != nil {
			t.Fatal(err)
		}
	})
	return fzKey
}

// FuzzProbeReply gives the prober an arbitrary datagram as the answer to
// its probe: from the server, or from anyone who knows where it probes
// from. Only a datagram that echoes the request and goes on names an
// endpoint, and what it names is what it says.
func FuzzProbeReply(f *testing.F) {
	req := bytes.Repeat([]byte{0x42}, probeLen)
	copy(req, probeMagic)
	f.Add(append(bytes.Clone(req), "198.51.100.7:40000"...))
	f.Add(append(bytes.Clone(req), "[2001:db8::7]:1"...))
	f.Add(append(bytes.Clone(req), "[::ffff:1.2.3.4]:0"...))
	f.Add(append(bytes.Clone(req), "1.2.3.4:99999"...))
	f.Add(bytes.Clone(req))
	f.Add([]byte("198.51.100.7:40000"))
	f.Fuzz(func(t *testing.T, reply []byte) {
		for _, reply := range [][]byte{reply, append(bytes.Clone(req), reply...)} {
			mapped, ok, err := parseReply(req, reply)
			echoes := len(reply) > len(req) && bytes.Equal(reply[:len(req)], req)
			if ok != echoes {
				t.Fatalf("parseReply(%q) ok = %v, echoes the request: %v", reply, ok, echoes)
			}
			if !ok || err != nil {
				continue
			}
			want, perr := netip.ParseAddrPort(string(reply[len(req):]))
			if perr != nil || mapped != want || !mapped.IsValid() {
				t.Fatalf("parseReply(%q) = %v, want %v (%v)", reply, mapped, want, perr)
			}
		}
	})
}

// The ends of every fake connection: the server's control port and a
// peer.
var (
	fzServerAddr = &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 7777}
	fzPeerAddr   = &net.TCPAddr{IP: net.IPv4(198, 51, 100, 7), Port: 40000}
)

// newFzConn is a TCP connection whose peer sent in and then half-closed.
func newFzConn(in []byte) *fuzztest.Conn { return fuzztest.NewConn(in, fzServerAddr, fzPeerAddr) }

// fzRelayServer is a server with relaying on, and a punch session it
// issued to two registered peers (over loopback), whose relay connections
// come in on ln.
type fzRelayServer struct {
	srv     *Server
	ln      *fuzztest.Listener
	session punch.SessionID
	keys    [2]identity.PublicKey // the session's, by side
	// errors holds the server's error logs: serveConn recovers from a
	// panic and logs it as one, which must not pass unnoticed here.
	errors *logtest.Hook
}

func startFzRelayServer(f *testing.F) *fzRelayServer {
	ctx, cancel := context.WithCancel(context.Background())
	// Without the limits per source: every fuzzed connection comes from
	// the same address.
	log := logrus.New()
	log.SetOutput(io.Discard)
	log.SetLevel(logrus.ErrorLevel)
	hook := logtest.NewLocal(log)
	srv, err := NewServer(ServerConfig{Key: fzServerKey(f), Log: log, Relay: true,
		NATWait: time.Millisecond, RelayWindow: 24 * time.Hour, HandshakeTimeout: 10 * time.Second}.WithoutLimits())
	if err != nil {
		f.Fatal(err)
	}
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	ln := fuzztest.NewListener(fzServerAddr, 0)
	var wg sync.WaitGroup
	f.Cleanup(func() { cancel(); wg.Wait() })
	wg.Go(func() { srv.Serve(ctx, tcp) })
	wg.Go(func() { srv.Serve(ctx, ln) })

	punches := make(chan Punch, 2)
	var clients []*Client
	for range 2 {
		key, err := identity.Generate()
		if err != nil {
			f.Fatal(err)
		}
		c, err := NewClient(ClientConfig{Address: tcp.Addr().String(), ServerKey: srv.PublicKey(), Key: key,
			Log: quietLog(), OnPunch: func(p Punch) { punches <- p }, Consent: consentAll})
		if err != nil {
			f.Fatal(err)
		}
		wg.Go(func() { c.Run(ctx) })
		select {
		case <-c.Registered():
		case <-time.After(10 * time.Second):
			f.Fatal("client did not register")
		}
		clients = append(clients, c)
	}
	if err := clients[0].Connect(clients[1].cfg.Key.Public()); err != nil {
		f.Fatal(err)
	}
	var p Punch
	select {
	case p = <-punches:
	case <-time.After(10 * time.Second):
		f.Fatal("no punch session was coordinated")
	}
	id, err := punch.ParseSessionID(p.Session)
	if err != nil {
		f.Fatal(err)
	}
	// p went to the client that is not p.Peer, as side p.Side.
	var keys [2]identity.PublicKey
	keys[1-p.Side] = p.Peer
	for _, c := range clients {
		if k := c.cfg.Key.Public(); k != p.Peer {
			keys[p.Side] = k
		}
	}
	return &fzRelayServer{srv: srv, ln: ln, session: id, keys: keys, errors: hook}
}

// reissue makes the session relayable again: it serves one pair.
func (rs *fzRelayServer) reissue() {
	rs.srv.mu.Lock()
	defer rs.srv.mu.Unlock()
	rs.srv.issued[rs.session] = issuedSession{at: time.Now(), keys: rs.keys}
}

// fzLoopPeer is the end of the fake relay and probe connections: the
// source the session's peers registered from (a relay may come from
// anywhere; its token binds it).
var fzLoopPeer = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}

// fzHeader is what a connection's header asks of the server: "relay",
// "probe" or "" (TLS, or garbage that is closed).
func (rs *fzRelayServer) fzHeader(b []byte) (kind string, side byte) {
	if len(b) < tcpProbeLen || b[20] > 1 {
		return "", 0
	}
	switch string(b[:4]) {
	case relayMagic:
		if len(b) < relayHeaderLen {
			return "", 0
		}
		var tok RelayToken
		copy(tok[:], b[tcpProbeLen:])
		if bytes.Equal(b[4:20], rs.session[:]) && rs.srv.relaySecret.valid(tok, rs.session, int(b[20]), rs.keys[b[20]]) {
			return "relay", b[20]
		}
		return "stranger relay", b[20]
	case tcpProbeMagic, observeMagic:
		// An IPv6 observation is answered like a probe, whatever its
		// token: the answer is only the source.
		return "probe", b[20]
	}
	return "", 0
}

// FuzzServeConn opens two TCP connections to the control port at once,
// sending arbitrary bytes and then half-closing. The first bytes choose
// what the server does: a relay (header "WRR\x02", session ID, side,
// token), a
// TCP session probe ("WRP\x03", session ID, side), an IPv6 observation
// ("WRP\x04", token, zero) or, for anything not
// starting with 'W', TLS. A session ID of all zeros in an input stands for
// the live session the server issued (whose ID is random), any other for a
// session it never issued; a relay token of all zeros for the live
// session stands for its side's token, any other for a forged one.
//
// Two relay connections for the live session from its two sides must be
// paired, each answered with the paired byte and then carrying exactly
// every byte the other sent after its header (none lost in the server's
// read-ahead, none added); a probe must be answered with the source
// endpoint and a newline; a relay for a session the server never issued,
// or a header it does not know, must be closed unanswered. Inputs that
// would leave one relay side waiting for its partner (10 s) are skipped.
func FuzzServeConn(f *testing.F) {
	hdr := func(magic string, side byte) []byte {
		h := append(append([]byte(magic), make([]byte, 16)...), side)
		if magic == relayMagic {
			h = append(h, make([]byte, 16)...)
		}
		return h
	}
	f.Add(append(hdr(relayMagic, 0), "\x16\x03\x01 client's TLS"...), append(hdr(relayMagic, 1), "server's TLS"...))
	f.Add(hdr(relayMagic, 1), hdr(relayMagic, 0))
	f.Add(hdr(tcpProbeMagic, 0), hdr(tcpProbeMagic, 1))
	f.Add(hdr(observeMagic, 0), append(hdr(observeMagic, 1), "x"...))
	f.Add(append(hdr(relayMagic, 0)[:4], bytes.Repeat([]byte{1}, 17)...), []byte("WRP\x03"))
	f.Add([]byte("\x16\x03\x01\x00\x05hello"), []byte("GET / HTTP/1.1\r\n\r\n"))
	f.Add(append(hdr(relayMagic, 2), "x"...), []byte{})
	// An authorisation for a cluster's node, at a single server: refused.
	f.Add(append(hdr(relayAuthMagic, 0), make([]byte, relayAuthLen)...), append(hdr(relayAuthMagic, 1), make([]byte, relayAuthLen)...))
	rs := startFzRelayServer(f)
	f.Fuzz(func(t *testing.T, a, b []byte) {
		var in [2][]byte
		kinds := [2]string{}
		sides := [2]byte{}
		for i, x := range [][]byte{a, b} {
			x = bytes.Clone(x)
			if len(x) >= 20 && bytes.Equal(x[4:20], make([]byte, 16)) {
				copy(x[4:20], rs.session[:])
				if len(x) >= relayHeaderLen && x[20] <= 1 && bytes.Equal(x[tcpProbeLen:relayHeaderLen], make([]byte, 16)) {
					tok := rs.srv.relaySecret.token(rs.session, int(x[20]), rs.keys[x[20]])
					copy(x[tcpProbeLen:], tok[:])
				}
			}
			in[i] = x
			kinds[i], sides[i] = rs.fzHeader(x)
		}
		paired := kinds[0] == "relay" && kinds[1] == "relay" && sides[0] != sides[1]
		if !paired && (kinds[0] == "relay" || kinds[1] == "relay") {
			return // one side would wait out RelayWait for its partner
		}
		rs.reissue()
		conns := [2]*fuzztest.Conn{fuzztest.NewConn(in[0], fzServerAddr, fzLoopPeer), fuzztest.NewConn(in[1], fzServerAddr, fzLoopPeer)}
		for _, c := range conns {
			select {
			case rs.ln.Conns <- c:
			case <-time.After(10 * time.Second):
				t.Fatal("the server stopped accepting")
			}
		}
		for _, c := range conns {
			select {
			case <-c.Closed():
			case <-time.After(10 * time.Second):
				t.Fatalf("connection %q not closed", in)
			}
		}
		for _, e := range rs.errors.AllEntries() {
			t.Fatalf("%q, %q: the server logged %q %v", in[0], in[1], e.Message, e.Data)
		}
		for i, c := range conns {
			got := c.Written()
			switch {
			case paired:
				want := append([]byte{relayPaired}, in[1-i][relayHeaderLen:]...)
				if !bytes.Equal(got, want) {
					t.Fatalf("relay side %d received %q, want %q", sides[i], got, want)
				}
			case kinds[i] == "probe":
				if want := "127.0.0.1:40000\n"; string(got) != want {
					t.Fatalf("probe %q answered %q, want %q", in[i], got, want)
				}
			case len(in[i]) > 0 && in[i][0] == 'W':
				if len(got) > 0 {
					t.Fatalf("%q (%s) answered %q", in[i], kinds[i], got)
				}
			}
		}
	})
}

// FuzzServerAnswer gives a peer arbitrary bytes as the server's answer on
// a TCP session probe and on a relay connection. A probe must send its
// header and read at most its 64-byte answer; a relay must send its header
// and take the connection only on the paired byte, leaving every byte
// after it (the peer's TLS) unread.
func FuzzServerAnswer(f *testing.F) {
	f.Add([]byte("198.51.100.7:40000\n"))
	f.Add([]byte("[2001:db8::1]:443\r\n"))
	f.Add([]byte{relayPaired, 0x16, 0x03, 0x01})
	f.Add([]byte{0x02})
	f.Add([]byte(strings.Repeat("9", 70) + "\n"))
	f.Fuzz(func(t *testing.T, answer []byte) {
		ctx := context.Background()
		c := newFzConn(answer)
		ap, err := ProbeSessionTCP(ctx, c, fzSession, 1)
		if got, want := c.Written(), header(tcpProbeMagic, fzSession, 1); !bytes.Equal(got, want) {
			t.Fatalf("probe sent %x, want %x", got, want)
		}
		if !c.IsClosed() {
			t.Fatal("probe left its connection open")
		}
		if read := len(answer) - c.Unread(); read > 64 {
			t.Fatalf("probe read %d bytes of its answer", read)
		}
		if err == nil {
			line, _, _ := strings.Cut(string(answer), "\n")
			if want, perr := netip.ParseAddrPort(strings.TrimSpace(line)); perr != nil || want != ap || !ap.IsValid() {
				t.Fatalf("answer %q read as %v", answer, ap)
			}
		}

		c = newFzConn(answer)
		rc, err := DialRelay(ctx, c, fzSession, 0, RelayToken{7})
		if got, want := c.Written(), relayHeader(fzSession, 0, RelayToken{7}); !bytes.Equal(got, want) {
			t.Fatalf("relay sent %x, want %x", got, want)
		}
		paired := len(answer) > 0 && answer[0] == relayPaired
		if (err == nil) != paired {
			t.Fatalf("relay answered %x: %v", answer, err)
		}
		if err != nil {
			if !c.IsClosed() {
				t.Fatal("an unpaired relay left its connection open")
			}
			return
		}
		if rc != net.Conn(c) || c.IsClosed() {
			t.Fatal("the paired relay did not hand its connection over")
		}
		if c.Unread() != len(answer)-1 {
			t.Fatalf("relay read %d bytes, want just the paired byte", len(answer)-c.Unread())
		}
	})
}

// FuzzClientHandle has a registered peer handle an arbitrary control frame
// from the server (punch and UDP instructions, errors, anything) and read
// the registration answer's UDP endpoints. What reaches the daemon must be
// well-formed: a punch names a valid key and endpoint, a UDP instruction's
// delay is within 0..2s and its port real.
func FuzzClientHandle(f *testing.F) {
	key := fzServerKey(f).Public()
	nat := ReportNAT(punch.NAT{Behind: true, Mapping: punch.MappingAddressAndPortDependent, Allocation: punch.AllocationSequential, Delta: 1})
	for _, m := range []*Message{
		{Type: TypePunch, Session: fzSession.String(), Side: 1, Peer: key.String(), Public: "198.51.100.7:40000", LAN: []string{"10.0.0.2:4000", "x"}, NAT: nat},
		{Type: TypeUDP, Session: fzSession.String(), PeerUDP: "198.51.100.7:40001", PeerTCP: "[2001:db8::1]:5", PeerLANPort: 65535, DelayMs: 2500},
		{Type: TypeUDP, DelayMs: -1, PeerLANPort: 65536},
		{Type: TypeError, Code: CodePeerOffline, Peer: key.String(), Text: "peer is not registered"},
		{Type: TypeAsk, Peer: key.String(), Seq: 7},
		{Type: TypeRegistered, Observed: "198.51.100.7:40000", UDP: []string{"0.0.0.0:7777", "[::]:7778", "192.0.2.1:7779", "bad"}},
	} {
		var b bytes.Buffer
		if err := WriteMessage(&b, m); err != nil {
			f.Fatal(err)
		}
		f.Add(b.Bytes())
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ReadMessage(bytes.NewReader(data))
		if err != nil {
			return
		}
		var punches []Punch
		var udps []UDPInfo
		c, err := NewClient(ClientConfig{Address: "192.0.2.1:7777", ServerKey: key, Key: fzServerKey(t), Log: quietLog(),
			OnPunch: func(p Punch) { punches = append(punches, p) },
		})
		if err != nil {
			t.Fatal(err)
		}
		// A UDP instruction reaches the step its session's punch handed
		// out.
		step := c.expectUDP(m.Session)
		// Consent is nil (refuse every ask), so an ask sends nothing on
		// the missing connection.
		c.handle(nil, m)
		if u, ok := step.Wait(context.Background(), 0); ok {
			udps = append(udps, u)
		}
		if len(punches)+len(udps) > 1 {
			t.Fatalf("one frame made %d punches and %d UDP instructions", len(punches), len(udps))
		}
		for _, p := range punches {
			if m.Type != TypePunch || p.Peer.IsZero() && m.Peer != (identity.PublicKey{}).String() || !p.Public.IsValid() {
				t.Fatalf("%+v passed on as %+v", m, p)
			}
			for _, a := range p.LAN {
				if !a.IsValid() {
					t.Fatalf("invalid LAN endpoint passed on: %+v", p)
				}
			}
		}
		for _, u := range udps {
			if m.Type != TypeUDP || u.Delay < 0 || u.Delay > 2*time.Second || u.PeerLANPort != 0 && m.PeerLANPort != int(u.PeerLANPort) {
				t.Fatalf("%+v passed on as %+v", m, u)
			}
		}
		dialled := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 7777}
		for _, a := range resolveUDP(m.UDP, dialled) {
			if !a.IsValid() || a.Addr().IsUnspecified() {
				t.Fatalf("server endpoints %q resolved to %v", m.UDP, a)
			}
		}
	})
}
