package daemon

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/warren-p2p/warren/config"
	"github.com/warren-p2p/warren/identity"
)

// TestExitRefusesItself is the attack of issue 15's finding 11: a peer
// with exit = true asks, through a real SOCKS5 listener, for the exit's
// own admin API (status JSON with every peer's key and address), its punch
// port and its own SOCKS5 listener, and for the broadcast and multicast
// addresses its broad grant seems to cover. All are refused with "not
// allowed", while an ordinary service on the exit's loopback still works.
func TestExitRefusesItself(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	web := serveReply(t, "")
	laptop, home := loopbackPair(t, ctx, map[string]string{
		"home":   "[[peers]]\nname = \"laptop\"\npublic_key = \"PEER_KEY\"\nexit = true\n[[socks]]\nlisten = \"127.0.0.1:0\"\npeer = \"laptop\"\n",
		"laptop": "[[peers]]\nname = \"home\"\npublic_key = \"PEER_KEY\"\n[[socks]]\nlisten = \"127.0.0.1:0\"\npeer = \"home\"\n",
	})
	linked(t, ctx, laptop, home)
	socks := laptop.Listeners().SocksAddrs()[0].String()
	port := func(a net.Addr) string { return strconv.Itoa(a.(*net.TCPAddr).Port) }
	admin := port(home.AdminAddr())
	for _, tc := range []struct {
		target string
		code   byte
	}{
		{net.JoinHostPort("127.0.0.1", admin), 2},
		{net.JoinHostPort("localhost", admin), 2},
		{net.JoinHostPort("127.0.0.9", admin), 2},
		{net.JoinHostPort("127.0.0.1", strconv.Itoa(home.acceptor.Port())), 2},
		{net.JoinHostPort("127.0.0.1", port(home.Listeners().SocksAddrs()[0])), 2},
		{"255.255.255.255:80", 2},
		{"224.0.0.1:80", 2},
		{web.String(), 0}, // exit = true still reaches the exit's own services
	} {
		if code := socksDial(t, socks, tc.target); code != tc.code {
			t.Errorf("SOCKS5 CONNECT %s through the exit: reply %d, want %d", tc.target, code, tc.code)
		}
	}
}

// socksDial makes a no-auth SOCKS5 CONNECT to target (an IPv4 literal or
// a name) through the proxy at socks and returns the reply code.
func socksDial(t *testing.T, socks, target string) byte {
	t.Helper()
	c, err := net.Dial("tcp", socks)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	host, ps, _ := net.SplitHostPort(target)
	p, _ := strconv.Atoi(ps)
	req := []byte{5, 1, 0, 5, 1, 0}
	if ip, err := netip.ParseAddr(host); err == nil && ip.Is4() {
		req = append(append(req, 1), ip.AsSlice()...)
	} else {
		req = append(append(req, 3, byte(len(host))), host...)
	}
	if _, err := c.Write(binary.BigEndian.AppendUint16(req, uint16(p))); err != nil {
		t.Fatal(err)
	}
	var reply [2 + 2 + 3]byte // method selection, then VER REP RSV
	if _, err := io.ReadFull(c, reply[:]); err != nil {
		t.Fatalf("SOCKS5 %s: %v", target, err)
	}
	return reply[3]
}

// TestAdminHostCheck is the DNS-rebinding half of finding 11: a page whose
// name resolves to 127.0.0.1 reaches the admin listener, but its requests
// carry its own name in Host, and must get nothing.
func TestAdminHostCheck(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	log := logrus.New()
	log.SetOutput(io.Discard)
	dir := t.TempDir()
	conf := "key_file = \"k.key\"\ncreate_key = true\nadmin_listen = \"127.0.0.1:0\"\n[rendezvous]\naddress = \"127.0.0.1:9\"\npublic_key = \"" +
		identity.PublicKey{1}.String() + "\"\n"
	cfg, err := config.Parse(filepath.Join(dir, "w.toml"), []byte(conf))
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	_, port, _ := net.SplitHostPort(d.AdminAddr().String())
	for _, tc := range []struct {
		host string
		want int
	}{
		{"evil.example:" + port, http.StatusForbidden},
		{"evil.example", http.StatusForbidden},
		{"127.0.0.1.evil.example:" + port, http.StatusForbidden},
		{"192.0.2.7:" + port, http.StatusForbidden},
		{"127.0.0.1:" + port, http.StatusOK},
		{"localhost:" + port, http.StatusOK},
		{"LOCALHOST.:" + port, http.StatusOK},
		{"[::1]:" + port, http.StatusOK},
	} {
		for _, path := range []string{"/status", "/metrics"} {
			req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+d.AdminAddr().String()+path, nil)
			req.Host = tc.host
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("GET %s with Host %q: %s, want %d\n%.200s", path, tc.host, resp.Status, tc.want, body)
			}
		}
	}
}

