package config

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// testKey returns a distinct, valid public key for each n.
func testKey(n byte) string {
	return base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{n}, 32))
}

// validDoc is the documented example config plus a second peer.
var validDoc = strings.NewReplacer(
	"RVKEY", testKey(1), "HOMEKEY", testKey(2), "LAPTOPKEY", testKey(3),
).Replace(`key_file = "warren.key"
log_level = "info"
admin_listen = "127.0.0.1:7780"

[rendezvous]
address = "rv.example.net:7777"
public_key = "RVKEY"
token = ""

[link]
transports = ["tcp"]
relay = true

[[peers]]
name = "home"
public_key = "HOMEKEY"
exit = false
targets = ["10.0.0.0/8:22", "*.lan:*", "[fd00::/8]:80-90"]

[[peers]]
name = "laptop"
public_key = "LAPTOPKEY"
exit = true

[[expose]]
name = "rdp"
target = "127.0.0.1:3389"
peers = ["home"]

[[socks]]
listen = "127.0.0.1:1080"
peer = "home"

[[forward]]
listen = "127.0.0.1:13389"
peer = "home"
service = "rdp"
`)

func TestParseValid(t *testing.T) {
	c, err := Parse("/etc/warren/warren.toml", []byte(validDoc))
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"KeyFile", c.KeyFile, "/etc/warren/warren.key"},
		{"StateDir", c.StateDir, "/etc/warren"},
		{"Path", c.Path, "/etc/warren/warren.toml"},
		{"LogLevel", c.LogLevel, "info"},
		{"LogFormat", c.LogFormat, "text"},
		{"AdminListen", c.AdminListen, "127.0.0.1:7780"},
		{"Rendezvous.Address", c.Rendezvous.Address, "rv.example.net:7777"},
		{"Link.Transports", strings.Join(c.Link.Transports, ","), "tcp"},
		{"Link.Relay", *c.Link.Relay, true},
		{"Link.KeepAlive", c.Link.KeepAlive.Duration, 15 * time.Second},
		{"Link.PunchTimeout", c.Link.PunchTimeout.Duration, 10 * time.Second},
		{"Link.StreamWindow", c.Link.StreamWindow, uint32(4 << 20)},
		{"Link.MaxStreams", c.Link.MaxStreams, 16384},
		{"Link.ReceiveBudget", c.Link.ReceiveBudget, int64(64 << 20)},
		{"len(Peers)", len(c.Peers), 2},
		{"Peers[1].Exit", c.Peers[1].Exit, true},
		{"Expose[0].Peers", strings.Join(c.Expose[0].Peers, ","), "home"},
		{"Socks[0].Peer", c.Socks[0].Peer, "home"},
		{"Forward[0].Service", c.Forward[0].Service, "rdp"},
		{"Forward[0].Protocol", c.Forward[0].Protocol, "tcp"},
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("%s = %v, want %v", ck.name, ck.got, ck.want)
		}
	}
}

func TestParseDefaults(t *testing.T) {
	doc := `[rendezvous]
address = "[2001:db8::1]:7777"
public_key = "` + testKey(1) + `"
`
	c, err := Parse("warren.toml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(wd, "warren.key"); c.KeyFile != want {
		t.Errorf("KeyFile = %q, want %q (relative to the current directory)", c.KeyFile, want)
	}
	if c.AdminListen != "127.0.0.1:7780" || c.LogLevel != "info" || c.LogFormat != "text" {
		t.Errorf("AdminListen, LogLevel, LogFormat = %q, %q, %q", c.AdminListen, c.LogLevel, c.LogFormat)
	}
	if c.Link.Relay == nil || !*c.Link.Relay || strings.Join(c.Link.Transports, ",") != "tcp,udp" {
		t.Errorf("Link = %+v, want relay on and transports [tcp udp]", c.Link)
	}
	if c.Link.PortMapping == nil || !*c.Link.PortMapping {
		t.Errorf("Link.PortMapping = %v, want on by default", c.Link.PortMapping)
	}
	if c.Link.KeepAlive.Duration != 15*time.Second || c.Link.PunchTimeout.Duration != 10*time.Second ||
		c.Link.StreamWindow != 4<<20 || c.Link.MaxStreams != 16384 || c.Link.ReceiveBudget != 64<<20 {
		t.Errorf("Link = %+v, want defaults", c.Link)
	}
}

