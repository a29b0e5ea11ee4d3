package forward_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/warren-p2p/warren/config"
	"github.com/warren-p2p/warren/forward"
	"github.com/warren-p2p/warren/forward/forwardtest"
	"github.com/warren-p2p/warren/internal/benchtest"
)

func TestForwardRoundTrip10MiB(t *testing.T) {
	echo := echoServer(t)
	e := newExit(t, []config.Peer{{Name: "alice", Targets: []string{"127.0.0.1:*"}}},
		[]config.Expose{{Name: "echo", Target: echo, Peers: []string{"alice"}}}, nil, forward.Config{})
	l := startListeners(t, e, nil, []config.Forward{
		{Listen: "127.0.0.1:0", Peer: "exit", Target: echo},
		{Listen: "127.0.0.1:0", Peer: "exit", Service: "echo", Protocol: "tcp"},
	}, forward.Config{})

	const size = 10 << 20
	data := make([]byte, size)
	rand.Read(data)
	want := sha256.Sum256(data)
	for i, addr := range l.ForwardAddrs() {
		c, err := net.Dial("tcp", addr.String())
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(30 * time.Second))
		werr := make(chan error, 1)
		go func() {
			_, err := c.Write(data)
			if err == nil {
				err = c.(*net.TCPConn).CloseWrite()
			}
			werr <- err
		}()
		h := sha256.New()
		n, err := io.Copy(h, c)
		if err != nil {
			t.Fatalf("forward[%d]: read: %v", i, err)
		}
		if err := <-werr; err != nil {
			t.Fatalf("forward[%d]: write: %v", i, err)
		}
		c.Close()
		if n != size || !bytes.Equal(h.Sum(nil), want[:]) {
			t.Fatalf("forward[%d]: got %d bytes, sha256 mismatch=%v", i, n, !bytes.Equal(h.Sum(nil), want[:]))
		}
	}
	waitFor(t, "streams closed", func() bool { return e.Server.Stats().Active == 0 && l.Stats().Active == 0 })
	if st := l.Stats(); st.Conns != 2 || st.BytesIn != 2*size || st.BytesOut != 2*size {
		t.Errorf("listener stats %+v", st)
	}
	if st := e.Server.Stats(); st.BytesIn != 2*size || st.BytesOut != 2*size {
		t.Errorf("server stats %+v", st)
	}
}

func TestForwardHalfClose(t *testing.T) {
	// The server reads until EOF, then answers and closes.
	srv := serveTCP(t, func(c *net.TCPConn) {
		n, _ := io.Copy(io.Discard, c)
		fmt.Fprintf(c, "got %d bytes", n)
	})
	e := newExit(t, []config.Peer{{Name: "alice", Exit: true}}, nil, nil, forward.Config{})
	l := startListeners(t, e, nil, []config.Forward{{Listen: "127.0.0.1:0", Peer: "exit", Target: srv}}, forward.Config{})

	c := dialTCP(t, l.ForwardAddrs()[0])
	if _, err := c.Write([]byte("hello, world")); err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "got 12 bytes" {
		t.Fatalf("reply %q", got)
	}
}

func TestForwardRefused(t *testing.T) {
	e := newExit(t, []config.Peer{{Name: "alice", Targets: []string{"10.0.0.0/8:*"}}}, nil, nil, forward.Config{})
	l := startListeners(t, e, nil, []config.Forward{
		{Listen: "127.0.0.1:0", Peer: "exit", Target: "127.0.0.1:22"},
		{Listen: "127.0.0.1:0", Peer: "nolink", Target: "10.0.0.1:22"},
	}, forward.Config{})

	for i, addr := range l.ForwardAddrs() {
		got, err := dialRefused(t, addr)
		if !errors.Is(err, syscall.ECONNRESET) || len(got) != 0 {
			t.Errorf("forward[%d]: read %q, %v; want the connection reset", i, got, err)
		}
	}
	waitFor(t, "refusal logs", func() bool {
		return findEntry(e.Hook, "refused by peer") != nil && findEntry(e.Hook, "cannot reach peer") != nil
	})
	entry := findEntry(e.Hook, "refused by peer")
	if entry.Data["peer"] != "exit" || entry.Data["target"] != "127.0.0.1:22" || entry.Data["code"] != forward.CodeNotAllowed ||
		!strings.Contains(fmt.Sprint(entry.Data["reason"]), "not allowed") {
		t.Errorf("refusal log fields: %v", entry.Data)
	}
}

