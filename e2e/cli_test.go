package e2e

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/warren-p2p/warren/daemon"
)

// cli runs warren with args and returns stdout, stderr and the exit code.
func cli(t testing.TB, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, warrenBin, args...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Run()
	return out.String(), errb.String(), cmd.ProcessState.ExitCode()
}

const validKey = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA"

func TestBadInputExitsTwoWithWhereAndWhat(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string { return writeFile(t, dir, name, body) }
	base := "[rendezvous]\naddress = \"127.0.0.1:1\"\npublic_key = \"" + validKey + "\"\n"
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	loose := write("loose.key", "")
	os.Remove(loose)
	run(t, localhost{}, "keygen", "-o", loose)
	os.Chmod(loose, 0o644)

	for _, tc := range []struct {
		name string
		args []string
		want []string // substrings of stderr
	}{
		{"no command", nil, []string{"usage"}},
		{"unknown command", []string{"frobnicate"}, []string{`unknown command "frobnicate"`}},
		{"keygen without -o", []string{"keygen"}, []string{"-o FILE is required"}},
		{"missing config", []string{"up", "-c", filepath.Join(dir, "nope.toml")}, []string{"nope.toml"}},
		{"invalid toml", []string{"up", "-c", write("bad.toml", base+"log_level = \n")}, []string{"bad.toml:4"}},
		{"unknown key", []string{"up", "-c", write("unk.toml", base+"[[peers]]\nname = \"a\"\npublic_key = \""+validKey+"\"\nexitt = true\n")},
			[]string{"unk.toml:7", "peers[0].exitt"}},
		{"undefined peer", []string{"up", "-c", write("ref.toml", base+"[[forward]]\nlisten = \"127.0.0.1:0\"\npeer = \"hoem\"\nservice = \"x\"\n")},
			[]string{"ref.toml:6", "forward[0].peer", "hoem"}},
		{"bad address", []string{"up", "-c", write("addr.toml", base+"admin_listen = \"localhost\"\n")}, []string{"admin_listen"}},
		{"missing key file", []string{"up", "-c", write("nokey.toml", "key_file = \"typo.key\"\n"+base)},
			[]string{filepath.Join(dir, "typo.key"), "warren keygen -o", "create_key"}},
		{"world-readable key", []string{"up", "-c", write("loose.toml", "key_file = \"loose.key\"\n"+base)}, []string{"loose.key", "chmod 600"}},
	} {
		t.Run(tc.name, func(t *testing.T) { checkExit(t, tc.args, 2, tc.want...) })
	}

	// A port in use is no bad config but a runtime failure (exit 1), which
	// the systemd unit's RestartPreventExitStatus=2 must not stop
	// restarting; and the server creates no key file when it cannot start.
	t.Run("listen port in use", func(t *testing.T) {
		checkExit(t, []string{"up", "-c", write("busy.toml", "key_file = \"busy.key\"\ncreate_key = true\nadmin_listen = \"127.0.0.1:0\"\n"+base+
			"[[peers]]\nname = \"home\"\npublic_key = \""+validKey+"\"\n[[socks]]\nlisten = \""+busy.Addr().String()+"\"\npeer = \"home\"\n")},
			1, "busy.toml:11: socks[0].listen: listen "+busy.Addr().String()+": address already in use")
	})
	t.Run("rendezvous port in use", func(t *testing.T) {
		key := filepath.Join(dir, "server.key")
		checkExit(t, []string{"rendezvous", "-listen", busy.Addr().String(), "-key", key}, 1, busy.Addr().String(), "address already in use")
		if _, err := os.Stat(key); !os.IsNotExist(err) {
			t.Errorf("a server that could not start left its key file: %v", err)
		}
	})
}

// checkExit runs warren with args and checks its exit code and that
// stderr holds each of want.
func checkExit(t *testing.T, args []string, code int, want ...string) {
	t.Helper()
	_, stderr, got := cli(t, args...)
	if got != code {
		t.Errorf("warren %s: exit code %d, want %d; stderr:\n%s", strings.Join(args, " "), got, code, stderr)
	}
	for _, w := range want {
		if !strings.Contains(stderr, w) {
			t.Errorf("warren %s: stderr lacks %q:\n%s", strings.Join(args, " "), w, stderr)
		}
	}
}

