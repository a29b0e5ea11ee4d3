package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/warren-p2p/warren/daemon"
)

// TestTokenStaysOutOfPs is issue 15's finding 12 for the join token: a
// server given -token shows it to every user in ps. With -token-file the
// server's command line (what ps shows) does not hold it, and a daemon
// whose token comes from token_file still registers; -token still works
// but warns.
func TestTokenStaysOutOfPs(t *testing.T) {
	const token = "join-token-9d2e41"
	dir := t.TempDir()
	tokenPath := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenPath, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	w := newWorld(t, localhost{}, hostPort("127.0.0.1", freePort(t, localhost{})), "-token-file", tokenPath)
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(w.rv.cmd.Process.Pid) + "/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(cmdline), token) {
		t.Fatalf("the server's command line holds the token: %q", cmdline)
	}
	keys := map[string]string{"home": w.keygen("home"), "laptop": w.keygen("laptop")}
	admin := hostPort("127.0.0.1", freePort(t, localhost{}))
	start(t, localhost{}, "home", "up", "-c", w.render("browser-exit/home.toml", "home", admin, keys,
		"public_key = \""+w.rvKey+"\"", "public_key = \""+w.rvKey+"\"\ntoken_file = \""+tokenPath+"\""))
	waitStatus(t, localhost{}, admin, 10*time.Second, "registration with the token from its file", func(st daemon.Status) bool {
		return st.Rendezvous == "registered"
	})

	loud := newWorld(t, localhost{}, hostPort("127.0.0.1", freePort(t, localhost{})), "-token", token)
	loud.rv.waitOutput(t, regexp.MustCompile(`-token is visible to every user`), 5*time.Second)
}
