package daemon

import (
	"errors"
	"strings"
	"testing"
)

// TestLoopbackServerMapsNothing: a daemon whose rendezvous server is on
// this host (so every peer is) asks the router for nothing.
func TestLoopbackServerMapsNothing(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:7777": true, "[::1]:7777": true, "localhost:7777": true,
		"203.0.113.2:7777": false, "rv.example.net:7777": false, "[2001:db8::1]:7777": false, "bad": false,
	} {
		if got := loopbackServer(addr); got != want {
			t.Errorf("loopbackServer(%q) = %v, want %v", addr, got, want)
		}
	}
}

// TestPortMapsStatus: status is absent with port mapping off, and says
// why there is no mapping before the first attempt and after a failed one.
func TestPortMapsStatus(t *testing.T) {
	var off *portMaps
	if off.status() != nil {
		t.Error("status with port mapping off is not nil")
	}
	pm := newPortMaps()
	if st := pm.status(); st.Error != "not mapped yet" || st.TCP != "" {
		t.Errorf("before the first attempt: %+v", st)
	}
	pm.set(nil, nil, errors.New("tcp: the router offers no port mapping"))
	if st := pm.status(); !strings.Contains(st.Error, "no port mapping") || st.Protocol != "" {
		t.Errorf("after a failed attempt: %+v", st)
	}
	if tcp, udp := pm.external(); tcp.IsValid() || udp.IsValid() || pm.udpPort() != 0 {
		t.Error("an endpoint or a port without a mapping")
	}
}
