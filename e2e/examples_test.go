package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/warren-p2p/warren/daemon"
)

// linkWait bounds how long a test waits for a link to come up.
const linkWait = 20 * time.Second

// pair starts two daemons from an example and waits for their link. It
// returns each side's admin address and the client side's view of the link.
type pair struct {
	clientAdmin, serverAdmin string
	link                     daemon.PeerStatus
	client, server           *process
}

// startPair renders examples/<dir>/<client>.toml and <server>.toml, runs
// both daemons and waits for the client to report the link up.
func startPair(t testing.TB, w *world, dir string, cm, sm machine, client, server string, keys map[string]string, clientRepl, serverRepl []string) pair {
	t.Helper()
	s := pairSpec{dir: dir, cm: cm, sm: sm, client: client, server: server, keys: keys, clientRepl: clientRepl, serverRepl: serverRepl}
	p := launchPair(t, w, s)
	p.waitLink(t, s)
	return p
}

// pairSpec is what startPair is asked for: two daemons, their machines,
// the example they come from, their keys and the replacements in their
// configs.
type pairSpec struct {
	dir                    string
	cm, sm                 machine
	client, server         string
	keys                   map[string]string
	clientRepl, serverRepl []string
}

// launchPair is startPair without the wait for the link, for tests that
// start many pairs and then wait for all of their links.
func launchPair(t testing.TB, w *world, s pairSpec) pair {
	t.Helper()
	p := pair{clientAdmin: hostPort("127.0.0.1", freePort(t, s.cm)), serverAdmin: hostPort("127.0.0.1", freePort(t, s.sm))}
	scfg := w.render(s.dir+"/"+s.server+".toml", s.server, p.serverAdmin, s.keys, s.serverRepl...)
	ccfg := w.render(s.dir+"/"+s.client+".toml", s.client, p.clientAdmin, s.keys, s.clientRepl...)
	p.server = start(t, s.sm, s.server, "up", "-c", scfg)
	p.client = start(t, s.cm, s.client, "up", "-c", ccfg)
	return p
}

// waitLink waits until both daemons of the launched pair report their
// link up, and keeps the client's view of it.
func (p *pair) waitLink(t testing.TB, s pairSpec) {
	t.Helper()
	p.link = waitPeer(t, s.cm, p.clientAdmin, s.server, daemon.StateConnected, linkWait)
	waitPeer(t, s.sm, p.serverAdmin, s.client, daemon.StateConnected, linkWait)
}

// browserExit is use 1: a browser's SOCKS5 proxy exits through home, and
// host names are resolved there. The page exists only on home's loopback.
func browserExit(t testing.TB, w *world, laptop, home machine) pair {
	keys := map[string]string{"laptop": w.keygen("laptop"), "home": w.keygen("home")}
	const body = "a page that only home can reach\n"
	webPort := servePage(t, home, body)
	socks := hostPort("127.0.0.1", freePort(t, laptop))
	p := startPair(t, w, "browser-exit", laptop, home, "laptop", "home", keys,
		[]string{"127.0.0.1:1080", socks}, nil)
	got, code := curl(t, laptop, "--socks5-hostname", socks, "http://localhost:"+webPort+"/")
	if code != 0 || got != body {
		t.Fatalf("curl through SOCKS5: exit %d, body %q", code, got)
	}
	return p
}

// rdp is use 2: office's RDP port on laptop's localhost. A stand-in
// service checks 50 MiB byte for byte.
func rdp(t testing.TB, w *world, laptop, office machine) pair {
	keys := map[string]string{"laptop": w.keygen("laptop"), "office": w.keygen("office")}
	svc := serveHasher(t, office)
	fwd := hostPort("127.0.0.1", freePort(t, laptop))
	p := startPair(t, w, "rdp", laptop, office, "laptop", "office", keys,
		[]string{"127.0.0.1:13389", fwd}, []string{"127.0.0.1:3389", "127.0.0.1:" + svc})
	sendAndHash(t, laptop, fwd, 50<<20)
	return p
}

// shareService is use 3: a friend reaches home's one exposed service and
// nothing else. The friend's extra forward to another home port is refused
// at home (deny by default).
func shareService(t testing.TB, w *world, friend, home machine) pair {
	keys := map[string]string{"friend": w.keygen("friend"), "home": w.keygen("home")}
	const body = "holiday photos\n"
	photos := servePage(t, home, body)
	secret := servePage(t, home, "home's private admin page\n")
	fwd := hostPort("127.0.0.1", freePort(t, friend))
	sneaky := hostPort("127.0.0.1", freePort(t, friend))
	extra := "\n[[forward]]\nlisten = \"" + sneaky + "\"\npeer = \"home\"\ntarget = \"127.0.0.1:" + secret + "\"\n"
	// The game's UDP ports move off the example's 27015, which a loopback
	// run would otherwise take on the host (udp_test.go plays the game).
	gameFwd, gameSvc := hostPort("127.0.0.1", freePort(t, friend)), hostPort("127.0.0.1", freePort(t, home))
	p := startPair(t, w, "share-service", friend, home, "friend", "home", keys,
		[]string{"127.0.0.1:8080\"\npeer", fwd + "\"\npeer", "service = \"photos\"\n", "service = \"photos\"\n" + extra,
			"127.0.0.1:27015", gameFwd},
		[]string{"127.0.0.1:8080", "127.0.0.1:" + photos, "127.0.0.1:27015", gameSvc})
	got, code := curl(t, friend, "http://"+fwd+"/")
	if code != 0 || got != body {
		t.Fatalf("curl through the forward: exit %d, body %q", code, got)
	}
	got, code = curl(t, friend, "http://"+sneaky+"/")
	if code == 0 || strings.Contains(got, "private") {
		t.Fatalf("friend reached a service home did not expose: exit %d, body %q", code, got)
	}
	return p
}

// exampleUses are the three uses, each driving the configs in examples/
// between a client machine and a server machine.
var exampleUses = []struct {
	name string
	run  func(testing.TB, *world, machine, machine) pair
}{
	{"browser-exit", browserExit},
	{"rdp", rdp},
	{"share-service", shareService},
}

func TestExamplesLoopback(t *testing.T) {
	for _, tc := range exampleUses {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, localhost{}, hostPort("127.0.0.1", freePort(t, localhost{})))
			p := tc.run(t, w, localhost{}, localhost{})
			if !strings.HasPrefix(p.link.Path, "direct-") {
				t.Errorf("path %q, want a direct path", p.link.Path)
			}
		})
	}
}
