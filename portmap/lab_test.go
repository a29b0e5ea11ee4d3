//go:build linux

package portmap

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/warren-p2p/warren/natlab"
	"github.com/warren-p2p/warren/natlab/labtest"
)

// TestLabPortMapping is the proof against a real router: a symrand site
// whose router runs miniupnpd offering one protocol alone. A client on the
// site's host maps a UDP and a TCP port; the lab's server (on the
// internet) reaches the local sockets through the mappings; the leases
// are renewed; and after Close the router holds no rule for them and the
// external ports forward nothing. One case crosses an emulated uplink.
func TestLabPortMapping(t *testing.T) {
	for _, tc := range []labCase{
		{pm: natlab.PortMapUPnP, client: UPnP, offer: "upnp", service: "WANIPConnection:2"},
		{pm: natlab.PortMapUPnPv1, client: UPnP, offer: "upnp", service: "WANIPConnection:1"},
		{pm: natlab.PortMapNATPMP, client: NATPMP, offer: "nat-pmp"},
		{pm: natlab.PortMapPCP, client: PCP, offer: "pcp"},
		{pm: natlab.PortMapAll, client: "all", offer: "nat-pmp pcp upnp", service: "WANIPConnection:2"},
		// Across an emulated broadband uplink (30 ms, 0.1% loss, 100 Mbit/s).
		{pm: natlab.PortMapAll, client: "all", offer: "nat-pmp pcp upnp", service: "WANIPConnection:2", profile: "broadband"},
	} {
		name := string(tc.pm)
		if tc.profile != "" {
			name += "-" + tc.profile
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			labPortMapping(t, tc)
		})
	}
}

// labCase is a router offering pm, which a probe sees as offer (sorted
// protocol names) with UPnP service service, and a client asking with
// protocol client ("all" for every one).
type labCase struct {
	pm             natlab.PortMapper
	client         Protocol
	offer, service string
	profile        string // the site's uplink profile; "" for none
}

func labPortMapping(t *testing.T, tc labCase) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	lab := labtest.New(t, natlab.Config{})
	var opts []natlab.SiteOption
	if tc.profile != "" {
		p, err := natlab.LookupProfile(tc.profile)
		if err != nil {
			t.Fatal(err)
		}
		opts = append(opts, natlab.WithProfile(p))
	}
	site, err := lab.AddSite(ctx, "a", natlab.SymRand, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := site.StartPortMapper(ctx, tc.pm); err != nil {
		t.Fatal(err)
	}
	probe := startChild(ctx, t, site.Host(), "probe,0,0s")
	if f := probe.expect(t, "offer"); strings.Join(f[1:], " ") != tc.offer {
		t.Fatalf("router offers %v, want %s", f[1:], tc.offer)
	}
	if f := probe.expect(t, "service"); strings.Join(f[1:], " ") != tc.service {
		t.Fatalf("UPnP service %v, want %q", f[1:], tc.service)
	}
	const port = 41000
	ch := startChild(ctx, t, site.Host(), fmt.Sprintf("%s,%d,4s", tc.client, port))
	ext := map[string]netip.AddrPort{}
	for range 2 {
		f := ch.expect(t, "mapped ")
		if tc.client != "all" && f[2] != string(tc.client) {
			t.Fatalf("mapped with %s, want %s", f[2], tc.client)
		}
		ext[f[1]] = netip.MustParseAddrPort(f[3])
		if ext[f[1]].Addr() != site.PublicAddr() {
			t.Fatalf("external %v, want the router's %v", ext[f[1]], site.PublicAddr())
		}
		t.Logf("%s: %s %v mapped with %s in %s", tc.pm, f[1], ext[f[1]], f[2], f[4])
	}
	checkMappings(ctx, t, lab, site, ch, ext, port)
}

// checkMappings checks that the mappings forward from the server, are
// renewed, and are gone from the router after the client closes.
func checkMappings(ctx context.Context, t *testing.T, lab *natlab.Lab, site *natlab.Site, ch *child, ext map[string]netip.AddrPort, port int) {
	srv := lab.Server()
	send(t, srv, ext, "first")
	ch.expect(t, "got udp first")
	ch.expect(t, "got tcp first")
	rules := routerRules(ctx, t, site)
	for _, e := range ext {
		if !strings.Contains(rules, fmt.Sprintf("dport %d ", e.Port())) {
			t.Fatalf("router has no rule for %v:\n%s", e, rules)
		}
	}
	// A 4 s lease is renewed at about 2 s; after a renewal of each the
	// mappings still forward.
	ch.expect(t, "renewed udp")
	ch.expect(t, "renewed tcp")
	send(t, srv, ext, "renewed")
	ch.expect(t, "got udp renewed")
	ch.expect(t, "got tcp renewed")

	ch.close(t)
	ch.expect(t, "closed ok")
	ch.exited(t) // its sockets with it
	rules = routerRules(ctx, t, site)
	for _, e := range ext {
		if strings.Contains(rules, fmt.Sprintf("dport %d ", e.Port())) {
			t.Fatalf("rule for %v left after Close:\n%s", e, rules)
		}
	}
	noForward(t, site.Host(), srv, ext["udp"], port)
}

