package daemon

import (
	"context"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/warren-p2p/warren/identity"
	"github.com/warren-p2p/warren/internal/backoff"
)

// answerWithin is how soon the server's punch instruction follows our
// connect request when the peer is online: a round trip and the wait for
// the peer's NAT report.
const answerWithin = time.Second

// noAnswerWait is how long a connect request may go unanswered before it
// is sent again. The server answers a request with a punch or, after its
// consent wait (2 s by default), "offline"; it drops one silently when the
// peer's own request started a session within its PairWindow (3 s by
// default: that session serves both), or when over its rate. Asking again
// sooner would start a second punch session that overtakes the first: on
// a lossy path the first one's instruction can take seconds to arrive.
const noAnswerWait = 4 * time.Second

// asker is what awaitPunch needs of the rendezvous client.
type asker interface {
	Registered() <-chan struct{}
	Connect(identity.PublicKey) error
}

// awaitPunch asks the rendezvous server for a punch session with the peer
// and waits for the instruction; the peer asking first serves as well.
// After an "offline" answer it asks again, backing off; natReady waits
// for this end's NAT report, which the server passes to the peer with the
// punch. It returns when it last asked (zero if it never did).
func (p *peer) awaitPunch(ctx context.Context, rv asker, natReady func(context.Context)) (o offer, asked time.Time, ok bool) {
	ask := backoff.Backoff{Min: 2 * time.Second, Max: 30 * time.Second}
	for {
		select {
		case o := <-p.offers:
			if p.fresh(o) {
				return o, asked, true
			}
			continue
		case <-rv.Registered():
		case <-ctx.Done():
			return offer{}, asked, false
		}
		natReady(ctx)
		discard(p.answers) // an answer to an earlier request
		asked = time.Now()
		registration := rv.Registered()
		if err := rv.Connect(p.key); err != nil {
			p.log.WithError(err).Debug("connect request not sent")
		}
		retry := ask.Next()
		switch o, got, answered := p.awaitAnswer(ctx, rv, registration); {
		case got:
			return o, asked, true
		case ctx.Err() != nil:
			return offer{}, asked, false
		case !answered:
			retry = 0
		}
		// Offline: the peer's own request will start a session when it
		// comes; ask again meanwhile, less and less often, counting the
		// waits from the request (the answer took the server's consent
		// wait).
		select {
		case o := <-p.offers:
			return o, asked, true
		case <-time.After(retry - time.Since(asked)):
		case <-ctx.Done():
			return offer{}, asked, false
		}
	}
}

// awaitAnswer waits for the server's answer to a connect request sent
// during registration: the punch instruction (got), or "offline"
// (answered). It gives up, unanswered, after noAnswerWait or when the
// registration ends (a request the server forgot with the connection).
func (p *peer) awaitAnswer(ctx context.Context, rv asker, registration <-chan struct{}) (o offer, got, answered bool) {
	giveUp := time.After(noAnswerWait)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case o := <-p.offers:
			return o, true, true
		case <-p.answers:
			return offer{}, false, true
		case <-tick.C:
			if rv.Registered() != registration {
				return offer{}, false, false
			}
		case <-giveUp:
			return offer{}, false, false
		case <-ctx.Done():
			return offer{}, false, false
		}
	}
}

// fresh reports whether o is recent enough to punch on, and says why not.
func (p *peer) fresh(o offer) bool {
	age := time.Since(o.at)
	if age < punchFreshness {
		return true
	}
	p.log.WithFields(logrus.Fields{"session": o.Session[:min(8, len(o.Session))], "age": age.Round(time.Millisecond)}).Debug("punch instruction too old; the peer gave up on it")
	return false
}

// discard empties ch, a channel of capacity 1.
func discard[T any](ch chan T) {
	select {
	case <-ch:
	default:
	}
}
