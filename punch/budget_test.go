package punch

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// sendLog counts a fake socket's writes by destination.
type sendLog struct {
	mu sync.Mutex
	to map[netip.AddrPort]int
	n  int
}

func (l *sendLog) conn() *fzPacketConn {
	return newFzPacketConn(nil, func(to netip.AddrPort) {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.to == nil {
			l.to = map[netip.AddrPort]int{}
		}
		l.to[to]++
		l.n++
	})
}

func (l *sendLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

// TestHostileClaimsStayInScopeAndBudget performs the steering attack of a
// lying peer: a NAT report with the widest step, LAN "candidates" at this
// host's loopback, its own address and a third party, session after
// session. Everything the daemon sends goes to the peer's observed
// address, and no more of it than the shared budget allows in a minute.
func TestHostileClaimsStayInScopeAndBudget(t *testing.T) {
	public := netip.MustParseAddr("198.51.100.7")
	lan := []netip.AddrPort{
		netip.MustParseAddrPort("127.0.0.1:7000"), netip.MustParseAddrPort("[::1]:7000"),
		netip.MustParseAddrPort("10.1.0.5:7000"), netip.MustParseAddrPort("203.0.113.9:53"),
	}
	scope := Scope{Self: []netip.Prefix{netip.MustParsePrefix("10.1.0.5/24"), netip.MustParsePrefix("127.0.0.1/8")}, Public: public}
	for _, a := range lan {
		scope.LAN = append(scope.LAN, a.Addr())
	}
	const rate, perMinute = 20000, 3000
	budget, err := NewBudget(&BudgetConfig{Rate: rate, PerMinute: perMinute})
	if err != nil {
		t.Fatal(err)
	}
	cone := NAT{Behind: true, Mapping: MappingEndpointIndependent, Allocation: AllocationPreserved}
	var log sendLog
	for i, claim := range []NAT{
		{Behind: true, Mapping: MappingAddressAndPortDependent, Allocation: AllocationSequential, Delta: 16},
		{Behind: true, Mapping: MappingAddressAndPortDependent, Allocation: AllocationSequential, Delta: 30000},
		{Behind: true, Mapping: MappingAddressAndPortDependent, Allocation: AllocationRandom},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := PunchUDP(ctx, &UDPConfig{Budget: budget}, UDPSession{ID: NewSessionID(), Role: Choose(cone, claim).UDP,
			Peer: claim, PeerEndpoint: netip.AddrPortFrom(public, 20000), LAN: lan, Scope: scope}, log.conn())
		cancel()
		if err == nil {
			t.Fatalf("session %d: punch completed with nobody answering", i)
		}
	}
	log.mu.Lock()
	defer log.mu.Unlock()
	if log.n > perMinute {
		t.Errorf("three hostile sessions sent %d packets, over the budget's %d a minute", log.n, perMinute)
	}
	ports := map[uint16]bool{}
	for to := range log.to {
		if to.Addr() != public {
			t.Errorf("sent %d packets to %v, which is not the peer's observed address", log.to[to], to)
		}
		ports[to.Port()] = true
	}
	t.Logf("%d packets to %d ports of %v", log.n, len(ports), public)
}

// TestBirthdayObeysRate: the many-sockets side of a birthday punch, with
// the shortest ping interval, sends no faster than the budget's rate.
func TestBirthdayObeysRate(t *testing.T) {
	const rate = 1000
	var log sendLog
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	began := time.Now()
	peer := netip.MustParseAddrPort("198.51.100.7:4000")
	PunchUDP(ctx, &UDPConfig{Rate: rate, Sockets: 256, Interval: time.Millisecond}, UDPSession{ID: NewSessionID(),
		Role: RoleManySockets, PeerEndpoint: peer, Scope: Scope{Public: peer.Addr()},
		Listen: func() (PacketConn, error) { return log.conn(), nil }}, log.conn())
	took := time.Since(began)
	burst := int(rate * budgetBurst.Seconds())
	if n, most := log.count(), int(rate*took.Seconds())+burst+1; n > most {
		t.Fatalf("the birthday role sent %d packets in %v, over %d at %d/s", n, took.Round(time.Millisecond), most, rate)
	}
}

// TestBudgetMinuteCap: past PerMinute, nothing more goes out, paced or
// not, until the window moves on.
func TestBudgetMinuteCap(t *testing.T) {
	b, err := NewBudget(&BudgetConfig{Rate: 100000, PerMinute: 50})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	n := 0
	for b.wait(ctx) {
		n++
	}
	if n != 50 || b.take() {
		t.Fatalf("%d paced packets (want 50), and then take allowed one more: %v", n, !b.take())
	}
	if _, err := NewBudget(&BudgetConfig{Rate: -1}); err == nil {
		t.Fatal("a negative rate was accepted")
	}
}

// TestPunchUDPNeverCompletesWithItself: a side whose pings come back to
// its own socket (its spray hit one of its own sockets) must not take
// its own packets for the peer's.
func TestPunchUDPNeverCompletesWithItself(t *testing.T) {
	for _, controlling := range []bool{true, false} {
		sock := udpSock(t)
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		res, err := PunchUDP(ctx, nil, UDPSession{ID: NewSessionID(), Controlling: controlling, Role: RoleDirect,
			PeerEndpoint: addrOf(sock), Scope: loopbackScope}, sock)
		cancel()
		if err == nil {
			res.Conn.Close()
			t.Fatalf("controlling %v: punched itself: remote %v", controlling, res.Remote)
		}
	}
}

// TestTCPPunchDrawsOnBudget: connect attempts against a target that
// refuses every hello stop when the budget's minute is spent (437
// attempts in the second without one).
func TestTCPPunchDrawsOnBudget(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var accepted atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	const perMinute = 20
	budget, err := NewBudget(&BudgetConfig{Rate: 1000, PerMinute: perMinute})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	target := ln.Addr().(*net.TCPAddr).AddrPort()
	TCP(ctx, &Config{RetryDelay: time.Millisecond, HelloTimeout: 50 * time.Millisecond, Budget: budget}, 0, NewSessionID(),
		[]netip.AddrPort{target}, make(chan net.Conn))
	if n := accepted.Load(); n > perMinute || n == 0 {
		t.Fatalf("%d connect attempts reached the target, want 1 to %d", n, perMinute)
	}
}
