package punch

import (
	"context"
	"crypto/hmac"
	cryptorand "crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warren-p2p/warren/internal/conf"
)

// UDP punch packets: magic | type | nonce | tag, where tag authenticates
// magic, type and nonce with a key derived from the session and the
// sender's direction (which side controls), so that a stray packet (a
// scanner, an old session) never completes a punch, and neither does a
// packet of this side's own that comes back to it (a spray that hits one
// of its own sockets).
const (
	udpMagic     = "WRU\x01"
	udpNonceLen  = 8
	udpTagLen    = 16
	udpPacketLen = len(udpMagic) + 1 + udpNonceLen + udpTagLen

	udpPing     byte = 1 // "can you hear me?"
	udpPong     byte = 2 // "I heard you"
	udpNominate byte = 3 // "use this path" (from the controlling side)
	udpRoam     byte = 4 // "I am here now" (on an established path, keyed by the link: roam.go)
)

// UDPPrefix is the first bytes of every UDP punch packet, for
// demultiplexers that share the socket afterwards.
const UDPPrefix = udpMagic

// ErrUDPNoPath is returned when the UDP strategy has nothing to try.
var ErrUDPNoPath = errors.New("no direct UDP path for this NAT pair")

// udpKey is the key the side that controls (or not) seals its punch
// packets with; the other side opens them with it.
func (s SessionID) udpKey(controlling bool) []byte {
	label := "warren udp punch controlled "
	if controlling {
		label = "warren udp punch controlling "
	}
	h := sha256.Sum256(append([]byte(label), s[:]...))
	return h[:]
}

// Conv returns the value both peers derive for session s's KCP
// conversation ID; transport.MakeConv turns it into a valid one (its
// first byte on the wire never that of a punch packet).
func (s SessionID) Conv() uint32 {
	h := sha256.Sum256(append([]byte("warren kcp conv "), s[:]...))
	return binary.LittleEndian.Uint32(h[:4])
}

func sealPacket(key []byte, typ byte, nonce []byte) []byte {
	p := make([]byte, 0, udpPacketLen)
	p = append(p, udpMagic...)
	p = append(p, typ)
	p = append(p, nonce...)
	m := hmac.New(sha256.New, key)
	m.Write(p)
	return m.Sum(p)[:udpPacketLen]
}

// openPacket checks p and returns its type.
func openPacket(key, p []byte) (byte, bool) {
	if len(p) != udpPacketLen || string(p[:len(udpMagic)]) != udpMagic {
		return 0, false
	}
	body := p[:udpPacketLen-udpTagLen]
	m := hmac.New(sha256.New, key)
	m.Write(body)
	if !hmac.Equal(m.Sum(nil)[:udpTagLen], p[len(body):]) {
		return 0, false
	}
	return p[len(udpMagic)], true
}

// UDPConfig tunes UDP punching. A zero field means its default; a
// negative one is an error (Verify; PunchUDP refuses it).
type UDPConfig struct {
	// Budget paces the punch's packets and caps them per minute, together
	// with every other punch that shares it. Default: a budget of this
	// punch's own at Rate.
	Budget *Budget
	// Rate is the packets per second of the default Budget. Default 2000
	// (DefaultSprayRate).
	Rate int
	// MaxProbes caps the packets this punch sends of its own accord
	// (pings, sprays, every role); answers to the peer's packets are
	// capped by the Budget only. Default 2 × the Budget's rate.
	MaxProbes int
	// Sockets is how many sockets the random-port side of a birthday
	// punch opens. Default 256.
	Sockets int
	// Window is the first prediction window, in ports, for a sequential
	// NAT; it doubles each round up to 16 times that. Default 32, at most
	// maxWindow/16.
	Window int
	// Interval is how often a fixed endpoint is pinged. Default 50ms.
	Interval time.Duration
	// Train is how many pings the probe train of a session with Choose
	// sends. Default 48: enough for the smallest of their round trips to
	// be the path's, and for a loss of a few percent to show. At most
	// 255 (the nomination counts them in a byte).
	Train int
	// ShortTrain is how many pings a train sends before it asks
	// UDPSession.Short whether that is enough. Default 16: they leave
	// within the budget's burst, and on a LAN their answers are back
	// before the last has left.
	ShortTrain int
}

