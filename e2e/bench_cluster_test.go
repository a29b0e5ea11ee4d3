package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warren-p2p/warren/identity"
)

// Issue 18's targets for the latency a connect across nodes adds to one
// within a node, on loopback.
const (
	clusterTargetP50 = time.Millisecond
	clusterTargetP99 = 5 * time.Millisecond
)

const (
	// clusterNodes is the cluster's size, issue 18's benchmark's.
	clusterNodes = 3
	// clusterLatWindow is the latency window: asks one at a time, a pair
	// on one node and a pair across nodes in turn.
	clusterLatWindow = 10 * time.Second
	// clusterPeersEnv names peer counts (comma-separated, rising) to
	// measure instead of clusterSteps, for a quick run.
	clusterPeersEnv = "WARREN_BENCH_CLUSTER_PEERS"
)

// clusterSteps are the peer counts measured, spread evenly over the nodes.
var clusterSteps = []int{10000, 30000}

// clusterStep is what one step measured.
type clusterStep struct {
	peers, added int
	register     time.Duration // to register the added peers, with every node
	rest         []restUsage   // per node, peers only keeping alive
	heap         []int         // per node, live heap (MB) at its last GC before the rest's reading
	loadAvg      string        // the machine's, after the rest window
	lat          rvCoordResult // asks one at a time, both kinds of pair
	cross, same  rvCoordResult // asks rvInFlight at a time, pairs across nodes, pairs on one
}

// BenchmarkClusterScale registers 10,000 and then 30,000 simulated peers
// with a cluster of three `warren rendezvous` processes (NATS embedded,
// on loopback), peer i with node i mod 3, and measures at each count each
// node's RSS and CPU while the peers only keep alive; connect
// coordinations per second between pairs on different nodes and between
// pairs on one node; and, asking one at a time, the latency a connect
// across nodes adds to one within a node. The peers are
// BenchmarkRendezvousScale's (rvLoad), in load worker processes of at most
// 10,000 peers each.
//
// As root (a node's 10,000 connections may need a higher file descriptor
// limit):
//
//	go test ./e2e -run '^$' -bench '^BenchmarkClusterScale$' -benchtime 1x -v
//
// WARREN_BENCH_CLUSTER_PEERS=1500,3000 for a quick run, with
// WARREN_BENCH_LOAD_WORKERS=3 to split even those. WARREN_BENCH_PPROF=DIR
// runs the nodes with a pprof listener (e2e/testdata/pprof) and saves in
// DIR each node's heap and goroutines at rest and its CPU profile over
// the one-at-a-time and the across-nodes windows, for each count.
func BenchmarkClusterScale(b *testing.B) {
	steps := clusterPeerCounts(b)
	most := steps[len(steps)-1]
	// Each node holds a connection for each of its peers, and inherits
	// its limit from this process; the load workers see to their own.
	if err := raiseFDLimit(uint64((most+clusterNodes-1)/clusterNodes) + rvSpareFDs); err != nil {
		b.Fatalf("the nodes' peers: %v", err)
	}
	// One machine plays every peer: the per-source limits would stop it.
	prof := profileNodes(b)
	w, nodes := startClusterNodes(b, gctraceHost{}, clusterNodes, "-limits=false")
	prof.started(nodes)
	serverKey, err := identity.ParsePublicKey(w.rvKey)
	if err != nil {
		b.Fatal(err)
	}
	var addrs []string
	var procs []*process
	for _, n := range nodes {
		addrs, procs = append(addrs, n.addr), append(procs, n.p)
	}
	load := newRVLoad(b, addrs, serverKey, most)

	base := atRest(b, procs, rvRest/2)
	b.Logf("baseline: no peers, RSS %s, CPU %s of one core", perNode(base, restRSS), perNode(base, restCPU))

	// Registrations first, every step, as in BenchmarkRendezvousScale: a
	// coordination window leaves sessions behind in the nodes' memory.
	var res []clusterStep
	for _, n := range steps {
		st := clusterStep{peers: n, added: n - load.count()}
		st.register = load.grow(n)
		st.rest = atRest(b, procs, rvRest)
		prof.heap(strconv.Itoa(n))
		for _, p := range procs {
			st.heap = append(st.heap, lastLiveHeap(p.output()))
		}
		st.loadAvg = loadAvg()
		b.Logf("%d peers: +%d registered in %v, RSS %s (live heap %s MB), CPU at rest %s; loadavg %s", n, st.added,
			st.register.Round(time.Millisecond), perNode(st.rest, restRSS), perNode(st.heap, strconv.Itoa),
			perNode(st.rest, restCPU), st.loadAvg)
		res = append(res, st)
	}
	for i := range res {
		st := &res[i]
		// Latency first, before the throughput windows' sessions fill the
		// nodes' maps.
		tag := strconv.Itoa(st.peers)
		prof.cpu(tag+"-one-at-a-time", clusterLatWindow)
		st.lat = load.coordinate(b, procs, rvWindow{among: st.peers, inFlight: 1, length: clusterLatWindow, pairs: pairsBoth})
		prof.cpu(tag+"-across", rvCoord)
		st.cross = load.coordinate(b, procs, rvWindow{among: st.peers, inFlight: rvInFlight, length: rvCoord, pairs: pairsCross})
		st.same = load.coordinate(b, procs, rvWindow{among: st.peers, inFlight: rvInFlight, length: rvCoord, pairs: pairsSame})
		b.Logf("%d peers, one at a time: %s\n\tacross nodes: %s\n\ton one node: %s", st.peers, st.lat, st.cross, st.same)
		reportClusterStep(b, st)
	}
	load.check()
	benchDoc.add(benchCluster, clusterReport(res, base, len(load.workers)))
}

