package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/warren-p2p/warren/natlab"
	"github.com/warren-p2p/warren/natlab/labtest"
)

// Lab benchmark settings.
const (
	benchSecs      = 5    // iperf3 seconds per run, after one of slow start
	benchParallel  = 8    // streams of the parallel runs
	latencyRounds  = 5000 // 64-byte round trips per latency figure
	latencyWarmup  = 200
	latencyPayload = 64
)

// linkFigures is what BenchmarkLinks measures on one path.
type linkFigures struct {
	one, many   iperfResult   // 1 and benchParallel streams
	p50, p99    time.Duration // 64-byte round trip
	cpu         time.Duration // both daemons, over the single-stream run
	cpuPerGiB   time.Duration
	description string
}

// BenchmarkLinks measures each link path through a forward, across the NAT
// lab, against the raw path in the same run: iperf3 throughput with one
// and with eight streams, the round-trip time of 64-byte requests (p50,
// p99), and the daemons' CPU time per GiB carried. The raw path is the
// same traffic with no tunnel from a host behind one cone NAT to the lab's
// public host (two NATs cannot be crossed without one).
func BenchmarkLinks(b *testing.B) {
	cells := cellsByName()
	raw := rawPath(b)
	got := map[string]linkFigures{}
	for _, p := range throughputPaths {
		var f linkFigures
		r := runCellWith(b, cells[p.cell], cellOptions{transports: p.transports, linkExtra: p.link, size: 16 << 20,
			measure: func(cr cellRun) { f = measureLink(b, cr) }})
		if want := strings.Fields(p.name)[0]; r.outcome != want {
			b.Fatalf("%s: path %s, want %s (%s)", p.cell, r.outcome, want, r.note)
		}
		got[p.name] = f
		b.ReportMetric(f.one.mbps, metricName(p.name)+"-Mbit/s")
		b.ReportMetric(float64(f.p50.Microseconds()), metricName(p.name)+"-p50-µs")
	}
	writeLinkSections(raw, got)
}

// rawPath measures the baseline: iperf3 and 64-byte round trips from a
// host behind a cone NAT to the lab's public host, no warren.
func rawPath(t testing.TB) linkFigures {
	site, srv, addr := rawLab(t)
	iperf := hostPort(addr, serveIperf3On(t, srv, addr))
	var f linkFigures
	f.one = iperf3Run(t, site, iperf, benchSecs, 1)
	f.many = iperf3Run(t, site, iperf, benchSecs, benchParallel)
	f.p50, f.p99 = rawRoundTrips(t, site, srv, addr)
	return f
}

