package e2e

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/warren-p2p/warren/rendezvous"
)

// rvPairs says which pairs a coordination window asks, by the servers
// their two peers are registered with.
type rvPairs int

const (
	// pairsSame asks pairs registered with one server (with a single
	// server, every pair).
	pairsSame rvPairs = iota
	// pairsCross asks pairs registered with two servers.
	pairsCross
	// pairsBoth asks one of each in turn, so that the two kinds' latencies
	// are measured under the same conditions.
	pairsBoth
)

// cross reports whether the k-th ask of a window asks a pair on two
// servers.
func (p rvPairs) cross(k int) bool { return p == pairsCross || (p == pairsBoth && k%2 == 1) }

// rvWindow is one coordination window.
type rvWindow struct {
	among    int           // asks go between the first among peers
	inFlight int           // asks outstanding at once
	length   time.Duration // of the window
	pairs    rvPairs
}

// rvLatency is the ask-to-both-punches latency of some coordinations.
type rvLatency struct {
	n        int
	p50, p99 time.Duration
}

// latencyOf sorts lats and returns their quantiles.
func latencyOf(lats []time.Duration) rvLatency {
	slices.Sort(lats)
	if len(lats) == 0 {
		return rvLatency{}
	}
	return rvLatency{n: len(lats), p50: lats[len(lats)/2].Round(10 * time.Microsecond),
		p99: lats[len(lats)*99/100].Round(10 * time.Microsecond)}
}

func (r rvLatency) String() string { return fmt.Sprintf("%v / %v", r.p50, r.p99) }

// rvCoordResult is what one coordination window measured.
type rvCoordResult struct {
	asked, done, lost int
	rate              float64       // coordinations per second
	serverCPU         float64       // % of one core over the window, the servers together
	loadCPU           float64       // the load generator's (its workers and the benchmark process), the same
	cpuPer            time.Duration // server CPU per coordination
	all               rvLatency
	same, cross       rvLatency // of pairs on one server, and on two
	udps              int64     // `udp` frames (the second step), to both sides
}

func (r rvCoordResult) String() string {
	s := fmt.Sprintf("%d asks, %d coordinations (%.0f/s, p50 %v, p99 %v), %d lost; server CPU %.0f%% (%v per coordination), "+
		"load generator CPU %.0f%%; %d udp frames", r.asked, r.done, r.rate, r.all.p50, r.all.p99, r.lost, r.serverCPU, r.cpuPer,
		r.loadCPU, r.udps)
	if r.same.n > 0 && r.cross.n > 0 {
		s += fmt.Sprintf("; p50 / p99 on one server %v (%d), across two %v (%d)", r.same, r.same.n, r.cross, r.cross.n)
	}
	return s
}

// rvWorkerWindow is what one load worker's share of a coordination
// window measured: its latencies whole, so that the window's quantiles
// are of every worker's samples together.
type rvWorkerWindow struct {
	Asked, Done, Lost int
	Lats              [2][]time.Duration // of pairs on one server, and on two
	UDPs              int64
}

// window has this worker's registered peers of index below req.N ask for
// punch sessions until req.Until, req.InFlight asks outstanding, counts
// those whose punch reached both sides by then, and lets the rest finish.
func (l *rvPeers) window(req rvRequest) (rvWorkerWindow, error) {
	l.mu.Lock()
	n := below(l.all, l.n, req.N)
	l.sem = make(chan struct{}, req.InFlight)
	l.done, l.lats = 0, [2][]time.Duration{}
	clear(l.halves)
	l.mu.Unlock()
	udps0 := l.udps.Load()
	var res rvWorkerWindow
	var err error
	res.Asked, res.Lost, err = l.askUntil(n, req.Pairs, req.Until)
	l.mu.Lock()
	res.Done = l.done
	l.mu.Unlock()
	res.Lost += l.drain()
	res.UDPs = l.udps.Load() - udps0
	l.mu.Lock()
	res.Lats = l.lats
	l.mu.Unlock()
	return res, err
}

// mergeWindows is the result of a window the workers' parts make up,
// which took took and cost the servers and the load generator the CPU
// times given.
func mergeWindows(parts []rvWorkerWindow, took, serverCPU, loadCPU time.Duration) rvCoordResult {
	var res rvCoordResult
	var lats [2][]time.Duration
	for _, p := range parts {
		res.asked, res.done, res.lost, res.udps = res.asked+p.Asked, res.done+p.Done, res.lost+p.Lost, res.udps+p.UDPs
		lats[0], lats[1] = append(lats[0], p.Lats[0]...), append(lats[1], p.Lats[1]...)
	}
	res.rate = float64(res.done) / took.Seconds()
	res.serverCPU = cpuPercent(serverCPU, took)
	res.loadCPU = cpuPercent(loadCPU, took)
	if res.done > 0 {
		res.cpuPer = (serverCPU / time.Duration(res.done)).Round(time.Microsecond)
	}
	res.all = latencyOf(slices.Concat(lats[0], lats[1]))
	res.same, res.cross = latencyOf(lats[0]), latencyOf(lats[1])
	return res
}

