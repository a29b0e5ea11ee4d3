package transport

import (
	"crypto/rand"
	"crypto/sha256"
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
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	d, err := NewDemux(conn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func addrOf(d *Demux) netip.AddrPort { return d.LocalAddr().(*net.UDPAddr).AddrPort() }

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
