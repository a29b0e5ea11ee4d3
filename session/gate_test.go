package session

import (
	"context"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/warren-p2p/warren/link"
	"github.com/warren-p2p/warren/punch"
	"github.com/warren-p2p/warren/transport"
)

// TestTCPGate: what the race does with a direct TCP candidate at the
// controlling end while the UDP path measures the path.
func TestTCPGate(t *testing.T) {
	lossy := Choice{Punched: true, Quality: punch.Quality{Sent: 48, Lost: 3, RTT: 90 * time.Millisecond}, Stream: transport.StreamKCP, Lossy: true, PreferUDP: true}
	clean := Choice{Punched: true, Quality: punch.Quality{Sent: 48, RTT: 30 * time.Millisecond}, Stream: transport.StreamKCP}
	for _, tc := range []struct {
		name string
		rtt  time.Duration // the server's estimate
		// then happens after 100ms, and the candidate must pass between
		// lo and hi after it arrived (hi 0: never, the race ends first).
		then   func(v *verdict)
		lo, hi time.Duration
	}{
		{"a LAN by the server's estimate passes at once", 300 * time.Microsecond, nil, 0, 50 * time.Millisecond},
		{"a long path waits for the measurement: clean", 30 * time.Millisecond, func(v *verdict) { v.decide(clean) }, 100 * time.Millisecond, 200 * time.Millisecond},
		{"no estimate waits too", 0, func(v *verdict) { v.decide(clean) }, 100 * time.Millisecond, 200 * time.Millisecond},
		{"the UDP path failing releases it", 90 * time.Millisecond, func(v *verdict) { v.fail() }, 100 * time.Millisecond, 200 * time.Millisecond},
		{"a lossy path holds it until the UDP candidate fails", 90 * time.Millisecond, func(v *verdict) {
			v.decide(lossy)
			time.Sleep(200 * time.Millisecond)
			v.fail()
		}, 300 * time.Millisecond, 400 * time.Millisecond},
		{"a short lossy path releases it with the measurement", 20 * time.Millisecond, func(v *verdict) {
			v.decide(Choice{Punched: true, Quality: punch.Quality{Sent: 48, Lost: 2, RTT: 20 * time.Millisecond}, Stream: transport.StreamKCP, Lossy: true})
		}, 100 * time.Millisecond, 200 * time.Millisecond},
		{"a lossy path holds it at most the limit", 0, func(v *verdict) { v.decide(lossy) }, holdBase, holdBase + 200*time.Millisecond},
		{"a lossy path holds it while the UDP link wins", 90 * time.Millisecond, func(v *verdict) { v.decide(lossy) }, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &Session{RTT: tc.rtt, verdict: newVerdict()}
			c, held, cancel := gatePass(t, s)
			defer cancel()
			began := time.Now()
			if tc.then != nil {
				go func() {
					time.Sleep(100 * time.Millisecond)
					tc.then(s.verdict)
				}()
			}
			passed := make(chan bool, 1)
			go func() { passed <- c.Hold(held) }()
			wait := tc.hi + 200*time.Millisecond
			if tc.hi == 0 {
				wait = holdBase + 500*time.Millisecond
			}
			select {
			case ok := <-passed:
				took := time.Since(began)
				if tc.hi == 0 || !ok {
					t.Fatalf("Hold returned %v after %v, want it held until the race ended", ok, took)
				}
				if took < tc.lo || took > tc.hi {
					t.Errorf("passed after %v, want %v to %v", took, tc.lo, tc.hi)
				}
				if got := s.Choice().HeldTCP; took > 50*time.Millisecond && (got < tc.lo || got > took+50*time.Millisecond) {
					t.Errorf("choice says TCP was held %v; it passed after %v", got, took)
				}
			case <-time.After(wait):
				if tc.hi != 0 {
					t.Fatalf("not passed after %v", wait)
				}
				cancel() // the UDP link won
				if ok := <-passed; ok {
					t.Error("Hold let the candidate win after the race ended")
				}
			}
		})
	}
}

