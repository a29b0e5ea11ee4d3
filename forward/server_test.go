package forward_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/warren-p2p/warren/config"
	"github.com/warren-p2p/warren/forward"
	"github.com/warren-p2p/warren/forward/forwardtest"
	"github.com/warren-p2p/warren/internal/benchtest"
)

func TestDialThroughServer(t *testing.T) {
	echo := echoServer(t)
	closed := benchtest.ClosedAddr(t)
	r := newResolver(map[string]string{"echo.test": "127.0.0.1", "mapped.test": "::ffff:127.0.0.1"})
	e := newExit(t,
		[]config.Peer{{Name: "alice", Targets: []string{"echo.test:*", "127.0.0.0/8:*"}}},
		[]config.Expose{{Name: "echo", Target: echo, Peers: []string{"alice"}}, {Name: "secret", Target: echo, Peers: []string{"bob"}}},
		r, forward.Config{})
	_, echoPort, _ := net.SplitHostPort(echo)

	ok := []forward.Request{
		forward.TargetRequest(echo),
		forward.TargetRequest("echo.test:" + echoPort),
		forward.TargetRequest("mapped.test:" + echoPort),
		forward.TargetRequest("[::ffff:127.0.0.1]:" + echoPort),
		forward.ServiceRequest("echo"),
	}
	for _, req := range ok {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := forward.Dial(ctx, e.Opener, "exit", req)
		cancel()
		if err != nil {
			t.Errorf("Dial %v: %v", req, err)
			continue
		}
		msg := []byte("hello " + req.String())
		c.Write(msg)
		c.(interface{ CloseWrite() error }).CloseWrite()
		got, err := io.ReadAll(c)
		c.Close()
		if err != nil || !bytes.Equal(got, msg) {
			t.Errorf("%v: echo got %q, %v", req, got, err)
		}
	}

	refused := []struct {
		req  forward.Request
		code byte
	}{
		{forward.TargetRequest(closed), forward.CodeConnectionRefused},
		{forward.TargetRequest("10.0.0.1:80"), forward.CodeNotAllowed},
		{forward.TargetRequest("other.test:80"), forward.CodeHostUnreachable},
		{forward.TargetRequest("no port"), forward.CodeAddrNotSupported},
		{forward.TargetRequest("a b:80"), forward.CodeAddrNotSupported},
		{forward.ServiceRequest("secret"), forward.CodeNotAllowed},
		{forward.ServiceRequest("nosuch"), forward.CodeNotAllowed},
	}
	for _, tt := range refused {
		c, err := forward.Dial(context.Background(), e.Opener, "exit", tt.req)
		if err == nil {
			c.Close()
			t.Errorf("Dial %v succeeded", tt.req)
			continue
		}
		if code := refusalCode(t, err); code != tt.code {
			t.Errorf("Dial %v: code %d (%v), want %d", tt.req, code, err, tt.code)
		}
	}

	// No link: a plain error, not a refusal.
	_, err := forward.Dial(context.Background(), e.Opener, "nobody", forward.TargetRequest(echo))
	if !errors.Is(err, forwardtest.ErrNoLink) {
		t.Errorf("Dial to unknown peer: %v, want ErrNoLink", err)
	}

	waitFor(t, "all streams closed", func() bool { return e.Server.Stats().Active == 0 })
	st := e.Server.Stats()
	if st.Conns != uint64(len(ok)+len(refused)) || st.Refused != uint64(len(refused)) {
		t.Errorf("stats %+v, want %d streams, %d refused", st, len(ok)+len(refused), len(refused))
	}
}

