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
func join(a, b net.Conn) (ab, ba int64) {
	var once sync.Once
	closeBoth := func() {
		once.Do(func() {
			a.Close()
			b.Close()
		})
	}
	half := func(dst, src net.Conn) int64 {
		n, err := io.Copy(dst, src)
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