// DefaultSprayRate is the default rate of a punch Budget (and of the
// config file's [link] spray_rate).
const DefaultSprayRate = 2000

// maxWindow bounds the widest prediction window, in ports: how far from
// the base the server observed a spray may wander.
const maxWindow = 1024

// withDefaults returns c (nil allowed) with zero fields defaulted, the
// Budget made if there is none.
func (c *UDPConfig) withDefaults() (UDPConfig, error) {
	var out UDPConfig
	if c != nil {
		out = *c
	}
	conf.Default(&out.Sockets, 256)
	conf.Default(&out.Window, 32)
	out.Window = min(out.Window, maxWindow/16)
	conf.Default(&out.Interval, 50*time.Millisecond)
	conf.Default(&out.Train, 48)
	out.Train = min(out.Train, 255)
	conf.Default(&out.ShortTrain, 16)
	out.ShortTrain = min(out.ShortTrain, out.Train)
	if out.Budget == nil {
		b, err := NewBudget(&BudgetConfig{Rate: out.Rate})
		if err != nil {
			return out, err
		}
		out.Budget = b
	}
	conf.Default(&out.MaxProbes, 2*out.Budget.Rate())
	return out, nil
}

// Verify reports whether c (nil means defaults) is usable.
func (c *UDPConfig) Verify() error {
	if c == nil {
		return nil
	}
	return errors.Join(conf.NotNegative("punch: Rate", c.Rate), conf.NotNegative("punch: MaxProbes", c.MaxProbes),
		conf.NotNegative("punch: Sockets", c.Sockets), conf.NotNegative("punch: Window", c.Window),
		conf.NotNegative("punch: Interval", c.Interval), conf.NotNegative("punch: Train", c.Train),
		conf.NotNegative("punch: ShortTrain", c.ShortTrain))
}

// PacketConn is what a UDP punch needs of a socket. *net.UDPConn has it;
// unit tests substitute sockets behind a simulated NAT.
type PacketConn interface {
	ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error)
	WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error)
	SetReadDeadline(t time.Time) error
	Close() error
}

// UDPSession describes one side's UDP punch.
type UDPSession struct {
	ID SessionID
	// Controlling is true on the side with the lower key: it nominates
	// the path, the other side waits for the nomination.
	Controlling bool
	Role        UDPRole
	// Peer is the peer's NAT, as it reported it.
	Peer NAT
	// PeerEndpoint is the peer's session socket as the rendezvous server
	// saw it: the exact endpoint for an easy NAT, the base of the port
	// prediction for a sequential one, the address for a random one.
	PeerEndpoint netip.AddrPort
	// LAN are endpoints at which the peer's session socket may be reached
	// without a NAT (its interface addresses); they are pinged alongside
	// the role, so peers behind one NAT that does not hairpin still meet.
	LAN []netip.AddrPort
	// Listen opens extra sockets (RoleManySockets). Default: UDP on an
	// ephemeral port.
	Listen func() (PacketConn, error)
	// Stream names the protocol the controlling side will run over the
	// path (opaque here); it travels, authenticated, in the nomination,
	// so both sides agree whatever each prefers.
	Stream byte
	// Scope is where the punch may send: PeerEndpoint and LAN entries it
	// refuses are dropped, and so is every packet to an address it
	// refuses (a ping's source included). The zero Scope allows nothing.
	Scope Scope
	// Choose, if set on the controlling side, makes it measure the path
	// before it nominates: once the first pong arrives it sends a train
	// of pings (UDPConfig.Train) to where the pong came from, and
	// nominates the stream Choose returns for what the train measured
	// (instead of Stream). The measurement travels in the nomination, so
	// both sides know what the choice was made from.
	Choose func(Quality) byte
	// Estimate, if its RTT is set, makes a controlling side with Choose
	// nominate at its first pong, with the stream Choose returns for
	// Estimate, and run no probe train: for a path the caller already
	// knows well enough (long, with nothing waiting for a measurement of
	// its loss), where the train would only delay the link.
	Estimate Quality
	// Short, if set, ends a probe train after UDPConfig.ShortTrain pings
	// when it reports true for the smallest round trip answered by then:
	// a path that short (a LAN) needs no longer measurement for the
	// choice, and its link comes up sooner.
	Short func(rtt time.Duration) bool
}

