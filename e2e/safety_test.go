package e2e

import (
	"context"
	"crypto/tls"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warren-p2p/warren/daemon"
	"github.com/warren-p2p/warren/identity"
	"github.com/warren-p2p/warren/rendezvous"
)

// neverConnects checks for d seconds that the daemon at admin never
// reports peer connected, and returns its last row.
func neverConnects(t testing.TB, admin, peer string, d time.Duration) daemon.PeerStatus {
	t.Helper()
	var last daemon.PeerStatus
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		st, err := status(context.Background(), localhost{}, admin)
		if err != nil {
			continue
		}
		for _, p := range st.Peers {
			if p.Name == peer {
				last = p
				if p.State == daemon.StateConnected {
					t.Fatalf("%s connected to %s: %+v", admin, peer, p)
				}
			}
		}
	}
	return last
}

// TestUnknownKeysGetNothing: a laptop that pins the wrong key for home, and
// a stranger that home does not list, never link with home: the server
// asks each daemon for its consent, and a daemon consents only to keys in
// its [[peers]]. No punch reaches anyone, and a refused ask is no line
// above debug at the daemon that refused it.
func TestUnknownKeysGetNothing(t *testing.T) {
	w := newWorld(t, localhost{}, hostPort("127.0.0.1", freePort(t, localhost{})))
	keys := map[string]string{"laptop": w.keygen("laptop"), "home": w.keygen("home")}
	wrong := map[string]string{"laptop": keys["laptop"], "home": w.keygen("someone-else")}
	homeAdmin := hostPort("127.0.0.1", freePort(t, localhost{}))
	laptopAdmin := hostPort("127.0.0.1", freePort(t, localhost{}))
	home := start(t, localhost{}, "home", "up", "-c", w.render("browser-exit/home.toml", "home", homeAdmin, keys))
	laptop := start(t, localhost{}, "laptop", "up", "-c", w.render("browser-exit/laptop.toml", "laptop", laptopAdmin, wrong,
		"127.0.0.1:1080", hostPort("127.0.0.1", freePort(t, localhost{}))))

	// A stranger that lists home, while home does not list it.
	strangerAdmin := hostPort("127.0.0.1", freePort(t, localhost{}))
	stranger := w.keygen("stranger")
	start(t, localhost{}, "stranger", "up", "-c", w.render("browser-exit/laptop.toml", "stranger", strangerAdmin, keys,
		`"laptop.key"`, `"stranger.key"`, "127.0.0.1:1080", hostPort("127.0.0.1", freePort(t, localhost{}))))

	neverConnects(t, laptopAdmin, "home", 3*time.Second)
	neverConnects(t, strangerAdmin, "home", 0)
	neverConnects(t, homeAdmin, "laptop", 0)
	for _, d := range []struct {
		name, out, asker string
	}{{"home", home.output(), stranger}, {"laptop", laptop.output(), keys["home"]}} {
		if strings.Contains(d.out, "ignoring punch") {
			t.Errorf("%s was sent a punch instruction without its consent", d.name)
		}
		if !strings.Contains(d.out, "refused a connect request") {
			t.Errorf("%s was never asked for its consent (no debug line)", d.name)
		}
		key, _ := identity.ParsePublicKey(d.asker)
		for _, line := range strings.Split(d.out, "\n") {
			if (strings.Contains(line, d.asker) || strings.Contains(line, key.Short())) && !strings.Contains(line, "level=debug") {
				t.Errorf("%s logged the key it refused above debug: %s", d.name, line)
			}
		}
	}
}

