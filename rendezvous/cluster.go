package rendezvous

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/sirupsen/logrus"

	"github.com/warren-p2p/warren/identity"
	"github.com/warren-p2p/warren/punch"
)

// ClusterConfig makes a server one node of a cluster (see doc.go,
// "Clustering"). A server without one is a single node and touches no
// NATS at all.
type ClusterConfig struct {
	// Node is this node's name, unique in the cluster: letters, digits,
	// '-' and '_'. It names the node's NATS subject.
	Node string
	// Public is host:port where peers reach this node's control port,
	// whichever node they registered with: the peers of a session relay
	// through it when the cluster chooses it. Spell it as daemons list
	// the node (`[rendezvous] addresses`): their round trips to the nodes
	// are reported by those addresses, and matched to this.
	Public string
	// NATS is the node's connection to the cluster. Its owner closes it,
	// after the server has stopped.
	NATS *nats.Conn
	// LoadInterval is how often the node publishes its relay load; the
	// others forget it when they have not heard from it for three.
	// Default 2s.
	LoadInterval time.Duration
}

// DefaultLoadInterval is ClusterConfig.LoadInterval's default.
const DefaultLoadInterval = 2 * time.Second

func (c *ClusterConfig) verify() error {
	if c.NATS == nil {
		return errors.New("cluster: no NATS connection")
	}
	if !validNodeName(c.Node) {
		return fmt.Errorf("cluster: node name %q: want 1 to 64 letters, digits, '-' or '_'", c.Node)
	}
	if _, _, err := net.SplitHostPort(c.Public); err != nil {
		return fmt.Errorf("cluster: public address %q: %w", c.Public, err)
	}
	return nil
}

// validNodeName reports whether name can be a NATS subject token and a
// log field: no dots, wildcards or spaces.
func validNodeName(name string) bool {
	if name == "" || len(name) > 64 {
		return false
	}
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
		default:
			return false
		}
	}
	return true
}

// Subjects. A key's base64url spelling is a valid subject token.
const (
	peerSubjectPrefix = "warren.peer." // + key: the node where it is registered
	nodeSubjectPrefix = "warren.node." // + node name: that node
)

func peerSubject(k identity.PublicKey) string { return peerSubjectPrefix + k.String() }
func nodeSubject(node string) string          { return nodeSubjectPrefix + node }

// Cluster message types.
const (
	cmAsk    = "ask"    // to a key's subject, a request: may the asker have a session with it?
	cmAnswer = "answer" // the reply to cmAsk from the key's node, after its consent
	cmEvict  = "evict"  // to a key's subject: it registered on the sender's node
	cmStart  = "start"  // to a node: send this punch instruction to your peer
	cmUDP    = "udp"    // to a node: send this second step to your peer
	cmProbe  = "probe"  // to a node: a session probe of a session you coordinate came to me
	cmHello  = "hello"  // to a node's subject, a request: is this name taken?
)

// CheckNodeName reports an error if a node of the cluster that nc
// reaches already has the name node. Nodes tell messages from themselves
// by name, so two nodes of one name would ignore each other's asks: a
// node must not start under a name that is taken.
func CheckNodeName(ctx context.Context, nc *nats.Conn, node string) error {
	data, err := json.Marshal(&clusterMsg{Type: cmHello, Node: node})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err = nc.RequestWithContext(ctx, nodeSubject(node), data)
	switch {
	case err == nil:
		return fmt.Errorf("cluster: another node is already named %q; give each node its own name (node, -node)", node)
	case errors.Is(err, nats.ErrNoResponders), errors.Is(err, context.DeadlineExceeded):
		return nil
	}
	return fmt.Errorf("cluster: checking the node name: %w", err)
}

