package config

import (
	"slices"
	"strings"
	"testing"
)

// TestRendezvousAddresses: a daemon names one server (address) or a
// cluster's nodes (addresses); Load fills in the other form, and each
// mistake is reported at its line.
func TestRendezvousAddresses(t *testing.T) {
	one := "address = \"rv.example.net:7777\"\n"
	c, err := Parse("w.toml", []byte(validDoc))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.Rendezvous.Addresses, []string{"rv.example.net:7777"}) {
		t.Errorf("address alone: addresses %q", c.Rendezvous.Addresses)
	}
	doc := strings.Replace(validDoc, one, "addresses = [\"a.example.net:7777\", \"b.example.net:7777\"]\n", 1)
	if c, err = Parse("w.toml", []byte(doc)); err != nil {
		t.Fatal(err)
	}
	if c.Rendezvous.Address != "a.example.net:7777" || len(c.Rendezvous.Addresses) != 2 {
		t.Errorf("addresses: address %q, addresses %q", c.Rendezvous.Address, c.Rendezvous.Addresses)
	}
	for _, tc := range []struct{ repl, want string }{
		{one + "addresses = [\"b.example.net:7777\"]\n", "w.toml:7: rendezvous.addresses: set rendezvous.address or rendezvous.addresses, not both"},
		{"addresses = []\n", "w.toml:6: rendezvous.addresses: must list at least one host:port"},
		{"addresses = [\n  \"a.example.net:7777\",\n  \"b.example.net\",\n]\n", "w.toml:8: rendezvous.addresses: \"b.example.net\" is not host:port"},
		{"addresses = [\"a:1\", \"a:1\"]\n", "w.toml:6: rendezvous.addresses: \"a:1\" is listed twice"},
		{"", "rendezvous.address: must be set"},
	} {
		_, err := Parse("w.toml", []byte(strings.Replace(validDoc, one, tc.repl, 1)))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.repl, err, tc.want)
		}
	}
}

// TestServerCluster: the clustering keys of the server's config; none
// set, the server is a single node.
func TestServerCluster(t *testing.T) {
	s, err := ParseServer("/srv/rv.toml", nil)
	if err != nil || s.Clustered() || s.Node != "" {
		t.Fatalf("no keys: clustered %v node %q, %v", s.Clustered(), s.Node, err)
	}
	s, err = ParseServer("/srv/rv.toml", []byte(`
listen = "0.0.0.0:7777"
cluster_listen = "10.0.0.1:7790"
cluster_peers = ["nats://10.0.0.2:7790", "nats://10.0.0.3:7790"]
node = "rv-1"
public = "rv1.example.net:7777"
`))
	if err != nil {
		t.Fatal(err)
	}
	if !s.Clustered() || s.Node != "rv-1" || s.Public != "rv1.example.net:7777" || len(s.ClusterPeers) != 2 {
		t.Errorf("got %+v", s)
	}
	// public defaults to a listen address with a specific IP; node to the
	// host name.
	s, err = ParseServer("/srv/rv.toml", []byte("listen = \"192.0.2.1:7777\"\nnats = [\"nats://n1:4222\"]\nnats_creds = \"n.creds\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Public != "192.0.2.1:7777" || s.Node != DefaultNodeName() || s.NATSCreds != "/srv/n.creds" {
		t.Errorf("got public %q node %q creds %q", s.Public, s.Node, s.NATSCreds)
	}
	for _, tc := range []struct{ doc, want string }{
		{"nats = [\"nats://n:4222\"]\ncluster_listen = \":7790\"\npublic = \"a:1\"", "rv.toml:1: nats: set nats (an existing NATS) or cluster_listen"},
		{"cluster_listen = \":7790\"", "rv.toml: public: must be set in a cluster"},
		{"cluster_listen = \":7790\"\npublic = \"a:1\"\nnode = \"a.b\"", "rv.toml:3: node: \"a.b\": want 1 to 64 letters"},
		{"cluster_listen = \":7790\"\npublic = \"a:1\"\ncluster_peers = [\"10.0.0.2:7790\"]", "rv.toml:3: cluster_peers: \"10.0.0.2:7790\": want nats://HOST:PORT"},
		{"cluster_peers = [\"nats://a:1\"]", "cluster_peers: only with cluster_listen"},
		{"node = \"a\"", "rv.toml:1: node: only in a cluster"},
		{"nats = [\"http://n:4222\"]\npublic = \"a:1\"", "rv.toml:1: nats: \"http://n:4222\": want nats|tls|ws|wss://HOST:PORT"},
		{"listen = \"0.0.0.0:7777\"\ncluster_listen = \"0.0.0.0:7777\"\npublic = \"a:1\"", "cluster_listen: \"0.0.0.0:7777\" is already used by listen"},
	} {
		_, err := ParseServer("rv.toml", []byte(tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseServer(%q) = %v, want %q", tc.doc, err, tc.want)
		}
	}
}
