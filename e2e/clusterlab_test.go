package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/warren-p2p/warren/daemon"
	"github.com/warren-p2p/warren/natlab"
	"github.com/warren-p2p/warren/natlab/labtest"
)

// TestClusterLab: three rendezvous nodes (a, b, c) on the lab's
// internet and 30 daemons behind real NATs of every kind, fifteen pairs
// (labPairs), ten daemons on each node, each pair's peers on two nodes.
// Ten pairs link directly across nodes, five symrand pairs are relayed
// through a node, one of them, whose peers list only their own node and
// c, through c, which holds neither. Each link carries an echo. Then the
// node of a and b relaying the most pairs is killed (SIGKILL): its ten
// daemons register with the others within 5 s, a stream open on every
// link that did not run through it keeps flowing, the links it relayed
// come back through a living node and carry an echo, and a new connect
// works.
func TestClusterLab(t *testing.T) {
	lab := labtest.New(t, natlab.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	began := time.Now()
	w, nodes := startLabCluster(ctx, t, lab)
	pairs := linkAcrossNodes(ctx, t, lab, w, nodes)
	daemons := clusterDaemons(ctx, t, nodes, pairs)
	dead := deadNode(t, nodes, pairs)
	t.Logf("%d pairs linked in %v; %s; killing %s", len(pairs), time.Since(began).Round(time.Millisecond),
		describeLinks(pairs, nodes), labNodeNames[dead])
	if !strings.Contains(nodes[dead].p.output(), `msg=relaying`) {
		t.Fatalf("%s does not say it relays", labNodeNames[dead])
	}

	streams := openStreams(ctx, t, pairs, nodes, dead)
	killed := time.Now()
	nodes[dead].p.cmd.Process.Signal(syscall.SIGKILL)
	<-nodes[dead].p.done
	waitMoved(t, daemons.on(dead), nodes, dead, killed.Add(5*time.Second))
	streams.check(t, "the death of "+labNodeNames[dead])

	for _, p := range pairs {
		if p.relayAt(nodes) == dead {
			relayAgain(ctx, t, p, nodes, dead, killed)
		}
	}
	for _, p := range pairs {
		if p.from == dead && !p.relay {
			reconnect(ctx, t, p)
			break
		}
	}
	stopAll(pairs, nodes)
	t.Logf("test body took %v", time.Since(began).Round(time.Millisecond))
}

// linkAcrossNodes adds TestClusterLab's sites, starts labPairs' daemons
// one pair after another, each placed on its nodes, and waits for every
// link.
func linkAcrossNodes(ctx context.Context, t *testing.T, lab *natlab.Lab, w *world, nodes []*rvNode) []*clusterPair {
	t.Helper()
	laptops, offices := addLabHosts(ctx, t, lab)
	var pairs []*clusterPair
	for i, lp := range labPairs {
		pairs = append(pairs, launchClusterPair(t, w, lp, laptops[i], offices[i], nodes))
	}
	for _, p := range pairs {
		p.settle(ctx, t, nodes)
	}
	return pairs
}

// describeLinks says how each pair linked, in one line.
func describeLinks(pairs []*clusterPair, nodes []*rvNode) string {
	var s []string
	for _, p := range pairs {
		s = append(s, fmt.Sprintf("%s %s %.0f ms", p, p.path(nodes), p.link.SetupMs))
	}
	return strings.Join(s, ", ")
}

// path is the pair's link's path, with the node that relays it.
func (cp *clusterPair) path(nodes []*rvNode) string {
	if at := cp.relayAt(nodes); at >= 0 {
		return "relay at " + labNodeNames[at]
	}
	return cp.link.Path
}

// deadNode returns the node to kill: of a and b (c relays the aside pair,
// whose stream must outlive the death), the one relaying the most pairs.
func deadNode(t *testing.T, nodes []*rvNode, pairs []*clusterPair) int {
	t.Helper()
	relays := make([]int, len(nodes))
	for _, p := range pairs {
		if at := p.relayAt(nodes); at >= 0 {
			relays[at]++
		}
	}
	dead := 0
	if relays[1] > relays[0] {
		dead = 1
	}
	if relays[dead] == 0 {
		t.Fatalf("neither rv-a nor rv-b relays a pair (relays by node: %v)", relays)
	}
	return dead
}

// clusterDaemon is one daemon of TestClusterLab and where it registered.
type clusterDaemon struct {
	name, admin string
	m           machine
	node        int
}

type clusterDaemonList []clusterDaemon

// clusterDaemons lists the pairs' daemons and fails the test unless each
// is registered with the node it was placed on, by its status's route and
// rendezvous_node both.
func clusterDaemons(ctx context.Context, t *testing.T, nodes []*rvNode, pairs []*clusterPair) clusterDaemonList {
	t.Helper()
	var all clusterDaemonList
	for i, p := range pairs {
		all = append(all,
			clusterDaemon{name: fmt.Sprintf("laptop%d", i), admin: p.clientAdmin, m: p.laptop, node: p.from},
			clusterDaemon{name: fmt.Sprintf("office%d", i), admin: p.serverAdmin, m: p.office, node: p.to})
	}
	for _, d := range all {
		st, err := status(ctx, d.m, d.admin)
		if err != nil {
			t.Fatalf("%s: status: %v", d.name, err)
		}
		if at := registeredAt(st, nodes); st.Rendezvous != "registered" || at != d.node {
			t.Fatalf("%s is %s with %s (node %q), want registered with %s", d.name, st.Rendezvous,
				st.RendezvousRoute, st.RendezvousNode, labNodeNames[d.node])
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

// waitMoved waits until every daemon of moving, registered with node
// dead, is registered with another node, polling them all together, and
// fails the test unless all are by deadline.
func waitMoved(t *testing.T, moving clusterDaemonList, nodes []*rvNode, dead int, deadline time.Time) {
	t.Helper()
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	start := time.Now()
	pending := moving
	var where []string
	for len(pending) > 0 {
		var still clusterDaemonList
		for _, d := range pending {
			st, err := status(ctx, d.m, d.admin)
			if at := registeredAt(st, nodes); err == nil && st.Rendezvous == "registered" && at >= 0 && at != dead {
				where = append(where, fmt.Sprintf("%s@%s", d.name, labNodeNames[at]))
			} else {
				still = append(still, d)
			}
		}
		pending = still
		if len(pending) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%d of the %d daemons of %s not registered with another node %v after its death: %v",
				len(pending), len(moving), labNodeNames[dead], time.Since(start).Round(time.Millisecond), pending)
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Logf("all %d daemons of %s registered elsewhere within %v: %s", len(moving), labNodeNames[dead],
		time.Since(start).Round(time.Millisecond), strings.Join(where, " "))
}

func (d clusterDaemon) String() string { return d.name }

// openStreamSet is a stream open on each link that does not run through
// the node about to die, with the round each had reached before.
type openStreamSet struct {
	streams []*stream
	before  []int64
	names   []string
}

// openStreams opens a stream on each of pairs' links not relayed by dead,
// echoing every 100 ms (the lab's two cores carry them all at once), and
// returns once each has echoed twice.
func openStreams(ctx context.Context, t *testing.T, pairs []*clusterPair, nodes []*rvNode, dead int) *openStreamSet {
	t.Helper()
	set := &openStreamSet{}
	for _, p := range pairs {
		if p.relayAt(nodes) != dead {
			set.streams = append(set.streams, startStreamEvery(ctx, t, p.laptop, p.fwd, 100*time.Millisecond))
			set.names = append(set.names, p.String()+" "+p.path(nodes))
		}
	}
	for i, s := range set.streams {
		for s.rounds.Load() < 2 {
			select {
			case err := <-s.err:
				t.Fatalf("stream over %s: %v", set.names[i], err)
			case <-ctx.Done():
				t.Fatalf("stream over %s: no echo: %v", set.names[i], ctx.Err())
			case <-time.After(20 * time.Millisecond):
			}
		}
		set.before = append(set.before, s.rounds.Load())
	}
	return set
}

// check lets the streams echo for one more second, then stops each and
// fails the test unless it kept flowing, every echo intact, across what.
func (set *openStreamSet) check(t *testing.T, what string) {
	t.Helper()
	time.Sleep(time.Second)
	for i, s := range set.streams {
		s.check(t, set.before[i], what+" ("+set.names[i]+")")
	}
}

// relayAgain waits until p's link, relayed by the dead node, is relayed
// by a living one, and checks an echo over it.
func relayAgain(ctx context.Context, t *testing.T, p *clusterPair, nodes []*rvNode, dead int, killed time.Time) {
	t.Helper()
	again := waitPeerWhere(t, p.laptop, p.clientAdmin, 30*time.Second, func(l daemon.PeerStatus) bool {
		at := nodeAt(nodes, l.Remote)
		return l.Path == "relay" && at >= 0 && at != dead
	})
	if err := retryEcho(ctx, p.laptop, p.fwd, 10*time.Second); err != nil {
		t.Fatalf("%s: echo over the relay re-established through %s: %v", p, again.Remote, err)
	}
	t.Logf("%s: relayed link back through %s %v after the kill", p, labNodeNames[nodeAt(nodes, again.Remote)],
		time.Since(killed).Round(time.Millisecond))
}

// stopAll stops every pair's daemons and the nodes at once (SIGTERM),
// so that the test's cleanups, one after another, find them stopped;
// each daemon's cleanup still checks that it exited cleanly.
func stopAll(pairs []*clusterPair, nodes []*rvNode) {
	for _, p := range pairs {
		p.client.cmd.Process.Signal(syscall.SIGTERM)
		p.server.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, n := range nodes {
		n.p.cmd.Process.Signal(syscall.SIGTERM)
	}
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
func reconnect(ctx context.Context, t *testing.T, p *clusterPair) {
	t.Helper()
	p.client.cmd.Process.Signal(syscall.SIGTERM)
	<-p.client.done
	restarted := time.Now()
	p.client = start(t, p.laptop, "laptop-again", "up", "-c", filepath.Join(p.dir, "laptop.toml"))
	st := waitPeer(t, p.laptop, p.clientAdmin, "office", daemon.StateConnected, linkWait)
	t.Logf("%s: new connect after the kill: path %s, up %v after the restart", p, st.Path, time.Since(restarted).Round(time.Millisecond))
	if err := retryEcho(ctx, p.laptop, p.fwd, 10*time.Second); err != nil {
		t.Fatalf("echo over the new link: %v\n%s", err, tail(p.client.output(), 20))
	}
}
