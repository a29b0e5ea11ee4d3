package punch

import (
	"context"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"
)

type side struct {
	acc  *Acceptor
	port int
}

func newSide(t *testing.T, ctx context.Context) side {
	t.Helper()
	ln, err := Listen(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := NewAcceptor(ln, &Config{HelloTimeout: time.Second})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); a.Serve(ctx) }()
	t.Cleanup(wg.Wait)
	return side{acc: a, port: a.Port()}
}

func loopback(port int) []netip.AddrPort {
	return []netip.AddrPort{netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))}
}

// punchSide runs one side of a punch and returns the first connection.
func punchSide(ctx context.Context, s side, id SessionID, cands []netip.AddrPort) <-chan net.Conn {
	out := make(chan net.Conn)
	first := make(chan net.Conn, 1)
	unregister := s.acc.Register(ctx, id, out)
	go func() {
		defer unregister()
		go TCP(ctx, nil, s.port, id, cands, out)
		select {
		case c := <-out:
			first <- c
		case <-ctx.Done():
			close(first)
		}
	}()
	return first
}

func TestTCPPunchLoopback(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	a, b := newSide(t, ctx), newSide(t, ctx)
	id := NewSessionID()
	ca := punchSide(ctx, a, id, loopback(b.port))
	cb := punchSide(ctx, b, id, loopback(a.port))
	x, y := <-ca, <-cb
	if x == nil || y == nil {
		t.Fatal("punch produced no connection")
	}
	defer x.Close()
	defer y.Close()
	// Both ends share the port they registered with the rendezvous server.
	if PortOf(x.LocalAddr()) != a.port || PortOf(y.LocalAddr()) != b.port {
		t.Fatalf("local ports %v %v, want %d %d", x.LocalAddr(), y.LocalAddr(), a.port, b.port)
	}
	go x.Write([]byte("ping"))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(y, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("read %q %v", buf, err)
	}
}

func TestAcceptorDropsStrangers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	a := newSide(t, ctx)
	id := NewSessionID()
	out := make(chan net.Conn)
	defer a.acc.Register(ctx, id, out)()
	for _, payload := range []string{
		"GET / HTTP/1.1\r\n\r\n",              // a scanner
		helloMagic + string(make([]byte, 16)), // a session nobody registered
	} {
		c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(a.port)))
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte(payload))
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if n, err := c.Read(make([]byte, 64)); err == nil {
			t.Errorf("stranger %q got %d bytes back", payload, n)
		}
		c.Close()
	}
	select {
	case c := <-out:
		t.Fatalf("stranger delivered to session: %v", c.RemoteAddr())
	default:
	}
}
