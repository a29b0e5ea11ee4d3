package rendezvous

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
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
	"github.com/warren-p2p/warren/punch"
)

func quietLog() logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

type testServer struct {
	srv  *Server
	addr string
}

// startServer runs a server with cfg, under a fresh key and with a quiet
// log unless cfg has one, on loopback until ctx ends.
func startServer(t *testing.T, ctx context.Context, cfg ServerConfig) testServer {
	t.Helper()
	cfg.Key, _ = identity.Generate()
	if cfg.Log == nil {
		cfg.Log = quietLog()
	}
	srv, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { srv.Serve(ctx, ln) })
	t.Cleanup(wg.Wait)
	return testServer{srv, ln.Addr().String()}
}

// startClient runs a client of ts with cfg (its token, callbacks, and the
// server key to pin if not ts's), under a fresh key and with a quiet log
// unless cfg has them, consenting to every ask unless cfg says, until ctx
// ends.
func startClient(t *testing.T, ctx context.Context, ts testServer, cfg ClientConfig) *Client {
	t.Helper()
	cfg.Address = ts.addr
	if cfg.Log == nil {
		cfg.Log = quietLog()
	}
	if cfg.Key.Signer() == nil {
		cfg.Key, _ = identity.Generate()
	}
	if cfg.ServerKey.IsZero() {
		cfg.ServerKey = ts.srv.PublicKey()
	}
	if cfg.Consent == nil {
		// These peers list everyone; the consent tests refuse explicitly.
		cfg.Consent = consentAll
	}
	c, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { c.Run(ctx) })
	t.Cleanup(wg.Wait)
	return c
}

func consentAll(identity.PublicKey) bool { return true }

func waitRegistered(t *testing.T, c *Client) {
	t.Helper()
	select {
	case <-c.Registered():
	case <-time.After(5 * time.Second):
		t.Fatal("client did not register")
	}
}

type testClient struct {
	c       *Client
	key     identity.PrivateKey
	punches chan Punch
}

// twoClients starts a server and two registered clients, all stopped when
// the test ends.
func twoClients(t *testing.T) (a, b testClient) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ts := startServer(t, ctx, ServerConfig{NATWait: 100 * time.Millisecond})
	start := func() testClient {
		punches := make(chan Punch, 4)
		c := startClient(t, ctx, ts, ClientConfig{
			LAN:     func() []netip.AddrPort { return []netip.AddrPort{netip.MustParseAddrPort("10.1.2.3:4567")} },
			OnPunch: func(p Punch) { punches <- p },
		})
		return testClient{c, c.cfg.Key, punches}
	}
	a, b = start(), start()
	t.Cleanup(cancel) // before the cleanups above, which wait for ctx
	waitRegistered(t, a.c)
	waitRegistered(t, b.c)
	return a, b
}

func TestCoordinatePunch(t *testing.T) {
	a, b := twoClients(t)
	if !a.c.Observed().Addr().IsLoopback() {
		t.Fatalf("observed %v", a.c.Observed())
	}
	// Both ask at once: one session serves both.
	a.c.Connect(b.key.Public())
	b.c.Connect(a.c.cfg.Key.Public())
	pa, pb := <-a.punches, <-b.punches
	if pa.Session != pb.Session || pa.Peer != b.key.Public() || pb.Peer != a.key.Public() {
		t.Fatalf("punches disagree: %+v / %+v", pa, pb)
	}
	if pa.Public != b.c.Observed() || len(pa.LAN) != 1 || pa.LAN[0].String() != "10.1.2.3:4567" {
		t.Fatalf("a told %+v, b observed at %v", pa, b.c.Observed())
	}
	select {
	case p := <-a.punches:
		t.Fatalf("second session issued: %+v", p)
	case <-time.After(200 * time.Millisecond):
	}
}

