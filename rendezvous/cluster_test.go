package rendezvous

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/warren-p2p/warren/identity"
	"github.com/warren-p2p/warren/internal/benchtest"
	"github.com/warren-p2p/warren/internal/natsnode"
	"github.com/warren-p2p/warren/punch"
)

// testNode is one node of an in-process cluster: a rendezvous server with
// its NATS connection (and its embedded NATS, if it has one), which kill
// stops as a node's death would.
type testNode struct {
	name      string
	srv       *Server
	addr      string // TCP control port and UDP probes
	closeNATS func()
	cancel    context.CancelFunc
	done      sync.WaitGroup
}

func (n *testNode) kill() {
	n.cancel()
	n.done.Wait()
	n.closeNATS()
}

// startCluster starts n nodes on loopback sharing one server key, each
// with a NATS embedded and routed to the first node's, and waits until
// every NATS has routes to all the others.
func startCluster(t testing.TB, n int, cfg ServerConfig) []*testNode {
	t.Helper()
	var embs []*natsnode.Embedded
	var seed []string
	nodes := startNodes(t, n, cfg, func(name string) (*nats.Conn, func()) {
		emb, err := natsnode.Embed(natsnode.EmbedConfig{Node: name, Listen: "127.0.0.1:0", Peers: seed, Log: quietLog()})
		if err != nil {
			t.Fatal(err)
		}
		if seed == nil {
			seed = []string{"nats://" + emb.ClusterAddr()}
		}
		embs = append(embs, emb)
		return emb.Conn(), sync.OnceFunc(emb.Close)
	})
	waitRoutes(t, n, func(i int) int { return embs[i].Routes() })
	return nodes
}

