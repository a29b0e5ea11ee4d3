package transport

import (
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"
)

// newDemux opens a demux on a fresh loopback socket and closes it at the
// end of the test.
func newDemux(t testing.TB) *Demux {
	t.Helper()
	d, err := NewDemux(listenLoopback(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// listenLoopback opens a UDP socket on a free loopback port and closes it
// at the end of the test.
func listenLoopback(t testing.TB) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// addrOf returns the local address of a socket, Demux or QUICSocket.
func addrOf(s interface{ LocalAddr() net.Addr }) netip.AddrPort {
	return s.LocalAddr().(*net.UDPAddr).AddrPort()
}

// dialPair opens the two ends of stream conv between a and b.
func dialPair(t testing.TB, a, b *Demux, conv uint32, cfg *Config) (*Conn, *Conn) {
	t.Helper()
	ca, err := a.Dial(addrOf(b), conv, cfg)
	if err != nil {
		t.Fatal(err)
	}
	cb, err := b.Dial(addrOf(a), conv, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ca.Close(); cb.Close() })
	return ca, cb
}

// fastConfig detects dead peers and gives up lingering quickly, for tests.
func fastConfig() *Config {
	return &Config{
		KeepAliveInterval: 50 * time.Millisecond,
		IdleTimeout:       600 * time.Millisecond,
		CloseTimeout:      400 * time.Millisecond,
	}
}

// transfer writes n random bytes to w in 64 KiB writes and returns their
// sha256.
func transfer(w io.Writer, n int64) ([32]byte, error) {
	h := sha256.New()
	_, err := io.CopyBuffer(io.MultiWriter(w, h), io.LimitReader(rand.Reader, n), make([]byte, 64<<10))
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum, err
}

// drain reads exactly n bytes from r and returns their sha256.
func drain(r io.Reader, n int64) ([32]byte, error) {
	h := sha256.New()
	_, err := io.CopyN(h, r, n)
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum, err
}

// sendRandom writes n random bytes to w from another goroutine, then calls
// then (if not nil) there, and reads n bytes from r. It reports whether
// they arrived intact, or the read's error, or else the writer's.
func sendRandom(w io.Writer, r io.Reader, n int64, then func() error) (intact bool, err error) {
	type result struct {
		sum [32]byte
		err error
	}
	sent := make(chan result, 1)
	go func() {
		sum, err := transfer(w, n)
		if err == nil && then != nil {
			err = then()
		}
		sent <- result{sum, err}
	}()
	got, err := drain(r, n)
	if err != nil {
		return false, fmt.Errorf("read: %w", err)
	}
	res := <-sent
	if res.err != nil {
		return false, fmt.Errorf("write: %w", res.err)
	}
	return res.sum == got, nil
}

// waitFor fails the test if cond does not become true within 5s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// within fails the test if f does not return within d.
func within(t *testing.T, d time.Duration, what string, f func()) time.Duration {
	t.Helper()
	start := time.Now()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
		return time.Since(start)
	case <-time.After(d):
		t.Fatalf("%s did not finish within %v", what, d)
		return 0
	}
}