func TestParseOverrides(t *testing.T) {
	doc := validDoc + `
[[forward]]
listen = ":0"
peer = "laptop"
target = "intranet.example.com:443"
protocol = "tcp"
`
	doc = strings.NewReplacer(
		`admin_listen = "127.0.0.1:7780"`, `admin_listen = "off"`,
		`key_file = "warren.key"`, "key_file = \"/var/lib/warren/id.key\"\nstate_dir = \"state\"",
		`relay = true`, "relay = false\nport_mapping = false\nkeepalive = \"1m\"\npunch_timeout = \"2.5s\"\nstream_window = 262144\nmax_streams = 1",
	).Replace(doc)
	c, err := Parse("dir/warren.toml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if c.AdminListen != "" {
		t.Errorf("AdminListen = %q, want \"\" for off", c.AdminListen)
	}
	if c.KeyFile != "/var/lib/warren/id.key" {
		t.Errorf("KeyFile = %q, want the absolute path unchanged", c.KeyFile)
	}
	if wd, _ := os.Getwd(); c.StateDir != filepath.Join(wd, "dir", "state") {
		t.Errorf("StateDir = %q, want state beside the config", c.StateDir)
	}
	l := c.Link
	if *l.Relay || *l.PortMapping || l.KeepAlive.Duration != time.Minute || l.PunchTimeout.Duration != 2500*time.Millisecond ||
		l.StreamWindow != 256<<10 || l.MaxStreams != 1 {
		t.Errorf("Link = %+v, relay %v; want the values set", l, *l.Relay)
	}
	if c.Forward[1].Target != "intranet.example.com:443" {
		t.Errorf("Forward[1] = %+v", c.Forward[1])
	}
}

