package forwardtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"

	"github.com/warren-p2p/warren/forward"
)

// Opener is an in-process forward.Opener: each stream is a loopback TCP
// connection pair (or, WithPipes, a net.Pipe) whose far end is served by a
// forward.Server, as if a link to the named peer were up. Close stops
// every ServeStream and waits for them.
type Opener struct {
	pipes  bool
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	closed  bool
	routes  map[string]route
	offline map[string]bool
}

type route struct {
	srv  *forward.Server
	from string
}

// Option configures an Opener.
type Option func(*Opener)

// WithPipes makes streams net.Pipe pairs instead of loopback TCP: like
// yamux streams they have non-TCP addresses, but they cannot half-close.
func WithPipes() Option { return func(o *Opener) { o.pipes = true } }

// NewOpener returns an Opener with no routes.
func NewOpener(opts ...Option) *Opener {
	ctx, cancel := context.WithCancel(context.Background())
	o := &Opener{ctx: ctx, cancel: cancel, routes: make(map[string]route)}
	for _, opt := range opts {
		opt(o)
	}
	return o
}

// Route makes streams opened to peer be served by srv, which sees them as
// coming from the peer named from (the opener's name in srv's Policy).
func (o *Opener) Route(peer string, srv *forward.Server, from string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.routes[peer] = route{srv: srv, from: from}
}

// Offline makes OpenStream to peer fail as the daemon's does for a peer
// the rendezvous server says is offline.
func (o *Opener) Offline(peer string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.offline == nil {
		o.offline = make(map[string]bool)
	}
	o.offline[peer] = true
}

// ErrNoLink is returned by OpenStream for a peer without a route.
var ErrNoLink = errors.New("no link to peer")

// OpenStream implements forward.Opener.
func (o *Opener) OpenStream(ctx context.Context, peer string) (net.Conn, error) {
	o.mu.Lock()
	r, ok := o.routes[peer]
	offline := o.offline[peer]
	o.mu.Unlock()
	if offline {
		return nil, fmt.Errorf("peer %s: %w", peer, forward.ErrPeerOffline)
	}
	if !ok {
		return nil, fmt.Errorf("%w %s", ErrNoLink, peer)
	}
	var near, far net.Conn
	if o.pipes {
		near, far = net.Pipe()
	} else {
		var err error
		if near, far, err = TCPPair(ctx); err != nil {
			return nil, err
		}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		near.Close()
		far.Close()
		return nil, errors.New("opener closed")
	}
	o.wg.Go(func() { r.srv.ServeStream(o.ctx, far, r.from) })
	return near, nil
}

// Close cancels the context of every ServeStream and waits for them.
func (o *Opener) Close() {
	o.mu.Lock()
	o.closed = true
	o.mu.Unlock()
	o.cancel()
	o.wg.Wait()
}

// TCPPair returns two ends of a fresh loopback TCP connection.
func TCPPair(ctx context.Context) (near, far net.Conn, err error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	defer ln.Close()
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		ch <- result{c, err}
	}()
	var d net.Dialer
	near, err = d.DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		ln.Close()
		<-ch
		return nil, nil, err
	}
	r := <-ch
	if r.err != nil {
		near.Close()
		return nil, nil, r.err
	}
	return near, r.c, nil
}
