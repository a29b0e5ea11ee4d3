package fuzztest

import (
	"bytes"
	"net"
	"sync"
	"time"
)

// Conn is a TCP connection whose peer sent the bytes it was made with and
// then half-closed: reads return them and then io.EOF, without blocking.
// What is written to it is kept. Deadlines are ignored. After Close, reads
// and writes fail with net.ErrClosed; after CloseWrite, writes do.
type Conn struct {
	local, remote net.Addr

	mu      sync.Mutex
	r       *bytes.Reader
	out     bytes.Buffer
	wclosed bool

	once   sync.Once
	closed chan struct{}
}

// NewConn returns a Conn from local to remote whose peer sent in.
func NewConn(in []byte, local, remote net.Addr) *Conn {
	return &Conn{local: local, remote: remote, r: bytes.NewReader(in), closed: make(chan struct{})}
}

func (c *Conn) Read(b []byte) (int, error) {
	if c.IsClosed() {
		return 0, net.ErrClosed
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.r.Read(b)
}

func (c *Conn) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.IsClosed() || c.wclosed {
		return 0, net.ErrClosed
	}
	return c.out.Write(b)
}

// CloseWrite ends this side's writing.
func (c *Conn) CloseWrite() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.wclosed = true
	return nil
}

func (c *Conn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

// Closed is closed once Close has been called.
func (c *Conn) Closed() <-chan struct{} { return c.closed }

// IsClosed reports whether Close has been called.
func (c *Conn) IsClosed() bool {
	select {
	case <-c.closed:
		return true
	default:
		return false
	}
}

// Written returns a copy of what was written so far.
func (c *Conn) Written() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.out.Bytes())
}

// Unread is how many of the peer's bytes have not been read.
func (c *Conn) Unread() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.r.Len()
}

func (c *Conn) LocalAddr() net.Addr              { return c.local }
func (c *Conn) RemoteAddr() net.Addr             { return c.remote }
func (c *Conn) SetDeadline(time.Time) error      { return nil }
func (c *Conn) SetReadDeadline(time.Time) error  { return nil }
func (c *Conn) SetWriteDeadline(time.Time) error { return nil }

// Listener hands out the connections sent on Conns, and blocks in Accept
// until Close once there are none.
type Listener struct {
	Conns  chan net.Conn
	addr   net.Addr
	once   sync.Once
	closed chan struct{}
}

// NewListener returns a Listener at addr whose Conns holds up to buffered
// connections.
func NewListener(addr net.Addr, buffered int) *Listener {
	return &Listener{Conns: make(chan net.Conn, buffered), addr: addr, closed: make(chan struct{})}
}

func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.Conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *Listener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *Listener) Addr() net.Addr { return l.addr }
