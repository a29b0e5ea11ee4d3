package rendezvous

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/warren-p2p/warren/identity"
	"github.com/warren-p2p/warren/internal/benchtest"
	"github.com/warren-p2p/warren/punch"
)

// TestChooseRelay: the node that minimises the larger of the two round
// trips, among nodes under 80% load that both peers measured; else the
// choosing node (the first), else the least loaded.
func TestChooseRelay(t *testing.T) {
	nodes := func(loads ...float64) []relayNode {
		var ns []relayNode
		for i, l := range loads {
			ns = append(ns, relayNode{node: string(rune('a' + i)), public: string(rune('a'+i)) + ":1", load: l})
		}
		return ns
	}
	rtts := func(ms ...float64) map[string]float64 {
		m := map[string]float64{}
		for i, v := range ms {
			if v > 0 {
				m[string(rune('a'+i))+":1"] = v
			}
		}
		return m
	}
	for _, tc := range []struct {
		name  string
		nodes []relayNode
		a, b  map[string]float64
		want  int
	}{
		{"nearest to both", nodes(0, 0, 0), rtts(50, 40, 5), rtts(60, 30, 10), 2},
		{"the larger round trip counts, not the sum", nodes(0, 0, 0), rtts(10, 30, 1), rtts(60, 30, 45), 1},
		{"a tie goes to the choosing node", nodes(0, 0, 0), rtts(20, 20, 30), rtts(20, 20, 30), 0},
		{"as near within a step: the choosing node", nodes(0, 0, 0), rtts(12, 11, 30), rtts(12, 10.5, 30), 0},
		{"a step nearer: the nearer", nodes(0, 0, 0), rtts(22, 11, 30), rtts(12, 10.5, 30), 1},
		{"a node at 80% is avoided", nodes(0, 0, 0.8), rtts(50, 40, 5), rtts(50, 40, 5), 1},
		{"a node one peer did not measure is not chosen", nodes(0, 0, 0), rtts(50, 40, 5), rtts(50, 40), 1},
		{"no peer round trips: the choosing node", nodes(0, 0, 0), rtts(50, 40, 5), nil, 0},
		{"all loaded: the least loaded", nodes(0.9, 0.85, 0.95), rtts(5, 40, 50), rtts(5, 40, 50), 1},
		{"none measured under the cap: the choosing node", nodes(0.1, 0.9), rtts(0, 5), rtts(0, 5), 0},
		{"none measured, the choosing node loaded: the least loaded", nodes(0.9, 0.2, 0.5), rtts(5), rtts(5), 1},
	} {
		if got := chooseRelay(tc.nodes, tc.a, tc.b); got != tc.want {
			t.Errorf("%s: chose %d, want %d", tc.name, got, tc.want)
		}
	}
}

// relayAt is where a punch instruction sends its receiver to relay.
func relayAt(pu Punch) string { return cmp.Or(pu.Relay, pu.Server) }

// openPunchRelay opens both sides of a pair's relay as their punch
// instructions (a, b by side) say: with tokens, or with authorisations
// at a node that did not issue the session.
func openPunchRelay(t *testing.T, ctx context.Context, a, b Punch) (net.Conn, net.Conn) {
	t.Helper()
	id, err := punch.ParseSessionID(a.Session)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.RelayAuth) == 0 {
		return openRelayPair(t, ctx, relayAt(a), id, [2]RelayToken{a.RelayToken, b.RelayToken})
	}
	var conns [2]net.Conn
	errs := make(chan error, 2)
	for side, pu := range []Punch{a, b} {
		go func() {
			c, err := net.Dial("tcp", relayAt(pu))
			if err == nil {
				conns[side], err = DialRelayAuth(ctx, c, id, side, pu.RelayAuth)
			}
			errs <- err
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatalf("relay at %s: %v", relayAt(a), err)
		}
	}
	t.Cleanup(func() { conns[0].Close(); conns[1].Close() })
	return conns[0], conns[1]
}

// carryBothWays sends a message each way through a relay.
func carryBothWays(t *testing.T, a, b net.Conn) {
	t.Helper()
	for _, d := range [][2]net.Conn{{a, b}, {b, a}} {
		msg := []byte("relayed at the chosen node")
		if _, err := d[0].Write(msg); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(msg))
		d[1].SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(d[1], got); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("relay: %q, %v", got, err)
		}
	}
}

