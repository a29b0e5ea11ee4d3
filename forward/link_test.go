package forward_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/warren-p2p/warren/config"
	"github.com/warren-p2p/warren/forward"
	"github.com/warren-p2p/warren/forward/forwardtest"
	"github.com/warren-p2p/warren/identity"
	"github.com/warren-p2p/warren/link"
)

// linkOpener opens streams on a real link, whose far end srv serves as
// peer "alice": the copies run on link streams, as in a daemon.
type linkOpener struct{ near *link.Link }

func (o linkOpener) OpenStream(ctx context.Context, peer string) (net.Conn, error) {
	return o.near.Open(ctx)
}

// newLinkExit links two ends over loopback TCP and serves the far one's
// streams with an exit that lets alice reach anything.
func newLinkExit(t testing.TB) linkOpener {
	t.Helper()
	c, s, err := forwardtest.TCPPair(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]link.Identity, 2)
	for i := range ids {
		k, err := identity.Generate()
		if err != nil {
			t.Fatal(err)
		}
		if ids[i], err = link.NewIdentity(k); err != nil {
			t.Fatal(err)
		}
	}
	quiet := logrus.New()
	quiet.SetOutput(io.Discard)
	links := make(chan *link.Link, 2)
	for i, conn := range []net.Conn{c, s} {
		go func() {
			cands := make(chan link.Candidate, 1)
			cands <- link.Candidate{Conn: conn, Path: "direct-tcp"}
			close(cands)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			l, err := link.Establish(ctx, cands, ids[i], ids[1-i].Public, nil, quiet)
			if err != nil {
				t.Error(err)
			}
			links <- l
		}()
	}
	a, b := <-links, <-links
	if a == nil || b == nil {
		t.FailNow()
	}
	near, far := a, b
	if a.Local().String() != c.LocalAddr().String() {
		near, far = b, a
	}
	t.Cleanup(func() { near.Close(); far.Close() })
	pol, err := forward.NewPolicy([]config.Peer{{Name: "alice", Exit: true}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := forward.NewServer(pol, forward.Config{}, quiet)
	go func() {
		for {
			st, err := far.Accept()
			if err != nil {
				return
			}
			go srv.ServeStream(context.Background(), st, "alice")
		}
	}()
	return linkOpener{near}
}

// Through a forward over a real link: echoes of every size, a bulk
// transfer, and an upload's end that lets the download go on, with the
// stream side of each copy run only while it has data.
func TestForwardOverLinkCopies(t *testing.T) {
	o := newLinkExit(t)
	l := forward.NewListeners(nil, []config.Forward{{Listen: "127.0.0.1:0", Peer: "exit", Target: echoServer(t)}},
		o, forward.Config{}, logrus.New())
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c := dialTCP(t, l.ForwardAddrs()[0])
	c.SetDeadline(time.Now().Add(20 * time.Second))
	for _, n := range []int{1, 7, 2 << 10, 32 << 10, 300 << 10} {
		msg := make([]byte, n)
		rand.Read(msg)
		go c.Write(msg)
		got := make([]byte, n)
		if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("echo of %d bytes: %v (equal: %v)", n, err, bytes.Equal(got, msg))
		}
	}
	bulk := make([]byte, 8<<20)
	rand.Read(bulk)
	go func() {
		c.Write(bulk)
		c.(*net.TCPConn).CloseWrite()
	}()
	got, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(got, bulk) {
		t.Fatalf("bulk echo after half-close: %d of %d bytes, %v", len(got), len(bulk), err)
	}
}