// clusterPeerCounts is clusterSteps, or the counts clusterPeersEnv names.
func clusterPeerCounts(tb testing.TB) []int {
	env := os.Getenv(clusterPeersEnv)
	if env == "" {
		return clusterSteps
	}
	var steps []int
	for f := range strings.SplitSeq(env, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 100 || (len(steps) > 0 && n <= steps[len(steps)-1]) {
			tb.Fatalf("%s=%q: want rising peer counts of at least 100, such as 1500,3000", clusterPeersEnv, env)
		}
		steps = append(steps, n)
	}
	return steps
}

// reportClusterStep reports a step's figures as benchmark metrics.
func reportClusterStep(b *testing.B, st *clusterStep) {
	tag := "@" + strconv.Itoa(st.peers)
	var most int64
	for _, r := range st.rest {
		most = max(most, r.rss)
	}
	b.ReportMetric(float64(most)/(1<<20), "max-node-rss-MiB"+tag)
	b.ReportMetric(st.cross.rate, "cross-coord/s"+tag)
	b.ReportMetric(st.same.rate, "same-coord/s"+tag)
	p50, p99 := st.addedLatency()
	b.ReportMetric(float64(p50.Microseconds())/1000, "added-p50-ms"+tag)
	b.ReportMetric(float64(p99.Microseconds())/1000, "added-p99-ms"+tag)
}

// addedLatency is the latency a connect across nodes adds to one within a node,
// at p50 and at p99, asking one at a time.
func (st *clusterStep) addedLatency() (p50, p99 time.Duration) {
	return st.lat.cross.p50 - st.lat.same.p50, st.lat.cross.p99 - st.lat.same.p99
}

func restRSS(r restUsage) string { return mib(r.rss) }
func restCPU(r restUsage) string { return fmt.Sprintf("%.1f%%", r.cpu) }

// perNode is one figure per node, in node order.
func perNode[T any](vals []T, f func(T) string) string {
	s := make([]string, len(vals))
	for i, v := range vals {
		s[i] = f(v)
	}
	return strings.Join(s, " / ")
}

// clusterReport is the report's section.
func clusterReport(steps []clusterStep, base []restUsage, workers int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "## Rendezvous cluster scale\n\n%d `warren rendezvous` processes on loopback, clustered with NATS "+
		"embedded in each (`-cluster-listen`, the others routed to the first), one key for all; simulated peers as in "+
		"\"Rendezvous scale\" (own key and TLS connection, register %d at a time, NAT report, ping every %v), peer i "+
		"registered with node i mod %d, spread over %d load generator processes (each holding peers of every node and "+
		"asking among its own; latency quantiles are of all their samples together). At each count: the added peers' registration time; each node's RSS and CPU "+
		"over %v with peers only keeping alive. Then, once all are registered, for each count n, among the first n "+
		"peers: %v of asks one at a time, a pair on one node and a pair across nodes in turn (ask to both punches: "+
		"what a connect across nodes adds); %v of coordinations between pairs on different nodes and %v between "+
		"pairs on one node, %d asks in flight. The load generator and the nodes share the %d cores. Baseline, same "+
		"run, no peers: RSS %s, CPU %s of one core. `go test ./e2e -run '^$' -bench '^BenchmarkClusterScale$' "+
		"-benchtime 1x` as root (`%s=1500,3000` for a quick run).\n\n",
		clusterNodes, rvRamp, rvPingInterval, clusterNodes, workers, rvRest, clusterLatWindow, rvCoord, rvCoord, rvInFlight,
		runtime.NumCPU(), perNode(base, restRSS), perNode(base, restCPU), clusterPeersEnv)
	b.WriteString("Each node, in node order:\n\n| peers | register time | RSS | RSS per peer on the node | live heap | " +
		"CPU at rest | machine's load average, 1 / 5 / 15 min |\n|---|---|---|---|---|---|---|\n")
	for _, s := range steps {
		perPeer := make([]string, len(s.rest))
		for i, r := range s.rest {
			// Peers i, i+nodes, i+2·nodes, … are on node i.
			on := (s.peers - i + len(s.rest) - 1) / len(s.rest)
			perPeer[i] = fmt.Sprintf("%.1f", float64(r.rss-base[i].rss)/float64(on)/1024)
		}
		fmt.Fprintf(&b, "| %d | %.1f s (+%d) | %s | %s KiB | %s MB | %s | %s |\n", s.peers, s.register.Seconds(), s.added,
			perNode(s.rest, restRSS), strings.Join(perPeer, " / "), perNode(s.heap, strconv.Itoa), perNode(s.rest, restCPU),
			strings.ReplaceAll(s.loadAvg, " ", " / "))
	}
	b.WriteString("\nRSS per peer is above the node's baseline, per peer registered with the node; each node also " +
		"holds the other nodes' interest in their peers' subjects.\n")
	b.WriteString("\nCoordinations, " + strconv.Itoa(rvInFlight) + " asks in flight (nodes' CPU: the three together, " +
		"% of one core; the load generator's, its processes together, beside it: what of the " +
		strconv.Itoa(runtime.NumCPU()) + " cores the nodes did not have):\n\n| peers | across nodes: coordinations/s | " +
		"nodes' CPU / load generator's | ask to both punches, p50 / p99 | on one node: coordinations/s | " +
		"nodes' CPU / load generator's | ask to both punches, p50 / p99 |\n|---|---|---|---|---|---|---|\n")
	for _, s := range steps {
		fmt.Fprintf(&b, "| %d | %.0f | %.0f%% (%v each) / %.0f%% | %v | %.0f | %.0f%% (%v each) / %.0f%% | %v |\n", s.peers,
			s.cross.rate, s.cross.serverCPU, s.cross.cpuPer, s.cross.loadCPU, s.cross.all,
			s.same.rate, s.same.serverCPU, s.same.cpuPer, s.same.loadCPU, s.same.all)
	}
	b.WriteString("\nOne ask at a time, ask to both punches:\n\n| peers | on one node, p50 / p99 | across nodes, p50 / p99 | " +
		"added, p50 / p99 | asks of each kind |\n|---|---|---|---|---|\n")
	for _, s := range steps {
		p50, p99 := s.addedLatency()
		fmt.Fprintf(&b, "| %d | %v | %v | %v / %v | %d |\n", s.peers, s.lat.same, s.lat.cross, p50, p99,
			min(s.lat.same.n, s.lat.cross.n))
	}
	b.WriteString(clusterTargets(steps))
	return b.String()
}