// lineOfText is the 1-based line on which text first occurs in doc,
// not counting leading newlines, which only serve to make text unique.
func lineOfText(t *testing.T, doc, text string) int {
	t.Helper()
	i := strings.Index(doc, text)
	if i < 0 {
		t.Fatalf("test bug: %q not in document", text)
	}
	i += len(text) - len(strings.TrimLeft(text, "\n"))
	return strings.Count(doc[:i], "\n") + 1
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name     string
		old, new string // edit applied to validDoc
		at       string // text starting the line the error must name; "" for no line
		want     string // error text after "file:line: "
	}{
		{"unknown key in array table",
			"exit = true", "exit = true\nexitt = 1",
			"exitt", `unknown key "peers[1].exitt" (did you mean exit?)`},
		{"unknown key in table",
			"relay = true", "relay = true\nrealy = false",
			"realy", `unknown key "link.realy" (did you mean relay?)`},
		{"typo of a top-level key",
			`log_level = "info"`, "log_level = \"info\"\nadmin_listn = \"127.0.0.1:1\"",
			"admin_listn", `unknown key "admin_listn" (did you mean admin_listen?)`},
		{"dash for underscore",
			`log_level = "info"`, `log-level = "info"`,
			"log-level", `unknown key "log-level" (did you mean log_level?)`},
		{"nothing close",
			"relay = true", "relay = true\nfrobnicate = 1",
			"frobnicate", `unknown key "link.frobnicate"`},
		{"unknown table",
			`token = ""`, "token = \"\"\n\n[extra]\nx = 1",
			"[extra]", `unknown key "extra"`},
		{"key differing only in case",
			`log_level = "info"`, `Log_Level = "info"`,
			"Log_Level", `unknown key "Log_Level" (did you mean log_level?)`},
		{"wrong type",
			"relay = true", `relay = "yes"`,
			"relay", "link.relay: want true or false, got a string"},
		{"wrong type of port_mapping",
			"relay = true", "relay = true\nport_mapping = 1",
			"port_mapping", "link.port_mapping: want true or false, got an integer"},
		{"wrong type in array",
			`peers = ["home"]`, `peers = ["home", 7]`,
			`peers = ["home", 7]`, "expose[0].peers[1]: want a string, got an integer"},
		{"table instead of array of tables",
			"[[socks]]", "[socks]",
			"[socks]", "socks: want an array of tables, got a table"},
		{"bad duration",
			"relay = true", "relay = true\nkeepalive = \"15\"",
			"keepalive", `link.keepalive: "15" is not a duration`},
		{"missing rendezvous address",
			"address = \"rv.example.net:7777\"\n", "",
			"[rendezvous]", "rendezvous.address: must be set"},
		{"missing rendezvous section",
			"[rendezvous]\naddress = \"rv.example.net:7777\"\npublic_key = \"" + testKey(1) + "\"\ntoken = \"\"\n", "",
			"", "rendezvous.address: must be set"},
		{"missing peer key",
			"public_key = \"" + testKey(3) + "\"\n", "",
			"[[peers]]\nname = \"laptop\"", "peers[1].public_key: must be set"},
		{"empty peer name",
			`name = "laptop"`, `name = ""`,
			`name = ""`, "peers[1].name: must be set"},
		{"short public key",
			testKey(2), "abc",
			`"abc"`, "peers[0].public_key: not a valid Ed25519 public key (want 43 base64url characters; got 3)"},
		{"standard base64 key",
			testKey(2), "++++" + testKey(2)[4:],
			`"++++`, `peers[0].public_key: not a valid Ed25519 public key (want 43 base64url characters; use "-" and "_" instead of "+" and "/")`},
		{"padded key",
			testKey(1), testKey(1) + "=",
			testKey(1), `rendezvous.public_key: not a valid Ed25519 public key (want 43 base64url characters; leave out the "=" padding)`},
		{"address without port",
			"rv.example.net:7777", "rv.example.net",
			"address", `rendezvous.address: "rv.example.net" is not host:port: missing port in address`},
		{"dial address with port 0",
			"127.0.0.1:3389", "127.0.0.1:0",
			`target = "`, `expose[0].target: "127.0.0.1:0": port "0" is not a number from 1 to 65535`},
		{"named port",
			"127.0.0.1:3389", "127.0.0.1:rdp",
			`target = "`, `expose[0].target: "127.0.0.1:rdp": port "rdp" is not a number from 1 to 65535`},
		{"port out of range",
			"127.0.0.1:1080", "127.0.0.1:70000",
			`listen = "127.0.0.1:70000"`, `socks[0].listen: "127.0.0.1:70000": port "70000" is not a number from 1 to 65535`},
		{"unbracketed IPv6",
			"127.0.0.1:3389", "::1:3389",
			`target = "`, `expose[0].target: "::1:3389" is not host:port: IPv6 addresses need brackets`},
		{"brackets around IPv4",
			"127.0.0.1:3389", "[127.0.0.1]:3389",
			`target = "`, `expose[0].target: "[127.0.0.1]:3389": brackets are only for IPv6 addresses`},
		{"proxy that is not http",
			"address = \"rv.example.net:7777\"\n", "address = \"rv.example.net:7777\"\nproxy = \"socks5://proxy:1080\"\n",
			"proxy", `rendezvous.proxy: proxy socks5://proxy:1080: scheme "socks5": only http:// proxies are supported`},
		{"proxy without a port, password hidden",
			"address = \"rv.example.net:7777\"\n", "address = \"rv.example.net:7777\"\nproxy = \"http://me:s3cret@proxy\"\n",
			"proxy", `rendezvous.proxy: proxy http://me:xxxxx@proxy: want http://host:port`},
		{"fallback address without port",
			"address = \"rv.example.net:7777\"\n", "address = \"rv.example.net:7777\"\nfallback_address = \"rv.example.net\"\n",
			"fallback_address", `rendezvous.fallback_address: "rv.example.net" is not host:port: missing port in address`},
		{"bad host name",
			"rv.example.net:7777", "rv example.net:7777",
			"address", `rendezvous.address: "rv example.net:7777": "rv example.net" is not a host name or IP address`},
		{"bad admin address",
			`admin_listen = "127.0.0.1:7780"`, `admin_listen = "localhost"`,
			"admin_listen", `admin_listen: "localhost" is not host:port: missing port in address`},
		{"duplicate peer name",
			`name = "laptop"`, `name = "home"`,
			"name = \"home\"\npublic_key = \"" + testKey(3), `peers[1].name: duplicate peer name "home" (also peers[0])`},
		{"duplicate peer key",
			testKey(3), testKey(2),
			testKey(2) + "\"\nexit = true", "peers[1].public_key: same key as peers[0]"},
		{"duplicate expose name",
			"[[socks]]", "[[expose]]\nname = \"rdp\"\ntarget = \"10.0.0.5:3389\"\npeers = [\"laptop\"]\n\n[[socks]]",
			"name = \"rdp\"\ntarget = \"10.0.0.5", `expose[1].name: duplicate expose name "rdp" (also expose[0])`},
		{"duplicate listen address",
			"127.0.0.1:13389", "127.0.0.1:1080",
			"listen = \"127.0.0.1:1080\"\npeer = \"home\"\nservice", `forward[0].listen: "127.0.0.1:1080" is already used by socks[0].listen`},
		{"listen address clashing with admin",
			"127.0.0.1:1080", "127.0.0.1:7780",
			"\nlisten = \"127.0.0.1:7780\"", `socks[0].listen: "127.0.0.1:7780" is already used by admin_listen`},
		{"unknown forward peer",
			"[[forward]]\nlisten = \"127.0.0.1:13389\"\npeer = \"home\"", "[[forward]]\nlisten = \"127.0.0.1:13389\"\npeer = \"hoem\"",
			`peer = "hoem"`, `forward[0].peer: no peer named "hoem" (known: home, laptop)`},
		{"unknown socks peer",
			"listen = \"127.0.0.1:1080\"\npeer = \"home\"", "listen = \"127.0.0.1:1080\"\npeer = \"office\"",
			`peer = "office"`, `socks[0].peer: no peer named "office" (known: home, laptop)`},
		{"unknown expose peer",
			`peers = ["home"]`, "peers = [\n  \"home\",\n  \"nobody\",\n]",
			`"nobody"`, `expose[0].peers: no peer named "nobody" (known: home, laptop)`},
		{"expose without peers",
			`peers = ["home"]`, `peers = []`,
			"peers = []", "expose[0].peers: must list at least one [[peers]] name"},
		{"expose without target",
			"target = \"127.0.0.1:3389\"\n", "",
			"[[expose]]", "expose[0].target: must be set"},
		{"forward with service and target",
			`service = "rdp"`, "service = \"rdp\"\ntarget = \"10.0.0.5:3389\"",
			`target = "10.0.0.5:3389"`, "forward[0].target: set service or target, not both"},
		{"forward with neither service nor target",
			`service = "rdp"`, "",
			"[[forward]]", "forward[0]: set service (a name the peer exposes) or target"},
		{"idle timeout on a tcp forward",
			`service = "rdp"`, "service = \"rdp\"\nidle_timeout = \"30s\"",
			"idle_timeout", `forward[0].idle_timeout: applies only to protocol = "udp"`},
		{"negative idle timeout",
			`service = "rdp"`, "service = \"rdp\"\nprotocol = \"udp\"\nidle_timeout = \"-1s\"",
			"idle_timeout", `forward[0].idle_timeout: must be positive, got -1s`},
		{"expose over sctp",
			"target = \"127.0.0.1:3389\"\n", "target = \"127.0.0.1:3389\"\nprotocol = \"sctp\"\n",
			"protocol", `expose[0].protocol: unknown protocol "sctp" (want tcp or udp)`},
		{"forward over sctp",
			`service = "rdp"`, "service = \"rdp\"\nprotocol = \"sctp\"",
			"protocol", `forward[0].protocol: unknown protocol "sctp" (want tcp or udp)`},
		{"bad target pattern",
			`"10.0.0.0/8:22"`, `"10.0.0.0/33:22"`,
			"targets", `peers[0].targets: invalid target pattern "10.0.0.0/33:22": "10.0.0.0/33" is not a valid CIDR`},
		{"bad target pattern in multi-line array",
			`targets = ["10.0.0.0/8:22", "*.lan:*", "[fd00::/8]:80-90"]`, "targets = [\n  \"10.0.0.0/8:22\", # ssh\n  \"*.lan:0\",\n]",
			`"*.lan:0"`, `peers[0].targets: invalid target pattern "*.lan:0": port "0" is not a number from 1 to 65535`},
		{"spray rate out of range",
			`transports = ["tcp"]`, "transports = [\"tcp\"]\nspray_rate = 5",
			"spray_rate", `link.spray_rate: 5 is outside 100 to 100000 packets per second`},
		{"unknown UDP stream protocol",
			`transports = ["tcp"]`, "transports = [\"tcp\"]\nudp_stream = \"sctp\"",
			"udp_stream", `link.udp_stream: unknown UDP stream protocol "sctp" (known: auto, quic, kcp)`},
		{"unknown transport",
			`transports = ["tcp"]`, `transports = ["quic"]`,
			"transports", `link.transports: unknown transport "quic" (known: tcp, udp)`},
		{"repeated transport",
			`transports = ["tcp"]`, `transports = ["tcp", "tcp"]`,
			"transports", `link.transports: "tcp" is listed twice`},
		{"no transports",
			`transports = ["tcp"]`, `transports = []`,
			"transports", "link.transports: must list at least one transport"},
		{"bad log level",
			`log_level = "info"`, `log_level = "verbose"`,
			"log_level", `log_level: "verbose" is not one of trace, debug, info, warn, error`},
		{"bad log format",
			`log_level = "info"`, "log_level = \"info\"\nlog_format = \"xml\"",
			"log_format", `log_format: "xml" is neither text nor json`},
		{"zero keepalive",
			"relay = true", "relay = true\nkeepalive = \"0s\"",
			"keepalive", "link.keepalive: must be positive, got 0s"},
		{"negative punch timeout",
			"relay = true", "relay = true\npunch_timeout = \"-1s\"",
			"punch_timeout", "link.punch_timeout: must be positive, got -1s"},
		{"small stream window",
			"relay = true", "relay = true\nstream_window = 65536",
			"stream_window", "link.stream_window: 65536 is below the minimum of 262144 (256 KiB)"},
		{"negative stream window",
			"relay = true", "relay = true\nstream_window = -1",
			"stream_window", "link.stream_window: must not be negative, got -1"},
		{"huge stream window",
			"relay = true", "relay = true\nstream_window = 5_000_000_000",
			"stream_window", "link.stream_window: 5000000000 is too large"},
		{"zero max streams",
			"relay = true", "relay = true\nmax_streams = 0",
			"max_streams", "link.max_streams: must be positive, got 0"},
		{"socks user without password",
			"peer = \"home\"\n\n[[forward]]", "peer = \"home\"\nusername = \"me\"\n\n[[forward]]",
			"[[socks]]", "socks[0].password: must be set when username is"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(validDoc, tc.old) {
				t.Fatalf("test bug: %q not in validDoc", tc.old)
			}
			doc := strings.Replace(validDoc, tc.old, tc.new, 1)
			want := "warren.toml: " + tc.want
			if tc.at != "" {
				want = "warren.toml:" + strconv.Itoa(lineOfText(t, doc, tc.at)) + ": " + tc.want
			}
			c, err := Parse("warren.toml", []byte(doc))
			if err == nil {
				t.Fatalf("no error, want %q; config: %+v", want, c)
			}
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error %T is not an Errors: %v", err, err)
			}
			if !strings.Contains(err.Error(), want) {
				t.Errorf("errors:\n%v\nwant one containing:\n%s", err, want)
			}
		})
	}
}

