package e2e

import (
	"cmp"
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/warren-p2p/warren/daemon"
	"github.com/warren-p2p/warren/natlab"
	"github.com/warren-p2p/warren/natlab/labtest"
)

// labNodeNames are the -node names of startLabCluster's nodes, in order.
var labNodeNames = []string{"rv-a", "rv-b", "rv-c"}

// startLabCluster starts three `warren rendezvous` nodes, each on a
// public host of its own on the lab's internet (an Open site), with NATS
// embedded and routed to the two others, one shared key, and -public its
// own address (as daemons list it, so that their round trips match it).
// Each also listens on its address's next port, which lets peers tell
// symmetric NATs from cone ones. It returns once every node has heard the
// others' loads, that is once the routes are up.
func startLabCluster(ctx context.Context, t *testing.T, lab *natlab.Lab) (*world, []*rvNode) {
	t.Helper()
	var hosts []*natlab.Host
	var nodes []*rvNode
	for _, name := range labNodeNames {
		s, err := lab.AddSite(ctx, strings.ReplaceAll(name, "-", ""), natlab.Open)
		if err != nil {
			t.Fatal(err)
		}
		ip := s.Host().Addr().String()
		hosts = append(hosts, s.Host())
		nodes = append(nodes, &rvNode{addr: hostPort(ip, "7777"), cluster: hostPort(ip, "7790")})
	}
	w := &world{t: t, dir: t.TempDir(), rvAddr: nodes[0].addr, logLevel: "debug"}
	for i, n := range nodes {
		var routes []string
		for _, o := range nodes {
			if o != n {
				routes = append(routes, "nats://"+o.cluster)
			}
		}
		n.p = launchNode(t, hosts[i], labNodeNames[i], "rendezvous", "-listen", n.addr,
			"-alt-listen", hostPort(hosts[i].Addr().String(), "7778"), "-key", filepath.Join(w.dir, "rendezvous.key"),
			"-node", labNodeNames[i], "-public", n.addr, "-cluster-listen", n.cluster, "-cluster-peers", strings.Join(routes, ","))
		// The first node writes the key file the others read.
		key := n.p.waitOutput(t, rvKeyLine, 10*time.Second)
		if i == 0 {
			w.rvKey = key
		} else if key != w.rvKey {
			t.Fatalf("node %s has key %s, want the cluster's %s", labNodeNames[i], key, w.rvKey)
		}
	}
	for i, n := range nodes {
		for j := range nodes {
			if j != i {
				heard := regexp.MustCompile(`relays are chosen among it and the others.*relay_node=` + labNodeNames[j] + `\b`)
				n.p.waitOutput(t, heard, 30*time.Second)
			}
		}
	}
	return w, nodes
}

// clusterPair is examples/rdp's laptop and office, linked through a
// cluster, office's RDP service an echo and laptop's forward fwd.
type clusterPair struct {
	pair
	laptop, office machine
	fwd, dir       string // dir holds their keys and configs
}

// startClusterPair starts laptop on lm and office on om, each listing the
// nodes in its own order, in a directory of their own (so that several
// pairs of one world keep their keys apart), and waits for their link.
func startClusterPair(t *testing.T, w *world, lm, om machine, laptopNodes, officeNodes []*rvNode) clusterPair {
	t.Helper()
	own := *w
	own.dir = t.TempDir()
	keys := map[string]string{"laptop": own.keygen("laptop"), "office": own.keygen("office")}
	echo := serveEcho(t, om)
	fwd := hostPort("127.0.0.1", freePort(t, lm))
	one := "address = \"rv.example.net:7777\"\n"
	p := startPair(t, &own, "rdp", lm, om, "laptop", "office", keys,
		[]string{"127.0.0.1:13389", fwd, one, addressesOf(laptopNodes...)},
		[]string{"127.0.0.1:3389", "127.0.0.1:" + echo, one, addressesOf(officeNodes...)})
	cp := clusterPair{pair: p, laptop: lm, office: om, fwd: fwd, dir: own.dir}
	placed := time.Now()
	if moved := cp.onFirst(t, true, laptopNodes[0]); cp.onFirst(t, false, officeNodes[0]) || moved {
		// The link of the daemons as placed, not one from before.
		cp.link = waitPeerWhere(t, lm, p.clientAdmin, linkWait, func(l daemon.PeerStatus) bool {
			return l.Since != nil && l.Since.After(placed)
		})
	}
	return cp
}