// waitRoutes waits until each of n NATS servers has routes to all the
// others.
func waitRoutes(t testing.TB, n int, routes func(int) int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for i := range n {
		for routes(i) < n-1 {
			if time.Now().After(deadline) {
				t.Fatalf("NATS server %d has %d routes, want %d", i, routes(i), n-1)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// startExternalCluster is startCluster with the nodes' NATS a cluster of
// its own (as a deployment's nats-server processes would be), which each
// node joins as a client (natsnode.Dial, the -nats path): killing a node
// leaves the NATS servers up.
func startExternalCluster(t testing.TB, n int, cfg ServerConfig) []*testNode {
	t.Helper()
	var servers []*natsserver.Server
	t.Cleanup(func() {
		for _, ns := range servers {
			ns.Shutdown()
			ns.WaitForShutdown()
		}
	})
	for i := range n {
		opts := &natsserver.Options{ServerName: fmt.Sprintf("nats%d", i), Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true,
			Cluster: natsserver.ClusterOpts{Name: "ext", Host: "127.0.0.1", Port: -1}}
		if i > 0 {
			opts.Routes = natsserver.RoutesFromStr("nats://" + servers[0].ClusterAddr().String())
		}
		ns, err := natsserver.NewServer(opts)
		if err != nil {
			t.Fatal(err)
		}
		ns.Start()
		if !ns.ReadyForConnections(10 * time.Second) {
			t.Fatal("nats server not ready")
		}
		servers = append(servers, ns)
	}
	waitRoutes(t, n, func(i int) int { return servers[i].NumRoutes() })
	i := 0
	return startNodes(t, n, cfg, func(name string) (*nats.Conn, func()) {
		nc, err := natsnode.Dial([]string{servers[i].ClientURL()}, "", name)
		if err != nil {
			t.Fatal(err)
		}
		i++
		return nc, nc.Close
	})
}

// startNodes starts n rendezvous nodes sharing one key, each on the NATS
// connection join makes for it.
func startNodes(t testing.TB, n int, cfg ServerConfig, join func(name string) (*nats.Conn, func())) []*testNode {
	t.Helper()
	key, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	cfg = cfg.WithoutLimits()
	cfg.Key = key
	if cfg.Log == nil {
		cfg.Log = quietLog()
	}
	var nodes []*testNode
	for i := range n {
		name := fmt.Sprintf("node%d", i)
		nc, closeNATS := join(name)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		pc, err := net.ListenPacket("udp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c := cfg
		// Loads every 100 ms: a test sees a relay choice follow a
		// node's load (or death) within a few tenths of a second.
		c.Cluster = &ClusterConfig{Node: name, Public: ln.Addr().String(), NATS: nc, LoadInterval: 100 * time.Millisecond}
		c.UDPEndpoints = []string{pc.LocalAddr().String()}
		srv, err := NewServer(c)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		node := &testNode{name: name, srv: srv, addr: ln.Addr().String(), closeNATS: closeNATS, cancel: cancel}
		node.done.Go(func() { srv.Serve(ctx, ln) })
		node.done.Go(func() { srv.ServeUDP(ctx, pc) })
		nodes = append(nodes, node)
	}
	t.Cleanup(func() {
		for _, node := range nodes {
			if node.cancel != nil {
				node.cancel()
			}
		}
		for _, node := range nodes {
			node.done.Wait()
		}
		for _, node := range nodes {
			node.closeNATS()
		}
	})
	return nodes
}

// testPeer is a registered test client and what the server told it.
type testPeer struct {
	c    *Client
	key  identity.PublicKey
	home int // the node it registers with first

	// got has every punch instruction too, for those that wait for one.
	got chan Punch

	mu      sync.Mutex
	punches map[identity.PublicKey]Punch
	offline map[identity.PublicKey]int
}

func (p *testPeer) punchFrom(k identity.PublicKey) (Punch, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pu, ok := p.punches[k]
	return pu, ok
}

func (p *testPeer) offlines(k identity.PublicKey) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.offline[k]
}

// startPeers starts n clients, peer i registering first with node i mod
// len(nodes) and failing over to the others in turn, consenting to every
// ask.
func startPeers(t testing.TB, ctx context.Context, nodes []*testNode, n int) []*testPeer {
	t.Helper()
	return startPeersWith(t, ctx, nodes, n, nil)
}

// startPeersWith is startPeers with peer i reporting rtts(i) as its round
// trips to the nodes (by address), as if it had measured them; rtts nil:
// none, as the tests keep the configured order and measure nothing.
func startPeersWith(t testing.TB, ctx context.Context, nodes []*testNode, n int, rtts func(i int) map[string]time.Duration) []*testPeer {
	t.Helper()
	var peers []*testPeer
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(ctx)
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	for i := range n {
		home := i % len(nodes)
		addrs := homeFirst(nodes, home)
		key, _ := identity.Generate()
		p := &testPeer{key: key.Public(), home: home, got: make(chan Punch, 64),
			punches: make(map[identity.PublicKey]Punch), offline: make(map[identity.PublicKey]int)}
		c, err := NewClient(ClientConfig{
			Addresses: addrs, ServerKey: nodes[0].srv.PublicKey(), Key: key, Log: quietLog(), Consent: consentAll,
			LAN: func() []netip.AddrPort {
				return []netip.AddrPort{netip.MustParseAddrPort(fmt.Sprintf("10.0.0.%d:4000", i+1))}
			},
			OnPunch: func(pu Punch) {
				p.mu.Lock()
				p.punches[pu.Peer] = pu
				p.mu.Unlock()
				select {
				case p.got <- pu:
				default:
				}
			},
			OnOffline: func(k identity.PublicKey) {
				p.mu.Lock()
				p.offline[k]++
				p.mu.Unlock()
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		c.SetNAT(punch.NAT{Behind: true, Mapping: punch.MappingEndpointIndependent})
		// The configured order, not the round trips of a loaded machine
		// (under the race detector a probe can take 500 ms): the tests
		// spread the peers over the nodes.
		c.rankStep = 0
		if rtts != nil {
			c.rtts = rtts(i)
		}
		p.c = c
		wg.Go(func() { c.Run(ctx) })
		peers = append(peers, p)
	}
	for _, p := range peers {
		select {
		case <-p.c.Registered():
		case <-time.After(5 * time.Second):
			t.Fatal("client did not register")
		}
	}
	return peers
}

// homeFirst lists the nodes' addresses from node home on, in turn.
func homeFirst(nodes []*testNode, home int) []string {
	var addrs []string
	for j := range nodes {
		addrs = append(addrs, nodes[(home+j)%len(nodes)].addr)
	}
	return addrs
}

// connectAll has a ask b for every pair given, and waits until both of
// every pair have a punch instruction naming the other with one session.
// A pair answered "offline" asks again (at most twice), as a daemon
// would; it returns how many did.
func connectAll(t *testing.T, pairs [][2]*testPeer, within time.Duration) (retried int) {
	t.Helper()
	for _, pr := range pairs {
		if err := pr[0].c.Connect(pr[1].key); err != nil {
			t.Fatal(err)
		}
	}
	asked := make(map[int]int)
	deadline := time.Now().Add(within)
	for {
		missing := 0
		for i, pr := range pairs {
			a, okA := pr[0].punchFrom(pr[1].key)
			b, okB := pr[1].punchFrom(pr[0].key)
			if okA && okB && a.Session == b.Session {
				continue
			}
			missing++
			if n := pr[0].offlines(pr[1].key); n > asked[i] && n <= 2 {
				asked[i] = n
				retried++
				pr[0].c.Connect(pr[1].key)
			}
		}
		if missing == 0 {
			return retried
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d pairs were not coordinated within %v", missing, len(pairs), within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestClusterCoordinatesAcrossNodes: three nodes clustered on embedded
// NATS, 30 peers spread over them; every pair is coordinated, same-node
// and cross-node alike. Cross-node sessions of peers that report no
// round trips to the nodes (daemons of before relay choice) tell both
// sides to relay through the coordinating node, whose tokens open it;
// each side's UDP session probe, sent to its own node, reaches the other
// side.
func TestClusterCoordinatesAcrossNodes(t *testing.T) {
	// UDPWait and ConsentWait are long: each second step must carry both
	// probes, and each ask find its peer, however slowly a loaded machine
	// (or the race detector) serves 435 at once. Every peer consents, so
	// the waits cost nothing unless something is lost.
	nodes := startCluster(t, 3, ServerConfig{NATWait: 500 * time.Millisecond, UDPWait: 10 * time.Second, ConsentWait: 10 * time.Second, Relay: true})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	peers := startPeers(t, ctx, nodes, 30)
	for _, p := range peers {
		if got := p.c.Server(); got != nodes[p.home].addr {
			t.Fatalf("peer registered with %s, want its home %s", got, nodes[p.home].addr)
		}
	}
	var pairs [][2]*testPeer
	cross := 0
	for i := range peers {
		for j := i + 1; j < len(peers); j++ {
			// Each peer asks about half of the others (14 or 15): a peer
			// may have no more than maxStarting (16) asks under way.
			if (i+j)%2 == 0 {
				pairs = append(pairs, [2]*testPeer{peers[i], peers[j]})
			} else {
				pairs = append(pairs, [2]*testPeer{peers[j], peers[i]})
			}
			if peers[i].home != peers[j].home {
				cross++
			}
		}
	}
	start := time.Now()
	retried := connectAll(t, pairs, 20*time.Second)
	t.Logf("%d pairs (%d across nodes) coordinated in %v; %d asked again after offline", len(pairs), cross, time.Since(start), retried)
	if retried > 0 {
		t.Errorf("%d asks found a registered peer offline", retried)
	}

	byAddr := map[string]*testNode{}
	for _, n := range nodes {
		byAddr[n.addr] = n
	}
	// The instructions: each side learns the other's observed endpoint,
	// its LAN candidate and its NAT; a cross-node pair relays through the
	// asker's node.
	for _, pr := range pairs {
		a, _ := pr[0].punchFrom(pr[1].key)
		b, _ := pr[1].punchFrom(pr[0].key)
		if a.Public != pr[1].c.Observed() || b.Public != pr[0].c.Observed() || len(a.LAN) != 1 || a.PeerNAT.Mapping != punch.MappingEndpointIndependent {
			t.Fatalf("punch %+v / %+v", a, b)
		}
		if a.Side != 0 || b.Side != 1 {
			t.Fatalf("sides %d, %d", a.Side, b.Side)
		}
		wantRelay := ""
		if pr[0].home != pr[1].home {
			wantRelay = nodes[pr[0].home].addr
		}
		if a.Relay != wantRelay || b.Relay != wantRelay {
			t.Fatalf("relay %q / %q, want %q", a.Relay, b.Relay, wantRelay)
		}
	}

	// The second step, for every cross-node pair: each side probes its own
	// node from a session socket and is told the other's socket.
	var wg sync.WaitGroup
	errs := make(chan error, len(pairs))
	sem := make(chan struct{}, 16)
	for _, pr := range pairs {
		if pr[0].home == pr[1].home {
			continue
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			errs <- udpStep(ctx, pr)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}

	// Relays across nodes: a few pairs open both sides at the relay the
	// instruction named (not the node either registered with, for one
	// side) and carry bytes both ways.
	relayed := 0
	for _, pr := range pairs {
		if pr[0].home == pr[1].home || relayed == 5 {
			continue
		}
		relayed++
		a, _ := pr[0].punchFrom(pr[1].key)
		b, _ := pr[1].punchFrom(pr[0].key)
		id, _ := punch.ParseSessionID(a.Session)
		ca, cb := openRelayPair(t, ctx, a.Relay, id, [2]RelayToken{a.RelayToken, b.RelayToken})
		for _, d := range [][2]net.Conn{{ca, cb}, {cb, ca}} {
			msg := []byte("through " + a.Relay)
			d[0].Write(msg)
			got := make([]byte, len(msg))
			d[1].SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.ReadFull(d[1], got); err != nil || !bytes.Equal(got, msg) {
				t.Fatalf("relay: %q, %v", got, err)
			}
		}
		ca.Close()
		cb.Close()
	}
}

// udpStep sends both sides' session probes (TCP, then UDP), each to its
// own node, and checks each side's second step names the other's.
func udpStep(ctx context.Context, pr [2]*testPeer) error {
	var socks [2]net.PacketConn
	var tcp [2]netip.AddrPort
	var steps [2]*UDPStep
	var id punch.SessionID
	for i, p := range pr {
		pu, _ := p.punchFrom(pr[1-i].key)
		id, _ = punch.ParseSessionID(pu.Session)
		steps[pu.Side] = pu.UDP
		if pu.Server != p.c.Server() {
			return fmt.Errorf("punch from %s, registered with %s", pu.Server, p.c.Server())
		}
		conn, err := net.Dial("tcp", pu.Server)
		if err != nil {
			return err
		}
		tcp[pu.Side] = conn.LocalAddr().(*net.TCPAddr).AddrPort()
		if _, err := ProbeSessionTCP(ctx, conn, id, pu.Side); err != nil {
			return fmt.Errorf("tcp session probe: %w", err)
		}
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		defer pc.Close()
		socks[pu.Side] = pc
		srv := net.UDPAddrFromAddrPort(p.c.UDPServers()[0])
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err = ProbeSession(pctx, pc, srv, id, pu.Side)
		cancel()
		if err != nil {
			return fmt.Errorf("session probe: %w", err)
		}
	}
	for side := range 2 {
		info, ok := steps[side].Wait(ctx, 3*time.Second)
		want := socks[1-side].LocalAddr().(*net.UDPAddr).AddrPort()
		if !ok || info.PeerUDP != want || info.PeerLANPort != want.Port() || info.PeerTCP != tcp[1-side] {
			return fmt.Errorf("session %s side %d: step %+v (arrived %v), want the peer's socket %v", id.String()[:8], side, info, ok, want)
		}
	}
	return nil
}

// TestClusterFailover: a node dies; its peers register with the others
// within 5 s, and connects between them and everyone work. The relays it
// carried (the peers' nearest node, chosen for pairs of the other two)
// end, and the same pairs relay again through a living node.
func TestClusterFailover(t *testing.T) {
	t.Run("embedded", func(t *testing.T) {
		testFailover(t, startCluster(t, 3, ServerConfig{NATWait: 500 * time.Millisecond, ConsentWait: 10 * time.Second, Relay: true}))
	})
	t.Run("external", func(t *testing.T) {
		testFailover(t, startExternalCluster(t, 3, ServerConfig{NATWait: 500 * time.Millisecond, ConsentWait: 10 * time.Second, Relay: true}))
	})
}

func testFailover(t *testing.T, nodes []*testNode) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	// Every peer is nearest node2, then node1.
	rtts := map[string]time.Duration{nodes[0].addr: 50 * time.Millisecond, nodes[1].addr: 40 * time.Millisecond,
		nodes[2].addr: 5 * time.Millisecond}
	waitAllLoads(t, nodes)
	peers := startPeersWith(t, ctx, nodes, 30, func(int) map[string]time.Duration { return rtts })
	dead := nodes[2]
	carried := relayThrough(t, ctx, [][2]*testPeer{{peers[0], peers[1]}, {peers[4], peers[3]}, {peers[6], peers[7]}}, dead.addr)
	killed := time.Now()
	dead.kill()
	for _, c := range carried {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("a relay through the dead node still open: %v", err)
		}
	}
	moved, stayed := waitMoved(t, peers, dead, killed)
	relayThrough(t, ctx, [][2]*testPeer{{peers[0], peers[1]}, {peers[4], peers[3]}, {peers[6], peers[7]}}, nodes[1].addr)
	var pairs [][2]*testPeer
	for i, p := range moved {
		pairs = append(pairs, [2]*testPeer{p, stayed[i]}, [2]*testPeer{stayed[len(stayed)-1-i], p})
		if i > 0 {
			pairs = append(pairs, [2]*testPeer{moved[i-1], p})
		}
	}
	retried := connectAll(t, pairs, 15*time.Second)
	t.Logf("%d connects after the failover; %d asked again after offline", len(pairs), retried)
	// The relays the dead node carried are open again through the living
	// ones: each new session names a living relay, which takes it.
	relayed := 0
	for _, pr := range pairs {
		a, _ := pr[0].punchFrom(pr[1].key)
		b, _ := pr[1].punchFrom(pr[0].key)
		relay := cmp.Or(a.Relay, a.Server)
		if relay == dead.addr || cmp.Or(b.Relay, b.Server) != relay {
			t.Fatalf("sides told to relay at %q and %q (dead node %s)", relay, cmp.Or(b.Relay, b.Server), dead.addr)
		}
		if relayed < 4 && a.Relay != "" {
			relayed++
			ca, cb := openPunchRelay(t, ctx, a, b)
			ca.Write([]byte("x"))
			var got [1]byte
			cb.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.ReadFull(cb, got[:]); err != nil {
				t.Fatalf("relay through %s after the failover: %v", relay, err)
			}
			ca.Close()
			cb.Close()
		}
	}
	if relayed == 0 {
		t.Fatal("no pair across nodes after the failover to relay")
	}
}

// waitMoved waits until the peers of the dead node (killed then) are
// registered elsewhere, for 5 s after the kill at most, and returns them
// and the others.
func waitMoved(t *testing.T, peers []*testPeer, dead *testNode, killed time.Time) (moved, stayed []*testPeer) {
	t.Helper()
	for _, p := range peers {
		if p.c.cfg.Addresses[0] == dead.addr { // its home
			moved = append(moved, p)
		} else {
			stayed = append(stayed, p)
		}
	}
	for _, p := range moved {
		for {
			select {
			case <-p.c.Registered():
			case <-time.After(time.Until(killed.Add(5 * time.Second))):
				t.Fatalf("a peer of the dead node is not registered elsewhere 5 s after: %v", errOf(p.c))
			}
			if p.c.Server() != dead.addr {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	t.Logf("%d peers of the dead node registered elsewhere within %v", len(moved), time.Since(killed))
	return moved, stayed
}

// relayThrough connects each pair afresh, checks that both sides are told
// to relay at addr, and opens their relays there, carrying bytes both
// ways; it returns the relays' connections.
func relayThrough(t *testing.T, ctx context.Context, pairs [][2]*testPeer, addr string) []net.Conn {
	t.Helper()
	for _, pr := range pairs {
		for i, p := range pr {
			p.mu.Lock()
			delete(p.punches, pr[1-i].key)
			p.mu.Unlock()
		}
	}
	connectAll(t, pairs, 15*time.Second)
	var conns []net.Conn
	for _, pr := range pairs {
		a, _ := pr[0].punchFrom(pr[1].key)
		b, _ := pr[1].punchFrom(pr[0].key)
		if relayAt(a) != addr || relayAt(b) != addr {
			t.Fatalf("relays at %s and %s, want %s", relayAt(a), relayAt(b), addr)
		}
		ca, cb := openPunchRelay(t, ctx, a, b)
		carryBothWays(t, ca, cb)
		conns = append(conns, ca, cb)
	}
	return conns
}

func errOf(c *Client) error {
	err, _ := c.Err()
	return err
}

// TestClusterEvicts: a key registering on a second node evicts its
// registration on the first, which is told "replaced"; asks from a third
// node reach the new registration.
func TestClusterEvicts(t *testing.T) {
	nodes := startCluster(t, 3, ServerConfig{NATWait: 100 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	key, _ := identity.Generate()
	punched := make(chan string, 4)
	start := func(node *testNode) *Client {
		c, err := NewClient(ClientConfig{Address: node.addr, ServerKey: node.srv.PublicKey(), Key: key, Log: quietLog(), Consent: consentAll,
			OnPunch: func(Punch) { punched <- node.addr }})
		if err != nil {
			t.Fatal(err)
		}
		runClient(t, ctx, c)
		waitRegistered(t, c)
		return c
	}
	first := start(nodes[0])
	start(nodes[1])
	deadline := time.Now().Add(3 * time.Second)
	var replaced *ReplacedError
	for !errors.As(errOf(first), &replaced) {
		if time.Now().After(deadline) {
			t.Fatalf("first registration not replaced: %v", errOf(first))
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("replaced after %v", time.Since(deadline.Add(-3*time.Second)))
	asker := startPeers(t, ctx, nodes[2:], 1)[0]
	asked := time.Now()
	asker.c.Connect(key.Public())
	defer func() { t.Logf("punched %v after the ask", time.Since(asked)) }()
	select {
	case at := <-punched:
		if at != nodes[1].addr {
			t.Fatalf("punch went to the registration on %s", at)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no punch for the key registered on the second node")
	}
}

// TestClusterRefusalLooksOffline: an ask for a peer on another node that
// does not consent, and one for a key registered nowhere (NATS has no
// responder at once), are both answered "offline" when ConsentWait has
// passed, not before: across nodes as on one.
func TestClusterRefusalLooksOffline(t *testing.T) {
	const wait = 500 * time.Millisecond
	nodes := startCluster(t, 2, ServerConfig{ConsentWait: wait, NATWait: 100 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	peers := startPeers(t, ctx, nodes, 2)
	refuser, err := NewClient(ClientConfig{Address: nodes[1].addr, ServerKey: nodes[1].srv.PublicKey(), Key: mustKey(t), Log: quietLog(),
		Consent: func(identity.PublicKey) bool { return false }})
	if err != nil {
		t.Fatal(err)
	}
	runClient(t, ctx, refuser)
	waitRegistered(t, refuser)
	asker := peers[0]
	nobody := mustKey(t).Public()
	for _, target := range []identity.PublicKey{refuser.cfg.Key.Public(), nobody} {
		start := time.Now()
		asker.c.Connect(target)
		for asker.offlines(target) == 0 {
			if time.Since(start) > 5*time.Second {
				t.Fatal("no offline answer")
			}
			time.Sleep(5 * time.Millisecond)
		}
		if took := time.Since(start); took < wait || took > wait+time.Second {
			t.Errorf("offline after %v, want just after %v", took, wait)
		}
		if _, ok := asker.punchFrom(target); ok {
			t.Error("a punch for a peer that did not consent")
		}
	}
}

// runClient runs c until ctx or the test ends.
func runClient(t *testing.T, ctx context.Context, c *Client) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { c.Run(ctx) })
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
}

func mustKey(t *testing.T) identity.PrivateKey {
	t.Helper()
	k, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestClusterNearestFirst: a daemon ranks the nodes it lists by a UDP
// probe's round trip before registering: a node that does not answer
// (here, the first listed) is tried last, not first, and nodes about as
// near keep the configured order.
func TestClusterNearestFirst(t *testing.T) {
	nodes := startCluster(t, 2, ServerConfig{})
	// An address where nothing answers, TCP or UDP.
	dead := benchtest.ClosedAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	var mu sync.Mutex
	var dialled []string
	c, err := NewClient(ClientConfig{Addresses: []string{dead, nodes[1].addr, nodes[0].addr}, ServerKey: nodes[0].srv.PublicKey(),
		Key: mustKey(t), Log: quietLog(),
		Dial: func(ctx context.Context, addr string) (net.Conn, error) {
			mu.Lock()
			dialled = append(dialled, addr)
			mu.Unlock()
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		}})
	if err != nil {
		t.Fatal(err)
	}
	runClient(t, ctx, c)
	waitRegistered(t, c)
	mu.Lock()
	defer mu.Unlock()
	if len(dialled) != 1 || dialled[0] != nodes[1].addr || c.Server() != nodes[1].addr {
		t.Fatalf("dialled %q, registered with %s; want %s alone (listed first of those that answer)", dialled, c.Server(), nodes[1].addr)
	}
}

// TestClusterNodeNameTaken: a node's name is checked before it starts: a
// second node of the same name is refused, a new name is not.
func TestClusterNodeNameTaken(t *testing.T) {
	nodes := startCluster(t, 2, ServerConfig{})
	ctx := context.Background()
	// Asked through node1's NATS: node0's name travels the route.
	nc := nodes[1].srv.cluster.nc
	// node0 subscribes to its subject once it serves, and the interest
	// then crosses the route: ask until it is there.
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := CheckNodeName(ctx, nc, nodes[0].name)
		if err != nil {
			if !strings.Contains(err.Error(), "already named") {
				t.Errorf("a taken name: %v", err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a taken name was not refused")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := CheckNodeName(ctx, nc, "node9"); err != nil {
		t.Errorf("a free name: %v", err)
	}
}
