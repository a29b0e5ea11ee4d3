package e2e

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warren-p2p/warren/daemon"
)

// The benchmarks in this file (and BenchmarkIdleCost, in
// bench_idle_test.go) measure what a connection and a peer cost: opening
// connections through a forward, holding many idle, and a daemon linked
// to peers with no traffic. They run on loopback (localhost{}):
// what they measure is the daemons' own cost per connection and per peer,
// which NATs between the machines would not change, and loopback leaves
// the 2 shared cores to the daemons instead of the lab's kernel NATs.
//
//	go test ./e2e -run '^$' -bench 'BenchmarkOpening|BenchmarkIdleStreams|BenchmarkIdleCost' -benchtime 1x -timeout 20m
//
// WARREN_BENCH_PPROF=DIR makes BenchmarkOpening and BenchmarkIdleStreams
// run a variant of the daemon with a pprof listener (e2e/testdata/pprof)
// and save both daemons' profiles in DIR: CPU while the connections open,
// heap with the idle streams open. BenchmarkIdleStreams then also reports
// heap, goroutine stacks and goroutines per stream.

// Settings of the stream benchmarks.
const (
	openingConns   = 1000            // BenchmarkOpening's sequential connections
	streamsOpeners = 64              // concurrent dialers while BenchmarkIdleStreams opens its streams
	streamsSettle  = 2 * time.Second // after opening, before the memory is read
	idlePeers      = 10              // BenchmarkIdleCost's hub's peers
	idleSettle     = 5 * time.Second // after the last link is up, before the window opens
	idleWindow     = 60 * time.Second
)

// Issue 7's targets.
const (
	openingTarget     = 700 * time.Millisecond // 1,000 sequential connections (frp: 1.4 s)
	perStreamTarget   = 10 << 10               // bytes per idle forwarded connection, each side (frp: 20–36 KiB; issue 16)
	onePeerRSSTarget  = 17 << 20               // a daemon with one connected peer (frp's figure)
	tenPeersRSSTarget = 25 << 20               // with 10 peers
)

// BenchmarkOpening opens openingConns connections through a forward, one
// after another, each with one echo, against the same connections made
// directly to the echo service in the same run.
func BenchmarkOpening(b *testing.B) {
	echo := startEchoServer(b, localhost{})
	target := hostPort("127.0.0.1", echo)
	p, fwd, pprofAddrs := echoPair(b, target, "cpu")

	direct := openSequentially(b, localhost{}, target, openingConns)
	l0, o0 := p.client.usage(b), p.server.usage(b)
	var profiling sync.WaitGroup
	if dir := os.Getenv("WARREN_BENCH_PPROF"); dir != "" {
		for i, side := range streamsSides {
			profiling.Go(func() {
				if err := saveProfile(pprofAddrs[i], "/debug/pprof/profile?seconds=1",
					filepath.Join(dir, "opening-"+side+".cpu.pb.gz")); err != nil {
					b.Error(err)
				}
			})
		}
	}
	through := openSequentially(b, localhost{}, fwd, openingConns)
	l1, o1 := p.client.usage(b), p.server.usage(b)
	profiling.Wait()
	// Both daemons' CPU time per connection: what the time is spent on
	// when one connection at a time leaves the cores idle in between.
	cpu := (l1.CPU - l0.CPU + o1.CPU - o0.CPU) / openingConns
	b.ReportMetric(direct.total.Seconds(), "direct-s")
	b.ReportMetric(through.total.Seconds(), "forward-s")
	b.ReportMetric(float64(through.p50.Microseconds()), "forward-p50-µs")
	b.ReportMetric(float64(through.p99.Microseconds()), "forward-p99-µs")
	b.ReportMetric(float64(cpu.Microseconds()), "daemons-CPU-µs/conn")

	us := func(d time.Duration) string { return fmt.Sprintf("%d µs", d.Microseconds()) }
	var md strings.Builder
	fmt.Fprintf(&md, "## Opening connections\n\n%d connections through the rdp example's forward on loopback (link "+
		"path %s), one after another: connect, echo 7 bytes, close. Baseline: the same %d connections straight to "+
		"the echo service (a separate process), no warren. The daemons log at info level, as deployed "+
		"(debug adds a line per connection on each side). Target: %d in under %.1f s (frp: 1.4 s).\n\n"+
		"| | %d connections | per connection p50 | p99 | daemons' CPU per connection (both) | target |\n"+
		"|---|---|---|---|---|---|\n",
		openingConns, p.link.Path, openingConns, openingConns, openingTarget.Seconds(), openingConns)
	fmt.Fprintf(&md, "| direct (baseline) | %.3f s | %s | %s | - | |\n", direct.total.Seconds(), us(direct.p50), us(direct.p99))
	fmt.Fprintf(&md, "| through warren | %.3f s | %s | %s | %s | %.1f s: %s |\n", through.total.Seconds(), us(through.p50),
		us(through.p99), us(cpu), openingTarget.Seconds(), metOrNot(through.total < openingTarget))
	b.Log("\n" + md.String())
	benchDoc.add(benchOpening, md.String())
}