// cpuOf is the CPU time the processes have used so far, together.
func cpuOf(tb testing.TB, ps []*process) time.Duration {
	var cpu time.Duration
	for _, p := range ps {
		cpu += p.usage(tb).CPU
	}
	return cpu
}

// askUntil sends asks among this worker's first n peers until deadline,
// as many outstanding as l.sem holds, and returns how many it sent and how
// many it gave up on (no punch to both sides within rvAskTimeout).
func (l *rvPeers) askUntil(n int, kinds rvPairs, deadline time.Time) (asked, lost int, err error) {
	sweep := time.NewTicker(250 * time.Millisecond)
	defer sweep.Stop()
	pairs := rvPairGen{l: l, n: n}
	for {
		acquired := false
		for !acquired && time.Now().Before(deadline) {
			select {
			case l.sem <- struct{}{}:
				acquired = true
			case <-sweep.C:
				lost += l.sweepAsks(time.Now().Add(-rvAskTimeout))
			case <-time.After(time.Until(deadline)):
			}
		}
		if !acquired {
			return asked, lost, nil
		}
		asker, target, ok := pairs.next(kinds.cross(asked))
		if !ok {
			return asked, lost, fmt.Errorf("coordination window ran out of distinct pairs among %d peers at %d asks "+
				"(a shorter window, more peers or fewer load workers)", n, asked)
		}
		l.mu.Lock()
		l.asks[[2]int32{asker.i, target.i}] = time.Now()
		l.mu.Unlock()
		if err := asker.send(&rendezvous.Message{Type: rendezvous.TypeConnect, Peer: target.pub}); err != nil {
			return asked, lost, fmt.Errorf("peer %d: connect: %w", asker.i, err)
		}
		asked++
	}
}

// rvPairGen yields distinct asks among a worker's first n peers (by
// position in its list). Candidate j goes from peer j mod n to peer
// j mod n + r, r = 1 + j/n (mod n): r stays below n/2 in a window, so no
// unordered pair is asked twice and neither does the server's pair window
// (which drops the other side's ask of a pair within 3 s) ever hold an
// ask back. Each asker has at most one ask outstanding. Pairs on one
// server and pairs on two are drawn from the candidates separately, each
// kind from where it left off. Workers hold disjoint peers, so no two ask
// the same pair.
type rvPairGen struct {
	l    *rvPeers
	n    int    // this worker's first n peers
	from [2]int // the next candidate to look at: for pairs on one server, on two
}

// next returns the next pair on two servers if cross, else on one; false
// when the candidates ran out.
func (g *rvPairGen) next(cross bool) (asker, target *rvPeer, ok bool) {
	kind := 0
	if cross {
		kind = 1
	}
	if g.n/2 <= 1 {
		return nil, nil, false // no r with 1 <= r < n/2
	}
	for j := g.from[kind]; ; j++ {
		a, r := j%g.n, 1+j/g.n
		if r >= g.n/2 {
			return nil, nil, false
		}
		asker, target = g.l.all[a], g.l.all[(a+r)%g.n]
		if (g.l.node(asker.i) != g.l.node(target.i)) == cross {
			g.from[kind] = j + 1
			return asker, target, true
		}
	}
}

// drain lets a window's asks in flight finish (or time out), and the `udp`
// frames that follow each punch after the server's 1 s UDP wait arrive,
// so that what comes next is at rest. It returns how many asks timed out.
func (l *rvPeers) drain() int {
	for wait := time.Now().Add(rvAskTimeout); ; time.Sleep(50 * time.Millisecond) {
		l.mu.Lock()
		left := len(l.asks)
		l.mu.Unlock()
		if left == 0 || time.Now().After(wait) {
			break
		}
	}
	lost := l.sweepAsks(time.Now())
	time.Sleep(1500 * time.Millisecond)
	return lost
}

// sweepAsks drops the outstanding asks sent before cutoff, freeing their
// tokens, and returns how many.
func (l *rvPeers) sweepAsks(cutoff time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	lost := 0
	for k, sent := range l.asks {
		if sent.Before(cutoff) {
			delete(l.asks, k)
			lost++
			<-l.sem
		}
	}
	return lost
}