func TestParseSyntaxError(t *testing.T) {
	doc := strings.Replace(validDoc, "relay = true", "relay = tru", 1)
	_, err := Parse("warren.toml", []byte(doc))
	var errs Errors
	if !errors.As(err, &errs) || len(errs) != 1 {
		t.Fatalf("got %v, want one error", err)
	}
	e := errs[0]
	if e.File != "warren.toml" || e.Line != 12 || e.Col == 0 || e.Msg == "" {
		t.Errorf("got %+v, want warren.toml line 12 with a column and a message", e)
	}
	if want := "warren.toml:12:" + strconv.Itoa(e.Col) + ": "; !strings.HasPrefix(err.Error(), want) {
		t.Errorf("got %q, want prefix %q", err, want)
	}
}

func TestParseReportsAllErrors(t *testing.T) {
	doc := strings.NewReplacer(
		`log_level = "info"`, `log_level = "loud"`,
		`exit = true`, "exit = true\nexitt = true",
		testKey(2), "nope",
		`peer = "home"`+"\nservice", `peer = "hoem"`+"\nservice",
		`transports = ["tcp"]`, `transports = ["udp", "sctp"]`,
	).Replace(validDoc)
	_, err := Parse("warren.toml", []byte(doc))
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("got %v, want Errors", err)
	}
	want := []string{
		`warren.toml:2: log_level: "loud" is not one of`,
		`warren.toml:11: link.transports: unknown transport "sctp" (known: tcp, udp)`,
		`warren.toml:16: peers[0].public_key: not a valid Ed25519 public key`,
		`warren.toml:24: unknown key "peers[1].exitt"`,
		`warren.toml:37: forward[0].peer: no peer named "hoem" (known: home, laptop)`,
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(want) || len(errs) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%v", len(errs), len(want), err)
	}
	for i := range want {
		if !strings.HasPrefix(lines[i], want[i]) {
			t.Errorf("error %d = %q, want prefix %q", i, lines[i], want[i])
		}
	}
	var first *Error
	if !errors.As(err, &first) || first != errs[0] {
		t.Errorf("errors.As(*Error) = %v, want the first error", first)
	}
}