// openingFigures is one run of sequential connections.
type openingFigures struct {
	total    time.Duration
	p50, p99 time.Duration // one connection: connect, echo, close
}

// openSequentially makes n connections to addr from m, one after another,
// each with one echo, after one more to warm up.
func openSequentially(t testing.TB, m machine, addr string, n int) openingFigures {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := oneEcho(ctx, m, addr); err != nil {
		t.Fatalf("warm-up echo through %s: %v", addr, err)
	}
	each := make([]time.Duration, 0, n)
	start := time.Now()
	for i := range n {
		t0 := time.Now()
		if err := oneEcho(ctx, m, addr); err != nil {
			t.Fatalf("connection %d of %d to %s: %v", i+1, n, addr, err)
		}
		each = append(each, time.Since(t0))
	}
	f := openingFigures{total: time.Since(start)}
	slices.Sort(each)
	f.p50, f.p99 = each[n/2], each[n*99/100]
	t.Logf("%d connections to %s: %v (p50 %v, p99 %v)", n, addr, f.total, f.p50, f.p99)
	return f
}

// streamsFigures is what BenchmarkIdleStreams measures for one count.
type streamsFigures struct {
	n             int
	path          string
	open          time.Duration
	before, after [2]procUsage // laptop, office
	prof          [2]memDelta  // with WARREN_BENCH_PPROF only
}

// perStream is a side's RSS growth per stream, in bytes.
func (f streamsFigures) perStream(side int) float64 {
	return float64(f.after[side].RSS-f.before[side].RSS) / float64(f.n)
}

var streamsSides = [2]string{"laptop", "office"}

// BenchmarkIdleStreams opens 1,000, then (with fresh daemons) 10,000
// connections through the rdp example's forward at once, each with one
// echo so that its stream reaches the service, and holds them idle. It
// reads both daemons' resident memory before and after, and the time the
// opening took.
func BenchmarkIdleStreams(b *testing.B) {
	var got []streamsFigures
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("streams=%d", n), func(b *testing.B) {
			f := measureIdleStreams(b, n)
			got = append(got, f)
			b.ReportMetric(f.open.Seconds(), "open-s")
			for side, name := range streamsSides {
				b.ReportMetric(f.perStream(side)/1024, name+"-KiB/stream")
				b.ReportMetric(float64(f.after[side].RSS)/(1<<20), name+"-RSS-MiB")
			}
			checkIdleStreams(b, f)
		})
	}
	if len(got) > 0 {
		benchDoc.add(benchStreams, streamsSection(got))
	}
}

// perStreamGuard is what BenchmarkIdleStreams checks with
// WARREN_BENCH_CHECK=1 (as .ci/run sets it) at 1,000 streams: issue 16's
// target (perStreamTarget) is missed today, so this is a regression guard
// above the figures measured under load (see streamsCalibration).
const perStreamGuard = 20 << 10

// streamsCalibration is the spread perStreamGuard was set beyond, for the
// failure message and the report.
const streamsCalibration = "laptop 14.5–16.1 KiB, office 11.0–12.5 KiB in 6 runs at load average 6–12"

// checkIdleStreams fails b if a side's memory per idle stream crosses
// perStreamGuard, when WARREN_BENCH_CHECK=1 asks for it. Only 1,000
// streams are checked: .ci/run opens no more.
func checkIdleStreams(b *testing.B, f streamsFigures) {
	if os.Getenv("WARREN_BENCH_CHECK") != "1" || f.n != 1000 {
		return
	}
	for side, name := range streamsSides {
		if got := f.perStream(side); got > perStreamGuard {
			b.Errorf("%s: %.1f KiB per idle stream at %d streams, want at most %d KiB (a regression guard over %s; "+
				"issue 16's target is %d KiB)", name, got/1024, f.n, perStreamGuard>>10, streamsCalibration, perStreamTarget>>10)
		}
	}
}

