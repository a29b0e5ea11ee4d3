package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/warren-p2p/warren/daemon"
)

// rvNode is one node of a rendezvous cluster run from the real binary.
type rvNode struct {
	addr, cluster string
	p             *process
}

// startClusterNodes starts n `warren rendezvous` nodes on m's loopback
// with NATS embedded, all with the first node's key, each routed to the
// first, each with the extra arguments. The first is w's server.
func startClusterNodes(t testing.TB, m machine, n int, extra ...string) (*world, []*rvNode) {
	t.Helper()
	first := &rvNode{addr: hostPort("127.0.0.1", freePort(t, m)), cluster: hostPort("127.0.0.1", freePort(t, m))}
	w := newWorld(t, m, first.addr, append([]string{"-cluster-listen", first.cluster, "-node", "n0"}, extra...)...)
	first.p = w.rv
	nodes := []*rvNode{first}
	for i := 1; i < n; i++ {
		node := &rvNode{addr: hostPort("127.0.0.1", freePort(t, m)), cluster: hostPort("127.0.0.1", freePort(t, m))}
		name := fmt.Sprintf("n%d", i)
		args := []string{"rendezvous", "-listen", node.addr, "-key", filepath.Join(w.dir, "rendezvous.key"),
			"-cluster-listen", node.cluster, "-cluster-peers", "nats://" + first.cluster, "-node", name}
		args = append(args, extra...)
		node.p = launchNode(t, m, name, args...)
		if key := node.p.waitOutput(t, rvKeyLine, 10*time.Second); key != w.rvKey {
			t.Fatalf("node %s has key %s, want the cluster's %s", name, key, w.rvKey)
		}
		nodes = append(nodes, node)
	}
	return w, nodes
}

// launchNode starts `warren rendezvous` as the cluster node name on m.
// Unlike start, its cleanup accepts any exit: a test may kill the node.
func launchNode(t testing.TB, m machine, name string, args ...string) *process {
	t.Helper()
	p := launch(t, m, "rendezvous-"+name, nil, warrenBin, args...)
	t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("--- output of rendezvous-%s ---\n%s", name, p.output())
		}
	})
	return p
}

// addressesOf is a daemon's [rendezvous] addresses line listing nodes in
// the order given.
func addressesOf(nodes ...*rvNode) string {
	var q []string
	for _, n := range nodes {
		q = append(q, fmt.Sprintf("%q", n.addr))
	}
	return "addresses = [" + strings.Join(q, ", ") + "]\n"
}

// registrations counts a daemon's lines saying it registered with addr.
func registrations(p *process, addr string) int {
	re := regexp.MustCompile(`msg="registered with rendezvous server".*server="?` + regexp.QuoteMeta(addr))
	return len(re.FindAllString(p.output(), -1))
}

// TestClusterDaemons: real daemons registered with two different nodes of
// a three-node cluster link through it; the office's node is killed
// (SIGKILL): the office registers with another node within 5 s, the open
// stream keeps flowing, and a laptop daemon started afterwards links to
// the office through the cluster.
func TestClusterDaemons(t *testing.T) {
	w, nodes := startClusterNodes(t, localhost{}, 3)
	m := localhost{}
	keys := map[string]string{"laptop": w.keygen("laptop"), "office": w.keygen("office")}
	echo := serveEcho(t, m)
	fwd := hostPort("127.0.0.1", freePort(t, m))
	one := "address = \"rv.example.net:7777\"\n"
	clientRepl := []string{"127.0.0.1:13389", fwd, one, addressesOf(nodes[0], nodes[1], nodes[2])}
	serverRepl := []string{"127.0.0.1:3389", "127.0.0.1:" + echo, one, addressesOf(nodes[1], nodes[2], nodes[0])}
	p := startPair(t, w, "rdp", m, m, "laptop", "office", keys, clientRepl, serverRepl)
	// Each lists its own node first; ranking by round trip keeps that
	// order on loopback unless a probe goes unanswered for 500 ms.
	on := func(d *process) int {
		for i, n := range nodes {
			if registrations(d, n.addr) > 0 {
				return i
			}
		}
		return -1
	}
	laptopOn, officeOn := on(p.client), on(p.server)
	if laptopOn < 0 || officeOn < 0 || laptopOn == officeOn {
		t.Fatalf("laptop on node %d, office on node %d: want two nodes", laptopOn, officeOn)
	}
	dead := nodes[officeOn]
	if !strings.Contains(nodes[laptopOn].p.output()+nodes[officeOn].p.output(), "coordinating punch across nodes") {
		t.Fatal("no node says it coordinated a punch across nodes")
	}
	t.Logf("linked across nodes: path %s in %.0f ms", p.link.Path, p.link.SetupMs)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	long := startStream(ctx, t, m, fwd)
	time.Sleep(200 * time.Millisecond)
	before := long.rounds.Load()
	killed := time.Now()
	dead.p.cmd.Process.Signal(syscall.SIGKILL)
	<-dead.p.done
	moved := func() bool {
		for _, n := range nodes {
			if n != dead && registrations(p.server, n.addr) > 0 {
				return true
			}
		}
		return false
	}
	for !moved() {
		if time.Since(killed) > 5*time.Second {
			t.Fatalf("office not registered with another node 5 s after its node died:\n%s", tail(p.server.output(), 20))
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("office registered with another node %v after its node was killed", time.Since(killed).Round(time.Millisecond))
	long.finish(t, before, "the death of the office's node")

	// A new connect: the laptop starts again and links to the office,
	// now registered with another node.
	p.client.cmd.Process.Signal(syscall.SIGTERM)
	<-p.client.done
	again := start(t, m, "laptop-again", "up", "-c", filepath.Join(w.dir, "laptop.toml"))
	st := waitPeer(t, m, p.clientAdmin, "office", daemon.StateConnected, linkWait)
	t.Logf("new link after the failover: path %s in %.0f ms", st.Path, st.SetupMs)
	if err := oneEcho(ctx, m, fwd); err != nil {
		t.Fatalf("echo over the new link: %v\n%s", err, tail(again.output(), 20))
	}
}