func TestListenersBindFailure(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	free := benchtest.ClosedAddr(t)
	free2 := benchtest.ClosedAddr(t)

	e := newExit(t, nil, nil, nil, forward.Config{})
	l := forward.NewListeners(
		[]config.Socks{{Listen: free, Peer: "exit"}},
		[]config.Forward{
			{Listen: free2, Peer: "exit", Target: "10.0.0.1:1"},
			{Listen: busy.Addr().String(), Peer: "exit", Target: "10.0.0.1:1"},
		},
		e.Opener, forward.Config{}, e.Log)
	err = l.Start(context.Background())
	if err == nil {
		l.Close()
		t.Fatal("Start succeeded with a busy port")
	}
	want := fmt.Sprintf("forward[1].listen: listen %s: address already in use", busy.Addr())
	var be *config.BindError
	if err.Error() != want || !errors.As(err, &be) || be.Key != "forward[1].listen" {
		t.Errorf("error %q, want the config.BindError %q", err, want)
	}
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("error does not wrap EADDRINUSE")
	}
	for _, addr := range []string{free, free2} {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Errorf("%s still bound after failed Start: %v", addr, err)
			continue
		}
		ln.Close()
	}
	if len(l.SocksAddrs())+len(l.ForwardAddrs()) != 0 {
		t.Errorf("addresses reported after failed start")
	}
	l.Close()
}

func TestListenersRejectBadForward(t *testing.T) {
	e := newExit(t, nil, nil, nil, forward.Config{})
	for _, f := range []config.Forward{
		{Listen: "127.0.0.1:0", Peer: "exit", Target: "10.0.0.1:1", Protocol: "sctp"},
		{Listen: "127.0.0.1:0", Peer: "exit"},
		{Listen: "127.0.0.1:0", Peer: "exit", Target: "10.0.0.1:1", Service: "x"},
	} {
		l := forward.NewListeners(nil, []config.Forward{f}, e.Opener, forward.Config{}, e.Log)
		err := l.Start(context.Background())
		l.Close()
		if err == nil || !strings.HasPrefix(err.Error(), "forward[0]: ") {
			t.Errorf("Start(%+v) = %v", f, err)
		}
	}
}

