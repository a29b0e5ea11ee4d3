package e2e

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/warren-p2p/warren/natlab"
)

// homeOnlyName is a host name that resolves only inside home's namespace
// (see homeOnlyHosts): a browser that loads a page by this name resolved it
// at the exit.
const homeOnlyName = "page.home-only.test"

// TestBrowserAcrossConeNATs: headless Chromium on a laptop behind one
// port-restricted cone NAT, its proxy set to warren's SOCKS5 listener
// (examples/browser-exit), loads a page that exists only on home's
// loopback, behind the other NAT. The page is new each run (a random
// token) and has a script derive a second value from it, so the check
// cannot pass by accident and proves that a browser ran the page.
//
// Chromium sends host names to a socks5:// proxy unresolved (like curl's
// socks5h): a name that only home can resolve loads. It bypasses the proxy
// for localhost and loopback addresses unless --proxy-bypass-list has
// "<-loopback>"; a decoy page on the laptop's own loopback, at the same
// port, tells the two apart, and the last case pins the default down.
func TestBrowserAcrossConeNATs(t *testing.T) {
	chromium := needTool(t, "chromium", "chromium")
	lab, a, b := twoCones(t)
	laptop, home := a.Host(), b.Host()
	homeOnlyHosts(t, home, homeOnlyName)
	w := labWorld(t, lab)

	token := rand.Text()
	webPort := servePage(t, home, tokenPage(token))
	// A decoy at the same port on the laptop's own loopback: a browser
	// that bypasses the proxy gets it, and one that does not never can.
	decoy := "decoy on the laptop's own loopback " + rand.Text()
	servePageOn(t, laptop, hostPort("127.0.0.1", webPort), decoy)
	_, socks := browserExitPair(t, w, laptop, home)
	// The name must not resolve at the laptop, or its case proves nothing.
	if r := runClient(t, laptop, 10*time.Second, nil, "getent", "-s", "files", "hosts", homeOnlyName); r.err == nil {
		t.Fatalf("%s resolves on the laptop too (%q): the hosts file leaked", homeOnlyName, r.stdout)
	}

	for _, tc := range []struct {
		name, host     string
		proxyLoopback  bool // pass --proxy-bypass-list=<-loopback>
		wantThroughNAT bool
	}{
		{"name resolved at home", homeOnlyName, false, true},
		{"localhost", "localhost", true, true},
		{"127.0.0.1", "127.0.0.1", true, true},
		{"localhost bypasses the proxy by default", "localhost", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := "http://" + hostPort(tc.host, webPort) + "/"
			r := chromiumDumpDOM(t, laptop, chromium, socks, tc.proxyLoopback, url)
			want, where := token, "home's page through the NATs"
			if !tc.wantThroughNAT {
				want, where = decoy, "the decoy on the laptop's own loopback (proxy bypassed)"
			}
			if r.err != nil || !strings.Contains(r.stdout, want) {
				t.Fatalf("chromium (proxy socks5://%s) loading %s: want %s, got exit %v after %v\n--- DOM ---\n%s\n--- chromium stderr (tail) ---\n%s",
					socks, url, where, r.err, r.took.Round(time.Millisecond), r.stdout, tail(r.stderr, 30))
			}
			if tc.wantThroughNAT {
				if js := `<p id="js">js:` + reverse(token) + `</p>`; !strings.Contains(r.stdout, js) {
					t.Fatalf("the page's script did not run: no %s in the DOM:\n%s", js, r.stdout)
				}
			}
			t.Logf("chromium loaded %s from %s in %v (process start to exit)", url, where, r.took.Round(time.Millisecond))
		})
	}
}

// tokenPage is an HTML page carrying token, with a script that writes the
// token reversed into #js (the served bytes never hold the reversed token).
func tokenPage(token string) string {
	return `<!DOCTYPE html>
<html><head><title>warren e2e</title></head><body>
<p id="token">` + token + `</p>
<p id="js"></p>
<script>document.getElementById("js").textContent = "js:" + document.getElementById("token").textContent.split("").reverse().join("");</script>
</body></html>
`
}

func reverse(s string) string {
	r := []rune(s)
	for i, j := 0, len(r)-1; i < j; i, j = i+1, j-1 {
		r[i], r[j] = r[j], r[i]
	}
	return string(r)
}

// homeOnlyHosts gives programs started in h's namespace their own
// /etc/hosts, in which name is 127.0.0.1, and a resolv.conf whose server
// (h's loopback, where none listens) fails every other lookup at once: the
// lab has no internet, and the background requests Chromium sends through
// the proxy (update.googleapis.com, accounts.google.com) would otherwise
// wait out DNS timeouts at the exit and hold its shutdown. It works as
// `ip netns exec NS` bind-mounts /etc/netns/NS/* over /etc; Host.Do and
// other namespaces keep the real files.
func homeOnlyHosts(t testing.TB, h *natlab.Host, name string) {
	t.Helper()
	dir := filepath.Join("/etc/netns", h.Name())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		os.RemoveAll(dir)
		os.Remove("/etc/netns") // only if no one else uses it
	})
	files := map[string]string{
		"hosts":       fmt.Sprintf("127.0.0.1\tlocalhost\n::1\tlocalhost\n127.0.0.1\t%s\n", name),
		"resolv.conf": "nameserver 127.0.0.1\noptions attempts:1 timeout:1\n",
	}
	for f, content := range files {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// chromiumDumpDOM runs headless Chromium on m with a fresh profile and its
// proxy set to the SOCKS5 listener socks, loads url and returns the DOM it
// prints after the load.
func chromiumDumpDOM(t testing.TB, m machine, chromium, socks string, proxyLoopback bool, url string) clientResult {
	t.Helper()
	args := []string{"--proxy-server=socks5://" + socks}
	if proxyLoopback {
		args = append(args, "--proxy-bypass-list=<-loopback>")
	}
	return headlessChromium(t, m, chromium, append(args, "--dump-dom", url)...)
}

// headlessChromium runs headless Chromium on m with a fresh profile and
// args, for at most 30 s.
func headlessChromium(t testing.TB, m machine, chromium string, args ...string) clientResult {
	t.Helper()
	home := t.TempDir()
	args = append([]string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + filepath.Join(home, "profile"),
	}, args...)
	env := []string{"HOME=" + home, "XDG_CONFIG_HOME=" + filepath.Join(home, ".config"), "XDG_CACHE_HOME=" + filepath.Join(home, ".cache")}
	return runClient(t, m, 30*time.Second, env, chromium, args...)
}

// browserExitPair runs examples/browser-exit's daemons on laptop and home,
// checks that their link is direct, and returns them with laptop's SOCKS5
// address.
func browserExitPair(t testing.TB, w *world, laptop, home machine) (pair, string) {
	t.Helper()
	keys := map[string]string{"laptop": w.keygen("laptop"), "home": w.keygen("home")}
	socks := hostPort("127.0.0.1", freePort(t, laptop))
	p := startPair(t, w, "browser-exit", laptop, home, "laptop", "home", keys,
		[]string{"127.0.0.1:1080", socks}, nil)
	if !strings.HasPrefix(p.link.Path, "direct-") {
		t.Errorf("path %q, want a direct path", p.link.Path)
	}
	return p, socks
}
