package forward_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/warren-p2p/warren/config"
	"github.com/warren-p2p/warren/forward"
	"github.com/warren-p2p/warren/forward/forwardtest"
)

// mapResolver resolves names from a map; anything else is NXDOMAIN.
type mapResolver struct {
	mu    sync.Mutex
	names map[string][]netip.Addr
	calls []string
}

func newResolver(names map[string]string) *mapResolver {
	r := &mapResolver{names: map[string][]netip.Addr{}}
	for name, addrs := range names {
		for _, a := range strings.Split(addrs, ",") {
			r.names[name] = append(r.names[name], netip.MustParseAddr(a))
		}
	}
	return r
}

func (r *mapResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, host)
	if a, ok := r.names[strings.ToLower(strings.TrimSuffix(host, "."))]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func (r *mapResolver) Calls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.calls...)
}

func testLogger(t *testing.T) (*logrus.Logger, *logtest.Hook) {
	l := logrus.New()
	l.SetOutput(t.Output())
	l.SetLevel(logrus.DebugLevel)
	return l, logtest.NewLocal(l)
}

// exitEnv is an exit daemon reachable as peer "exit" through Opener; it
// sees the opener as peer "alice".
type exitEnv struct {
	Opener *forwardtest.Opener
	Server *forward.Server
	Log    *logrus.Logger
	Hook   *logtest.Hook
}

func newExit(t *testing.T, peers []config.Peer, exposes []config.Expose, r forward.Resolver, cfg forward.Config, opts ...forwardtest.Option) *exitEnv {
	t.Helper()
	log, hook := testLogger(t)
	pol, err := forward.NewPolicy(peers, exposes, r)
	if err != nil {
		t.Fatal(err)
	}
	srv := forward.NewServer(pol, cfg, log.WithField("side", "exit"))
	o := forwardtest.NewOpener(opts...)
	o.Route("exit", srv, "alice")
	t.Cleanup(o.Close)
	return &exitEnv{Opener: o, Server: srv, Log: log, Hook: hook}
}

func startListeners(t *testing.T, e *exitEnv, socks []config.Socks, fwds []config.Forward, cfg forward.Config) *forward.Listeners {
	t.Helper()
	l := forward.NewListeners(socks, fwds, e.Opener, cfg, e.Log.WithField("side", "local"))
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// serveTCP runs handle for each connection to a loopback listener until
// the test ends.
func serveTCP(t testing.TB, handle func(*net.TCPConn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				handle(c.(*net.TCPConn))
			})
		}
	})
	return ln.Addr().String()
}

// serveUDP listens on addr and runs handle for each datagram (b is only
// valid during the call) until the test ends; it returns the bound
// address.
func serveUDP(t *testing.T, addr netip.AddrPort, handle func(c *net.UDPConn, b []byte, from netip.AddrPort)) netip.AddrPort {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { c.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 65535)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			handle(c, buf[:n], from)
		}
	}()
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

// echoServer echoes and passes the client's half-close back.
func echoServer(t testing.TB) string {
	return serveTCP(t, func(c *net.TCPConn) {
		io.Copy(c, c)
		c.CloseWrite()
	})
}

// dialTCP connects to addr with a 10 s deadline, closed when the test ends.
func dialTCP(t *testing.T, addr net.Addr) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// findEntry returns the first log entry with msg, or nil.
func findEntry(h *logtest.Hook, msg string) *logrus.Entry {
	for _, e := range h.AllEntries() {
		if e.Message == msg {
			return e
		}
	}
	return nil
}

func refusalCode(t *testing.T, err error) byte {
	t.Helper()
	var re *forward.RefusedError
	if !errors.As(err, &re) {
		t.Fatalf("error %v is not a *RefusedError", err)
	}
	return re.Code
}

// dialRefused connects to a forward whose connection the peer will not
// take and returns what the client read and the error it ended with. On
// loopback the reset can beat the end of connect, which Dial reports as
// its error: that is the same refusal, with nothing read.
func dialRefused(t *testing.T, addr net.Addr) ([]byte, error) {
	t.Helper()
	c, err := net.Dial("tcp", addr.String())
	if errors.Is(err, syscall.ECONNRESET) {
		return nil, err
	}
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return io.ReadAll(c)
}
