package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/warren-p2p/warren/daemon"
)

// BenchmarkIdleCost links a hub daemon to idlePeers daemons, each with the
// hub as its only peer, and measures the hub's resident memory and CPU
// time over idleWindow with no traffic, and the same for the peers, which
// are daemons with exactly one connected peer.
func BenchmarkIdleCost(b *testing.B) {
	w := newWorld(b, localhost{}, hostPort("127.0.0.1", freePort(b, localhost{})))
	hubKey := w.keygen("hub")
	// The daemons run at the default log level, as deployed: idle, they
	// log nothing.
	common := fmt.Sprintf("[rendezvous]\naddress = %q\npublic_key = %q\n", w.rvAddr, w.rvKey)
	hubAdmin := hostPort("127.0.0.1", freePort(b, localhost{}))
	hubCfg := fmt.Sprintf("key_file = \"hub.key\"\nadmin_listen = %q\n%s", hubAdmin, common)
	type spoke struct {
		name, admin string
		proc        *process
	}
	spokes := make([]spoke, idlePeers)
	for i := range spokes {
		s := &spokes[i]
		s.name = fmt.Sprintf("peer%02d", i+1)
		s.admin = hostPort("127.0.0.1", freePort(b, localhost{}))
		hubCfg += fmt.Sprintf("\n[[peers]]\nname = %q\npublic_key = %q\n", s.name, w.keygen(s.name))
	}
	hub := start(b, localhost{}, "hub", "up", "-c", writeFile(b, w.dir, "hub.toml", hubCfg))
	for i := range spokes {
		s := &spokes[i]
		cfg := fmt.Sprintf("key_file = \"%s.key\"\nadmin_listen = %q\n%s\n[[peers]]\nname = \"hub\"\npublic_key = %q\n",
			s.name, s.admin, common, hubKey)
		s.proc = start(b, localhost{}, s.name, "up", "-c", writeFile(b, w.dir, s.name+".toml", cfg))
	}
	st := waitStatus(b, localhost{}, hubAdmin, 2*linkWait, fmt.Sprintf("%d peers connected", idlePeers), func(st daemon.Status) bool {
		n := 0
		for _, p := range st.Peers {
			if p.State == daemon.StateConnected {
				n++
			}
		}
		return n == idlePeers
	})
	paths := map[string]int{}
	for _, p := range st.Peers {
		paths[p.Path]++
	}
	for _, s := range spokes {
		waitPeer(b, localhost{}, s.admin, "hub", daemon.StateConnected, linkWait)
	}
	time.Sleep(idleSettle)

	procs := []*process{hub}
	for _, s := range spokes {
		procs = append(procs, s.proc)
	}
	before := make([]procUsage, len(procs))
	peak := make([]int64, len(procs))
	for i, p := range procs {
		before[i] = p.usage(b)
		peak[i] = before[i].RSS
	}
	// RSS sampled every second: a daemon that grows while idle shows in
	// its peak, not only at the window's end.
	began := time.Now()
	for time.Since(began) < idleWindow {
		time.Sleep(time.Second)
		for i, p := range procs {
			peak[i] = max(peak[i], p.usage(b).RSS)
		}
	}
	window := time.Since(began)
	after := make([]procUsage, len(procs))
	for i, p := range procs {
		after[i] = p.usage(b)
		peak[i] = max(peak[i], after[i].RSS)
	}
	// Every link must have stayed up through the window for the figures
	// to be those of 10 connected peers.
	st, err := status(context.Background(), localhost{}, hubAdmin)
	if err != nil {
		b.Fatal(err)
	}
	for _, p := range st.Peers {
		if p.State != daemon.StateConnected {
			b.Fatalf("peer %s is %s after the window", p.Name, p.State)
		}
	}

	cpu := func(i int) time.Duration { return after[i].CPU - before[i].CPU }
	pct := func(d time.Duration) float64 { return 100 * d.Seconds() / window.Seconds() }
	// The peers: the median and the worst of the daemons with one peer,
	// each figure on its own.
	var rss0, rss, cpus []float64
	for i := 1; i < len(procs); i++ {
		rss0 = append(rss0, float64(before[i].RSS))
		rss = append(rss, float64(peak[i]))
		cpus = append(cpus, cpu(i).Seconds())
	}
	mid := func(xs []float64) float64 { return slices.Sorted(slices.Values(xs))[len(xs)/2] }
	worst := slices.Max[[]float64]
	b.ReportMetric(float64(peak[0])/(1<<20), "hub-RSS-MiB")
	b.ReportMetric(pct(cpu(0)), "hub-CPU-%")
	b.ReportMetric(worst(rss)/(1<<20), "one-peer-RSS-MiB")

	var md strings.Builder
	fmt.Fprintf(&md, "## Idle cost\n\nA hub daemon linked to %d peers (each a daemon with the hub as its only peer), "+
		"on loopback, links %s, no traffic: VmRSS (the peak of one reading a second) and CPU time (user + system) "+
		"over %.0f s (in /proc's 10 ms ticks), starting %v after the last link came up. Default config and log "+
		"level; the links' keepalive "+
		"runs every 15 s. The peers' row is the median of the ten (the worst in brackets). Targets: a daemon with one "+
		"connected peer at most %d MiB RSS (frp's figure), with %d peers under %d MiB.\n\n"+
		"| daemon | connected peers | RSS at start | peak RSS | CPU over the window | CPU | target |\n|---|---|---|---|---|---|---|\n",
		idlePeers, pathList(paths), window.Seconds(), idleSettle, onePeerRSSTarget>>20, idlePeers, tenPeersRSSTarget>>20)
	fmt.Fprintf(&md, "| hub | %d | %s | %s | %.2f s | %.3f%% | %d MiB: %s |\n", idlePeers, mib(before[0].RSS), mib(peak[0]),
		cpu(0).Seconds(), pct(cpu(0)), tenPeersRSSTarget>>20, metOrNot(peak[0] < tenPeersRSSTarget))
	fmt.Fprintf(&md, "| peer: median [worst] | 1 | %s [%s] | %s [%s] | %.2f s [%.2f s] | %.3f%% [%.3f%%] | %d MiB: %s |\n",
		mib(int64(mid(rss0))), mib(int64(worst(rss0))), mib(int64(mid(rss))), mib(int64(worst(rss))), mid(cpus), worst(cpus),
		100*mid(cpus)/window.Seconds(), 100*worst(cpus)/window.Seconds(), onePeerRSSTarget>>20,
		metOrNot(worst(rss) <= onePeerRSSTarget))
	b.Log("\n" + md.String())
	benchDoc.add(benchIdle, md.String())
}

// pathList formats link path counts: "direct-tcp ×10".
func pathList(paths map[string]int) string {
	var s []string
	for p, n := range paths {
		s = append(s, fmt.Sprintf("%s ×%d", p, n))
	}
	slices.Sort(s)
	return strings.Join(s, ", ")
}
