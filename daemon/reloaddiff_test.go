package daemon

import (
	"reflect"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/warren-p2p/warren/config"
)

func TestReloadChanges(t *testing.T) {
	old := &config.Config{
		Peers:   []config.Peer{{Name: "home", PublicKey: "a"}, {Name: "friend", PublicKey: "b"}},
		Expose:  []config.Expose{{Name: "web", Target: "127.0.0.1:80", Peers: []string{"friend"}}},
		Socks:   []config.Socks{{Listen: "127.0.0.1:1080", Peer: "home"}},
		Forward: []config.Forward{{Listen: "127.0.0.1:2000", Peer: "home", Service: "x"}},
	}
	for _, tc := range []struct {
		name string
		edit func(c *config.Config)
		want logrus.Fields
	}{
		{"nothing", func(c *config.Config) {}, logrus.Fields{}},
		{"a peer granted more, another removed, a third added", func(c *config.Config) {
			c.Peers = []config.Peer{{Name: "home", PublicKey: "a", Exit: true}, {Name: "office", PublicKey: "c"}}
		}, logrus.Fields{"peers_changed": []string{"home"}, "peers_removed": []string{"friend"}, "peers_added": []string{"office"}}},
		{"an expose retargeted", func(c *config.Config) {
			c.Expose = []config.Expose{{Name: "web", Target: "127.0.0.1:8080", Peers: []string{"friend"}}}
		}, logrus.Fields{"exposes_changed": []string{"web"}}},
		{"listeners moved", func(c *config.Config) {
			c.Socks = []config.Socks{{Listen: "127.0.0.1:1081", Peer: "home"}}
			c.Forward = []config.Forward{{Listen: "127.0.0.1:2000", Peer: "home", Service: "x", Protocol: "udp"}}
		}, logrus.Fields{"socks_added": []string{"127.0.0.1:1081"}, "socks_removed": []string{"127.0.0.1:1080"},
			"forwards_added": []string{"udp 127.0.0.1:2000"}, "forwards_removed": []string{"tcp 127.0.0.1:2000"}}},
	} {
		cfg := *old
		tc.edit(&cfg)
		if got := reloadChanges(old, &cfg); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
