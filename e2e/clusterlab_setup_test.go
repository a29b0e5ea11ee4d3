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
	"github.com/warren-p2p/warren/natlab"
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

// labPair is one pair of TestClusterLab: the sites (labSites) of its
// laptop and office, the nodes (indexes of labNodeNames) each is placed
// on, and the path its link must take.
type labPair struct {
	laptopSite, officeSite string
	from, to               int
	relay                  bool
	// aside pairs list only their own node and c, the one node both
	// measure, which must relay them though it holds neither.
	aside bool
}

// labSites are TestClusterLab's sites and their NAT kinds. A symseq site
// holds one daemon: another host's new flows through the same NAT would
// shift the port sequence the peer predicts. The others hold several
// daemons each, one host each, which keeps the lab small; the two peers
// of a pair are always behind different NATs (the lab's do not hairpin,
// and peers behind one NAT would link on the LAN).
var labSites = []struct {
	name string
	kind natlab.Kind
}{
	{"open", natlab.Open}, {"cone1", natlab.Cone}, {"cone2", natlab.Cone}, {"conerst", natlab.ConeRST},
	{"seq1", natlab.SymSeq}, {"seq2", natlab.SymSeq}, {"seq3", natlab.SymSeq}, {"seq4", natlab.SymSeq},
	{"rand1", natlab.SymRand}, {"rand2", natlab.SymRand},
}

// labPairs are TestClusterLab's 15 pairs, 30 daemons, ten on each node;
// each pair's peers sit on two nodes, five pairs for each two. Kinds are
// mixed so that ten link directly (grid_expect_test.go has them all
// "direct") and five, two symrand peers each, are relayed.
var labPairs = []labPair{
	{laptopSite: "cone1", officeSite: "seq1", from: 0, to: 1},
	{laptopSite: "open", officeSite: "rand2", from: 0, to: 1},
	{laptopSite: "rand1", officeSite: "rand2", from: 0, to: 1, relay: true},
	{laptopSite: "rand1", officeSite: "rand2", from: 0, to: 1, relay: true},
	{laptopSite: "rand1", officeSite: "rand2", from: 0, to: 1, relay: true, aside: true},

	{laptopSite: "cone1", officeSite: "seq2", from: 1, to: 2},
	{laptopSite: "cone1", officeSite: "cone2", from: 1, to: 2},
	{laptopSite: "open", officeSite: "cone2", from: 1, to: 2},
	{laptopSite: "conerst", officeSite: "seq3", from: 1, to: 2},
	{laptopSite: "rand1", officeSite: "rand2", from: 1, to: 2, relay: true},

	{laptopSite: "seq4", officeSite: "open", from: 2, to: 0},
	{laptopSite: "cone1", officeSite: "conerst", from: 2, to: 0},
	{laptopSite: "open", officeSite: "rand2", from: 2, to: 0},
	{laptopSite: "cone1", officeSite: "cone2", from: 2, to: 0},
	{laptopSite: "rand1", officeSite: "rand2", from: 2, to: 0, relay: true},
}

// nodeLists returns the nodes the pair's laptop and office list, each its
// own first: all three, or for an aside pair its own and c.
func (lp labPair) nodeLists(nodes []*rvNode) (laptop, office []*rvNode) {
	c := nodes[2]
	if lp.aside {
		return []*rvNode{nodes[lp.from], c}, []*rvNode{nodes[lp.to], c}
	}
	third := nodes[3-lp.from-lp.to]
	return []*rvNode{nodes[lp.from], nodes[lp.to], third}, []*rvNode{nodes[lp.to], third, nodes[lp.from]}
}

