package link

import (
	"crypto/tls"
	"io"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/warren-p2p/warren/internal/benchtest"
)

// BenchmarkStream is one stream of a link over loopback TCP, one
// direction: the whole stack a forward's bytes go through.
func BenchmarkStream(b *testing.B) {
	s, r := streamPair(b)
	benchtest.Stream(b, s, r)
}

// BenchmarkStreamRoundTrip is the latency of a 64-byte request and its
// echo over a link's stream; BenchmarkTCPRoundTrip is its baseline.
func BenchmarkStreamRoundTrip(b *testing.B) {
	s, r := streamPair(b)
	benchtest.RoundTrip(b, s, r, 64)
}

func BenchmarkTCPRoundTrip(b *testing.B) {
	a, c := tcpPairs(b, 1)
	benchtest.RoundTrip(b, a[0], c[0], 64)
}

// BenchmarkTLS is the baseline for BenchmarkStream: the same loopback TCP
// with only the link's TLS 1.3 on it.
func BenchmarkTLS(b *testing.B) {
	aID, bID := newIdentity(b), newIdentity(b)
	a, c := tcpPairs(b, 1)
	client := tls.Client(a[0], aID.TLSConfig(bID.Public))
	server := tls.Server(c[0], bID.TLSConfig(aID.Public))
	errc := make(chan error, 1)
	go func() { errc <- server.Handshake() }()
	if err := client.Handshake(); err != nil {
		b.Fatal(err)
	}
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
	benchtest.Stream(b, client, server)
}

// BenchmarkTCP is the raw loopback path below both.
func BenchmarkTCP(b *testing.B) {
	a, c := tcpPairs(b, 1)
	benchtest.Stream(b, a[0], c[0])
}

// BenchmarkQUICStream is BenchmarkStream over a link whose candidate is a
// QUIC connection on loopback: the UDP link's whole stack.
func BenchmarkQUICStream(b *testing.B) {
	ra, rb := quicLinks(b)
	s, r := linkStream(b, ra, rb)
	benchtest.Stream(b, s, r)
}

