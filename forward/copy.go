package forward

import (
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"
)

// closeWriter is a connection that can half-close: TCP, and the link
// package's yamux stream wrapper.
type closeWriter interface {
	CloseWrite() error
}

// join copies a→b and b→a until both directions end, then closes both.
// When a direction ends with EOF its destination is half-closed
// (CloseWrite), so the other direction keeps flowing; if the destination
// cannot half-close, both connections are closed at once. If a copy
// fails (a link stream lost with its link, a connection reset), both are
// reset (abort) rather than finished: an application reading a cut-off
// transfer, on either side of the link, must see an error, not an end
// that looks like the whole of it. It returns the byte counts
// a→b and b→a.
func (cp *copier) join(a, b net.Conn) (ab, ba int64) {
	var once sync.Once
	closeBoth := func(failed bool) {
		once.Do(func() {
			for _, c := range []net.Conn{a, b} {
				if failed {
					abort(c)
				} else {
					c.Close()
				}
			}
		})
	}
	// end ends a direction into dst, which err (nil: EOF) ended.
	end := func(dst net.Conn, err error) {
		if err == nil {
			if cw, ok := dst.(closeWriter); ok && cw.CloseWrite() == nil {
				return
			}
		}
		closeBoth(err != nil)
	}
	half := func(dst, src net.Conn) int64 {
		n, err := cp.copy(dst, src)
		end(dst, err)
		return n
	}
	// A direction from a link stream runs only while the stream has data
	// (pump); the other runs here.
	if n, ok := b.(readNotifier); ok {
		p := cp.newPump(a, b, n, func(n int64, err error) { ba = n; end(a, err) })
		ab = half(b, a)
		p.wait()
	} else if n, ok := a.(readNotifier); ok {
		p := cp.newPump(b, a, n, func(n int64, err error) { ab = n; end(b, err) })
		ba = half(a, b)
		p.wait()
	} else {
		var wg sync.WaitGroup
		wg.Go(func() { ba = half(a, b) })
		ab = half(b, a)
		wg.Wait()
	}
	closeBoth(false)
	return ab, ba
}

// aborter is a connection that can end with a reset: the link package's
// stream.
type aborter interface {
	Abort() error
}

// abort closes c with a reset where it can: a TCP connection sends a RST
// instead of a FIN, a link stream is reset. Its far end reads an error:
// for a transfer cut off, or a connection its peer never took, a clean end
// of stream would be a lie.
func abort(c net.Conn) {
	switch c := c.(type) {
	case *net.TCPConn:
		c.SetLinger(0)
	case aborter:
		c.Abort()
		return
	}
	c.Close()
}

// Copy buffers. A daemon may hold thousands of idle connections, each
// with two copies blocked in Read, so what a copy holds while it waits is
// what an idle connection costs; a copy moving data wants a large buffer,
// so that a link frame carries 256 KiB instead of 32 and a transfer takes
// an eighth of the frames, window updates and system calls (through the
// lab's forward: TCP link 3.1 → 4.0 Gbit/s, QUIC 1.7 → 2.0). So:
//
//   - A copy from a TCP connection waits for it to become readable holding
//     no buffer at all, reads into a medium buffer from a pool and, when
//     that comes back full, moves to a large one with what else the socket
//     holds. It keeps its buffer while reads find data and gives it back
//     when one finds none.
//   - A copy from anything else (a link stream) cannot wait without a
//     buffer: it waits with a small one of its own, and moves to a large
//     one from the pool when a read fills the small one, for as long as
//     the stream has data ready.
//
// A read that fills its buffer is topped up without waiting before
// anything is written: a message a little larger than the buffer, split
// into a full buffer and the rest, took a third longer to echo through a
// forward.
const (
	smallCopyBuf  = 2 << 10
	mediumCopyBuf = 32 << 10
	bigCopyBuf    = 256 << 10
)

// copier copies connections' bytes, sharing medium and large buffers
// between them. The zero value is ready to use.
type copier struct {
	medium, big sync.Pool // of *[]byte, mediumCopyBuf and bigCopyBuf long
}

// get returns a pooled buffer of size mediumCopyBuf or bigCopyBuf.
func (cp *copier) get(size int) *[]byte {
	pool := &cp.medium
	if size == bigCopyBuf {
		pool = &cp.big
	}
	if b, ok := pool.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, size)
	return &b
}

// put returns a buffer from get to its pool.
func (cp *copier) put(b *[]byte) {
	if len(*b) == bigCopyBuf {
		cp.big.Put(b)
	} else {
		cp.medium.Put(b)
	}
}

// copy copies src to dst until EOF or an error, as io.Copy does, but with
// its own buffers, so it also hides a TCP connection's ReadFrom and WriteTo
// (which copy through 32 KiB; they splice only between sockets). It may
// clear src's read deadline (readBuffered): join's sources have none.
func (cp *copier) copy(dst io.Writer, src io.Reader) (int64, error) {
	if tc, ok := src.(*net.TCPConn); ok && rawReads {
		if rc, err := tc.SyscallConn(); err == nil {
			return cp.copyRaw(dst, rc)
		}
	}
	return cp.copyBuffered(dst, src)
}

