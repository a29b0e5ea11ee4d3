package forward

import (
	"io"
	"net"
	"sync"
)

// closeWriter is a connection that can half-close: TCP, and the link
// package's yamux stream wrapper.
type closeWriter interface {
	CloseWrite() error
}

// join copies a→b and b→a until both directions end, then closes both.
// When a direction ends with EOF its destination is half-closed
// (CloseWrite), so the other direction keeps flowing; if the destination
// cannot half-close, or a copy fails, both connections are closed at once.
// It returns the byte counts a→b and b→a.
func (cp *copier) join(a, b net.Conn) (ab, ba int64) {
	var once sync.Once
	closeBoth := func() {
		once.Do(func() {
			a.Close()
			b.Close()
		})
	}
	half := func(dst, src net.Conn) int64 {
		n, err := cp.copy(dst, src)
		if err == nil {
			if cw, ok := dst.(closeWriter); ok && cw.CloseWrite() == nil {
				return n
			}
		}
		closeBoth()
		return n
	}
	var wg sync.WaitGroup
	wg.Go(func() { ba = half(a, b) })
	ab = half(b, a)
	wg.Wait()
	closeBoth()
	return ab, ba
}

// Copy buffer sizes. A copy starts with a small buffer, which is what an
// idle connection holds while it waits in Read; once reads fill it, the
// connection is moving bulk data and switches to a large one from a pool,
// so that a link frame carries 256 KiB instead of 32 and a transfer takes
// an eighth of the frames, window updates and system calls. (Through the
// lab's forward: TCP link 3.1 → 4.0 Gbit/s, QUIC 1.7 → 2.0.)
const (
	smallCopyBuf = 32 << 10
	bigCopyBuf   = 256 << 10
)

// copier copies connections' bytes, sharing large buffers between them.
// The zero value is ready to use.
type copier struct {
	big sync.Pool // of *[]byte, bigCopyBuf long
}

// copy copies src to dst until EOF or an error, as io.Copy does, but with
// its own buffers, so it also hides a TCP connection's ReadFrom and WriteTo
// (which copy through 32 KiB; they splice only between sockets).
func (cp *copier) copy(dst io.Writer, src io.Reader) (int64, error) {
	small := make([]byte, smallCopyBuf)
	buf := small
	var big *[]byte
	defer func() {
		if big != nil {
			cp.big.Put(big)
		}
	}()
	var total int64
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			w, werr := dst.Write(buf[:n])
			total += int64(w)
			if werr != nil {
				return total, werr
			}
			if w != n {
				return total, io.ErrShortWrite
			}
		}
		if rerr == io.EOF {
			return total, nil
		}
		if rerr != nil {
			return total, rerr
		}
		switch {
		case big == nil && n == len(buf):
			if b, ok := cp.big.Get().(*[]byte); ok {
				big = b
			} else {
				b := make([]byte, bigCopyBuf)
				big = &b
			}
			buf = *big
		case big != nil && n < len(buf)/4:
			cp.big.Put(big)
			big, buf = nil, small
		}
	}
}
