package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/warren-p2p/warren/identity"
)

// The rendezvous benchmarks' simulated peers live in load worker
// processes, not in the benchmark's: one process holding a connection per
// peer would need more file descriptors than a machine's hard limit may
// allow (20,000 on the one docs/benchmarks.md was measured on, against
// 30,000 peers), and raising it takes CAP_SYS_RESOURCE. A worker is this
// test binary run again with rvWorkerEnv set; it answers requests (JSON
// lines) on stdin with replies on stdout and logs on stderr, and exits
// when stdin closes.

const (
	// rvWorkerEnv holds a worker's rvWorkerConfig (JSON). Its presence
	// makes the test binary a worker.
	rvWorkerEnv = "WARREN_BENCH_LOAD_WORKER"
	// rvWorkersEnv names how many workers to use instead of the fewest
	// that fit, to try the split with few peers.
	rvWorkersEnv = "WARREN_BENCH_LOAD_WORKERS"
	// rvWorkerPeers is the most peers one worker holds: half the hard
	// limit of the machine measured, so that the limit is no near thing.
	rvWorkerPeers = 10000
)

// A worker is decided before TestMain, which it must not run: TestMain
// builds warren, which a worker does not need.
func init() {
	if cfg, ok := os.LookupEnv(rvWorkerEnv); ok {
		os.Exit(runRVWorker(cfg, os.Stdin, os.Stdout, os.Stderr))
	}
}

// rvWorkerConfig is what a worker is started with.
type rvWorkerConfig struct {
	Addrs     []string // the servers; peer i registers with Addrs[i mod len(Addrs)]
	ServerKey string   // their key, pinned
	Max       int      // peers over all workers
	Workers   int      // how many workers share them
	Index     int      // this worker's, in [0, Workers)
	Ramp      int      // registrations in flight in this worker
}

// rvWorkerOf is the worker holding peer i of the peers spread over nodes
// servers: each worker holds peers of every server, so that its
// coordination windows may ask pairs on one server and pairs on two.
func rvWorkerOf(i, nodes, workers int) int { return i / nodes % workers }

// Requests a worker answers.
const (
	rvOpGrow   = "grow"   // register the peers of index below N
	rvOpWindow = "window" // a coordination window's share
	rvOpCheck  = "check"  // connections lost and error frames so far
)

// rvRequest is one request to a worker.
type rvRequest struct {
	Op       string
	N        int       // rvOpGrow: peers to have registered; rvOpWindow: asks among the peers of index below N
	InFlight int       // rvOpWindow: this worker's asks outstanding at once
	Until    time.Time // rvOpWindow: when asking stops
	Pairs    rvPairs   // rvOpWindow
}

// rvReply is a worker's answer to a request, or to its start.
type rvReply struct {
	Err              string
	Window           rvWorkerWindow
	LostConns, Stray int64
}

// runRVWorker is a worker's life: make its peers, say so, serve requests
// until in closes. It returns the process's exit status.
func runRVWorker(cfgJSON string, in io.Reader, out, logs io.Writer) int {
	logf := func(format string, args ...any) { fmt.Fprintf(logs, format+"\n", args...) }
	enc := json.NewEncoder(out)
	var cfg rvWorkerConfig
	if err := json.Unmarshal([]byte(cfgJSON), &cfg); err != nil {
		logf("%s: %v", rvWorkerEnv, err)
		return 2
	}
	peers, err := newRVPeers(cfg, logf)
	if err != nil {
		enc.Encode(rvReply{Err: err.Error()})
		return 1
	}
	defer peers.close()
	if err := enc.Encode(rvReply{}); err != nil {
		return 1
	}
	dec := json.NewDecoder(in)
	for {
		var req rvRequest
		if err := dec.Decode(&req); errors.Is(err, io.EOF) {
			return 0
		} else if err != nil {
			logf("request: %v", err)
			return 1
		}
		if err := enc.Encode(peers.serve(req)); err != nil {
			logf("reply: %v", err)
			return 1
		}
	}
}

