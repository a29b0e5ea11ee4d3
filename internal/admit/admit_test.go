package admit

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

// failingListener wraps a real listener and fails its first n Accepts
// with EMFILE, as the kernel does when the process is out of descriptors.
type failingListener struct {
	net.Listener
	fail chan struct{} // one receive per failure
}

func (l *failingListener) Accept() (net.Conn, error) {
	select {
	case <-l.fail:
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: syscall.EMFILE}
	default:
	}
	return l.Listener.Accept()
}

func quiet() logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

// TestServeSurvivesAcceptErrors: after a run of EMFILE errors, Serve still
// accepts; only the end of its context ends it.
func TestServeSurvivesAcceptErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fl := &failingListener{Listener: ln, fail: make(chan struct{}, 8)}
	for range 8 {
		fl.fail <- struct{}{}
	}
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan net.Conn, 1)
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, fl, quiet(), func(c net.Conn) { got <- c }) }()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case s := <-got:
		s.Close()
	case err := <-done:
		t.Fatalf("Serve returned %v after accept errors", err)
	case <-time.After(20 * time.Second):
		t.Fatal("no connection accepted after the errors")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v after its context ended", err)
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Error("the listener is still open after Serve returned")
	}
}

func TestServeReportsForeignClose(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	if err := Serve(context.Background(), ln, quiet(), func(net.Conn) {}); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Serve on a closed listener: %v, want net.ErrClosed", err)
	}
}

func TestGateCaps(t *testing.T) {
	g := NewGate(2, 3)
	addr := func(s string) net.Addr { a, _ := net.ResolveTCPAddr("tcp", s); return a }
	var releases []func()
	admit := func(s string, want bool) {
		t.Helper()
		r, ok := g.Admit(addr(s))
		if ok != want {
			t.Fatalf("Admit(%s) = %v, want %v (pending %d)", s, ok, want, g.Pending())
		}
		if ok {
			releases = append(releases, r)
		}
	}
	admit("10.0.0.1:1000", true)
	admit("10.0.0.1:1001", true)
	admit("10.0.0.1:1002", false) // per source
	admit("[2001:db8::1]:1", true)
	admit("10.0.0.2:1", false) // in all
	releases[0]()
	releases[0]() // twice gives back one place only
	if g.Pending() != 2 {
		t.Fatalf("pending %d after one release, want 2", g.Pending())
	}
	admit("[2001:db8::1]:2", true)
	admit("[2001:db8::2]:2", false) // the same /64, and the total
	for _, r := range releases {
		r()
	}
	if g.Pending() != 0 || len(g.bySource) != 0 {
		t.Fatalf("after every release: pending %d, %d sources", g.Pending(), len(g.bySource))
	}
}

// TestListenerClosesOverCap: a gated listener closes connections over its
// caps at once and hands out the next one that fits.
func TestListenerClosesOverCap(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gl := Listener{Listener: ln, Gate: NewGate(1, 1)}
	defer gl.Close()
	first, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	held, err := gl.Accept()
	if err != nil {
		t.Fatal(err)
	}
	over, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer over.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := gl.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	over.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := over.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a connection over the cap was not closed: %v", err)
	}
	held.Close() // gives its place back
	next, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer next.Close()
	select {
	case c := <-accepted:
		c.Close()
	case <-time.After(10 * time.Second):
		t.Fatal("no connection accepted once a place was free")
	}
}
