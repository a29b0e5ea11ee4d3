package punch

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
)

// Addresses of the classification tests: the probe server has two IPs and
// two ports, as a rendezvous server with -alt-listen does.
var (
	srvA1 = netip.MustParseAddrPort("203.0.113.2:7777") // IP1:P1
	srvA2 = netip.MustParseAddrPort("203.0.113.2:7778") // IP1:P2
	srvB2 = netip.MustParseAddrPort("203.0.113.3:7778") // IP2:P2

	lanIP    = netip.MustParseAddr("10.1.0.2")
	publicIP = netip.MustParseAddr("198.51.100.10")
)

// mappingProbe is the samples of one local socket (port local) probing
// every server in servers, seen at the mapped ports.
func mappingProbe(ip netip.Addr, local uint16, pub netip.Addr, servers []netip.AddrPort, mapped ...uint16) []Sample {
	var out []Sample
	for i, s := range servers {
		out = append(out, Sample{
			Local:  netip.AddrPortFrom(ip, local),
			Server: s,
			Mapped: netip.AddrPortFrom(pub, mapped[i]),
		})
	}
	return out
}

// series is fresh sockets with local ports locals[i], each probing srvA1
// once and seen at mapped[i].
func series(ip netip.Addr, pub netip.Addr, locals, mapped []uint16) []Sample {
	var out []Sample
	for i := range locals {
		out = append(out, Sample{
			Local:  netip.AddrPortFrom(ip, locals[i]),
			Server: srvA1,
			Mapped: netip.AddrPortFrom(pub, mapped[i]),
		})
	}
	return out
}

var (
	three     = []netip.AddrPort{srvA1, srvA2, srvB2}
	seriesLoc = []uint16{41001, 52113, 33307, 47790, 38004, 60211}
)

