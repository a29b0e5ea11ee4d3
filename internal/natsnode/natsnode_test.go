package natsnode

import (
	"testing"
	"time"
)

// TestRouteSecret: nodes with the same route secret form a cluster and
// carry each other's messages; a node with another secret is not let in.
func TestRouteSecret(t *testing.T) {
	a, err := Embed(EmbedConfig{Node: "a", Listen: "127.0.0.1:0", User: "warren", Password: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	seed := []string{"nats://" + a.ClusterAddr()}
	b, err := Embed(EmbedConfig{Node: "b", Listen: "127.0.0.1:0", Peers: seed, User: "warren", Password: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	stranger, err := Embed(EmbedConfig{Node: "c", Listen: "127.0.0.1:0", Peers: seed, User: "warren", Password: "guess"})
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	deadline := time.Now().Add(5 * time.Second)
	for b.Routes() < 1 {
		if time.Now().After(deadline) {
			t.Fatal("nodes with one secret did not route")
		}
		time.Sleep(10 * time.Millisecond)
	}
	sub, err := a.Conn().SubscribeSync("x")
	if err != nil {
		t.Fatal(err)
	}
	a.Conn().Flush()
	time.Sleep(100 * time.Millisecond) // the subscription crosses the route
	b.Conn().Publish("x", []byte("hi"))
	stranger.Conn().Publish("x", []byte("intruder"))
	if m, err := sub.NextMsg(2 * time.Second); err != nil || string(m.Data) != "hi" {
		t.Fatalf("got %v, %v", m, err)
	}
	if m, err := sub.NextMsg(300 * time.Millisecond); err == nil {
		t.Fatalf("a node with the wrong secret got %q through", m.Data)
	}
	if n := stranger.Routes(); n != 0 {
		t.Errorf("the stranger has %d routes", n)
	}
}