func TestAdminHostAllowed(t *testing.T) {
	local := func() []netip.Addr {
		return []netip.Addr{netip.MustParseAddr("10.0.0.5"), netip.MustParseAddr("fd00::5")}
	}
	for _, tc := range []struct {
		host, configured string
		want             bool
	}{
		{"127.0.0.1:7780", "127.0.0.1:7780", true},
		{"127.3.4.5", "127.0.0.1:7780", true},
		{"[::1]:7780", "127.0.0.1:7780", true},
		{"[::ffff:127.0.0.1]:7780", "127.0.0.1:7780", true},
		{"localhost:7780", "127.0.0.1:7780", true},
		{"10.0.0.5:7780", "127.0.0.1:7780", false},
		{"10.0.0.5:7780", "10.0.0.5:7780", true},
		{"10.0.0.5:7780", "0.0.0.0:7780", true},
		{"[fd00::5]:7780", "[::]:7780", true},
		{"10.0.0.6:7780", "0.0.0.0:7780", false},
		{"metrics.lan:7780", "metrics.lan:7780", true},
		{"Metrics.LAN.:7780", "metrics.lan:7780", true},
		{"evil.example:7780", "0.0.0.0:7780", false},
		{"evil.example:7780", ":7780", false},
		{"localhost.evil.example", "127.0.0.1:7780", false},
		{"", "127.0.0.1:7780", false},
		{"[fe80::1%lo]:7780", "[::]:7780", false},
	} {
		if got := adminHostAllowed(tc.host, tc.configured, local); got != tc.want {
			t.Errorf("Host %q, admin_listen %q: allowed %v, want %v", tc.host, tc.configured, got, tc.want)
		}
	}
}

func TestReservedTarget(t *testing.T) {
	ap := netip.MustParseAddrPort
	listeners := []ownListener{{"tcp", ap("127.0.0.1:7780")}, {"tcp", ap("[::]:41000")}, {"udp", ap("127.0.0.1:5353")}}
	prefixes := []netip.Prefix{netip.MustParsePrefix("192.168.1.10/24"), netip.MustParsePrefix("10.9.0.1/31"), netip.MustParsePrefix("fd00::1/64")}
	for _, tc := range []struct {
		network, target string
		want            bool
	}{
		{"tcp", "127.0.0.1:7780", true},
		{"tcp", "127.0.0.2:7780", true},
		{"tcp", "192.168.1.10:41000", true},
		{"tcp", "[fd00::1]:41000", true},
		{"tcp", "[::ffff:127.0.0.1]:41000", true},
		{"udp", "127.0.0.1:5353", true},
		{"udp", "192.168.1.255:9", true}, // the LAN's broadcast
		{"tcp", "192.168.1.255:80", true},
		{"udp", "127.0.0.1:7780", false}, // no UDP listener there
		{"tcp", "192.168.1.11:7780", false},
		{"tcp", "127.0.0.1:7781", false},
		{"udp", "10.9.0.1:9", false}, // a /31 has no broadcast
		{"tcp", "192.168.2.255:80", false},
	} {
		if got := reservedTarget(tc.network, ap(tc.target), listeners, prefixes); got != tc.want {
			t.Errorf("%s %s: reserved %v, want %v", tc.network, tc.target, got, tc.want)
		}
	}
}
