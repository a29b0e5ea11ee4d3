package forward

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"testing/iotest"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/warren-p2p/warren/config"
)

// chunked reads its data in the given sizes, then EOF.
type chunked struct {
	data  []byte
	sizes []int
}

func (c *chunked) Read(b []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := len(c.data)
	if len(c.sizes) > 0 {
		n, c.sizes = min(n, c.sizes[0]), c.sizes[1:]
	}
	n = copy(b, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

func TestCopierCopiesEveryByte(t *testing.T) {
	data := make([]byte, 3<<20)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	for _, tc := range []struct {
		name string
		src  io.Reader
	}{
		{"bulk", bytes.NewReader(data)},
		{"one byte at a time", iotest.OneByteReader(bytes.NewReader(data[:100<<10]))},
		// Bulk switches to the big buffer, the trickle after it back.
		{"bulk then trickle then bulk", &chunked{data: data, sizes: append(
			[]int{smallCopyBuf, bigCopyBuf, bigCopyBuf, 100, 7, 100},
			bigCopyBuf, smallCopyBuf, smallCopyBuf)}},
		{"half reads", iotest.HalfReader(bytes.NewReader(data))},
	} {
		var cp copier
		var dst bytes.Buffer
		want := data
		if tc.name == "one byte at a time" {
			want = data[:100<<10]
		}
		n, err := cp.copy(&dst, tc.src)
		if err != nil || n != int64(len(want)) || !bytes.Equal(dst.Bytes(), want) {
			t.Errorf("%s: copied %d of %d bytes, err %v, equal %v", tc.name, n, len(want), err, bytes.Equal(dst.Bytes(), want))
		}
	}
}

type failWriter struct{ after int }

var errWrite = errors.New("write failed")

func (w *failWriter) Write(b []byte) (int, error) {
	if w.after <= 0 {
		return 0, errWrite
	}
	w.after--
	return len(b), nil
}

func TestCopierStopsAtErrors(t *testing.T) {
	var cp copier
	if _, err := cp.copy(&failWriter{after: 2}, bytes.NewReader(make([]byte, 1<<20))); !errors.Is(err, errWrite) {
		t.Errorf("write error: got %v", err)
	}
	if _, err := cp.copy(io.Discard, iotest.ErrReader(io.ErrUnexpectedEOF)); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("read error: got %v", err)
	}
}

// tcpPair returns both ends of a loopback TCP connection, closed when
// the test ends.
func tcpPair(t *testing.T) (near, far *net.TCPConn) {
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
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// writeLog records each Write it gets, for tests that care how bytes were
// grouped.
type writeLog struct {
	mu     sync.Mutex
	data   bytes.Buffer
	writes []int
	wrote  chan struct{} // signalled after each Write
}

func newWriteLog() *writeLog { return &writeLog{wrote: make(chan struct{}, 1000)} }

func (w *writeLog) Write(b []byte) (int, error) {
	w.mu.Lock()
	w.data.Write(b)
	w.writes = append(w.writes, len(b))
	w.mu.Unlock()
	w.wrote <- struct{}{}
	return len(b), nil
}

func (w *writeLog) len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.data.Len()
}

// waitLen waits until the log holds n bytes.
func (w *writeLog) waitLen(t *testing.T, n int) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for w.len() < n {
		select {
		case <-w.wrote:
		case <-timeout:
			t.Fatalf("copied %d bytes of %d within 5s", w.len(), n)
		}
	}
}

// A copy from a socket reads it itself (copyRaw): every byte arrives, in
// bulk and in messages of every size around the buffers', each as soon as
// it is sent, and EOF ends the copy.
func TestCopierCopiesSocket(t *testing.T) {
	if !rawReads {
		t.Skip("no raw socket reads on " + runtime.GOOS)
	}
	near, far := tcpPair(t)
	var cp copier
	dst := newWriteLog()
	done := make(chan error, 1)
	var copied int64
	go func() {
		var err error
		copied, err = cp.copy(dst, far)
		done <- err
	}()
	r := rand.New(rand.NewPCG(3, 4))
	var sent bytes.Buffer
	send := func(n int) {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		if _, err := near.Write(b); err != nil {
			t.Fatal(err)
		}
		sent.Write(b)
	}
	// Each message must come through before the next is sent: a copy
	// that waited for more after a full buffer would stall here.
	for _, n := range []int{1, 100, smallCopyBuf, mediumCopyBuf - 1, mediumCopyBuf, mediumCopyBuf + 1,
		bigCopyBuf, bigCopyBuf + mediumCopyBuf, 3 << 20} {
		send(n)
		dst.waitLen(t, sent.Len())
	}
	near.CloseWrite()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if copied != int64(sent.Len()) || !bytes.Equal(dst.data.Bytes(), sent.Bytes()) {
		t.Errorf("copied %d bytes of %d, equal %v", copied, sent.Len(), bytes.Equal(dst.data.Bytes(), sent.Bytes()))
	}
}