// Quality is what a probe train measured of a punched path: how many
// pings it sent, how many got no answer, and the smallest round trip
// among the answers (the path's own, without the queueing and scheduling
// delays that the others add). Sent 0 means nothing was measured (no
// train ran, or the peer does not echo pings: a version before trains).
type Quality struct {
	Sent, Lost int
	RTT        time.Duration
}

// UDPResult is a punched UDP path: a socket and the peer's endpoint as
// seen from it. The caller owns Conn, which is the session socket or one
// that Listen returned.
type UDPResult struct {
	Conn   PacketConn
	Remote netip.AddrPort
	// Stream is the controlling side's Stream: what both sides run.
	Stream byte
	// Quality is what the controlling side's probe train measured (on
	// both sides: it travels in the nomination); zero without a train.
	Quality Quality
	// Sent is how many punch packets this side sent, for logs: a spray
	// that needs far more than its odds say points at a NAT that does
	// not behave as classified.
	Sent int
}

type udpEvent struct {
	sock PacketConn
	from netip.AddrPort
	typ  byte
	body [udpNonceLen]byte
	at   time.Time // when it was read
}

// PunchUDP punches from sock (the session socket whose mapping the server
// observed) following s.Role, until a path is nominated or ctx ends. It
// takes ownership of sock: on success sock or one of the extra sockets is
// returned in the result and every other socket is closed; on failure all
// are closed.
func PunchUDP(ctx context.Context, cfg *UDPConfig, s UDPSession, sock PacketConn) (UDPResult, error) {
	if err := cfg.Verify(); err != nil {
		sock.Close()
		return UDPResult{}, err
	}
	c, err := cfg.withDefaults()
	if err != nil {
		sock.Close()
		return UDPResult{}, err
	}
	if s.Scope.Check(s.PeerEndpoint) != nil {
		s.PeerEndpoint = netip.AddrPort{}
	}
	s.LAN = s.Scope.Filter(s.LAN)
	if (s.Role == RoleNone || s.Role == "" || !s.PeerEndpoint.IsValid()) && len(s.LAN) == 0 {
		sock.Close()
		return UDPResult{}, ErrUDPNoPath
	}
	if s.Listen == nil {
		s.Listen = func() (PacketConn, error) { return net.ListenUDP("udp", nil) }
	}
	p := &udpPuncher{cfg: c, s: s, seal: s.ID.udpKey(s.Controlling), open: s.ID.udpKey(!s.Controlling),
		events: make(chan udpEvent, 64), done: make(chan struct{})}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	p.add(sock)
	if s.Role == RoleManySockets && s.PeerEndpoint.IsValid() {
		for range c.Sockets - 1 {
			extra, err := s.Listen()
			if err != nil {
				break // fewer sockets only lowers the odds
			}
			p.add(extra)
		}
	}
	// The role's packets stop when a probe train starts: the train's
	// pings are all the path needs from then on.
	sendCtx, stopSending := context.WithCancel(ctx)
	defer stopSending()
	p.stopSending = stopSending
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.send(sendCtx)
	}()
	if len(s.LAN) > 0 {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.pingEvery(sendCtx, []PacketConn{sock}, s.LAN)
		}()
	}
	res, err := p.await(ctx)
	cancel()
	p.stop(res.Conn)
	if err == nil && s.Controlling {
		// Nominated only now that no reader is left on the socket: what
		// the peer sends once nominated (its first stream packets) waits
		// there for the stream. Three copies, as the nomination has no
		// ack, and losing it costs a whole punch session.
		body := nominationBody(res.Stream, res.Quality)
		for range 3 {
			p.answer(res.Conn, udpNominate, body[:], res.Remote)
		}
	}
	res.Sent = int(p.sent.Load())
	return res, err
}