// onFirst starts the pair's laptop (or office) again until it is
// registered with first, the node it lists first, three times at most. The
// nodes are all as near, and a daemon takes the first it lists; but on a
// machine loaded enough to hold a node's process off the CPU for tens of
// milliseconds through all of a daemon's probes, it takes another, and
// the test wants its peers spread as it placed them. It says whether it
// started the daemon again.
func (p *clusterPair) onFirst(t *testing.T, laptop bool, first *rvNode) bool {
	t.Helper()
	name, m, admin, d := "office", p.office, p.serverAdmin, &p.server
	if laptop {
		name, m, admin, d = "laptop", p.laptop, p.clientAdmin, &p.client
	}
	for try := 0; ; try++ {
		st := waitStatus(t, m, admin, linkWait, "registration", func(st daemon.Status) bool { return st.Rendezvous == "registered" })
		if st.RendezvousRoute == "direct "+first.addr {
			return try > 0
		}
		if try == 3 {
			t.Fatalf("%s registered %s, not with %s, after %d starts", name, st.RendezvousRoute, first.addr, try+1)
		}
		t.Logf("%s registered %s, not with %s, the node it lists first: starting it again", name, st.RendezvousRoute, first.addr)
		(*d).cmd.Process.Signal(syscall.SIGTERM)
		<-(*d).done
		*d = start(t, m, name+"-again", "up", "-c", filepath.Join(p.dir, name+".toml"))
	}
}

// nodeOf returns the index of the node the daemon at admin on m is
// registered with now, by its route and the name the node told it
// (labNodeNames), or -1.
func nodeOf(ctx context.Context, m machine, admin string, nodes []*rvNode) int {
	st, err := status(ctx, m, admin)
	if err != nil || st.Rendezvous != "registered" {
		return -1
	}
	return registeredAt(st, nodes)
}

// registeredAt returns the index of the node that st's route and node
// name both name, or -1.
func registeredAt(st daemon.Status, nodes []*rvNode) int {
	for i, n := range nodes {
		if st.RendezvousRoute == "direct "+n.addr && st.RendezvousNode == labNodeNames[i] {
			return i
		}
	}
	return -1
}

// nodeAt returns the index of the node whose host addr (host:port) names.
func nodeAt(nodes []*rvNode, addr string) int {
	for i, n := range nodes {
		if host, _, _ := strings.Cut(n.addr, ":"); hasHost(addr, host) {
			return i
		}
	}
	return -1
}

