package forward

import (
	"net"
	"sync"

	"github.com/warren-p2p/warren/internal/bufcopy"
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
func join(cp *bufcopy.Copier, a, b net.Conn) (ab, ba int64) {
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
		n, err := cp.Copy(dst, src)
		end(dst, err)
		return n
	}
	// A direction from a link stream runs only while the stream has data
	// (pump); the other runs here.
	if n, ok := b.(bufcopy.Notifier); ok {
		p := cp.Pump(a, b, n, func(n int64, err error) { ba = n; end(a, err) })
		ab = half(b, a)
		p.Wait()
	} else if n, ok := a.(bufcopy.Notifier); ok {
		p := cp.Pump(b, a, n, func(n int64, err error) { ab = n; end(b, err) })
		ba = half(a, b)
		p.Wait()
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