// maxTriggered bounds the sources a punch pings back (await): each is an
// authenticated ping of the peer's, but a birthday punch brings many.
const maxTriggered = 16

type udpPuncher struct {
	cfg    UDPConfig
	s      UDPSession
	seal   []byte // this side's key
	open   []byte // the peer's key
	events chan udpEvent
	done   chan struct{}
	socks  []PacketConn
	wg     sync.WaitGroup
	sent   atomic.Int64 // every packet sent
	probes atomic.Int64 // pings, against MaxProbes
	// stopSending ends the role's sending (send, pingEvery).
	stopSending context.CancelFunc
}

func (p *udpPuncher) add(sock PacketConn) {
	p.socks = append(p.socks, sock)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.read(sock)
	}()
}

// read delivers authenticated punch packets from one socket. After the
// packet that ends the punch on this side (the nomination, for the
// controlled side) it stops reading, so that what the peer sends next (its
// first stream packets) waits in the socket for whoever takes the socket
// over, instead of being read here and dropped. The controlling side reads
// until stop: the peer sends nothing but pongs before it is nominated.
func (p *udpPuncher) read(sock PacketConn) {
	final := udpNominate
	if p.s.Controlling {
		final = 0 // no packet of that type
	}
	buf := make([]byte, 1500)
	for {
		n, from, err := sock.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		typ, ok := openPacket(p.open, buf[:n])
		if !ok {
			continue
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		ev := udpEvent{sock: sock, from: from, typ: typ, at: time.Now()}
		copy(ev.body[:], buf[len(udpMagic)+1:])
		select {
		case p.events <- ev:
		case <-p.done:
			return
		}
		if typ == final {
			return
		}
	}
}

// write sends one packet with body (random if nil), if the Scope allows
// its destination.
func (p *udpPuncher) write(sock PacketConn, typ byte, body []byte, to netip.AddrPort) {
	if p.s.Scope.Check(to) != nil {
		return
	}
	if body == nil {
		body = make([]byte, udpNonceLen)
		cryptorand.Read(body)
	}
	sock.WriteToUDPAddrPort(sealPacket(p.seal, typ, body), to)
	p.sent.Add(1)
}

// ping sends a ping (body nil: a random one) once the budget allows it;
// false means it never will (this punch's MaxProbes are spent, or ctx
// ended).
func (p *udpPuncher) ping(ctx context.Context, sock PacketConn, body []byte, to netip.AddrPort) bool {
	if p.probes.Add(1) > int64(p.cfg.MaxProbes) || !p.cfg.Budget.wait(ctx) {
		return false
	}
	p.write(sock, udpPing, body, to)
	return true
}

// answer sends an answer to the peer's packet, unpaced (the peer waits
// for it), if the budget's minute allows it.
func (p *udpPuncher) answer(sock PacketConn, typ byte, body []byte, to netip.AddrPort) {
	if p.cfg.Budget.take() {
		p.write(sock, typ, body, to)
	}
}

// await answers pings and returns the nominated path; the controlling side
// returns the path to nominate (PunchUDP sends the nomination), after its
// probe train if the session has one. The controlling side also pings the
// source of a ping back, once (a triggered check, as ICE has): the peer's
// ping may have come through a way this side's own pings cannot take (the
// port mapping of this side's router, towards a peer behind a symmetric
// NAT), and the nomination needs a pong.
func (p *udpPuncher) await(ctx context.Context) (UDPResult, error) {
	triggered := map[netip.AddrPort]bool{}
	var tr *train
	var sentAll <-chan struct{} // the train's, until handled
	allOut := false             // sentAll was handled
	for {
		var trainDone <-chan time.Time
		if tr != nil {
			trainDone = tr.deadline.C
		}
		select {
		case <-sentAll:
			sentAll, allOut = nil, true
			if tr.rearm() {
				return p.trainResult(tr), nil
			}
		case ev := <-p.events:
			switch ev.typ {
			case udpPing:
				// A pong echoes the ping's body: a probe train matches
				// its answers by it.
				p.answer(ev.sock, udpPong, ev.body[:], ev.from)
				if p.s.Controlling && !triggered[ev.from] && len(triggered) < maxTriggered {
					triggered[ev.from] = true
					p.answer(ev.sock, udpPing, nil, ev.from)
				}
			case udpPong:
				switch {
				case !p.s.Controlling:
				case p.s.Choose == nil:
					return UDPResult{Conn: ev.sock, Remote: ev.from, Stream: p.s.Stream}, nil
				case tr == nil && p.s.Estimate.RTT > 0:
					return UDPResult{Conn: ev.sock, Remote: ev.from, Stream: p.s.Choose(p.s.Estimate), Quality: p.s.Estimate}, nil
				case tr == nil:
					tr = p.startTrain(ctx, ev)
					sentAll = tr.sentAll
				case ev.sock == tr.sock && ev.from == tr.to:
					if !tr.answered(ev) {
						break
					}
					if allOut && tr.rearm() {
						return p.trainResult(tr), nil
					}
					if res, ok := p.settledByLoss(tr); ok {
						return res, nil
					}
				}
			case udpNominate:
				if !p.s.Controlling {
					stream, q := parseNomination(ev.body)
					return UDPResult{Conn: ev.sock, Remote: ev.from, Stream: stream, Quality: q}, nil
				}
			}
		case <-trainDone:
			return p.trainResult(tr), nil
		case <-ctx.Done():
			if tr != nil {
				tr.deadline.Stop()
			}
			return UDPResult{}, fmt.Errorf("udp punch (%s): %w", p.s.Role, ctx.Err())
		}
	}
}

// stop ends the readers and the sender and closes every socket but keep.
func (p *udpPuncher) stop(keep PacketConn) {
	close(p.done)
	for _, s := range p.socks {
		if s == keep {
			s.SetReadDeadline(time.Unix(1, 0))
		} else {
			s.Close()
		}
	}
	p.wg.Wait()
	if keep != nil {
		keep.SetReadDeadline(time.Time{})
	}
}

// pingEvery pings each of targets from each of socks, round after round
// with Interval between them, until ctx ends or the budget is spent.
func (p *udpPuncher) pingEvery(ctx context.Context, socks []PacketConn, targets []netip.AddrPort) {
	for {
		for _, s := range socks {
			for _, t := range targets {
				if !p.ping(ctx, s, nil, t) {
					return
				}
			}
		}
		select {
		case <-time.After(p.cfg.Interval):
		case <-ctx.Done():
			return
		}
	}
}

// send runs this side's role until it is done, ctx ends or the budget is
// spent. Every role draws on the same budget: the random-port side of a
// birthday punch paces its sockets' pings like any spray.
func (p *udpPuncher) send(ctx context.Context) {
	if p.s.Role == RoleNone || !p.s.PeerEndpoint.IsValid() {
		return
	}
	main := p.socks[0]
	peerIP := p.s.PeerEndpoint.Addr()
	switch p.s.Role {
	case RoleDirect:
		p.pingEvery(ctx, []PacketConn{main}, []netip.AddrPort{p.s.PeerEndpoint})
	case RoleManySockets:
		// Each socket's first packet opens a fresh mapping towards the
		// peer; repeats keep the mappings open while the peer searches.
		p.pingEvery(ctx, p.socks, []netip.AddrPort{p.s.PeerEndpoint})
	case RoleSprayWindow:
		if !p.s.Peer.predictable() {
			return
		}
		for window := p.cfg.Window; ctx.Err() == nil; window = min(2*window, 16*p.cfg.Window) {
			// Ports in rising order: when both sides spray (seq/seq),
			// each side's i-th new mapping meets the other's i-th.
			for _, port := range PredictPorts(p.s.Peer, p.s.PeerEndpoint.Port(), window, 0) {
				if !p.ping(ctx, main, nil, netip.AddrPortFrom(peerIP, port)) {
					return
				}
			}
		}
	case RoleSprayRandom:
		// The peer's own endpoint first (its NAT may have kept the
		// port), then random ports above the reserved range.
		for to := p.s.PeerEndpoint; p.ping(ctx, main, nil, to); {
			to = netip.AddrPortFrom(peerIP, uint16(1024+rand.IntN(65536-1024)))
		}
	}
}

// A probe train's pings carry a token of the train's and their number,
// which the peer's pongs echo; the nomination carries what the train
// measured (spec.md).
const (
	trainTokenLen = udpNonceLen - 2
	// trainWaitMax bounds the wait for the train's last answers.
	trainWaitMax = time.Second
	// trainWaitMin is the least wait for them after the last ping.
	trainWaitMin = 10 * time.Millisecond
	// trainReorder is how many later pings must be answered before an
	// unanswered one counts as lost while the train runs (TCP's duplicate
	// ACK threshold, for the same reason: a path may reorder a little).
	trainReorder = 3
	// measuredMark, in a nomination's body, says that it carries a
	// measurement (an older controlling side's nomination has random
	// bytes there).
	measuredMark = 'm'
)

// train is a probe train in flight: the controlling side's pings along
// the path a first pong came from, and their answers.
type train struct {
	sock     PacketConn
	to       netip.AddrPort
	token    [trainTokenLen]byte
	deadline *time.Timer // reset to the wait for stragglers once all are sent
	sentAll  chan struct{}

	// mu guards sent, and answers and minRTT, which the sender reads
	// (short) while await writes them.
	mu   sync.Mutex
	sent []time.Time // when each ping left; zero if it did not (yet)

	answers int
	got     []bool
	latest  int // the highest number answered
	minRTT  time.Duration
	maxRTT  time.Duration
}

// startTrain sends a train of cfg.Train pings, paced by the budget, to
// where the pong ev came from, from the socket it came to.
func (p *udpPuncher) startTrain(ctx context.Context, ev udpEvent) *train {
	p.stopSending()
	tr := &train{sock: ev.sock, to: ev.from, sentAll: make(chan struct{}),
		sent: make([]time.Time, p.cfg.Train), got: make([]bool, p.cfg.Train),
		// Until every ping is out: the most the budget's pacing may take.
		deadline: time.NewTimer(trainWaitMax + time.Duration(p.cfg.Train)*time.Second/time.Duration(p.cfg.Budget.Rate()))}
	cryptorand.Read(tr.token[:])
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer close(tr.sentAll)
		for i := range p.cfg.Train {
			if i == p.cfg.ShortTrain && p.s.Short != nil && tr.short(p.s.Short) {
				return
			}
			var body [udpNonceLen]byte
			copy(body[:], tr.token[:])
			binary.BigEndian.PutUint16(body[trainTokenLen:], uint16(i))
			if p.probes.Add(1) > int64(p.cfg.MaxProbes) || !p.cfg.Budget.wait(ctx) {
				return
			}
			tr.mu.Lock()
			tr.sent[i] = time.Now()
			tr.mu.Unlock()
			p.write(tr.sock, udpPing, body[:], tr.to)
		}
	}()
	return tr
}

