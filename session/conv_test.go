package session

import (
	"testing"

	"github.com/warren-p2p/warren/punch"
	"github.com/warren-p2p/warren/transport"
)

// TestConvNeverLooksLikePunch: the KCP conversation a UDP path runs never
// starts, on the wire, like the punch packets sharing its socket.
func TestConvNeverLooksLikePunch(t *testing.T) {
	for range 1000 {
		if byte(transport.MakeConv(punch.NewSessionID().Conv())) == punch.UDPPrefix[0] {
			t.Fatal("conv starts with the punch magic")
		}
	}
}

// TestConvAgreesWithEarlierVersions: the conversation ID on the wire is
// the one earlier versions derived (they adjusted in punch, now
// transport.MakeConv does), so mixed versions still meet.
func TestConvAgreesWithEarlierVersions(t *testing.T) {
	for range 1000 {
		id := punch.NewSessionID()
		v := id.Conv()
		old := v
		if byte(old) == 'W' {
			old ^= 1
		}
		if got := transport.MakeConv(v); got != old {
			t.Fatalf("session %v: conv %#x, earlier versions %#x", id, got, old)
		}
	}
}
