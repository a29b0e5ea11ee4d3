package rendezvous

import (
	"net"
	"net/netip"
	"sort"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/time/rate"
)

// The server's defences against bad clients: who may open a connection
// (guard), how fast one source's UDP probes are answered (probeLimits),
// and how refusals reach the log (refusals). All of them count by source:
// an IPv4 address, or an IPv6 address's /64, since one subscriber usually
// holds a whole /64 and could otherwise pick a fresh address per
// connection.

// WithoutLimits returns c with every per-source, rate and global
// connection limit lifted, and the relay's limits per key: for load tests
// from one machine (`warren rendezvous -limits=false`), never for a
// public server.
func (c ServerConfig) WithoutLimits() ServerConfig {
	c.MaxConns, c.MaxHandshakes = unlimited, unlimited
	c.MaxConnsPerSource, c.MaxHandshakesPerSource = unlimited, unlimited
	c.ConnRate, c.ConnectRate, c.ProbeRate = unlimited, unlimited, unlimited
	c.RelayRate, c.RelayDailyBytes, c.MaxRelaysPerKey = unlimited, unlimited, unlimited
	return c
}

// sourceOf returns the source an address counts under.
func sourceOf(a netip.Addr) netip.Addr {
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}

// sourceOfAddr returns the source of a connection's remote address, or
// the zero Addr if it is not an IP address.
func sourceOfAddr(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.TCPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return sourceOf(ip)
	case *net.UDPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return sourceOf(ip)
	}
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return sourceOf(ap.Addr())
	}
	return netip.Addr{}
}

// Reasons for refusing a connection, a request or a probe: the names of
// the counts in a refusal summary.
const (
	refusedConns           = "over_max_conns"
	refusedHandshakes      = "over_max_handshakes"
	refusedShed            = "shed_handshake"
	refusedSourceConns     = "over_source_conns"
	refusedSourceHandshake = "over_source_handshakes"
	refusedSourceRate      = "over_conn_rate"
	refusedConnectRate     = "over_connect_rate"
	refusedProbeRate       = "over_probe_rate"
	failedHandshake        = "failed_handshake"
	refusedRelayOff        = "relay_off"
	refusedRelaySession    = "relay_bad_session"
	refusedRelays          = "over_max_relays"
	refusedRelayToken      = "relay_bad_token"
	refusedRelayExpired    = "relay_expired"
	refusedKeyRelays       = "over_key_relays"
	refusedRelayBudget     = "over_relay_budget"
	evictedRelay           = "relay_evicted"
)

// unlimited is how a negative limit in ServerConfig is held.
const unlimited = -1

// limitOf turns a ServerConfig rate (negative: none) into a rate.Limit.
func limitOf(r float64) rate.Limit {
	if r < 0 {
		return rate.Inf
	}
	return rate.Limit(r)
}

// over reports whether n has reached limit max (unlimited never is).
func over(n, max int) bool { return max != unlimited && n >= max }

// probeLimits rates the UDP probes answered per source. UDP sources can
// be forged, so the table is capped: sources beyond maxProbeSources share
// one bucket, which forged floods then exhaust instead of memory.
type probeLimits struct {
	rate  rate.Limit
	burst int

	// mu guards the fields below.
	mu       sync.Mutex
	sources  map[netip.Addr]*rate.Limiter
	overflow *rate.Limiter
	peak     int
}

// maxProbeSources caps the sources probeLimits tracks one by one.
const maxProbeSources = 1 << 14

func newProbeLimits(cfg ServerConfig) *probeLimits {
	r := limitOf(cfg.ProbeRate)
	return &probeLimits{rate: r, burst: cfg.ProbeBurst,
		sources: make(map[netip.Addr]*rate.Limiter), overflow: rate.NewLimiter(r, cfg.ProbeBurst)}
}

