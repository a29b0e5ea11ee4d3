package transport

import (
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// wanPath is what one direction of the in-process emulated path does: a
// rate limit with a bounded queue (tail drop), bursty loss, then a fixed
// delay. It mimics natlab's profiles closely enough to iterate on a
// transport in seconds; the lab benchmark (e2e BenchmarkLossy) is the proof.
type wanPath struct {
	delay       time.Duration
	lossPercent float64 // long-run loss of the direction
	burst       float64 // mean loss run in packets (Gilbert model)
	rateBitps   int64
	queueBytes  int
}

// mobilePath is natlab's "mobile" profile seen end to end (two uplink
// crossings folded into one): 90 ms round trip, 2% loss in runs of 3,
// 20 Mbit/s with 100 ms of queue.
var mobilePath = wanPath{delay: 45 * time.Millisecond, lossPercent: 2, burst: 3,
	rateBitps: 20e6, queueBytes: 250_000}

// newWANRelay is newLossyRelay with a wanPath each way.
func newWANRelay(t testing.TB, a, b netip.AddrPort, p wanPath) *lossyRelay {
	t.Helper()
	r := &lossyRelay{sa: listenLoopback(t), sb: listenLoopback(t)}
	r.sa.SetReadBuffer(SocketBuffer)
	r.sb.SetReadBuffer(SocketBuffer)
	r.A, r.B = addrOf(r.sa), addrOf(r.sb)
	r.wg.Add(2)
	go r.forwardWAN(r.sa, r.sb, b, p, 1)
	go r.forwardWAN(r.sb, r.sa, a, p, 2)
	t.Cleanup(func() { r.sa.Close(); r.sb.Close(); r.wg.Wait() })
	return r
}

type timedPacket struct {
	at time.Time
	b  []byte
}

func (r *lossyRelay) forwardWAN(in, out *net.UDPConn, to netip.AddrPort, p wanPath, seed uint64) {
	defer r.wg.Done()
	line := make(chan timedPacket, 1<<16)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the delay line: constant delay keeps packets in order
		defer wg.Done()
		for pk := range line {
			time.Sleep(time.Until(pk.at))
			out.WriteToUDPAddrPort(pk.b, to)
		}
	}()
	defer func() { close(line); wg.Wait() }()
	rng := rand.New(rand.NewPCG(seed, 7))
	bad := false
	var busyUntil time.Time
	buf := make([]byte, 2048)
	for {
		n, _, err := in.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		now := time.Now()
		dep := now
		if p.rateBitps > 0 {
			wire := n + 28 + 14
			if busyUntil.Sub(now) > time.Duration(int64(p.queueBytes)*8*int64(time.Second)/p.rateBitps) {
				continue // tail drop
			}
			if busyUntil.Before(now) {
				busyUntil = now
			}
			busyUntil = busyUntil.Add(time.Duration(int64(wire) * 8 * int64(time.Second) / p.rateBitps))
			dep = busyUntil
		}
		if p.lossPercent > 0 { // Gilbert: good→bad at 1/goodLen, bad→good at 1/burst
			q := p.lossPercent / 100
			goodLen := p.burst * (1 - q) / q
			if bad && rng.Float64() < 1/p.burst {
				bad = false
			} else if !bad && rng.Float64() < 1/goodLen {
				bad = true
			}
			if bad {
				continue
			}
		}
		line <- timedPacket{dep.Add(p.delay), append([]byte(nil), buf[:n]...)}
	}
}

// TestKCPOnLossyPaths checks why CongestionWindow is off by default: over
// the emulated mobile and bad-Wi-Fi paths, one stream with the defaults
// must carry at least 3 times what it carries with KCP's congestion window
// on (measured: ~8x on mobile, ~30x on bad Wi-Fi). A ratio from the same
// run, so a loaded machine moves both sides.
func TestKCPOnLossyPaths(t *testing.T) {
	if testing.Short() {
		t.Skip("measures for seconds")
	}
	wifi := wanPath{delay: 10 * time.Millisecond, lossPercent: 5, burst: 4}
	for i, p := range []struct {
		name string
		path wanPath
	}{{"mobile", mobilePath}, {"bad-wifi", wifi}} {
		conv := uint32(80 + 2*i)
		def := kcpOverWAN(t, p.path, conv, nil, 5*time.Second)
		cwnd := kcpOverWAN(t, p.path, conv+1, &Config{CongestionWindow: true}, 5*time.Second)
		t.Logf("%s: %.1f Mbit/s, with the congestion window %.1f", p.name, def, cwnd)
		if def < 3*cwnd {
			t.Errorf("%s: defaults carry %.1f Mbit/s, not 3x the %.1f with the congestion window", p.name, def, cwnd)
		}
	}
}

// kcpOverWAN runs one stream with cfg over p for d and returns Mbit/s.
func kcpOverWAN(t *testing.T, p wanPath, conv uint32, cfg *Config, d time.Duration) float64 {
	a, b := newDemux(t), newDemux(t)
	r := newWANRelay(t, addrOf(a), addrOf(b), p)
	ca, err := a.Dial(r.A, conv, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Close()
	cb, err := b.Dial(r.B, conv, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer cb.Close()
	go io.Copy(ca, zeroReader{})
	start := time.Now()
	cb.SetReadDeadline(start.Add(d))
	n, _ := io.Copy(io.Discard, cb)
	return float64(n) * 8 / time.Since(start).Seconds() / 1e6
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }
