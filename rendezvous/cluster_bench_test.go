package rendezvous

import (
	"context"
	"runtime"
	"slices"
	"testing"
	"time"
)

// BenchmarkClusterConnect measures a connect's latency, from the asker's
// connect to both sides' punch instructions, between two peers of one
// node and between peers of two nodes of a three-node cluster on
// loopback: what a cross-node connect adds (two NATS hops for the ask and
// its answer, one for the other side's instruction).
//
//	go test ./rendezvous -run '^$' -bench BenchmarkClusterConnect -benchtime 2000x
func BenchmarkClusterConnect(b *testing.B) {
	nodes := startCluster(b, 3, ServerConfig{})
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	peers := startPeers(b, ctx, nodes, 12)
	for _, tc := range []struct {
		name  string
		cross bool
	}{{"same-node", false}, {"cross-node", true}} {
		b.Run(tc.name, func(b *testing.B) {
			var pairs [][2]*testPeer
			// One direction per pair: the other side's ask within
			// PairWindow would be dropped as the same session.
			for i, a := range peers {
				for _, c := range peers[i+1:] {
					if (a.home != c.home) == tc.cross {
						pairs = append(pairs, [2]*testPeer{a, c})
					}
				}
			}
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := range b.N {
				pr := pairs[i%len(pairs)]
				start := time.Now()
				if err := pr[0].c.Connect(pr[1].key); err != nil {
					b.Fatal(err)
				}
				for _, p := range pr {
					select {
					case <-p.got:
					case <-time.After(5 * time.Second):
						b.Fatalf("no punch (%s)", tc.name)
					}
				}
				lat = append(lat, time.Since(start))
			}
			b.StopTimer()
			slices.Sort(lat)
			q := func(f float64) float64 { return float64(lat[int(f*float64(len(lat)-1))].Microseconds()) / 1000 }
			b.ReportMetric(q(0.5), "p50-ms")
			b.ReportMetric(q(0.99), "p99-ms")
		})
	}
}

// BenchmarkClusterPeerMemory is the heap one registered peer costs, the
// whole process counted (the peers' own ends too), on a single server and
// on one node of a three-node cluster whose NATS runs in this process:
// the difference is what clustering adds per peer, its subscription on
// the node and its interest on the other two.
//
//	go test ./rendezvous -run '^$' -bench BenchmarkClusterPeerMemory -benchtime 2000x
func BenchmarkClusterPeerMemory(b *testing.B) {
	for _, clustered := range []bool{false, true} {
		name := "single"
		if clustered {
			name = "cluster"
		}
		b.Run(name, func(b *testing.B) {
			if b.N > 4000 {
				b.Skip("more peers than file descriptors allow")
			}
			var srv *Server
			var addr string
			if clustered {
				nodes := startCluster(b, 3, ServerConfig{})
				srv, addr = nodes[0].srv, nodes[0].addr
			} else {
				srv, addr = benchServer(b, ServerConfig{})
			}
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			registerPeers(b, srv, addr)
			// The last subscriptions reach the other nodes a moment later.
			time.Sleep(300 * time.Millisecond)
			runtime.GC()
			runtime.GC()
			runtime.ReadMemStats(&after)
			b.ReportMetric(float64(after.HeapInuse-before.HeapInuse)/float64(b.N), "heap-B/peer")
		})
	}
}
