package forward

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"
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
	if err := req.Validate(); err != nil {
		return nil, err
	}
	s, err := o.OpenStream(ctx, peer)
	if err != nil {
		return nil, fmt.Errorf("open stream to peer %s: %w", peer, &openError{err})
	}
	if dl, ok := ctx.Deadline(); ok {
		s.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { s.SetDeadline(time.Unix(1, 0)) })
	reply, err := exchange(s, req)
	if !stop() || ctx.Err() != nil {
		s.Close()
		return nil, fmt.Errorf("request %s from peer %s: %w", req, peer, context.Cause(ctx))
	}
	if errors.Is(err, syscall.ECONNRESET) {
		// The peer reset the stream without a reply: its link refused it.
		s.Close()
		return nil, &RefusedError{Code: CodeGeneralFailure, Msg: refusedStream, Peer: peer, Target: req.String()}
	}
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("request %s from peer %s: %w", req, peer, err)
	}
	if reply.Code != CodeSucceeded {
		s.Close()
		return nil, &RefusedError{Code: reply.Code, Msg: reply.Msg, Peer: peer, Target: req.String()}
	}
	if err := s.SetDeadline(time.Time{}); err != nil {
		s.Close()
		return nil, fmt.Errorf("request %s from peer %s: %w", req, peer, err)
	}
	return s, nil
}

// refusedStream is the reason given for a stream the peer reset before
// replying: its link takes no more of our streams for now.
const refusedStream = "the peer reset the stream before replying: over its stream limit (max_streams) or receive budget (receive_budget)"

func exchange(s net.Conn, req Request) (Reply, error) {
	if err := WriteRequest(s, req); err != nil {
		return Reply{}, err
	}
	return ReadReply(s)
}

// openError marks Dial's failure to open a stream (no link to the peer),
// for the refusal counters; its text is the cause's.
type openError struct{ err error }

func (e *openError) Error() string { return e.err.Error() }
func (e *openError) Unwrap() error { return e.err }