func TestServerLogsOneLinePerStream(t *testing.T) {
	echo := echoServer(t)
	e := newExit(t, []config.Peer{{Name: "alice", Exit: true}}, nil, nil, forward.Config{})

	c, err := forward.Dial(context.Background(), e.Opener, "exit", forward.TargetRequest(echo))
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("12345"))
	c.(interface{ CloseWrite() error }).CloseWrite()
	io.ReadAll(c)
	c.Close()
	waitFor(t, "stream closed log", func() bool { return findEntry(e.Hook, "stream closed") != nil })
	entry := findEntry(e.Hook, "stream closed")
	for k, want := range map[string]any{"peer": "alice", "target": echo, "bytes_in": int64(5), "bytes_out": int64(5)} {
		if got := entry.Data[k]; got != want {
			t.Errorf("field %s = %v (%T), want %v", k, got, got, want)
		}
	}
	if _, ok := entry.Data["duration"].(time.Duration); !ok {
		t.Errorf("no duration field: %v", entry.Data)
	}

	_, err = forward.Dial(context.Background(), e.Opener, "exit", forward.TargetRequest(benchtest.ClosedAddr(t)))
	if err == nil {
		t.Fatal("dial to closed port succeeded")
	}
	waitFor(t, "refusal log", func() bool { return findEntry(e.Hook, "stream refused") != nil })
	entry = findEntry(e.Hook, "stream refused")
	if entry.Data["peer"] != "alice" || entry.Data["reason"] == nil || entry.Data["code"] != forward.CodeConnectionRefused {
		t.Errorf("refusal entry fields: %v", entry.Data)
	}
}

// TestServeStreamGarbage feeds malformed requests straight to ServeStream:
// it must close the stream without a reply, and never panic.
func TestServeStreamGarbage(t *testing.T) {
	log, hook := testLogger(t)
	pol, err := forward.NewPolicy([]config.Peer{{Name: "alice", Exit: true}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := forward.NewServer(pol, forward.Config{RequestTimeout: 200 * time.Millisecond}, log)
	for _, in := range [][]byte{
		{},                    // nothing: request timeout
		{1, 2, 0},             // short: request timeout
		{9, 2, 0, 1, 'a'},     // bad version
		{1, 7, 0, 1, 'a'},     // bad kind
		{1, 2, 0, 0},          // zero length
		{1, 2, 0xff, 0xff, 0}, // too long
		[]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
	} {
		a, b := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			srv.ServeStream(context.Background(), b, "alice")
		}()
		a.SetDeadline(time.Now().Add(5 * time.Second))
		go a.Write(in) // may block on net.Pipe if the server stops reading
		got, err := io.ReadAll(a)
		if err != nil || len(got) != 0 {
			t.Errorf("input %q: read %q, %v; want EOF and no reply", in, got, err)
		}
		a.Close()
		<-done
	}
	n := 0
	for _, e := range hook.AllEntries() {
		if e.Message == "bad stream request" {
			n++
		}
	}
	if n != 7 {
		t.Errorf("%d bad-request log lines, want 7", n)
	}
}

func TestServeStreamStopsOnCancel(t *testing.T) {
	// A target that never answers keeps the stream open until ctx ends.
	silent := serveTCP(t, func(c *net.TCPConn) { io.Copy(io.Discard, c) })
	log, _ := testLogger(t)
	pol, _ := forward.NewPolicy([]config.Peer{{Name: "alice", Exit: true}}, nil, nil)
	srv := forward.NewServer(pol, forward.Config{}, log)

	a, b := net.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.ServeStream(ctx, b, "alice")
	}()
	go forward.WriteRequest(a, forward.TargetRequest(silent))
	if r, err := forward.ReadReply(a); err != nil || r.Code != 0 {
		t.Fatalf("reply %+v, %v", r, err)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("ServeStream did not return after cancel")
	}
	a.Close()
}

func TestDialContextDeadline(t *testing.T) {
	// An exit that never replies: Dial must give up at ctx's deadline.
	o := hangingOpener{}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := forward.Dial(ctx, o, "x", forward.TargetRequest("a.test:1"))
	if err == nil || time.Since(start) > 3*time.Second {
		t.Fatalf("Dial = %v after %v", err, time.Since(start))
	}
}

type hangingOpener struct{}

func (hangingOpener) OpenStream(ctx context.Context, peer string) (net.Conn, error) {
	a, b := net.Pipe()
	go func() { io.Copy(io.Discard, b); b.Close() }() // ends when a is closed
	return a, nil
}
