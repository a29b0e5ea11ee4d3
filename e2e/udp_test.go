package e2e

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/warren-p2p/warren/daemon"
	"github.com/warren-p2p/warren/natlab"
)

// The UDP tests use dnsmasq as the UDP service: a real server whose
// answers a test can check (dig prints them; SOCKS5 carries them to a DNS
// parser), and which answers only from its own config, so an answer
// proves the query reached it. In examples/share-service it stands in for
// the "game" server, as sshd stands in for RDP in TestSSHAcrossConeNATs.
const (
	lobbyName = "lobby.game.test"
	lobbyIP   = "192.0.2.77" // TEST-NET-1: nothing in the lab answers it but dnsmasq's config
	motdName  = "motd.game.test"
	motdText  = "welcome to the lobby"
	// missingName is in dnsmasq's local domain and has no record: NXDOMAIN.
	missingName = "nowhere.game.test"
)

// gameLab is examples/share-service across two port-restricted cone NATs,
// with dnsmasq on home's loopback as the "game" service.
type gameLab struct {
	w            *world
	friend, home *natlab.Host
	dnsPort      string   // dnsmasq's port on home's loopback
	dnsmasq      *process // its output has a line per query
	p            pair
	fwd          string // the friend's UDP forward, host:port (27015 in the example)
}

// newGameLab builds the lab and runs dnsmasq at home; start runs the
// daemons.
func newGameLab(t *testing.T) *gameLab {
	t.Helper()
	dnsmasq := needTool(t, "dnsmasq", "dnsmasq")
	lab, a, b := twoCones(t)
	g := &gameLab{friend: a.Host(), home: b.Host()}
	g.w = labWorld(t, lab)
	g.dnsPort, g.dnsmasq = startDNSMasq(t, g.home, dnsmasq)
	return g
}

// start renders examples/share-service with the game at dnsmasq and the
// friend's game forward on a free port, adds friendTail to the game
// forward's table (a key of its own, or further tables), runs both
// daemons and waits for a direct link.
func (g *gameLab) start(t *testing.T, friendTail string) {
	t.Helper()
	keys := map[string]string{"friend": g.w.keygen("friend"), "home": g.w.keygen("home")}
	g.fwd = hostPort("127.0.0.1", freeUDPPort(t, g.friend))
	game := strconv.Quote(hostPort("127.0.0.1", g.dnsPort))
	// The game forward's table is the last in friend.toml, so a tail after
	// its protocol line lands in it.
	const udpLine = "protocol = \"udp\"\n"
	g.p = startPair(t, g.w, "share-service", g.friend, g.home, "friend", "home", keys,
		[]string{`"127.0.0.1:27015"`, strconv.Quote(g.fwd), udpLine, udpLine + friendTail},
		[]string{`"127.0.0.1:27015"`, game})
	// A replacement that no longer matches the example would leave the
	// test checking something else; say so plainly.
	mustContain(t, filepath.Join(g.w.dir, "friend.toml"), strconv.Quote(g.fwd), udpLine+friendTail)
	mustContain(t, filepath.Join(g.w.dir, "home.toml"), game)
	if !strings.HasPrefix(g.p.link.Path, "direct-") {
		t.Errorf("path %q, want a direct path", g.p.link.Path)
	}
}

