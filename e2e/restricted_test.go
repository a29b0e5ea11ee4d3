package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/warren-p2p/warren/daemon"
	"github.com/warren-p2p/warren/natlab"
	"github.com/warren-p2p/warren/natlab/labtest"
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
			r, client, clientAdmin, server, serverAdmin := runRestricted(t, tc.kind)
			if r.outcome != session.PathRelay {
				t.Fatalf("outcome %s (%s), want relay", r.outcome, r.note)
			}
			t.Logf("%s: first byte %v after start, link setup %v", tc.kind, r.firstByte.Round(time.Millisecond), r.setup.Round(time.Millisecond))
			if r.firstByte > restrictedFirstByte {
				t.Errorf("first byte %v after start, want within %v", r.firstByte.Round(time.Millisecond), restrictedFirstByte)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			st, err := status(ctx, client, clientAdmin)
			if err != nil {
				t.Fatal(err)
			}
			if st.Network != tc.why || !strings.Contains(st.RendezvousRoute, tc.route) {
				t.Errorf("status network %q, route %q; want %q over %q", st.Network, st.RendezvousRoute, tc.why, tc.route)
			}
			if p := st.Peers[0]; !strings.HasPrefix(p.Why, tc.why) {
				t.Errorf("why %q, want it to start with %q", p.Why, tc.why)
			}
			// The peer on the open network learns why too.
			sst, err := status(ctx, server, serverAdmin)
			if err != nil {
				t.Fatal(err)
			}
			if sst.Network != "" || !strings.HasPrefix(sst.Peers[0].Why, tc.peer) {
				t.Errorf("peer's status: network %q, why %q; want none and %q", sst.Network, sst.Peers[0].Why, tc.peer)
			}
			// The table says it too.
			out, err := client.Command(ctx, warrenBin, "status", "-admin", clientAdmin).CombinedOutput()
			if err != nil {
				t.Fatalf("warren status: %v\n%s", err, out)
			}
			if !strings.Contains(string(out), "network "+tc.why) || !strings.Contains(string(out), "relayed because "+tc.why) {
				t.Errorf("warren status does not say %q:\n%s", tc.why, out)
			}
		})
	}
}

// runRestricted runs restrictedCell(kind) with both daemons started at
// once, as the grid does, and returns its result with both daemons still
// running, and their machines and admin addresses.
func runRestricted(t *testing.T, kind natlab.Kind) (r cellResult, client machine, clientAdmin string, server machine, serverAdmin string) {
	c := restrictedCell(kind)
	r = cellResult{cell: c, transport: "tcp,udp", outcome: "fail"}
	lab := labtest.New(t, natlab.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client, server, err := c.build(ctx, lab)
	if err != nil {
		t.Fatal(err)
	}
	w := labWorld(t, lab)
	ck, sk := newKey(t, w.dir, "client"), newKey(t, w.dir, "server")
	svc := serveHasher(t, server)
	fwd := hostPort("127.0.0.1", freePort(t, client))
	clientAdmin = hostPort("127.0.0.1", freePort(t, client))
	serverAdmin = hostPort("127.0.0.1", freePort(t, server))
	common := fmt.Sprintf("log_level = \"debug\"\n[rendezvous]\naddress = %q\npublic_key = %q\n", w.rvAddr, w.rvKey)
	serverCfg := fmt.Sprintf("key_file = \"server.key\"\nadmin_listen = %q\n%s\n[[peers]]\nname = \"client\"\npublic_key = %q\n"+
		"[[expose]]\nname = \"svc\"\ntarget = \"127.0.0.1:%s\"\npeers = [\"client\"]\n", serverAdmin, common, ck, svc)
	clientCfg := fmt.Sprintf("key_file = \"client.key\"\nadmin_listen = %q\n%s\n[[peers]]\nname = \"server\"\npublic_key = %q\n"+
		"[[forward]]\nlisten = %q\npeer = \"server\"\nservice = \"svc\"\n", clientAdmin, common, sk, fwd)
	t0 := time.Now()
	start(t, server, "server", "up", "-c", writeFile(t, w.dir, "server.toml", serverCfg))
	start(t, client, "client", "up", "-c", writeFile(t, w.dir, "client.toml", clientCfg))
	fctx, fcancel := context.WithTimeout(ctx, cellLinkWait)
	defer fcancel()
	for fctx.Err() == nil {
		if err := oneByte(fctx, client, fwd); err == nil {
			r.firstByte = time.Since(t0)
			break
		} else {
			r.note = err.Error()
		}
		time.Sleep(10 * time.Millisecond)
	}
	st, err := status(ctx, client, clientAdmin)
	if err != nil {
		t.Fatal(err)
	}
	if p := st.Peers[0]; p.State == daemon.StateConnected && r.firstByte > 0 {
		r.outcome, r.note = p.Path, ""
		r.setup = time.Duration(p.SetupMs * float64(time.Millisecond))
	} else {
		r.note = p.State + ": " + p.Error + " " + r.note
	}
	return r, client, clientAdmin, server, serverAdmin
}
