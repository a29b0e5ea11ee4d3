package daemon

import (
	"bytes"
	"io"
	"net/http"
	"runtime"
	rtmetrics "runtime/metrics"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/warren-p2p/warren/forward"
	"github.com/warren-p2p/warren/link"
	"github.com/warren-p2p/warren/punch"
	"github.com/warren-p2p/warren/session"
)

// GET /metrics serves the daemon's metrics in the Prometheus text
// exposition format (version 0.0.4), written by hand: the format takes a
// few lines (exposition below), where prometheus/client_golang would bring
// protobuf and a dozen other modules into the daemon. Every value lives on
// the Daemon (punch counters) or its peers (link counters), or is read
// from forward's and link's Stats at scrape time; nothing is
// package-level.

// metricsContentType is the Content-Type of the text exposition format.
const metricsContentType = "text/plain; version=0.0.4; charset=utf-8"

// Punch results, as warren_punch_results_total and
// warren_punch_setup_seconds label them: the path of the link the session
// made, or "failed".
const resultFailed = "failed"

// punchResults lists every result, in the order they are reported.
func punchResults() []string {
	return []string{session.PathTCP, session.PathUDP, session.PathRelay, resultFailed}
}

// linkPaths lists the paths a link can take.
func linkPaths() []string { return []string{session.PathTCP, session.PathUDP, session.PathRelay} }

// Reasons a link went down, as warren_link_downs_total labels them.
const (
	downClosed      = "closed"           // keepalive failed, or the peer closed it
	downAddressGone = "address_gone"     // its local address went away
	downNewSession  = "peer_new_session" // the peer started a new punch session
	downShutdown    = "shutdown"         // the daemon stops, or the peer was removed
)

func downReasons() []string {
	return []string{downClosed, downAddressGone, downNewSession, downShutdown}
}

// downText is a down reason as the "link down" log line says it.
func downText(reason string) string {
	switch reason {
	case downClosed:
		return "link closed"
	case downAddressGone:
		return "the link's local address is gone"
	case downNewSession:
		return "peer started a new punch session"
	case downShutdown:
		return "shutting down"
	}
	return reason
}

// setupBuckets are the upper bounds of warren_punch_setup_seconds: from a
// LAN punch (ms) to a relay after the direct paths' 3 s and the 10 s
// default punch timeout.
func setupBuckets() []float64 { return []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10} }

// punchKey is a punch session's NAT pair and strategy.
type punchKey struct{ selfNAT, peerNAT, strategy string }

type punchResultKey struct {
	punchKey
	result string
}

// metrics holds the daemon's own counters: those not read from another
// component's Stats.
type metrics struct {
	buckets []float64

	mu       sync.Mutex // guards the maps
	attempts map[punchKey]uint64
	results  map[punchResultKey]uint64
	setup    map[string]*histogram // by result
}

func newMetrics() *metrics {
	m := &metrics{
		buckets:  setupBuckets(),
		attempts: map[punchKey]uint64{},
		results:  map[punchResultKey]uint64{},
		setup:    map[string]*histogram{},
	}
	for _, r := range punchResults() {
		m.setup[r] = newHistogram(len(m.buckets))
	}
	return m
}

// natLabel is a NAT type for punch labels: warren status's name without a
// sequential NAT's step ("symseq(+1)" is "symseq"), so that the label set
// stays small.
func natLabel(n punch.NAT) string {
	s := n.String()
	if base, _, ok := strings.Cut(s, "("); ok && strings.HasPrefix(s, "symseq(") {
		return base
	}
	return s
}

// punchStarted counts a punch session's attempt.
func (m *metrics) punchStarted(k punchKey) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.attempts[k]++
}

