package rendezvous

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warren-p2p/warren/identity"
	"github.com/warren-p2p/warren/natlab"
	"github.com/warren-p2p/warren/natlab/labtest"
	"github.com/warren-p2p/warren/punch"
)

// serveProbes runs a rendezvous server's UDP responder on each of pcs
// until the test ends, and returns their addresses.
func serveProbes(t *testing.T, pcs ...net.PacketConn) []netip.AddrPort {
	t.Helper()
	k, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := NewServer(ServerConfig{Key: k, Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	var out []netip.AddrPort
	for _, pc := range pcs {
		out = append(out, pc.LocalAddr().(*net.UDPAddr).AddrPort())
		wg.Go(func() { srv.ServeUDP(ctx, pc) })
	}
	return out
}

func listenUDP(t *testing.T, addr string) net.PacketConn {
	t.Helper()
	pc, err := net.ListenPacket("udp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	return pc
}

// TestDiscoverLoopback probes three responders on loopback: the server sees
// our own address, so there is no NAT.
func TestDiscoverLoopback(t *testing.T) {
	servers := serveProbes(t, listenUDP(t, "127.0.0.1:0"), listenUDP(t, "127.0.0.1:0"), listenUDP(t, "127.0.0.1:0"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nat, samples, err := Discover(ctx, DiscoverConfig{Servers: servers})
	if err != nil {
		t.Fatal(err)
	}
	if want := len(servers) + 6; len(samples) != want {
		t.Errorf("%d samples, want %d: %v", len(samples), want, samples)
	}
	if nat.Behind || nat.String() != "none" {
		t.Errorf("got %s (%+v), want none", nat, nat)
	}
	if nat.Mapping != punch.MappingEndpointIndependent || nat.Allocation != punch.AllocationPreserved {
		t.Errorf("mapping %q allocation %q, want endpoint-independent, preserved", nat.Mapping, nat.Allocation)
	}
	// The series used fresh local ports, all open at once.
	locals := map[netip.AddrPort]bool{}
	for _, s := range samples[len(servers):] {
		if s.Server != servers[0] {
			t.Errorf("series sample to %s, want %s", s.Server, servers[0])
		}
		locals[s.Local] = true
	}
	if len(locals) != 6 {
		t.Errorf("series used %d local sockets, want 6", len(locals))
	}
}

// TestDiscoverNotLocal: with our address unknown to LocalAddrs, the same
// observation means a NAT that keeps ports and mapping: a cone.
func TestDiscoverNotLocal(t *testing.T) {
	servers := serveProbes(t, listenUDP(t, "127.0.0.1:0"), listenUDP(t, "127.0.0.1:0"))
	nat, _, err := Discover(context.Background(), DiscoverConfig{
		Servers: servers, Series: 3,
		LocalAddrs: func() []netip.Addr { return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	if !nat.Behind || nat.String() != "cone" || nat.PublicIP != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("got %s (%+v), want a cone at 127.0.0.1", nat, nat)
	}
}

// TestDiscoverNoAnswer: a silent server is an error, after the retries,
// and without a series.
func TestDiscoverNoAnswer(t *testing.T) {
	silent := listenUDP(t, "127.0.0.1:0")
	defer silent.Close()
	var opened atomic.Int32
	start := time.Now()
	_, samples, err := Discover(context.Background(), DiscoverConfig{
		Servers: []netip.AddrPort{silent.LocalAddr().(*net.UDPAddr).AddrPort()},
		Timeout: 50 * time.Millisecond,
		ListenPacket: func(network, addr string) (net.PacketConn, error) {
			opened.Add(1)
			return net.ListenPacket(network, addr)
		},
	})
	if err == nil {
		t.Fatalf("no error, samples %v", samples)
	}
	t.Logf("error: %v", err)
	if d := time.Since(start); d < 150*time.Millisecond || d > 2*time.Second {
		t.Errorf("gave up after %v, want about 3 × 50ms", d)
	}
	if n := opened.Load(); n != 1 {
		t.Errorf("opened %d sockets, want 1 (no series without an answer)", n)
	}
}

// TestDiscoverCancel returns at once when ctx ends.
func TestDiscoverCancel(t *testing.T) {
	silent := listenUDP(t, "127.0.0.1:0")
	defer silent.Close()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	_, _, err := Discover(ctx, DiscoverConfig{
		Servers: []netip.AddrPort{silent.LocalAddr().(*net.UDPAddr).AddrPort()},
		Timeout: 10 * time.Second,
	})
	if err == nil {
		t.Fatal("no error")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("returned after %v", d)
	}
}

// lossyConn drops every other padded probe it sends (the bare headers
// sent for older servers, which the server ignores, go through).
type lossyConn struct {
	net.PacketConn
	n atomic.Int32
}

func (c *lossyConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	if len(b) == probeSize && c.n.Add(1)%2 == 1 {
		return len(b), nil
	}
	return c.PacketConn.WriteTo(b, addr)
}

// TestDiscoverRetries: probes whose first send is lost are answered on the
// retry, so every sample is there.
func TestDiscoverRetries(t *testing.T) {
	servers := serveProbes(t, listenUDP(t, "127.0.0.1:0"), listenUDP(t, "127.0.0.1:0"))
	nat, samples, err := Discover(context.Background(), DiscoverConfig{
		Servers: servers, Series: 4, Timeout: 100 * time.Millisecond,
		ListenPacket: func(network, addr string) (net.PacketConn, error) {
			pc, err := net.ListenPacket(network, addr)
			if err != nil {
				return nil, err
			}
			return &lossyConn{PacketConn: pc}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(samples) != 2+4 {
		t.Errorf("%d samples, want 6: %v", len(samples), samples)
	}
	if nat.String() != "none" {
		t.Errorf("got %s, want none", nat)
	}
}

func TestProbeEndpoints(t *testing.T) {
	for _, tc := range []struct {
		listen, alt string
		want        []string
	}{
		{"203.0.113.2:7777", "", []string{"203.0.113.2:7777"}},
		{"203.0.113.2:7777", "203.0.113.2:7777", []string{"203.0.113.2:7777"}},
		// Port only, or IP only: each pair already differs in one thing.
		{"203.0.113.2:7777", "203.0.113.2:7778", []string{"203.0.113.2:7777", "203.0.113.2:7778"}},
		{"203.0.113.2:7777", "203.0.113.3:7777", []string{"203.0.113.2:7777", "203.0.113.3:7777"}},
		// Both: the third endpoint separates IP from port.
		{"203.0.113.2:7777", "203.0.113.3:7778", []string{"203.0.113.2:7777", "203.0.113.3:7778", "203.0.113.2:7778"}},
		{"[2001:db8::1]:7777", "[2001:db8::2]:7778", []string{"[2001:db8::1]:7777", "[2001:db8::2]:7778", "[2001:db8::1]:7778"}},
		{"rdv.example:7777", "rdv2.example:7778", []string{"rdv.example:7777", "rdv2.example:7778", "rdv.example:7778"}},
		// Wildcards and ephemeral ports cannot take a third endpoint.
		{"0.0.0.0:7777", "203.0.113.3:7778", []string{"0.0.0.0:7777", "203.0.113.3:7778"}},
		{":7777", "203.0.113.3:7778", []string{":7777", "203.0.113.3:7778"}},
		{"203.0.113.2:0", "203.0.113.3:7778", []string{"203.0.113.2:0", "203.0.113.3:7778"}},
	} {
		got, err := ProbeEndpoints(tc.listen, tc.alt)
		if err != nil {
			t.Errorf("ProbeEndpoints(%q, %q): %v", tc.listen, tc.alt, err)
			continue
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("ProbeEndpoints(%q, %q) = %q, want %q", tc.listen, tc.alt, got, tc.want)
		}
	}
	for _, bad := range [][2]string{{"nonsense", ""}, {"203.0.113.2:7777", "nonsense"}} {
		if _, err := ProbeEndpoints(bad[0], bad[1]); err == nil {
			t.Errorf("ProbeEndpoints(%q, %q): no error", bad[0], bad[1])
		}
	}
}

// TestDiscoverNATLab runs Discover from a host behind each kind of NAT in
// the lab, against probe responders on the lab's server at IP1:P1, IP1:P2
// and IP2:P2, and checks the verdict against what the kind is.
//
// One more case runs a sequential NAT with 10% loss each way on the
// internet segment: retries must fill the gaps (a resent probe reuses its
// flow's mapping, so it takes no new port) and missing answers must not
// make the NAT look random.
func TestDiscoverNATLab(t *testing.T) {
	type labCase struct {
		name string
		kind natlab.Kind
		loss int
	}
	var cases []labCase
	for _, kind := range natlab.Kinds() {
		cases = append(cases, labCase{string(kind), kind, 0})
	}
	cases = append(cases, labCase{"symseq-loss10", natlab.SymSeq, 10})
	for _, tc := range cases {
		kind := tc.kind
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			lab := labtest.New(t, natlab.Config{LossPercent: tc.loss})
			site, err := lab.AddSite(ctx, "a", kind)
			if err != nil {
				t.Fatal(err)
			}
			srv := lab.Server()
			ip1, ip2 := srv.Addrs()[0], srv.Addrs()[1]
			var pcs []net.PacketConn
			for _, ap := range []netip.AddrPort{
				netip.AddrPortFrom(ip1, 7777), netip.AddrPortFrom(ip1, 7778), netip.AddrPortFrom(ip2, 7778),
			} {
				pc, err := srv.ListenPacket("udp4", ap.String())
				if err != nil {
					t.Fatal(err)
				}
				pcs = append(pcs, pc)
			}
			servers := serveProbes(t, pcs...)
			h := site.Host()

			cfg := DiscoverConfig{Servers: servers, ListenPacket: h.ListenPacket, LocalAddrs: h.Addrs}
			if tc.loss > 0 {
				// Short enough to exercise retries, long enough for a loaded
				// machine running the race detector.
				cfg.Timeout = 500 * time.Millisecond
			}
			start := time.Now()
			nat, samples, err := Discover(ctx, cfg)
			took := time.Since(start)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %s (mapping %q, allocation %q, delta %d, public %s:%d) in %v; mapped ports %v",
				tc.name, nat, nat.Mapping, nat.Allocation, nat.Delta, nat.PublicIP, nat.LastPort, took, mappedPorts(samples))
			if len(samples) != len(servers)+6 && tc.loss == 0 {
				t.Errorf("%d samples, want %d", len(samples), len(servers)+6)
			}
			if want := site.PublicAddr(); nat.PublicIP != want {
				t.Errorf("public IP %s, want %s", nat.PublicIP, want)
			}
			if tc.loss == 0 && took > 2*time.Second {
				t.Errorf("took %v; without loss it should be a few round trips", took)
			}

			want := map[natlab.Kind]struct {
				str        string
				mapping    punch.Mapping
				allocation punch.Allocation
				delta      int
			}{
				natlab.Open:       {"none", punch.MappingEndpointIndependent, punch.AllocationPreserved, 0},
				natlab.Cone:       {"cone", punch.MappingEndpointIndependent, punch.AllocationPreserved, 0},
				natlab.ConeRST:    {"cone", punch.MappingEndpointIndependent, punch.AllocationPreserved, 0},
				natlab.SymSeq:     {"symseq(+1)", punch.MappingAddressAndPortDependent, punch.AllocationSequential, 1},
				natlab.SymSeqBusy: {"symseq(+1)", punch.MappingAddressAndPortDependent, punch.AllocationSequential, 1},
				natlab.SymRand:    {"symrand", punch.MappingAddressAndPortDependent, punch.AllocationRandom, 0},
			}[kind]
			if nat.String() != want.str || nat.Mapping != want.mapping || nat.Allocation != want.allocation || nat.Delta != want.delta {
				t.Errorf("got %s/%q/%q/%d, want %s/%q/%q/%d", nat, nat.Mapping, nat.Allocation, nat.Delta,
					want.str, want.mapping, want.allocation, want.delta)
			}
			if nat.Behind != (kind != natlab.Open) {
				t.Errorf("Behind = %v for %s", nat.Behind, kind)
			}

			// ProbeUDP sends once: no prediction check under loss.
			if nat.Allocation == punch.AllocationSequential && tc.loss == 0 {
				checkPrediction(t, ctx, h, servers[0], nat, kind == natlab.SymSeqBusy)
			}
		})
	}
}

// checkPrediction opens one more socket and checks that the NAT maps it
// where PredictPorts said: exactly next on a quiet NAT; within the window
// on a busy one, whose other user keeps taking ports.
func checkPrediction(t *testing.T, ctx context.Context, h *natlab.Host, server netip.AddrPort, nat punch.NAT, busy bool) {
	t.Helper()
	count, spread := 1, 0
	if busy {
		count, spread = 1, 30
	}
	window := punch.PredictPorts(nat, nat.LastPort, count, spread)
	pc, err := h.ListenPacket("udp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	m, err := ProbeUDP(pctx, pc, net.UDPAddrFromAddrPort(server))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(window, m.Port()) {
		t.Errorf("next mapping %s, predicted %v", m, window)
	} else {
		t.Logf("next mapping %s is at %d in the predicted window of %d", m, slices.Index(window, m.Port()), len(window))
	}
}

func mappedPorts(samples []punch.Sample) string {
	var ports []uint16
	for _, s := range samples {
		ports = append(ports, s.Mapped.Port())
	}
	return fmt.Sprint(ports)
}

// dropFirst drops the first n padded probes it sends, as a lossy uplink
// loses a burst.
type dropFirst struct {
	net.PacketConn
	n atomic.Int32
}

func (c *dropFirst) WriteTo(b []byte, addr net.Addr) (int, error) {
	if len(b) == probeSize && c.n.Add(-1) >= 0 {
		return len(b), nil
	}
	return c.PacketConn.WriteTo(b, addr)
}

// TestProbeResends: a probe whose first sends are lost goes again until
// it is answered; the socket is left with no read deadline, for the punch
// that uses it next.
func TestProbeResends(t *testing.T) {
	server := net.UDPAddrFromAddrPort(serveProbes(t, listenUDP(t, "127.0.0.1:0"))[0])
	tests := []struct {
		name  string
		probe func(context.Context, net.PacketConn) (netip.AddrPort, error)
	}{
		{"plain", func(ctx context.Context, pc net.PacketConn) (netip.AddrPort, error) { return ProbeUDP(ctx, pc, server) }},
		{"session", func(ctx context.Context, pc net.PacketConn) (netip.AddrPort, error) {
			return ProbeSession(ctx, pc, server, punch.NewSessionID(), 1)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			pc := &dropFirst{PacketConn: listenUDP(t, "127.0.0.1:0")}
			defer pc.Close()
			pc.n.Store(2)
			start := time.Now()
			got, err := tt.probe(ctx, pc)
			if err != nil || got.String() != pc.LocalAddr().String() {
				t.Fatalf("probe = %v, %v; want %v", got, err, pc.LocalAddr())
			}
			// Lost twice: answered on the third send, 250 + 500 ms in.
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("answered after %v", d)
			}
			// A deadline left behind would have passed by now.
			time.Sleep(probeResendMax + 100*time.Millisecond)
			other := listenUDP(t, "127.0.0.1:0")
			defer other.Close()
			if _, err := other.WriteTo([]byte("punch"), pc.LocalAddr()); err != nil {
				t.Fatal(err)
			}
			if _, _, err := pc.ReadFrom(make([]byte, 16)); err != nil {
				t.Errorf("the socket after the probe: %v", err)
			}
		})
	}
}
