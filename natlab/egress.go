package natlab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"time"
)

// Sites on networks that let little out: a cone NAT (as Cone) whose
// router also filters what its LAN may send, as office, hotel and school
// networks do.
const (
	// HTTPSOnly lets the LAN send nothing out but TCP to port 443 and DNS
	// (port 53): no UDP at all beyond DNS. Everything else is dropped
	// silently, so a dial elsewhere runs into its timeout.
	HTTPSOnly Kind = "https-only"
	// ProxyOnly lets the LAN send nothing out at all: its only way out is
	// an HTTP proxy (a real tinyproxy, Debian's package) on the router at
	// ProxyPort of the LAN address (Site.Proxy), which lets CONNECT
	// through to port 443 only, as most do.
	ProxyOnly Kind = "proxy-only"
)

// ProxyPort is where a ProxyOnly router's proxy listens, on its LAN
// address (tinyproxy's default port).
const ProxyPort = 8888

// proxyReady bounds how long a proxy may take to accept connections.
const proxyReady = 10 * time.Second

// RestrictedKinds returns the kinds whose routers filter their LAN's
// traffic out, in a fixed order. They are not among Kinds: their NAT is
// Cone's, and the grid pairs NAT behaviours.
func RestrictedKinds() []Kind { return []Kind{HTTPSOnly, ProxyOnly} }

// restricted reports whether k is one of RestrictedKinds.
func (k Kind) restricted() bool { return k == HTTPSOnly || k == ProxyOnly }

// lanOutRules are the forward chain's rules for what the LAN of a router
// of kind k may send out (after "ct state established,related accept",
// under a drop policy).
func lanOutRules(k Kind) string {
	switch k {
	case HTTPSOnly:
		return fmt.Sprintf("\t\tiifname %q tcp dport 443 accept\n", lanDev) +
			fmt.Sprintf("\t\tiifname %q meta l4proto { tcp, udp } th dport 53 accept\n", lanDev)
	case ProxyOnly:
		// Nothing is forwarded: the proxy on the router (input chain,
		// open to the LAN) is the only way out.
		return ""
	}
	return fmt.Sprintf("\t\tiifname %q accept\n", lanDev)
}

// Proxy returns the URL of the proxy of a ProxyOnly site (or a double
// NAT whose home router is ProxyOnly), "http://10.i.0.1:8888", or "" for
// any other site.
func (s *Site) Proxy() string {
	if s.inner != ProxyOnly && (s.kind != ProxyOnly || s.inner != "") {
		return ""
	}
	return fmt.Sprintf("http://%s", netip.AddrPortFrom(s.lanPrefix().Addr(), ProxyPort))
}

// tinyproxyConf is the proxy's config: serve the LAN only, CONNECT to port
// 443 only, in the foreground with its log on stderr.
func tinyproxyConf(lan netip.Prefix) string {
	return fmt.Sprintf(`Port %d
Listen %s
Timeout 600
MaxClients 200
Allow %s
ConnectPort 443
LogLevel Info
`, ProxyPort, lan.Addr(), lan.Masked())
}

// startProxyLocked runs tinyproxy in router namespace ns, serving LAN lan,
// owned by the lab (Close kills it), and waits until it accepts.
func (l *Lab) startProxyLocked(ctx context.Context, ns string, lan netip.Prefix) error {
	bin, err := exec.LookPath("tinyproxy")
	if err != nil {
		return errors.New("proxy: tinyproxy missing (apt-get install -y tinyproxy)")
	}
	dir, err := os.MkdirTemp("", "natlab-"+ns+"-")
	if err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	// tinyproxy reads its config only at start; the directory goes once
	// it accepts.
	defer os.RemoveAll(dir)
	conf := dir + "/tinyproxy.conf"
	if err := os.WriteFile(conf, []byte(tinyproxyConf(lan)), 0o644); err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	cmd := exec.Command("ip", "netns", "exec", ns, bin, "-d", "-c", conf)
	cmd.SysProcAttr = ownSession()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("proxy: start tinyproxy: %w", err)
	}
	l.ownLocked(cmd)
	r := &Host{name: ns}
	addr := netip.AddrPortFrom(lan.Addr(), ProxyPort).String()
	deadline := time.Now().Add(proxyReady)
	for {
		var d net.Dialer
		dctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		c, err := r.DialContext(dctx, &d, "tcp", addr)
		cancel()
		if err == nil {
			c.Close()
			return nil
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return fmt.Errorf("proxy: tinyproxy on %s does not accept at %s: %w", ns, addr, errors.Join(err, ctx.Err()))
		}
		select {
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
		}
	}
}