// measureIdleStreams runs one count of BenchmarkIdleStreams.
func measureIdleStreams(b *testing.B, n int) streamsFigures {
	profDir := os.Getenv("WARREN_BENCH_PPROF")
	echo := startEchoServer(b, localhost{})
	// Default settings: a link takes 10,000 streams as it comes (issue 16).
	p, fwd, pprofAddrs := echoPair(b, hostPort("127.0.0.1", echo), "heap")
	procs := [2]*process{p.client, p.server}
	f := streamsFigures{n: n, path: p.link.Path}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := oneEcho(ctx, localhost{}, fwd); err != nil {
		b.Fatalf("warm-up echo: %v", err)
	}
	time.Sleep(streamsSettle)
	var memBefore [2]memStats
	for i, pr := range procs {
		f.before[i] = pr.usage(b)
		if profDir != "" {
			memBefore[i] = readMemStats(b, pprofAddrs[i], "")
		}
	}

	conns, took, err := openIdle(ctx, localhost{}, fwd, n, streamsOpeners)
	// Closed before the daemons are stopped (cleanups run last first), so
	// that they shut down with nothing left to drain.
	b.Cleanup(func() { closeIdle(b, conns, p.clientAdmin) })
	if err != nil {
		b.Fatalf("opening %d streams: %v", n, err)
	}
	f.open = took
	waitStatus(b, localhost{}, p.clientAdmin, 30*time.Second, fmt.Sprintf("%d open streams", n), func(st daemon.Status) bool {
		return len(st.Peers) == 1 && st.Peers[0].Streams >= int64(n)
	})
	time.Sleep(streamsSettle)
	for i, pr := range procs {
		f.after[i] = pr.usage(b)
		if profDir != "" {
			name := filepath.Join(profDir, fmt.Sprintf("streams-%d-%s.heap.pb.gz", n, streamsSides[i]))
			f.prof[i] = readMemStats(b, pprofAddrs[i], name).minus(memBefore[i], n)
		}
	}
	b.Logf("%d streams over %s opened in %v; laptop RSS %s → %s (%.1f KiB/stream), office %s → %s (%.1f KiB/stream)",
		n, f.path, took, mib(f.before[0].RSS), mib(f.after[0].RSS), f.perStream(0)/1024,
		mib(f.before[1].RSS), mib(f.after[1].RSS), f.perStream(1)/1024)
	if profDir != "" {
		b.Logf("per stream: laptop %+v, office %+v", f.prof[0], f.prof[1])
	}
	return f
}

// streamsSection is the report's section on idle streams.
func streamsSection(got []streamsFigures) string {
	var md strings.Builder
	fmt.Fprintf(&md, "## Idle streams\n\nN connections opened at once (%d dialers) through the rdp example's forward "+
		"on loopback, each with one 7-byte echo so that its stream reaches the service (a separate process), then "+
		"held idle; fresh daemons for each N, default settings. Memory is VmRSS, read %v "+
		"after the last echo, against the same daemons before (linked, one connection made and closed); per stream "+
		"is the growth over N (the kernel's socket buffers are not in it). Target: at most %d KiB per idle forwarded connection on each side (frp: 30–36 KiB; "+
		"1,000 idle connections took its two sides from 17 MiB to 47 and 53 MiB).\n\n"+
		"| streams | link | time to open | side | RSS before | RSS after | per stream | target |\n|---|---|---|---|---|---|---|---|\n",
		streamsOpeners, streamsSettle, perStreamTarget>>10)
	for _, f := range got {
		for side, name := range streamsSides {
			fmt.Fprintf(&md, "| %d | %s | %.2f s | %s | %s | %s | %.2f KiB | %s |\n", f.n, f.path, f.open.Seconds(), name,
				mib(f.before[side].RSS), mib(f.after[side].RSS), f.perStream(side)/1024,
				metOrNot(f.perStream(side) <= perStreamTarget))
		}
	}
	if got[0].prof[0].goroutines != 0 {
		md.WriteString("\nGo runtime, per stream, after two forced GCs: WARREN_BENCH_PPROF ran the daemon built with a pprof " +
			"listener that records every allocation, so the RSS figures above are that build's (larger).\n\n" +
			"| streams | side | heap in use | goroutine stacks | goroutines |\n|---|---|---|---|---|\n")
		for _, f := range got {
			for side, name := range streamsSides {
				d := f.prof[side]
				fmt.Fprintf(&md, "| %d | %s | %.1f KiB | %.1f KiB | %.1f |\n", f.n, name, d.heap/1024, d.stack/1024, d.goroutines)
			}
		}
	}
	return md.String()
}

