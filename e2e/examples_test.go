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
	p := pair{clientAdmin: hostPort("127.0.0.1", freePort(t, cm)), serverAdmin: hostPort("127.0.0.1", freePort(t, sm))}
	scfg := w.render(dir+"/"+server+".toml", server, p.serverAdmin, keys, serverRepl...)
	ccfg := w.render(dir+"/"+client+".toml", client, p.clientAdmin, keys, clientRepl...)
	p.server = start(t, sm, server, "up", "-c", scfg)
	p.client = start(t, cm, client, "up", "-c", ccfg)
	p.link = waitPeer(t, cm, p.clientAdmin, server, daemon.StateConnected, linkWait)
	waitPeer(t, sm, p.serverAdmin, client, daemon.StateConnected, linkWait)
	return p
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
