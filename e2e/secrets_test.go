package e2e

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestSecretsStayOutOfLogs runs a server that requires a join token and a
// SOCKS5 listener with a password, all at debug level, through a
// successful login, a wrong password and a wrong token, and checks that no
// log line anywhere holds the token or either password.
func TestSecretsStayOutOfLogs(t *testing.T) {
	const (
		token    = "join-token-7f3a9c"
		password = "socks-password-b21e"
		wrong    = "wrong-password-c4d8"
	)
	w := newWorld(t, localhost{}, hostPort("127.0.0.1", freePort(t, localhost{})), "-token", token, "-log-level", "debug")
	keys := map[string]string{"laptop": w.keygen("laptop"), "home": w.keygen("home")}
	page := servePage(t, localhost{}, "behind the login\n")
	socks := hostPort("127.0.0.1", freePort(t, localhost{}))
	withToken := "public_key = \"" + w.rvKey + "\"\ntoken = \"" + token + "\""
	p := startPair(t, w, "browser-exit", localhost{}, localhost{}, "laptop", "home", keys,
		[]string{"127.0.0.1:1080\"", socks + "\"\nusername = \"alice\"\npassword = \"" + password + "\"",
			"public_key = \"" + w.rvKey + "\"", withToken},
		[]string{"public_key = \"" + w.rvKey + "\"", withToken})

	if got, code := curl(t, localhost{}, "--socks5-hostname", socks, "-U", "alice:"+password, "http://localhost:"+page+"/"); code != 0 || got != "behind the login\n" {
		t.Fatalf("curl with the right password: exit %d, %q", code, got)
	}
	if _, code := curl(t, localhost{}, "--socks5-hostname", socks, "-U", "alice:"+wrong, "http://localhost:"+page+"/"); code == 0 {
		t.Fatal("curl with a wrong password got through")
	}
	// A daemon with the wrong token is refused by the server.
	badCfg := w.render("browser-exit/home.toml", "intruder", hostPort("127.0.0.1", freePort(t, localhost{})), keys,
		"public_key = \""+w.rvKey+"\"", "public_key = \""+w.rvKey+"\"\ntoken = \"not-"+token+"\"",
		"key_file = \"home.key\"", "key_file = \"intruder.key\"")
	w.keygen("intruder")
	intruder := start(t, localhost{}, "intruder", "up", "-c", badCfg)
	w.rv.waitOutput(t, regexp.MustCompile(`registration failed|bad join token`), 10*time.Second)

	for _, pr := range []*process{w.rv, p.client, p.server, intruder} {
		out := pr.output()
		for _, secret := range []string{token, password, wrong} {
			if strings.Contains(out, secret) {
				t.Errorf("%s's log holds a secret (%s):\n%s", pr.name, secret, out)
			}
		}
	}
}