// waitNodeLoad waits until every other node holds node i's load as at
// least (loaded) or under relayLoadCap.
func waitNodeLoad(t *testing.T, nodes []*testNode, i int, loaded bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for j, n := range nodes {
		for {
			c := n.srv.cluster
			c.mu.Lock()
			ln, known := c.loads[nodes[i].name]
			l := ln.load
			if j == i {
				l, known = c.ownLoad, true
			}
			c.mu.Unlock()
			if known && (l >= relayLoadCap) == loaded {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s holds %s's load as %.2f (known %v), want loaded=%v", n.name, nodes[i].name, l, known, loaded)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// waitAllLoads waits until every node knows every other's load (none
// loaded): until then, a node chooses among those it knows.
func waitAllLoads(t *testing.T, nodes []*testNode) {
	t.Helper()
	for i := range nodes {
		waitNodeLoad(t, nodes, i, false)
	}
}

// TestClusterRelayChoice: three nodes; peers report round trips to them
// (as daemons do from their ranking probes). Each pair relays at the node
// that minimises the larger of its two round trips, whichever nodes the
// peers are on and whichever coordinates: a node neither registered with
// too, which the sides open with authorisations and which carries bytes
// both ways. A node past 80% of its relays is avoided until it is under
// again; a peer that reports no round trips relays at the coordinator.
func TestClusterRelayChoice(t *testing.T) {
	nodes := startCluster(t, 3, ServerConfig{NATWait: 300 * time.Millisecond, ConsentWait: 10 * time.Second, Relay: true, MaxRelays: 5})
	ms := func(a, b, c int) map[string]time.Duration {
		return map[string]time.Duration{nodes[0].addr: time.Duration(a) * time.Millisecond,
			nodes[1].addr: time.Duration(b) * time.Millisecond, nodes[2].addr: time.Duration(c) * time.Millisecond}
	}
	profiles := []map[string]time.Duration{
		0: ms(50, 40, 5), 1: ms(50, 40, 5), 2: ms(50, 40, 5), 3: ms(50, 40, 5), 4: ms(50, 40, 5), 5: ms(50, 40, 5),
		6: ms(10, 30, 50), 7: ms(60, 20, 30), 8: nil,
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	waitAllLoads(t, nodes)
	// Peer i registers with node i mod 3.
	peers := startPeersWith(t, ctx, nodes, len(profiles), func(i int) map[string]time.Duration { return profiles[i] })
	check := func(pairs [][2]*testPeer, want []int) []Punch {
		t.Helper()
		connectAll(t, pairs, 15*time.Second)
		var got []Punch
		for k, pr := range pairs {
			a, _ := pr[0].punchFrom(pr[1].key)
			b, _ := pr[1].punchFrom(pr[0].key)
			if relayAt(a) != nodes[want[k]].addr || relayAt(b) != relayAt(a) {
				t.Fatalf("pair %d (nodes %d, %d): relays at %s and %s, want node%d %s", k, pr[0].home, pr[1].home,
					relayAt(a), relayAt(b), want[k], nodes[want[k]].addr)
			}
			if issuer := nodes[pr[0].home].addr; (relayAt(a) != issuer) != (len(a.RelayAuth) > 0 && len(b.RelayAuth) > 0) {
				t.Fatalf("pair %d: relay at %s, issued at %s, authorisations %d and %d bytes", k, relayAt(a), issuer, len(a.RelayAuth), len(b.RelayAuth))
			}
			got = append(got, a, b)
		}
		return got
	}
	p := peers
	punches := check([][2]*testPeer{
		{p[0], p[1]}, // node0 coordinates; node2, neither's, relays
		{p[0], p[3]}, // both on node0; node2 relays
		{p[2], p[5]}, // both on node2, which relays
		{p[2], p[1]}, // node2 coordinates and relays
		{p[6], p[7]}, // node1 is the nearer of the two's farther
		{p[3], p[8]}, // p[8] reports nothing: node0, the coordinator
	}, []int{2, 2, 2, 2, 1, 0})
	// The four relays at node2 carry bytes both ways and, held, take
	// it to 80% of its MaxRelays.
	var held []net.Conn
	for k := 0; k < 10; k += 2 {
		a, b := openPunchRelay(t, ctx, punches[k], punches[k+1])
		carryBothWays(t, a, b)
		held = append(held, a, b)
	}
	waitNodeLoad(t, nodes, 2, true)
	// Loaded, node2 is passed over for the next nearest, also by itself.
	check([][2]*testPeer{{p[4], p[5]}, {p[5], p[0]}}, []int{1, 1})
	for _, c := range held {
		c.Close()
	}
	waitNodeLoad(t, nodes, 2, false)
	check([][2]*testPeer{{p[3], p[4]}}, []int{2})
}

// signedAuth is the authorisation a node holding key issues, as bytes
// for the relay header.
func signedAuth(key identity.PrivateKey, node string, id punch.SessionID, side int, keys [2]identity.PublicKey, expiry time.Time) []byte {
	a := signRelayAuth(key, node, id, side, keys, expiry)
	return decodeRelayAuth(a.encode())
}

// TestClusterRelayAuthRefusals performs the attacks on a relay
// authorisation at the node it names: a forged or altered one, an
// expired one, one of a third key's own session, one for another node,
// and replays beyond the two legs. Each is refused, for its reason; the
// genuine pair relays.
func TestClusterRelayAuthRefusals(t *testing.T) {
	nodes := startCluster(t, 2, ServerConfig{Relay: true, RefusalLogInterval: time.Hour})
	key := nodes[0].srv.cfg.Key // every node's
	at := nodes[1]
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	A, B, C := mustKey(t).Public(), mustKey(t).Public(), mustKey(t).Public()
	id, exp := punch.NewSessionID(), time.Now().Add(time.Minute)
	keys := [2]identity.PublicKey{A, B}
	auth := [2][]byte{signedAuth(key, at.name, id, 0, keys, exp), signedAuth(key, at.name, id, 1, keys, exp)}
	altered := func(off int) []byte {
		b := bytes.Clone(auth[0])
		b[off] ^= 1
		return b
	}
	withKey0 := bytes.Clone(auth[0])
	copy(withKey0, C[:])
	later := bytes.Clone(auth[0])
	binary.BigEndian.PutUint64(later[64:], uint64(exp.Add(time.Hour).UnixMilli()))
	other := punch.NewSessionID()
	for _, tc := range []struct {
		name   string
		id     punch.SessionID
		side   int
		auth   []byte
		reason string
	}{
		{"signature altered", id, 0, altered(relayAuthLen - 1), refusedRelayToken},
		{"a third key in place of side 0's", id, 0, withKey0, refusedRelayToken},
		{"expiry moved", id, 0, later, refusedRelayToken},
		{"another session in the header", other, 0, auth[0], refusedRelayToken},
		{"side 1 with side 0's", id, 1, auth[0], refusedRelayToken},
		{"the third key's own session's, for this one", id, 0,
			signedAuth(key, at.name, other, 0, [2]identity.PublicKey{C, A}, exp), refusedRelayToken},
		{"signed by another key", id, 0, signedAuth(mustKey(t), at.name, id, 0, keys, exp), refusedRelayToken},
		{"for another node", id, 0, signedAuth(key, nodes[0].name, id, 0, keys, exp), refusedRelayToken},
		{"expired", id, 0, signedAuth(key, at.name, id, 0, keys, time.Now().Add(-time.Second)), refusedRelayExpired},
		{"expiring too far ahead", id, 0, signedAuth(key, at.name, id, 0, keys, time.Now().Add(time.Hour)), refusedRelayExpired},
	} {
		if !relayRefused(t, ctx, at, tc.id, tc.side, tc.auth, tc.reason) {
			t.Errorf("%s: not refused for %s", tc.name, tc.reason)
		}
	}
	// The genuine pair relays, and is the only one: a third leg while it
	// relays, and both legs again after it ended, are refused.
	a, b := openPunchRelay(t, ctx, Punch{Session: id.String(), Server: at.addr, RelayAuth: auth[0]},
		Punch{Session: id.String(), Server: at.addr, RelayAuth: auth[1]})
	carryBothWays(t, a, b)
	if !relayRefused(t, ctx, at, id, 0, auth[0], refusedRelaySession) {
		t.Error("a third leg of a relaying session was not refused")
	}
	a.Close()
	b.Close()
	for side := range 2 {
		if !relayRefused(t, ctx, at, id, side, auth[side], refusedRelaySession) {
			t.Errorf("side %d replayed after the relay ended was not refused", side)
		}
	}
}

// relayRefused opens one relay leg at node n with an authorisation and
// reports whether the node closed it unanswered at once and counted a
// refusal for reason (a leg it accepts waits for its partner instead).
func relayRefused(t *testing.T, ctx context.Context, n *testNode, id punch.SessionID, side int, auth []byte, reason string) bool {
	t.Helper()
	before := refusalCount(n.srv, reason)
	c, err := net.Dial("tcp", n.addr)
	if err != nil {
		t.Fatal(err)
	}
	dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	start := time.Now()
	if conn, err := DialRelayAuth(dctx, c, id, side, auth); err == nil {
		conn.Close()
		return false
	}
	return time.Since(start) < 1500*time.Millisecond && refusalCount(n.srv, reason) > before
}

// refusalCount is how many relay refusals for reason the server counted
// from loopback since its last summary.
func refusalCount(s *Server, reason string) int {
	s.refusals.mu.Lock()
	defer s.refusals.mu.Unlock()
	r := s.refusals.counts[netip.MustParseAddr("127.0.0.1")]
	if r == nil {
		return 0
	}
	return r.n[reason]
}

// TestClientReportsRTTs: a daemon that lists a cluster's nodes reports
// the round trips its ranking measured, by address, when it registers;
// the node holds them for the relay choice, and a node that did not
// answer is not among them.
func TestClientReportsRTTs(t *testing.T) {
	nodes := startCluster(t, 2, ServerConfig{})
	dead := benchtest.ClosedAddr(t) // nothing answers there
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	key := mustKey(t)
	c, err := NewClient(ClientConfig{Addresses: []string{nodes[0].addr, nodes[1].addr, dead}, ServerKey: nodes[0].srv.PublicKey(),
		Key: key, Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	runClient(t, ctx, c)
	waitRegistered(t, c)
	var at *Server
	for _, n := range nodes {
		if n.addr == c.Server() {
			at = n.srv
		}
	}
	at.mu.Lock()
	p := at.peers[key.Public()]
	at.mu.Unlock()
	if p == nil {
		t.Fatal("not registered where the client says")
	}
	got := at.cluster.rttsOf(p)
	if len(got) != 2 || got[nodes[0].addr] <= 0 || got[nodes[1].addr] <= 0 {
		t.Fatalf("the node holds round trips %v, want both nodes' and not %s's", got, dead)
	}
}

// TestRelayNodes: the nodes a relay may be chosen at are this node, then
// the others by name, less those not heard from in time; a node that does
// not relay counts as fully loaded, and publishes nothing (onLoad drops
// invalid loads).
func TestRelayNodes(t *testing.T) {
	now := time.Now()
	c := &cluster{s: &Server{cfg: ServerConfig{Relay: false}}, cfg: ClusterConfig{Node: "b", Public: "b:1"}, log: quietLog(),
		loads: map[string]relayNode{
			"c":    {node: "c", public: "c:1", until: now.Add(time.Second)},
			"a":    {node: "a", public: "a:1", load: 0.5, until: now.Add(time.Second)},
			"gone": {node: "gone", public: "gone:1", until: now.Add(-time.Millisecond)},
		}}
	got := c.relayNodes(now)
	if len(got) != 3 || got[0].node != "b" || got[1].node != "a" || got[2].node != "c" || !math.IsInf(got[0].load, 1) {
		t.Fatalf("relay nodes %+v, want b (not relaying), a, c", got)
	}
	if _, ok := c.loads["gone"]; ok {
		t.Error("a node not heard from in time is still known")
	}
	for _, r := range []loadReport{
		{Public: "x", Capacity: 1, IntervalMs: 100},
		{Public: "x:1", Capacity: 0, IntervalMs: 100},
		{Public: "x:1", Capacity: 1, IntervalMs: 100, BytesPerSec: math.NaN()},
		{Public: "x:1", Capacity: 1, IntervalMs: 100, Relays: -1},
		{Public: "x:1", Capacity: 1, IntervalMs: 0},
	} {
		if r.valid() {
			t.Errorf("load %+v taken as valid", r)
		}
	}
}

// TestClusterLoadCountsBytes: the bytes a node relays count in the load
// it publishes, against its RelayCapacity: a relay carrying several times
// the capacity takes the node past 80% for the others, and its end takes
// it back under.
func TestClusterLoadCountsBytes(t *testing.T) {
	const capacity = 64 << 10
	nodes := startCluster(t, 2, ServerConfig{NATWait: 100 * time.Millisecond, Relay: true, RelayCapacity: capacity})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	peers := startPeers(t, ctx, nodes[1:], 2)
	connectAll(t, [][2]*testPeer{{peers[0], peers[1]}}, 10*time.Second)
	a, _ := peers[0].punchFrom(peers[1].key)
	b, _ := peers[1].punchFrom(peers[0].key)
	ca, cb := openPunchRelay(t, ctx, a, b)
	go io.Copy(io.Discard, cb)
	wctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		chunk := make([]byte, capacity/4)
		for wctx.Err() == nil {
			if _, err := ca.Write(chunk); err != nil {
				return
			}
			time.Sleep(50 * time.Millisecond) // about 5 × capacity
		}
	}()
	waitNodeLoad(t, nodes, 1, true)
	stop()
	<-done
	waitNodeLoad(t, nodes, 1, false)
}

// TestCleanRTTs: what a peer reports of its round trips is kept only
// where it can be used, and bounded: at most maxReportedRTTs entries, to
// host:port addresses of bounded length, with times in (0, 60 s).
func TestCleanRTTs(t *testing.T) {
	in := map[string]float64{"a:1": 5, "b:1": 0, "c:1": -1, "d:1": 60e3, "nohost": 5, strings.Repeat("x", 300) + ":1": 5}
	if got := cleanRTTs(in); len(got) != 1 || got["a:1"] != 5 {
		t.Errorf("kept %v, want a:1 alone", got)
	}
	many := map[string]float64{}
	for i := range 1000 {
		many[fmt.Sprintf("n%d:1", i)] = 1
	}
	if got := cleanRTTs(many); len(got) != maxReportedRTTs {
		t.Errorf("kept %d of 1000, want %d", len(got), maxReportedRTTs)
	}
}