// TestSessionStartsOnNATReports: a session waits for both peers' NAT
// reports, and starts when the second arrives, not when NATWait (here an
// hour) has passed; each side is told the other's NAT.
func TestSessionStartsOnNATReports(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	ts := startServer(t, ctx, ServerConfig{NATWait: time.Hour})
	var clients []testClient
	for range 2 {
		punches := make(chan Punch, 4)
		c := startClient(t, ctx, ts, ClientConfig{OnPunch: func(p Punch) { punches <- p }})
		clients = append(clients, testClient{c, c.cfg.Key, punches})
	}
	t.Cleanup(cancel)
	a, b := clients[0], clients[1]
	waitRegistered(t, a.c)
	waitRegistered(t, b.c)
	nats := []punch.NAT{{Mapping: punch.MappingEndpointIndependent}, {Mapping: punch.MappingAddressAndPortDependent}}
	if err := a.c.SetNAT(nats[0]); err != nil {
		t.Fatal(err)
	}
	if err := a.c.Connect(b.key.Public()); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-a.punches:
		t.Fatalf("session started before b reported its NAT: %+v", p)
	case <-time.After(300 * time.Millisecond):
	}
	if err := b.c.SetNAT(nats[1]); err != nil {
		t.Fatal(err)
	}
	for i, c := range []testClient{a, b} {
		select {
		case p := <-c.punches:
			if p.PeerNAT != nats[1-i] {
				t.Errorf("side %d told the peer's NAT is %v, want %v", i, p.PeerNAT, nats[1-i])
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("side %d: no punch after both NAT reports", i)
		}
	}
}

// A peer that asks again within the pair window has lost the session it
// started, and gets a new one at once; only the other side's ask is a
// duplicate.
func TestAskingAgainStartsANewSession(t *testing.T) {
	a, b := twoClients(t)
	a.c.Connect(b.key.Public())
	first := <-a.punches
	<-b.punches
	a.c.Connect(b.key.Public())
	select {
	case again := <-a.punches:
		if again.Session == first.Session {
			t.Fatal("the same session was issued twice")
		}
	case <-time.After(2 * time.Second): // the pair window is 3s
		t.Fatal("no new session for the peer that asked again")
	}
}

// Redial registers again at once, from a fresh connection.
func TestRedial(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ts := startServer(t, ctx, ServerConfig{})
	c := startClient(t, ctx, ts, ClientConfig{})
	waitRegistered(t, c)
	before := c.LocalAddr()
	c.Redial()
	if c.LocalAddr().IsValid() {
		t.Fatal("still registered right after Redial")
	}
	waitRegistered(t, c)
	if after := c.LocalAddr(); after == before || !after.IsValid() {
		t.Fatalf("registered again from %v, before from %v", after, before)
	}
}

// TestBadTokenAndWrongServerKey: a refused token and a server that is not
// the pinned key are permanent: the client says so once at error level,
// naming the config key to fix, Err reports it, and it does not try again
// within seconds (it retried every 250 ms to 30 s, at warning level).
func TestBadTokenAndWrongServerKey(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ts := startServer(t, ctx, ServerConfig{Token: "s3cret"})
	impostor, _ := identity.Generate()
	for _, tc := range []struct {
		name, token, fix string
		key              identity.PublicKey
	}{
		{"bad token", "guess", "rendezvous.token", ts.srv.PublicKey()},
		{"server key not pinned", "s3cret", "rendezvous.public_key", impostor.Public()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			log, hook := logtest.NewNullLogger()
			c := startClient(t, ctx, ts, ClientConfig{Token: tc.token, ServerKey: tc.key, Log: log})
			var perm *PermanentError
			waitErrAs(t, c, &perm)
			if !strings.Contains(perm.Fix, tc.fix) {
				t.Errorf("fix %q, want %q", perm.Fix, tc.fix)
			}
			select {
			case <-c.Registered():
				t.Fatal("registered")
			case <-time.After(1500 * time.Millisecond):
			}
			entries := hook.AllEntries()
			if len(entries) != 1 || entries[0].Level != logrus.ErrorLevel || !strings.Contains(entries[0].Message, tc.fix) {
				for _, e := range entries {
					t.Logf("%v %q %v", e.Level, e.Message, e.Data)
				}
				t.Fatalf("%d lines in 1.5 s; want one error line naming %s", len(entries), tc.fix)
			}
		})
	}
	ok := startClient(t, ctx, ts, ClientConfig{Token: "s3cret"})
	waitRegistered(t, ok)
	if err, _ := ok.Err(); err != nil {
		t.Fatalf("registered, with error %v", err)
	}
}

