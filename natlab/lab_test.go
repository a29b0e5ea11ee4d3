package natlab_test

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/warren-p2p/warren/natlab"
	"github.com/warren-p2p/warren/natlab/labtest"
)

// Each test builds its own lab, so they run in parallel; the probes spend
// most of their time waiting for packets that must not come.

// TestKinds probes every NAT kind from a host behind it, so that the rules
// cannot drift from what the kinds promise.
func TestKinds(t *testing.T) {
	for _, kind := range natlab.Kinds() {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			lab := labtest.New(t, natlab.Config{})
			r := newResponder(t, lab.Server())
			site, err := lab.AddSite(ctx, "a", kind)
			if err != nil {
				t.Fatal(err)
			}
			if site.Kind() != kind {
				t.Fatalf("Kind() = %q, want %q", site.Kind(), kind)
			}
			probeKind[kind](t, lab, r, site)
		})
	}
}

var probeKind = map[natlab.Kind]func(*testing.T, *natlab.Lab, *responder, *natlab.Site){
	natlab.Open:       probeOpen,
	natlab.Cone:       probeCone,
	natlab.ConeRST:    probeCone,
	natlab.SymSeq:     probeSymSeq,
	natlab.SymSeqBusy: probeSymSeqBusy,
	natlab.SymRand:    probeSymRand,
}

