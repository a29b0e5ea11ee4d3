package e2e

import (
	"net"
	"syscall"
	"testing"
	"time"
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
