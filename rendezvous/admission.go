package rendezvous

import (
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// guard admits TCP connections. A source's own limits come first (its
// caps and its rate of new connections), so that what one source does
// is refused as that source's, whatever the others do. The global pools
// are then shared, not first come first served: once half the handshake
// pool is in use, a new connection from a source that already has two in
// handshake is dropped with a probability that rises to 1 as the pool
// fills (random early drop, as OpenSSH's MaxStartups); and a full pool
// (handshakes, or connections of every kind) makes room for a source
// that holds less by closing the oldest connection of the source that
// holds the most. A few sources holding every slot therefore cannot keep
// anyone else out. guard has a lock of its own so that the accept loop
// never waits on the server's.
type guard struct {
	maxConns, maxHandshakes             int
	maxSourceConns, maxSourceHandshakes int
	rate                                rate.Limit
	burst                               int
	connectRate                         rate.Limit // all of one source's peers together
	connectBurst                        int
	random                              func() float64 // in [0, 1), for early drop

	// mu guards the fields below, and every admission's and
	// sourceState's.
	mu         sync.Mutex
	conns      int
	handshakes int
	sources    map[netip.Addr]*sourceState
	peak       int // most sources held since the map was last rebuilt
}

// sourceState is what the guard knows of one source.
type sourceState struct {
	conns, handshakes int
	held              []*admission  // its connections, oldest first
	lim               *rate.Limiter // new connections; nil without a rate
	connects          *rate.Limiter // its peers' connect requests; nil without a rate
}

// sourceConnectShare is how many peers' worth of connect requests (rate
// and burst) the peers of one source may make together: a source with
// many keys must not turn the server into a stream of punch instructions
// towards one peer.
const sourceConnectShare = 4

func newGuard(cfg ServerConfig) *guard {
	return &guard{
		maxConns: cfg.MaxConns, maxHandshakes: cfg.MaxHandshakes,
		maxSourceConns: cfg.MaxConnsPerSource, maxSourceHandshakes: cfg.MaxHandshakesPerSource,
		rate: limitOf(cfg.ConnRate), burst: cfg.ConnBurst,
		connectRate: limitOf(cfg.ConnectRate) * sourceConnectShare, connectBurst: cfg.ConnectBurst * sourceConnectShare,
		sources: make(map[netip.Addr]*sourceState), random: rand.Float64,
	}
}

// shedFrom is how many handshakes a source must have under way for its
// new connections to be dropped early.
const shedFrom = 2

// admission is one admitted connection's hold on the guard's counts.
type admission struct {
	g       *guard
	src     netip.Addr
	conn    net.Conn // closed if the connection is evicted
	shaking bool     // still counted as a handshake
	gone    bool     // its counts are given back (evicted or released)
}

// admit decides on a new connection c from src. It returns the reason for
// refusing it, or an admission to release when the connection ends.
func (g *guard) admit(src netip.Addr, c net.Conn, now time.Time) (*admission, string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	st := g.source(src)
	switch {
	case over(st.conns, g.maxSourceConns):
		return nil, refusedSourceConns
	case over(st.handshakes, g.maxSourceHandshakes):
		return nil, refusedSourceHandshake
	case st.lim != nil && !st.lim.AllowN(now, 1):
		return nil, refusedSourceRate
	}
	if over(g.conns, g.maxConns) && !g.evictLocked(st, false) {
		return nil, refusedConns
	}
	if g.shedLocked(st) {
		return nil, refusedShed
	}
	if over(g.handshakes, g.maxHandshakes) && !g.evictLocked(st, true) {
		return nil, refusedHandshakes
	}
	a := &admission{g: g, src: src, conn: c, shaking: true}
	st.held = append(st.held, a)
	st.conns++
	st.handshakes++
	g.conns++
	g.handshakes++
	return a, ""
}

// source returns src's state, made if new.
func (g *guard) source(src netip.Addr) *sourceState {
	st := g.sources[src]
	if st == nil {
		st = &sourceState{}
		if g.rate != rate.Inf {
			st.lim = rate.NewLimiter(g.rate, g.burst)
		}
		if g.connectRate != rate.Inf {
			st.connects = rate.NewLimiter(g.connectRate, g.connectBurst)
		}
		g.sources[src] = st
		g.peak = max(g.peak, len(g.sources))
	}
	return st
}

// shedLocked reports whether to drop a new connection from st early:
// past half the handshake pool, a source that already has shedFrom
// handshakes under way is dropped with a probability rising from 0 to 1
// as the pool fills. A source with fewer (a peer registering, or opening
// a relay and a probe at once) is never dropped early.
func (g *guard) shedLocked(st *sourceState) bool {
	if g.maxHandshakes == unlimited || st.handshakes < shedFrom {
		return false
	}
	start := g.maxHandshakes / 2
	if g.handshakes < start {
		return false
	}
	return g.random() < float64(g.handshakes-start+1)/float64(g.maxHandshakes-start+1)
}

// evictLocked makes room for a connection from st in a full pool (of
// handshakes if shaking, else of all connections): it closes the oldest
// connection in that pool of the source that holds the most there, if
// that source holds at least two more than st, so that no source loses a
// slot to one that would then hold more. It reports whether it did.
func (g *guard) evictLocked(st *sourceState, shaking bool) bool {
	count := func(s *sourceState) int {
		if shaking {
			return s.handshakes
		}
		return s.conns
	}
	var heavy *sourceState
	for _, s := range g.sources {
		if heavy == nil || count(s) > count(heavy) {
			heavy = s
		}
	}
	if heavy == nil || count(heavy) < count(st)+2 {
		return false
	}
	for _, a := range heavy.held {
		if a.shaking || !shaking {
			a.giveBackLocked()
			a.conn.Close()
			return true
		}
	}
	return false
}

// established ends the connection's handshake: it registered, or proved
// to be a probe or a relay. Its slot under the handshake caps is free.
func (a *admission) established() {
	a.g.mu.Lock()
	defer a.g.mu.Unlock()
	a.endHandshakeLocked()
}

func (a *admission) endHandshakeLocked() {
	if !a.shaking {
		return
	}
	a.shaking = false
	a.g.handshakes--
	a.g.sources[a.src].handshakes--
}

// release returns the connection's counts when it closes.
func (a *admission) release() {
	a.g.mu.Lock()
	defer a.g.mu.Unlock()
	a.giveBackLocked()
}

// giveBackLocked returns the connection's counts, once: when it is
// evicted (at once, so that its slot serves the newcomer) or released.
func (a *admission) giveBackLocked() {
	if a.gone {
		return
	}
	a.gone = true
	a.endHandshakeLocked()
	st := a.g.sources[a.src]
	a.g.conns--
	st.conns--
	if i := slices.Index(st.held, a); i >= 0 {
		st.held = slices.Delete(st.held, i, i+1)
	}
}

// allowConnect reports whether a connect request from a peer of the
// admitted connection's source is within the source's rate.
func (a *admission) allowConnect(now time.Time) bool {
	a.g.mu.Lock()
	defer a.g.mu.Unlock()
	st := a.g.sources[a.src]
	return st.connects == nil || st.connects.AllowN(now, 1)
}

// counts returns the connections and handshakes the guard holds, all of
// them and src's.
func (g *guard) counts(src netip.Addr) (conns, handshakes, srcConns, srcHandshakes int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if st := g.sources[src]; st != nil {
		srcConns, srcHandshakes = st.conns, st.handshakes
	}
	return g.conns, g.handshakes, srcConns, srcHandshakes
}

// sweep forgets sources that hold no connection and whose rate bucket
// has refilled (so that forgetting them changes nothing).
func (g *guard) sweep(now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for src, st := range g.sources {
		if st.conns == 0 && (st.lim == nil || st.lim.TokensAt(now) >= float64(g.burst)) &&
			(st.connects == nil || st.connects.TokensAt(now) >= float64(g.connectBurst)) {
			delete(g.sources, src)
		}
	}
	g.sources = shrink(g.sources, &g.peak)
}
