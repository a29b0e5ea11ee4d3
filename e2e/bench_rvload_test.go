package e2e

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/warren-p2p/warren/identity"
	"github.com/warren-p2p/warren/punch"
	"github.com/warren-p2p/warren/rendezvous"
)

// rvPeers are the simulated peers one load worker process holds (rvLoad
// spreads a benchmark's peers over several, bench_worker_test.go), each
// registered with a server over its own connection and keeping it alive.
// With several servers (the nodes of one cluster, all holding the same
// key), peer i registers with addrs[i mod len(addrs)]; i is the peer's
// index among all the benchmark's peers, in every worker.
type rvPeers struct {
	addrs  []string
	ramp   int // registrations in flight
	ctx    context.Context
	cancel context.CancelFunc
	logf   func(format string, args ...any)
	all    []*rvPeer        // this worker's peers, by rising index
	byKey  map[string]int32 // their public keys (text) to index
	wg     sync.WaitGroup

	lostConns atomic.Int64
	stray     atomic.Int64 // error frames
	udps      atomic.Int64 // second-step `udp` frames

	// mu guards the fields below.
	mu       sync.Mutex
	n        int                    // peers registered: all[:n]
	halves   map[string]struct{}    // punch sessions one side has received the punch of
	asks     map[[2]int32]time.Time // outstanding asks by (asker, target), to when sent
	done     int                    // asks both of whose punches arrived
	lats     [2][]time.Duration     // their latencies: pairs on one server, pairs on two
	sem      chan struct{}          // one token per outstanding ask
	wheel    [][]*rvPeer            // peers by the slot their next ping is due in
	wheelPos int                    // slot due next
}

// rvPeer is one simulated peer.
type rvPeer struct {
	i    int32
	pub  string
	conf *tls.Config

	conn  *tls.Conn
	wmu   sync.Mutex // serialises writes
	seq   uint64     // last ping sent
	sent  time.Time  // when ping 1 went out
	rttMs float64
}

// newRVPeers makes keys and certificates for cfg's worker's share of the
// peers, makes sure it may hold a connection for each, and starts the
// ping wheel. close stops it.
func newRVPeers(cfg rvWorkerConfig, logf func(format string, args ...any)) (*rvPeers, error) {
	serverKey, err := identity.ParsePublicKey(cfg.ServerKey)
	if err != nil {
		return nil, fmt.Errorf("server key: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &rvPeers{addrs: cfg.Addrs, ramp: cfg.Ramp, ctx: ctx, cancel: cancel, logf: logf, byKey: make(map[string]int32),
		halves: make(map[string]struct{}), asks: make(map[[2]int32]time.Time),
		wheel: make([][]*rvPeer, rvPingInterval/rvWheelTick)}
	for i := range cfg.Max {
		if rvWorkerOf(i, len(cfg.Addrs), cfg.Workers) != cfg.Index {
			continue
		}
		k, err := identity.Generate()
		if err != nil {
			cancel()
			return nil, err
		}
		cert, err := identity.Certificate(k)
		if err != nil {
			cancel()
			return nil, err
		}
		p := &rvPeer{i: int32(i), pub: k.Public().String(), conf: identity.TLSConfig(cert, identity.Pinned(serverKey))}
		l.all = append(l.all, p)
		l.byKey[p.pub] = int32(i)
	}
	if err := raiseFDLimit(uint64(len(l.all)) + rvSpareFDs); err != nil {
		cancel()
		return nil, fmt.Errorf("load worker %d of %d, %d peers: %w", cfg.Index, cfg.Workers, len(l.all), err)
	}
	l.wg.Go(l.pinger)
	return l, nil
}

// close closes every connection and waits for the peers' goroutines.
func (l *rvPeers) close() {
	l.cancel()
	// Every registration has finished (grow waits for them), so conn is
	// settled: set for each peer that connected.
	for _, p := range l.all {
		if p.conn != nil {
			p.conn.Close()
		}
	}
	l.wg.Wait()
}

// raiseFDLimit makes sure this process, and the processes it starts
// afterwards (which inherit the limit), may hold need file descriptors.
// Raising the hard limit takes root with CAP_SYS_RESOURCE.
func raiseFDLimit(need uint64) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("file descriptor limit: %w", err)
	}
	if lim.Cur >= need {
		return nil
	}
	want := syscall.Rlimit{Cur: need, Max: max(need, lim.Max)}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
		return fmt.Errorf("%d file descriptors needed, the limit is %d (hard %d) and raising it failed "+
			"(run as root, or with ulimit -n %d): %w", need, lim.Cur, lim.Max, need, err)
	}
	return nil
}

