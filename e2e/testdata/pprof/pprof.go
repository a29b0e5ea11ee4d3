// This file is not a package of its own: BenchmarkIdleStreams, when
// WARREN_BENCH_PPROF names a directory, builds a variant of cmd/warren
// with it overlaid (go build -overlay) to profile the daemons' memory.
// warren has no pprof endpoint, and its admin API should not grow one for
// a benchmark.

package main

import (
	"fmt"
	"net"
	"net/http"
	_ "net/http/pprof" // registers /debug/pprof/ on http.DefaultServeMux
	"os"
	"runtime"
)

// With WARREN_PPROF set, the daemon serves pprof on a loopback port of its
// own and prints it, so that two daemons started together need no port
// agreed in advance. With WARREN_PPROF=heap it records every allocation:
// the default samples one per 512 KiB, too coarse to tell apart objects of
// a few hundred bytes per stream; but recording them takes half the CPU a
// CPU profile would show.
func init() {
	switch os.Getenv("WARREN_PPROF") {
	case "":
		return
	case "heap":
		runtime.MemProfileRate = 1
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "pprof:", err)
		return
	}
	fmt.Fprintf(os.Stderr, "pprof listening on %s\n", ln.Addr())
	go http.Serve(ln, nil)
}
