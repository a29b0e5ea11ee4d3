package bufcopy

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"slices"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/warren-p2p/warren/internal/benchtest"
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
		var cp Copier
		var dst bytes.Buffer
		want := data
		if tc.name == "one byte at a time" {
			want = data[:100<<10]
		}
		n, err := cp.Copy(&dst, tc.src)
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
	var cp Copier
	if _, err := cp.Copy(&failWriter{after: 2}, bytes.NewReader(make([]byte, 1<<20))); !errors.Is(err, errWrite) {
		t.Errorf("write error: got %v", err)
	}
	if _, err := cp.Copy(io.Discard, iotest.ErrReader(io.ErrUnexpectedEOF)); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("read error: got %v", err)
	}
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
	near, far := benchtest.TCPPair(t)
	var cp Copier
	dst := newWriteLog()
	done := make(chan error, 1)
	var copied int64
	go func() {
		var err error
		copied, err = cp.Copy(dst, far)
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
func TestCopierSocketClosedWhileWaiting(t *testing.T) {
	if !rawReads {
		t.Skip("no raw socket reads on " + runtime.GOOS)
	}
	_, far := benchtest.TCPPair(t)
	var cp Copier
	done := make(chan error, 1)
	go func() {
		_, err := cp.Copy(io.Discard, far)
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
	var cp Copier
	done := make(chan error, 1)
	go func() {
		_, err := cp.Copy(dst, src)
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