// serve answers one request.
func (l *rvPeers) serve(req rvRequest) rvReply {
	var rep rvReply
	var err error
	switch req.Op {
	case rvOpGrow:
		err = l.grow(req.N)
	case rvOpWindow:
		rep.Window, err = l.window(req)
	case rvOpCheck:
		rep.LostConns, rep.Stray = l.lostConns.Load(), l.stray.Load()
	default:
		err = fmt.Errorf("unknown request %q", req.Op)
	}
	if err != nil {
		rep.Err = err.Error()
	}
	return rep
}

// rvLoad is a benchmark's simulated peers, spread over load workers: each
// peer has its own Ed25519 key and TLS connection, registers, reports its
// NAT, keeps alive and answers asks as a daemon does (rvPeers).
type rvLoad struct {
	tb      testing.TB
	workers []*rvWorker
	n       int // peers registered, over all workers
}

// rvWorker is the benchmark's end of one worker.
type rvWorker struct {
	index int
	cmd   *exec.Cmd
	in    io.WriteCloser
	out   io.ReadCloser
	enc   *json.Encoder
	dec   *json.Decoder
}

// newRVLoad starts the workers for max peers registering with addrs
// (servers with serverKey), each making its peers' keys and certificates.
// Cleanup stops them.
func newRVLoad(tb testing.TB, addrs []string, serverKey identity.PublicKey, max int) *rvLoad {
	tb.Helper()
	return startRVLoad(tb, addrs, serverKey, max, rvWorkerCount(tb, max))
}

// startRVLoad is newRVLoad with count workers.
func startRVLoad(tb testing.TB, addrs []string, serverKey identity.PublicKey, max, count int) *rvLoad {
	tb.Helper()
	l := &rvLoad{tb: tb}
	start := time.Now()
	for i := range count {
		cfg := rvWorkerConfig{Addrs: addrs, ServerKey: serverKey.String(), Max: max, Workers: count, Index: i,
			Ramp: (rvRamp + count - 1) / count}
		l.workers = append(l.workers, startRVWorker(tb, cfg))
	}
	for _, w := range l.workers {
		w.await(tb)
	}
	tb.Logf("%d peer keys and certificates in %v; load workers: %d", max, time.Since(start).Round(time.Millisecond), count)
	return l
}

// rvWorkerCount is how many workers max peers take: the fewest holding at
// most rvWorkerPeers each (fewer if the hard file descriptor limit leaves
// less room), or as many as rvWorkersEnv says if that is more.
func rvWorkerCount(tb testing.TB, max int) int {
	tb.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		tb.Fatalf("file descriptor limit: %v", err)
	}
	per := min(rvWorkerPeers, int(min(lim.Max, 1<<30))-rvSpareFDs)
	if per < 1 {
		tb.Fatalf("the hard file descriptor limit, %d, leaves no room for peers beside a worker's %d others", lim.Max, rvSpareFDs)
	}
	count := (max + per - 1) / per
	if env := os.Getenv(rvWorkersEnv); env != "" {
		n, err := strconv.Atoi(env)
		if err != nil || n < count {
			tb.Fatalf("%s=%q: want a count of at least %d (%d peers, %d a worker at most)", rvWorkersEnv, env, count, max, per)
		}
		count = n
	}
	return count
}