// TestUDPForwardAcrossConeNATs: dig on the friend's side asks home's
// dnsmasq through the friend's UDP forward (examples/share-service, the
// "game" service), behind two port-restricted cone NATs. Every answer is
// checked: an A record, a TXT record and a name that does not exist, each
// from a new client port (a stream each) and from one fixed port (one
// stream for all). A UDP forward to a target home never exposed gets no
// answer.
func TestUDPForwardAcrossConeNATs(t *testing.T) {
	digPath := needTool(t, "dig", "bind9-dnsutils")
	g := newGameLab(t)
	sneaky := hostPort("127.0.0.1", freeUDPPort(t, g.friend))
	g.start(t, fmt.Sprintf("\n[[forward]]\nlisten = %q\npeer = \"home\"\ntarget = %q\nprotocol = \"udp\"\n",
		sneaky, hostPort("127.0.0.1", g.dnsPort)))

	fixedSrc := "127.0.0.1#" + freeUDPPort(t, g.friend)
	cases := []struct {
		name  string
		query []string // dig's query and output options
		want  string   // what dig must print
	}{
		{"A record", []string{lobbyName, "A", "+short"}, lobbyIP},
		{"TXT record", []string{motdName, "TXT", "+short"}, strconv.Quote(motdText)},
		{"no such name", []string{missingName, "A", "+noall", "+comments"}, "status: NXDOMAIN"},
	}
	for _, src := range []string{"", fixedSrc} {
		for _, tc := range cases {
			name := tc.name + ", new client port"
			args := tc.query
			if src != "" {
				name = tc.name + ", fixed client port"
				args = append([]string{"-b", src}, args...)
			}
			t.Run(name, func(t *testing.T) {
				r := dig(t, g.friend, digPath, g.fwd, args...)
				if r.err != nil || !strings.Contains(r.stdout, tc.want) {
					t.Fatalf("dig %s through the forward %s: want %q, got %v after %v\n%s%s",
						strings.Join(args, " "), g.fwd, tc.want, r.err, r.took.Round(time.Millisecond), r.stdout, r.stderr)
				}
				t.Logf("answered in %v (dig start to exit)", r.took.Round(time.Millisecond))
			})
		}
	}
	if t.Failed() {
		return
	}
	// Each new client port got a stream, and the fixed port one for its
	// three queries; the idle timeout (1m) has closed none yet.
	if got, want := peerRow(t, g.friend, g.p.clientAdmin, "home").Streams, int64(len(cases)+1); got != want {
		t.Errorf("friend's link to home has %d open streams, want %d (one per client address)", got, want)
	}
	// Each query reached dnsmasq once: the forward sent no copies.
	waitLogLine(t, g.dnsmasq, 5*time.Second, 2*len(cases), "query[")
	if n := strings.Count(g.dnsmasq.output(), "query["); n != 2*len(cases) {
		t.Errorf("dnsmasq logged %d queries, want %d:\n%s", n, 2*len(cases), g.dnsmasq.output())
	}

	// Home exposes the game, not its port: a forward straight to the port
	// is refused there (deny by default), and the datagram goes nowhere.
	r := dig(t, g.friend, digPath, sneaky, lobbyName, "+short")
	if r.err == nil || strings.Contains(r.stdout, lobbyIP) {
		t.Fatalf("dig through a UDP forward to home's unexposed 127.0.0.1:%s answered: %v\n%s", g.dnsPort, r.err, r.stdout)
	}
	waitLogLine(t, g.p.server, 5*time.Second, 1, `msg="stream refused"`, "code=2", "protocol=udp", "127.0.0.1:"+g.dnsPort)
}

// TestUDPForwardIdleAcrossConeNATs: with idle_timeout = "1s" on the
// friend's game forward, a client's stream closes about a second after its
// last datagram (the friend logs reason=idle, its link has no stream
// left), and the same client address is served again afterwards, on a new
// stream.
func TestUDPForwardIdleAcrossConeNATs(t *testing.T) {
	digPath := needTool(t, "dig", "bind9-dnsutils")
	g := newGameLab(t)
	const idle = time.Second
	g.start(t, fmt.Sprintf("idle_timeout = %q\n", idle.String()))

	// One client address for both rounds: the second must not find the
	// first's closed stream.
	src := "127.0.0.1#" + freeUDPPort(t, g.friend)
	for round := 1; round <= 2; round++ {
		r := dig(t, g.friend, digPath, g.fwd, "-b", src, lobbyName, "+short")
		answered := time.Now()
		if r.err != nil || !strings.Contains(r.stdout, lobbyIP) {
			t.Fatalf("round %d: dig from %s through the forward: want %s, got %v\n%s%s", round, src, lobbyIP, r.err, r.stdout, r.stderr)
		}
		waitStatus(t, g.friend, g.p.clientAdmin, idle+5*time.Second, "link to home without streams", noStreams("home"))
		closed := time.Since(answered)
		// The watch checks every idle/4, so the stream ends between idle
		// and 1.25*idle after the answer, plus the status poll's 50 ms. dig
		// exits just after the answer: a little slack below.
		if closed < idle*8/10 {
			t.Errorf("round %d: stream closed %v after the answer, before the %v idle timeout", round, closed.Round(time.Millisecond), idle)
		}
		// The friend closed it, for idleness.
		waitLogLine(t, g.p.client, 5*time.Second, round, `msg="udp client done"`, "reason=idle")
		// The exit saw one datagram each way on the stream, and its end.
		waitLogLine(t, g.p.server, 5*time.Second, round, `msg="stream closed"`, "protocol=udp", "datagrams_in=1 datagrams_out=1")
		t.Logf("round %d: answered in %v, stream closed %v after the answer", round, r.took.Round(time.Millisecond), closed.Round(time.Millisecond))
		if t.Failed() {
			return
		}
	}
	if n := strings.Count(g.p.server.output(), `msg="stream closed"`); n != 2 {
		t.Errorf("home logged %d closed streams, want 2 (one per round):\n%s", n, g.p.server.output())
	}
}