func cat(parts ...[]Sample) []Sample { return slices.Concat(parts...) }

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		name    string
		local   []netip.Addr
		samples []Sample
		want    NAT
		str     string
	}{
		{
			name: "nothing observed",
			want: NAT{}, str: "unknown",
		},
		{
			name:  "open host",
			local: []netip.Addr{netip.MustParseAddr("127.0.0.1"), publicIP},
			samples: cat(
				mappingProbe(publicIP, 40000, publicIP, three, 40000, 40000, 40000),
				series(publicIP, publicIP, seriesLoc, seriesLoc)),
			want: NAT{Behind: false, Mapping: MappingEndpointIndependent, Allocation: AllocationPreserved,
				PublicIP: publicIP, LastPort: 60211},
			str: "none",
		},
		{
			name:  "cone, ports preserved",
			local: []netip.Addr{lanIP},
			samples: cat(
				mappingProbe(lanIP, 40000, publicIP, three, 40000, 40000, 40000),
				series(lanIP, publicIP, seriesLoc, seriesLoc)),
			want: NAT{Behind: true, Mapping: MappingEndpointIndependent, Allocation: AllocationPreserved,
				PublicIP: publicIP, LastPort: 60211},
			str: "cone",
		},
		{
			name:  "cone, random ports",
			local: []netip.Addr{lanIP},
			samples: cat(
				mappingProbe(lanIP, 40000, publicIP, three, 17001, 17001, 17001),
				series(lanIP, publicIP, seriesLoc, []uint16{2093, 61442, 30071, 8802, 44410, 12345})),
			want: NAT{Behind: true, Mapping: MappingEndpointIndependent, Allocation: AllocationRandom,
				PublicIP: publicIP, LastPort: 12345},
			str: "cone(random)",
		},
		{
			name:  "cone, sequential ports",
			local: []netip.Addr{lanIP},
			samples: cat(
				mappingProbe(lanIP, 40000, publicIP, three, 1024, 1024, 1024),
				series(lanIP, publicIP, seriesLoc, []uint16{1025, 1026, 1027, 1028, 1029, 1030})),
			want: NAT{Behind: true, Mapping: MappingEndpointIndependent, Allocation: AllocationSequential, Delta: 1,
				PublicIP: publicIP, LastPort: 1030},
			str: "cone",
		},
		{
			// The mapping socket took three ports (one per server); the
			// series of sockets that probed only srvA1 is clean.
			name:  "symmetric, sequential +1",
			local: []netip.Addr{lanIP},
			samples: cat(
				mappingProbe(lanIP, 40000, publicIP, three, 20000, 20001, 20002),
				series(lanIP, publicIP, seriesLoc, []uint16{20003, 20004, 20005, 20006, 20007, 20008})),
			want: NAT{Behind: true, Mapping: MappingAddressAndPortDependent, Allocation: AllocationSequential, Delta: 1,
				PublicIP: publicIP, LastPort: 20008},
			str: "symseq(+1)",
		},
		{
			name:  "symmetric, sequential +2",
			local: []netip.Addr{lanIP},
			samples: cat(
				mappingProbe(lanIP, 40000, publicIP, three, 3000, 3002, 3004),
				series(lanIP, publicIP, seriesLoc, []uint16{3006, 3008, 3010, 3012, 3014, 3016})),
			want: NAT{Behind: true, Mapping: MappingAddressAndPortDependent, Allocation: AllocationSequential, Delta: 2,
				PublicIP: publicIP, LastPort: 3016},
			str: "symseq(+2)",
		},
		{
			name:  "symmetric, sequential -1",
			local: []netip.Addr{lanIP},
			samples: series(lanIP, publicIP, seriesLoc,
				[]uint16{9000, 8999, 8998, 8997, 8996, 8995}),
			want: NAT{Behind: true, Allocation: AllocationSequential, Delta: -1,
				PublicIP: publicIP, LastPort: 8995},
			str: "nat",
		},
		{
			// Others behind the carrier NAT took ports between ours: steps
			// 1, 1, 4, 1, 1, so 80% are +1 and the gap is forwards.
			name:  "symmetric, sequential on a busy NAT",
			local: []netip.Addr{lanIP},
			samples: cat(
				mappingProbe(lanIP, 40000, publicIP, three, 20100, 20103, 20104),
				series(lanIP, publicIP, seriesLoc, []uint16{20105, 20106, 20107, 20111, 20112, 20113})),
			want: NAT{Behind: true, Mapping: MappingAddressAndPortDependent, Allocation: AllocationSequential, Delta: 1,
				PublicIP: publicIP, LastPort: 20113},
			str: "symseq(+1)",
		},
		{
			// Exactly 60% (3 of 5 steps) is still sequential.
			name:  "symmetric, sequential on a very busy NAT",
			local: []netip.Addr{lanIP},
			samples: series(lanIP, publicIP, seriesLoc,
				[]uint16{20100, 20101, 20109, 20110, 20130, 20131}),
			want: NAT{Behind: true, Allocation: AllocationSequential, Delta: 1,
				PublicIP: publicIP, LastPort: 20131},
			str: "nat",
		},
		{
			// 2 of 5 steps are +1: too few to bet on.
			name:  "mostly gaps is random",
			local: []netip.Addr{lanIP},
			samples: series(lanIP, publicIP, seriesLoc,
				[]uint16{20100, 20101, 20109, 20110, 20130, 20150}),
			want: NAT{Behind: true, Allocation: AllocationRandom,
				PublicIP: publicIP, LastPort: 20150},
			str: "nat",
		},
		{
			// Other users only ever push our ports further, never back.
			name:  "a backward gap is random",
			local: []netip.Addr{lanIP},
			samples: series(lanIP, publicIP, seriesLoc,
				[]uint16{20100, 20101, 20102, 20103, 20090, 20091}),
			want: NAT{Behind: true, Allocation: AllocationRandom,
				PublicIP: publicIP, LastPort: 20091},
			str: "nat",
		},
		{
			name:  "symmetric, random ports",
			local: []netip.Addr{lanIP},
			samples: cat(
				mappingProbe(lanIP, 40000, publicIP, three, 51234, 1999, 40001),
				series(lanIP, publicIP, seriesLoc, []uint16{33333, 33340, 12000, 65000, 1500, 27000})),
			want: NAT{Behind: true, Mapping: MappingAddressAndPortDependent, Allocation: AllocationRandom,
				PublicIP: publicIP, LastPort: 27000},
			str: "symrand",
		},
		{
			name:  "symmetric, ports preserved",
			local: []netip.Addr{lanIP},
			samples: cat(
				mappingProbe(lanIP, 40000, publicIP, three, 40000, 40001, 40002),
				series(lanIP, publicIP, seriesLoc, seriesLoc)),
			want: NAT{Behind: true, Mapping: MappingAddressAndPortDependent, Allocation: AllocationPreserved,
				PublicIP: publicIP, LastPort: 60211},
			str: "symmetric",
		},
		{
			// Same IP, other port: same mapping; other IP: new mapping.
			name:  "address-dependent",
			local: []netip.Addr{lanIP},
			samples: cat(
				mappingProbe(lanIP, 40000, publicIP, three, 40000, 40000, 40001),
				series(lanIP, publicIP, seriesLoc, seriesLoc)),
			want: NAT{Behind: true, Mapping: MappingAddressDependent, Allocation: AllocationPreserved,
				PublicIP: publicIP, LastPort: 60211},
			str: "symmetric",
		},
		{
			// Only IP1:P1 and IP2:P2: either dependence explains the new
			// mapping; the stricter is assumed.
			name:  "other IP and port only",
			local: []netip.Addr{lanIP},
			samples: mappingProbe(lanIP, 40000, publicIP,
				[]netip.AddrPort{srvA1, srvB2}, 40000, 40001),
			want: NAT{Behind: true, Mapping: MappingAddressAndPortDependent,
				PublicIP: publicIP, LastPort: 40000},
			str: "symmetric",
		},
		{
			name:  "two ports of one IP, alike",
			local: []netip.Addr{lanIP},
			samples: mappingProbe(lanIP, 40000, publicIP,
				[]netip.AddrPort{srvA1, srvA2}, 40000, 40000),
			want: NAT{Behind: true, Mapping: MappingEndpointIndependent, Allocation: AllocationPreserved,
				PublicIP: publicIP, LastPort: 40000},
			str: "cone",
		},
		{
			// Ports run 65533, 65534, 65535, 1, 2: the ring skips 0.
			name:  "sequential across the wrap",
			local: []netip.Addr{lanIP},
			samples: cat(
				mappingProbe(lanIP, 40000, publicIP, three, 65531, 65532, 65533),
				series(lanIP, publicIP, seriesLoc, []uint16{65534, 65535, 1, 2, 3, 4})),
			want: NAT{Behind: true, Mapping: MappingAddressAndPortDependent, Allocation: AllocationSequential, Delta: 1,
				PublicIP: publicIP, LastPort: 4},
			str: "symseq(+1)",
		},
		{
			name:  "sequential +2 across the wrap",
			local: []netip.Addr{lanIP},
			samples: series(lanIP, publicIP, seriesLoc,
				[]uint16{65529, 65531, 65533, 65535, 2, 4}),
			want: NAT{Behind: true, Allocation: AllocationSequential, Delta: 2,
				PublicIP: publicIP, LastPort: 4},
			str: "nat",
		},
		{
			// One endpoint answered: no mapping verdict, but the series
			// still shows the allocation.
			name:  "one server endpoint",
			local: []netip.Addr{lanIP},
			samples: series(lanIP, publicIP, seriesLoc,
				[]uint16{20003, 20004, 20005, 20006, 20007, 20008}),
			want: NAT{Behind: true, Allocation: AllocationSequential, Delta: 1,
				PublicIP: publicIP, LastPort: 20008},
			str: "nat",
		},
		{
			name:    "a single sample, port preserved",
			local:   []netip.Addr{lanIP},
			samples: series(lanIP, publicIP, seriesLoc[:1], seriesLoc[:1]),
			want: NAT{Behind: true, Allocation: AllocationPreserved,
				PublicIP: publicIP, LastPort: seriesLoc[0]},
			str: "nat",
		},
		{
			name:    "a single sample, port changed",
			local:   []netip.Addr{lanIP},
			samples: series(lanIP, publicIP, seriesLoc[:1], []uint16{9}),
			want:    NAT{Behind: true, PublicIP: publicIP, LastPort: 9},
			str:     "nat",
		},
		{
			// The series is fresh sockets only; with just one of them the
			// mapping socket's first sample to the endpoint joins in.
			name:  "mapping socket completes a short series",
			local: []netip.Addr{lanIP},
			samples: cat(
				mappingProbe(lanIP, 40000, publicIP, three, 20000, 20001, 20002),
				series(lanIP, publicIP, seriesLoc[:1], []uint16{20003})),
			want: NAT{Behind: true, Mapping: MappingAddressAndPortDependent, Allocation: AllocationSequential, Delta: 3,
				PublicIP: publicIP, LastPort: 20003},
			str: "symseq(+3)",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Classify(tc.local, tc.samples)
			if got != tc.want {
				t.Errorf("Classify =\n\t%s, want\n\t%s", fields(got), fields(tc.want))
			}
			if s := got.String(); s != tc.str {
				t.Errorf("String() = %q, want %q", s, tc.str)
			}
		})
	}
}