// allow reports whether a probe from src may be answered now.
func (l *probeLimits) allow(src netip.Addr, now time.Time) bool {
	if l.rate == rate.Inf {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	lim := l.sources[src]
	if lim == nil {
		if len(l.sources) >= maxProbeSources {
			return l.overflow.AllowN(now, 1)
		}
		lim = rate.NewLimiter(l.rate, l.burst)
		l.sources[src] = lim
		l.peak = max(l.peak, len(l.sources))
	}
	return lim.AllowN(now, 1)
}

// sweep forgets sources whose bucket has refilled.
func (l *probeLimits) sweep(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for src, lim := range l.sources {
		if lim.TokensAt(now) >= float64(l.burst) {
			delete(l.sources, src)
		}
	}
	l.sources = shrink(l.sources, &l.peak)
}

// refusals counts refusals and failures per source and logs them as one
// summary line per source per interval, so that a flood cannot flood the
// log. Past maxLoggedSources sources in one interval, the rest are
// summed into one line.
type refusals struct {
	log      logrus.FieldLogger
	interval time.Duration

	// mu guards the fields below.
	mu     sync.Mutex
	since  time.Time
	counts map[netip.Addr]*refused
	others map[string]int // sources past maxLoggedSources
	nother int            // how many such sources
}

// refused is one source's refusals in an interval.
type refused struct {
	n       map[string]int // by reason
	lastErr error          // the last failure's error, if it had one
}

// maxLoggedSources caps the sources one interval's summary names.
const maxLoggedSources = 256

func newRefusals(log logrus.FieldLogger, interval time.Duration) *refusals {
	return &refusals{log: log, interval: interval, since: time.Now(), counts: make(map[netip.Addr]*refused)}
}

// note counts one refusal of src for reason.
func (r *refusals) note(src netip.Addr, reason string) { r.noteErr(src, reason, nil) }

// noteErr counts one failure of src for reason, with its error, which the
// summary shows if it is the source's last.
func (r *refusals) noteErr(src netip.Addr, reason string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.counts[src]
	if c == nil {
		if len(r.counts) >= maxLoggedSources {
			if r.others == nil {
				r.others = make(map[string]int)
			}
			r.others[reason]++
			r.nother++
			return
		}
		c = &refused{n: make(map[string]int, 2)}
		r.counts[src] = c
	}
	c.n[reason]++
	if err != nil {
		c.lastErr = err
	}
}

// flush logs the interval's summary if the interval is over, or if force.
func (r *refusals) flush(now time.Time, force bool) {
	r.mu.Lock()
	if !force && now.Sub(r.since) < r.interval {
		r.mu.Unlock()
		return
	}
	counts, others, nother, since := r.counts, r.others, r.nother, r.since
	r.counts, r.others, r.nother, r.since = make(map[netip.Addr]*refused), nil, 0, now
	r.mu.Unlock()

	srcs := make([]netip.Addr, 0, len(counts))
	for src := range counts {
		srcs = append(srcs, src)
	}
	sort.Slice(srcs, func(i, j int) bool { return srcs[i].Less(srcs[j]) })
	period := now.Sub(since).Round(time.Second)
	for _, src := range srcs {
		f := logrus.Fields{"source": src.String(), "period": period}
		for reason, n := range counts[src].n {
			f[reason] = n
		}
		if err := counts[src].lastErr; err != nil {
			f["last_error"] = err.Error()
		}
		r.log.WithFields(f).Warn("refused or failed connections from one source")
	}
	if nother > 0 {
		f := logrus.Fields{"sources": nother, "period": period}
		for reason, n := range others {
			f[reason] = n
		}
		r.log.WithFields(f).Warn("refused or failed connections from further sources")
	}
}

// shrinkMin is the peak size below which shrink leaves a map alone.
const shrinkMin = 64

// shrink returns m, or a copy of it when it holds under a quarter of the
// most it held (*peak) since it was last copied: a Go map keeps the
// buckets of its largest size, so a map that a burst grew would hold
// them for good. An empty map is replaced by a fresh one.
func shrink[K comparable, V any](m map[K]V, peak *int) map[K]V {
	n := len(m)
	*peak = max(*peak, n)
	if *peak < shrinkMin || n > *peak/4 {
		return m
	}
	out := make(map[K]V, n)
	for k, v := range m {
		out[k] = v
	}
	*peak = n
	return out
}
