package benchtest

import (
	"io"
	"net"
	"testing"
)

// Chunk is the size of each write in Stream: what a forward's copy hands
// the link at a time, rounded up.
const Chunk = 64 << 10

// Stream writes b.N Chunk-sized writes through w while another goroutine
// drains r, and reports bytes per second and allocations.
func Stream(b *testing.B, w io.Writer, r io.Reader) {
	b.SetBytes(Chunk)
	b.ReportAllocs()
	total := int64(b.N) * Chunk
	done := make(chan error, 1)
	go func() {
		_, err := io.CopyBuffer(io.Discard, io.LimitReader(r, total), make([]byte, 32<<10))
		done <- err
	}()
	buf := make([]byte, Chunk)
	b.ResetTimer()
	for range b.N {
		if _, err := w.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}

// RoundTrip measures request/response round trips of size bytes: it
// writes to a, another goroutine echoes what b reads back into b, and it
// reads the echo from a. ns/op is one round trip.
func RoundTrip(b *testing.B, a, peer io.ReadWriter, size int) {
	b.ReportAllocs()
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, size)
		for {
			if _, err := io.ReadFull(peer, buf); err != nil {
				done <- nil // the benchmark closed the connection
				return
			}
			if _, err := peer.Write(buf); err != nil {
				done <- err
				return
			}
		}
	}()
	req, resp := make([]byte, size), make([]byte, size)
	b.ResetTimer()
	for range b.N {
		if _, err := a.Write(req); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(a, resp); err != nil {
			b.Fatal(err)
		}
	}
}

// TCPPair returns both ends of a loopback TCP connection, closed when the
// test ends.
func TCPPair(t testing.TB) (near, far *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		c.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// ClosedAddr returns a loopback TCP address nothing listens on: dials to
// it are refused.
func ClosedAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
