package daemon

import (
	"io"
	"testing"

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

// TestOfflineWhilePunching: the server's "offline" answer to an ask from
// before the peer registered arrives while the punch session its own ask
// started is under way; it must not mark the peer offline (the forwards
// would refuse every connection until the link is up).
func TestOfflineWhilePunching(t *testing.T) {
	log := logrus.New()
	log.SetOutput(io.Discard)
	p := newPeer("home", identity.PublicKey{}, log)
	p.offer(rendezvous.Punch{Session: "s"})
	p.setPunching(true)
	p.setOffline()
	if p.state != StateConnecting {
		t.Errorf("state %q during a punch session, want %q", p.state, StateConnecting)
	}
	select {
	case <-p.offline:
		t.Error("offline during a punch session")
	default:
	}
	p.setPunching(false)
	p.setOffline()
	if p.state != StateOffline {
		t.Errorf("state %q after the session, want %q", p.state, StateOffline)
	}
}