// TestLyingRendezvous: a rendezvous server that tells laptop "home is at
// mallory's endpoint" (and tells mallory to answer) gets no link: laptop
// pins home's key, and mallory cannot prove it. The server is trusted for
// addresses only.
func TestLyingRendezvous(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	liar := startLiar(t, ctx)
	w := &world{t: t, dir: t.TempDir(), rvAddr: liar.addr, rvKey: liar.key.Public().String(), logLevel: "debug"}
	keys := map[string]string{"laptop": w.keygen("laptop"), "home": w.keygen("home")}
	homeKey, _ := identity.ParsePublicKey(keys["home"])

	// mallory is a real warren daemon that would gladly talk to laptop.
	malloryKeys := map[string]string{"laptop": keys["laptop"], "home": w.keygen("mallory")}
	malloryKey, _ := identity.ParsePublicKey(malloryKeys["home"])
	liar.redirect(homeKey, malloryKey)

	malloryAdmin := hostPort("127.0.0.1", freePort(t, localhost{}))
	start(t, localhost{}, "mallory", "up", "-c", w.render("browser-exit/home.toml", "mallory", malloryAdmin, malloryKeys,
		`"home.key"`, `"mallory.key"`))
	laptopAdmin := hostPort("127.0.0.1", freePort(t, localhost{}))
	start(t, localhost{}, "laptop", "up", "-c", w.render("browser-exit/laptop.toml", "laptop", laptopAdmin, keys,
		"127.0.0.1:1080", hostPort("127.0.0.1", freePort(t, localhost{}))))

	// The liar answers no UDP probes, so each side first waits out NAT
	// discovery (3s) and then the UDP instruction (3s).
	row := neverConnects(t, laptopAdmin, "home", 9*time.Second)
	if liar.punches() == 0 {
		t.Fatal("the liar never got to lie: no punch was coordinated")
	}
	if !strings.Contains(row.Error, "does not match the pinned key") {
		t.Errorf("laptop's error for home = %q, want a key mismatch", row.Error)
	}
	neverConnects(t, malloryAdmin, "laptop", 0)
}

// liar is a rendezvous server, built from the public protocol package,
// that sends peers to the wrong endpoint.
type liar struct {
	addr string
	key  identity.PrivateKey

	mu        sync.Mutex
	conns     map[identity.PublicKey]*liarConn
	redirects map[identity.PublicKey]identity.PublicKey
	sent      int
}

type liarConn struct {
	tc       *tls.Conn
	observed netip.AddrPort
	mu       sync.Mutex
}

func (c *liarConn) send(m *rendezvous.Message) {
	c.mu.Lock()
	defer c.mu.Unlock()
	rendezvous.WriteMessage(c.tc, m)
}

func startLiar(t testing.TB, ctx context.Context) *liar {
	k, _ := identity.Generate()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &liar{addr: ln.Addr().String(), key: k, conns: map[identity.PublicKey]*liarConn{}, redirects: map[identity.PublicKey]identity.PublicKey{}}
	cert, _ := identity.Certificate(k)
	conf := identity.TLSConfig(cert, func(identity.PublicKey) error { return nil })
	context.AfterFunc(ctx, func() { ln.Close() })
	go func() {
		for {
			raw, err := ln.Accept()
			if err != nil {
				return
			}
			go l.serve(ctx, tls.Server(raw, conf), raw)
		}
	}()
	return l
}

func (l *liar) redirect(from, to identity.PublicKey) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.redirects[from] = to
}

func (l *liar) punches() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sent
}

func (l *liar) serve(ctx context.Context, tc *tls.Conn, raw net.Conn) {
	defer tc.Close()
	context.AfterFunc(ctx, func() { tc.Close() })
	if tc.Handshake() != nil {
		return
	}
	key, _ := identity.PeerKey(tc.ConnectionState())
	if m, err := rendezvous.ReadMessage(tc); err != nil || m.Type != rendezvous.TypeRegister {
		return
	}
	c := &liarConn{tc: tc, observed: netip.MustParseAddrPort(raw.RemoteAddr().String())}
	c.send(&rendezvous.Message{Type: rendezvous.TypeRegistered, Observed: c.observed.String()})
	l.mu.Lock()
	l.conns[key] = c
	l.mu.Unlock()
	for {
		m, err := rendezvous.ReadMessage(tc)
		if err != nil {
			return
		}
		switch m.Type {
		case rendezvous.TypePing:
			c.send(&rendezvous.Message{Type: rendezvous.TypePong, Seq: m.Seq})
		case rendezvous.TypeConnect:
			want, _ := identity.ParsePublicKey(m.Peer)
			l.lie(key, c, want)
		}
	}
}

// lie answers "connect me to want" by pointing the asker at the peer that
// want is redirected to, and that peer at the asker, in one session.
func (l *liar) lie(asker identity.PublicKey, ac *liarConn, want identity.PublicKey) {
	l.mu.Lock()
	impostor, ok := l.redirects[want]
	ic := l.conns[impostor]
	if ok && ic != nil {
		l.sent++
	}
	l.mu.Unlock()
	if !ok || ic == nil {
		return
	}
	session := "00112233445566778899aabbccddeeff"
	ac.send(&rendezvous.Message{Type: rendezvous.TypePunch, Session: session, Peer: want.String(), Public: ic.observed.String()})
	ic.send(&rendezvous.Message{Type: rendezvous.TypePunch, Session: session, Peer: asker.String(), Public: ac.observed.String()})
}