// routerRules lists the rules miniupnpd made on site's router.
func routerRules(ctx context.Context, t *testing.T, site *natlab.Site) string {
	t.Helper()
	rules, err := site.PortMapperRules(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return rules
}

// send sends payload from the server to the UDP and TCP external
// endpoints.
func send(t *testing.T, srv *natlab.Host, ext map[string]netip.AddrPort, payload string) {
	t.Helper()
	pc, err := srv.ListenPacket("udp4", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	for range 3 { // UDP may drop one; the child reports each
		if _, err := pc.WriteTo([]byte(payload), net.UDPAddrFromAddrPort(ext["udp"])); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := srv.DialContext(ctx, nil, "tcp4", ext["tcp"].String())
	if err != nil {
		t.Fatalf("TCP to the mapped %v: %v", ext["tcp"], err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, payload+"\n"); err != nil {
		t.Fatal(err)
	}
}

// noForward checks that a UDP packet to the old external endpoint no
// longer reaches the local port.
func noForward(t *testing.T, h, srv *natlab.Host, ext netip.AddrPort, port int) {
	t.Helper()
	var local net.PacketConn
	var err error
	for start := time.Now(); ; time.Sleep(50 * time.Millisecond) {
		// The exited client's sockets may outlive its output by a moment.
		if local, err = h.ListenPacket("udp4", fmt.Sprintf(":%d", port)); err == nil || time.Since(start) > 3*time.Second {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	defer local.Close()
	pc, err := srv.ListenPacket("udp4", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	for range 3 {
		_, _ = pc.WriteTo([]byte("after"), net.UDPAddrFromAddrPort(ext))
	}
	_ = local.SetReadDeadline(time.Now().Add(time.Second))
	if n, from, err := local.ReadFrom(make([]byte, 100)); err == nil {
		t.Fatalf("after Close, %d bytes from %v still reached the local port", n, from)
	}
}

// child is the client process on a lab host.
type child struct {
	in      io.WriteCloser
	lines   chan string
	backlog []string // lines read but not expected yet
}

func startChild(ctx context.Context, t *testing.T, h *natlab.Host, spec string) *child {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := h.Command(ctx, exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+spec)
	cmd.Stderr = &testWriter{t: t}
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{in: in, lines: make(chan string, 100)}
	go func() { // ends when the child's stdout closes
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
		close(c.lines)
	}()
	t.Cleanup(func() {
		_ = in.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return c
}

// expect waits for a line starting with prefix and returns its fields.
// Other lines are kept for later calls: the UDP and TCP reports, say,
// come in either order.
func (c *child) expect(t *testing.T, prefix string) []string {
	t.Helper()
	for i, line := range c.backlog {
		if strings.HasPrefix(line, prefix) {
			c.backlog = slices.Delete(c.backlog, i, i+1)
			return strings.Fields(line)
		}
	}
	deadline := time.After(20 * time.Second)
	for {
		select {
		case line, ok := <-c.lines:
			if !ok {
				t.Fatalf("client exited before %q", prefix)
			}
			if strings.HasPrefix(line, "error") {
				t.Fatalf("client: %s", line)
			}
			if strings.HasPrefix(line, prefix) {
				return strings.Fields(line)
			}
			c.backlog = append(c.backlog, line)
		case <-deadline:
			t.Fatalf("no %q from the client within 20 s", prefix)
		}
	}
}

// exited waits until the client's output ends, that is until it exited.
func (c *child) exited(t *testing.T) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case _, ok := <-c.lines:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("client still running 10 s after closing")
		}
	}
}

func (c *child) close(t *testing.T) {
	if err := c.in.Close(); err != nil {
		t.Fatal(err)
	}
}

type testWriter struct{ t *testing.T }

func (w *testWriter) Write(b []byte) (int, error) {
	w.t.Logf("client: %s", strings.TrimRight(string(b), "\n"))
	return len(b), nil
}
