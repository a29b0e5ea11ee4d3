package bufcopy

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
	// MaxWrite is the largest Write a Copier makes.
	MaxWrite = bigCopyBuf

	smallCopyBuf  = 2 << 10
	mediumCopyBuf = 32 << 10
	bigCopyBuf    = 256 << 10
)

// Copier copies connections' bytes, sharing medium and large buffers
// between them. The zero value is ready to use.
type Copier struct {
	medium, big sync.Pool // of *[]byte, mediumCopyBuf and bigCopyBuf long
}

// get returns a pooled buffer of size mediumCopyBuf or bigCopyBuf.
func (cp *Copier) get(size int) *[]byte {
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
func (cp *Copier) put(b *[]byte) {
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
func (cp *Copier) Copy(dst io.Writer, src io.Reader) (int64, error) {
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
func (cp *Copier) copyRaw(dst io.Writer, rc syscall.RawConn) (int64, error) {
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
func (cp *Copier) copyBuffered(dst io.Writer, src io.Reader) (int64, error) {
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

// ReadReady reads into b what a socket holds already, without waiting:
// 0 and no error when it holds nothing, or for a src that is no socket
// (or on a system where Go's sockets block). A forward uses it to send a
// client's first bytes with its request, a round trip sooner.
func ReadReady(src io.Reader, b []byte) (int, error) {
	tc, ok := src.(*net.TCPConn)
	if !ok || !rawReads {
		return 0, nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return 0, nil
	}
	var n int
	var rerr error
	if err := rc.Read(func(fd uintptr) bool {
		n, rerr = readFD(fd, b)
		return true // never wait
	}); err != nil {
		return 0, err
	}
	switch {
	case rerr == syscall.EAGAIN:
		return 0, nil
	case rerr != nil:
		return 0, os.NewSyscallError("read", rerr)
	case n == 0 && len(b) > 0:
		return 0, io.EOF
	}
	return n, nil
}