// startRVWorker starts the worker cfg describes; its logs go to tb's.
func startRVWorker(tb testing.TB, cfg rvWorkerConfig) *rvWorker {
	tb.Helper()
	self, err := os.Executable()
	if err != nil {
		tb.Fatalf("load worker: %v", err)
	}
	js, err := json.Marshal(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	w := &rvWorker{index: cfg.Index, cmd: exec.Command(self)}
	w.cmd.Env = append(os.Environ(), rvWorkerEnv+"="+string(js))
	w.cmd.Stderr = &tbLog{tb: tb, prefix: fmt.Sprintf("load worker %d: ", cfg.Index)}
	if w.in, err = w.cmd.StdinPipe(); err != nil {
		tb.Fatal(err)
	}
	if w.out, err = w.cmd.StdoutPipe(); err != nil {
		tb.Fatal(err)
	}
	if err := w.cmd.Start(); err != nil {
		tb.Fatalf("start load worker %d: %v", cfg.Index, err)
	}
	w.enc, w.dec = json.NewEncoder(w.in), json.NewDecoder(w.out)
	tb.Cleanup(w.stop)
	return w
}

// stop closes the worker's stdin, which ends it, and waits for it: a
// worker closing 10,000 connections takes a moment, one that does not
// end within a minute is killed. Its stdout closes too, so that a reply
// nobody will read (a benchmark that failed amid a window) ends it
// rather than blocking it.
func (w *rvWorker) stop() {
	w.in.Close()
	w.out.Close()
	done := make(chan struct{})
	go func() {
		w.cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(time.Minute):
		w.cmd.Process.Kill()
		<-done
	}
}

// send sends the worker a request.
func (w *rvWorker) send(tb testing.TB, req rvRequest) {
	tb.Helper()
	if err := w.enc.Encode(req); err != nil {
		tb.Fatalf("load worker %d: %s: %v", w.index, req.Op, err)
	}
}

// await reads the worker's next reply, failing tb if it reports an error.
func (w *rvWorker) await(tb testing.TB) rvReply {
	tb.Helper()
	var rep rvReply
	if err := w.dec.Decode(&rep); err != nil {
		tb.Fatalf("load worker %d ended (its log says why): %v", w.index, err)
	}
	if rep.Err != "" {
		tb.Fatalf("load worker %d: %s", w.index, rep.Err)
	}
	return rep
}

// all sends every worker req and returns their replies, in order.
func (l *rvLoad) all(req rvRequest) []rvReply {
	l.tb.Helper()
	for _, w := range l.workers {
		w.send(l.tb, req)
	}
	reps := make([]rvReply, len(l.workers))
	for i, w := range l.workers {
		reps[i] = w.await(l.tb)
	}
	return reps
}

func (l *rvLoad) count() int { return l.n }

// grow registers peers until n are, rvRamp at a time over all workers,
// and returns how long that took. Any failed registration fails the
// benchmark: the servers must take them all.
func (l *rvLoad) grow(n int) time.Duration {
	l.tb.Helper()
	start := time.Now()
	l.all(rvRequest{Op: rvOpGrow, N: n})
	l.n = n
	return time.Since(start)
}

// check fails the benchmark if any peer lost its connection or a server
// sent an error frame: figures measured with fewer peers than claimed, or
// with refusals, are not the figures asked for.
func (l *rvLoad) check() {
	l.tb.Helper()
	var lost, stray int64
	for _, rep := range l.all(rvRequest{Op: rvOpCheck}) {
		lost, stray = lost+rep.LostConns, stray+rep.Stray
	}
	if lost > 0 {
		l.tb.Errorf("%d peers lost their connections or could not send a ping", lost)
	}
	if stray > 0 {
		l.tb.Errorf("%d error frames from the servers", stray)
	}
}

// coordinate has registered peers ask for punch sessions for w.length,
// w.inFlight asks outstanding (spread over the workers, each asking among
// its own peers), and counts those whose punch reached both sides within
// the window. servers are the processes whose CPU the coordinations cost.
func (l *rvLoad) coordinate(tb testing.TB, servers []*process, w rvWindow) rvCoordResult {
	tb.Helper()
	s0, g0 := cpuOf(tb, servers), l.cpu(tb)
	start := time.Now()
	req := rvRequest{Op: rvOpWindow, N: min(w.among, l.n), Until: start.Add(w.length), Pairs: w.pairs}
	var asked []*rvWorker
	for i, wk := range l.workers {
		// An even share each, the first ones one more for the remainder:
		// asking one at a time is worker 0's alone.
		req.InFlight = w.inFlight / len(l.workers)
		if i < w.inFlight%len(l.workers) {
			req.InFlight++
		}
		if req.InFlight > 0 {
			wk.send(tb, req)
			asked = append(asked, wk)
		}
	}
	time.Sleep(time.Until(req.Until))
	took := time.Since(start)
	s1, g1 := cpuOf(tb, servers), l.cpu(tb)
	var parts []rvWorkerWindow
	for _, wk := range asked {
		parts = append(parts, wk.await(tb).Window)
	}
	res := mergeWindows(parts, took, s1-s0, g1-g0)
	if res.lost > 0 {
		tb.Errorf("%d connect asks got no punch to both sides within %v", res.lost, rvAskTimeout)
	}
	return res
}

// cpu is the CPU time the load generator has used so far: its workers'
// and this process's.
func (l *rvLoad) cpu(tb testing.TB) time.Duration {
	cpu := readUsage(tb, os.Getpid()).CPU
	for _, w := range l.workers {
		cpu += readUsage(tb, w.cmd.Process.Pid).CPU
	}
	return cpu
}

// tbLog writes a process's output to a test's log, a line at a time.
type tbLog struct {
	tb     testing.TB
	prefix string
	mu     sync.Mutex
	buf    []byte // a line not yet ended
}

func (t *tbLog) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, b...)
	for {
		line, rest, ok := strings.Cut(string(t.buf), "\n")
		if !ok {
			return len(b), nil
		}
		t.tb.Log(t.prefix + line)
		t.buf = []byte(rest)
	}
}

