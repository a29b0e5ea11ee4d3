package e2e

import (
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/proxy"
)

// TestResetsCrossTheLink: a connection reset on one side of a link is
// reset on the other, through a [[forward]] and through SOCKS5, whichever
// side resets, with real daemons and a real link between them: a transfer
// cut off mid-way must not reach the far application as a clean end of
// stream, which it would take for the whole.
func TestResetsCrossTheLink(t *testing.T) {
	const part = "part of a transfer"
	w := newWorld(t, localhost{}, hostPort("127.0.0.1", freePort(t, localhost{})))
	keys := map[string]string{"laptop": w.keygen("laptop"), "home": w.keygen("home")}

	// The target resets after its first read when the client asked for it
	// with a first byte of 'R'; otherwise it reports how its read ended.
	targetEnds := make(chan error, 1)
	target := "127.0.0.1:" + serveTCP(t, localhost{}, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, len(part))
		if _, err := io.ReadFull(c, buf); err != nil {
			targetEnds <- err
			return
		}
		if buf[0] == 'R' {
			// The echo, then at once a reset: the echo must still
			// arrive, all of it, and then the reset.
			c.Write(buf)
			c.(*net.TCPConn).SetLinger(0)
			return // the deferred Close resets
		}
		c.Write(buf)
		_, err := io.Copy(io.Discard, c)
		targetEnds <- err
	})
	fwd := hostPort("127.0.0.1", freePort(t, localhost{}))
	socks := hostPort("127.0.0.1", freePort(t, localhost{}))
	p := startPair(t, w, "browser-exit", localhost{}, localhost{}, "laptop", "home", keys,
		[]string{"127.0.0.1:1080", socks, "[[socks]]", "[[forward]]\nlisten = \"" + fwd + "\"\npeer = \"home\"\ntarget = \"" + target + "\"\n\n[[socks]]"}, nil)
	t.Logf("link: %s", p.link.Path)

	for _, via := range []string{"forward", "socks"} {
		for _, resetter := range []string{"client", "target"} {
			t.Run(via+"/"+resetter+" resets", func(t *testing.T) {
				var raw net.Conn // the client's own TCP connection
				dial := dialerFunc(func(network, addr string) (net.Conn, error) {
					c, err := net.DialTimeout(network, addr, 5*time.Second)
					raw = c
					return c, err
				})
				var c net.Conn
				var err error
				if via == "socks" {
					d, derr := proxy.SOCKS5("tcp", socks, nil, dial)
					if derr != nil {
						t.Fatal(derr)
					}
					c, err = d.Dial("tcp", target)
				} else {
					c, err = dial("tcp", fwd)
				}
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				msg := []byte(part)
				if resetter == "target" {
					msg[0] = 'R'
				}
				if _, err := c.Write(msg); err != nil {
					t.Fatal(err)
				}
				if _, err := io.ReadFull(c, make([]byte, len(part))); err != nil {
					t.Fatalf("echo: %v", err)
				}
				if resetter == "client" {
					raw.(*net.TCPConn).SetLinger(0)
					c.Close()
					select {
					case err := <-targetEnds:
						if !errors.Is(err, syscall.ECONNRESET) {
							t.Fatalf("the target's read ended with %v, want a reset", err)
						}
					case <-time.After(10 * time.Second):
						t.Fatal("the target's read did not end")
					}
					return
				}
				if _, err := io.ReadAll(c); !errors.Is(err, syscall.ECONNRESET) {
					t.Fatalf("the client's read ended with %v, want a reset", err)
				}
			})
		}
	}
}

// dialerFunc is a proxy.Dialer.
type dialerFunc func(network, addr string) (net.Conn, error)

func (f dialerFunc) Dial(network, addr string) (net.Conn, error) { return f(network, addr) }
