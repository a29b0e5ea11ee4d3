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

// TestPrintStatusPortMapping: the table says what the router mapped, or
// why nothing, and says nothing with port mapping off.
func TestPrintStatusPortMapping(t *testing.T) {
	exp := time.Date(2026, 12, 7, 18, 0, 0, 0, time.Local)
	for _, tc := range []struct {
		name string
		pm   *daemon.PortMappingStatus
		want string
	}{
		{"mapped", &daemon.PortMappingStatus{Protocol: "nat-pmp", TCP: "203.0.113.10:41000", UDP: "203.0.113.10:41001", Expires: &exp},
			"port mapping nat-pmp tcp 203.0.113.10:41000 udp 203.0.113.10:41001 expires 18:00:00\n"},
		{"refused", &daemon.PortMappingStatus{Error: "the router offers no port mapping"},
			"port mapping - (the router offers no port mapping)\n"},
		{"off", nil, ""},
	} {
		var b bytes.Buffer
		printStatus(&b, daemon.Status{PublicKey: "k", NAT: "symrand", PortMapping: tc.pm, Peers: []daemon.PeerStatus{}})
		out := b.String()
		if tc.want == "" {
			if strings.Contains(out, "port mapping") {
				t.Errorf("%s: status shows a port mapping:\n%s", tc.name, out)
			}
		} else if !strings.Contains(out, tc.want) {
			t.Errorf("%s: status lacks %q:\n%s", tc.name, tc.want, out)
		}
	}
}