// clusterTargets states issue 18's latency targets met or missed, at the
// worst step.
func clusterTargets(steps []clusterStep) string {
	var worst50, worst99 time.Duration
	for _, s := range steps {
		p50, p99 := s.addedLatency()
		worst50, worst99 = max(worst50, p50), max(worst99, p99)
	}
	return fmt.Sprintf("\nTargets (issue 18), latency added by a connect across nodes on loopback, the worst step:\n\n"+
		"- under %v at p50: %v, %s\n- under %v at p99: %v, %s\n",
		clusterTargetP50, worst50, metOrNot(worst50 < clusterTargetP50), clusterTargetP99, worst99, metOrNot(worst99 < clusterTargetP99))
}

// nodeProfiler saves the nodes' profiles in dir, with WARREN_BENCH_PPROF
// set; without, it does nothing.
type nodeProfiler struct {
	tb    testing.TB
	dir   string
	bin   string   // warrenBin before the nodes started
	addrs []string // each node's pprof listener
}

// profileNodes has the nodes started next run the pprof variant of warren,
// if WARREN_BENCH_PPROF names a directory.
func profileNodes(tb testing.TB) *nodeProfiler {
	p := &nodeProfiler{tb: tb, dir: os.Getenv("WARREN_BENCH_PPROF"), bin: warrenBin}
	if p.dir != "" {
		tb.Setenv("WARREN_PPROF", "cpu")
		warrenBin = pprofVariant(tb)
		tb.Cleanup(func() { warrenBin = p.bin })
	}
	return p
}

// started learns the nodes' pprof listeners, and puts warrenBin back.
func (p *nodeProfiler) started(nodes []*rvNode) {
	if p.dir == "" {
		return
	}
	warrenBin = p.bin
	for _, n := range nodes {
		p.addrs = append(p.addrs, n.p.waitOutput(p.tb, regexp.MustCompile(`pprof listening on (\S+)`), 5*time.Second))
	}
}

// heap saves each node's heap and goroutine profiles, tagged.
func (p *nodeProfiler) heap(tag string) {
	for i, addr := range p.addrs {
		for _, kind := range []string{"heap", "goroutine"} {
			file := filepath.Join(p.dir, fmt.Sprintf("cluster-%s-n%d.%s.pb.gz", tag, i, kind))
			if err := saveProfile(addr, "/debug/pprof/"+kind, file); err != nil {
				p.tb.Error(err)
			}
		}
	}
}

// cpu starts each node's CPU profile over the next d, tagged; the
// profiles are saved in the background, and before the benchmark ends.
func (p *nodeProfiler) cpu(tag string, d time.Duration) {
	var wg sync.WaitGroup
	for i, addr := range p.addrs {
		wg.Go(func() {
			file := filepath.Join(p.dir, fmt.Sprintf("cluster-%s-n%d.cpu.pb.gz", tag, i))
			if err := saveProfile(addr, fmt.Sprintf("/debug/pprof/profile?seconds=%d", int(d.Seconds())), file); err != nil {
				p.tb.Error(err)
			}
		})
	}
	p.tb.Cleanup(wg.Wait)
}