// punchEnded counts a punch session's result: the path of l, or failed.
func (m *metrics) punchEnded(k punchKey, l *link.Link, took time.Duration) {
	result := resultFailed
	if l != nil {
		result = l.Path()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.results[punchResultKey{k, result}]++
	h := m.setup[result]
	if h == nil { // a path this file does not know yet
		h = newHistogram(len(m.buckets))
		m.setup[result] = h
	}
	h.observe(m.buckets, took.Seconds())
}

// histogram counts observations into buckets; not safe for concurrent
// use.
type histogram struct {
	counts []uint64 // per bucket, not cumulative; the last one is +Inf's
	sum    float64
	count  uint64
}

func newHistogram(buckets int) *histogram { return &histogram{counts: make([]uint64, buckets+1)} }

func (h *histogram) observe(bounds []float64, v float64) {
	i, _ := slices.BinarySearch(bounds, v) // the first bound >= v: buckets are "le"
	h.counts[i]++
	h.sum += v
	h.count++
}

func (h *histogram) clone() *histogram {
	c := *h
	c.counts = slices.Clone(h.counts)
	return &c
}

// linkCounters are a peer's link counters; peer.mu guards them.
type linkCounters struct {
	// live holds the links whose bytes are not yet in the totals below:
	// the current link, and relays that drain after an upgrade.
	live []*link.Link
	// Bytes of links that are gone, all paths and relay only.
	bytesIn, bytesOut, relayIn, relayOut int64
	upgrades                             uint64
	downs                                map[string]uint64
	// addrGone is the link dropLinkFrom closed, so that its end is
	// counted as address_gone.
	addrGone *link.Link
}

// addLink starts counting l. Call with p.mu held.
func (c *linkCounters) addLink(l *link.Link) {
	if !slices.Contains(c.live, l) {
		c.live = append(c.live, l)
	}
}

// retireLink moves l's bytes into the totals; l must be closed, so that
// they no longer grow (much). Call with p.mu held.
func (c *linkCounters) retireLink(l *link.Link) {
	i := slices.Index(c.live, l)
	if i < 0 {
		return
	}
	c.live = slices.Delete(c.live, i, i+1)
	s := l.Stats()
	c.bytesIn += s.BytesIn
	c.bytesOut += s.BytesOut
	if l.Path() == session.PathRelay {
		c.relayIn += s.BytesIn
		c.relayOut += s.BytesOut
	}
}

func (c *linkCounters) down(reason string) {
	if c.downs == nil {
		c.downs = map[string]uint64{}
	}
	c.downs[reason]++
}

// retireLink moves a closed link's bytes into p's totals.
func (p *peer) retireLink(l *link.Link) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.counters.retireLink(l)
}

// linkDown counts the end of p's link.
func (p *peer) linkDown(reason string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.counters.down(reason)
}

// linkUpgraded counts an upgrade from the relay to a direct path.
func (p *peer) linkUpgraded() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.counters.upgrades++
}

// endedByAddressChange reports whether l was closed because its local
// address went away.
func (p *peer) endedByAddressChange(l *link.Link) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	gone := p.counters.addrGone == l
	if gone {
		p.counters.addrGone = nil
	}
	return gone
}

// peerMetrics is a peer's part of a scrape.
type peerMetrics struct {
	name                                 string
	path                                 string // the current link's, "" without one
	rtt                                  time.Duration
	streams                              int64 // on every live link
	bytesIn, bytesOut, relayIn, relayOut int64
	relayLinks                           int
	upgrades                             uint64
	downs                                map[string]uint64
}

func (p *peer) metrics() peerMetrics {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := &p.counters
	pm := peerMetrics{name: p.name, bytesIn: c.bytesIn, bytesOut: c.bytesOut, relayIn: c.relayIn, relayOut: c.relayOut,
		upgrades: c.upgrades, downs: map[string]uint64{}}
	for r, n := range c.downs {
		pm.downs[r] = n
	}
	if p.link != nil {
		pm.path = p.link.Path()
		pm.rtt = p.link.Stats().RTT
	}
	for _, l := range c.live {
		s := l.Stats()
		pm.streams += s.Streams
		pm.bytesIn += s.BytesIn
		pm.bytesOut += s.BytesOut
		if l.Path() == session.PathRelay {
			pm.relayIn += s.BytesIn
			pm.relayOut += s.BytesOut
			pm.relayLinks++
		}
	}
	return pm
}

// Metrics writes every metric in the Prometheus text format.
func (d *Daemon) Metrics(w io.Writer) error {
	var e exposition
	d.punchMetrics(&e)
	d.linkMetrics(&e)
	d.forwardMetrics(&e)
	d.processMetrics(&e)
	return e.write(w)
}

// punchMetrics adds the punch sessions' families.
func (d *Daemon) punchMetrics(e *exposition) {
	d.metrics.mu.Lock()
	defer d.metrics.mu.Unlock()
	attempts := e.family("warren_punch_attempts_total", counter,
		"Punch sessions started, by this side's NAT type, the peer's and the strategy punch.Choose picked for the pair.",
		"self_nat", "peer_nat", "strategy")
	for k, n := range d.metrics.attempts {
		attempts.set(float64(n), k.selfNAT, k.peerNAT, k.strategy)
	}
	results := e.family("warren_punch_results_total", counter,
		"Punch sessions ended, by NAT pair, strategy and result: the path of the link they made (direct-tcp, direct-udp, relay) or failed.",
		"self_nat", "peer_nat", "strategy", "result")
	for k, n := range d.metrics.results {
		results.set(float64(n), k.selfNAT, k.peerNAT, k.strategy, k.result)
	}
	setup := e.histogram("warren_punch_setup_seconds",
		"Time from a punch instruction to the session's link (or its failure), by result.",
		d.metrics.buckets, "result")
	for r, h := range d.metrics.setup {
		setup.observed(h.clone(), r)
	}
}