// Issue 16: an idle forwarded connection holds one goroutine on each
// side (the copy waiting on its socket), not two: the copy from the link
// stream runs only while the stream has data.
func TestIdleForwardHoldsOneGoroutinePerSide(t *testing.T) {
	const conns = 200
	o := newLinkExit(t)
	// The target holds its connections without a goroutine each.
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	l := forward.NewListeners(nil, []config.Forward{{Listen: "127.0.0.1:0", Peer: "exit", Target: tl.Addr().String()}},
		o, forward.Config{}, logrus.New())
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	before := runtime.NumGoroutine()
	for range conns {
		c := dialTCP(t, l.ForwardAddrs()[0])
		held = append(held, c)
		tc, err := tl.Accept()
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, tc)
		// One byte each way, so that both copies have run.
		c.Write([]byte{1})
		tc.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(tc, make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
		tc.Write([]byte{2})
		if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(200 * time.Millisecond)
	per := float64(runtime.NumGoroutine()-before) / conns
	t.Logf("%.2f goroutines per idle forwarded connection, both sides", per)
	if per > 2.5 {
		t.Fatalf("%.2f goroutines per idle forwarded connection (both sides), want 2", per)
	}
}

// blockingStream hides a link stream's NotifyReadable, so that join
// copies from it with a goroutine blocked in Read: the copy before pumps.
type blockingStream struct{ net.Conn }

func (s blockingStream) CloseWrite() error {
	return s.Conn.(interface{ CloseWrite() error }).CloseWrite()
}
func (s blockingStream) Abort() error { return s.Conn.(interface{ Abort() error }).Abort() }

type blockingOpener struct{ linkOpener }

func (o blockingOpener) OpenStream(ctx context.Context, peer string) (net.Conn, error) {
	s, err := o.linkOpener.OpenStream(ctx, peer)
	if err != nil {
		return nil, err
	}
	return blockingStream{s}, nil
}

// BenchmarkForwardOverLink sends 64 MiB through a forward over a real
// link to a sink, and 64-byte echoes, with the stream side of the
// listener's copy pumped (the default) and blocked in Read (the copy
// before pumps), in the same run.
func BenchmarkForwardOverLink(b *testing.B) {
	for _, mode := range []string{"blocking", "pump"} {
		b.Run("bulk/"+mode, func(b *testing.B) { benchOverLink(b, mode, 64<<20) })
		b.Run("echo64/"+mode, func(b *testing.B) { benchOverLink(b, mode, 64) })
	}
}

func benchOverLink(b *testing.B, mode string, size int) {
	lo := newLinkExit(b)
	var o forward.Opener = lo
	if mode == "blocking" {
		o = blockingOpener{lo}
	}
	quiet := logrus.New()
	quiet.SetOutput(io.Discard)
	l := forward.NewListeners(nil, []config.Forward{{Listen: "127.0.0.1:0", Peer: "exit", Target: echoServer(b)}},
		o, forward.Config{}, quiet)
	if err := l.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	c, err := net.Dial("tcp", l.ForwardAddrs()[0].String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	msg := make([]byte, size)
	got := make([]byte, size)
	b.SetBytes(int64(size))
	b.ResetTimer()
	for range b.N {
		go c.Write(msg)
		if _, err := io.ReadFull(c, got); err != nil {
			b.Fatal(err)
		}
	}
}

// TestCloseEndsIdlePump: a forward whose client has finished sending and
// whose target neither answers nor closes waits with no goroutine on the
// link stream (an idle pump); closing the listeners cuts it off, and must
// not wait for ever for a notice from a stream it just aborted.
func TestCloseEndsIdlePump(t *testing.T) {
	o := newLinkExit(t)
	got := make(chan struct{}, 1)
	target := serveTCP(t, func(c *net.TCPConn) {
		io.ReadAll(c) // to the client's end; then silence, holding c open
		got <- struct{}{}
		<-t.Context().Done()
	})
	l := forward.NewListeners(nil, []config.Forward{{Listen: "127.0.0.1:0", Peer: "exit", Target: target}},
		o, forward.Config{}, logrus.New())
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	c := dialTCP(t, l.ForwardAddrs()[0])
	if _, err := c.Write([]byte("request")); err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("the target did not get the client's end")
	}
	time.Sleep(50 * time.Millisecond) // let the stream side's pump go idle
	closed := make(chan struct{})
	go func() { l.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close waited for a forward whose stream it had aborted")
	}
}

// firstWriteStream records the first Write on a link stream, keeping
// what makes it one (NotifyReadable, CloseWrite, Abort, Shrink).
type firstWriteStream struct {
	*link.Stream
	first chan []byte
}

func (s *firstWriteStream) Write(b []byte) (int, error) {
	select {
	case s.first <- bytes.Clone(b):
	default:
	}
	return s.Stream.Write(b)
}

// earlyOpener opens streams once the test has let it (after the client
// has written), and records each stream's first write.
type earlyOpener struct {
	linkOpener
	open  chan struct{}
	first chan []byte
}

func (o earlyOpener) OpenStream(ctx context.Context, peer string) (net.Conn, error) {
	<-o.open
	s, err := o.linkOpener.OpenStream(ctx, peer)
	if err != nil {
		return nil, err
	}
	return &firstWriteStream{Stream: s.(*link.Stream), first: o.first}, nil
}

// What a client sends before its forward's stream opens goes in the
// stream's first write, right behind the request, and comes back from
// the echo like the rest; the listener counts it.
func TestForwardSendsEarlyBytesWithRequest(t *testing.T) {
	o := earlyOpener{linkOpener: newLinkExit(t), open: make(chan struct{}), first: make(chan []byte, 1)}
	echo := echoServer(t)
	l := forward.NewListeners(nil, []config.Forward{{Listen: "127.0.0.1:0", Peer: "exit", Target: echo}},
		o, forward.Config{}, logrus.New())
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c := dialTCP(t, l.ForwardAddrs()[0])
	c.SetDeadline(time.Now().Add(10 * time.Second))
	hello := []byte("GET / HTTP/1.1\r\nHost: early\r\n\r\n")
	if _, err := c.Write(hello); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // for the bytes to reach the listener's socket
	close(o.open)
	var req bytes.Buffer
	if err := forward.WriteRequest(&req, forward.TargetRequest(echo), hello...); err != nil {
		t.Fatal(err)
	}
	if first := <-o.first; !bytes.Equal(first, req.Bytes()) {
		t.Errorf("stream's first write %q, want the request and the client's bytes %q", first, req.Bytes())
	}
	got := make([]byte, len(hello))
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, hello) {
		t.Fatalf("echo %q, %v", got, err)
	}
	more := []byte("and the rest")
	c.Write(more)
	got = make([]byte, len(more))
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, more) {
		t.Fatalf("echo after the early bytes %q, %v", got, err)
	}
	c.Close()
	waitFor(t, "the connection's bytes counted", func() bool {
		st := l.Stats()
		return st.Active == 0 && st.BytesOut == uint64(len(hello)+len(more))
	})
}
