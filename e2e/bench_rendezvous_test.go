package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/warren-p2p/warren/identity"
)

// Issue 7's rendezvous targets, at rvSteps' last count.
const (
	rvTargetRSS  = 200 << 20 // bytes of server RSS with 10,000 peers registered
	rvTargetIdle = 5.0       // % of one core, the same peers only keeping alive
	rvTargetRate = 500       // connect coordinations per second
)

// rvSteps are the peer counts measured, each reached by adding peers to
// the previous step's.
var rvSteps = []int{1000, 2000, 5000, 10000}

const (
	// rvRamp bounds registrations in flight: enough to keep the server's
	// cores busy with handshakes, few enough that none nears the server's
	// 10 s handshake timeout.
	rvRamp = 64
	// rvSettle lets the last registrations' NAT reports and first pings
	// pass before the rest window starts.
	rvSettle = 2 * time.Second
	// rvRest is the rest window: peers only ping.
	rvRest = 10 * time.Second
	// rvCoord is the coordination window.
	rvCoord = 5 * time.Second
	// rvInFlight is how many connect asks are outstanding at once: enough
	// that the server, not the round trip, sets the pace.
	rvInFlight = 256
	// rvAskTimeout gives up on an ask whose punches did not both arrive.
	rvAskTimeout = 5 * time.Second
	// rvPingInterval is rendezvous.Client's default keepalive, which
	// daemons use.
	rvPingInterval = 15 * time.Second
	// rvWheelTick is the ping wheel's resolution.
	rvWheelTick = 100 * time.Millisecond
	// rvSpareFDs are the file descriptors a process needs besides one per
	// peer connection.
	rvSpareFDs = 4096
)

// rvStep is what one step measured.
type rvStep struct {
	peers       int
	added       int
	register    time.Duration // to register the added peers
	registerCPU time.Duration // server CPU time spent meanwhile
	rss         int64         // server VmRSS at the end of the rest window
	heap        int           // server live heap (MB) at its last GC before that
	idle        float64       // server CPU, % of one core, over the rest window
	coord       rvCoordResult
	rssAfter    int64 // server VmRSS after the coordination window
	heapAfter   int   // live heap (MB) at the last GC by then
}

// BenchmarkRendezvousScale registers 1,000, 2,000, 5,000 and then 10,000
// simulated peers with one `warren rendezvous` process and measures, at
// each count, how long the added peers took to register, the server's RSS
// and CPU while the peers only keep alive, and how many connect
// coordinations per second it sustains between distinct pairs.
//
// The peers are a lean load generator in a worker process (rvLoad), not
// 10,000 rendezvous.Clients: it speaks the same protocol over the same TLS and
// frames (one connection per peer, its own Ed25519 key, register with LAN
// endpoints, a NAT report, the client's ping schedule), but with one
// goroutine per peer instead of two, one timer wheel for all pings instead
// of a ticker per peer, and only a frame's type and session decoded. The
// generator shares the two cores with the server; the less it spends, the
// more the server's figures are the server's own.
func BenchmarkRendezvousScale(b *testing.B) {
	host := gctraceHost{}
	most := rvSteps[len(rvSteps)-1]
	// Before the server starts, which inherits the limit and holds a
	// connection for every peer.
	if err := raiseFDLimit(uint64(most) + rvSpareFDs); err != nil {
		b.Fatalf("the server's peers: %v", err)
	}
	// One machine plays 10,000 peers: the per-source limits would stop it.
	w := newWorld(b, host, "127.0.0.1:"+freePort(b, host), "-limits=false")
	serverKey, err := identity.ParsePublicKey(w.rvKey)
	if err != nil {
		b.Fatal(err)
	}
	// Keys and certificates first, so that making them does not compete
	// with the server during the measurements.
	load := newRVLoad(b, []string{w.rvAddr}, serverKey, most)
	server := []*process{w.rv}

	// Baseline: the same server process with no peers.
	base := atRest(b, server, rvRest/2)[0]
	baseRSS, baseIdle := base.rss, base.cpu
	b.Logf("baseline: no peers, RSS %s, CPU %.1f%% of one core", mib(baseRSS), baseIdle)

	// Registrations first, every step: their memory is what the targets
	// are about, and a coordination window before a reading would leave
	// its sessions (kept a minute for relays) in it.
	var steps []rvStep
	for _, n := range rvSteps {
		st := rvStep{peers: n, added: n - load.count()}
		before := w.rv.usage(b)
		st.register = load.grow(n)
		st.registerCPU = w.rv.usage(b).CPU - before.CPU

		rest := atRest(b, server, rvRest)[0]
		st.rss, st.idle = rest.rss, rest.cpu
		st.heap = lastLiveHeap(w.rv.output())
		b.Logf("%d peers: +%d registered in %v (server CPU %v), RSS %s (live heap %d MB), CPU at rest %.1f%%; loadavg %s",
			n, st.added, st.register.Round(time.Millisecond), st.registerCPU, mib(st.rss), st.heap, st.idle, loadAvg())
		steps = append(steps, st)
	}
	// Then coordinations among the first n peers, for each step's n, with
	// all of them registered.
	for i := range steps {
		st := &steps[i]
		st.coord = load.coordinate(b, server, rvWindow{among: st.peers, inFlight: rvInFlight, length: rvCoord, pairs: pairsSame})
		st.rssAfter, st.heapAfter = w.rv.usage(b).RSS, lastLiveHeap(w.rv.output())
		b.Logf("%d peers: %s; then RSS %s (live heap %d MB)", st.peers, st.coord, mib(st.rssAfter), st.heapAfter)

		tag := "@" + strconv.Itoa(st.peers)
		b.ReportMetric(st.register.Seconds(), "register-s"+tag)
		b.ReportMetric(float64(st.rss)/(1<<20), "rss-MiB"+tag)
		b.ReportMetric(float64(st.rss-baseRSS)/float64(st.peers)/1024, "rss-KiB/peer"+tag)
		b.ReportMetric(st.idle, "idle-cpu%"+tag)
		b.ReportMetric(st.coord.rate, "coord/s"+tag)
	}
	load.check()
	b.ReportMetric(float64(baseRSS)/(1<<20), "rss-MiB@0")
	benchDoc.add(benchRendezvous, rvReport(steps, baseRSS, baseIdle))
}