// linkMetrics adds the links' families, per configured peer.
func (d *Daemon) linkMetrics(e *exposition) {
	up := e.family("warren_link_up", gauge, "1 for the path of the peer's current link, 0 for the other paths.", "peer", "path")
	rtt := e.family("warren_link_rtt_seconds", gauge, "Round trip of the peer's current link, at its last keepalive or ping.", "peer")
	bytesTotal := e.family("warren_link_bytes_total", counter,
		"Bytes on the wire (TLS and framing included) on links to the peer, in = received from it, out = sent to it.", "peer", "direction")
	streams := e.family("warren_link_streams", gauge, "Streams open on links to the peer, both directions.", "peer")
	upgrades := e.family("warren_link_upgrades_total", counter, "Links to the peer moved from the relay to a direct path.", "peer")
	downs := e.family("warren_link_downs_total", counter, "Links to the peer that went down, by reason.", "peer", "reason")
	relayLinks := e.family("warren_relay_links", gauge, "Links carried by the rendezvous server's relay now, draining ones included.")
	relayBytes := e.family("warren_relay_bytes_total", counter,
		"Bytes on the wire on links to the peer that went through the relay (part of warren_link_bytes_total).", "peer", "direction")
	relayLinks.set(0)
	for _, p := range d.peerList() {
		pm := p.metrics()
		for _, path := range linkPaths() {
			v := 0.0
			if path == pm.path {
				v = 1
			}
			up.set(v, pm.name, path)
		}
		if pm.path != "" && pm.rtt > 0 {
			rtt.set(pm.rtt.Seconds(), pm.name)
		}
		bytesTotal.set(float64(pm.bytesIn), pm.name, "in")
		bytesTotal.set(float64(pm.bytesOut), pm.name, "out")
		streams.set(float64(pm.streams), pm.name)
		upgrades.set(float64(pm.upgrades), pm.name)
		for _, r := range downReasons() {
			downs.set(float64(pm.downs[r]), pm.name, r)
		}
		relayLinks.add(float64(pm.relayLinks))
		relayBytes.set(float64(pm.relayIn), pm.name, "in")
		relayBytes.set(float64(pm.relayOut), pm.name, "out")
	}
}

// forwardMetrics adds forwarding's families.
func (d *Daemon) forwardMetrics(e *exposition) {
	conns := e.family("warren_forward_connections_total", counter,
		"Connections handled: side=local by SOCKS5 and forward listeners (a UDP forward's client counts once), side=exit streams served for peers.", "side")
	active := e.family("warren_forward_active", gauge, "Connections (local) or streams (exit) open now.", "side")
	fwdBytes := e.family("warren_forward_bytes_total", counter,
		"Payload bytes of finished connections, in = received from the peer, out = sent to it.", "side", "direction")
	refusals := e.family("warren_forward_refusals_total", counter,
		"Connections refused, by reason: the reply code's name, no_link (no stream to the peer could be opened) or protocol_error (no valid request or reply).", "side", "reason")
	for _, side := range []struct {
		name string
		st   forward.Stats
	}{{"local", d.listeners.Stats()}, {"exit", d.exit.Stats()}} {
		conns.set(float64(side.st.Conns), side.name)
		active.set(float64(side.st.Active), side.name)
		fwdBytes.set(float64(side.st.BytesIn), side.name, "in")
		fwdBytes.set(float64(side.st.BytesOut), side.name, "out")
		for i := 1; i < forward.NumRefusals; i++ {
			refusals.set(float64(side.st.Refusals[i]), side.name, forward.RefusalName(i))
		}
	}
}

// processMetrics adds the daemon's and the process's families.
func (d *Daemon) processMetrics(e *exposition) {
	registered := 0.0
	select {
	case <-d.rv.Registered():
		registered = 1
	default:
	}
	e.family("warren_rendezvous_registered", gauge, "1 while registered with the rendezvous server.").set(registered)
	e.family("warren_nat_type", gauge, "This daemon's NAT type as warren status shows it (unknown until classified); always 1.", "type").
		set(1, d.natType())

	// The process, under client_golang's names, so that a leak shows on
	// the dashboards operators already have.
	e.family("go_goroutines", gauge, "Number of goroutines that currently exist.").set(float64(runtime.NumGoroutine()))
	live := []rtmetrics.Sample{{Name: "/gc/heap/live:bytes"}}
	rtmetrics.Read(live)
	if live[0].Value.Kind() == rtmetrics.KindUint64 {
		e.family("go_gc_heap_live_bytes", gauge, "Heap memory occupied by live objects that were marked by the previous GC.").
			set(float64(live[0].Value.Uint64()))
	}
}

func (d *Daemon) serveMetrics(w http.ResponseWriter, r *http.Request) {
	var buf bytes.Buffer
	if err := d.Metrics(&buf); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", metricsContentType)
	w.Write(buf.Bytes())
}
