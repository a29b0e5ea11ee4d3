package rendezvous

import (
	"context"
	"encoding/json"
	"math"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/sirupsen/logrus"

	"github.com/warren-p2p/warren/identity"
	"github.com/warren-p2p/warren/punch"
)

// Relay choice (doc.go, "Clustering"): every node publishes its load on
// loadSubject every LoadInterval, and keeps the others' latest, for the
// sessions it coordinates to relay at the node nearest both peers.
const (
	loadSubject = "warren.load"
	cmLoad      = "load" // to loadSubject: the sender's relay load, or that it leaves
	// relayLoadCap is the load past which a node is no relay's choice
	// while one under it is.
	relayLoadCap = 0.8
	// loadPeriods is how many of its intervals a node's load counts
	// without a newer one: a node not heard from for that long is gone.
	loadPeriods = 3
	// maxReportedRTTs bounds the round trips a peer reports (one per
	// node it lists) and an address's length in them.
	maxReportedRTTs = 16
	maxRTTAddrLen   = 256
	// relayRTTStep is the step round trips are compared in (ms), as the
	// client's ranking does: nodes about as near are as good, and the
	// earlier (the choosing node first) keeps the relay, rather than
	// measurement noise sending it elsewhere.
	relayRTTStep = 10
)

// loadReport is a node's relay load as it publishes it.
type loadReport struct {
	Public      string  `json:"public"`
	Relays      int     `json:"relays"`        // relays under way
	MaxRelays   int     `json:"max_relays"`    // ServerConfig.MaxRelays
	BytesPerSec float64 `json:"bytes_per_sec"` // relayed over the last interval
	Capacity    int64   `json:"capacity"`      // ServerConfig.RelayCapacity
	IntervalMs  int64   `json:"interval_ms"`   // until the next report
	Leave       bool    `json:"leave,omitempty"`
}

// fraction is the load as a share of what the node may carry: the
// larger of its relays' share of MaxRelays and its bytes' of Capacity.
func (r *loadReport) fraction() float64 {
	f := r.BytesPerSec / float64(r.Capacity)
	if r.MaxRelays > 0 {
		f = max(f, float64(r.Relays)/float64(r.MaxRelays))
	}
	return f
}

// valid reports whether r is a load report a node can act on.
func (r *loadReport) valid() bool {
	_, _, err := net.SplitHostPort(r.Public)
	return err == nil && r.Capacity > 0 && r.Relays >= 0 && r.MaxRelays >= 0 &&
		r.BytesPerSec >= 0 && !math.IsInf(r.BytesPerSec, 0) && !math.IsNaN(r.BytesPerSec) &&
		r.IntervalMs >= 10 && r.IntervalMs <= time.Minute.Milliseconds()
}

// relayNode is a node a relay may be chosen at, as the choosing node
// knows it.
type relayNode struct {
	node, public string
	load         float64   // fraction
	until        time.Time // the load counts until then
}

// publishLoads publishes this node's load every LoadInterval until ctx
// ends. The bytes per second are those relayed since the last report.
func (c *cluster) publishLoads(ctx context.Context) {
	t := time.NewTicker(c.cfg.LoadInterval)
	defer t.Stop()
	last, lastBytes := time.Now(), c.s.relayed.Load()
	for {
		now, bytes := time.Now(), c.s.relayed.Load()
		r := c.s.loadReport(float64(bytes-lastBytes)/max(now.Sub(last).Seconds(), 1e-3), c.cfg)
		last, lastBytes = now, bytes
		c.mu.Lock()
		c.ownLoad = r.fraction()
		c.mu.Unlock()
		c.publish(loadSubject, &clusterMsg{Type: cmLoad, Load: r})
		select {
		case <-t.C:
		case <-ctx.Done():
			// Gone: the others stop choosing this node now, not after
			// loadPeriods (a node that crashes is forgotten then).
			r.Leave = true
			c.publish(loadSubject, &clusterMsg{Type: cmLoad, Load: r})
			c.nc.FlushTimeout(time.Second)
			return
		}
	}
}

// loadReport is the server's relay load now, given the bytes per second
// it relayed lately.
func (s *Server) loadReport(bytesPerSec float64, cfg ClusterConfig) *loadReport {
	s.relays.mu.Lock()
	relays := len(s.relays.pairs)
	s.relays.mu.Unlock()
	maxRelays := s.cfg.MaxRelays
	if maxRelays == unlimited {
		maxRelays = 0
	}
	return &loadReport{Public: cfg.Public, Relays: relays, MaxRelays: maxRelays, BytesPerSec: bytesPerSec,
		Capacity: s.cfg.RelayCapacity, IntervalMs: cfg.LoadInterval.Milliseconds()}
}

// onLoad records another node's load, or forgets a node that leaves.
func (c *cluster) onLoad(msg *nats.Msg) {
	var m clusterMsg
	if err := json.Unmarshal(msg.Data, &m); err != nil || m.Node == c.cfg.Node || !validNodeName(m.Node) ||
		m.Type != cmLoad || m.Load == nil || !m.Load.valid() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	_, known := c.loads[m.Node]
	log := c.log.WithFields(logrus.Fields{"relay_node": m.Node, "public": m.Load.Public})
	switch {
	case m.Load.Leave:
		if known {
			delete(c.loads, m.Node)
			log.Info("cluster: node left; relays are chosen among the others")
		}
		return
	case !known && len(c.loads) >= maxClusterNodes:
		return
	case !known:
		log.Info("cluster: node relays; relays are chosen among it and the others")
	}
	c.loads[m.Node] = relayNode{node: m.Node, public: m.Load.Public, load: m.Load.fraction(),
		until: time.Now().Add(loadPeriods * time.Duration(m.Load.IntervalMs) * time.Millisecond)}
}

