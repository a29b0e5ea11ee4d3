package daemon

import (
	"context"
	"io"
	"sync/atomic"
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

// countingAsker is a registered rendezvous client that counts connect
// requests.
type countingAsker struct {
	registered chan struct{}
	asks       atomic.Int32
}

func newCountingAsker() *countingAsker {
	a := &countingAsker{registered: make(chan struct{})}
	close(a.registered)
	return a
}

func (a *countingAsker) Registered() <-chan struct{}      { return a.registered }
func (a *countingAsker) Connect(identity.PublicKey) error { a.asks.Add(1); return nil }

// TestAwaitPunchWaitsForTheAnswer: a connect request is not repeated
// while its answer may still come (a second request would start a
// second punch session, overtaking the first whose instruction is slow
// to arrive), but is after an "offline" answer.
func TestAwaitPunchWaitsForTheAnswer(t *testing.T) {
	log := logrus.New()
	log.SetOutput(io.Discard)
	tests := []struct {
		name      string
		offline   bool // the server answers "offline" at once
		wantAsks  int32
		wantOffer bool
	}{
		{"instruction late", false, 1, true},
		{"offline", true, 2, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			p := newPeer("home", identity.PublicKey{}, log)
			a := newCountingAsker()
			if tt.offline {
				go func() {
					for a.asks.Load() == 0 {
						time.Sleep(time.Millisecond)
					}
					p.setOffline()
				}()
			}
			// The instruction comes after the first retry's time.
			time.AfterFunc(2500*time.Millisecond, func() { p.offer(rendezvous.Punch{Session: "s"}) })
			o, _, ok := p.awaitPunch(ctx, a, func(context.Context) {})
			if ok != tt.wantOffer || o.Session != "s" {
				t.Fatalf("awaitPunch = %q, %v", o.Session, ok)
			}
			if n := a.asks.Load(); n != tt.wantAsks {
				t.Errorf("%d connect requests, want %d", n, tt.wantAsks)
			}
		})
	}
}