// answered records a pong of the train's path and reports whether it was
// a new answer to one of the train's pings.
func (tr *train) answered(ev udpEvent) bool {
	if [trainTokenLen]byte(ev.body[:trainTokenLen]) != tr.token {
		return false
	}
	i := int(binary.BigEndian.Uint16(ev.body[trainTokenLen:]))
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if i >= len(tr.sent) || tr.sent[i].IsZero() || tr.got[i] {
		return false
	}
	tr.got[i] = true
	tr.answers++
	tr.latest = max(tr.latest, i)
	rtt := ev.at.Sub(tr.sent[i])
	if tr.answers == 1 || rtt < tr.minRTT {
		tr.minRTT = rtt
	}
	tr.maxRTT = max(tr.maxRTT, rtt)
	return true
}

// rearm sets the wait for the last answers, once every ping is out: from
// the last ping, late (an answer later than that counts as lost), or
// trainWaitMax while none has come. It is called again with each answer,
// as the first ones may come only after the last ping left. It reports
// whether the train is over already (all answered).
func (tr *train) rearm() bool {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	n := tr.count()
	if tr.answers == n {
		return true
	}
	wait := trainWaitMax
	if tr.answers > 0 {
		wait = min(trainWaitMax, tr.late())
	}
	var last time.Time
	for _, t := range tr.sent {
		if t.After(last) {
			last = t
		}
	}
	tr.deadline.Reset(time.Until(last.Add(wait)))
	return false
}

