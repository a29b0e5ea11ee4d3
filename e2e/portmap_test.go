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
// status shows the mapping, links directly over TCP with a daemon started
// then at a plain symrand site (a pair that relays without the mapping),
// both with the default config; the router holds rules for exactly the
// mapped ports, and after the daemon stops they are gone.
func TestPortMappedLink(t *testing.T) {
	protocol := map[natlab.PortMapper]string{natlab.PortMapUPnP: "upnp", natlab.PortMapNATPMP: "nat-pmp", natlab.PortMapPCP: "pcp"}
	for _, pm := range portMappedKinds {
		t.Run(string(pm), func(t *testing.T) {
			var router *natlab.Site
			var mapped *daemon.PortMappingStatus
			c := portMappedCell(pm, &router)
			r := runCellWith(t, c, cellOptions{transports: "tcp,udp", size: 1 << 20,
				clientFirst: func(t testing.TB, client machine, admin string) {
					began := time.Now()
					mapped = awaitPortMapping(t, client, admin, 5*time.Second)
					t.Logf("%s mapping after %v (of which daemon start): %s tcp %s udp %s expires %v", pm,
						time.Since(began).Round(time.Millisecond), mapped.Protocol, mapped.TCP, mapped.UDP, mapped.Expires)
				},
				measure: func(cr cellRun) {
					ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
					defer cancel()
					sst, err := status(ctx, cr.server, cr.serverAdmin)
					if err != nil {
						t.Fatal(err)
					}
					if p := sst.Peers[0]; p.Path != "direct-tcp" || p.Strategy != "hard/hard+mapped" {
						t.Errorf("plain daemon's link: path %s, strategy %s; want direct-tcp, hard/hard+mapped", p.Path, p.Strategy)
					}
					if mapped.Protocol != protocol[pm] || mapped.TCP == "" || mapped.UDP == "" {
						t.Fatalf("port_mapping = %+v, want tcp and udp by %s", mapped, protocol[pm])
					}
					ports := []uint16{netip.MustParseAddrPort(mapped.TCP).Port(), netip.MustParseAddrPort(mapped.UDP).Port()}
					rules := miniupnpdRules(ctx, t, router)
					for _, p := range ports {
						if !strings.Contains(rules, fmt.Sprintf("dport %d ", p)) {
							t.Fatalf("router has no rule for port %d:\n%s", p, rules)
						}
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
				}})
			if r.outcome != "direct-tcp" {
				t.Fatalf("link %s (%s), want direct-tcp", r.outcome, r.note)
			}
			// runCellWith takes the setup from the plain daemon, which
			// asked once both were up (clientFirst).
			t.Logf("%s: %s, link setup %v (the plain daemon's connect to link up), first byte %v (from the plain daemon's start)",
				c.name, r.outcome, r.setup.Round(time.Millisecond), r.firstByte.Round(time.Millisecond))
			if r.setup <= 0 || r.setup > portMapSetupTarget {
				t.Errorf("link setup %v, target %v", r.setup.Round(time.Millisecond), portMapSetupTarget)
			}
		})
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
// direct-tcp well before the relay's own upgrade attempt would be.
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
					if path = st.Peers[0].Path; path == "direct-tcp" {
						t.Logf("direct-tcp %v after start", time.Since(began).Round(time.Millisecond))
						return
					}
				}
				time.Sleep(10 * time.Millisecond)
			}
			t.Errorf("path %s %v after start, want direct-tcp", path, lateUpgradeBy)
		}})
	t.Logf("path at the first byte (%v after start): %s", r.firstByte.Round(time.Millisecond), r.outcome)
	if r.outcome == "fail" {
		t.Fatalf("no link: %s", r.note)
	}
}