// TestSOCKS5UDPAssociateAcrossConeNATs: a SOCKS5 client on the laptop
// (examples/browser-exit, home is its exit) opens a UDP association and
// sends real DNS queries in SOCKS5 UDP datagrams to dnsmasq on home's
// loopback, addressed by IP and by a name only home resolves. Debian has
// no client that speaks SOCKS5 UDP, so the test is the client. Closing the
// association's TCP connection must close its UDP relay.
func TestSOCKS5UDPAssociateAcrossConeNATs(t *testing.T) {
	dnsmasq := needTool(t, "dnsmasq", "dnsmasq")
	lab, a, b := twoCones(t)
	laptop, home := a.Host(), b.Host()
	homeOnlyHosts(t, home, homeOnlyName) // before home's daemon starts: it reads them there
	w := labWorld(t, lab)
	dnsPort, _ := startDNSMasq(t, home, dnsmasq)
	p, socks := browserExitPair(t, w, laptop, home)

	ctrl, relay := socksAssociate(t, laptop, socks)
	defer ctrl.Close()
	// A connected socket: it hears only the relay, and once the relay's
	// port is closed a datagram to it comes back as ECONNREFUSED.
	c, err := laptop.DialContext(context.Background(), nil, "udp", relay.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	dnsAt := netip.MustParseAddrPort("127.0.0.1:" + dnsPort)
	for i, tc := range []struct {
		name string
		host string // the datagram's destination, with dnsPort
	}{
		{"by IP", "127.0.0.1"},
		{"by a name only home resolves", homeOnlyName},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := uint16(0x5700 + i)
			start := time.Now()
			from, resp, err := socksExchange(c, tc.host, dnsAt.Port(), dnsQuery(t, id, lobbyName), 5*time.Second)
			if err != nil {
				t.Fatalf("DNS query to %s:%d through the association %s: %v", tc.host, dnsAt.Port(), relay, err)
			}
			// The exit gives the datagram's real source, whatever the
			// client called it.
			if from != dnsAt {
				t.Errorf("reply from %s, want %s", from, dnsAt)
			}
			if got := dnsARecord(t, resp, id); got != lobbyIP {
				t.Fatalf("A %s: got %q, want %s", lobbyName, got, lobbyIP)
			}
			t.Logf("A %s = %s in %v", lobbyName, lobbyIP, time.Since(start).Round(time.Millisecond))
		})
	}
	if t.Failed() {
		return
	}

	// The association lives as long as its TCP connection (RFC 1928).
	ctrl.Close()
	closed := time.Now()
	var answered int
	for {
		_, _, err := socksExchange(c, "127.0.0.1", dnsAt.Port(), dnsQuery(t, 0x5800, lobbyName), 300*time.Millisecond)
		if errors.Is(err, syscall.ECONNREFUSED) {
			break
		}
		if err == nil {
			answered++
		}
		if time.Since(closed) > 5*time.Second {
			t.Fatalf("the UDP relay %s still open 5s after its TCP connection closed (%d queries answered since): last error %v", relay, answered, err)
		}
		time.Sleep(50 * time.Millisecond) // no flood while the relay closes
	}
	t.Logf("relay closed %v after the TCP connection (%d queries answered in between)", time.Since(closed).Round(time.Millisecond), answered)
	waitStatus(t, laptop, p.clientAdmin, 5*time.Second, "link to home without streams", noStreams("home"))
	line := waitLogLine(t, p.server, 5*time.Second, 1, `msg="stream closed"`, `target="udp associate"`)
	if m := regexp.MustCompile(`datagrams_in=(\d+) datagrams_out=(\d+)`).FindStringSubmatch(line); m == nil || atoi(m[1]) < 2 || atoi(m[2]) < 2 {
		t.Errorf("home's line for the association: want at least 2 datagrams each way, got\n%s", line)
	}
}

