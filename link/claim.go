package link

import (
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/warren-p2p/warren/identity"
)

// claimConn opens a candidate with the two ends' key claims without
// spending a round trip on them. Each end states the key it will prove
// (the claim proves nothing, TLS does that, but it names an impostor at
// once and keeps the roles consistent even when the claimed key is not
// the pinned one), and goes on with its TLS handshake while the claims
// cross: the first write waits for our claim to be out, the first read
// takes the peer's claim and checks it before any of the TLS behind it.
// The controlling end's ClientHello so leaves with its claim instead of a
// round trip later, when the peer's claim would have arrived. An end of an
// older version, which waits for the peer's claim before it writes
// anything more, sees the same bytes in the same order.
type claimConn struct {
	net.Conn
	pinned identity.PublicKey

	sent      chan error // our claim's write, once
	writeOnce sync.Once
	writeErr  error
	readOnce  sync.Once
	readErr   error // the peer's claim, if it failed: final
}

// newClaimConn starts writing self's claim on conn and returns conn with
// the peer's claim, checked against pinned, still to be read.
func newClaimConn(conn net.Conn, self, pinned identity.PublicKey) *claimConn {
	c := &claimConn{Conn: conn, pinned: pinned, sent: make(chan error, 1)}
	// A goroutine, not a plain write: on an unbuffered connection (a
	// pipe) the write returns only once the peer reads the claim, which it
	// does only after writing its own.
	go func() {
		_, err := conn.Write(self[:])
		c.sent <- err
	}()
	return c
}

// readClaim reads the peer's claim and checks it, once; every call
// returns the outcome.
func (c *claimConn) readClaim() error {
	c.readOnce.Do(func() {
		var claim identity.PublicKey
		if _, err := io.ReadFull(c.Conn, claim[:]); err != nil {
			c.readErr = fmt.Errorf("read key claim: %w", err)
		} else if err := identity.Pinned(c.pinned)(claim); err != nil {
			c.readErr = fmt.Errorf("key claim: %w", err)
		}
	})
	return c.readErr
}

// wroteClaim waits until our claim is written, once; every call returns
// the outcome.
func (c *claimConn) wroteClaim() error {
	c.writeOnce.Do(func() {
		if err := <-c.sent; err != nil {
			c.writeErr = fmt.Errorf("send key claim: %w", err)
		}
	})
	return c.writeErr
}

func (c *claimConn) Read(b []byte) (int, error) {
	if err := c.readClaim(); err != nil {
		return 0, err
	}
	return c.Conn.Read(b)
}

func (c *claimConn) Write(b []byte) (int, error) {
	if err := c.wroteClaim(); err != nil {
		return 0, err
	}
	return c.Conn.Write(b)
}

// failure is what made the claims fail, if they did: it explains a
// failed handshake better than TLS's view of it. Called by the goroutine
// that ran the handshake, once it is over.
func (c *claimConn) failure() error {
	if c.readErr != nil {
		return c.readErr
	}
	return c.writeErr
}
