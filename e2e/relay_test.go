package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestRelayFallbackAndUpgrade: with every direct packet between two cone
// NATs dropped on the lab's internet, the peers link through the
// rendezvous server's relay; a stream opened then keeps flowing while the
// block is lifted, the link upgrades to a direct path for new streams, and
// the relay closes once that stream ends.
func TestRelayFallbackAndUpgrade(t *testing.T) {
	lab, a, b := twoCones(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	inet := lab.Prefix() + "-inet"
	nft := func(args ...string) {
		t.Helper()
		cmd := append([]string{"netns", "exec", inet, "nft"}, args...)
		if out, err := runCmd(ctx, "ip", cmd...); err != nil {
			t.Fatalf("nft %v: %v: %s", args, err, out)
		}
	}
	pa, pb := a.PublicAddr().String(), b.PublicAddr().String()
	nft("add", "rule", "bridge", "natlab", "loss", "ip", "saddr", pa, "ip", "daddr", pb, "drop")
	nft("add", "rule", "bridge", "natlab", "loss", "ip", "saddr", pb, "ip", "daddr", pa, "drop")

	w := labWorld(t, lab)
	keys := map[string]string{"laptop": w.keygen("laptop"), "office": w.keygen("office")}
	echo := serveEcho(t, b.Host())
	fwd := hostPort("127.0.0.1", freePort(t, a.Host()))
	p := startPair(t, w, "rdp", a.Host(), b.Host(), "laptop", "office", keys,
		[]string{"127.0.0.1:13389", fwd}, []string{"127.0.0.1:3389", "127.0.0.1:" + echo})
	if p.link.Path != "relay" {
		t.Fatalf("path %q with direct traffic blocked, want relay", p.link.Path)
	}
	t.Logf("relayed link up in %.0f ms", p.link.SetupMs)

	// A stream that runs across the upgrade.
	long, err := a.Host().DialContext(ctx, &net.Dialer{}, "tcp", fwd)
	if err != nil {
		t.Fatal(err)
	}
	var rounds atomic.Int64
	streamErr := make(chan error, 1)
	stop := make(chan struct{})
	go func() { streamErr <- echoLoop(long, stop, &rounds) }()

	nft("flush", "chain", "bridge", "natlab", "loss")
	deadline := time.Now().Add(30 * time.Second)
	var path string
	for time.Now().Before(deadline) {
		st, err := status(ctx, a.Host(), p.clientAdmin)
		if err == nil && len(st.Peers) == 1 {
			path = st.Peers[0].Path
			if strings.HasPrefix(path, "direct-") {
				break
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.HasPrefix(path, "direct-") {
		t.Fatalf("link did not upgrade from the relay (path %q)", path)
	}
	t.Logf("upgraded to %s", path)

	// New streams go direct; the old one keeps flowing over the relay.
	before := rounds.Load()
	if err := oneEcho(ctx, a.Host(), fwd); err != nil {
		t.Fatalf("new stream after the upgrade: %v", err)
	}
	time.Sleep(time.Second)
	close(stop)
	if err := <-streamErr; err != nil {
		t.Fatalf("the stream opened on the relay broke: %v", err)
	}
	if rounds.Load() <= before {
		t.Fatal("the stream opened on the relay stopped moving after the upgrade")
	}
	long.Close()
	t.Logf("long stream: %d echo rounds, none lost", rounds.Load())
	// With its last stream gone, the relay drains and closes.
	w.rv.waitOutput(t, regexp.MustCompile(`msg="relay closed"`), 10*time.Second)
}

func runCmd(ctx context.Context, name string, args ...string) ([]byte, error) {
	return localhost{}.Command(ctx, name, args...).CombinedOutput()
}

// serveEcho runs a TCP echo service on m's loopback and returns its port.
func serveEcho(t *testing.T, m machine) string {
	return serveTCP(t, m, func(c net.Conn) { io.Copy(c, c) })
}

// echoLoop sends a random KiB and checks its echo, every 20ms, until stop.
func echoLoop(c net.Conn, stop <-chan struct{}, rounds *atomic.Int64) error {
	buf, got := make([]byte, 1024), make([]byte, 1024)
	for {
		select {
		case <-stop:
			return nil
		case <-time.After(20 * time.Millisecond):
		}
		for i := range buf {
			buf[i] = byte(rand.IntN(256))
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write(buf); err != nil {
			return fmt.Errorf("round %d: write: %w", rounds.Load(), err)
		}
		if _, err := io.ReadFull(c, got); err != nil {
			return fmt.Errorf("round %d: read: %w", rounds.Load(), err)
		}
		if !bytes.Equal(buf, got) {
			return fmt.Errorf("round %d: echo differs", rounds.Load())
		}
		rounds.Add(1)
	}
}

// oneEcho opens a stream through the forward and checks one echo.
func oneEcho(ctx context.Context, m machine, addr string) error {
	c, err := m.DialContext(ctx, &net.Dialer{}, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	return echoOnce(c)
}

// echoOnce writes a message on c and checks that it comes back intact.
func echoOnce(c net.Conn) error {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	msg := []byte("echo me")
	if _, err := c.Write(msg); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if !bytes.Equal(got, msg) {
		return fmt.Errorf("echo differs: %q", got)
	}
	return nil
}