func TestListenersCloseEndsConnections(t *testing.T) {
	echo := echoServer(t)
	e := newExit(t, []config.Peer{{Name: "alice", Exit: true}}, nil, nil, forward.Config{})
	l := forward.NewListeners(
		[]config.Socks{{Listen: "127.0.0.1:0", Peer: "exit"}},
		[]config.Forward{{Listen: "127.0.0.1:0", Peer: "exit", Target: echo}},
		e.Opener, forward.Config{}, e.Log)
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := l.Start(context.Background()); err == nil {
		t.Error("second Start succeeded")
	}
	fwd := dialTCP(t, l.ForwardAddrs()[0])
	fwd.Write([]byte("ping"))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(fwd, buf); err != nil {
		t.Fatal(err)
	}
	socks := dialTCP(t, l.SocksAddrs()[0])
	if code := socksConnect(t, socks, echo); code != 0 {
		t.Fatalf("socks connect code %d", code)
	}
	waitFor(t, "2 active", func() bool { return l.Stats().Active == 2 })

	done := make(chan struct{})
	go func() { l.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	for _, c := range []net.Conn{fwd, socks} {
		if n, err := c.Read(buf); err == nil {
			t.Errorf("read %d bytes after Close", n)
		}
	}
	if l.Stats().Active != 0 {
		t.Errorf("active after Close: %+v", l.Stats())
	}
	if _, err := net.Dial("tcp", l.ForwardAddrs()[0].String()); err == nil {
		t.Error("listener still accepting after Close")
	}
}

func TestListenersStopOnContext(t *testing.T) {
	e := newExit(t, nil, nil, nil, forward.Config{})
	l := forward.NewListeners(nil, []config.Forward{{Listen: "127.0.0.1:0", Peer: "exit", Target: "10.0.0.1:1"}}, e.Opener, forward.Config{}, e.Log)
	ctx, cancel := context.WithCancel(context.Background())
	if err := l.Start(ctx); err != nil {
		t.Fatal(err)
	}
	addr := l.ForwardAddrs()[0].String()
	cancel()
	waitFor(t, "listener closed", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	l.Close()
}

// TestPipeStreams uses streams that, like yamux's, have no TCP addresses
// and (here) no CloseWrite: SOCKS must not panic on LocalAddr, and copies
// must still end.
func TestPipeStreams(t *testing.T) {
	echo := echoServer(t)
	e := newExit(t, []config.Peer{{Name: "alice", Exit: true}}, nil, nil, forward.Config{}, forwardtest.WithPipes())
	l := startListeners(t, e,
		[]config.Socks{{Listen: "127.0.0.1:0", Peer: "exit"}},
		[]config.Forward{{Listen: "127.0.0.1:0", Peer: "exit", Target: echo}},
		forward.Config{})

	socks, err := net.Dial("tcp", l.SocksAddrs()[0].String())
	if err != nil {
		t.Fatal(err)
	}
	fwd, err := net.Dial("tcp", l.ForwardAddrs()[0].String())
	if err != nil {
		t.Fatal(err)
	}
	socks.SetDeadline(time.Now().Add(10 * time.Second))
	if code := socksConnect(t, socks, echo); code != 0 {
		t.Fatalf("socks reply %d", code)
	}
	for _, c := range []net.Conn{socks, fwd} {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		c.Write([]byte("ping"))
		buf := make([]byte, 4)
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
			t.Fatalf("echo %q, %v", buf, err)
		}
		c.Close()
	}
	waitFor(t, "connections closed", func() bool { return l.Stats().Active == 0 && e.Server.Stats().Active == 0 })
}

func TestListenersReload(t *testing.T) {
	named := func(name string) string {
		return serveTCP(t, func(c *net.TCPConn) {
			io.WriteString(c, name)
			io.Copy(c, c)
		})
	}
	one, two := named("one"), named("two")
	fixed := benchtest.ClosedAddr(t)
	e := newExit(t, []config.Peer{{Name: "alice", Exit: true}}, nil, nil, forward.Config{})
	fwd := func(listen, target string) config.Forward {
		return config.Forward{Listen: listen, Peer: "exit", Target: target}
	}
	l := startListeners(t, e, nil, []config.Forward{fwd("127.0.0.1:0", one), fwd(fixed, one)}, forward.Config{})
	before := l.ForwardAddrs()
	greeting := func(addr net.Addr) string {
		c := dialTCP(t, addr)
		b := make([]byte, 3)
		if _, err := io.ReadFull(c, b); err != nil {
			return err.Error()
		}
		return string(b)
	}
	open := dialTCP(t, before[0])
	if _, err := io.ReadFull(open, make([]byte, 3)); err != nil {
		t.Fatal(err)
	}

	// The port-0 forward stays, the fixed one now leads elsewhere, a
	// third is new.
	if err := l.Reload(nil, []config.Forward{fwd("127.0.0.1:0", one), fwd(fixed, two), fwd("127.0.0.1:0", two)}); err != nil {
		t.Fatal(err)
	}
	after := l.ForwardAddrs()
	if len(after) != 3 || after[0].String() != before[0].String() || after[1].String() != fixed {
		t.Fatalf("addresses %v after reload, were %v", after, before)
	}
	for i, want := range []string{"one", "two", "two"} {
		if got := greeting(after[i]); got != want {
			t.Errorf("forward %d after reload: %q, want %q", i, got, want)
		}
	}

	// A bind failure changes nothing.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	err = l.Reload(nil, []config.Forward{fwd(busy.Addr().String(), one)})
	if err == nil || !strings.Contains(err.Error(), "forward[0].listen: listen") {
		t.Fatalf("reload onto a busy port: %v", err)
	}
	if got := greeting(after[1]); got != "two" {
		t.Errorf("after a failed reload: %q", got)
	}

	// Removed listeners stop accepting; an open connection runs on.
	if err := l.Reload(nil, []config.Forward{fwd("127.0.0.1:0", one)}); err != nil {
		t.Fatal(err)
	}
	if c, err := net.Dial("tcp", fixed); err == nil {
		c.Close()
		t.Error("a removed forward still accepts")
	}
	if _, err := open.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	if b := make([]byte, 4); func() error { _, err := io.ReadFull(open, b); return err }() != nil || string(b) != "ping" {
		t.Errorf("the open connection broke across reloads: %q", b)
	}
}