func TestParseTypeErrorsAllReported(t *testing.T) {
	doc := strings.NewReplacer(
		"relay = true", "relay = 1",
		"exit = false", `exit = "no"`,
		`peers = ["home"]`, `peers = "home"`,
	).Replace(validDoc)
	_, err := Parse("warren.toml", []byte(doc))
	var errs Errors
	if !errors.As(err, &errs) || len(errs) != 3 {
		t.Fatalf("got %v, want 3 errors", err)
	}
	for i, key := range []string{"link.relay", "peers[0].exit", "expose[0].peers"} {
		if errs[i].Key != key {
			t.Errorf("error %d key = %q, want %q (%v)", i, errs[i].Key, key, errs[i])
		}
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "warren.toml")
	if err := os.WriteFile(path, []byte(validDoc), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "warren.key"); c.KeyFile != want {
		t.Errorf("KeyFile = %q, want %q", c.KeyFile, want)
	}
	if c.Path != path {
		t.Errorf("Path = %q, want %q", c.Path, path)
	}
}

func TestLoadMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.toml")
	_, err := Load(path)
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("got %T %v, want Errors", err, err)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("errors.Is(%v, fs.ErrNotExist) = false", err)
	}
	if want := path + ": cannot read config: no such file or directory"; err.Error() != want {
		t.Errorf("got %q, want %q", err, want)
	}
	if _, err := LoadServer(path); !errors.As(err, &errs) {
		t.Errorf("LoadServer: got %v, want Errors", err)
	}
}