// TestClassifyBusyNotRandom feeds every placement of one or two forward
// gaps into a six-socket series: a sequential NAT shared with others must
// never read as random.
func TestClassifyBusyNotRandom(t *testing.T) {
	for g1 := range 5 {
		for g2 := g1; g2 < 5; g2++ {
			ports := []uint16{30000}
			for i := range 5 {
				step := uint16(1)
				if i == g1 || i == g2 {
					step = 13
				}
				ports = append(ports, ports[i]+step)
			}
			n := Classify(nil, series(lanIP, publicIP, seriesLoc, ports))
			if n.Allocation != AllocationSequential || n.Delta != 1 {
				t.Errorf("ports %v: %s delta %d, want sequential +1", ports, n.Allocation, n.Delta)
			}
		}
	}
}

// fields shows every field of n (%+v would show n.String()).
func fields(n NAT) string {
	return fmt.Sprintf("{Behind:%v Mapping:%q Allocation:%q Delta:%d PublicIP:%v LastPort:%d}",
		n.Behind, n.Mapping, n.Allocation, n.Delta, n.PublicIP, n.LastPort)
}

func TestNATSymmetricAndString(t *testing.T) {
	pub := publicIP
	for _, tc := range []struct {
		n    NAT
		sym  bool
		want string
	}{
		{NAT{}, false, "unknown"},
		{NAT{PublicIP: pub, Mapping: MappingEndpointIndependent}, false, "none"},
		{NAT{Behind: true, PublicIP: pub, Mapping: MappingEndpointIndependent}, false, "cone"},
		{NAT{Behind: true, PublicIP: pub, Mapping: MappingEndpointIndependent, Allocation: AllocationRandom}, false, "cone(random)"},
		{NAT{Behind: true, PublicIP: pub, Mapping: MappingAddressDependent, Allocation: AllocationSequential, Delta: 1}, true, "symseq(+1)"},
		{NAT{Behind: true, PublicIP: pub, Mapping: MappingAddressAndPortDependent, Allocation: AllocationSequential, Delta: -2}, true, "symseq(-2)"},
		{NAT{Behind: true, PublicIP: pub, Mapping: MappingAddressAndPortDependent, Allocation: AllocationRandom}, true, "symrand"},
		{NAT{Behind: true, PublicIP: pub, Mapping: MappingAddressAndPortDependent}, true, "symmetric"},
		{NAT{Behind: true, PublicIP: pub}, false, "nat"},
	} {
		if got := tc.n.Symmetric(); got != tc.sym {
			t.Errorf("%s: Symmetric() = %v, want %v", fields(tc.n), got, tc.sym)
		}
		if got := tc.n.String(); got != tc.want {
			t.Errorf("%s: String() = %q, want %q", fields(tc.n), got, tc.want)
		}
	}
}

