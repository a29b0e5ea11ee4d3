package daemon

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/warren-p2p/warren/config"
)

func TestRendezvousProxy(t *testing.T) {
	env := func(vars map[string]string) func(string) string { return func(k string) string { return vars[k] } }
	rc := config.Rendezvous{Address: "rv.example.net:7777"}
	for _, tc := range []struct {
		name   string
		proxy  string // [rendezvous] proxy
		addr   string // [rendezvous] address; default rc's
		vars   map[string]string
		want   string // the proxy's host:port, "" for none
		errors bool
	}{
		{name: "none", want: ""},
		{name: "config", proxy: "http://10.0.0.1:3128", want: "10.0.0.1:3128"},
		{name: "config over env", proxy: "http://10.0.0.1:3128", vars: map[string]string{"HTTPS_PROXY": "http://env:8080"}, want: "10.0.0.1:3128"},
		{name: "HTTPS_PROXY", vars: map[string]string{"HTTPS_PROXY": "http://env:8080"}, want: "env:8080"},
		{name: "https_proxy without scheme", vars: map[string]string{"https_proxy": "env:8080"}, want: "env:8080"},
		{name: "http_proxy is not for https", vars: map[string]string{"http_proxy": "env:8080"}, want: ""},
		{name: "NO_PROXY domain", vars: map[string]string{"HTTPS_PROXY": "env:8080", "NO_PROXY": "localhost,.example.net"}, want: ""},
		{name: "no_proxy host", vars: map[string]string{"HTTPS_PROXY": "env:8080", "no_proxy": "rv.example.net"}, want: ""},
		{name: "NO_PROXY other", vars: map[string]string{"HTTPS_PROXY": "env:8080", "NO_PROXY": "example.org,ample.net"}, want: "env:8080"},
		{name: "NO_PROXY star", vars: map[string]string{"HTTPS_PROXY": "env:8080", "NO_PROXY": "*"}, want: ""},
		{name: "loopback server", addr: "127.0.0.1:7777", vars: map[string]string{"HTTPS_PROXY": "env:8080"}, want: ""},
		{name: "bad env", vars: map[string]string{"HTTPS_PROXY": "socks5://env:1080"}, errors: true},
	} {
		rc := rc
		rc.Proxy = tc.proxy
		if tc.addr != "" {
			rc.Address = tc.addr
		}
		u, err := rendezvousProxy(rc, env(tc.vars))
		if (err != nil) != tc.errors {
			t.Errorf("%s: error %v", tc.name, err)
			continue
		}
		got := ""
		if u != nil {
			got = u.Host
		}
		if got != tc.want {
			t.Errorf("%s: proxy %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestDialIPv4First: the server's address is dialled over its own family
// when it is a literal, and a name over IPv4 while that works.
func TestDialIPv4First(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, tc := range []struct{ listen, dial, want string }{
		{"127.0.0.1:0", "127.0.0.1", "127.0.0.1"},
		{"127.0.0.1:0", "localhost", "127.0.0.1"},
		{"[::1]:0", "::1", "::1"},
	} {
		ln, err := net.Listen("tcp", tc.listen)
		if err != nil {
			t.Logf("%s: %v", tc.listen, err)
			continue
		}
		defer ln.Close()
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		c, err := dialIPv4First(ctx, 0, net.JoinHostPort(tc.dial, port))
		if err != nil {
			t.Fatalf("dial %s: %v", tc.dial, err)
		}
		if got, _, _ := net.SplitHostPort(c.RemoteAddr().String()); got != tc.want {
			t.Errorf("dial %s reached %s, want %s", tc.dial, got, tc.want)
		}
		c.Close()
	}
}
