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
