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

	"github.com/warren-p2p/warren/daemon"
	"github.com/warren-p2p/warren/natlab"
)

// TestRelayFallbackAndUpgrade: with every direct packet between two cone
// NATs dropped on the lab's internet, the peers link through the
// rendezvous server's relay; a stream opened then keeps flowing while the
// block is lifted, the link upgrades to a direct path for new streams, and
// the relay closes once that stream ends.
func TestRelayFallbackAndUpgrade(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rc := relayedCones(ctx, t)
	lab, a, w, p, fwd := rc.lab, rc.a, rc.w, rc.pair, rc.fwd

	long := startStream(ctx, t, a.Host(), fwd) // runs across the upgrade
	if err := lab.Mend(ctx); err != nil {
		t.Fatal(err)
	}
	st := waitStatus(t, a.Host(), p.clientAdmin, 30*time.Second, "upgrade from the relay", func(st daemon.Status) bool {
		return len(st.Peers) == 1 && strings.HasPrefix(st.Peers[0].Path, "direct-")
	})
	t.Logf("upgraded to %s", st.Peers[0].Path)
	if st.Peers[0].Streams != 1 {
		t.Errorf("status shows %d streams; the one open stream, on the draining relay, must count", st.Peers[0].Streams)
	}

	// New streams go direct; the old one keeps flowing over the relay.
	before := long.rounds.Load()
	if err := oneEcho(ctx, a.Host(), fwd); err != nil {
		t.Fatalf("new stream after the upgrade: %v", err)
	}
	long.finish(t, before, "the upgrade")
	// With its last stream gone, the relay drains and closes.
	w.rv.waitOutput(t, regexp.MustCompile(`msg="relay closed"`), 10*time.Second)
}

// cutCones is two cone sites, a and b, whose direct packets the lab's
// internet drops, with laptop at a and office at b linked through the
// relay and an echo forward fwd at a.
type cutCones struct {
	lab  *natlab.Lab
	a, b *natlab.Site
	w    *world
	pair
	fwd string
}

func relayedCones(ctx context.Context, t *testing.T) cutCones {
	t.Helper()
	lab, a, b := twoCones(t)
	if err := lab.Cut(ctx, a.PublicAddr(), b.PublicAddr()); err != nil {
		t.Fatal(err)
	}
	w := labWorld(t, lab)
	p, fwd := echoOver(t, w, a.Host(), b.Host(), "")
	if p.link.Path != "relay" {
		t.Fatalf("path %q with direct traffic blocked, want relay", p.link.Path)
	}
	t.Logf("relayed link up %.0f ms after the connect request", p.link.SetupMs)
	return cutCones{lab: lab, a: a, b: b, w: w, pair: p, fwd: fwd}
}

// serveEcho runs a TCP echo service on m's loopback and returns its port.
func serveEcho(t testing.TB, m machine) string {
	return serveTCP(t, m, func(c net.Conn) { io.Copy(c, c) })
}

// stream is a stream through a forward that echoes a random KiB every
// 20ms (echoLoop) until finish.
type stream struct {
	c      net.Conn
	rounds atomic.Int64 // echoes checked so far
	stop   chan struct{}
	err    chan error
}

// startStream opens a stream from m through the forward fwd and starts
// echoing on it.
func startStream(ctx context.Context, t testing.TB, m machine, fwd string) *stream {
	t.Helper()
	return startStreamEvery(ctx, t, m, fwd, 20*time.Millisecond)
}

// startStreamEvery is startStream echoing every interval: a test with
// many streams open at once spaces them out.
func startStreamEvery(ctx context.Context, t testing.TB, m machine, fwd string, interval time.Duration) *stream {
	t.Helper()
	c, err := m.DialContext(ctx, &net.Dialer{}, "tcp", fwd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s := &stream{c: c, stop: make(chan struct{}), err: make(chan error, 1)}
	go func() { s.err <- echoLoop(c, interval, 10*time.Second, s.stop, &s.rounds) }()
	return s
}

// finish lets the stream echo for one more second, then stops and closes
// it. It fails the test unless every echo came back intact and the stream
// got past round before; what names the change it ran across.
func (s *stream) finish(t testing.TB, before int64, what string) {
	t.Helper()
	time.Sleep(time.Second)
	s.check(t, before, what)
}

// check is finish without the last second: for several streams that
// echoed through that second together.
func (s *stream) check(t testing.TB, before int64, what string) {
	t.Helper()
	close(s.stop)
	err := <-s.err
	s.c.Close()
	if err != nil {
		t.Fatalf("the open stream broke across %s: %v", what, err)
	}
	if s.rounds.Load() <= before {
		t.Fatalf("the open stream stopped moving after %s", what)
	}
	t.Logf("the open stream echoed %d rounds across %s, none lost", s.rounds.Load(), what)
}

// echoLoop sends a random KiB and checks its echo, every interval, until
// stop, counting rounds. Each round must finish within deadline. An echo
// that differs is errCorrupt; a broken stream returns its error.
func echoLoop(c net.Conn, interval, deadline time.Duration, stop <-chan struct{}, rounds *atomic.Int64) error {
	buf, got := make([]byte, 1024), make([]byte, 1024)
	for {
		select {
		case <-stop:
			return nil
		case <-time.After(interval):
		}
		for i := range buf {
			buf[i] = byte(rand.IntN(256))
		}
		c.SetDeadline(time.Now().Add(deadline))
		if _, err := c.Write(buf); err != nil {
			return fmt.Errorf("round %d: write: %w", rounds.Load(), err)
		}
		if _, err := io.ReadFull(c, got); err != nil {
			return fmt.Errorf("round %d: read: %w", rounds.Load(), err)
		}
		if !bytes.Equal(buf, got) {
			return fmt.Errorf("round %d: echo differs: %w", rounds.Load(), errCorrupt)
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