// TestCommandLineAsPeopleTypeIt: help exits 0, `warren help CMD` shows that
// command's flags, --version works, and flags may follow operands.
func TestCommandLineAsPeopleTypeIt(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want *regexp.Regexp // on stdout or stderr
	}{
		{[]string{"up", "-h"}, regexp.MustCompile(`usage: warren up \[flags\][\s\S]*-c FILE`)},
		{[]string{"status", "--help"}, regexp.MustCompile(`usage: warren status[\s\S]*-json`)},
		{[]string{"help", "ping"}, regexp.MustCompile(`usage: warren ping \[flags\] PEER[\s\S]*-c N`)},
		{[]string{"help"}, regexp.MustCompile(`(?m)^commands:`)},
		{[]string{"--version"}, regexp.MustCompile(`^warren \S+.* go1\.\d+`)},
		{[]string{"version"}, regexp.MustCompile(`^warren \S+.* go1\.\d+`)},
	} {
		out, stderr, code := cli(t, tc.args...)
		if code != 0 || !tc.want.MatchString(out+stderr) {
			t.Errorf("warren %s: exit %d, want 0 and %s:\n%s%s", strings.Join(tc.args, " "), code, tc.want, out, stderr)
		}
	}
	if out, _, _ := cli(t, "help", "ping"); !strings.Contains(out, "usage: warren ping") {
		t.Errorf("warren help ping: the usage belongs on standard output, got %q", out)
	}
	// The flags after the peer are read: the admin address given last is
	// the one dialled.
	checkExit(t, []string{"ping", "home", "-c", "2", "-admin", "127.0.0.1:1"}, 1, `admin_listen = "127.0.0.1:1"`)
	checkExit(t, []string{"ping", "-admin", "127.0.0.1:1", "--", "-c"}, 1, "/ping?peer=-c")
}

func TestKeygenPubkeyStatusPingVersion(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "k.key")
	pub, _, code := cli(t, "keygen", "-o", key)
	if code != 0 || !regexp.MustCompile(`^[A-Za-z0-9_-]{43}\n$`).MatchString(pub) {
		t.Fatalf("keygen: exit %d, stdout %q", code, pub)
	}
	if st, _ := os.Stat(key); st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v", st.Mode().Perm())
	}
	if again, _, _ := cli(t, "pubkey", "-k", key); again != pub {
		t.Fatalf("pubkey %q != keygen %q", again, pub)
	}
	if _, _, code := cli(t, "keygen", "-o", key); code == 0 {
		t.Fatal("keygen overwrote an existing key")
	}
	if v, _, code := cli(t, "version"); code != 0 || !strings.HasPrefix(v, "warren ") {
		t.Fatalf("version: %d %q", code, v)
	}

	// status against a running daemon, as a table and as JSON.
	w := newWorld(t, localhost{}, hostPort("127.0.0.1", freePort(t, localhost{})))
	keys := map[string]string{"friend": w.keygen("friend"), "home": w.keygen("home")}
	p := startPair(t, w, "share-service", localhost{}, localhost{}, "friend", "home", keys,
		[]string{"127.0.0.1:8080", hostPort("127.0.0.1", freePort(t, localhost{})),
			"127.0.0.1:27015", hostPort("127.0.0.1", freePort(t, localhost{}))}, nil)
	// At start the daemon says what it listens on and whom it links with.
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`msg="admin API and dashboard listening" listen="` + regexp.QuoteMeta(p.clientAdmin) + `"`),
		regexp.MustCompile(`msg="forward listening" listen="127\.0\.0\.1:\d+" listener="forward\[0\]" peer=home protocol=tcp to="service photos"`),
		regexp.MustCompile(`msg="forward listening" listen="127\.0\.0\.1:\d+" listener="forward\[1\]" peer=home protocol=udp to="service game"`),
		regexp.MustCompile(`msg="will link with peer" peer=home public_key=` + regexp.QuoteMeta(keys["home"])),
		regexp.MustCompile(`msg="NAT classified" allocation=\S+ mapping=none nat=none`),
	} {
		if !want.MatchString(p.client.output()) {
			t.Errorf("friend's log lacks %s:\n%s", want, p.client.output())
		}
	}
	table, stderr, code := cli(t, "status", "-admin", p.clientAdmin)
	if code != 0 || !regexp.MustCompile(`(?m)^home\s+connected\s+direct-tcp\s+\S+:\d+`).MatchString(table) {
		t.Fatalf("status: exit %d\n%s%s", code, table, stderr)
	}
	js, _, code := cli(t, "status", "-admin", p.clientAdmin, "-json")
	if code != 0 || !strings.Contains(js, `"state": "`+daemon.StateConnected+`"`) || !strings.Contains(js, `"rtt_ms"`) {
		t.Fatalf("status -json: exit %d\n%s", code, js)
	}
	if _, stderr, code := cli(t, "status", "-admin", "127.0.0.1:1"); code != 1 || !strings.Contains(stderr, "is the daemon running") {
		t.Fatalf("status without a daemon: exit %d, %s", code, stderr)
	}

	// ping over the link, and a peer that is not configured.
	out, stderr, code := cli(t, "ping", "-admin", p.clientAdmin, "-c", "3", "-i", "50ms", "home")
	if code != 0 || len(regexp.MustCompile(`(?m)^home via direct-tcp \S+:\d+: rtt \d+\.\d{3} ms$`).FindAllString(out, -1)) != 3 ||
		!strings.Contains(out, "3 sent, 3 answered, rtt min/avg/max") {
		t.Fatalf("ping: exit %d\n%s%s", code, out, stderr)
	}
	if _, stderr, code := cli(t, "ping", "-admin", p.clientAdmin, "nobody"); code != 1 || !strings.Contains(stderr, `no peer named "nobody"`) {
		t.Fatalf("ping of an unknown peer: exit %d, %s", code, stderr)
	}
}