// clusterMsg is every message nodes exchange, as JSON (see doc.go for
// which fields each type uses).
type clusterMsg struct {
	Type      string       `json:"type"`
	Node      string       `json:"node"`                 // the sender
	Key       string       `json:"key,omitempty"`        // the peer it is about (ask: the target; start, udp: the receiver)
	Asker     string       `json:"asker,omitempty"`      // ask: the asking peer
	WaitMs    int64        `json:"wait_ms,omitempty"`    // ask: how long the asker's node waits for the answer
	At        int64        `json:"at,omitempty"`         // evict: when the key registered (Unix ns, the sender's clock)
	Public    string       `json:"public,omitempty"`     // evict: where the new registration came from
	Peer      *clusterPeer `json:"peer,omitempty"`       // answer: the target as its node knows it
	Load      *loadReport  `json:"load,omitempty"`       // load: the sender's relay load
	OK        bool         `json:"ok,omitempty"`         // answer: the target consented
	Dup       bool         `json:"dup,omitempty"`        // answer: the pair's other ask makes the session; say nothing
	Msg       *Message     `json:"msg,omitempty"`        // start, udp: the frame for Key's peer
	Session   string       `json:"session,omitempty"`    // probe
	Side      int          `json:"side,omitempty"`       // probe
	Mapped    string       `json:"mapped,omitempty"`     // probe: the endpoint it came from
	LocalPort uint16       `json:"local_port,omitempty"` // probe (UDP): the socket's own port
	TCP       bool         `json:"tcp,omitempty"`        // probe: a TCP session probe
}

// clusterPeer is what a node tells another about one of its peers for a
// punch instruction.
type clusterPeer struct {
	Observed string     `json:"observed"`
	LAN      []string   `json:"lan,omitempty"`
	NAT      *NATReport `json:"nat,omitempty"`
	RTTMs    float64    `json:"rtt_ms,omitempty"`
	// RTTs are the peer's round trips to the nodes, in ms by address
	// (cluster.rttsOf), for the relay choice.
	RTTs map[string]float64 `json:"rtts,omitempty"`
}

func (c *cluster) peerInfo(p *peerConn) *clusterPeer {
	nat, rtt := p.natAndRTT()
	return &clusterPeer{Observed: p.observed.String(), LAN: p.lan, NAT: nat, RTTMs: float64(rtt.Microseconds()) / 1000,
		RTTs: c.rttsOf(p)}
}

// nodeName is this node's name, told to the peers that register with it
// (`warren status` shows it); "" for a server alone (c nil).
func (c *cluster) nodeName() string {
	if c == nil {
		return ""
	}
	return c.cfg.Node
}

// maxClusterWork caps the goroutines serving other nodes' messages at
// once (each an ask waiting for a consent, or a send to a slow peer):
// past it, a message is dropped, which its sender sees as "offline" or a
// lost step, as it would a node under water.
const maxClusterWork = 8192

// cluster is a node's part in a cluster: presence subscriptions for its
// peers, asks to and from other nodes, and the sessions it shares with
// them.
type cluster struct {
	s   *Server
	cfg ClusterConfig
	nc  *nats.Conn
	log logrus.FieldLogger

	// mu guards the fields below.
	mu       sync.Mutex
	running  bool
	ctx      context.Context // of the goroutines below; ends at stop
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	busy     int
	nodeSub  *nats.Subscription
	presence map[identity.PublicKey]*presence
	remote   map[punch.SessionID]remoteSession
	asking   map[[2]identity.PublicKey]int // asks under way: local asker, remote target
	loadSub  *nats.Subscription
	loads    map[string]relayNode // other nodes' latest loads, by name
	ownLoad  float64              // this node's, as last published
}

// presence is a local peer's registration as the cluster knows it.
type presence struct {
	conn *peerConn
	at   time.Time
	sub  *nats.Subscription
}

// remoteSession is a session another node coordinates, one side of
// which is registered here: its session probes go to that node.
type remoteSession struct {
	origin string
	at     time.Time
}

// remoteSide is a session's side registered on another node, as the
// coordinating node knows it.
type remoteSide struct {
	key  identity.PublicKey
	node string
	rtt  time.Duration
}

func newCluster(s *Server, cfg ClusterConfig) (*cluster, error) {
	if err := cfg.verify(); err != nil {
		return nil, err
	}
	if cfg.LoadInterval <= 0 {
		cfg.LoadInterval = DefaultLoadInterval
	}
	return &cluster{s: s, cfg: cfg, nc: cfg.NATS, log: s.cfg.Log.WithField("node", cfg.Node),
		presence: make(map[identity.PublicKey]*presence),
		remote:   make(map[punch.SessionID]remoteSession),
		asking:   make(map[[2]identity.PublicKey]int),
		loads:    make(map[string]relayNode)}, nil
}

