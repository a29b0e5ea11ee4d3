package transport

import (
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// lossyRelay forwards datagrams between two peers, dropping a fraction
// of them, like a bad path. Peer A talks to relay.A, peer B to relay.B.
type lossyRelay struct {
	A, B   netip.AddrPort
	sa, sb *net.UDPConn
	wg     sync.WaitGroup
}

func newLossyRelay(t *testing.T, a, b netip.AddrPort, loss float64) *lossyRelay {
	t.Helper()
	listen := func() *net.UDPConn {
		c := listenLoopback(t)
		c.SetReadBuffer(SocketBuffer)
		return c
	}
	r := &lossyRelay{sa: listen(), sb: listen()}
	r.A, r.B = addrOf(r.sa), addrOf(r.sb)
	forward := func(in, out *net.UDPConn, to netip.AddrPort, seed uint64) {
		defer r.wg.Done()
		rng := rand.New(rand.NewPCG(seed, 7))
		buf := make([]byte, 2048)
		for {
			n, _, err := in.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if rng.Float64() < loss {
				continue
			}
			out.WriteToUDPAddrPort(buf[:n], to)
		}
	}
	r.wg.Add(2)
	go forward(r.sa, r.sb, b, 1) // from A, out towards B
	go forward(r.sb, r.sa, a, 2) // from B, out towards A
	t.Cleanup(func() { r.sa.Close(); r.sb.Close(); r.wg.Wait() })
	return r
}

// TestLossyPath checks delivery and close over a path losing 3% of the
// datagrams each way.
func TestLossyPath(t *testing.T) {
	a, b := newDemux(t), newDemux(t)
	r := newLossyRelay(t, addrOf(a), addrOf(b), 0.03)
	ca, err := a.Dial(r.A, 77, nil)
	if err != nil {
		t.Fatal(err)
	}
	cb, err := b.Dial(r.B, 77, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cb.Close()
	n := bulkSize(t) / 4
	start := time.Now()
	intact, err := sendRandom(ca, cb, n, ca.Close)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if !intact {
		t.Fatal("sha256 mismatch")
	}
	t.Logf("3%% loss: %d MiB in %v: %.1f MB/s", n>>20, took.Round(time.Millisecond), float64(n)/took.Seconds()/1e6)
	within(t, 5*time.Second, "EOF after close over a lossy path", func() {
		if _, err := cb.Read(make([]byte, 1)); err == nil {
			t.Error("Read after peer close succeeded")
		} else {
			t.Logf("read after peer close: %v", err)
		}
	})
}