// TestUpLogFile: `warren up -log FILE` (what the Windows service runs)
// writes the daemon's log to FILE and nothing to standard error.
func TestUpLogFile(t *testing.T) {
	w := newWorld(t, localhost{}, hostPort("127.0.0.1", freePort(t, localhost{})))
	keys := map[string]string{"laptop": w.keygen("laptop"), "office": w.keygen("office")}
	cfg := w.render("rdp/laptop.toml", "laptop", hostPort("127.0.0.1", freePort(t, localhost{})), keys,
		"127.0.0.1:13389", hostPort("127.0.0.1", freePort(t, localhost{})))
	logFile := filepath.Join(w.dir, "warren.log")
	p := start(t, localhost{}, "laptop", "up", "-c", cfg, "-log", logFile)
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(logFile)
		if strings.Contains(string(b), "registered with rendezvous server") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the log file never said the daemon registered:\n%s", b)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if out := p.output(); out != "" {
		t.Errorf("warren up -log wrote to standard error too:\n%s", out)
	}
}

// TestCheck: `warren check` validates a config without starting it and
// lists every problem, the machine's included (a key that is missing, a
// port in use), each with its file and line.
func TestCheck(t *testing.T) {
	dir := t.TempDir()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	pub := newKey(t, dir, "good")
	base := "admin_listen = \"127.0.0.1:0\"\n[rendezvous]\naddress = \"127.0.0.1:1\"\npublic_key = \"" + validKey + "\"\n" +
		"[[peers]]\nname = \"home\"\npublic_key = \"" + pub + "\"\n"
	good := writeFile(t, dir, "good.toml", "key_file = \"good.key\"\n"+base+"[[socks]]\nlisten = \"127.0.0.1:0\"\npeer = \"home\"\n")
	if out, stderr, code := cli(t, "check", "-c", good); code != 0 || !strings.Contains(out, "good.toml: ok: 1 peers, 1 SOCKS5 listeners") {
		t.Errorf("check of a good config: exit %d\n%s%s", code, out, stderr)
	}
	bad := writeFile(t, dir, "bad.toml", "key_file = \"missing.key\"\n"+base+
		"[[socks]]\nlisten = \""+busy.Addr().String()+"\"\npeer = \"home\"\n")
	checkExit(t, []string{"check", "-c", bad}, 2,
		"bad.toml:1: key_file:", "warren keygen -o "+filepath.Join(dir, "missing.key"),
		"bad.toml:10: socks[0].listen: listen "+busy.Addr().String()+": address already in use")
	if _, err := os.Stat(filepath.Join(dir, "missing.key")); !os.IsNotExist(err) {
		t.Errorf("check created the missing key: %v", err)
	}
	checkExit(t, []string{"check", "-c", writeFile(t, dir, "typo.toml", "admin_listn = \"127.0.0.1:0\"\n"+base)}, 2,
		`typo.toml:1: unknown key "admin_listn" (did you mean admin_listen?)`)
	server := writeFile(t, dir, "rv.toml", "listen = \""+busy.Addr().String()+"\"\n")
	checkExit(t, []string{"check", "-server", "-c", server}, 2, "listen: listen "+busy.Addr().String()+": address already in use")
}