// rvReport is the report's section.
func rvReport(steps []rvStep, baseRSS int64, baseIdle float64) string {
	var b strings.Builder
	fmt.Fprintf(&b, "## Rendezvous scale\n\nOne `warren rendezvous` process on loopback; simulated peers in a load generator "+
		"process, each with its own Ed25519 key and TLS control connection: register (%d at a time), NAT report, ping "+
		"every %v as daemons do. At each count: the added peers' registration time; the server's RSS and CPU over %v "+
		"with peers only keeping alive. Then, once all are registered, for each count n: %v of connect coordinations "+
		"between distinct pairs among the first n peers, %d asks in flight (a coordination: one `connect`, and the "+
		"server's `punch` received by both peers). The load generator shares "+
		"the %d cores with the server. Baseline, same run, no peers: RSS %s, CPU %.1f%% of one core.\n\n",
		rvRamp, rvPingInterval, rvRest, rvCoord, rvInFlight, runtime.NumCPU(), mib(baseRSS), baseIdle)
	b.WriteString("| peers | register time | RSS | RSS per peer | live heap | CPU at rest | coordinations/s | " +
		"server CPU coordinating | ask to both punches, p50 / p99 |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, s := range steps {
		fmt.Fprintf(&b, "| %d | %.1f s (+%d, %.2f ms server CPU each) | %s | %.1f KiB | %d MB | %.1f%% | %.0f | "+
			"%.0f%% (%v each) | %v / %v |\n",
			s.peers, s.register.Seconds(), s.added, s.registerCPU.Seconds()*1000/float64(s.added), mib(s.rss),
			float64(s.rss-baseRSS)/float64(s.peers)/1024, s.heap, s.idle, s.coord.rate, s.coord.serverCPU,
			s.coord.cpuPer, s.coord.all.p50, s.coord.all.p99)
	}
	last := steps[len(steps)-1]
	minRate := last.coord.rate
	for _, s := range steps {
		minRate = min(minRate, s.coord.rate)
	}
	fmt.Fprintf(&b, "\nCPU percentages are of one core. RSS per peer is above the baseline. Live heap is the server's "+
		"at its last GC before the RSS reading (GODEBUG=gctrace=1). Coordinations leave sessions behind: the server "+
		"keeps each for relays for a minute, and Go maps keep their largest size; after the last window (%d "+
		"coordinations in it), RSS was %s. "+
		"Where a peer's memory goes, in process: `go test ./rendezvous -run '^$' -bench 'Server(Peer|Session)Memory'`."+
		"\n\nTargets (issue 7), at %d peers:\n\n"+
		"- RSS under %s: %s, %s\n- CPU at rest under %.0f%% of one core: %.1f%%, %s\n"+
		"- at least %d coordinations/s: %.0f/s (lowest step %.0f/s), %s\n",
		last.coord.done, mib(last.rssAfter), last.peers,
		mib(rvTargetRSS), mib(last.rss), metOrNot(last.rss < rvTargetRSS),
		rvTargetIdle, last.idle, metOrNot(last.idle < rvTargetIdle),
		rvTargetRate, last.coord.rate, minRate, metOrNot(minRate >= rvTargetRate))
	return b.String()
}

// loadAvg returns the machine's load averages: it is shared, and they tell
// a slow window from a slow server.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "unknown"
}

func cpuPercent(cpu, over time.Duration) float64 { return 100 * cpu.Seconds() / over.Seconds() }

// restUsage is a process's RSS at the end of a rest window and its CPU
// over it, % of one core.
type restUsage struct {
	rss int64
	cpu float64
}

// atRest lets the last registrations' NAT reports and first pings pass
// (rvSettle), then reads each process's usage over a window of d.
func atRest(tb testing.TB, ps []*process, d time.Duration) []restUsage {
	tb.Helper()
	time.Sleep(rvSettle)
	before := make([]procUsage, len(ps))
	for i, p := range ps {
		before[i] = p.usage(tb)
	}
	time.Sleep(d)
	rest := make([]restUsage, len(ps))
	for i, p := range ps {
		u := p.usage(tb)
		rest[i] = restUsage{rss: u.RSS, cpu: cpuPercent(u.CPU-before[i].CPU, d)}
	}
	return rest
}

// gctraceHost is this host, with the Go runtime's GC trace on in the
// programs it starts: the server's live heap next to its RSS tells the
// heap from what the runtime holds besides.
type gctraceHost struct{ localhost }

func (h gctraceHost) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := h.localhost.Command(ctx, name, args...)
	godebug := "gctrace=1"
	if v := os.Getenv("GODEBUG"); v != "" {
		godebug = v + "," + godebug
	}
	cmd.Env = append(os.Environ(), "GODEBUG="+godebug)
	return cmd
}

var gctraceLine = regexp.MustCompile(`gc \d+ @[\d.]+s \d+%: .* \d+->\d+->(\d+) MB`)

// lastLiveHeap returns the live heap (MB) of the last GC trace line in
// out, or -1 if there is none.
func lastLiveHeap(out string) int {
	all := gctraceLine.FindAllStringSubmatch(out, -1)
	if len(all) == 0 {
		return -1
	}
	n, _ := strconv.Atoi(all[len(all)-1][1])
	return n
}
