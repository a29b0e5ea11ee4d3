package forward_test

import (
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/warren-p2p/warren/config"
	"github.com/warren-p2p/warren/forward"
)

// TestResetsPassThrough: a connection that ends with a reset on one side
// ends with a reset on the other, through a forward and through SOCKS5,
// whichever side resets: a transfer cut off mid-way must never reach the
// far application as a clean end of stream, which it would take for the
// whole.
func TestResetsPassThrough(t *testing.T) {
	const part = "part of a transfer"
	for _, via := range []string{"forward", "socks"} {
		for _, resetter := range []string{"client", "target"} {
			t.Run(via+"/"+resetter+" resets", func(t *testing.T) {
				targetRead := make(chan struct{})
				targetEnd := make(chan error, 1)
				target := serveTCP(t, func(c *net.TCPConn) {
					c.SetDeadline(time.Now().Add(10 * time.Second))
					if _, err := io.ReadFull(c, make([]byte, len(part))); err != nil {
						targetEnd <- err
						return
					}
					close(targetRead)
					if resetter == "target" {
						// A reply, then at once a reset: the reply must
						// still arrive, and then the reset.
						c.Write([]byte(part))
						c.SetLinger(0)
						c.Close()
						return
					}
					_, err := io.Copy(io.Discard, c)
					targetEnd <- err
				})
				e := newExit(t, []config.Peer{{Name: "alice", Exit: true}}, nil, nil, forward.Config{})
				var c net.Conn
				if via == "socks" {
					l := startListeners(t, e, []config.Socks{{Listen: "127.0.0.1:0", Peer: "exit"}}, nil, forward.Config{})
					c = dialTCP(t, l.SocksAddrs()[0])
					if code := socksConnect(t, c, target); code != 0 {
						t.Fatalf("reply %d", code)
					}
				} else {
					l := startListeners(t, e, nil, []config.Forward{{Listen: "127.0.0.1:0", Peer: "exit", Target: target}}, forward.Config{})
					c = dialTCP(t, l.ForwardAddrs()[0])
				}
				if _, err := c.Write([]byte(part)); err != nil {
					t.Fatal(err)
				}
				select {
				case <-targetRead:
				case err := <-targetEnd:
					t.Fatalf("target's read: %v", err)
				case <-time.After(10 * time.Second):
					t.Fatal("the target got nothing")
				}
				if resetter == "client" {
					c.(*net.TCPConn).SetLinger(0)
					c.Close()
					if err := <-targetEnd; !errors.Is(err, syscall.ECONNRESET) {
						t.Fatalf("the target's read ended with %v, want a reset", err)
					}
					return
				}
				got, err := io.ReadAll(c)
				if string(got) != part || !errors.Is(err, syscall.ECONNRESET) {
					t.Fatalf("the client read %q, %v; want the reply, then a reset", got, err)
				}
			})
		}
	}
}
