package e2e

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestAccessLog: a browser's worth of SOCKS5 requests costs no info line
// per connection on either side by default (they are at debug, summed up
// each minute), and one per connection on each side with access_log.
func TestAccessLog(t *testing.T) {
	for _, access := range []bool{false, true} {
		w := newWorld(t, localhost{}, hostPort("127.0.0.1", freePort(t, localhost{})))
		w.logLevel = "info"
		keys := map[string]string{"laptop": w.keygen("laptop"), "home": w.keygen("home")}
		socks := hostPort("127.0.0.1", freePort(t, localhost{}))
		var extra []string
		if access {
			extra = []string{`key_file = "home.key"`, "key_file = \"home.key\"\naccess_log = true"}
		}
		laptopRepl := []string{"127.0.0.1:1080", socks}
		if access {
			laptopRepl = append(laptopRepl, `key_file = "laptop.key"`, "key_file = \"laptop.key\"\naccess_log = true")
		}
		p := startPair(t, w, "browser-exit", localhost{}, localhost{}, "laptop", "home", keys, laptopRepl, extra)
		page := servePage(t, localhost{}, "a page\n")
		const n = 20
		for range n {
			if got, code := curl(t, localhost{}, "--socks5-hostname", socks, "http://localhost:"+page+"/"); code != 0 || got != "a page\n" {
				t.Fatalf("curl through SOCKS5: exit %d, %q", code, got)
			}
		}
		time.Sleep(300 * time.Millisecond) // the last lines are written as the streams close
		exitLines := regexp.MustCompile(`level=info msg="stream closed"`).FindAllString(p.server.output(), -1)
		localLines := regexp.MustCompile(`level=info msg="connection closed"`).FindAllString(p.client.output(), -1)
		switch {
		case !access && (len(exitLines) > 0 || len(localLines) > 0):
			t.Errorf("access_log off: %d exit and %d local info lines for %d connections, want none:\n%s", len(exitLines), len(localLines), n,
				tail(p.server.output(), 3000))
		case access && (len(exitLines) < n || len(localLines) < n):
			t.Errorf("access_log on: %d exit and %d local info lines for %d connections, want one each:\n%s", len(exitLines), len(localLines), n,
				tail(p.client.output(), 3000))
		}
		if !access && strings.Count(p.server.output(), "level=info") > 15 {
			t.Errorf("access_log off: the exit wrote %d info lines in all:\n%s", strings.Count(p.server.output(), "level=info"), p.server.output())
		}
	}
}
