package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/warren-p2p/warren/daemon"
)

// TestPrintStatusSaysWhatIsWrong: the table names an offline peer's state
// and error, and the rendezvous error of a daemon whose key another daemon
// took, with how long it has lasted.
func TestPrintStatusSaysWhatIsWrong(t *testing.T) {
	since := time.Now().Add(-90 * time.Second)
	st := daemon.Status{PublicKey: "k", Rendezvous: "connecting", NAT: "none",
		RendezvousError: "another daemon uses this key (registered from 192.0.2.7:4000)", RendezvousSince: &since,
		Peers: []daemon.PeerStatus{{Name: "home", State: daemon.StateOffline, Since: &since, Error: "offline (not registered with the server)"}}}
	var b bytes.Buffer
	printStatus(&b, st)
	out := b.String()
	for _, want := range []string{
		"rendezvous connecting",
		"home  offline",
		"rendezvous: another daemon uses this key (registered from 192.0.2.7:4000) (for 1m30s)",
		"home: offline (not registered with the server)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
}
