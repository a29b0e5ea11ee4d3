package rendezvous

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// TestUDPStepServesEveryWaiter: the second step reaches every goroutine
// waiting on its session, whether it arrives before or after they wait; a
// duplicate is ignored, and a finished session's step is not reused.
func TestUDPStepServesEveryWaiter(t *testing.T) {
	c := &Client{steps: make(map[string]*UDPStep)}
	step := c.expectUDP("s1")
	if c.expectUDP("s1") != step {
		t.Fatal("a second punch for one session made a second step")
	}
	results := make(chan UDPInfo, 2)
	for range 2 {
		go func() {
			info, ok := step.Wait(context.Background(), time.Second)
			if !ok {
				info.Session = "timeout"
			}
			results <- info
		}()
	}
	c.deliverUDP(UDPInfo{Session: "s1"})
	c.deliverUDP(UDPInfo{Session: "s1", PeerLANPort: 1}) // a late duplicate
	for range 2 {
		if got := <-results; got.Session != "s1" || got.PeerLANPort != 0 {
			t.Fatalf("waiter got %+v", got)
		}
	}
	step.Close()
	if _, ok := c.expectUDP("s1").Wait(context.Background(), 10*time.Millisecond); ok {
		t.Fatal("a finished session's step was reused")
	}
}

// TestUDPStepForgottenWithItsSession: a step nobody waits for any more is
// dropped when its session closes, and so is every step when the
// connection ends, so the client keeps nothing for sessions gone.
func TestUDPStepForgottenWithItsSession(t *testing.T) {
	c := &Client{steps: make(map[string]*UDPStep), registered: make(chan struct{})}
	c.expectUDP("a").Close()
	c.deliverUDP(UDPInfo{Session: "a"})
	p := &peerConn{}
	c.setRegistered(p, netip.AddrPort{}, "")
	c.expectUDP("b")
	c.unregister(p)
	if len(c.steps) != 0 {
		t.Fatalf("steps kept: %v", c.steps)
	}
	var none *UDPStep
	if _, ok := none.Wait(context.Background(), time.Hour); ok {
		t.Fatal("a nil step came")
	}
	none.Close()
}

// TestUDPStepsBounded: a server that sends punches and never their second
// step cannot grow the client's map past maxPendingSteps.
func TestUDPStepsBounded(t *testing.T) {
	c := &Client{steps: make(map[string]*UDPStep)}
	for i := range maxPendingSteps + 10 {
		c.expectUDP(fmt.Sprint(i))
	}
	if len(c.steps) != maxPendingSteps {
		t.Fatalf("%d steps pending, want at most %d", len(c.steps), maxPendingSteps)
	}
	over := c.expectUDP("over")
	c.deliverUDP(UDPInfo{Session: "over"})
	if _, ok := over.Wait(context.Background(), 10*time.Millisecond); ok {
		t.Fatal("a step beyond the bound was delivered")
	}
	over.Close()
}
