package e2e

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/warren-p2p/warren/natlab"
	"github.com/warren-p2p/warren/session"
)

// withEnv is a machine whose commands run with more environment
// variables: a daemon that finds its proxy in HTTPS_PROXY, as on a
// network that lets out nothing else.
type withEnv struct {
	machine
	env []string
}

func (m withEnv) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := m.machine.Command(ctx, name, args...)
	cmd.Env = append(os.Environ(), m.env...)
	return cmd
}

// restrictedCell is a grid cell whose client sits at a restricted site
// (an https-only or proxy-only network behind a cone NAT) and whose server
// sits behind a cone NAT. A proxy-only client finds its proxy in
// HTTPS_PROXY, as users' machines there do.
func restrictedCell(kind natlab.Kind) cell {
	return cell{name: string(kind) + "/cone", client: string(kind), server: string(natlab.Cone),
		build: func(ctx context.Context, lab *natlab.Lab) (machine, machine, error) {
			sa, err := lab.AddSite(ctx, "a", kind)
			if err != nil {
				return nil, nil, err
			}
			sb, err := lab.AddSite(ctx, "b", natlab.Cone)
			if err != nil {
				return nil, nil, err
			}
			var client machine = sa.Host()
			if p := sa.Proxy(); p != "" {
				client = withEnv{machine: client, env: []string{"HTTPS_PROXY=" + p}}
			}
			return client, sb.Host(), nil
		}}
}

// restrictedFirstByte is the target: from the daemons' start to the first
// byte through the relay, on the lab's lan profile.
const restrictedFirstByte = time.Second

// TestRestrictedNetworks starts a daemon on a network that lets out only
// TCP 443, and one that lets out only an HTTP proxy (on its router, found
// in HTTPS_PROXY), each with a peer behind a cone NAT, and the rendezvous
// server also on 443. The daemon must find the server on 443 by itself,
// go to the relay at once (not wait out punches its network drops), and
// say why.
func TestRestrictedNetworks(t *testing.T) {
	for _, tc := range []struct {
		kind             natlab.Kind
		route, why, peer string
	}{
		{natlab.HTTPSOnly, "fallback 203.0.113.2:443", "no UDP here; TCP 443 only", "no UDP at the peer; TCP 443 only"},
		{natlab.ProxyOnly, "via proxy 10.1.0.1:8888", "only an HTTP proxy here", "only an HTTP proxy at the peer"},
	} {
		t.Run(string(tc.kind), func(t *testing.T) {
			t.Parallel()
			checked := false
			r := runCellWith(t, restrictedCell(tc.kind), cellOptions{transports: "tcp,udp", size: 1 << 20, measure: func(cr cellRun) {
				checked = true
				checkRestrictedStatus(t, cr, tc.why, tc.route, tc.peer)
			}})
			if r.outcome != session.PathRelay {
				t.Fatalf("outcome %s (%s), want relay", r.outcome, r.note)
			}
			t.Logf("%s: first byte %v after start, link setup %v", tc.kind, r.firstByte.Round(time.Millisecond), r.setup.Round(time.Millisecond))
			if r.firstByte > restrictedFirstByte {
				t.Errorf("first byte %v after start, want within %v", r.firstByte.Round(time.Millisecond), restrictedFirstByte)
			}
			if !checked {
				t.Error("status not checked")
			}
		})
	}
}

// checkRestrictedStatus checks that both daemons' status, and the client's
// `warren status` table, say why their link is relayed.
func checkRestrictedStatus(t *testing.T, cr cellRun, why, route, peerWhy string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := status(ctx, cr.client, cr.clientAdmin)
	if err != nil {
		t.Fatal(err)
	}
	if st.Network != why || !strings.Contains(st.RendezvousRoute, route) {
		t.Errorf("status network %q, route %q; want %q over %q", st.Network, st.RendezvousRoute, why, route)
	}
	if p := st.Peers[0]; !strings.HasPrefix(p.Why, why) {
		t.Errorf("why %q, want it to start with %q", p.Why, why)
	}
	// The peer on the open network learns why too.
	sst, err := status(ctx, cr.server, cr.serverAdmin)
	if err != nil {
		t.Fatal(err)
	}
	if sst.Network != "" || !strings.HasPrefix(sst.Peers[0].Why, peerWhy) {
		t.Errorf("peer's status: network %q, why %q; want none and %q", sst.Network, sst.Peers[0].Why, peerWhy)
	}
	out, err := cr.client.Command(ctx, warrenBin, "status", "-admin", cr.clientAdmin).CombinedOutput()
	if err != nil {
		t.Fatalf("warren status: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "network "+why) || !strings.Contains(string(out), "relayed because "+why) {
		t.Errorf("warren status does not say %q:\n%s", why, out)
	}
}