// short reports whether the answers so far say the path is short enough
// to end the train.
func (tr *train) short(short func(time.Duration) bool) bool {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.answers > 0 && short(tr.minRTT)
}

// lostSoFar measures the path while the train runs. A ping counts as lost
// once trainReorder later ones were answered and its own answer is later
// than late allows (as after the last ping, rearm): a path may reorder a
// little, and jitter may hold one answer back behind later ones. Sent
// counts the pings whose fate is known so, Lost those of them lost.
func (tr *train) lostSoFar(now time.Time) Quality {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	q := Quality{RTT: tr.minRTT}
	late := tr.late()
	for i := 0; i <= tr.latest-trainReorder; i++ {
		switch {
		case tr.got[i]:
			q.Sent++
		case now.Sub(tr.sent[i]) > late:
			q.Sent++
			q.Lost++
		}
	}
	return q
}

// late is how long after it left an answer may still come: the slowest
// answer yet and as much again as the answers' spread (at least
// trainWaitMin). tr.mu must be held.
func (tr *train) late() time.Duration {
	return tr.maxRTT + max(trainWaitMin, tr.maxRTT-tr.minRTT)
}

// count is how many pings the train sent. tr.mu must be held.
func (tr *train) count() int {
	n := 0
	for _, t := range tr.sent {
		if !t.IsZero() {
			n++
		}
	}
	return n
}

