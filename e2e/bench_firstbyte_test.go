package e2e

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/warren-p2p/warren/natlab"
)

// firstBytePairs are the pairs issue 14 sets first-byte targets for on
// every profile: at most rtts peer round trips plus extra from the
// connect request to the first byte back through a forward.
var firstBytePairs = []struct {
	cell  string
	rtts  int
	extra time.Duration
}{
	{"cone/cone", 5, 200 * time.Millisecond},
	{"cone/symseq", 5, 200 * time.Millisecond},
	{"symseq/symseq", 5, 200 * time.Millisecond},
	{"cone/symrand", 8, 400 * time.Millisecond},
}

// firstByteGuard is the ratio (median over target) BenchmarkMobileFirstByte
// fails beyond with WARREN_BENCH_CHECK=1, as .ci/run sets it. Two pairs
// miss their targets today (cone/cone 1.01, cone/symseq 1.15 on this
// machine, one lab at a time at load average 6-8; symseq/symseq 0.96,
// cone/symrand 0.67), so the check is a regression guard until they are
// met. Before this day's changes the same pairs measured 1.08-1.63 (four
// labs at a time).
const firstByteGuard = 1.35

// firstByteRuns is how many times BenchmarkMobileFirstByte runs each pair
// (WARREN_BENCH_FIRSTBYTE_RUNS overrides it); the check is on the median.
// The runs go one at a time, not gridParallel at once as the grid's do:
// every run's lab pumps its emulated uplinks through user space, and four
// labs at once on two cores add queueing that is this machine's, not the
// path's (medians 20-60% higher in this machine's runs).
const firstByteRuns = 5

// BenchmarkMobileFirstByte is CI's check of issue 14's first-byte targets
// on natlab's "mobile" profile (90 ms between the peers, ±20 ms jitter, 2%
// loss in runs): each pair of firstBytePairs, with the default
// configuration (both transports, udp_stream "auto"), from the client's
// connect request (its status: link up less setup) to the first byte
// answered through its forward. The target is a number of the profile's
// round trips plus a constant, so the ratio checked, median over target,
// is against the path itself, not against this machine's speed. With
// WARREN_BENCH_CHECK=1 it fails if a pair's median is past firstByteGuard
// or more than one run of a pair was not direct.
//
//	go test ./e2e -run '^$' -bench '^BenchmarkMobileFirstByte$' -benchtime 1x
func BenchmarkMobileFirstByte(b *testing.B) {
	prof, err := natlab.LookupProfile("mobile")
	if err != nil {
		b.Fatal(err)
	}
	runs := firstByteRuns
	if v := os.Getenv("WARREN_BENCH_FIRSTBYTE_RUNS"); v != "" {
		if runs, err = strconv.Atoi(v); err != nil || runs < 1 {
			b.Fatalf("WARREN_BENCH_FIRSTBYTE_RUNS=%q: want a positive number", v)
		}
	}
	rtt := prof.RoundTrip(prof)
	times, paths := map[string][]time.Duration{}, map[string][]string{}
	for _, fp := range firstBytePairs {
		for range runs {
			d, path := firstByteFromRequest(b, fp.cell, prof)
			times[fp.cell] = append(times[fp.cell], d)
			paths[fp.cell] = append(paths[fp.cell], path)
		}
	}

	var md strings.Builder
	fmt.Fprintf(&md, "## First byte on a mobile path\n\nIssue 14's targets on natlab's `mobile` profile "+
		"(%v between the peers, ±20 ms jitter, 2%% loss in runs of 3, 20 Mbit/s, MTU 1400 on each uplink): from the client's connect "+
		"request (its status: link up less setup) to the first bytes echoed through a forward, both daemons with the default "+
		"configuration (TCP and UDP, `udp_stream = \"auto\"`), %d runs a pair, one at a time. The ratio checked is the median "+
		"against the target, which counts the path's round trips. `go test ./e2e -run '^$' -bench '^BenchmarkMobileFirstByte$' -benchtime 1x`\n\n",
		rtt, runs)
	md.WriteString("| pair | paths | median | slowest | target | median / target | met |\n|---|---|---|---|---|---|---|\n")
	for _, fp := range firstBytePairs {
		ts, ps := times[fp.cell], paths[fp.cell]
		slices.Sort(ts)
		med := ts[len(ts)/2]
		target := time.Duration(fp.rtts)*rtt + fp.extra
		ratio := float64(med) / float64(target)
		direct := 0
		for _, p := range ps {
			if rank(p) == 2 {
				direct++
			}
		}
		b.ReportMetric(ratio, strings.ReplaceAll(fp.cell, "/", "-")+"-of-target")
		met := "met"
		if ratio > 1 {
			met = "**missed**"
		}
		fmt.Fprintf(&md, "| %s | %s | %s | %s | %s (%d round trips + %s) | %.2f | %s |\n", fp.cell, countPaths(ps), ms(med), ms(ts[len(ts)-1]),
			ms(target), fp.rtts, ms(fp.extra), ratio, met)
		b.Logf("%s: first byte from the connect request, median %v (runs %v, paths %v), target %v: %.2f", fp.cell,
			med.Round(time.Millisecond), roundAll(ts), ps, target, ratio)
		if os.Getenv("WARREN_BENCH_CHECK") != "1" {
			continue
		}
		if ratio > firstByteGuard {
			b.Errorf("%s: median first byte %v from the connect request, %.2f× its target %v; want at most %.1f× "+
				"(a regression guard: the target itself is issue 14's)", fp.cell, med.Round(time.Millisecond), ratio, target, firstByteGuard)
		}
		if direct < runs-1 {
			b.Errorf("%s: direct in %d of %d runs (%v)", fp.cell, direct, runs, ps)
		}
	}
	benchDoc.add(benchFirstByte, md.String())
}

// firstByteFromRequest runs cell once on prof with the default transports
// and returns the time from the client's connect request to its first
// byte through the forward, and the path; a run with no link counts as
// the cell's whole wait.
func firstByteFromRequest(b *testing.B, cell string, prof natlab.Profile) (time.Duration, string) {
	var requested time.Time
	r := runCellWith(b, cellsByName()[cell], cellOptions{transports: "tcp,udp", size: 1 << 10, profile: prof, echoFirst: true,
		measure: func(run cellRun) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			st, err := status(ctx, run.client, run.clientAdmin)
			if err != nil || len(st.Peers) == 0 || st.Peers[0].Since == nil {
				b.Errorf("%s: client status: %v", cell, err)
				return
			}
			p := st.Peers[0]
			requested = p.Since.Add(-time.Duration(p.SetupMs * float64(time.Millisecond)))
		}})
	if requested.IsZero() || r.firstByteAt.IsZero() {
		return cellWANLinkWait, r.outcome
	}
	return r.firstByteAt.Sub(requested), r.outcome
}

// countPaths is "direct-udp ×3, direct-tcp ×2": each path and its runs.
func countPaths(ps []string) string {
	n := map[string]int{}
	for _, p := range ps {
		n[p]++
	}
	var out []string
	for _, p := range slices.Sorted(maps.Keys(n)) {
		out = append(out, fmt.Sprintf("%s ×%d", p, n[p]))
	}
	return strings.Join(out, ", ")
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond)
	}
	return out
}