// startDNSMasq runs dnsmasq in the foreground on h's loopback, answering
// only from its command line: lobbyName, motdName, and NXDOMAIN for the
// rest of game.test. It returns the port and the process, whose output
// logs each query.
func startDNSMasq(t *testing.T, h *natlab.Host, dnsmasq string) (string, *process) {
	t.Helper()
	port := freeUDPPort(t, h)
	p := startService(t, h, "dnsmasq", dnsmasq,
		"--keep-in-foreground", "--conf-file=/dev/null", "--pid-file=",
		"--no-resolv", "--no-hosts", "--local=/game.test/",
		"--listen-address=127.0.0.1", "--bind-interfaces", "--port="+port,
		"--address=/"+lobbyName+"/"+lobbyIP, "--txt-record="+motdName+","+motdText,
		"--log-queries", "--log-facility=-")
	p.waitOutput(t, regexp.MustCompile(`dnsmasq\[\d+\]: (started), version`), 10*time.Second)
	return port, p
}

// freeUDPPort is freePort, also free for UDP on h's loopback: dnsmasq and
// UDP forwards bind both.
func freeUDPPort(t *testing.T, h *natlab.Host) string {
	t.Helper()
	for range 20 {
		port := freePort(t, h)
		c, err := h.ListenPacket("udp", "127.0.0.1:"+port)
		if err == nil {
			c.Close()
			return port
		}
	}
	t.Fatal("no port free for both TCP and UDP")
	return ""
}

// dig runs one dig query on m against the server at addr (host:port), one
// try with a 2 s timeout.
func dig(t *testing.T, m machine, digPath, addr string, args ...string) clientResult {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return runClient(t, m, 10*time.Second, nil, digPath,
		append([]string{"@" + host, "-p", port, "+tries=1", "+timeout=2"}, args...)...)
}

// noStreams is a waitStatus condition: the link to peer carries no stream.
func noStreams(peer string) func(daemon.Status) bool {
	return func(st daemon.Status) bool {
		for _, p := range st.Peers {
			if p.Name == peer {
				return p.Streams == 0
			}
		}
		return false
	}
}

// mustContain fails the test unless the file at path holds every string.
func mustContain(t *testing.T, path string, want ...string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range want {
		if !strings.Contains(string(b), s) {
			t.Fatalf("%s lacks %q: has an example changed under the test's replacements?\n%s", path, s, b)
		}
	}
}