// node is the index of the server peer i registers with.
func (l *rvPeers) node(i int32) int { return int(i) % len(l.addrs) }

// below is how many of the first k of all are of index below n.
func below(all []*rvPeer, k, n int) int {
	return sort.Search(k, func(j int) bool { return int(all[j].i) >= n })
}

// grow registers this worker's peers of index below n, l.ramp at a time.
// Any failed registration is an error: the server must take them all.
func (l *rvPeers) grow(n int) error {
	l.mu.Lock()
	from := l.n
	l.mu.Unlock()
	to := below(l.all, len(l.all), n)
	todo := make(chan *rvPeer)
	var failed atomic.Int64
	var first error
	var once sync.Once
	var wg sync.WaitGroup
	for range l.ramp {
		wg.Go(func() {
			for p := range todo {
				if err := l.register(p); err != nil {
					failed.Add(1)
					once.Do(func() { first = err })
				}
			}
		})
	}
	for _, p := range l.all[from:to] {
		todo <- p
	}
	close(todo)
	wg.Wait()
	if f := failed.Load(); f > 0 {
		return fmt.Errorf("%d of %d registrations failed, first: %w", f, to-from, first)
	}
	l.mu.Lock()
	l.n = to
	l.mu.Unlock()
	return nil
}

// register connects p as rendezvous.Client does: TLS with the server
// pinned, `register` with LAN endpoints, `registered`, the NAT report,
// and the first ping at once. Its reader then sends the second ping with
// the measured RTT and puts p on the ping wheel.
func (l *rvPeers) register(p *rvPeer) error {
	d := net.Dialer{Timeout: 10 * time.Second}
	raw, err := d.DialContext(l.ctx, "tcp", l.addrs[l.node(p.i)])
	if err != nil {
		return err
	}
	raw.SetDeadline(time.Now().Add(10 * time.Second))
	tc := tls.Client(raw, p.conf)
	if err := tc.HandshakeContext(l.ctx); err != nil {
		raw.Close()
		return fmt.Errorf("peer %d: tls: %w", p.i, err)
	}
	local := netip.MustParseAddrPort(raw.LocalAddr().String())
	// A daemon reports its interface addresses with its shared port:
	// loopback's and a LAN address's here, so punch frames carry two.
	lan := []string{local.String(), netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 168, byte(p.i >> 8), byte(p.i)}),
		local.Port()).String()}
	p.conn = tc
	if err := p.send(&rendezvous.Message{Type: rendezvous.TypeRegister, Version: rendezvous.Version, LAN: lan}); err != nil {
		tc.Close()
		return fmt.Errorf("peer %d: register: %w", p.i, err)
	}
	f, err := readFrame(tc)
	if err != nil || f.Type != rendezvous.TypeRegistered {
		tc.Close()
		return fmt.Errorf("peer %d: register answered %q: %v", p.i, f.Type, err)
	}
	raw.SetDeadline(time.Time{})
	nat := punch.NAT{Behind: true, Mapping: punch.MappingEndpointIndependent, Allocation: punch.AllocationPreserved,
		PublicIP: local.Addr(), LastPort: local.Port()}
	p.sent = time.Now()
	p.seq = 1
	if err := p.send(&rendezvous.Message{Type: rendezvous.TypeNAT, NAT: rendezvous.ReportNAT(nat)}); err != nil {
		tc.Close()
		return err
	}
	if err := p.send(&rendezvous.Message{Type: rendezvous.TypePing, Seq: 1}); err != nil {
		tc.Close()
		return err
	}
	l.wg.Go(func() { l.read(p) })
	return nil
}

