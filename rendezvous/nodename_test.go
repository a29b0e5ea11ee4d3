package rendezvous

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/warren-p2p/warren/identity"
)

// TestRegisteredNamesTheNode: a node of a cluster tells each peer its
// name when it registers, which the client reports (and a peer that moves
// after its node died reports the new one); a server alone tells none.
func TestRegisteredNamesTheNode(t *testing.T) {
	nodes := startCluster(t, 2, ServerConfig{})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	peers := startPeers(t, ctx, nodes, 2)
	for i, p := range peers {
		if got := p.c.Node(); got != nodes[i].name {
			t.Fatalf("peer registered with %s says node %q, want %q", p.c.Server(), got, nodes[i].name)
		}
	}
	killed := time.Now()
	nodes[1].kill()
	waitMoved(t, peers, nodes[1], killed)
	if got := peers[1].c.Node(); got != nodes[0].name {
		t.Fatalf("peer moved to %s says node %q, want %q", peers[1].c.Server(), got, nodes[0].name)
	}

	a, _ := twoClients(t)
	if got := a.c.Node(); got != "" {
		t.Fatalf("a server alone named node %q", got)
	}
}

// TestRegisteredWithBadNodeName: a server whose registered answer names
// its node with what no node may be called (it would go into logs and the
// status page) is a protocol error: the client does not count itself
// registered.
func TestRegisteredWithBadNodeName(t *testing.T) {
	key := mustKey(t)
	cert, err := identity.Certificate(key)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	conf := identity.TLSConfig(cert, func(identity.PublicKey) error { return nil })
	go func() {
		for {
			raw, err := ln.Accept()
			if err != nil {
				return
			}
			tc := tls.Server(raw, conf)
			if _, err := ReadMessage(tc); err == nil {
				WriteMessage(tc, &Message{Type: TypeRegistered, Observed: "192.0.2.1:4000", Node: "rv-a\n\x1b[31mfake log line"})
			}
			// Held open: the client must end it itself.
			go func() {
				io.Copy(io.Discard, tc)
				tc.Close()
			}()
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	c := startClient(t, ctx, testServer{addr: ln.Addr().String()}, ClientConfig{ServerKey: key.Public()})
	t.Cleanup(cancel) // before startClient's cleanup, which waits for ctx
	deadline := time.Now().Add(5 * time.Second)
	for !errors.Is(errOf(c), ErrProtocol) {
		if time.Now().After(deadline) {
			t.Fatalf("client error %v, want a protocol error", errOf(c))
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case <-c.Registered():
		t.Fatal("client registered with a server that named its node badly")
	default:
	}
}
