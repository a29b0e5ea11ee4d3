package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/warren-p2p/warren/daemon"
	"github.com/warren-p2p/warren/natlab"
)

// portMapSetupTarget is issue 17's target for a symrand site with port
// mapping linking to a plain symrand site on the lab's lan, from the
// connect request.
const portMapSetupTarget = 300 * time.Millisecond

// TestPortMappedLink: a daemon at a symrand site whose router grants port
// mappings (UPnP IGD, NAT-PMP or PCP alone, a real miniupnpd), once its
// status shows the mapping, links directly with a daemon started then at a
// plain symrand site (a pair that relays without the mapping), over TCP
// alone and over UDP alone; the router holds rules for exactly the mapped
// ports (no TCP one without TCP links), and after the daemon stops they
// are gone.
func TestPortMappedLink(t *testing.T) {
	protocol := map[natlab.PortMapper]string{natlab.PortMapUPnP: "upnp", natlab.PortMapNATPMP: "nat-pmp", natlab.PortMapPCP: "pcp"}
	for _, pm := range portMappedKinds {
		for _, transport := range []string{"tcp", "udp"} {
			t.Run(string(pm)+"/"+transport, func(t *testing.T) {
				var router *natlab.Site
				c := portMappedCell(pm, &router)
				r := runCellWith(t, c, cellOptions{transports: transport, size: 1 << 20,
					measure: func(cr cellRun) { checkMappings(t, cr, router, protocol[pm], transport) }})
				if want := "direct-" + transport; r.outcome != want {
					t.Fatalf("link %s (%s), want %s", r.outcome, r.note, want)
				}
				// runCellWith takes the setup from the plain daemon, which
				// asked once both were up (the cell's clientFirst).
				t.Logf("%s over %s: %s, link setup %v (the plain daemon's connect to link up), first byte %v (from its start)",
					c.name, transport, r.outcome, r.setup.Round(time.Millisecond), r.firstByte.Round(time.Millisecond))
				if r.setup <= 0 || r.setup > portMapSetupTarget {
					t.Errorf("link setup %v, target %v", r.setup.Round(time.Millisecond), portMapSetupTarget)
				}
			})
		}
	}
}

// checkMappings checks, with the link up, that the plain daemon used the
// mapping and that the mapped daemon's status names what the router
// holds; then stops the mapped daemon and checks that the router's rules
// for its ports are gone.
func checkMappings(t *testing.T, cr cellRun, router *natlab.Site, protocol, transport string) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sst, err := status(ctx, cr.server, cr.serverAdmin)
	if err != nil {
		t.Fatal(err)
	}
	if p := sst.Peers[0]; p.Strategy != "hard/hard+mapped" {
		t.Errorf("plain daemon's strategy %s, want hard/hard+mapped", p.Strategy)
	}
	st, err := status(ctx, cr.client, cr.clientAdmin)
	if err != nil {
		t.Fatal(err)
	}
	m := st.PortMapping
	if m == nil || m.Protocol != protocol || m.UDP == "" || (m.TCP != "") != (transport == "tcp") {
		t.Fatalf("port_mapping %+v, want %s, udp, and tcp only with TCP links", m, protocol)
	}
	t.Logf("mapped daemon's port mapping: %s tcp %q udp %s expires %v", m.Protocol, m.TCP, m.UDP, m.Expires)
	var ports []uint16
	for _, e := range []string{m.TCP, m.UDP} {
		if e != "" {
			ports = append(ports, netip.MustParseAddrPort(e).Port())
		}
	}
	rules := miniupnpdRules(ctx, t, router)
	for _, p := range ports {
		if !strings.Contains(rules, fmt.Sprintf("dport %d ", p)) {
			t.Fatalf("router has no rule for port %d:\n%s", p, rules)
		}
	}
	if n := strings.Count(rules, "dport "); n != 2*len(ports) {
		// miniupnpd makes two rules a mapping: the DNAT and the filter.
		t.Errorf("router holds %d port rules, want 2 for each of %v:\n%s", n, ports, rules)
	}
	if testing.Verbose() && os.Getenv("WARREN_PM_LOG") != "" {
		t.Log(cr.clientProc.output())
	}
	stopProcess(t, cr.clientProc)
	rules = miniupnpdRules(ctx, t, router)
	for _, p := range ports {
		if strings.Contains(rules, fmt.Sprintf("dport %d ", p)) {
			t.Errorf("rule for port %d left on the router after the daemon stopped:\n%s", p, rules)
		}
	}
}

// awaitPortMapping waits for the daemon's status to show its mappings (the
// daemon shows both transports' at once; UDP alone without TCP links).
func awaitPortMapping(t testing.TB, m machine, admin string, max time.Duration) *daemon.PortMappingStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), max)
	defer cancel()
	var last *daemon.PortMappingStatus
	for ctx.Err() == nil {
		if st, err := status(ctx, m, admin); err == nil {
			if last = st.PortMapping; last != nil && (last.TCP != "" || last.UDP != "") {
				return last
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no port mapping within %v: %+v", max, last)
	return nil
}

// miniupnpdRules lists the rules miniupnpd made on site's router.
func miniupnpdRules(ctx context.Context, t *testing.T, site *natlab.Site) string {
	t.Helper()
	rules, err := site.PortMapperRules(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return rules
}

// stopProcess stops p as the service manager would (SIGTERM) and waits
// for it to exit cleanly.
func stopProcess(t *testing.T, p *process) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if p.err != nil {
			t.Fatalf("%s exited with %v on SIGTERM", p.name, p.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not stop within 10s of SIGTERM", p.name)
	}
}

// lateUpgradeBy is how soon after both daemons start the link must be
// direct when the mapping comes after the first link: before the relayed
// link's first upgrade attempt (1.5 s at the earliest, backoff jitter
// included), so only the reaction to the new mapping can make it.
const lateUpgradeBy = 1400 * time.Millisecond

// TestPortMappingLate: both daemons start at once, and the router's UPnP
// mapping (miniupnpd answers an SSDP search after a random delay) usually
// comes after the first link, which is then relayed. The mapped daemon
// reports the mapping and tries a direct path at once: the link is
// direct well before the relay's own upgrade attempt would be.
func TestPortMappingLate(t *testing.T) {
	var began time.Time
	c := portMappedCell(natlab.PortMapUPnP, nil)
	r := runCellWith(t, c, cellOptions{transports: "tcp,udp", size: 1 << 20,
		clientFirst: func(testing.TB, machine, string) { began = time.Now() },
		measure: func(cr cellRun) {
			ctx, cancel := context.WithDeadline(context.Background(), began.Add(lateUpgradeBy))
			defer cancel()
			var path string
			for ctx.Err() == nil {
				if st, err := status(ctx, cr.client, cr.clientAdmin); err == nil {
					if path = st.Peers[0].Path; strings.HasPrefix(path, "direct-") {
						t.Logf("%s %v after start", path, time.Since(began).Round(time.Millisecond))
						return
					}
				}
				time.Sleep(10 * time.Millisecond)
			}
			t.Errorf("path %s %v after start, want a direct one", path, lateUpgradeBy)
		}})
	t.Logf("path at the first byte (%v after start): %s", r.firstByte.Round(time.Millisecond), r.outcome)
	if r.outcome == "fail" {
		t.Fatalf("no link: %s", r.note)
	}
}
