package e2e

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/warren-p2p/warren/daemon"
)

// TestDashboard loads the admin listener's page in headless Chromium
// against a running pair with traffic on its link: the page, drawn by its
// own script from /status, names the peer, its state and path, the
// listeners, and draws a sparkline. The screenshot goes to
// $WARREN_ARTIFACTS (default: a directory under the system's temp dir),
// for a person to look at, never into the repository.
func TestDashboard(t *testing.T) {
	chromium := needTool(t, "chromium", "chromium")
	w := newWorld(t, localhost{}, hostPort("127.0.0.1", freePort(t, localhost{})))
	keys := map[string]string{"friend": w.keygen("friend"), "home": w.keygen("home")}
	web := hostPort("127.0.0.1", freePort(t, localhost{}))
	p := startPair(t, w, "share-service", localhost{}, localhost{}, "friend", "home", keys,
		[]string{"127.0.0.1:8080", web, "127.0.0.1:27015", hostPort("127.0.0.1", freePort(t, localhost{}))}, nil)
	page := "http://" + p.clientAdmin + "/"

	resp, err := http.Get(page)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") ||
		!strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'none'") || len(body) > 16<<10 {
		t.Fatalf("GET /: %s, %s, CSP %q, %d bytes", resp.Status, resp.Header.Get("Content-Type"), resp.Header.Get("Content-Security-Policy"), len(body))
	}

	// Two throughput samples (10 s) make a line to draw.
	waitStatus(t, localhost{}, p.clientAdmin, 20*time.Second, "two throughput samples", func(st daemon.Status) bool {
		return len(st.Peers) == 1 && st.Peers[0].Throughput != nil && len(st.Peers[0].Throughput.InBps) >= 2
	})

	// The script draws the page from /status once loaded; virtual time
	// lets its first refreshes run before the DOM is dumped.
	r := headlessChromium(t, localhost{}, chromium, "--virtual-time-budget=5000", "--dump-dom", page)
	if r.err != nil {
		t.Fatalf("chromium: %v\n%s", r.err, tail(r.stderr, 2000))
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`<td>home</td><td class="ok">connected</td><td>direct-(tcp|udp)</td><td>\S+ / \S+</td>`),
		regexp.MustCompile(`<b class="ok">registered</b>`),
		regexp.MustCompile(`<td>forward\[0\]</td><td>forward</td><td>` + regexp.QuoteMeta(web) + `</td><td>home</td><td>service photos</td>`),
		regexp.MustCompile(`<svg width="180" height="28"><polyline points="[^"]+" fill="none" stroke="#2563eb"`),
	} {
		if !want.MatchString(r.stdout) {
			t.Errorf("the dashboard's DOM lacks %s:\n%s", want, tail(r.stdout, 4000))
		}
	}

	dir := os.Getenv("WARREN_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "warren-artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(dir, "dashboard.png")
	os.Remove(shot)
	r = headlessChromium(t, localhost{}, chromium, "--virtual-time-budget=5000", "--window-size=1200,500", "--screenshot="+shot, page)
	if st, err := os.Stat(shot); err != nil || st.Size() < 5000 {
		t.Fatalf("no screenshot of the dashboard (%v): %v\n%s", err, r.err, tail(r.stderr, 2000))
	}
	t.Logf("dashboard screenshot: %s (taken %s)", shot, time.Now().Format(time.RFC3339))
}
