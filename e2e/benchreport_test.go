package e2e

import (
	"fmt"
	"maps"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
)

// The lab benchmarks (Benchmark* in this package) measure warren against
// a baseline taken in the same run and add their part of
// docs/benchmarks.md to benchDoc. When WARREN_BENCH_REPORT names a file,
// TestMain writes the report there after the run:
//
//	WARREN_BENCH_REPORT=$PWD/docs/benchmarks.md go test ./e2e -run '^$' -bench . -benchtime 1x -timeout 60m
//
// (as root, for the lab). Each benchmark runs its measurement once,
// whatever b.N, and reports its figures with b.ReportMetric too.

// Section places in the report, in reading order.
const (
	benchThroughput = 10
	benchLatency    = 20
	benchPunch      = 30
	benchOpening    = 40
	benchStreams    = 50
	benchIdle       = 60
	benchRendezvous = 70
	benchCPU        = 80
	benchMicro      = 90
)

// benchReport collects report sections from the benchmarks of one run.
type benchReport struct {
	mu       sync.Mutex
	sections map[int]string
}

// benchDoc is the report of this test binary's run.
var benchDoc benchReport

// add records md, a markdown section starting with "## ", at place order.
// A benchmark run again (b.N > 1, or -count) replaces its section.
func (r *benchReport) add(order int, md string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sections == nil {
		r.sections = make(map[int]string)
	}
	r.sections[order] = strings.TrimSpace(md) + "\n"
}

// write writes the report to path, if any section was added.
func (r *benchReport) write(path string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.sections) == 0 {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Benchmarks\n\nMeasured %s at commit %s on %s (%d cores, shared), in the NAT lab "+
		"(real kernel NATs in network namespaces, no added delay).\n\n", time.Now().UTC().Format("2006-01-02"),
		gitCommit(), hostDesc(), runtime.NumCPU())
	b.WriteString("Regenerate (as root): `WARREN_BENCH_REPORT=$PWD/docs/benchmarks.md go test ./e2e -run '^$' -bench . " +
		"-benchtime 1x -timeout 60m`. Every figure is set against a baseline measured in the same run; targets are " +
		"issue 7's.\n")
	for _, order := range slices.Sorted(maps.Keys(r.sections)) {
		b.WriteString("\n" + r.sections[order])
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}