// start subscribes to the node's subject; the server calls it when it
// starts serving.
func (c *cluster) start() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.running = true
	sub, err := c.nc.Subscribe(nodeSubject(c.cfg.Node), c.onNodeMsg)
	if err == nil {
		c.nodeSub = sub
		c.loadSub, err = c.nc.Subscribe(loadSubject, c.onLoad)
	}
	if err != nil {
		// nats.go queues subscriptions while it reconnects, so this is a
		// closed connection: the node serves its own peers only.
		c.log.WithError(err).Error("cluster: cannot subscribe to this node's subjects; serving local peers only")
		return
	}
	if c.s.cfg.Relay {
		// A node that relays nothing publishes no load: no other node
		// chooses it.
		ctx := c.ctx
		c.wg.Go(func() { c.publishLoads(ctx) })
	}
}

// stop ends every subscription and waits for the goroutines serving
// other nodes; the server calls it when it stops serving.
func (c *cluster) stop() {
	if c == nil {
		return
	}
	c.mu.Lock()
	c.running = false
	for _, sub := range []**nats.Subscription{&c.nodeSub, &c.loadSub} {
		if *sub != nil {
			(*sub).Unsubscribe()
			*sub = nil
		}
	}
	for k, pr := range c.presence {
		if pr.sub != nil {
			pr.sub.Unsubscribe()
		}
		delete(c.presence, k)
	}
	c.cancel()
	c.mu.Unlock()
	c.wg.Wait()
}

// spawn runs f in a goroutine the cluster owns (stop ends its context and
// waits for it), unless the cluster is stopped or at maxClusterWork.
func (c *cluster) spawn(f func(ctx context.Context)) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.running || c.busy >= maxClusterWork {
		return false
	}
	c.busy++
	ctx := c.ctx
	c.wg.Go(func() {
		defer func() {
			c.mu.Lock()
			c.busy--
			c.mu.Unlock()
		}()
		f(ctx)
	})
	return true
}

func (c *cluster) publish(subject string, m *clusterMsg) {
	m.Node = c.cfg.Node
	data, err := json.Marshal(m)
	if err == nil {
		err = c.nc.Publish(subject, data)
	}
	if err != nil {
		c.log.WithError(err).WithField("subject", subject).Debug("cluster: publish failed")
	}
}

// evictAgainAfter is when a registration's evict goes again, and again
// twice as long after that: interest crosses a route in milliseconds
// unless the node is starved.
const evictAgainAfter = 500 * time.Millisecond

// claim makes p the cluster's registration of its key: it tells the node
// that held the key before, if another, to evict it (as a re-registration
// on one node does), and makes this node the responder of the key's
// subject. Evict goes first: the old node's subscription must not answer
// for the new registration.
func (c *cluster) claim(p *peerConn) {
	if c == nil {
		return
	}
	at := time.Now()
	c.mu.Lock()
	if !c.running {
		c.mu.Unlock()
		return
	}
	pr := c.presence[p.key]
	if pr == nil {
		pr = &presence{}
		c.presence[p.key] = pr
	}
	pr.conn, pr.at = p, at
	subscribe := pr.sub == nil
	c.mu.Unlock()
	evict := &clusterMsg{Type: cmEvict, Key: p.key.String(), At: at.UnixNano(), Public: p.observed.String()}
	c.publish(peerSubject(p.key), evict)
	// NATS drops a message published before the old node's interest in
	// the subject has reached this node's server (routes carry interest
	// asynchronously): a key registering again right after it registered
	// elsewhere (a failover, a move) would keep both registrations. The
	// evict goes again, harmless to a newer registration (onEvict keeps
	// the newer).
	c.spawn(func(ctx context.Context) {
		for _, after := range []time.Duration{evictAgainAfter, 2 * evictAgainAfter} {
			select {
			case <-time.After(after):
			case <-ctx.Done():
				return
			}
			c.mu.Lock()
			current := c.presence[p.key] == pr && pr.conn == p
			c.mu.Unlock()
			if !current {
				return
			}
			c.publish(peerSubject(p.key), evict)
		}
	})
	if !subscribe {
		return
	}
	sub, err := c.nc.Subscribe(peerSubject(p.key), c.onPeerMsg)
	if err != nil {
		p.log.WithError(err).Warn("cluster: cannot subscribe for this peer; other nodes see it offline")
		return
	}
	// Once NATS has the subscription, it tells the other servers at
	// once: a peer told "registered" is then found from every node (give
	// or take a route's delay), not a moment later.
	if err := c.nc.FlushTimeout(time.Second); err != nil {
		p.log.WithError(err).Debug("cluster: flush after subscribing")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if cur := c.presence[p.key]; cur == pr && pr.sub == nil && c.running {
		pr.sub = sub
		return
	}
	// Released (or stopped) meanwhile.
	sub.Unsubscribe()
}

// release forgets p's registration, if it is still the cluster's for its
// key: a newer registration of the key on this node keeps its
// subscription.
func (c *cluster) release(p *peerConn) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	pr := c.presence[p.key]
	if pr == nil || pr.conn != p {
		return
	}
	if pr.sub != nil {
		pr.sub.Unsubscribe()
	}
	delete(c.presence, p.key)
}

