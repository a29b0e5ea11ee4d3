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

// TestPrintStatusRestrictedNetwork: a restricted network and the route to
// the server get a line of their own, which a direct route does not.
func TestPrintStatusRestrictedNetwork(t *testing.T) {
	st := daemon.Status{PublicKey: "k", Rendezvous: "registered", NAT: "unknown",
		RendezvousRoute: "fallback 203.0.113.2:443", Network: "no UDP here; TCP 443 only",
		Peers: []daemon.PeerStatus{{Name: "home", State: daemon.StateConnected, Path: "relay", Why: "no UDP here; TCP 443 only"}}}
	var b bytes.Buffer
	printStatus(&b, st)
	for _, want := range []string{"network no UDP here; TCP 443 only  rendezvous via fallback 203.0.113.2:443",
		"home: relayed because no UDP here; TCP 443 only"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, b.String())
		}
	}
	st.RendezvousRoute, st.Network = "direct 203.0.113.2:7777", ""
	b.Reset()
	printStatus(&b, st)
	if strings.Contains(b.String(), "network ") {
		t.Errorf("a direct route got a network line:\n%s", b.String())
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

// TestPrintStatusRemembered: what the path memory said of the last
// session on these networks gets a line.
func TestPrintStatusRemembered(t *testing.T) {
	at := time.Now().Add(-2 * time.Hour)
	st := daemon.Status{PublicKey: "k", Rendezvous: "registered", NAT: "cone",
		Peers: []daemon.PeerStatus{{Name: "home", State: daemon.StateConnected, Path: "relay",
			Why:        "the relay went first: the last session between these networks ended on it",
			Remembered: &daemon.RememberedPath{Path: "relay", SetupMs: 3204.4, At: at}}}}
	var b bytes.Buffer
	printStatus(&b, st)
	if want := "home: last time on these networks: relay in 3.204s, 2h0m0s ago"; !strings.Contains(b.String(), want) {
		t.Errorf("status lacks %q:\n%s", want, b.String())
	}
}

// TestPrintStatusNamesTheNode: a daemon registered with a cluster's node
// says which; one registered with a server alone says nothing more.
func TestPrintStatusNamesTheNode(t *testing.T) {
	st := daemon.Status{PublicKey: "k", Rendezvous: "registered", NAT: "cone", RendezvousNode: "rv-b",
		RendezvousRoute: "direct 203.0.113.11:7777", Peers: []daemon.PeerStatus{}}
	var b bytes.Buffer
	printStatus(&b, st)
	if want := "rendezvous registered with node rv-b  observed"; !strings.Contains(b.String(), want) {
		t.Errorf("status lacks %q:\n%s", want, b.String())
	}
	st.RendezvousNode = ""
	b.Reset()
	printStatus(&b, st)
	if want := "rendezvous registered  observed"; !strings.Contains(b.String(), want) {
		t.Errorf("status lacks %q:\n%s", want, b.String())
	}
}