// trainResult is the path the train ran on, with the stream Choose picks
// for what it measured.
func (p *udpPuncher) trainResult(tr *train) UDPResult {
	tr.deadline.Stop()
	tr.mu.Lock()
	q := Quality{Sent: tr.count(), RTT: tr.minRTT}
	tr.mu.Unlock()
	q.Lost = q.Sent - tr.answers
	if tr.answers == 0 {
		// A peer that does not echo (a version before trains), or a path
		// that died at once: nothing was measured.
		q = Quality{}
	}
	return UDPResult{Conn: tr.sock, Remote: tr.to, Stream: p.s.Choose(q), Quality: q}
}

// settledByLoss ends a train early, on a path it has seen lose pings and
// that is not short: the rest of the train could only add loss, and every
// choice made from a lossy path longer than a LAN is the same however
// lossy (ChooseStream: KCP; package session: a lossy path). Waiting out the
// train and its last answers would cost two round trips or more of the
// link's setup on exactly the paths where round trips are dear.
func (p *udpPuncher) settledByLoss(tr *train) (UDPResult, bool) {
	q := tr.lostSoFar(time.Now())
	if q.Lost == 0 || p.s.Short == nil || p.s.Short(q.RTT) {
		return UDPResult{}, false
	}
	tr.deadline.Stop()
	return UDPResult{Conn: tr.sock, Remote: tr.to, Stream: p.s.Choose(q), Quality: q}, true
}

// nominationBody is a nomination's body: the stream, and what the train
// measured (spec.md).
func nominationBody(stream byte, q Quality) [udpNonceLen]byte {
	var b [udpNonceLen]byte
	cryptorand.Read(b[:])
	b[0] = stream
	if q.Sent > 0 {
		binary.BigEndian.PutUint16(b[1:3], uint16(min(q.RTT/(100*time.Microsecond), 0xffff)))
		b[3], b[4], b[5] = byte(min(q.Sent, 255)), byte(min(q.Lost, 255)), measuredMark
	}
	return b
}

// parseNomination reads a nomination's body.
func parseNomination(b [udpNonceLen]byte) (byte, Quality) {
	if b[5] != measuredMark || b[3] == 0 || b[4] > b[3] {
		return b[0], Quality{}
	}
	return b[0], Quality{Sent: int(b[3]), Lost: int(b[4]), RTT: time.Duration(binary.BigEndian.Uint16(b[1:3])) * 100 * time.Microsecond}
}