// onPeerMsg serves a message to the subject of a key registered here.
// It runs on the subscription's NATS goroutine: anything that waits goes
// to a goroutine of its own.
func (c *cluster) onPeerMsg(msg *nats.Msg) {
	var m clusterMsg
	if err := json.Unmarshal(msg.Data, &m); err != nil || m.Node == c.cfg.Node {
		return
	}
	key, err := identity.ParsePublicKey(m.Key)
	if err != nil {
		return
	}
	switch m.Type {
	case cmEvict:
		c.onEvict(key, &m)
	case cmAsk:
		c.spawn(func(ctx context.Context) { c.serveAsk(ctx, msg, key, &m) })
	}
}

// onEvict acts on another node's registration of key: the newer of the
// two stays. An older one here is told "replaced" and closed, as on one
// node; a newer one here tells the other node so, which closes its own.
// Equal times (from two clocks) go to the node whose name sorts higher.
func (c *cluster) onEvict(key identity.PublicKey, m *clusterMsg) {
	c.mu.Lock()
	pr := c.presence[key]
	var old *peerConn
	var at time.Time
	if pr != nil {
		old, at = pr.conn, pr.at
	}
	c.mu.Unlock()
	if old == nil {
		return
	}
	ours := at.UnixNano()
	if ours > m.At || (ours == m.At && c.cfg.Node > m.Node) {
		c.publish(peerSubject(key), &clusterMsg{Type: cmEvict, Key: key.String(), At: ours, Public: old.observed.String()})
		return
	}
	if c.s.logsFor(old, logRegister) {
		old.log.WithField("by_node", m.Node).Info("peer registered on another node; closing its connection here")
	}
	c.spawn(func(context.Context) {
		old.sendWithin(&Message{Type: TypeError, Code: CodeReplaced, Public: m.Public,
			Text: "another connection registered this key"}, time.Second)
		old.conn.Close()
	})
}

// ask serves p's connect request for key when key is not registered on
// this node: a NATS request to key's subject, which the node where it is
// registered answers after key's consent. It reports whether the request
// is answered (a session started, or the pair's other request makes one);
// false leaves the "offline" answer to the caller, when actx ends. No
// responders (key registered nowhere) returns false at once.
func (c *cluster) ask(actx, ctx context.Context, p *peerConn, key identity.PublicKey) bool {
	if c == nil || key == p.key {
		return false
	}
	c.s.mu.Lock()
	_, local := c.s.peers[key]
	c.s.mu.Unlock()
	if local {
		return false
	}
	pair := [2]identity.PublicKey{p.key, key}
	c.mu.Lock()
	c.asking[pair]++
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		if c.asking[pair]--; c.asking[pair] <= 0 {
			delete(c.asking, pair)
		}
		c.mu.Unlock()
	}()
	wait := c.s.cfg.ConsentWait
	if dl, ok := actx.Deadline(); ok {
		wait = time.Until(dl)
	}
	// The asker's NAT report alone (no address: nothing about the asker
	// goes to the target before its consent), for the target's node to
	// tell a repeated ask from one after the asker's NAT changed.
	nat, _ := p.natAndRTT()
	data, err := json.Marshal(&clusterMsg{Type: cmAsk, Node: c.cfg.Node, Key: key.String(), Asker: p.key.String(),
		WaitMs: wait.Milliseconds(), Peer: &clusterPeer{NAT: nat}})
	if err != nil {
		return false
	}
	reply, err := c.nc.RequestWithContext(actx, peerSubject(key), data)
	if err != nil {
		if !errors.Is(err, nats.ErrNoResponders) && actx.Err() == nil {
			p.log.WithError(err).Debug("cluster: ask failed")
		}
		return false
	}
	var r clusterMsg
	if err := json.Unmarshal(reply.Data, &r); err != nil || r.Type != cmAnswer {
		return false
	}
	if r.Dup {
		return true
	}
	if !r.OK || r.Peer == nil || !validNodeName(r.Node) {
		return false
	}
	if c.s.pairTaken(p, key, true) {
		return true
	}
	c.startSession(ctx, p, key, &r)
	return true
}

