package punch

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// emfileListener fails its first Accepts with EMFILE, as the kernel does
// when the daemon is out of file descriptors, then accepts for real.
type emfileListener struct {
	net.Listener
	mu    sync.Mutex
	fails int
}

func (l *emfileListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	fail := l.fails > 0
	l.fails--
	l.mu.Unlock()
	if fail {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: syscall.EMFILE}
	}
	return l.Listener.Accept()
}

// TestAcceptorSurvivesEMFILE is issue 15's finding 8 in small: one accept
// error used to close the shared port for good. The acceptor must back
// off, go on, and still deliver a punch connection afterwards.
func TestAcceptorSurvivesEMFILE(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ln, err := Listen(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := NewAcceptor(&emfileListener{Listener: ln, fails: 5}, nil)
	served := make(chan error, 1)
	go func() { served <- a.Serve(ctx) }()
	b := newSide(t, ctx)
	id := NewSessionID()
	first := punchSide(ctx, side{acc: a, port: a.Port()}, id, loopback(b.port))
	other := punchSide(ctx, b, id, loopback(a.Port()))
	select {
	case err := <-served:
		t.Fatalf("the acceptor stopped after accept errors: %v", err)
	case x := <-first:
		if x == nil {
			t.Fatal("no punch connection after the accept errors")
		}
		x.Close()
	}
	if y := <-other; y != nil {
		y.Close()
	}
	if _, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(a.Port()))); err != nil {
		t.Fatalf("the shared port no longer accepts: %v", err)
	}
	cancel()
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
}

// TestAcceptorCapsSilentConnections: connections that never send a hello
// hold the shared port's places only up to the per-source cap; the rest
// are closed at once instead of each holding a file descriptor and a
// goroutine for the hello timeout, and another source still gets through.
func TestAcceptorCapsSilentConnections(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ln, err := Listen(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	const perSource, flood = 4, 40
	a := NewAcceptor(ln, &Config{HelloTimeout: time.Minute, MaxPendingPerSource: perSource, MaxPending: 64})
	go a.Serve(ctx)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(a.Port()))
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range flood {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	closed := 0
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(time.Second))
		if _, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
			closed++
		}
	}
	if closed < flood-perSource {
		t.Fatalf("%d of %d silent connections from one source closed at once, want at least %d", closed, flood, flood-perSource)
	}

	// Another source's punch still gets through.
	id := NewSessionID()
	out := make(chan net.Conn, 1)
	defer a.Register(ctx, id, out)()
	d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.2:0"))}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := exchangeHello(ctx, c, id, 10*time.Second, true); err != nil {
		t.Fatalf("hello from another source: %v", err)
	}
	select {
	case s := <-out:
		s.Close()
	case <-ctx.Done():
		t.Fatal("the other source's connection never reached its session")
	}
}