// rawLab is the raw path's lab: a host behind a cone NAT, and the lab's
// public host with its address.
func rawLab(t testing.TB) (site, srv machine, addr string) {
	lab := labtest.New(t, natlab.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := lab.AddSite(ctx, "a", natlab.Cone)
	if err != nil {
		t.Fatal(err)
	}
	return s.Host(), lab.Server(), lab.Server().Addrs()[0].String()
}

// rawRoundTrips is roundTrips from site to an echo service on srv at addr.
func rawRoundTrips(t testing.TB, site, srv machine, addr string) (p50, p99 time.Duration) {
	echo := serveTCPOn(t, srv, hostPort(addr, "0"), func(c net.Conn) { io.Copy(c, c) })
	return roundTrips(t, site, hostPort(addr, echo))
}

// measureLink takes a linked cell's figures.
func measureLink(t testing.TB, cr cellRun) linkFigures {
	var f linkFigures
	c0, s0 := cr.clientProc.usage(t), cr.serverProc.usage(t)
	f.one = iperf3Run(t, cr.client, cr.iperfFwd, benchSecs, 1)
	c1, s1 := cr.clientProc.usage(t), cr.serverProc.usage(t)
	f.cpu = c1.CPU - c0.CPU + s1.CPU - s0.CPU
	// The run carried its measured bytes plus a second of slow start,
	// which iperf3 leaves out: count that second at the measured rate.
	carried := float64(f.one.bytes) * float64(benchSecs+1) / benchSecs
	f.cpuPerGiB = time.Duration(float64(f.cpu) / (carried / (1 << 30)))
	f.many = iperf3Run(t, cr.client, cr.iperfFwd, benchSecs, benchParallel)
	f.p50, f.p99 = roundTrips(t, cr.client, cr.echoFwd)
	return f
}

// roundTrips sends latencyRounds 64-byte requests to the echo service at
// addr from m, one at a time on one connection, and returns the p50 and
// p99 round-trip times.
func roundTrips(t testing.TB, m machine, addr string) (p50, p99 time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := m.DialContext(ctx, &net.Dialer{}, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	req, resp := make([]byte, latencyPayload), make([]byte, latencyPayload)
	rtts := make([]time.Duration, 0, latencyRounds)
	for i := range latencyWarmup + latencyRounds {
		req[0] = byte(i)
		start := time.Now()
		if _, err := c.Write(req); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, resp); err != nil {
			t.Fatal(err)
		}
		if resp[0] != byte(i) {
			t.Fatalf("round %d: echo of another round", i)
		}
		if i >= latencyWarmup {
			rtts = append(rtts, time.Since(start))
		}
	}
	slices.Sort(rtts)
	return rtts[len(rtts)/2], rtts[len(rtts)*99/100]
}

// throughputTargets are issue 7's single-stream targets, in Mbit/s.
var throughputTargets = map[string]float64{"direct-tcp": 4000, "direct-udp (QUIC)": 1400}

func writeLinkSections(raw linkFigures, got map[string]linkFigures) {
	us := func(d time.Duration) string { return fmt.Sprintf("%d µs", d.Microseconds()) }
	var tp, lat, cpu strings.Builder
	fmt.Fprintf(&tp, "## Throughput through a forward\n\niperf3 through a forward, %d s after 1 s of slow start, "+
		"one stream and %d in parallel. Raw path: iperf3 from a host behind one cone NAT to the lab's public host, no "+
		"warren: **%.0f Mbit/s** one stream, **%.0f Mbit/s** with %d.\n\n| path | NAT pair | 1 stream | of raw | %d streams | of raw | target (1 stream) |\n|---|---|---|---|---|---|---|\n",
		benchSecs, benchParallel, raw.one.mbps, raw.many.mbps, benchParallel, benchParallel)
	fmt.Fprintf(&lat, "## Added latency\n\n%d round trips of %d bytes through a forward to an echo service, one at a "+
		"time on one connection (after %d to warm up). Raw path: the same to an echo service on the lab's public host "+
		"from behind one cone NAT: p50 **%s**, p99 **%s**. Target: under 100 µs added at p50, under 500 µs at p99 "+
		"(frp xtcp adds about 270 µs and 1.1 ms).\n\n| path | p50 | p99 | added p50 | added p99 | met |\n|---|---|---|---|---|---|\n",
		latencyRounds, latencyPayload, latencyWarmup, us(raw.p50), us(raw.p99))
	fmt.Fprintf(&cpu, "## CPU per GiB carried\n\nCPU time (user + system) of both daemons together during the "+
		"single-stream iperf3 run, per GiB carried (the run's measured bytes, plus its first second at the same "+
		"rate). Includes the kernel's work on the daemons' sockets, TLS, framing and copies.\n\n| path | CPU per GiB | CPU for the run |\n|---|---|---|\n")
	for _, p := range throughputPaths {
		f := got[p.name]
		target := "-"
		if want, ok := throughputTargets[p.name]; ok {
			target = fmt.Sprintf("%.1f Gbit/s: %s", want/1000, metOrNot(f.one.mbps >= want))
		}
		fmt.Fprintf(&tp, "| %s | %s | %.0f Mbit/s | %.0f%% | %.0f Mbit/s | %.0f%% | %s |\n", p.name, p.cell,
			f.one.mbps, 100*f.one.mbps/raw.one.mbps, f.many.mbps, 100*f.many.mbps/raw.many.mbps, target)
		a50, a99 := f.p50-raw.p50, f.p99-raw.p99
		fmt.Fprintf(&lat, "| %s | %s | %s | %s | %s | %s |\n", p.name, us(f.p50), us(f.p99), us(a50), us(a99),
			metOrNot(a50 < 100*time.Microsecond && a99 < 500*time.Microsecond))
		fmt.Fprintf(&cpu, "| %s | %.2f s | %.2f s |\n", p.name, f.cpuPerGiB.Seconds(), f.cpu.Seconds())
	}
	tp.WriteString("\nTargets: TCP link at least twice frp xtcp's 1.4–2.0 Gbit/s (frp is not in this machine's " +
		"package sources, so its figure is the issue's, from the same kind of lab), UDP link at least 1.4 Gbit/s.\n")
	benchDoc.add(benchThroughput, tp.String())
	benchDoc.add(benchLatency, lat.String())
	benchDoc.add(benchCPU, cpu.String())
}

// metricName makes a path name fit for b.ReportMetric's units, which may
// not hold spaces: "direct-udp (QUIC)" becomes "direct-udp-quic".
func metricName(s string) string {
	return strings.ToLower(strings.NewReplacer(" (", "-", ")", "", " ", "-").Replace(s))
}

func metOrNot(ok bool) string {
	if ok {
		return "met"
	}
	return "**missed**"
}

// BenchmarkPunch runs every grid cell once with both transports, as users
// run warren, and reports each pair's link setup time (connect request to
// link up, as the daemon's status reports it) and path, one cell at a time
// so that the times are not inflated by neighbours.
func BenchmarkPunch(b *testing.B) {
	var rows []cellResult
	for _, c := range gridCells() {
		r := runCellWith(b, c, cellOptions{transports: "tcp,udp", size: 1 << 20})
		rows = append(rows, r)
		if r.outcome != "fail" {
			b.ReportMetric(float64(r.setup.Milliseconds()), metricName(c.name)+"-setup-ms")
		}
	}
	var md strings.Builder
	fmt.Fprintf(&md, "## Punch time per NAT pair\n\nEach grid cell once, both transports allowed (the default), "+
		"cells one at a time: the path the link took and its setup time, from the connect request to the link "+
		"being up, as the client daemon's status reports it. Rows: the client's NAT; columns: the server's. "+
		"docs/natlab-grid.md has each transport alone, over 10 runs for the hard pairs.\n\n| client \\ server |")
	kinds := natlab.Kinds()
	for _, k := range kinds {
		fmt.Fprintf(&md, " %s |", k)
	}
	md.WriteString("\n|---|" + strings.Repeat("---|", len(kinds)) + "\n")
	byName := map[string]cellResult{}
	for _, r := range rows {
		byName[r.name] = r
	}
	cellText := func(r cellResult) string {
		if r.outcome == "fail" {
			return "fail"
		}
		return fmt.Sprintf("%s %d ms", strings.TrimPrefix(r.outcome, "direct-"), r.setup.Milliseconds())
	}
	for _, a := range kinds {
		fmt.Fprintf(&md, "| %s |", a)
		for _, s := range kinds {
			fmt.Fprintf(&md, " %s |", cellText(byName[string(a)+"/"+string(s)]))
		}
		md.WriteString("\n")
	}
	md.WriteString("\nOther topologies:\n\n")
	for _, r := range rows {
		if strings.Count(r.name, "/") == 1 && !strings.Contains(r.name, "(") {
			continue
		}
		fmt.Fprintf(&md, "- %s: %s\n", r.name, cellText(r))
	}
	benchDoc.add(benchPunch, md.String())
}

// BenchmarkMicro runs the packages' Go micro-benchmarks (link framing and
// TLS, transport streams, forward framing, rendezvous relay) with
// allocations reported, and puts their output in the report.
func BenchmarkMicro(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	pkgs := []string{"./link", "./transport", "./forward", "./rendezvous"}
	cmd := exec.CommandContext(ctx, "go", append([]string{"test", "-run", "^$", "-bench", ".", "-benchmem",
		"-benchtime", "1s"}, pkgs...)...)
	cmd.Dir = ".."
	// A test binary that outlives a killed go command holds the output
	// pipe: stop waiting for it (a hung benchmark once held this one for
	// ever).
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		b.Fatalf("go test -bench: %v\n%s", err, out)
	}
	var keep []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "Benchmark") || strings.HasPrefix(line, "pkg:") {
			keep = append(keep, line)
		}
	}
	benchDoc.add(benchMicro, fmt.Sprintf("## Go micro-benchmarks\n\n`go test -run '^$' -bench . -benchmem -benchtime 1s %s`, "+
		"in the same run (each benchmark's own baseline, e.g. TLS or TCP alone, is beside it):\n\n```\n%s\n```\n",
		strings.Join(pkgs, " "), strings.Join(keep, "\n")))
}