// addLabHosts adds labSites and returns a host for each laptop and each
// office of labPairs: a site's own host for its first daemon, a new host
// behind the same NAT for each further one.
func addLabHosts(ctx context.Context, t *testing.T, lab *natlab.Lab) (laptops, offices []*natlab.Host) {
	t.Helper()
	sites := map[string]*natlab.Site{}
	for _, s := range labSites {
		site, err := lab.AddSite(ctx, s.name, s.kind)
		if err != nil {
			t.Fatal(err)
		}
		sites[s.name] = site
	}
	used := map[string]int{}
	host := func(name string) *natlab.Host {
		used[name]++
		if used[name] == 1 {
			return sites[name].Host()
		}
		h, err := sites[name].AddHost(ctx, fmt.Sprintf("%sh%d", name, used[name]))
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	for _, lp := range labPairs {
		laptops = append(laptops, host(lp.laptopSite))
		offices = append(offices, host(lp.officeSite))
	}
	return laptops, offices
}

// clusterPair is examples/rdp's laptop and office, linked through a
// cluster, office's RDP service an echo and laptop's forward fwd.
type clusterPair struct {
	pair
	labPair
	spec           pairSpec
	laptop, office machine
	fwd, dir       string // dir holds their keys and configs
	// placed is when the last of the two was started again to sit on the
	// node it lists first (zero if neither was): its link counts, not
	// one from before.
	placed time.Time
}

// launchClusterPair starts lp's laptop on lm and office on om, in a
// directory of their own (so that the pairs of one world keep their keys
// apart), and starts either again until it is registered with the node it
// lists first. settle waits for their link.
func launchClusterPair(t *testing.T, w *world, lp labPair, lm, om machine, nodes []*rvNode) *clusterPair {
	t.Helper()
	own := *w
	own.dir = t.TempDir()
	keys := map[string]string{"laptop": own.keygen("laptop"), "office": own.keygen("office")}
	echo := serveEcho(t, om)
	fwd := hostPort("127.0.0.1", freePort(t, lm))
	one := "address = \"rv.example.net:7777\"\n"
	laptopNodes, officeNodes := lp.nodeLists(nodes)
	spec := pairSpec{dir: "rdp", cm: lm, sm: om, client: "laptop", server: "office", keys: keys,
		clientRepl: []string{"127.0.0.1:13389", fwd, one, addressesOf(laptopNodes...)},
		serverRepl: []string{"127.0.0.1:3389", "127.0.0.1:" + echo, one, addressesOf(officeNodes...)}}
	cp := &clusterPair{pair: launchPair(t, &own, spec), labPair: lp, spec: spec, laptop: lm, office: om, fwd: fwd, dir: own.dir}
	laptopAgain, officeAgain := cp.onFirst(t, true, laptopNodes[0]), cp.onFirst(t, false, officeNodes[0])
	cp.placed = officeAgain
	if laptopAgain.After(officeAgain) {
		cp.placed = laptopAgain
	}
	return cp
}

// settle waits for the link of the pair's daemons as placed, and checks
// its path and an echo over it.
func (cp *clusterPair) settle(ctx context.Context, t *testing.T, nodes []*rvNode) {
	t.Helper()
	cp.link = waitPeerWhere(t, cp.laptop, cp.clientAdmin, linkWait, func(l daemon.PeerStatus) bool {
		return l.Since != nil && l.Since.After(cp.placed)
	})
	waitPeer(t, cp.office, cp.serverAdmin, "laptop", daemon.StateConnected, linkWait)
	at := nodeAt(nodes, cp.link.Remote)
	switch {
	case !cp.relay && !strings.HasPrefix(cp.link.Path, "direct-"):
		t.Fatalf("%s: path %q, want a direct one", cp, cp.link.Path)
	case cp.relay && (cp.link.Path != "relay" || at < 0):
		t.Fatalf("%s: path %q to %s, want relay at a node", cp, cp.link.Path, cp.link.Remote)
	case cp.aside && at != 2:
		t.Fatalf("%s, listing only its own nodes and rv-c: relay at %s, want rv-c (%s), the one node both measured",
			cp, cp.link.Remote, nodes[2].addr)
	}
	if err := oneEcho(ctx, cp.laptop, cp.fwd); err != nil {
		t.Fatalf("%s: echo over the %s link: %v", cp, cp.link.Path, err)
	}
}

// relayAt returns the index of the node relaying the pair's link, or -1
// if it is direct.
func (cp *clusterPair) relayAt(nodes []*rvNode) int {
	if cp.link.Path != "relay" {
		return -1
	}
	return nodeAt(nodes, cp.link.Remote)
}

func (cp *clusterPair) String() string {
	return fmt.Sprintf("%s/%s (%s→%s)", cp.laptopSite, cp.officeSite, labNodeNames[cp.from], labNodeNames[cp.to])
}

// onFirst starts the pair's laptop (or office) again until it is
// registered with first, the node it lists first, three times at most,
// and returns when it last started it (zero if never). The nodes are all
// as near, and a daemon takes the first it lists; but on a machine loaded
// enough to hold a node's process off the CPU for tens of milliseconds
// through all of a daemon's probes, it takes another, and the test wants
// its peers spread as it placed them.
func (cp *clusterPair) onFirst(t *testing.T, laptop bool, first *rvNode) time.Time {
	t.Helper()
	name, m, admin, d := "office", cp.office, cp.serverAdmin, &cp.server
	if laptop {
		name, m, admin, d = "laptop", cp.laptop, cp.clientAdmin, &cp.client
	}
	var again time.Time
	for try := 0; ; try++ {
		st := waitStatus(t, m, admin, linkWait, "registration", func(st daemon.Status) bool { return st.Rendezvous == "registered" })
		if st.RendezvousRoute == "direct "+first.addr {
			return again
		}
		if try == 3 {
			t.Fatalf("%s %s registered %s, not with %s, after %d starts", cp, name, st.RendezvousRoute, first.addr, try+1)
		}
		t.Logf("%s %s registered %s, not with %s, the node it lists first: starting it again", cp, name, st.RendezvousRoute, first.addr)
		(*d).cmd.Process.Signal(syscall.SIGTERM)
		<-(*d).done
		again = time.Now()
		*d = start(t, m, name+"-again", "up", "-c", filepath.Join(cp.dir, name+".toml"))
	}
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
