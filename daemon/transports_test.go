package daemon

import (
	"context"
	"testing"
	"time"

	"github.com/warren-p2p/warren/session"
)

// TestTransportsBindBothDirections: a side whose config allows only UDP
// links takes none over TCP, not even one its peer (which allows both)
// punches towards it; the link comes up over UDP on both sides.
func TestTransportsBindBothDirections(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for range 3 { // TCP wins the race on loopback nearly always when it may
		laptop, home := loopbackPair(t, ctx, map[string]string{
			"laptop": "[link]\ntransports = [\"udp\"]\n[[peers]]\nname = \"home\"\npublic_key = \"PEER_KEY\"\n",
			"home":   "[[peers]]\nname = \"laptop\"\npublic_key = \"PEER_KEY\"\n",
		})
		linked(t, ctx, laptop, home)
		if a, b := peerState(laptop, "home").Path, peerState(home, "laptop").Path; a != session.PathUDP || b != session.PathUDP {
			t.Fatalf("transports = [\"udp\"] on laptop: the link is %s at laptop, %s at home; want %s", a, b, session.PathUDP)
		}
	}
}