// maxClusterNodes bounds the nodes a node keeps loads of.
const maxClusterNodes = 1024

// relayNodes returns the nodes a relay may be chosen at now: this node
// first, then the others heard from lately, by name.
func (c *cluster) relayNodes(now time.Time) []relayNode {
	c.mu.Lock()
	defer c.mu.Unlock()
	own := c.ownLoad
	if !c.s.cfg.Relay {
		// Refused here: chosen only if no other node is known.
		own = math.Inf(1)
	}
	nodes := []relayNode{{node: c.cfg.Node, public: c.cfg.Public, load: own}}
	for name, n := range c.loads {
		if now.After(n.until) {
			delete(c.loads, name)
			c.log.WithFields(logrus.Fields{"relay_node": name, "public": n.public}).
				Warn("cluster: node not heard from for three of its load intervals; no longer chosen for relays")
			continue
		}
		nodes = append(nodes, n)
	}
	slices.SortFunc(nodes[1:], func(a, b relayNode) int { return strings.Compare(a.node, b.node) })
	return nodes
}

// chooseRelay returns the index in nodes (the choosing node first) of the
// node to relay a pair whose round trips to the nodes (by public address,
// in ms) are a and b: of the nodes under relayLoadCap that both peers
// measured, the one that minimises the larger of the two, in steps of
// relayRTTStep (ties to the earlier); none such, the choosing node if under the cap, else the
// least loaded. A peer that reported no round trips (a daemon of before
// relay choice, which cannot open a relay elsewhere) keeps the pair at
// the choosing node.
func chooseRelay(nodes []relayNode, a, b map[string]float64) int {
	if len(a) == 0 || len(b) == 0 {
		return 0
	}
	best, bestCost := -1, math.Inf(1)
	for i, n := range nodes {
		ra, okA := a[n.public]
		rb, okB := b[n.public]
		if n.load >= relayLoadCap || !okA || !okB {
			continue
		}
		if cost := math.Floor(max(ra, rb) / relayRTTStep); cost < bestCost {
			best, bestCost = i, cost
		}
	}
	switch {
	case best >= 0:
		return best
	case nodes[0].load < relayLoadCap:
		return 0
	}
	least := 0
	for i, n := range nodes {
		if n.load < nodes[least].load {
			least = i
		}
	}
	return least
}

// relayPass is where and how one side of a session opens its relay:
// at addr ("" for the server it registered with) with a token, or with
// an authorisation at another node.
type relayPass struct {
	addr, token, auth string
}

// relayPasses returns both sides' relay passes of session id between
// keys (by side), whose round trips to the nodes are rtts, and the node
// chosen. On a single node, and when the choice is this node, they are
// tokens (cross says whether the sides are on different nodes, which
// must then be told this node's address); at another node,
// authorisations for it, valid for RelayWindow.
func (s *Server) relayPasses(id punch.SessionID, keys [2]identity.PublicKey, rtts [2]map[string]float64, cross bool) ([2]relayPass, string) {
	var passes [2]relayPass
	c := s.cluster
	if c == nil {
		for i := range passes {
			passes[i].token = s.relaySecret.token(id, i, keys[i]).String()
		}
		return passes, ""
	}
	nodes := c.relayNodes(time.Now())
	n := nodes[chooseRelay(nodes, rtts[0], rtts[1])]
	for i := range passes {
		switch {
		case n.node != c.cfg.Node:
			a := signRelayAuth(s.cfg.Key, n.node, id, i, keys, time.Now().Add(s.cfg.RelayWindow))
			passes[i] = relayPass{addr: n.public, auth: a.encode()}
		case cross:
			passes[i] = relayPass{addr: c.cfg.Public, token: s.relaySecret.token(id, i, keys[i]).String()}
		default:
			passes[i].token = s.relaySecret.token(id, i, keys[i]).String()
		}
	}
	return passes, n.node
}

// apply puts the pass in a punch instruction.
func (p relayPass) apply(m *Message) {
	m.Relay, m.RelayToken, m.RelayAuth = p.addr, p.token, p.auth
}

// rttsOf returns p's round trips to the nodes as p reported them, with
// its ping's round trip to this node where it reported none; nil if it
// reported none at all (see chooseRelay).
func (c *cluster) rttsOf(p *peerConn) map[string]float64 {
	if c == nil || len(p.rtts) == 0 {
		return nil
	}
	out := make(map[string]float64, len(p.rtts)+1)
	for a, ms := range p.rtts {
		out[a] = ms
	}
	if _, ok := out[c.cfg.Public]; !ok {
		if _, rtt := p.natAndRTT(); rtt > 0 {
			out[c.cfg.Public] = float64(rtt.Microseconds()) / 1000
		}
	}
	return out
}

// cleanRTTs keeps the round trips a peer (or another node, for its peer)
// reported that a node can use: at most maxReportedRTTs, each to a
// host:port, in (0, 60 s).
func cleanRTTs(in map[string]float64) map[string]float64 {
	var out map[string]float64
	for a, ms := range in {
		if len(out) == maxReportedRTTs {
			break
		}
		if len(a) > maxRTTAddrLen || !(ms > 0 && ms < 60e3) {
			continue
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			continue
		}
		if out == nil {
			out = make(map[string]float64)
		}
		out[a] = ms
	}
	return out
}
