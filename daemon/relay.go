package daemon

import (
	"context"
	"net"
	"time"

	"github.com/warren-p2p/warren/link"
	"github.com/warren-p2p/warren/punch"
	"github.com/warren-p2p/warren/rendezvous"
)

const pathRelay = "relay"

// relayDelay is how long a punch session tries direct paths alone before
// it also opens a relay through the rendezvous server; pairs with no direct
// path to expect open it at once.
const relayDelay = 3 * time.Second

// lanHeadStart is the relay's delay for such a pair when the peer may be on
// our LAN.
const lanHeadStart = 300 * time.Millisecond

// relay opens the session's relay through the rendezvous server and sends
// it on out as a link candidate. The link layer authenticates the peer over
// it exactly as over a direct path.
func (d *Daemon) relay(ctx context.Context, pu rendezvous.Punch, id punch.SessionID, s punch.Strategy, out chan<- link.Candidate) error {
	delay := relayDelay
	if s.TCP == punch.TCPNone && s.UDP == punch.RoleNone {
		delay = 0
		for _, a := range pu.LAN {
			if !a.Addr().IsLoopback() {
				// Same LAN: give the direct path a head start.
				delay = lanHeadStart
			}
		}
	}
	select {
	case <-time.After(delay):
	case <-ctx.Done():
		return ctx.Err()
	}
	var dialer net.Dialer
	conn, err := dialer.DialContext(ctx, "tcp", d.cfg.Rendezvous.Address)
	if err != nil {
		return err
	}
	conn, err = rendezvous.DialRelay(ctx, conn, id, pu.Side)
	if err != nil {
		return err
	}
	return sendCandidate(ctx, out, link.Candidate{Conn: conn, Path: pathRelay})
}