func TestParseServer(t *testing.T) {
	s, err := ParseServer("/srv/rendezvous.toml", []byte(`token = "s3cret"`))
	if err != nil {
		t.Fatal(err)
	}
	if s.Listen != "0.0.0.0:7777" || s.AltListen != "" || s.AdminListen != "" || s.KeyFile != "/srv/rendezvous.key" ||
		s.Relay == nil || !*s.Relay || s.LogLevel != "info" || s.LogFormat != "text" || s.Token != "s3cret" ||
		s.RelayRate != nil || s.RelayDailyBytes != nil || s.MaxRelaysPerKey != nil {
		t.Errorf("got %+v, want defaults", s)
	}

	s, err = ParseServer("rv.toml", []byte(`
listen = "[::]:7777"
alt_listen = "[::]:7778"
fallback_listen = "[::]:443"
admin_listen = "127.0.0.1:7781"
relay = false
log_format = "json"
relay_rate = 0
relay_daily_bytes = 1000
max_relays_per_key = 2
relay_capacity = 12500000
`))
	if err != nil {
		t.Fatal(err)
	}
	if s.Listen != "[::]:7777" || s.AltListen != "[::]:7778" || s.FallbackListen != "[::]:443" || s.AdminListen != "127.0.0.1:7781" || *s.Relay || s.LogFormat != "json" ||
		s.RelayRate == nil || *s.RelayRate != 0 || *s.RelayDailyBytes != 1000 || *s.MaxRelaysPerKey != 2 || s.RelayCapacity != 12500000 {
		t.Errorf("got %+v, want the values set", s)
	}
}