// TestAllowKeys: a server with allow_keys admits the listed keys only; a
// stranger's daemon is refused at registration, told which setting keeps
// it out, and never registered, so it cannot even ask for a peer.
func TestAllowKeys(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	member, _ := identity.Generate()
	ts := startServer(t, ctx, ServerConfig{AllowKeys: []identity.PublicKey{member.Public()}})
	log, hook := logtest.NewNullLogger()
	stranger := startClient(t, ctx, ts, ClientConfig{Log: log})
	var perm *PermanentError
	waitErrAs(t, stranger, &perm)
	if !strings.Contains(perm.Fix, "allow_keys") {
		t.Errorf("fix %q, want one naming allow_keys", perm.Fix)
	}
	select {
	case <-stranger.Registered():
		t.Fatal("a key not in allow_keys registered")
	case <-time.After(500 * time.Millisecond):
	}
	if e := hook.LastEntry(); e == nil || e.Level != logrus.ErrorLevel {
		t.Errorf("the stranger's daemon logged %v, want one error line", e)
	}
	ok := startClient(t, ctx, ts, ClientConfig{Key: member})
	waitRegistered(t, ok)
}

// waitErrAs waits up to 5 s for c.Err to be an error errors.As finds
// target's type in, and sets target.
func waitErrAs(t *testing.T, c *Client, target any) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if err, _ := c.Err(); err != nil && errors.As(err, target) {
			return
		}
	}
	err, _ := c.Err()
	t.Fatalf("the client's error is %v, want a %T", err, target)
}

// TestSecondDaemonWithTheKey performs issue 19's finding 3 with two
// clients of one key: the one the other displaced is told why, names the
// other's address at error level and stays away for more than seconds,
// so the newer one stays registered (they took turns every 0.2 to 1.4 s).
func TestSecondDaemonWithTheKey(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ts := startServer(t, ctx, ServerConfig{})
	key, _ := identity.Generate()
	log, hook := logtest.NewNullLogger()
	first := startClient(t, ctx, ts, ClientConfig{Key: key, Log: log})
	waitRegistered(t, first)
	second := startClient(t, ctx, ts, ClientConfig{Key: key, Dial: dialerFrom("127.0.0.7")})
	waitRegistered(t, second)
	var replaced *ReplacedError
	waitErrAs(t, first, &replaced)
	if !strings.HasPrefix(replaced.By, "127.0.0.7:") {
		t.Errorf("replaced by %q, want the second client's address", replaced.By)
	}
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		select {
		case <-second.Registered():
		default:
			t.Fatal("the second client lost its registration: the first took the key back")
		}
	}
	var errs int
	for _, e := range hook.AllEntries() {
		if e.Level == logrus.ErrorLevel && strings.Contains(e.Message, "another daemon uses this key") && e.Data["registered_from"] == replaced.By {
			errs++
		}
	}
	if errs != 1 {
		t.Fatalf("%d error lines saying another daemon uses the key, want 1", errs)
	}
}

// TestGarbageClosesOnlyThatConnection sends junk at every stage and checks
// the server keeps serving others.
func TestGarbageClosesOnlyThatConnection(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ts := startServer(t, ctx, ServerConfig{})
	k, _ := identity.Generate()
	cert, _ := identity.Certificate(k)
	for _, junk := range [][]byte{
		[]byte("GET / HTTP/1.0\r\n\r\n"),                // not TLS at all
		{0xff, 0xff, 0xff, 0xff, 1, 2, 3},               // inside TLS: huge length
		{0, 0, 0, 3, '{', '"', 'x'},                     // inside TLS: bad JSON
		append([]byte{0, 0, 0, 13}, `{"type":"zz"}`...), // unknown type
	} {
		raw, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		var w io.ReadWriter = raw
		if junk[0] != 'G' {
			tc := tls.Client(raw, identity.TLSConfig(cert, identity.Pinned(ts.srv.PublicKey())))
			if err := tc.Handshake(); err != nil {
				t.Fatal(err)
			}
			w = tc
		}
		w.Write(junk)
		raw.SetReadDeadline(time.Now().Add(5 * time.Second))
		io.Copy(io.Discard, w) // returns once the server closes
		raw.Close()
	}
	c := startClient(t, ctx, ts, ClientConfig{})
	waitRegistered(t, c)
}