// serveAsk answers another node's ask for key, registered here: with
// key's addresses if key consents in time, and not at all otherwise (the
// asker's node answers "offline" when its own wait ends, as for every
// "no"). When both peers of a pair ask each other at once, from two
// nodes, the ask of the key that sorts lower makes the session; the other
// is answered Dup, and its node says nothing to its peer.
func (c *cluster) serveAsk(ctx context.Context, msg *nats.Msg, key identity.PublicKey, m *clusterMsg) {
	s := c.s
	asker, err := identity.ParsePublicKey(m.Asker)
	if err != nil || asker == key || msg.Reply == "" {
		return
	}
	s.mu.Lock()
	other := s.peers[key]
	s.mu.Unlock()
	if other == nil {
		return
	}
	respond := func(r *clusterMsg) {
		r.Type, r.Node = cmAnswer, c.cfg.Node
		if data, err := json.Marshal(r); err == nil {
			msg.Respond(data)
		}
	}
	c.mu.Lock()
	crossing := c.asking[[2]identity.PublicKey{key, asker}] > 0
	c.mu.Unlock()
	// The asker as pairTaken needs it: its key and NAT report.
	askerConn := &peerConn{key: asker}
	if m.Peer != nil {
		askerConn.nat = m.Peer.NAT
	}
	if s.pairTaken(askerConn, key, false) || (crossing && key.Less(asker)) {
		respond(&clusterMsg{Dup: true})
		return
	}
	wait := min(time.Duration(m.WaitMs)*time.Millisecond, s.cfg.ConsentWait)
	actx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	id, a := s.consents.open(key)
	defer s.consents.close(id)
	if err := other.send(&Message{Type: TypeAsk, Peer: asker.String(), Seq: id}); err != nil {
		other.conn.Close()
		return
	}
	select {
	case <-a.yes:
	case <-actx.Done():
		return
	}
	// Both sides choose their strategy from both NATs: wait for this
	// peer's report (peers report just after registering, so it is
	// nearly always in), but for no more than half of what is left of
	// the asker node's wait, so that the answer still finds it waiting.
	if dl, ok := actx.Deadline(); ok {
		t := time.NewTimer(time.Until(dl) / 2)
		select {
		case <-other.reported:
		case <-t.C:
		case <-actx.Done():
		}
		t.Stop()
	}
	s.pairTaken(askerConn, key, true)
	respond(&clusterMsg{OK: true, Peer: c.peerInfo(other)})
}

// startSession starts a punch session between p, registered here, and
// key, registered on the node that answered r: this node coordinates it
// (its UDP step, and its relay, see doc.go) and sends the other node the
// punch instruction for key.
func (c *cluster) startSession(ctx context.Context, p *peerConn, key identity.PublicKey, r *clusterMsg) {
	s := c.s
	wait := time.NewTimer(s.cfg.NATWait)
	defer wait.Stop()
	select {
	case <-p.reported:
	case <-wait.C:
	case <-ctx.Done():
		return
	}
	id := punch.NewSessionID()
	keys := [2]identity.PublicKey{p.key, key}
	passes, relayNode := s.relayPasses(id, keys, [2]map[string]float64{c.rttsOf(p), cleanRTTs(r.Peer.RTTs)}, true)
	if s.logsFor(p, logPunch) {
		p.log.WithFields(logrus.Fields{"to": key.Short(), "session": id.String()[:8], "to_node": r.Node,
			"relay_node": relayNode}).Info("coordinating punch across nodes")
	}
	rtt := time.Duration(max(r.Peer.RTTMs, 0) * float64(time.Millisecond))
	us := &udpSession{sides: [2]*peerConn{p, nil}, remote: &remoteSide{key: key, node: r.Node, rtt: rtt}}
	natP, _ := p.natAndRTT()
	s.issueSession(id, us, keys, [2]*NATReport{natP, r.Peer.NAT})

	theirs := punchFor(id, 1, p)
	passes[1].apply(theirs)
	c.publish(nodeSubject(r.Node), &clusterMsg{Type: cmStart, Key: key.String(), Msg: theirs})

	mine := &Message{Type: TypePunch, Session: id.String(), Side: 0, Peer: key.String(), Public: r.Peer.Observed,
		LAN: r.Peer.LAN, NAT: r.Peer.NAT}
	passes[0].apply(mine)
	if err := p.send(mine); err != nil {
		p.conn.Close()
	}
}