// rawReads is whether copyRaw may read sockets itself: Go keeps them
// non-blocking on these systems, so a read returns data, EOF or EAGAIN.
// (Windows sockets block.)
const rawReads = runtime.GOOS != "windows" && runtime.GOOS != "plan9" && runtime.GOOS != "js" && runtime.GOOS != "wasip1"

// copyRaw copies a socket to dst, reading it itself inside rc.Read: the
// runtime calls the read when the socket is readable and, when it finds
// nothing (EAGAIN), waits for readability again, so a buffer is taken only
// once there is data, and given back before each wait.
func (cp *copier) copyRaw(dst io.Writer, rc syscall.RawConn) (int64, error) {
	var (
		held  *[]byte // from the pools, while reads find data
		n     int
		rerr  error
		total int64
	)
	defer func() {
		if held != nil {
			cp.put(held)
		}
	}()
	// One closure for every read, so that the loop allocates nothing.
	read := func(fd uintptr) bool {
		if held == nil {
			held = cp.get(mediumCopyBuf)
		}
		n, rerr = readFD(fd, *held)
		if rerr == syscall.EAGAIN {
			cp.put(held)
			held = nil
			return false
		}
		if rerr == nil && n == len(*held) && n < bigCopyBuf {
			big := cp.get(bigCopyBuf)
			copy(*big, (*held)[:n])
			cp.put(held)
			held = big
			// The socket's EOF or error, if that is what follows, comes
			// again at the next read.
			if more, _ := readFD(fd, (*held)[n:]); more > 0 {
				n += more
			}
		}
		return true
	}
	for {
		// An error here is the connection's: closed, or a deadline.
		if err := rc.Read(read); err != nil {
			return total, err
		}
		if n > 0 {
			w, werr := dst.Write((*held)[:n])
			total += int64(w)
			if werr != nil {
				return total, werr
			}
			if w != n {
				return total, io.ErrShortWrite
			}
		}
		if rerr != nil {
			return total, os.NewSyscallError("read", rerr)
		}
		if n == 0 {
			return total, nil // EOF
		}
	}
}

// readFD is read(2) on a non-blocking socket: bytes, 0 at EOF, or an
// error (EAGAIN when there is nothing to read yet).
func readFD(fd uintptr, b []byte) (int, error) {
	for {
		n, err := sysRead(syscall.Read, fd, b)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return 0, err
		}
		return n, nil
	}
}

// sysRead is syscall.Read(fd, b). The descriptor is an int on Unix and a
// Handle on Windows; as a type parameter inferred from the function, it
// lets this one file call syscall.Read on every system the package builds
// for (only those where rawReads holds ever run it).
func sysRead[FD ~int | ~uintptr](read func(FD, []byte) (int, error), fd uintptr, b []byte) (int, error) {
	return read(FD(fd), b)
}

// copyBuffered copies src to dst through a small buffer of its own, or a
// large one from the pool while src has data ready. A read that fills the
// small buffer is topped up with what src holds (readBuffered) in the
// large one; once that has found bytes, src is known to answer such reads,
// and the large buffer is kept only while they find more: when one finds
// nothing, the copy waits again with the small buffer. For a src that
// never does, it keeps the large buffer until a read comes back short.
func (cp *copier) copyBuffered(dst io.Writer, src io.Reader) (int64, error) {
	small := make([]byte, smallCopyBuf)
	buf := small
	var big *[]byte
	defer func() {
		if big != nil {
			cp.put(big)
		}
	}()
	peeks := false // src returned bytes to readBuffered
	var total int64
	for {
		var n int
		var rerr error
		if big != nil && peeks {
			if n, rerr = readBuffered(src, buf); n == 0 && rerr == nil {
				cp.put(big)
				big, buf = nil, small
				continue
			}
		} else {
			n, rerr = src.Read(buf)
		}
		if rerr == nil && big == nil && n == len(buf) {
			big = cp.get(bigCopyBuf)
			buf = *big
			copy(buf, small[:n])
			var more int
			more, rerr = readBuffered(src, buf[n:])
			n += more
			peeks = peeks || more > 0
		}
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
		if big != nil && !peeks && n < len(buf)/4 {
			cp.put(big)
			big, buf = nil, small
		}
	}
}

// readBuffered reads into b what src holds already, without waiting for
// more: a read with a deadline in the past returns a link stream's
// buffered bytes (yamux looks at its buffer before the deadline), and
// reads nothing from a source that checks the deadline first (a socket,
// which copyRaw reads instead; a net.Pipe). The timeout is no error; src's
// read deadline is left cleared, as copy's sources have none. A src that
// refuses the deadline has been closed (a link stream returns
// net.ErrClosed): that error is returned, as a Read would fail.
func readBuffered(src io.Reader, b []byte) (int, error) {
	d, ok := src.(interface{ SetReadDeadline(time.Time) error })
	if !ok {
		return 0, nil
	}
	if err := d.SetReadDeadline(time.Unix(1, 0)); err != nil {
		return 0, err
	}
	n, err := src.Read(b)
	d.SetReadDeadline(time.Time{})
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		err = nil
	}
	return n, err
}