// latencyGuard is what BenchmarkAddedLatency allows a path to add over the
// raw path, at p50 and at p99. Issue 16's target (100 µs and 300 µs) is a
// bound where a path meets it; where it is missed the bound is a
// regression guard beyond the figures measured under load, said in
// latencyCalibration.
type latencyGuard struct {
	p50, p99 time.Duration
	met      bool // the bound is the target
}

// latencyGuards are BenchmarkAddedLatency's paths and bounds: all
// regression guards, at about twice the worst of 6–9 runs at load average
// 6–10 on the shared 2-core machine (added p50/p99: TCP link +232–436 µs /
// +0.57–1.48 ms, UDP link +313–579 µs / +1.0–2.9 ms, relay +389–488 µs /
// +0.84–1.62 ms); p99 moves most with the load.
var latencyGuards = []struct {
	path  string // a throughputPaths name
	guard latencyGuard
}{
	{"direct-tcp", latencyGuard{p50: 800 * time.Microsecond, p99: 3 * time.Millisecond}},
	{"direct-udp (QUIC)", latencyGuard{p50: 1200 * time.Microsecond, p99: 5 * time.Millisecond}},
	{"relay", latencyGuard{p50: 1000 * time.Microsecond, p99: 4 * time.Millisecond}},
}

// BenchmarkAddedLatency is CI's check on added latency: 64-byte round
// trips through a forward on each path of latencyGuards, against the raw
// path in the same run (see BenchmarkLinks). With WARREN_BENCH_CHECK=1 (as
// .ci/run sets it) it fails if a path adds more than its bound.
//
//	WARREN_BENCH_CHECK=1 go test ./e2e -run '^$' -bench '^BenchmarkAddedLatency$' -benchtime 1x
func BenchmarkAddedLatency(b *testing.B) {
	site, srv, addr := rawLab(b)
	raw50, raw99 := rawRoundTrips(b, site, srv, addr)
	b.Logf("raw path: p50 %v, p99 %v", raw50, raw99)
	cells := cellsByName()
	for _, g := range latencyGuards {
		p := throughputPath(b, g.path)
		var p50, p99 time.Duration
		r := runCellWith(b, cells[p.cell], cellOptions{transports: p.transports, linkExtra: p.link, size: 1 << 20,
			measure: func(cr cellRun) { p50, p99 = roundTrips(b, cr.client, cr.echoFwd) }})
		if want := strings.Fields(p.name)[0]; r.outcome != want {
			b.Fatalf("%s: path %s, want %s (%s)", p.cell, r.outcome, want, r.note)
		}
		a50, a99 := p50-raw50, p99-raw99
		b.ReportMetric(float64(a50.Microseconds()), metricName(p.name)+"-added-p50-µs")
		b.ReportMetric(float64(a99.Microseconds()), metricName(p.name)+"-added-p99-µs")
		b.Logf("%s: p50 %v (+%v), p99 %v (+%v)", p.name, p50, a50, p99, a99)
		if os.Getenv("WARREN_BENCH_CHECK") != "1" {
			continue
		}
		kind := "a regression guard; issue 16's target is +100 µs and +300 µs"
		if g.guard.met {
			kind = "issue 16's target"
		}
		if a50 > g.guard.p50 || a99 > g.guard.p99 {
			b.Errorf("%s adds %v at p50 and %v at p99 over the raw path (%v, %v) in the same run, want at most %v and %v (%s)",
				p.name, a50, a99, raw50, raw99, g.guard.p50, g.guard.p99, kind)
		}
	}
}

// throughputPath is the throughputPaths entry called name.
func throughputPath(t testing.TB, name string) (p struct{ name, cell, transports, link string }) {
	i := slices.IndexFunc(throughputPaths, func(p struct{ name, cell, transports, link string }) bool { return p.name == name })
	if i < 0 {
		t.Fatalf("no throughput path %q", name)
	}
	return throughputPaths[i]
}
