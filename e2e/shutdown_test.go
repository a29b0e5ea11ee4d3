package e2e

import (
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/warren-p2p/warren/daemon"
)

// TestGracefulShutdown: on SIGTERM the daemon stops accepting at once,
// lets an open stream finish, and exits 0 as soon as it has.
func TestGracefulShutdown(t *testing.T) {
	w := newWorld(t, localhost{}, hostPort("127.0.0.1", freePort(t, localhost{})))
	p, fwd := echoOver(t, w, localhost{}, localhost{}, "")
	laptop := p.client
	open, err := net.Dial("tcp", fwd)
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	if err := echoOnce(open); err != nil {
		t.Fatal(err)
	}

	laptop.cmd.Process.Signal(syscall.SIGTERM)
	deadline := time.Now().Add(2 * time.Second)
	for {
		c, err := net.Dial("tcp", fwd)
		if err != nil {
			break // the listener is closed
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("the forward still accepts connections after SIGTERM")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := echoOnce(open); err != nil {
		t.Fatalf("the open stream broke during the grace period: %v", err)
	}
	closed := time.Now()
	open.Close()
	select {
	case <-laptop.done:
	case <-time.After(4 * time.Second):
		t.Fatal("the daemon did not exit once its last stream closed")
	}
	if laptop.err != nil {
		t.Fatalf("exit: %v", laptop.err)
	}
	t.Logf("exited %v after the last stream closed", time.Since(closed).Round(time.Millisecond))
}

// TestShutdownTellsThePeer: a daemon that stops tells its peer, over a TCP
// link and over a UDP link (whose end of stream travels in the link's own
// packets, which the process must stay to send): the peer marks the link
// down at once, not when its keepalive (here a minute) finds it dead.
func TestShutdownTellsThePeer(t *testing.T) {
	for _, transport := range []string{"tcp", "udp"} {
		t.Run(transport, func(t *testing.T) {
			w := newWorld(t, localhost{}, hostPort("127.0.0.1", freePort(t, localhost{})))
			keys := map[string]string{"laptop": w.keygen("laptop"), "office": w.keygen("office")}
			echo := serveEcho(t, localhost{})
			fwd := hostPort("127.0.0.1", freePort(t, localhost{}))
			slow := fmt.Sprintf("[link]\ntransports = [%q]\nkeepalive = \"1m\"\n\n[[peers]]", transport)
			p := startPair(t, w, "rdp", localhost{}, localhost{}, "laptop", "office", keys,
				[]string{"127.0.0.1:13389", fwd, "[[peers]]", slow},
				[]string{"127.0.0.1:3389", "127.0.0.1:" + echo, "[[peers]]", slow})
			if p.link.Path != "direct-"+transport {
				t.Fatalf("path %q, want direct-%s", p.link.Path, transport)
			}
			p.client.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.client.done:
			case <-time.After(10 * time.Second):
				t.Fatal("laptop did not exit within 10s of SIGTERM")
			}
			exited := time.Now()
			waitStatus(t, localhost{}, p.serverAdmin, 10*time.Second, "laptop's link down", func(st daemon.Status) bool {
				return statusRow(st, "laptop").State != daemon.StateConnected
			})
			t.Logf("office saw the link down %v after laptop exited", time.Since(exited).Round(time.Millisecond))
		})
	}
}