// TestClusterLab: three rendezvous nodes (a, b, c) on the lab's
// internet, six daemons behind real NATs, each listing the nodes in its
// own order so that each pair's peers sit on different nodes (a and b). A
// cone and a symseq peer link directly across nodes; two symrand peers
// can only be relayed, and are, through a node; two more symrand peers,
// each listing only its own node and c, are relayed through c, the one
// node both measured, which coordinated neither. Then the first relayed
// pair's relay node, which holds one peer of each pair, is killed: its
// peers register elsewhere within 5 s, streams open on the direct link
// and on the relay through c keep flowing, the first relayed link comes
// back through a living node and carries an echo, and a new connect
// works.
func TestClusterLab(t *testing.T) {
	lab := labtest.New(t, natlab.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	w, nodes := startLabCluster(ctx, t, lab)
	direct, relayed, aside := linkAcrossNodes(ctx, t, lab, w, nodes)
	relayAt := nodeAt(nodes, relayed.link.Remote)
	daemons := clusterDaemons(ctx, t, nodes, direct, relayed, aside)
	t.Logf("direct %s in %.0f ms, relayed through %s in %.0f ms, relayed through %s in %.0f ms; daemons on %s",
		direct.link.Path, direct.link.SetupMs, labNodeNames[relayAt], relayed.link.SetupMs,
		labNodeNames[nodeAt(nodes, aside.link.Remote)], aside.link.SetupMs, daemons)
	dead := nodes[relayAt]
	if !strings.Contains(dead.p.output(), `msg=relaying`) {
		t.Fatalf("%s does not say it relays", labNodeNames[relayAt])
	}
	moving := daemons.on(relayAt)
	if len(moving) != 3 || moving[0].pair == moving[1].pair || moving[1].pair == moving[2].pair || moving[0].pair == moving[2].pair {
		t.Fatalf("the relay's node %s holds %d daemons, want one of each pair (%s)", labNodeNames[relayAt], len(moving), daemons)
	}

	long, longAside := startStream(ctx, t, direct.laptop, direct.fwd), startStream(ctx, t, aside.laptop, aside.fwd)
	time.Sleep(200 * time.Millisecond)
	before, beforeAside := long.rounds.Load(), longAside.rounds.Load()
	killed := time.Now()
	dead.p.cmd.Process.Signal(syscall.SIGKILL)
	<-dead.p.done
	for _, d := range moving {
		st := waitStatus(t, d.m, d.admin, time.Until(killed.Add(5*time.Second)), "registration with another node",
			func(st daemon.Status) bool {
				at := registeredAt(st, nodes)
				return st.Rendezvous == "registered" && at >= 0 && nodes[at] != dead
			})
		t.Logf("%s registered with %s %v after its node was killed", d.name, st.RendezvousNode, time.Since(killed).Round(time.Millisecond))
	}
	long.finish(t, before, "the death of "+labNodeNames[relayAt]+" (direct link)")
	longAside.finish(t, beforeAside, "the death of "+labNodeNames[relayAt]+" (relay through rv-c)")

	again := waitPeerWhere(t, relayed.laptop, relayed.clientAdmin, 30*time.Second, func(p daemon.PeerStatus) bool {
		return p.Path == "relay" && nodeAt(nodes, p.Remote) >= 0 && nodeAt(nodes, p.Remote) != relayAt
	})
	if err := retryEcho(ctx, relayed.laptop, relayed.fwd, 10*time.Second); err != nil {
		t.Fatalf("echo over the relay re-established through %s: %v", again.Remote, err)
	}
	t.Logf("relayed link back through %s %v after the kill", labNodeNames[nodeAt(nodes, again.Remote)], time.Since(killed).Round(time.Millisecond))

	reconnect(ctx, t, direct)
}

// linkAcrossNodes adds TestClusterLab's sites and links its three pairs
// (their peers first on a and b): direct (cone laptop, symseq office),
// relayed (symrand, symrand) through a node of the cluster's choice, and
// aside (symrand, symrand, each listing only its own node and c) through
// c. Each carries an echo.
func linkAcrossNodes(ctx context.Context, t *testing.T, lab *natlab.Lab, w *world, nodes []*rvNode) (direct, relayed, aside clusterPair) {
	t.Helper()
	a, b, c := nodes[0], nodes[1], nodes[2]
	hosts := map[string]*natlab.Host{}
	for _, name := range []string{"cone", "seq", "rand1", "rand2", "rand3", "rand4"} {
		kind := map[string]natlab.Kind{"cone": natlab.Cone, "seq": natlab.SymSeq}[name]
		site, err := lab.AddSite(ctx, name, cmp.Or(kind, natlab.SymRand))
		if err != nil {
			t.Fatal(err)
		}
		hosts[name] = site.Host()
	}
	direct = startClusterPair(t, w, hosts["cone"], hosts["seq"], []*rvNode{a, b, c}, []*rvNode{b, c, a})
	if !strings.HasPrefix(direct.link.Path, "direct-") {
		t.Fatalf("cone/symseq path %q, want a direct one", direct.link.Path)
	}
	relayed = startClusterPair(t, w, hosts["rand1"], hosts["rand2"], []*rvNode{a, c, b}, []*rvNode{b, a, c})
	if at := nodeAt(nodes, relayed.link.Remote); relayed.link.Path != "relay" || at < 0 {
		t.Fatalf("symrand/symrand path %q to %s, want relay at a node", relayed.link.Path, relayed.link.Remote)
	}
	aside = startClusterPair(t, w, hosts["rand3"], hosts["rand4"], []*rvNode{a, c}, []*rvNode{b, c})
	if aside.link.Path != "relay" || nodeAt(nodes, aside.link.Remote) != 2 {
		t.Fatalf("symrand/symrand pair listing a,c and b,c: path %q to %s, want relay at rv-c (%s), the one node both measured",
			aside.link.Path, aside.link.Remote, c.addr)
	}
	for _, p := range []clusterPair{direct, relayed, aside} {
		if err := oneEcho(ctx, p.laptop, p.fwd); err != nil {
			t.Fatalf("echo over the %s link: %v", p.link.Path, err)
		}
	}
	return direct, relayed, aside
}

// clusterDaemon is one daemon of TestClusterLab and where it registered.
type clusterDaemon struct {
	name, admin string
	m           machine
	pair        int // by the order of clusterDaemons' pairs
	node        int
}

type clusterDaemonList []clusterDaemon

// clusterDaemons finds the nodes the pairs' daemons registered with, and
// fails the test unless each pair's two sit on different nodes.
func clusterDaemons(ctx context.Context, t *testing.T, nodes []*rvNode, pairs ...clusterPair) clusterDaemonList {
	t.Helper()
	var all clusterDaemonList
	for i, p := range pairs {
		l := clusterDaemon{name: fmt.Sprintf("laptop%d", i), admin: p.clientAdmin, m: p.laptop, pair: i}
		o := clusterDaemon{name: fmt.Sprintf("office%d", i), admin: p.serverAdmin, m: p.office, pair: i}
		l.node, o.node = nodeOf(ctx, l.m, l.admin, nodes), nodeOf(ctx, o.m, o.admin, nodes)
		all = append(all, l, o)
		if l.node < 0 || o.node < 0 || l.node == o.node {
			t.Fatalf("pair %d: laptop on node %d, office on node %d: want two nodes", i, l.node, o.node)
		}
	}
	return all
}

// on returns the daemons registered with node i.
func (l clusterDaemonList) on(i int) clusterDaemonList {
	var out clusterDaemonList
	for _, d := range l {
		if d.node == i {
			out = append(out, d)
		}
	}
	return out
}

func (l clusterDaemonList) String() string {
	var s []string
	for _, d := range l {
		s = append(s, d.name+"@"+labNodeNames[d.node])
	}
	return strings.Join(s, " ")
}

// waitPeerWhere waits until the daemon's only peer is connected and cond
// holds for its row, and returns the row.
func waitPeerWhere(t testing.TB, m machine, admin string, max time.Duration, cond func(daemon.PeerStatus) bool) daemon.PeerStatus {
	t.Helper()
	st := waitStatus(t, m, admin, max, "peer connected as wanted", func(st daemon.Status) bool {
		return len(st.Peers) == 1 && st.Peers[0].State == daemon.StateConnected && cond(st.Peers[0])
	})
	return st.Peers[0]
}

// retryEcho tries oneEcho until one succeeds or max has passed: a link
// just re-established may still be settling.
func retryEcho(ctx context.Context, m machine, fwd string, max time.Duration) error {
	deadline := time.Now().Add(max)
	for {
		err := oneEcho(ctx, m, fwd)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// reconnect restarts the pair's laptop, which connects to office anew
// through what is left of the cluster, and checks an echo over the link.
func reconnect(ctx context.Context, t *testing.T, p clusterPair) {
	t.Helper()
	p.client.cmd.Process.Signal(syscall.SIGTERM)
	<-p.client.done
	restarted := time.Now()
	again := start(t, p.laptop, "laptop-again", "up", "-c", filepath.Join(p.dir, "laptop.toml"))
	st := waitPeer(t, p.laptop, p.clientAdmin, "office", daemon.StateConnected, linkWait)
	t.Logf("new connect after the kill: path %s, up %v after the restart", st.Path, time.Since(restarted).Round(time.Millisecond))
	if err := retryEcho(ctx, p.laptop, p.fwd, 10*time.Second); err != nil {
		t.Fatalf("echo over the new link: %v\n%s", err, tail(again.output(), 20))
	}
}
