package rendezvous

import (
	"context"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/warren-p2p/warren/punch"
)

// TestLogFlood: one source does, as fast as it can, what the server logs
// a line for: a peer flips between two NAT reports 5,000 times, asks for
// punch sessions, and fresh keys register and leave. The server logs a
// few lines of each kind and one summary per kind, not a line per event.
// (It logged 100,002 lines in 2.6 s from one such connection.)
func TestLogFlood(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const src = "127.0.0.51"
	ts, hook := logServer(t, ctx, ServerConfig{NATWait: time.Millisecond, RefusalLogInterval: time.Second, PairWindow: time.Nanosecond})
	victim := newRawPeer(t, ts, "127.0.0.52")
	p := newRawPeer(t, ts, src)
	nats := []punch.NAT{{Behind: true, Mapping: punch.MappingEndpointIndependent}, {Behind: true, Mapping: punch.MappingAddressDependent}}
	const flips = 5000
	for i := range flips {
		if err := p.send(natMessage(nats[i%2])); err != nil {
			t.Fatal(err)
		}
	}
	for range 50 {
		if err := p.send(&Message{Type: TypeConnect, Peer: victim.key.String()}); err != nil {
			t.Fatal(err)
		}
	}
	for range 40 {
		c, _, err := registerRaw(t, src, ts.addr, ts.srv.PublicKey())
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	// The events are logged, and each interval's summaries after it (the
	// flips may span a few intervals, each letting LogBurst through).
	want := flips - 4*ts.srv.cfg.LogBurst
	var lines, natSummary int
	for deadline := time.Now().Add(5 * time.Second); natSummary < want && time.Now().Before(deadline); {
		time.Sleep(250 * time.Millisecond)
		lines, natSummary = 0, 0
		for _, e := range hook.AllEntries() {
			if e.Level > logrus.InfoLevel {
				continue // debug lines are off by default
			}
			lines++
			if e.Data["kind"] == logNAT && e.Data["source"] == src {
				natSummary += e.Data["suppressed"].(int)
			}
		}
	}
	t.Logf("%d NAT flips, 50 connects, 40 registrations from one source: %d log lines at info or above", flips, lines)
	if lines > 60 {
		t.Errorf("%d log lines for one source's flood", lines)
	}
	if natSummary < want {
		t.Errorf("the summaries count %d suppressed NAT lines of %d", natSummary, flips)
	}
}