// TestMergeWindowsQuantiles: a window's quantiles are of the workers'
// samples together, not the workers' quantiles averaged. Worker 0 had 99
// fast coordinations, worker 1 one slow one: p50 is fast; averaged p50s
// would be half the slow one.
func TestMergeWindowsQuantiles(t *testing.T) {
	fast := make([]time.Duration, 99)
	for i := range fast {
		fast[i] = time.Millisecond
	}
	parts := []rvWorkerWindow{
		{Asked: 99, Done: 99, Lats: [2][]time.Duration{fast, nil}},
		{Asked: 2, Done: 1, Lost: 1, Lats: [2][]time.Duration{nil, {time.Second}}},
	}
	res := mergeWindows(parts, 2*time.Second, time.Second, 500*time.Millisecond)
	if res.asked != 101 || res.done != 100 || res.lost != 1 || res.rate != 50 {
		t.Errorf("asked %d, done %d, lost %d, rate %v; want 101, 100, 1, 50/s", res.asked, res.done, res.lost, res.rate)
	}
	if res.all.n != 100 || res.all.p50 != time.Millisecond || res.all.p99 != time.Second {
		t.Errorf("all: %d samples, %v; want 100, 1ms / 1s", res.all.n, res.all)
	}
	if res.same.n != 99 || res.cross.n != 1 || res.cross.p50 != time.Second {
		t.Errorf("on one server %d samples, across two %d (%v); want 99, 1 (1s / 1s)", res.same.n, res.cross.n, res.cross)
	}
	if res.serverCPU != 50 || res.loadCPU != 25 || res.cpuPer != 10*time.Millisecond {
		t.Errorf("server CPU %v%%, load %v%%, %v each; want 50%%, 25%%, 10ms", res.serverCPU, res.loadCPU, res.cpuPer)
	}
}

// TestRVLoadWorkers: peers spread over three load worker processes
// register with a real server and coordinate, every worker taking its
// share of the asks, and a worker that cannot start says why.
func TestRVLoadWorkers(t *testing.T) {
	host := localhost{}
	w := newWorld(t, host, "127.0.0.1:"+freePort(t, host), "-limits=false")
	key, err := identity.ParsePublicKey(w.rvKey)
	if err != nil {
		t.Fatal(err)
	}
	load := startRVLoad(t, []string{w.rvAddr}, key, 300, 3)
	load.grow(200)
	load.grow(300)
	until := time.Now().Add(300 * time.Millisecond)
	for _, wk := range load.workers {
		wk.send(t, rvRequest{Op: rvOpWindow, N: 300, InFlight: 2, Until: until, Pairs: pairsSame})
	}
	for _, wk := range load.workers {
		part := wk.await(t).Window
		// Worker k holds peers k, k+3, …: 100 peers, 2 asks in flight.
		if part.Asked < 2 || part.Done < part.Asked-2 || len(part.Lats[0]) != part.Asked || part.Lost > 0 {
			t.Errorf("worker %d: %+v", wk.index, part)
		}
	}
	load.check()

	var out strings.Builder
	bad := rvWorkerConfig{Addrs: []string{w.rvAddr}, ServerKey: "not a key", Max: 3, Workers: 1}
	js, _ := json.Marshal(bad)
	if code := runRVWorker(string(js), strings.NewReader(""), &out, io.Discard); code != 1 ||
		!strings.Contains(out.String(), "server key") {
		t.Errorf("a worker with a bad key: exit %d, replied %q", code, out.String())
	}
}