// TestDemoSaysOnlyWhatHappens: the demo binary, run as a user runs it,
// prints its narrative with no warning lines for its planned refusal, and
// suggests commands that name which daemon they ask.
func TestDemoSaysOnlyWhatHappens(t *testing.T) {
	demo := start(t, localhost{}, "demo", "demo")
	demo.waitOutput(t, regexp.MustCompile(`home's view`), 15*time.Second)
	time.Sleep(300 * time.Millisecond) // room for a late log line
	text := demo.output()
	if strings.Contains(text, "level=") {
		t.Errorf("the demo printed log lines:\n%s", text)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(warrenBin) + ` status -admin 127\.0\.0\.1:\d+\s+# laptop's view`),
		regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(warrenBin) + ` status -admin 127\.0\.0\.1:\d+\s+# home's view`),
	} {
		if !want.MatchString(text) {
			t.Errorf("the demo's suggestions lack %s:\n%s", want, text)
		}
	}
}

// TestSetupExcludesWaitingForPeer: a daemon started seconds before its
// peer reports the punch's own time as its setup, and the wait for the
// peer apart (it was 33 s against 47 ms on the other side).
func TestSetupExcludesWaitingForPeer(t *testing.T) {
	w := newWorld(t, localhost{}, hostPort("127.0.0.1", freePort(t, localhost{})))
	keys := map[string]string{"laptop": w.keygen("laptop"), "home": w.keygen("home")}
	laptopAdmin, homeAdmin := hostPort("127.0.0.1", freePort(t, localhost{})), hostPort("127.0.0.1", freePort(t, localhost{}))
	laptop := start(t, localhost{}, "laptop", "up", "-c", w.render("browser-exit/laptop.toml", "laptop", laptopAdmin, keys,
		"127.0.0.1:1080", hostPort("127.0.0.1", freePort(t, localhost{}))))
	time.Sleep(3 * time.Second)
	start(t, localhost{}, "home", "up", "-c", w.render("browser-exit/home.toml", "home", homeAdmin, keys))
	line := regexp.MustCompile(`msg="link up".* setup=(\d+(?:\.\d+)?)(ms|s) waited_for_peer=(\d+(?:\.\d+)?)s`)
	laptop.waitOutput(t, regexp.MustCompile(`msg="link up"`), 20*time.Second)
	m := line.FindStringSubmatch(laptop.output())
	if m == nil || m[2] != "ms" {
		t.Fatalf("laptop's link-up line does not give a setup in ms and the wait apart:\n%s", laptop.output())
	}
	if waited, _ := strconv.ParseFloat(m[3], 64); waited < 2.5 {
		t.Errorf("waited_for_peer=%ss, want the 3 s laptop ran alone", m[3])
	}
	st := waitStatus(t, localhost{}, laptopAdmin, 5*time.Second, "home connected", func(st daemon.Status) bool {
		return len(st.Peers) == 1 && st.Peers[0].State == daemon.StateConnected
	})
	if st.Peers[0].SetupMs >= 1000 {
		t.Errorf("status setup_ms = %v, want the punch's time, not the wait for home", st.Peers[0].SetupMs)
	}
}
