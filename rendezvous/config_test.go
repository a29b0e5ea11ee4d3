package rendezvous

import (
	"context"
	"net/netip"
	"testing"

	"github.com/warren-p2p/warren/identity"
)

// TestConfigsRefuseNegatives: zero means the default, a negative value is
// a mistake (internal/conf's rule), not a request for the default.
func TestConfigsRefuseNegatives(t *testing.T) {
	k, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	base := ClientConfig{Address: "192.0.2.1:7777", ServerKey: k.Public(), Key: k, Log: quietLog()}
	c, err := NewClient(base)
	if err != nil {
		t.Fatal(err)
	}
	if c.cfg.PingInterval != DefaultPingInterval || c.cfg.MaxBackoff != DefaultMaxBackoff {
		t.Errorf("defaults not filled in: %+v", c.cfg)
	}
	neg := base
	neg.PingInterval = -1
	if _, err := NewClient(neg); err == nil {
		t.Error("NewClient took a negative PingInterval")
	}
	_, _, err = Discover(context.Background(), DiscoverConfig{Servers: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:9")}, Series: -1})
	if err == nil {
		t.Error("Discover took a negative Series")
	}
}
