package portmap

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestConfigVerify(t *testing.T) {
	for _, tc := range []struct {
		cfg Config
		bad string
	}{
		{cfg: Config{}},
		{cfg: Config{Lifetime: time.Minute, Protocols: []Protocol{PCP}}},
		{cfg: Config{ProbeTimeout: -1}, bad: "negative"},
		{cfg: Config{Lifetime: time.Second}, bad: "lifetime"},
		{cfg: Config{Lifetime: 8 * 24 * time.Hour}, bad: "lifetime"},
		{cfg: Config{Protocols: []Protocol{"smoke"}}, bad: "unknown protocol"},
		{cfg: Config{Gateway: netip.MustParseAddr("fe80::1")}, bad: "IPv4"},
	} {
		err := tc.cfg.Verify()
		if (tc.bad == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.bad)) {
			t.Errorf("%+v: %v, want %q", tc.cfg, err, tc.bad)
		}
	}
	d := Config{}.withDefaults()
	if d.Lifetime != DefaultLifetime || len(d.Protocols) != 3 || d.CloseTimeout != DefaultCloseTimeout {
		t.Fatalf("defaults %+v", d)
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestMapTakesFirstAnswer: with both answering, the faster protocol wins,
// and only one mapping is made.
func TestMapTakesFirstAnswer(t *testing.T) {
	for _, tc := range []struct {
		slow byte
		want Protocol
	}{{slow: pmpVersion, want: PCP}, {slow: pcpVersion, want: NATPMP}} {
		f := newFakeRouter(t)
		f.set(func(f *fakeRouter) { f.delay[tc.slow] = 300 * time.Millisecond })
		c := f.client(t, Config{})
		m, err := c.Map(ctxT(t), UDP, 4000)
		if err != nil {
			t.Fatal(err)
		}
		want := netip.MustParseAddrPort("198.51.100.7:14000")
		if m.Protocol() != tc.want || m.External() != want {
			t.Fatalf("got %s %v, want %s %v", m.Protocol(), m.External(), tc.want, want)
		}
		if maps, n := f.snapshot(); len(maps) != 1 || n != 1 {
			t.Fatalf("router has %v after %d requests, want one mapping", maps, n)
		}
		if err := c.Close(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		if maps, _ := f.snapshot(); len(maps) != 0 {
			t.Fatalf("mappings left after Close: %v", maps)
		}
		select {
		case <-m.done:
		default:
			t.Fatal("the renewal goroutine outlived Close")
		}
	}
}

// TestMapFallsBack: the first protocol to answer refuses the mapping; the
// next one is used. A NAT-PMP-only router answers PCP with "unsupported
// version".
func TestMapFallsBack(t *testing.T) {
	f := newFakeRouter(t)
	f.set(func(f *fakeRouter) { f.refuse[pcpVersion] = 2; f.delay[pmpVersion] = 100 * time.Millisecond })
	m, err := f.client(t, Config{}).Map(ctxT(t), TCP, 5000)
	if err != nil || m.Protocol() != NATPMP {
		t.Fatalf("got %v, %v; want nat-pmp", m, err)
	}
	g := newFakeRouter(t)
	g.set(func(f *fakeRouter) { f.pcp = false })
	m, err = g.client(t, Config{Protocols: []Protocol{PCP}}).Map(ctxT(t), TCP, 5000)
	var refused *ResultError
	if !errors.Is(err, ErrNoRouter) || !errors.As(err, &refused) || refused.Code != 1 {
		t.Fatalf("PCP to a NAT-PMP router: %v, %v", m, err)
	}
}

// TestMapIgnoresForgedAnswers: answers for another port or with another
// nonce arrive first and are dropped.
func TestMapIgnoresForgedAnswers(t *testing.T) {
	for _, p := range []Protocol{NATPMP, PCP} {
		f := newFakeRouter(t)
		f.set(func(f *fakeRouter) { f.hostile = true })
		m, err := f.client(t, Config{Protocols: []Protocol{p}}).Map(ctxT(t), UDP, 4000)
		if err != nil || m.External().Port() != 14000 {
			t.Fatalf("%s: got %v, %v", p, m, err)
		}
	}
}

func TestMapNoRouter(t *testing.T) {
	f := newFakeRouter(t)
	f.set(func(f *fakeRouter) { f.silent = true })
	c := f.client(t, Config{ProbeTimeout: 300 * time.Millisecond})
	start := time.Now()
	if _, err := c.Map(ctxT(t), UDP, 4000); !errors.Is(err, ErrNoRouter) {
		t.Fatalf("silent router: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("gave up after %v, want about the probe timeout", d)
	}
	off, _ := New(Config{Disabled: true}, nil)
	if _, err := off.Map(ctxT(t), UDP, 4000); !errors.Is(err, ErrDisabled) {
		t.Fatalf("disabled: %v", err)
	}
	if _, err := off.Probe(ctxT(t)); !errors.Is(err, ErrDisabled) {
		t.Fatalf("disabled probe: %v", err)
	}
}

// TestRenewal: a 2 s lease is renewed at about 1 s; a renewal that gets
// another external port reports it on Changes.
func TestRenewal(t *testing.T) {
	for _, p := range []Protocol{NATPMP, PCP} {
		f := newFakeRouter(t)
		f.set(func(f *fakeRouter) { f.life = 2 })
		c := f.client(t, Config{Protocols: []Protocol{p}})
		m, err := c.Map(ctxT(t), UDP, 4000)
		if err != nil {
			t.Fatal(err)
		}
		first := m.Expires()
		f.set(func(f *fakeRouter) { f.offset = 20000 })
		select {
		case got := <-m.Changes():
			if got.Port() != 24000 || m.External() != got {
				t.Fatalf("%s: changed to %v, External %v", p, got, m.External())
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: no renewal reported within 10 s", p)
		}
		if m.Renewals() < 1 || !m.Expires().After(first) {
			t.Fatalf("%s: %d renewals, expiry %v then %v", p, m.Renewals(), first, m.Expires())
		}
		if err := m.Close(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		if maps, _ := f.snapshot(); len(maps) != 0 {
			t.Fatalf("%s: mappings left after Close: %v", p, maps)
		}
	}
}

// TestCloseBounded: a router gone silent cannot hold Close beyond the
// close timeout.
func TestCloseBounded(t *testing.T) {
	f := newFakeRouter(t)
	c := f.client(t, Config{CloseTimeout: 300 * time.Millisecond})
	if _, err := c.Map(ctxT(t), UDP, 4000); err != nil {
		t.Fatal(err)
	}
	f.set(func(f *fakeRouter) { f.silent = true })
	start := time.Now()
	if err := c.Close(ctxT(t)); err == nil {
		t.Fatal("Close reported success with a silent router")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Close took %v", d)
	}
	if _, err := c.Map(ctxT(t), UDP, 4001); !errors.Is(err, ErrClosed) {
		t.Fatalf("Map after Close: %v", err)
	}
}

func TestProbe(t *testing.T) {
	f := newFakeRouter(t)
	f.set(func(f *fakeRouter) { f.pcp = false })
	o, err := f.client(t, Config{ProbeTimeout: 500 * time.Millisecond}).Probe(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(o.Protocols) != 1 || o.Protocols[0] != NATPMP || o.Errors[PCP] == nil || o.Errors[UPnP] == nil {
		t.Fatalf("offer %+v", o)
	}
	if maps, n := f.snapshot(); len(maps) != 0 || n != 0 {
		t.Fatalf("probe mapped something: %v", maps)
	}
}

func TestParseProcRoute(t *testing.T) {
	const table = `Iface	Destination	Gateway 	Flags	RefCnt	Use	Metric	Mask		MTU	Window	IRTT
eth0	0000010A	00000000	0001	0	0	0	00FFFFFF	0	0	0
eth0	00000000	0100010A	0003	0	0	0	00000000	0	0	0
`
	gw, err := parseProcRoute(strings.NewReader(table))
	if err != nil || gw != netip.MustParseAddr("10.1.0.1") {
		t.Fatalf("got %v, %v", gw, err)
	}
	for _, bad := range []string{"", "Iface\n", "Iface\neth0 00000000 0100010A 0001 0 0 0 00000000\n", "Iface\neth0 00000000 zz 0003 0 0 0 00000000\n"} {
		if _, err := parseProcRoute(strings.NewReader(bad)); !errors.Is(err, ErrNoGateway) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func TestParseSSDPResponse(t *testing.T) {
	gw := netip.MustParseAddr("10.1.0.1")
	ok := "HTTP/1.1 200 OK\r\nST: " + ssdpTarget + "\r\nLOCATION: http://10.1.0.1:5000/rootDesc.xml\r\n\r\n"
	if u, err := parseSSDPResponse([]byte(ok), gw); err != nil || u.Port() != "5000" {
		t.Fatalf("got %v, %v", u, err)
	}
	for _, bad := range []string{
		"garbage",
		"HTTP/1.1 404 Not Found\r\n\r\n",
		strings.Replace(ok, "10.1.0.1:5000", "10.1.0.9:5000", 1), // another host
		strings.Replace(ok, "http:", "file:", 1),
		strings.Replace(ok, "10.1.0.1:5000", "evil.example:5000", 1),
	} {
		if u, err := parseSSDPResponse([]byte(bad), gw); err == nil {
			t.Errorf("%q accepted: %v", bad, u)
		}
	}
}

// TestMapRefusesNonPublic: a router behind a carrier's NAT maps on a
// shared-space address; the mapping is useless, deleted, and an error.
func TestMapRefusesNonPublic(t *testing.T) {
	f := newFakeRouter(t)
	f.set(func(f *fakeRouter) { f.ip = netip.MustParseAddr("100.64.3.2") })
	_, err := f.client(t, Config{Protocols: []Protocol{PCP}}).Map(ctxT(t), UDP, 4000)
	if !errors.Is(err, ErrNotPublic) {
		t.Fatalf("got %v, want ErrNotPublic", err)
	}
	if maps, n := f.snapshot(); len(maps) != 0 || n != 2 {
		t.Fatalf("router holds %v after %d requests, want the mapping made and deleted", maps, n)
	}
}

// TestLostLeaseRemapped: when renewals fail until the lease expires, the
// mapping is made again with whichever protocol answers then.
func TestLostLeaseRemapped(t *testing.T) {
	f := newFakeRouter(t)
	f.set(func(f *fakeRouter) { f.life = 2; f.delay[pcpVersion] = 200 * time.Millisecond })
	c := f.client(t, Config{Protocols: []Protocol{NATPMP, PCP}})
	m, err := c.Map(ctxT(t), UDP, 4000)
	if err != nil || m.Protocol() != NATPMP {
		t.Fatalf("got %v, %v; want nat-pmp first", m, err)
	}
	f.set(func(f *fakeRouter) { f.refuse[pmpVersion] = 3; f.offset = 30000 })
	select {
	case got := <-m.Changes():
		if got.Port() != 34000 || m.Protocol() != PCP {
			t.Fatalf("remapped to %v with %s, want :34000 with pcp", got, m.Protocol())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("not remapped within 15 s (protocol %s, expires %v)", m.Protocol(), m.Expires())
	}
	if err := c.Close(ctxT(t)); err != nil {
		t.Fatal(err)
	}
}

// TestLostAndBack: a mapping whose router refuses renewals past expiry is
// reported lost (zero endpoint), and back once the router grants it again.
func TestLostAndBack(t *testing.T) {
	f := newFakeRouter(t)
	f.set(func(f *fakeRouter) { f.life = 2 })
	m, err := f.client(t, Config{Protocols: []Protocol{PCP}}).Map(ctxT(t), UDP, 4000)
	if err != nil {
		t.Fatal(err)
	}
	f.set(func(f *fakeRouter) { f.refuse[pcpVersion] = 8 })
	next := func(what string) netip.AddrPort {
		t.Helper()
		select {
		case a := <-m.Changes():
			return a
		case <-time.After(15 * time.Second):
			t.Fatalf("no change within 15 s: %s", what)
		}
		return netip.AddrPort{}
	}
	if a := next("lost"); a.IsValid() || m.External().IsValid() {
		t.Fatalf("lost mapping reported as %v, External %v", a, m.External())
	}
	f.set(func(f *fakeRouter) { f.refuse[pcpVersion] = 0 })
	if a := next("back"); a.Port() != 14000 || m.External() != a {
		t.Fatalf("back as %v, External %v", a, m.External())
	}
}