// Closing a socket that a copy waits on ends the copy with an error, as a
// blocked Read would.
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
			aNear, aFar := tcpPair(t) // aFar is the application
			bNear, bFar := tcpPair(t) // bFar is what fails or finishes
			var cp copier
			joined := make(chan struct{})
			go func() { defer close(joined); cp.join(aNear, bNear) }()
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

func TestCopierSocketClosedWhileWaiting(t *testing.T) {
	if !rawReads {
		t.Skip("no raw socket reads on " + runtime.GOOS)
	}
	_, far := tcpPair(t)
	var cp copier
	done := make(chan error, 1)
	go func() {
		_, err := cp.copy(io.Discard, far)
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	far.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("copy ended with %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("copy still waiting on a closed socket")
	}
}

// bufferedStream is a source like a link stream: Read blocks while it
// holds nothing, and with a read deadline in the past returns what it
// holds, or a timeout.
type bufferedStream struct {
	mu       sync.Mutex
	buf      bytes.Buffer
	eof      bool
	more     chan struct{}
	deadline time.Time
	waited   []int // buffer sizes of the reads that found nothing and blocked
}

func newBufferedStream() *bufferedStream { return &bufferedStream{more: make(chan struct{}, 1)} }

func (s *bufferedStream) Read(b []byte) (int, error) {
	for {
		s.mu.Lock()
		if s.buf.Len() > 0 {
			n, _ := s.buf.Read(b)
			s.mu.Unlock()
			return n, nil
		}
		eof, past := s.eof, !s.deadline.IsZero() && time.Now().After(s.deadline)
		s.mu.Unlock()
		if eof {
			return 0, io.EOF
		}
		if past {
			return 0, os.ErrDeadlineExceeded
		}
		s.mu.Lock()
		s.waited = append(s.waited, len(b))
		s.mu.Unlock()
		<-s.more
	}
}

func (s *bufferedStream) SetReadDeadline(t time.Time) error {
	s.mu.Lock()
	s.deadline = t
	s.mu.Unlock()
	return nil
}

// add makes b readable at once, as a link frame lands in a stream's
// buffer; with eof, the stream ends after it.
func (s *bufferedStream) add(b []byte, eof bool) {
	s.mu.Lock()
	s.buf.Write(b)
	s.eof = s.eof || eof
	s.mu.Unlock()
	select {
	case s.more <- struct{}{}:
	default:
	}
}

// A copy from a link stream waits with its small buffer and, when a read
// fills it, tops it up with what the stream holds: each message goes on
// in one Write, including one just the small buffer's size, which must
// not wait for more; and the large buffer is never what it waits with,
// not even after a message larger than a quarter of it.
func TestCopierStreamMessagesWhole(t *testing.T) {
	src := newBufferedStream()
	dst := newWriteLog()
	var cp copier
	done := make(chan error, 1)
	go func() {
		_, err := cp.copy(dst, src)
		done <- err
	}()
	sizes := []int{10, smallCopyBuf, smallCopyBuf + 1, 5000, 100 << 10, 10}
	total := 0
	for _, n := range sizes {
		src.add(bytes.Repeat([]byte{byte(n)}, n), false)
		total += n
		dst.waitLen(t, total)
	}
	src.add(nil, true)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(dst.writes, sizes) {
		t.Errorf("writes %v, want one per message %v", dst.writes, sizes)
	}
	if src.deadline != (time.Time{}) {
		t.Errorf("read deadline left at %v", src.deadline)
	}
	for _, n := range src.waited {
		if n != smallCopyBuf {
			t.Errorf("waited for data with a %d-byte buffer, want %d", n, smallCopyBuf)
		}
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