// onNodeMsg serves a message to this node's subject.
func (c *cluster) onNodeMsg(msg *nats.Msg) {
	var m clusterMsg
	if err := json.Unmarshal(msg.Data, &m); err != nil || !validNodeName(m.Node) {
		return
	}
	switch m.Type {
	case cmStart, cmUDP:
		c.onDeliver(&m)
	case cmProbe:
		c.onProbe(&m)
	case cmHello:
		if msg.Reply != "" {
			msg.Respond(msg.Data)
		}
	}
}

// onDeliver sends a peer registered here the punch instruction or second
// step of a session another node coordinates. A punch makes the session
// shared: this peer's session probes, which come here, go to that node.
func (c *cluster) onDeliver(m *clusterMsg) {
	key, err := identity.ParsePublicKey(m.Key)
	if err != nil || m.Msg == nil {
		return
	}
	id, err := punch.ParseSessionID(m.Msg.Session)
	if err != nil {
		return
	}
	switch {
	case m.Type == cmStart && m.Msg.Type == TypePunch:
		c.mu.Lock()
		if !over(len(c.remote), c.s.cfg.MaxSessions) {
			c.remote[id] = remoteSession{origin: m.Node, at: time.Now()}
		}
		c.mu.Unlock()
	case m.Type == cmUDP && m.Msg.Type == TypeUDP:
		// The second step ends the session's probes.
		c.mu.Lock()
		delete(c.remote, id)
		c.mu.Unlock()
	default:
		return
	}
	c.s.mu.Lock()
	p := c.s.peers[key]
	c.s.mu.Unlock()
	if p == nil {
		return
	}
	// A peer slow to read delays only its own instruction, as on one node.
	c.spawn(func(context.Context) {
		if err := p.send(m.Msg); err != nil {
			p.conn.Close()
		}
	})
}

// forwardProbe passes a session probe that came here, for no session
// this node coordinates, to the node that does, if it is one this node's
// peer shares.
func (c *cluster) forwardProbe(id punch.SessionID, side int, from netip.AddrPort, localPort uint16, tcp bool) {
	if c == nil {
		return
	}
	c.mu.Lock()
	rs, ok := c.remote[id]
	c.mu.Unlock()
	if !ok {
		return
	}
	c.publish(nodeSubject(rs.origin), &clusterMsg{Type: cmProbe, Session: id.String(), Side: side,
		Mapped: from.String(), LocalPort: localPort, TCP: tcp})
}

// onProbe records a session probe another node saw, for a session this
// node coordinates, as if it had come here.
func (c *cluster) onProbe(m *clusterMsg) {
	id, err := punch.ParseSessionID(m.Session)
	from, err2 := netip.ParseAddrPort(m.Mapped)
	if err != nil || err2 != nil || m.Side < 0 || m.Side > 1 {
		return
	}
	if m.TCP {
		c.s.tcpMapped(id, byte(m.Side), from)
		return
	}
	c.s.sessionMapped(&sessionProbe{session: id, side: m.Side, localPort: m.LocalPort}, from)
}

// deliverUDP sends a session's second step to its side on another node.
func (c *cluster) deliverUDP(to *remoteSide, m *Message) {
	c.publish(nodeSubject(to.node), &clusterMsg{Type: cmUDP, Key: to.key.String(), Msg: m})
}

// sweep forgets shared sessions whose second step never came.
func (c *cluster) sweep(now time.Time) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, rs := range c.remote {
		if now.Sub(rs.at) > c.s.cfg.RelayWindow {
			delete(c.remote, id)
		}
	}
}