func probeOpen(t *testing.T, lab *natlab.Lab, r *responder, site *natlab.Site) {
	h := site.Host()
	if !lab.Internet().Contains(h.Addr()) || site.PublicAddr() != h.Addr() {
		t.Fatalf("open host %s, public %s: want one public address", h, site.PublicAddr())
	}
	c := udpOn(t, h, 0)
	m := mustObserve(t, c, server(lab, 0, 0))
	if want := netip.AddrPortFrom(h.Addr(), localPort(c)); m != want {
		t.Fatalf("observed %s, want the host's own %s", m, want)
	}
	// No filtering: a stranger reaches the host.
	r.sendFrom(server(lab, 1, 1), m)
	expectFrom(t, c, server(lab, 1, 1), time.Second, "unsolicited UDP to an open host")
	tm, err := observeTCP(context.Background(), h, 0, server(lab, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	if tm.Addr() != h.Addr() {
		t.Fatalf("TCP observed %s, want address %s", tm, h.Addr())
	}
}

func probeCone(t *testing.T, lab *natlab.Lab, r *responder, site *natlab.Site) {
	h := site.Host()
	c := udpOn(t, h, 0)
	lp := localPort(c)
	mA := mustObserve(t, c, server(lab, 0, 0))
	if want := netip.AddrPortFrom(site.PublicAddr(), lp); mA != want {
		t.Fatalf("observed %s, want %s (router address, local port preserved)", mA, want)
	}
	// Address-and-port-dependent filtering: only the endpoint contacted
	// gets through.
	r.sendFrom(server(lab, 1, 0), mA)
	r.sendFrom(server(lab, 0, 1), mA)
	expectNothing(t, c, 500*time.Millisecond, "unsolicited UDP from another address or port")
	r.sendFrom(server(lab, 0, 0), mA)
	expectFrom(t, c, server(lab, 0, 0), time.Second, "UDP from the contacted endpoint")
	// Endpoint-independent mapping: the second destination sees the
	// same public endpoint.
	if mB := mustObserve(t, c, server(lab, 1, 0)); mB != mA {
		t.Fatalf("mapping to second server address %s differs from first %s", mB, mA)
	}
	tm, err := observeTCP(context.Background(), h, int(lp), server(lab, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	if want := netip.AddrPortFrom(site.PublicAddr(), lp); tm != want {
		t.Fatalf("TCP observed %s, want %s", tm, want)
	}
	want := dialSilence
	if site.Kind() == natlab.ConeRST {
		want = dialRefused
	}
	if got := dialUnsolicited(t, lab.Server(), mA, 1500*time.Millisecond); got != want {
		t.Fatalf("unsolicited TCP SYN to %s: %s, want %s", mA, got, want)
	}
}

// checkSymmetric checks per-destination mapping and filtering, and
// returns the public ports of the two flows it made.
func checkSymmetric(t *testing.T, lab *natlab.Lab, r *responder, site *natlab.Site) (uint16, uint16) {
	t.Helper()
	c := udpOn(t, site.Host(), 0)
	mA := mustObserve(t, c, server(lab, 0, 0))
	mB := mustObserve(t, c, server(lab, 1, 0))
	if mA.Addr() != site.PublicAddr() || mB.Addr() != site.PublicAddr() {
		t.Fatalf("observed %s and %s, want address %s", mA, mB, site.PublicAddr())
	}
	if mA == mB {
		t.Fatalf("one socket got the same mapping %s for two destinations, want one per destination", mA)
	}
	r.sendFrom(server(lab, 0, 1), mA)
	r.sendFrom(server(lab, 1, 0), mA)
	expectNothing(t, c, 500*time.Millisecond, "unsolicited UDP from another port or address")
	if got := dialUnsolicited(t, lab.Server(), mA, time.Second); got != dialSilence {
		t.Fatalf("unsolicited TCP SYN to %s: %s, want silence", mA, got)
	}
	return mA.Port(), mB.Port()
}

func probeSymSeq(t *testing.T, lab *natlab.Lab, r *responder, site *natlab.Site) {
	a, b := checkSymmetric(t, lab, r, site)
	ports := append([]uint16{a, b}, newFlows(t, site.Host(), server(lab, 0, 0), 8, 0)...)
	tm, err := observeTCP(context.Background(), site.Host(), 0, server(lab, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	ports = append(ports, tm.Port()) // TCP shares the counter
	for i, d := range deltas(ports) {
		if d != 1 {
			t.Fatalf("ports %v: step %d is %+d, want every new flow to take the next port", ports, i, d)
		}
	}
	if ports[0] < natlab.SeqPortBase || ports[0] >= natlab.SeqPortBase+natlab.SeqPortCount {
		t.Fatalf("port %d outside the symseq range", ports[0])
	}
}

func probeSymSeqBusy(t *testing.T, lab *natlab.Lab, r *responder, site *natlab.Site) {
	checkSymmetric(t, lab, r, site)
	ports := newFlows(t, site.Host(), server(lab, 0, 0), 8, 150*time.Millisecond)
	gaps := 0
	for _, d := range deltas(ports) {
		if d < 1 || d > 100 {
			t.Fatalf("ports %v: want increasing ports with small gaps", ports)
		}
		if d > 1 {
			gaps++
		}
	}
	if gaps == 0 {
		t.Fatalf("ports %v: no gaps, want the busy host to take ports in between", ports)
	}
	t.Logf("ports %v (%d of %d steps have gaps)", ports, gaps, len(ports)-1)
}

func probeSymRand(t *testing.T, lab *natlab.Lab, r *responder, site *natlab.Site) {
	checkSymmetric(t, lab, r, site)
	ports := newFlows(t, site.Host(), server(lab, 0, 0), 8, 0)
	if slices.IndexFunc(deltas(ports), func(d int) bool { return d != 1 }) < 0 {
		t.Fatalf("ports %v are sequential, want random", ports)
	}
}

// TestTopologies checks two hosts behind one NAT and the double NATs.
func TestTopologies(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	lab := labtest.New(t, natlab.Config{})
	r := newResponder(t, lab.Server())

	t.Run("same-nat", func(t *testing.T) {
		site, err := lab.AddSite(ctx, "a", natlab.Cone)
		if err != nil {
			t.Fatal(err)
		}
		h2, err := site.AddHost(ctx, "a2")
		if err != nil {
			t.Fatal(err)
		}
		h1 := site.Host()
		if got := site.Hosts(); len(got) != 2 || got[1] != h2 {
			t.Fatalf("Hosts() = %v", got)
		}
		c1, c2 := udpOn(t, h1, 0), udpOn(t, h2, 0)
		m1 := mustObserve(t, c1, server(lab, 0, 0))
		m2 := mustObserve(t, c2, server(lab, 0, 0))
		if m1.Addr() != site.PublicAddr() || m2.Addr() != site.PublicAddr() || m1 == m2 {
			t.Fatalf("observed %s and %s, want two mappings on %s", m1, m2, site.PublicAddr())
		}
		// No hairpinning: the NAT does not loop a packet to its own
		// public address back inside.
		if _, err := c1.WriteToUDPAddrPort([]byte("hairpin"), m2); err != nil {
			t.Fatal(err)
		}
		expectNothing(t, c2, 500*time.Millisecond, "hairpinned UDP")
		// The LAN itself works.
		if _, err := c1.WriteToUDPAddrPort([]byte("lan"), netip.AddrPortFrom(h2.Addr(), localPort(c2))); err != nil {
			t.Fatal(err)
		}
		expectFrom(t, c2, netip.AddrPortFrom(h1.Addr(), localPort(c1)), time.Second, "UDP across the LAN")
	})

	t.Run("double-nat", func(t *testing.T) {
		site, err := lab.AddDoubleNAT(ctx, "d", natlab.SymSeq, natlab.Cone)
		if err != nil {
			t.Fatal(err)
		}
		rs := site.Routers()
		if len(rs) != 2 || site.PublicAddr() != rs[0].Addr() || site.Kind() != natlab.SymSeq || site.InnerKind() != natlab.Cone {
			t.Fatalf("routers %v, public %s, kinds %s/%s", rs, site.PublicAddr(), site.Kind(), site.InnerKind())
		}
		c := udpOn(t, site.Host(), 0)
		m := mustObserve(t, c, server(lab, 0, 0))
		if m.Addr() != site.PublicAddr() || m.Port() < natlab.SeqPortBase {
			t.Fatalf("observed %s, want the carrier's address %s and a symseq port", m, site.PublicAddr())
		}
		r.sendFrom(server(lab, 1, 0), m)
		expectNothing(t, c, 500*time.Millisecond, "unsolicited UDP through a double NAT")
	})

	t.Run("double-nat-busy-carrier", func(t *testing.T) {
		site, err := lab.AddDoubleNAT(ctx, "e", natlab.SymSeqBusy, natlab.Cone)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(lab.Namespaces(), lab.Prefix()+"-e-cgn-busy") {
			t.Fatalf("namespaces %v: no busy host behind the carrier", lab.Namespaces())
		}
		c := udpOn(t, site.Host(), 0)
		if m := mustObserve(t, c, server(lab, 0, 0)); m.Addr() != site.PublicAddr() {
			t.Fatalf("observed %s, want %s", m, site.PublicAddr())
		}
	})
}

// TestLoss checks the loss knob: at 50% some datagrams arrive and some do
// not; at 0% all do.
func TestLoss(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	lab := labtest.New(t, natlab.Config{LossPercent: 50})
	r := newResponder(t, lab.Server())
	site, err := lab.AddSite(ctx, "a", natlab.Cone)
	if err != nil {
		t.Fatal(err)
	}
	c := udpOn(t, site.Host(), 0)
	dst := server(lab, 0, 1)
	send := func() int {
		before := r.count(dst)
		for range 100 {
			if _, err := c.WriteToUDPAddrPort([]byte("x"), dst); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Millisecond)
		}
		time.Sleep(300 * time.Millisecond)
		return r.count(dst) - before
	}
	if n := send(); n == 0 || n == 100 {
		t.Fatalf("%d of 100 datagrams arrived at 50%% loss", n)
	} else {
		t.Logf("%d of 100 datagrams arrived at 50%% loss", n)
	}
	if err := lab.SetLoss(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if n := send(); n != 100 {
		t.Fatalf("%d of 100 datagrams arrived at 0%% loss", n)
	}
}

// TestForget checks that Forget drops a router's mappings.
func TestForget(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	lab := labtest.New(t, natlab.Config{})
	r := newResponder(t, lab.Server())
	rand, err := lab.AddSite(ctx, "a", natlab.SymRand)
	if err != nil {
		t.Fatal(err)
	}
	cone, err := lab.AddSite(ctx, "b", natlab.Cone)
	if err != nil {
		t.Fatal(err)
	}
	c := udpOn(t, rand.Host(), 0)
	m1 := mustObserve(t, c, server(lab, 0, 0))
	if again := mustObserve(t, c, server(lab, 0, 0)); again != m1 {
		t.Fatalf("mapping changed from %s to %s without Forget", m1, again)
	}
	if err := rand.Forget(ctx); err != nil {
		t.Fatal(err)
	}
	if m2 := mustObserve(t, c, server(lab, 0, 0)); m2 == m1 {
		t.Fatalf("mapping %s survived Forget", m1)
	}

	// On a cone the new mapping may well reuse the port, but the old
	// one no longer lets the server in before the host speaks again.
	cc := udpOn(t, cone.Host(), 0)
	cm := mustObserve(t, cc, server(lab, 0, 0))
	if err := cone.Forget(ctx); err != nil {
		t.Fatal(err)
	}
	r.sendFrom(server(lab, 0, 0), cm)
	expectNothing(t, cc, 500*time.Millisecond, "UDP to a forgotten mapping")
}

// TestUDPTimeout checks that a short conntrack UDP timeout makes an idle
// mapping expire.
func TestUDPTimeout(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	lab := labtest.New(t, natlab.Config{UDPTimeout: time.Second})
	newResponder(t, lab.Server())
	site, err := lab.AddSite(ctx, "a", natlab.SymSeq)
	if err != nil {
		t.Fatal(err)
	}
	out, err := site.Exec(ctx, "cat", "/proc/sys/net/netfilter/nf_conntrack_udp_timeout")
	if err != nil || strings.TrimSpace(string(out)) != "1" {
		t.Fatalf("router udp timeout %q, %v; want 1", out, err)
	}
	c := udpOn(t, site.Host(), 0)
	m1 := mustObserve(t, c, server(lab, 0, 0))
	if again := mustObserve(t, c, server(lab, 0, 0)); again != m1 {
		t.Fatalf("mapping changed from %s to %s while active", m1, again)
	}
	time.Sleep(2500 * time.Millisecond)
	if m2 := mustObserve(t, c, server(lab, 0, 0)); m2 == m1 {
		t.Fatalf("mapping %s survived 2.5 s idle with a 1 s timeout", m1)
	}
}

// TestCommand checks running programs in lab namespaces, and that the lab
// leaves the root namespace alone.
func TestCommand(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	lab := labtest.New(t, natlab.Config{})
	site, err := lab.AddSite(ctx, "a", natlab.ConeRST)
	if err != nil {
		t.Fatal(err)
	}
	out, err := lab.Server().Run(ctx, "ip", "-4", "-o", "addr", "show", "dev", "eth0")
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range lab.Server().Addrs() {
		if !strings.Contains(string(out), a.String()+"/24") {
			t.Errorf("server addresses %q lack %s", out, a)
		}
	}
	out, err = site.Exec(ctx, "nft", "list", "ruleset")
	if err != nil || !strings.Contains(string(out), "masquerade") || !strings.Contains(string(out), "reject with tcp reset") {
		t.Fatalf("router ruleset %q, %v", out, err)
	}
	if _, err := site.Host().Run(ctx, "false"); err == nil || !strings.Contains(err.Error(), lab.Prefix()+"-a") {
		t.Fatalf("failing command: error %v, want one naming the namespace", err)
	}
	root, err := rootRun(ctx, "ip", "-o", "link")
	if err != nil {
		t.Fatal(err)
	}
	for _, dev := range []string{"hub0", "wan0", "lan0"} {
		if strings.Contains(root, ": "+dev+"@") || strings.Contains(root, ": "+dev+":") {
			t.Errorf("root namespace has lab device %s", dev)
		}
	}
}