func TestPortRing(t *testing.T) {
	for _, tc := range []struct {
		a, b uint16
		step int
	}{
		{100, 101, 1},
		{101, 100, -1},
		{65535, 1, 1},
		{1, 65535, -1},
		{65534, 2, 3},
		{1000, 33767, 32767},
		{1000, 33768, -32767},
	} {
		if got := portStep(tc.a, tc.b); got != tc.step {
			t.Errorf("portStep(%d, %d) = %d, want %d", tc.a, tc.b, got, tc.step)
		}
		if got := portAdd(tc.a, tc.step); got != tc.b {
			t.Errorf("portAdd(%d, %d) = %d, want %d", tc.a, tc.step, got, tc.b)
		}
	}
}

func TestPredictPorts(t *testing.T) {
	seq := func(d int) NAT {
		return NAT{Behind: true, Mapping: MappingAddressAndPortDependent, Allocation: AllocationSequential, Delta: d}
	}
	for _, tc := range []struct {
		name          string
		n             NAT
		base          uint16
		count, spread int
		want          []uint16
	}{
		{"not sequential", NAT{Behind: true, Allocation: AllocationRandom}, 100, 3, 1, nil},
		{"no delta", NAT{Allocation: AllocationSequential}, 100, 3, 1, nil},
		{"no count", seq(1), 100, 0, 1, nil},
		{"+1", seq(1), 100, 3, 0, []uint16{101, 102, 103}},
		{"negative spread is none", seq(1), 100, 2, -4, []uint16{101, 102}},
		// Centres 102, 104, 106, each with its neighbours; 103 and 105
		// appear once, where first reached.
		{"+2 spread 1", seq(2), 100, 3, 1, []uint16{102, 103, 101, 104, 105, 106, 107}},
		{"+1 spread 2", seq(1), 100, 2, 2, []uint16{101, 102, 100, 103, 99, 104}},
		{"-1", seq(-1), 100, 3, 0, []uint16{99, 98, 97}},
		{"wraps, skipping 0", seq(1), 65534, 3, 0, []uint16{65535, 1, 2}},
		{"spread wraps", seq(1), 65535, 1, 1, []uint16{1, 2, 65535}},
		{"downwards wraps", seq(-1), 2, 3, 0, []uint16{1, 65535, 65534}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := PredictPorts(tc.n, tc.base, tc.count, tc.spread)
			if !slices.Equal(got, tc.want) {
				t.Errorf("PredictPorts = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestPredictPortsWholeRing asks for more than there is: every usable port
// exactly once, never 0.
func TestPredictPortsWholeRing(t *testing.T) {
	n := NAT{Behind: true, Allocation: AllocationSequential, Delta: 1}
	got := PredictPorts(n, 5, 100000, 3)
	if len(got) != portRing {
		t.Fatalf("%d ports, want %d", len(got), portRing)
	}
	seen := map[uint16]bool{}
	for _, p := range got {
		if p == 0 || seen[p] {
			t.Fatalf("port %d is 0 or repeated", p)
		}
		seen[p] = true
	}
}