func (p *rvPeer) send(m *rendezvous.Message) error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	p.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return rendezvous.WriteMessage(p.conn, m)
}

// rvFrame is the part of a server frame the load generator looks at.
type rvFrame struct {
	Type    string `json:"type"`
	Session string `json:"session"`
	Side    int    `json:"side"`
	Peer    string `json:"peer"`
	Seq     uint64 `json:"seq"`
}

// readFrame reads one frame as rendezvous.ReadMessage does, decoding only
// rvFrame's fields.
func readFrame(r io.Reader) (rvFrame, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return rvFrame{}, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > rendezvous.MaxMessage {
		return rvFrame{}, fmt.Errorf("frame of %d bytes", n)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return rvFrame{}, err
	}
	var f rvFrame
	err := json.Unmarshal(body, &f)
	return f, err
}

// read handles p's frames until its connection closes.
func (l *rvPeers) read(p *rvPeer) {
	for {
		f, err := readFrame(p.conn)
		if err != nil {
			if l.ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
				l.logf("peer %d: connection lost: %v", p.i, err)
				l.lostConns.Add(1)
			}
			return
		}
		switch f.Type {
		case rendezvous.TypePong:
			if f.Seq == 1 {
				// As the client does: a second ping at once, carrying
				// the RTT, then one every interval.
				p.rttMs = float64(time.Since(p.sent).Microseconds()) / 1000
				p.seq = 2
				p.send(&rendezvous.Message{Type: rendezvous.TypePing, Seq: 2, RTTMs: p.rttMs})
				l.mu.Lock()
				slot := (l.wheelPos + len(l.wheel) - 1) % len(l.wheel)
				l.wheel[slot] = append(l.wheel[slot], p)
				l.mu.Unlock()
			}
		case rendezvous.TypeAsk:
			// Every simulated peer lists every other: consent.
			p.send(&rendezvous.Message{Type: rendezvous.TypeConsent, Seq: f.Seq})
		case rendezvous.TypePunch:
			l.punched(p, f)
		case rendezvous.TypeUDP:
			l.udps.Add(1)
		case rendezvous.TypeError:
			l.stray.Add(1)
		}
	}
}

// pinger sends each peer on the wheel a ping every rvPingInterval.
func (l *rvPeers) pinger() {
	t := time.NewTicker(rvWheelTick)
	defer t.Stop()
	for {
		select {
		case <-l.ctx.Done():
			return
		case <-t.C:
		}
		l.mu.Lock()
		due := slices.Clone(l.wheel[l.wheelPos])
		l.wheelPos = (l.wheelPos + 1) % len(l.wheel)
		l.mu.Unlock()
		for _, p := range due {
			p.seq++
			if err := p.send(&rendezvous.Message{Type: rendezvous.TypePing, Seq: p.seq, RTTMs: p.rttMs}); err != nil &&
				l.ctx.Err() == nil {
				l.lostConns.Add(1)
			}
		}
	}
}

// punched records that p received a punch frame. The asker is side 0
// (the server sends side 0 to the peer whose connect started the
// session); when both sides' punches are in, the ask is done.
func (l *rvPeers) punched(p *rvPeer, f rvFrame) {
	l.mu.Lock()
	defer l.mu.Unlock()
	other, ok := l.byKey[f.Peer]
	if !ok {
		return
	}
	if _, seen := l.halves[f.Session]; !seen {
		l.halves[f.Session] = struct{}{}
		return
	}
	delete(l.halves, f.Session)
	key := [2]int32{p.i, other}
	if f.Side == 1 {
		key = [2]int32{other, p.i}
	}
	if sent, ok := l.asks[key]; ok {
		delete(l.asks, key)
		l.done++
		cross := 0
		if l.node(key[0]) != l.node(key[1]) {
			cross = 1
		}
		l.lats[cross] = append(l.lats[cross], time.Since(sent))
		<-l.sem
	}
}
