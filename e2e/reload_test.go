package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/warren-p2p/warren/daemon"
)

// reloadWith rewrites the config at path to body, sends p SIGHUP and waits
// for the reload's outcome line (the n-th of its kind): "config reloaded"
// or, with wantFail, "reload failed". It returns the daemon's output.
func reloadWith(t testing.TB, p *process, path, body string, n int, wantFail bool) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	msg := "config reloaded"
	if wantFail {
		msg = "reload failed"
	}
	p.cmd.Process.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(p.output(), msg) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not log %q (#%d) after SIGHUP:\n%s", p.name, msg, n, p.output())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return p.output()
}

// TestReload changes both daemons' configs under a running stream:
// SIGHUP adds a forward, an expose and a peer, and later removes them,
// while the link and the open stream carry on untouched. Bad configs (a
// typo, a port in use) are refused with the file, line and reason, and
// the running config stays.
func TestReload(t *testing.T) {
	w := newWorld(t, localhost{}, hostPort("127.0.0.1", freePort(t, localhost{})))
	keys := map[string]string{"laptop": w.keygen("laptop"), "office": w.keygen("office")}
	echo := serveEcho(t, localhost{})
	fwd := hostPort("127.0.0.1", freePort(t, localhost{}))
	p := startPair(t, w, "rdp", localhost{}, localhost{}, "laptop", "office", keys,
		[]string{"127.0.0.1:13389", fwd}, []string{"127.0.0.1:3389", "127.0.0.1:" + echo})
	laptopCfg, officeCfg := w.dir+"/laptop.toml", w.dir+"/office.toml"
	laptopBase, err := os.ReadFile(laptopCfg)
	if err != nil {
		t.Fatal(err)
	}
	officeBase, err := os.ReadFile(officeCfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := startStream(ctx, t, localhost{}, fwd)
	since := p.link.Since

	// Add: office exposes a page, laptop forwards to it and gets a
	// third peer.
	page := servePage(t, localhost{}, "the second service\n")
	fwd2 := hostPort("127.0.0.1", freePort(t, localhost{}))
	reloadWith(t, p.server, officeCfg, string(officeBase)+fmt.Sprintf(`
[[expose]]
name = "web"
target = "127.0.0.1:%s"
peers = ["laptop"]
`, page), 1, false)
	friend := w.keygen("friend")
	added := string(laptopBase) + fmt.Sprintf(`
[[peers]]
name = "friend"
public_key = %q

[[forward]]
listen = %q
peer = "office"
service = "web"
`, friend, fwd2)
	// The reload says what it changed, not how many of each there are.
	if out := reloadWith(t, p.client, laptopCfg, added, 1, false); !regexp.MustCompile(
		`msg="config reloaded" forwards_added="\[tcp ` + regexp.QuoteMeta(fwd2) + `\]" peers_added="\[friend\]"`).MatchString(out) {
		t.Errorf("the reload's line does not name the forward and the peer it added:\n%s", out)
	}
	if got, code := curl(t, localhost{}, "http://"+fwd2+"/"); code != 0 || got != "the second service\n" {
		t.Fatalf("the added forward: curl exit %d, body %q", code, got)
	}
	st := waitStatus(t, localhost{}, p.clientAdmin, 5*time.Second, "friend listed", func(st daemon.Status) bool {
		return len(st.Peers) == 2 && st.Peers[1].Name == "friend"
	})
	if office := st.Peers[0]; office.State != daemon.StateConnected || !office.Since.Equal(*since) {
		t.Errorf("the office link changed across the reload: %+v (up since %v before)", office, since)
	}

	// Refused: an unknown key, and a forward on a port in use. Nothing
	// of them is applied.
	out := reloadWith(t, p.client, laptopCfg, added+"\nbogus = 1\n", 1, true)
	if want := regexp.MustCompile(`laptop\.toml:\d+.*bogus`); !want.MatchString(out) {
		t.Errorf("the refused reload does not say where and what:\n%s", out[strings.LastIndex(out, "reload failed"):])
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	out = reloadWith(t, p.client, laptopCfg, added+fmt.Sprintf("\n[[forward]]\nlisten = %q\npeer = \"office\"\nservice = \"web\"\n", busy.Addr()), 2, true)
	// With the file and the line of the forward's listen key.
	if want := regexp.MustCompile(`laptop\.toml:\d+: forward\[2\]\.listen: listen ` + regexp.QuoteMeta(busy.Addr().String()) + `: address already in use`); !want.MatchString(out[strings.LastIndex(out, "reload failed"):]) {
		t.Errorf("the refused reload does not name the busy forward and its line:\n%s", out[strings.LastIndex(out, "reload failed"):])
	}
	if got, code := curl(t, localhost{}, "http://"+fwd2+"/"); code != 0 || got != "the second service\n" {
		t.Fatalf("after refused reloads: curl exit %d, body %q", code, got)
	}

	// Remove what was added.
	reloadWith(t, p.client, laptopCfg, string(laptopBase), 2, false)
	if _, code := curl(t, localhost{}, "http://"+fwd2+"/"); code == 0 {
		t.Error("the removed forward still accepts connections")
	}
	waitStatus(t, localhost{}, p.clientAdmin, 5*time.Second, "friend gone", func(st daemon.Status) bool {
		return len(st.Peers) == 1 && st.Peers[0].Name == "office" && st.Peers[0].Since.Equal(*since)
	})
	s.finish(t, 0, "three reloads")
}