func TestParseServerErrors(t *testing.T) {
	tests := []struct{ doc, want string }{
		{`listn = "0.0.0.0:7777"`, `rv.toml:1: unknown key "listn"`},
		{`listen = "0.0.0.0"`, `rv.toml:1: listen: "0.0.0.0" is not host:port`},
		{"listen = \"0.0.0.0:7777\"\nalt_listen = \"0.0.0.0:7777\"", `rv.toml:2: alt_listen: "0.0.0.0:7777" is already used by listen`},
		{`admin_listen = "0.0.0.0:7777"`, `rv.toml:1: admin_listen: "0.0.0.0:7777" is already used by listen`},
		{"listen = \"0.0.0.0:7777\"\nfallback_listen = \"0.0.0.0:7777\"", `rv.toml:2: fallback_listen: "0.0.0.0:7777" is already used by listen`},
		{`fallback_listen = "443"`, `rv.toml:1: fallback_listen: "443" is not host:port`},
		{`relay = "no"`, `rv.toml:1: relay: want true or false, got a string`},
		{`log_level = "warning"`, `rv.toml:1: log_level: "warning" is not one of`},
		{`relay_daily_bytes = -1`, `relay_daily_bytes: must not be negative`},
		{`max_relays_per_key = -2`, `max_relays_per_key: must not be negative`},
		{`relay_capacity = -1`, `relay_capacity: must not be negative`},
		{"allow_keys = [\n  \"AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA\",\n  \"nope\",\n]", `rv.toml:3: allow_keys[1]: `},
	}
	for _, tc := range tests {
		_, err := ParseServer("rv.toml", []byte(tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseServer(%q) = %v, want %q", tc.doc, err, tc.want)
		}
	}
	// Port 0 listeners never clash: each gets its own port.
	if _, err := ParseServer("rv.toml", []byte("listen = \"127.0.0.1:0\"\nalt_listen = \"127.0.0.1:0\"")); err != nil {
		t.Errorf("two port-0 listeners: %v", err)
	}
}

func TestErrorFormat(t *testing.T) {
	tests := []struct {
		e    Error
		want string
	}{
		{Error{File: "w.toml", Line: 3, Col: 7, Msg: "bad"}, "w.toml:3:7: bad"},
		{Error{File: "w.toml", Line: 3, Key: "a.b", Msg: "bad"}, "w.toml:3: a.b: bad"},
		{Error{File: "w.toml", Key: "a.b", Msg: "bad"}, "w.toml: a.b: bad"},
		{Error{Key: "a.b", Msg: "bad"}, "a.b: bad"},
		{Error{Msg: "bad"}, "bad"},
	}
	for _, tc := range tests {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("%+v.Error() = %q, want %q", tc.e, got, tc.want)
		}
	}
}

func TestUDPForwardDefaultsAndSharedPort(t *testing.T) {
	doc := validDoc + `
[[forward]]
listen = "127.0.0.1:13389"
peer = "home"
target = "10.0.0.53:53"
protocol = "udp"

[[expose]]
name = "dns"
target = "127.0.0.1:53"
peers = ["home"]
protocol = "udp"
`
	c, err := Parse("warren.toml", []byte(doc))
	if err != nil {
		t.Fatalf("a UDP forward on a TCP forward's port: %v", err)
	}
	if f := c.Forward[1]; f.Protocol != "udp" || f.IdleTimeout.Duration != time.Minute {
		t.Errorf("UDP forward = %+v, want protocol udp and idle_timeout 1m", f)
	}
	if c.Forward[0].IdleTimeout.Duration != 0 || c.Expose[0].Protocol != "tcp" || c.Expose[1].Protocol != "udp" {
		t.Errorf("tcp forward idle %v, expose protocols %q %q", c.Forward[0].IdleTimeout, c.Expose[0].Protocol, c.Expose[1].Protocol)
	}
}

func TestClosestKey(t *testing.T) {
	for _, tc := range []struct{ name, want string }{
		{"admin_listn", "admin_listen"},
		{"Log_Level", "log_level"},
		{"logformat", "log_format"},
		{"keyfile", "key_file"},
		{"frobnicate", ""},
		{"pers", "peers"},
		{"x", ""},
	} {
		if got := closestKey(reflect.TypeFor[Config](), tc.name); got != tc.want {
			t.Errorf("closestKey(%q) = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestRendezvousProxyAndFallback(t *testing.T) {
	doc := strings.Replace(validDoc, "address = \"rv.example.net:7777\"\n",
		"address = \"rv.example.net:7777\"\nfallback_address = \"rv.example.net:8443\"\nproxy = \"http://me:pw@10.0.0.1:3128\"\n", 1)
	c, err := Parse("warren.toml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if c.Rendezvous.FallbackAddress != "rv.example.net:8443" || c.Rendezvous.Proxy != "http://me:pw@10.0.0.1:3128" {
		t.Errorf("got %+v", c.Rendezvous)
	}
}
