package daemon

import (
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/warren-p2p/warren/punch"
)

// checkHost guards the admin API against DNS rebinding: a web page in a
// local browser can make its own name resolve to 127.0.0.1 and then read
// whatever the admin API answers, peer keys and addresses included, but
// its requests still carry its own name in Host. Only requests naming the
// API as loopback or as configured (admin_listen) get through; the rest
// get 403.
func checkHost(next http.Handler, configured string, log logrus.FieldLogger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !adminHostAllowed(r.Host, configured, localAddrs) {
			log.WithFields(logrus.Fields{"host": r.Host, "client": r.RemoteAddr, "path": r.URL.Path}).Debug("admin request refused: Host is not this daemon")
			http.Error(w, "Host not allowed: use 127.0.0.1, localhost or the admin_listen address", http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// localAddrs lists this machine's addresses, or none if they cannot be
// listed (then only loopback and the configured address pass).
func localAddrs() []netip.Addr {
	addrs, _ := punch.InterfaceAddrs()
	return addrs
}

// adminHostAllowed reports whether a request's Host header names the admin
// API: "localhost", a loopback address, the host of configured (the
// admin_listen address, a name or an address), or, when configured is a
// wildcard address, one of this machine's addresses as local lists them.
// A port in host is ignored: the listener's own port is the only one
// that reaches it.
func adminHostAllowed(host, configured string, local func() []netip.Addr) bool {
	name := host
	if h, _, err := net.SplitHostPort(host); err == nil {
		name = h
	}
	name = strings.TrimSuffix(strings.ToLower(strings.Trim(name, "[]")), ".")
	if name == "" {
		return false
	}
	want, _, err := net.SplitHostPort(configured)
	if err != nil {
		want = configured
	}
	want = strings.TrimSuffix(strings.ToLower(want), ".")
	if name == "localhost" || name == want {
		return true
	}
	ip, err := netip.ParseAddr(name)
	if err != nil || ip.Zone() != "" {
		return false
	}
	ip = ip.Unmap()
	if ip.IsLoopback() {
		return true
	}
	if wantIP, err := netip.ParseAddr(want); want == "" || err == nil && wantIP.IsUnspecified() {
		for _, a := range local() {
			if a == ip {
				return true
			}
		}
	}
	return false
}
