package portmap

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestPMPMapRequest(t *testing.T) {
	got := encodePMPMap(TCP, 0x1234, 0x5678, 90*time.Second)
	want := []byte{0, 2, 0, 0, 0x12, 0x34, 0x56, 0x78, 0, 0, 0, 90}
	if string(got) != string(want) {
		t.Fatalf("map request % x, want % x", got, want)
	}
	if got := encodePMPMap(UDP, 1, 0, 1500*time.Millisecond)[11]; got != 2 {
		t.Fatalf("1.5 s lifetime encoded as %d s, want 2 (rounded up, never 0)", got)
	}
}

func TestDecodePMPMap(t *testing.T) {
	good := pmpMapReply(pmpOpMapUDP, 0, 4000, 14000, 7200)
	var refused *ResultError
	for _, tc := range []struct {
		name    string
		b       []byte
		ignored bool   // dropped, the wait goes on
		code    int    // a refusal's result code
		want    uint16 // the external port
	}{
		{name: "good", b: good, want: 14000},
		{name: "empty", b: nil, ignored: true},
		{name: "short", b: good[:15], ignored: true},
		{name: "wrong version", b: append([]byte{2}, good[1:]...), ignored: true},
		{name: "not a reply", b: append([]byte{0, pmpOpMapUDP}, good[2:]...), ignored: true},
		{name: "tcp answer to udp", b: pmpMapReply(pmpOpMapTCP, 0, 4000, 14000, 7200), ignored: true},
		{name: "other port's answer", b: pmpMapReply(pmpOpMapUDP, 0, 4001, 14000, 7200), ignored: true},
		{name: "refused", b: pmpMapReply(pmpOpMapUDP, 2, 4000, 0, 0), code: 2},
		{name: "refused, short", b: pmpMapReply(pmpOpMapUDP, 4, 4000, 0, 0)[:4], code: 4},
		{name: "unknown code", b: pmpMapReply(pmpOpMapUDP, 77, 4000, 0, 0), code: 77},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := decodePMPMap(tc.b, UDP, 4000)
			switch {
			case tc.ignored:
				if !errors.Is(err, errIgnored) {
					t.Fatalf("err %v, want ignored", err)
				}
			case tc.code != 0:
				if !errors.As(err, &refused) || refused.Code != tc.code || errors.Is(err, errIgnored) {
					t.Fatalf("err %v, want refusal %d", err, tc.code)
				}
			case err != nil || r.external != tc.want || r.lifetime != 2*time.Hour:
				t.Fatalf("got %+v, %v; want port %d for 2h", r, err, tc.want)
			}
		})
	}
}

func TestDecodePMPAddress(t *testing.T) {
	ip := netip.MustParseAddr("198.51.100.7")
	if a, err := decodePMPAddress(pmpAddressReply(0, ip)); err != nil || a != ip {
		t.Fatalf("got %v, %v", a, err)
	}
	if _, err := decodePMPAddress(pmpAddressReply(0, netip.IPv4Unspecified())); err == nil {
		t.Fatal("0.0.0.0 (no public address yet) accepted")
	}
	if _, err := decodePMPAddress(pmpAddressReply(3, ip)); err == nil || !strings.Contains(err.Error(), "network failure") {
		t.Fatalf("result 3: %v", err)
	}
	if _, err := decodePMPAddress(pmpAddressReply(0, ip)[:11]); !errors.Is(err, errIgnored) {
		t.Fatalf("short answer: %v", err)
	}
}

func testPCPRequest() pcpRequest {
	return pcpRequest{client: netip.MustParseAddr("10.1.0.2"), nonce: [12]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12},
		t: UDP, internal: 4000, external: netip.MustParseAddrPort("0.0.0.0:4000"), lifetime: time.Hour}
}

func TestPCPMapRequest(t *testing.T) {
	b := encodePCPMap(testPCPRequest())
	if len(b) != pcpMapLen || b[0] != 2 || b[1] != 1 || b[7] != 0x10 || b[6] != 0x0e {
		t.Fatalf("header % x", b[:24])
	}
	// The client address and the suggested "any IPv4" are IPv4-mapped.
	if got := netip.AddrFrom16([16]byte(b[8:24])); got.String() != "::ffff:10.1.0.2" {
		t.Fatalf("client address %v", got)
	}
	if got := netip.AddrFrom16([16]byte(b[44:60])); got.String() != "::ffff:0.0.0.0" {
		t.Fatalf("suggested address %v", got)
	}
	if b[36] != protoUDP || b[40] != 0x0f || b[41] != 0xa0 {
		t.Fatalf("map data % x", b[24:])
	}
}