// gatePass runs a gate for s and passes one candidate through it, which
// must come out at once (only its nomination waits), with a Hold to ask
// under the returned context; cancel ends the race.
func gatePass(t *testing.T, s *Session) (c link.Candidate, ctx context.Context, cancel func()) {
	t.Helper()
	out := make(chan link.Candidate)
	g := &tcpGate{s: s, in: make(chan link.Candidate), out: out}
	ctx, stop := context.WithTimeout(context.Background(), holdBase+2*time.Second)
	done := make(chan struct{})
	go func() {
		defer close(done)
		g.run(ctx)
	}()
	a, b := net.Pipe()
	g.in <- link.Candidate{Conn: a, Path: PathTCP}
	select {
	case c = <-out:
	case <-time.After(time.Second):
		t.Fatal("the gate held the candidate itself, not only its nomination")
	}
	if c.Hold == nil {
		t.Fatal("the candidate came out without a Hold")
	}
	return c, ctx, func() {
		stop()
		<-done
		a.Close()
		b.Close()
	}
}

func TestChoiceReason(t *testing.T) {
	lossy := Choice{Punched: true, Quality: punch.Quality{Sent: 48, Lost: 3, RTT: 91200 * time.Microsecond}, Stream: transport.StreamKCP, Lossy: true, PreferUDP: true, RacedTCP: true}
	short := Choice{Punched: true, Quality: punch.Quality{Sent: 48, Lost: 2, RTT: 20 * time.Millisecond}, Stream: transport.StreamKCP, Lossy: true, RacedTCP: true}
	udpOnly := lossy
	udpOnly.RacedTCP = false
	for _, tc := range []struct {
		c      Choice
		winner string
		want   string
	}{
		{Choice{}, PathTCP, ""},
		{Choice{Punched: true, Stream: transport.StreamQUIC}, PathUDP, "udp stream quic (not measured: set by udp_stream, or the peer does not measure)"},
		{Choice{Punched: true, Quality: punch.Quality{Sent: 48, RTT: 250 * time.Microsecond}, Stream: transport.StreamQUIC}, PathTCP,
			"probe train: 0 of 48 lost, round trip 0.2 ms: udp stream quic"},
		{lossy, PathUDP, "probe train: 3 of 48 lost, round trip 91.2 ms: udp stream kcp; lossy long path, so the UDP link was preferred to direct TCP (a TCP link is loss-limited there)"},
		{lossy, PathRelay, "probe train: 3 of 48 lost, round trip 91.2 ms: udp stream kcp; lossy long path: the UDP link was preferred, but relay won"},
		{udpOnly, PathUDP, "probe train: 3 of 48 lost, round trip 91.2 ms: udp stream kcp"},
		{short, PathTCP, "probe train: 2 of 48 lost, round trip 20.0 ms: udp stream kcp; lossy but shorter than 50ms: direct TCP keeps its head start (faster than KCP there in the lab)"},
	} {
		if got := tc.c.Reason(tc.winner); got != tc.want {
			t.Errorf("%+v, %s:\n got %q\nwant %q", tc.c, tc.winner, got, tc.want)
		}
	}
	if p := lossy.LossPercent(); p != 6.25 {
		t.Errorf("loss %v%%", p)
	}
}

func TestShortPath(t *testing.T) {
	for rtt, want := range map[time.Duration]bool{100 * time.Microsecond: true, 1500 * time.Microsecond: true, 5 * time.Millisecond: false, 90 * time.Millisecond: false} {
		if got := shortPath(rtt); got != want {
			t.Errorf("round trip %v: short %v, want %v", rtt, got, want)
		}
	}
}

// TestTCPGateKernelRTT: with no estimate from the server, a TCP candidate
// whose own round trip is a LAN's passes at once (Linux: TCP_INFO).
func TestTCPGateKernelRTT(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			io.Copy(c, c) // an echo, for round trips
			c.Close()
		}
		close(accepted)
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { c.Close(); <-accepted }()
	buf := make([]byte, 1)
	for range 3 {
		c.Write([]byte{1})
		io.ReadFull(c, buf)
	}
	rtt, ok := tcpRTT(c)
	if runtime.GOOS != "linux" {
		if ok {
			t.Fatalf("tcpRTT %v off Linux", rtt)
		}
		return
	}
	if !ok || rtt <= 0 || rtt > 100*time.Millisecond {
		t.Fatalf("loopback round trip %v (%v)", rtt, ok)
	}
	s := &Session{verdict: newVerdict()}
	g := &tcpGate{s: s}
	ctx, cancel := context.WithTimeout(context.Background(), holdBase/2)
	defer cancel()
	if !g.wait(ctx, link.Candidate{Conn: c, Path: PathTCP}, time.Now()) {
		t.Fatal("held a loopback connection for the measurement")
	}
}
