package rendezvous

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/warren-p2p/warren/punch"
)

// relaySetup starts a server with cfg, registers two clients and has the
// server issue a punch session between them. It returns the server's
// address and the session.
func relaySetup(t *testing.T, ctx context.Context, cfg ServerConfig) (string, punch.SessionID, [2]RelayToken) {
	t.Helper()
	cfg.NATWait = 10 * time.Millisecond
	ts := startServer(t, ctx, cfg)
	punches := make(chan Punch, 2)
	var clients []*Client
	for range 2 {
		c := startClient(t, ctx, ts, ClientConfig{OnPunch: func(p Punch) { punches <- p }})
		waitRegistered(t, c)
		clients = append(clients, c)
	}
	clients[0].Connect(clients[1].cfg.Key.Public())
	var p Punch
	var tokens [2]RelayToken
	for range 2 {
		select {
		case p = <-punches:
			tokens[p.Side] = p.RelayToken
		case <-time.After(10 * time.Second):
			t.Fatal("no punch session was coordinated")
		}
	}
	id, err := punch.ParseSessionID(p.Session)
	if err != nil {
		t.Fatal(err)
	}
	return ts.addr, id, tokens
}

// openRelayPair opens both sides of a relay for session.
func openRelayPair(t *testing.T, ctx context.Context, addr string, id punch.SessionID, tokens [2]RelayToken) (net.Conn, net.Conn) {
	t.Helper()
	conns := make([]net.Conn, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for side := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				errs[side] = err
				return
			}
			conns[side], errs[side] = DialRelay(ctx, c, id, side, tokens[side])
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { conns[0].Close(); conns[1].Close() })
	return conns[0], conns[1]
}

func TestRelayCopiesBothWays(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, id, tokens := relaySetup(t, ctx, ServerConfig{Relay: true})
	a, b := openRelayPair(t, ctx, addr, id, tokens)
	payload := make([]byte, 4<<20)
	rand.Read(payload)
	go func() {
		a.Write(payload)
		a.(*net.TCPConn).CloseWrite()
	}()
	got, err := io.ReadAll(b)
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("relayed %d of %d bytes intact=%v, %v", len(got), len(payload), bytes.Equal(got, payload), err)
	}
	b.Write([]byte("back"))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(a, buf); err != nil || string(buf) != "back" {
		t.Fatalf("reverse direction: %q %v", buf, err)
	}
}

// A relay that carries bytes stays up past RelayIdle; one that falls
// silent is ended within RelayIdle and the deadlines' slack, and both
// sides see it end.
func TestRelayEndsWhenIdle(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const idle = 400 * time.Millisecond
	addr, id, tokens := relaySetup(t, ctx, ServerConfig{Relay: true, RelayIdle: idle})
	a, b := openRelayPair(t, ctx, addr, id, tokens)
	buf := make([]byte, 1)
	for range 6 { // 1.2 s of traffic, a byte every 200 ms, one way
		time.Sleep(idle / 2)
		if _, err := a.Write([]byte{'x'}); err != nil {
			t.Fatal(err)
		}
		b.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(b, buf); err != nil {
			t.Fatalf("relay ended while it carried bytes: %v", err)
		}
	}
	start := time.Now()
	for name, c := range map[string]net.Conn{"a": a, "b": b} {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if n, err := c.Read(buf); err == nil {
			t.Fatalf("%s read %d bytes from an idle relay", name, n)
		} else if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("idle relay still open for %s after %v", name, time.Since(start))
		}
	}
	if waited := time.Since(start); waited > 3*idle {
		t.Errorf("idle relay ended %v after its last byte, want about %v", waited, idle)
	}
}

func TestRelayRefusesStrangers(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, tc := range []struct {
		name  string
		relay bool
		fake  bool
	}{
		{"session the server never issued", true, true},
		{"relaying turned off", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Cleanup waits for goroutines that end with this context.
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			addr, id, tokens := relaySetup(t, ctx, ServerConfig{Relay: tc.relay})
			if tc.fake {
				id = punch.NewSessionID()
			}
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			dctx, dcancel := context.WithTimeout(ctx, 3*time.Second)
			defer dcancel()
			if _, err := DialRelay(dctx, c, id, 0, tokens[0]); err == nil {
				t.Fatal("relay accepted")
			}
		})
	}
}

// TestRelayRateLimit: at 1 MiB/s per peer, 3 MiB cannot pass in under
// about 2 s (the first second's burst is free). A lower bound on time holds
// however slow the machine is.
func TestRelayRateLimit(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const rate = 1 << 20
	addr, id, tokens := relaySetup(t, ctx, ServerConfig{Relay: true, RelayRate: rate})
	a, b := openRelayPair(t, ctx, addr, id, tokens)
	start := time.Now()
	go func() {
		a.Write(make([]byte, 3*rate))
		a.(*net.TCPConn).CloseWrite()
	}()
	n, err := io.Copy(io.Discard, b)
	if err != nil || n != 3*rate {
		t.Fatalf("relayed %d bytes, %v", n, err)
	}
	if took := time.Since(start); took < 1900*time.Millisecond {
		t.Fatalf("3 MiB at 1 MiB/s took %v", took)
	}
}