func TestUDPProbe(t *testing.T) {
	server := serveProbes(t, listenUDP(t, "127.0.0.1:0"))[0]
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cl, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	got, err := ProbeUDP(ctx, cl, net.UDPAddrFromAddrPort(server))
	if err != nil || got.String() != cl.LocalAddr().String() {
		t.Fatalf("probe = %v, %v; want %v", got, err, cl.LocalAddr())
	}
}

func FuzzReadMessage(f *testing.F) {
	for _, m := range []*Message{
		{Type: TypeRegister, Version: 1, Token: "t", LAN: []string{"10.0.0.1:1"}},
		{Type: TypePunch, Session: strings.Repeat("a", 32), Peer: "x", Public: "1.2.3.4:5"},
		{Type: TypePing, Seq: 7},
	} {
		var b bytes.Buffer
		WriteMessage(&b, m)
		f.Add(b.Bytes())
	}
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ReadMessage(bytes.NewReader(data))
		if err != nil {
			return
		}
		var b bytes.Buffer
		if err := WriteMessage(&b, m); err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		m2, err := ReadMessage(&b)
		if err != nil || m2.Type != m.Type || m2.Session != m.Session || m2.Seq != m.Seq {
			t.Fatalf("round trip: %+v -> %+v, %v", m, m2, err)
		}
		if _, err := parsePunch(m); err == nil && m.Type == TypePunch && m.Peer == "" {
			t.Fatal("punch without peer parsed")
		}
	})
}

// TestSessionUDPCoordination: after a punch, each side's session probe
// makes the server tell the other side where that socket is.
func TestSessionUDPCoordination(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ts := startServer(t, ctx, ServerConfig{})
	// UDP probes on the control port, where a server that advertises no
	// UDP endpoints answers them.
	pc, err := net.ListenPacket("udp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { ts.srv.ServeUDP(ctx, pc) })
	t.Cleanup(wg.Wait)

	type side struct {
		c       *Client
		punches chan Punch
	}
	mk := func() side {
		s := side{punches: make(chan Punch, 1)}
		s.c = startClient(t, ctx, ts, ClientConfig{
			OnPunch: func(p Punch) { s.punches <- p },
		})
		waitRegistered(t, s.c)
		return s
	}
	a, b := mk(), mk()
	if got := a.c.UDPServers(); len(got) != 1 || got[0].String() != pc.LocalAddr().String() {
		t.Fatalf("UDP servers %v, want %v", got, pc.LocalAddr())
	}
	a.c.SetNAT(punch.NAT{Behind: true, Mapping: punch.MappingEndpointIndependent})
	time.Sleep(50 * time.Millisecond) // let the NAT report land before the punch
	b.c.Connect(a.c.cfg.Key.Public())
	pa, pb := <-a.punches, <-b.punches
	if pa.Side == pb.Side {
		t.Fatalf("both sides are side %d", pa.Side)
	}
	if pb.PeerNAT.Mapping != punch.MappingEndpointIndependent {
		t.Fatalf("b was not told a's NAT: %+v", pb.PeerNAT)
	}
	id, _ := punch.ParseSessionID(pa.Session)
	socks := map[int]net.PacketConn{}
	mapped := map[int]netip.AddrPort{}
	for _, p := range []Punch{pa, pb} {
		s, _ := net.ListenPacket("udp", "127.0.0.1:0")
		defer s.Close()
		m, err := ProbeSession(ctx, s, pc.LocalAddr(), id, p.Side)
		if err != nil {
			t.Fatal(err)
		}
		socks[p.Side], mapped[p.Side] = s, m
	}
	ua, oka := pa.UDP.Wait(ctx, 5*time.Second)
	ub, okb := pb.UDP.Wait(ctx, 5*time.Second)
	if !oka || !okb {
		t.Fatalf("UDP instructions: a %v, b %v", oka, okb)
	}
	if ua.PeerUDP != mapped[pb.Side] || ub.PeerUDP != mapped[pa.Side] {
		t.Fatalf("a told %v (want %v), b told %v (want %v)", ua.PeerUDP, mapped[pb.Side], ub.PeerUDP, mapped[pa.Side])
	}
}
