package forward

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/warren-p2p/warren/config"
	"github.com/warren-p2p/warren/internal/benchtest"
	"github.com/warren-p2p/warren/internal/bufcopy"
)

// TestJoinResetsOnFailure: when one side of a join fails (here reset by
// its peer; a link stream lost with its link fails alike), the other
// side's client reads an error, not an EOF that would pass a cut-off
// transfer for a whole one; a side that ends cleanly is finished cleanly.
func TestJoinResetsOnFailure(t *testing.T) {
	for _, tc := range []struct {
		name    string
		failing bool
	}{
		{"failed", true},
		{"finished", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			aNear, aFar := benchtest.TCPPair(t) // aFar is the application
			bNear, bFar := benchtest.TCPPair(t) // bFar is what fails or finishes
			var cp bufcopy.Copier
			joined := make(chan struct{})
			go func() { defer close(joined); join(&cp, aNear, bNear) }()
			if _, err := bFar.Write([]byte("part of a transfer")); err != nil {
				t.Fatal(err)
			}
			if tc.failing {
				bFar.SetLinger(0)
				bFar.Close()
			} else {
				bFar.CloseWrite()
				aFar.CloseWrite()
			}
			aFar.SetReadDeadline(time.Now().Add(5 * time.Second))
			got, err := io.ReadAll(aFar)
			if string(got) != "part of a transfer" {
				t.Errorf("application read %q", got)
			}
			if tc.failing && !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("application's read ended with %v, want a reset", err)
			}
			if !tc.failing && err != nil {
				t.Errorf("application's read ended with %v, want EOF", err)
			}
			<-joined
		})
	}
}

// The benchmarks below carry bytes through a whole forward, listener to
// exit to service, with loopback TCP connections standing in for link
// streams, as forwardtest.Opener makes them (this package's own tests
// cannot import forwardtest, which imports forward). They measure the
// copier, not a link: each direction is copied twice, at the listener and
// at the exit, as in a daemon pair.

// tcpOpener opens each stream as a fresh loopback TCP connection whose far
// end the Server serves, as peer "alice".
type tcpOpener struct {
	srv *Server
	wg  sync.WaitGroup
}

func (o *tcpOpener) OpenStream(ctx context.Context, peer string) (net.Conn, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer ln.Close()
	near, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return nil, err
	}
	far, err := ln.Accept()
	if err != nil {
		near.Close()
		return nil, err
	}
	o.wg.Go(func() { o.srv.ServeStream(context.Background(), far, "alice") })
	return near, nil
}

// benchService serves handle on a loopback listener until the benchmark
// ends and returns its address.
func benchService(b *testing.B, handle func(net.Conn)) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return ln.Addr().String()
}

// benchForward starts a forward to the exposed service at target and
// returns the forward's address.
func benchForward(b *testing.B, target string) string {
	b.Helper()
	pol, err := NewPolicy([]config.Peer{{Name: "alice"}},
		[]config.Expose{{Name: "svc", Target: target, Peers: []string{"alice"}}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	quiet := logrus.New()
	quiet.SetOutput(io.Discard)
	o := &tcpOpener{srv: NewServer(pol, Config{}, quiet)}
	l := NewListeners(nil, []config.Forward{{Listen: "127.0.0.1:0", Peer: "exit", Service: "svc"}}, o, Config{}, quiet)
	if err := l.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		l.Close()
		o.wg.Wait()
	})
	return l.ForwardAddrs()[0].String()
}

// BenchmarkForwardBulk sends 256 MiB through a forward per operation, on
// a connection of its own, to a service that counts what it read and
// answers with the count.
func BenchmarkForwardBulk(b *testing.B) {
	const size = 256 << 20
	fwd := benchForward(b, benchService(b, func(c net.Conn) {
		n, _ := io.CopyBuffer(io.Discard, struct{ io.Reader }{c}, make([]byte, 256<<10))
		binary.Write(c, binary.BigEndian, n)
	}))
	chunk := make([]byte, 256<<10)
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		c, err := net.Dial("tcp", fwd)
		if err != nil {
			b.Fatal(err)
		}
		for sent := 0; sent < size; sent += len(chunk) {
			if _, err := c.Write(chunk); err != nil {
				b.Fatal(err)
			}
		}
		c.(*net.TCPConn).CloseWrite()
		var got int64
		if err := binary.Read(c, binary.BigEndian, &got); err != nil || got != size {
			b.Fatalf("service read %d bytes (%v), sent %d", got, err, size)
		}
		c.Close()
	}
}

// BenchmarkForwardMessages sends messages of a few sizes through a
// forward to an echo service, one at a time on one connection, and reads
// each back: what interactive traffic costs, where a copy that starts
// small splits a message in two.
func BenchmarkForwardMessages(b *testing.B) {
	fwd := benchForward(b, benchService(b, func(c net.Conn) {
		io.CopyBuffer(struct{ io.Writer }{c}, struct{ io.Reader }{c}, make([]byte, 64<<10))
	}))
	for _, size := range []int{100, 1500, 16 << 10, 100 << 10} {
		b.Run(byteCount(size), func(b *testing.B) {
			c, err := net.Dial("tcp", fwd)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			msg, got := make([]byte, size), make([]byte, size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Write(msg); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, got); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func byteCount(n int) string {
	if n%(1<<10) == 0 {
		return strconv.Itoa(n>>10) + "KiB"
	}
	return strconv.Itoa(n) + "B"
}
