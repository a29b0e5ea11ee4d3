package daemon

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/warren-p2p/warren/identity"
	"github.com/warren-p2p/warren/rendezvous"
)

func TestOfferKeepsOnlyTheNewest(t *testing.T) {
	log := logrus.New()
	log.SetOutput(io.Discard)
	p := newPeer("home", identity.PublicKey{}, log)
	for _, s := range []string{"first", "second", "third"} {
		p.offer(rendezvous.Punch{Session: s})
	}
	if o := <-p.offers; o.Session != "third" {
		t.Fatalf("got %q, want the newest offer", o.Session)
	}
	select {
	case o := <-p.offers:
		t.Fatalf("a stale offer %q was kept", o.Session)
	default:
	}
}

func TestSessionBoxServesEveryWaiter(t *testing.T) {
	var u udpInfos
	box := u.box("s1")
	results := make(chan rendezvous.UDPInfo, 2)
	for range 2 {
		go func() {
			info, ok := box.wait(context.Background(), time.Second)
			if !ok {
				info.Session = "timeout"
			}
			results <- info
		}()
	}
	// The instruction can arrive before or after the waiters.
	u.box("s1").set(rendezvous.UDPInfo{Session: "s1"})
	u.box("s1").set(rendezvous.UDPInfo{Session: "late duplicate"})
	for range 2 {
		if got := <-results; got.Session != "s1" {
			t.Fatalf("waiter got %q", got.Session)
		}
	}
	u.done("s1")
	if _, ok := u.box("s1").wait(context.Background(), 10*time.Millisecond); ok {
		t.Fatal("a finished session's box was reused")
	}
}
