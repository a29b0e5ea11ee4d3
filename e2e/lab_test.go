package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/warren-p2p/warren/natlab"
	"github.com/warren-p2p/warren/natlab/labtest"
)

// TestExamplesAcrossConeNATs runs the three uses with each daemon behind
// its own port-restricted cone NAT and the rendezvous server on the lab's
// internet: the link must be punched directly.
func TestExamplesAcrossConeNATs(t *testing.T) {
	lab, a, b := twoCones(t)
	for _, tc := range exampleUses {
		t.Run(tc.name, func(t *testing.T) {
			w := labWorld(t, lab)
			p := tc.run(t, w, a.Host(), b.Host())
			if !strings.HasPrefix(p.link.Path, "direct-") {
				t.Errorf("path %q, want a direct path", p.link.Path)
			}
			// A direct link's remote is the peer's NAT, not the server.
			if want := b.PublicAddr().String(); !hasHost(p.link.Remote, want) {
				t.Errorf("link remote %s, want the peer's NAT %s", p.link.Remote, want)
			}
			t.Logf("link up in %.0f ms, rtt %.2f ms", p.link.SetupMs, p.link.RTTMs)
		})
	}
}

func hasHost(hostport, host string) bool {
	return len(hostport) > len(host) && hostport[:len(host)+1] == host+":"
}

// twoCones builds a lab with two port-restricted cone sites, a and b.
func twoCones(t testing.TB) (*natlab.Lab, *natlab.Site, *natlab.Site) {
	t.Helper()
	lab := labtest.New(t, natlab.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var sites []*natlab.Site
	for _, name := range []string{"a", "b"} {
		s, err := lab.AddSite(ctx, name, natlab.Cone)
		if err != nil {
			t.Fatal(err)
		}
		sites = append(sites, s)
	}
	return lab, sites[0], sites[1]
}

// labWorld starts a rendezvous server on the lab's internet, listening on
// both its addresses so that peers can classify their NATs, and on TCP 443
// for networks that let out nothing else (-fallback-listen). Its relay has
// no rate cap: the lab measures what the relay path can carry (the
// server's per-key limits are tested in package rendezvous).
//
// In a dual-stack lab (natlab.Config.IPv6) it listens on [::], which takes
// both families, its second UDP endpoint on the same addresses' next port;
// daemons dial its IPv4 address (rvAddr) unless they have no IPv4
// (rvAddr6), and the server has those that come over IPv4 observe their
// IPv6 addresses at its IPv6 ones.
func labWorld(t testing.TB, lab *natlab.Lab) *world {
	t.Helper()
	if a6 := lab.Server().Addr6(); a6.IsValid() {
		w := newWorld(t, lab.Server(), "[::]:7777", "-alt-listen", "[::]:7778", "-fallback-listen", "[::]:443", "-relay-rate", "0")
		w.rvAddr, w.rvAddr6 = hostPort(lab.Server().Addr().String(), "7777"), hostPort(a6.String(), "7777")
		return w
	}
	srv := lab.Server().Addrs()
	return newWorld(t, lab.Server(), hostPort(srv[0].String(), "7777"), "-alt-listen", hostPort(srv[1].String(), "7778"),
		"-fallback-listen", hostPort(srv[0].String(), "443"), "-relay-rate", "0")
}