// echoPair starts the rdp example's daemons on loopback, office exposing
// target as the "rdp" service, and returns them with laptop's forward
// address.
// With WARREN_BENCH_PPROF set, the daemons are the pprof variant, and
// pprof holds the laptop's and the office's pprof addresses; profile is
// what the benchmark profiles, "cpu" or "heap" (which records every
// allocation, and so costs a CPU profile half its samples).
func echoPair(t testing.TB, target, profile string) (p pair, fwd string, pprof [2]string) {
	t.Helper()
	w := newWorld(t, localhost{}, hostPort("127.0.0.1", freePort(t, localhost{})))
	w.logLevel = "info" // as deployed: debug logs a line per connection on each side
	keys := map[string]string{"laptop": w.keygen("laptop"), "office": w.keygen("office")}
	fwd = hostPort("127.0.0.1", freePort(t, localhost{}))
	office := []string{"127.0.0.1:3389", target}
	profiled := os.Getenv("WARREN_BENCH_PPROF") != ""
	if profiled {
		// Both daemons run the variant, each on a pprof port of its own.
		t.Setenv("WARREN_PPROF", profile)
		bin := warrenBin
		warrenBin = pprofVariant(t)
		defer func() { warrenBin = bin }()
	}
	p = startPair(t, w, "rdp", localhost{}, localhost{}, "laptop", "office", keys,
		[]string{"127.0.0.1:13389", fwd}, office)
	if profiled {
		for i, pr := range []*process{p.client, p.server} {
			pprof[i] = pr.waitOutput(t, regexp.MustCompile(`pprof listening on (\S+)`), 5*time.Second)
		}
	}
	return p, fwd, pprof
}

// openIdle opens n connections to addr from m, parallel at a time, each
// with one echo, and returns them open with how long opening them all
// took. On error it returns what it opened, for the caller to close.
func openIdle(ctx context.Context, m machine, addr string, n, parallel int) ([]net.Conn, time.Duration, error) {
	conns := make([]net.Conn, n)
	var next atomic.Int64
	var mu sync.Mutex
	var first error
	var wg sync.WaitGroup
	start := time.Now()
	for range parallel {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				c, err := m.DialContext(ctx, &net.Dialer{}, "tcp", addr)
				if err == nil {
					conns[i] = c
					err = echoOnce(c)
					c.SetDeadline(time.Time{})
				}
				if err != nil {
					mu.Lock()
					first = cmp.Or(first, fmt.Errorf("connection %d: %w", i+1, err))
					mu.Unlock()
					next.Store(int64(n)) // stop the others
					return
				}
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	conns = slices.DeleteFunc(conns, func(c net.Conn) bool { return c == nil })
	return conns, took, first
}

// closeIdle closes conns and waits for the daemon at admin to report its
// streams gone.
func closeIdle(t testing.TB, conns []net.Conn, admin string) {
	t.Helper()
	for _, c := range conns {
		c.Close()
	}
	waitStatus(t, localhost{}, admin, time.Minute, "streams closed", func(st daemon.Status) bool {
		return len(st.Peers) == 1 && st.Peers[0].Streams == 0
	})
}

// echoServerBin is e2e/testdata/echoserver, built once per test binary.
var echoServerBin = sync.OnceValues(func() (string, error) {
	return goBuild("echoserver", "./testdata/echoserver")
})

// goBuild builds pkg (with extra go build flags before it) into the test
// binary's temporary directory, next to warrenBin, and returns its path.
func goBuild(name string, args ...string) (string, error) {
	bin := filepath.Join(filepath.Dir(warrenBin), name)
	args = append([]string{"build", "-o", bin}, args...)
	if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
		return "", fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return bin, nil
}

// startEchoServer runs the echo service in a process of its own on m's
// loopback (see e2e/testdata/echoserver) and returns its port.
func startEchoServer(t testing.TB, m machine) string {
	t.Helper()
	bin, err := echoServerBin()
	if err != nil {
		t.Fatal(err)
	}
	cmd := m.Command(context.Background(), bin)
	// It exits when its stdin closes: at cleanup, or if this process dies.
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if s := stderr.String(); s != "" {
			t.Logf("echo server: %s", s)
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	port, ok := strings.CutPrefix(strings.TrimSpace(line), "port ")
	if !ok {
		t.Fatalf("echo server printed %q (%v), not its port", line, err)
	}
	return port
}
