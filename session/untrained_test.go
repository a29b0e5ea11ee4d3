package session

import (
	"testing"
	"time"

	"github.com/warren-p2p/warren/punch"
	"github.com/warren-p2p/warren/transport"
)

// TestUntrained: the UDP punch skips its probe train only where nothing
// is left for the train to decide: a path the server knows to be long,
// with no direct TCP able to offer a link (a TCP path whose role is none
// does not count as one), at the end that chooses the stream.
func TestUntrained(t *testing.T) {
	long, lan := 90*time.Millisecond, 300*time.Microsecond
	for _, tc := range []struct {
		name     string
		tcp      punch.TCPRole // "": no TCP path in the race
		rtt      time.Duration
		choosing bool
		want     punch.Quality
	}{
		{"long, TCP role none", punch.TCPNone, long, true, punch.Quality{RTT: long}},
		{"long, no TCP path", "", long, true, punch.Quality{RTT: long}},
		{"long, direct TCP races", punch.TCPSimultaneous, long, true, punch.Quality{}},
		{"a LAN: the train tells QUIC from KCP", punch.TCPNone, lan, true, punch.Quality{}},
		{"no estimate from the server", punch.TCPNone, 0, true, punch.Quality{}},
		{"a stream set by udp_stream", punch.TCPNone, long, false, punch.Quality{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &Session{RTT: tc.rtt, Strategy: punch.Strategy{TCP: tc.tcp, UDP: punch.RoleDirect}, verdict: newVerdict()}
			paths := []Path{&UDP{Stream: string(transport.StreamAuto)}}
			if tc.tcp != "" {
				paths = append(paths, &TCP{})
			}
			newRace(s, paths)
			if got := untrained(s, tc.choosing); got != tc.want {
				t.Errorf("untrained = %+v, want %+v", got, tc.want)
			}
		})
	}
	// What the estimate chooses: KCP on the long path, as a train's
	// measurement of it would.
	if got := chooseStream(punch.Quality{RTT: long}); got != streamKCP {
		t.Errorf("chooseStream(estimate of a long path) = %q, want KCP", got)
	}
}