// BenchmarkUDPLinkVsTCP streams through a link over QUIC (the UDP link)
// and through one over TCP (the direct TCP link, its baseline) in the
// same run, alternating rounds so that the machine's load falls on both
// alike, and reports each link's throughput and process CPU per GiB and
// the UDP link's ratios to TCP's (issue 16: throughput at least 0.7,
// CPU per GiB at most 1.3). CPU counts both ends, which share the
// process, as they share the machine. A bare QUIC stream (no link above)
// takes its turn too: what the UDP link costs that QUIC alone does not.
func BenchmarkUDPLinkVsTCP(b *testing.B) {
	tcpW, tcpR := streamPair(b)
	ra, rb := quicLinks(b)
	udpW, udpR := linkStream(b, ra, rb)
	aID, bID := newIdentity(b), newIdentity(b)
	qa, qb := quicPins(b, aID, bID, bID.Public, aID.Public, nil)
	if qa.err != nil || qb.err != nil {
		b.Fatal(qa.err, qb.err)
	}
	runs := [3]*streamRun{{w: tcpW, r: tcpR}, {w: udpW, r: udpR}, {w: qa.conn, r: qb.conn}}
	b.SetBytes(int64(len(runs)) * benchtest.Chunk)
	b.ResetTimer()
	for left := b.N; left > 0; left -= benchRound {
		n := min(left, benchRound)
		for _, run := range runs {
			if err := run.round(n); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.StopTimer()
	tcp, udp, quic := runs[0], runs[1], runs[2]
	b.ReportMetric(tcp.mbps(), "tcp-MB/s")
	b.ReportMetric(udp.mbps(), "udp-MB/s")
	b.ReportMetric(quic.mbps(), "quic-MB/s")
	b.ReportMetric(udp.mbps()/tcp.mbps(), "udp/tcp-throughput")
	b.ReportMetric(udp.best/tcp.best, "udp/tcp-best-round")
	b.ReportMetric(medianRatio(udp, tcp), "udp/tcp-median-round")
	if tcp.cpu > 0 {
		b.ReportMetric(tcp.cpuPerGiB(), "tcp-cpu-s/GiB")
		b.ReportMetric(udp.cpuPerGiB(), "udp-cpu-s/GiB")
		b.ReportMetric(quic.cpuPerGiB(), "quic-cpu-s/GiB")
		b.ReportMetric(udp.cpuPerGiB()/tcp.cpuPerGiB(), "udp/tcp-cpu")
	}
	checkUDPLink(b, udp, tcp)
}

// The bounds BenchmarkUDPLinkVsTCP checks with WARREN_BENCH_CHECK=1 (as
// .ci/run sets it). Issue 16's targets (throughput at least 0.7 of the TCP
// link's, CPU per GiB at most 1.3×) are missed today, so these are
// regression guards. Throughput is compared round by round: on the 2
// shared cores the UDP link, with more goroutines per byte, loses more of
// its share than the TCP link when other processes compete, so the whole
// run's ratio went from 0.58 down to 0.23 with the load (28 runs at load
// average 4–12). The best rounds' ratio stayed within 0.33–0.40 (9 runs
// at 6–12) but fell to 0.25 when one TCP round was an outlier; the median
// of each UDP round over the TCP round beside it is what is checked. CPU
// per GiB measured 1.9–3.0×. A change that costs the UDP link a third of
// its throughput, or a sixth more CPU per GiB than its worst run, crosses
// them; the noise did not.
const (
	udpMinRoundRatio = 0.25
	udpMaxCPU        = 3.5
	// checkMinChunks is the least a run must carry for its ratios to be
	// checked: testing runs every benchmark once with b.N = 1 first, and
	// one 64 KiB chunk measures only the pipeline's start.
	checkMinChunks = 8 * benchRound
)

// checkUDPLink fails b if the UDP link's ratios to the TCP link's cross
// their bounds, when WARREN_BENCH_CHECK=1 asks for it.
func checkUDPLink(b *testing.B, udp, tcp *streamRun) {
	if os.Getenv("WARREN_BENCH_CHECK") != "1" || b.N < checkMinChunks {
		return
	}
	if r := medianRatio(udp, tcp); r < udpMinRoundRatio {
		b.Fatalf("UDP link's rounds at a median %.2f× the TCP link's rounds beside them (best rounds %.0f and %.0f MB/s), "+
			"want at least %.2f× (a regression guard; issue 16's target is 0.7×)", r, udp.best, tcp.best, udpMinRoundRatio)
	}
	if tcp.cpu <= 0 {
		return
	}
	if r := udp.cpuPerGiB() / tcp.cpuPerGiB(); r > udpMaxCPU {
		b.Fatalf("UDP link %.2f s of CPU per GiB, TCP link %.2f s in the same run: %.2f×, want at most %.1f× "+
			"(a regression guard; issue 16's target is 1.3×)", udp.cpuPerGiB(), tcp.cpuPerGiB(), r, udpMaxCPU)
	}
}

// benchRound is how many chunks one link carries before the other's turn:
// 16 MiB, long enough that the pipeline's start and drain do not count.
const benchRound = 256

// streamRun is one link's share of BenchmarkUDPLinkVsTCP.
type streamRun struct {
	w     io.Writer
	r     io.Reader
	bytes int64
	wall  time.Duration
	cpu   time.Duration
	best  float64   // MB/s of the fastest round
	rates []float64 // MB/s of each round
}

// medianRatio is the median of each of u's rounds over t's round of the
// same turn.
func medianRatio(u, t *streamRun) float64 {
	var rs []float64
	for i := range min(len(u.rates), len(t.rates)) {
		rs = append(rs, u.rates[i]/t.rates[i])
	}
	if len(rs) == 0 {
		return 0
	}
	slices.Sort(rs)
	return rs[len(rs)/2]
}

// round writes n chunks through w while r is drained, and adds the bytes,
// the time and the process's CPU time it took.
func (s *streamRun) round(n int) error {
	total := int64(n) * benchtest.Chunk
	done := make(chan error, 1)
	buf := make([]byte, benchtest.Chunk)
	cpu0, start := processCPU(), time.Now()
	go func() {
		_, err := io.CopyBuffer(io.Discard, io.LimitReader(s.r, total), make([]byte, 32<<10))
		done <- err
	}()
	var werr error
	for range n {
		if _, werr = s.w.Write(buf); werr != nil {
			break
		}
	}
	if err := <-done; werr == nil {
		werr = err
	}
	wall := time.Since(start)
	s.wall += wall
	rate := float64(total) / 1e6 / wall.Seconds()
	s.best = max(s.best, rate)
	s.rates = append(s.rates, rate)
	s.cpu += processCPU() - cpu0
	s.bytes += total
	return werr
}

func (s *streamRun) mbps() float64 { return float64(s.bytes) / 1e6 / s.wall.Seconds() }

func (s *streamRun) cpuPerGiB() float64 { return s.cpu.Seconds() / (float64(s.bytes) / (1 << 30)) }
