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
	lab := labtest.New(t, natlab.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, err := lab.AddSite(ctx, "a", natlab.Cone)
	if err != nil {
		t.Fatal(err)
	}
	b, err := lab.AddSite(ctx, "b", natlab.Cone)
	if err != nil {
		t.Fatal(err)
	}
	rv := hostPort(lab.Server().Addr().String(), "7777")
	for _, tc := range exampleUses {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, lab.Server(), rv)
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