func TestDecodePCPMap(t *testing.T) {
	r := testPCPRequest()
	req := encodePCPMap(r)
	ext := netip.MustParseAddrPort("198.51.100.7:14000")
	good := pcpReply(req, 0, 600, ext)
	mutate := func(i int, v byte) []byte {
		b := append([]byte(nil), good...)
		b[i] = v
		return b
	}
	var refused *ResultError
	for _, tc := range []struct {
		name    string
		b       []byte
		ignored bool
		code    int
		err     bool // an error that is neither
	}{
		{name: "good", b: good},
		{name: "empty", b: nil, ignored: true},
		{name: "short header", b: good[:23], ignored: true},
		{name: "short data", b: good[:59], ignored: true},
		{name: "wrong version", b: mutate(0, 3), ignored: true},
		{name: "no reply bit", b: mutate(1, pcpOpMap), ignored: true},
		{name: "wrong opcode", b: mutate(1, pcpOpAnnounce|pcpReplyBit), ignored: true},
		{name: "wrong nonce", b: mutate(pcpHeaderLen+3, 0xee), ignored: true},
		{name: "wrong protocol", b: mutate(pcpHeaderLen+12, protoTCP), ignored: true},
		{name: "wrong internal port", b: mutate(pcpHeaderLen+17, 0), ignored: true},
		{name: "not authorized", b: mutate(3, 2), code: 2},
		{name: "no resources, header only", b: mutate(3, 8)[:24], code: 8},
		{name: "NAT-PMP router", b: []byte{0, 0x81, 0, 1, 0, 0, 0, 0}, code: 1},
		{name: "port 0 assigned", b: pcpReply(req, 0, 600, netip.MustParseAddrPort("198.51.100.7:0")), err: true},
		{name: "address 0 assigned", b: pcpReply(req, 0, 600, netip.MustParseAddrPort("0.0.0.0:14000")), err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, life, err := decodePCPMap(tc.b, r)
			switch {
			case tc.ignored:
				if !errors.Is(err, errIgnored) {
					t.Fatalf("err %v, want ignored", err)
				}
			case tc.code != 0:
				if !errors.As(err, &refused) || refused.Code != tc.code {
					t.Fatalf("err %v, want refusal %d", err, tc.code)
				}
			case tc.err:
				if err == nil || errors.Is(err, errIgnored) {
					t.Fatalf("err %v, want a final error", err)
				}
			case err != nil || got != ext || life != 10*time.Minute:
				t.Fatalf("got %v %v %v", got, life, err)
			}
		})
	}
}

func TestDecodePCPAnnounce(t *testing.T) {
	req := encodePCPAnnounce(netip.MustParseAddr("10.1.0.2"))
	if err := decodePCPAnnounce(pcpReply(req, 0, 0, netip.AddrPort{})); err != nil {
		t.Fatal(err)
	}
	if err := decodePCPAnnounce(pcpReply(req, 4, 0, netip.AddrPort{})); err == nil {
		t.Fatal("unsupported opcode accepted")
	}
}

// FuzzDecodePMP feeds arbitrary answers to the NAT-PMP decoders: no
// panic, and an accepted map answer is for the port asked about.
func FuzzDecodePMP(f *testing.F) {
	f.Add(pmpMapReply(pmpOpMapUDP, 0, 4000, 14000, 7200), uint16(4000))
	f.Add(pmpAddressReply(0, netip.MustParseAddr("198.51.100.7")), uint16(0))
	f.Add([]byte{0, 0x81, 0, 2}, uint16(1))
	f.Fuzz(func(t *testing.T, b []byte, port uint16) {
		_, _ = decodePMPAddress(b)
		for _, tr := range []Transport{UDP, TCP} {
			r, err := decodePMPMap(b, tr, port)
			if err == nil && r.internal != port {
				t.Fatalf("accepted an answer for port %d as one for %d", r.internal, port)
			}
		}
	})
}

// FuzzDecodePCP feeds arbitrary answers to the PCP decoders and checks
// that a request's own answer, built by the fake router, round-trips.
func FuzzDecodePCP(f *testing.F) {
	r := testPCPRequest()
	f.Add(pcpReply(encodePCPMap(r), 0, 600, netip.MustParseAddrPort("198.51.100.7:14000")), uint16(4000), uint16(14000))
	f.Add([]byte{0, 0x81, 0, 1}, uint16(1), uint16(2))
	f.Fuzz(func(t *testing.T, b []byte, internal, ext uint16) {
		_ = decodePCPAnnounce(b)
		r := testPCPRequest()
		r.internal = internal
		if got, _, err := decodePCPMap(b, r); err == nil && (!got.Addr().Is4() || got.Port() == 0) {
			t.Fatalf("accepted unusable endpoint %v", got)
		}
		want := netip.AddrPortFrom(netip.MustParseAddr("198.51.100.7"), max(ext, 1))
		got, _, err := decodePCPMap(pcpReply(encodePCPMap(r), 0, 60, want), r)
		if err != nil || got != want {
			t.Fatalf("round trip: %v, %v; want %v", got, err, want)
		}
	})
}