// waitLogLine waits for p to print its n-th line holding every one of
// parts and returns that line.
func waitLogLine(t *testing.T, p *process, max time.Duration, n int, parts ...string) string {
	t.Helper()
	deadline := time.Now().Add(max)
	for {
		seen := 0
	lines:
		for l := range strings.Lines(p.output()) {
			for _, s := range parts {
				if !strings.Contains(l, s) {
					continue lines
				}
			}
			if seen++; seen == n {
				return l
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s logged %d lines with all of %q within %v, want %d:\n%s", p.name, seen, parts, max, n, p.output())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// socksAssociate greets the SOCKS5 server at addr from m without
// authentication and asks for a UDP association (RFC 1928, CMD 3) with an
// unknown client address. It returns the TCP connection, whose end ends
// the association, and the relay's address from the reply.
func socksAssociate(t *testing.T, m machine, addr string) (net.Conn, netip.AddrPort) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := m.DialContext(ctx, nil, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fail := func(format string, args ...any) {
		t.Helper()
		c.Close()
		t.Fatalf("SOCKS5 UDP ASSOCIATE at %s: "+format, append([]any{addr}, args...)...)
	}
	if _, err := c.Write([]byte{5, 1, 0}); err != nil { // version, one method: none
		fail("greeting: %v", err)
	}
	var method [2]byte
	if _, err := io.ReadFull(c, method[:]); err != nil || method != [2]byte{5, 0} {
		fail("method reply %v: %v", method, err)
	}
	// DST.ADDR 0.0.0.0:0: the client does not know yet where it sends from.
	if _, err := c.Write([]byte{5, 3, 0, 1, 0, 0, 0, 0, 0, 0}); err != nil {
		fail("request: %v", err)
	}
	var head [4]byte // VER REP RSV ATYP
	if _, err := io.ReadFull(c, head[:]); err != nil {
		fail("reply: %v", err)
	}
	if head[0] != 5 || head[1] != 0 {
		fail("reply code %d (version %d), want 0", head[1], head[0])
	}
	var ip []byte
	switch head[3] {
	case 1:
		ip = make([]byte, 4)
	case 4:
		ip = make([]byte, 16)
	default:
		fail("reply address type %d, want an IP", head[3])
	}
	port := make([]byte, 2)
	if _, err := io.ReadFull(c, ip); err != nil {
		fail("reply address: %v", err)
	}
	if _, err := io.ReadFull(c, port); err != nil {
		fail("reply port: %v", err)
	}
	c.SetDeadline(time.Time{})
	a, _ := netip.AddrFromSlice(ip)
	relay := netip.AddrPortFrom(a.Unmap(), binary.BigEndian.Uint16(port))
	if !relay.Addr().IsLoopback() || relay.Port() == 0 {
		fail("relay %s, want a port on the listener's loopback", relay)
	}
	return c, relay
}

// socksExchange sends data to host:port in a SOCKS5 UDP datagram (RSV RSV
// FRAG ATYP DST.ADDR DST.PORT DATA, RFC 1928 section 7) over c, a socket
// connected to the relay, and waits up to max for one datagram back. It
// returns the reply's source address (the relay must give an IP) and data.
func socksExchange(c net.Conn, host string, port uint16, data []byte, max time.Duration) (netip.AddrPort, []byte, error) {
	pkt := []byte{0, 0, 0}
	if a, err := netip.ParseAddr(host); err == nil && a.Is4() {
		pkt = append(append(pkt, 1), a.AsSlice()...)
	} else if err == nil {
		pkt = append(append(pkt, 4), a.AsSlice()...)
	} else {
		pkt = append(append(pkt, 3, byte(len(host))), host...)
	}
	pkt = binary.BigEndian.AppendUint16(pkt, port)
	pkt = append(pkt, data...)
	if _, err := c.Write(pkt); err != nil {
		return netip.AddrPort{}, nil, err
	}
	c.SetReadDeadline(time.Now().Add(max))
	buf := make([]byte, 64<<10)
	n, err := c.Read(buf)
	if err != nil {
		return netip.AddrPort{}, nil, err
	}
	b := buf[:n]
	if len(b) < 4 || b[0] != 0 || b[1] != 0 || b[2] != 0 {
		return netip.AddrPort{}, nil, fmt.Errorf("reply datagram % x: bad header", b[:min(len(b), 4)])
	}
	var alen int
	switch b[3] {
	case 1:
		alen = 4
	case 4:
		alen = 16
	default:
		return netip.AddrPort{}, nil, fmt.Errorf("reply datagram address type %d, want an IP", b[3])
	}
	if len(b) < 4+alen+2 {
		return netip.AddrPort{}, nil, fmt.Errorf("reply datagram of %d bytes: truncated address", len(b))
	}
	a, _ := netip.AddrFromSlice(b[4 : 4+alen])
	from := netip.AddrPortFrom(a.Unmap(), binary.BigEndian.Uint16(b[4+alen:]))
	return from, b[4+alen+2:], nil
}

// dnsQuery is a recursive DNS query for name's A record.
func dnsQuery(t *testing.T, id uint16, name string) []byte {
	t.Helper()
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: id, RecursionDesired: true})
	if err := b.StartQuestions(); err != nil {
		t.Fatal(err)
	}
	if err := b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name + "."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}); err != nil {
		t.Fatal(err)
	}
	msg, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

// dnsARecord parses a DNS response to query id and returns its one A
// record's address; it fails the test on anything else.
func dnsARecord(t *testing.T, resp []byte, id uint16) string {
	t.Helper()
	var m dnsmessage.Message
	if err := m.Unpack(resp); err != nil {
		t.Fatalf("the reply is no DNS message (%v): % x", err, resp)
	}
	if !m.Header.Response || m.Header.ID != id || m.Header.RCode != dnsmessage.RCodeSuccess {
		t.Fatalf("DNS reply header %+v, want a successful response to query %#x", m.Header, id)
	}
	var got []string
	for _, rr := range m.Answers {
		if a, ok := rr.Body.(*dnsmessage.AResource); ok {
			got = append(got, netip.AddrFrom4(a.A).String())
		}
	}
	if len(got) != 1 {
		t.Fatalf("DNS reply has A records %v, want one", got)
	}
	return got[0]
}
