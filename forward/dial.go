package forward

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"

	"github.com/warren-p2p/warren/internal/bufcopy"
)

// ErrPeerOffline is what an Opener's error wraps when the peer is known
// to be offline (not registered with the rendezvous server, or not
// listing this daemon): a SOCKS5 client is told "host unreachable" at
// once rather than wait for a link that will not come.
var ErrPeerOffline = errors.New("peer is offline (not registered with the server)")

// Opener opens streams on links to peers. The daemon implements it over
// its links; OpenStream fails if no link to peer is up. Streams should
// offer CloseWrite() error so half-closes pass through.
type Opener interface {
	OpenStream(ctx context.Context, peer string) (net.Conn, error)
}

// Dial opens a stream to peer, sends req and waits for the reply. ctx
// bounds the whole exchange (its deadline applies to the stream I/O, and
// cancelling it aborts). On success the stream is returned ready for raw
// bytes, with no deadline set. A non-zero reply yields a *RefusedError.
func Dial(ctx context.Context, o Opener, peer string, req Request) (net.Conn, error) {
	s, _, err := dialWith(ctx, o, peer, req, nil)
	return s, err
}

// earlyBytes bounds what a forward sends with its request of what its
// client sent first: a TLS ClientHello or an HTTP request fits.
const earlyBytes = 2 << 10

// dialWith is Dial for a connection from client (nil: none), whose bytes
// the stream is to carry: what client has sent already (a client that
// speaks first: HTTP, RDP, TLS), up to earlyBytes, goes right behind the
// request, and n says how much. The exit reads it once it has connected
// the request, so it no longer waits a round trip for the reply; if the
// exit refuses, it is dropped with the stream. Only on a stream that
// buffers what it receives (a link stream, which says when it has data):
// on an unbuffered one (net.Pipe) the request's write would wait for the
// exit to read past it, which the exit does only after its reply.
func dialWith(ctx context.Context, o Opener, peer string, req Request, client net.Conn) (_ net.Conn, n int, _ error) {
	if err := req.Validate(); err != nil {
		return nil, 0, err
	}
	s, err := o.OpenStream(ctx, peer)
	if err != nil {
		return nil, 0, fmt.Errorf("open stream to peer %s: %w", peer, &openError{err})
	}
	var early []byte
	if _, buffered := s.(bufcopy.Notifier); buffered && client != nil {
		early = make([]byte, earlyBytes)
		if n, err = bufcopy.ReadReady(client, early); err != nil {
			s.Close()
			return nil, 0, fmt.Errorf("client of a stream to peer %s: %w", peer, err)
		}
		early = early[:n]
	}
	if dl, ok := ctx.Deadline(); ok {
		s.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { s.SetDeadline(time.Unix(1, 0)) })
	reply, err := exchange(s, req, early)
	if !stop() || ctx.Err() != nil {
		s.Close()
		return nil, 0, fmt.Errorf("request %s from peer %s: %w", req, peer, context.Cause(ctx))
	}
	if errors.Is(err, syscall.ECONNRESET) {
		// The peer reset the stream without a reply: its link refused it.
		s.Close()
		return nil, 0, &RefusedError{Code: CodeGeneralFailure, Msg: refusedStream, Peer: peer, Target: req.String()}
	}
	if err != nil {
		s.Close()
		return nil, 0, fmt.Errorf("request %s from peer %s: %w", req, peer, err)
	}
	if reply.Code != CodeSucceeded {
		s.Close()
		return nil, 0, &RefusedError{Code: reply.Code, Msg: reply.Msg, Peer: peer, Target: req.String()}
	}
	if err := s.SetDeadline(time.Time{}); err != nil {
		s.Close()
		return nil, 0, fmt.Errorf("request %s from peer %s: %w", req, peer, err)
	}
	return s, n, nil
}

// refusedStream is the reason given for a stream the peer reset before
// replying: its link takes no more of our streams for now.
const refusedStream = "the peer reset the stream before replying: over its stream limit (max_streams) or receive budget (receive_budget)"

func exchange(s net.Conn, req Request, early []byte) (Reply, error) {
	if err := WriteRequest(s, req, early...); err != nil {
		return Reply{}, err
	}
	return ReadReply(s)
}

// openError marks Dial's failure to open a stream (no link to the peer),
// for the refusal counters; its text is the cause's.
type openError struct{ err error }

func (e *openError) Error() string { return e.err.Error() }
func (e *openError) Unwrap() error { return e.err }
