package link

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/hashicorp/yamux"
)

var (
	// ErrClosed is returned by operations on a closed link.
	ErrClosed = errors.New("link closed")

	// ErrNotNominated is returned for a candidate connection the
	// controlling peer closed without choosing it.
	ErrNotNominated = errors.New("candidate connection not nominated")

	// ErrStreamLost is what a stream's Read returns, instead of io.EOF,
	// when the link ended under it before the peer finished the stream: a
	// copy must not mistake a cut-off transfer for a complete one.
	ErrStreamLost = errors.New("link stream lost: the link ended before the peer finished the stream")

	// ErrStreamReset is what a stream's Read and Write return once it was
	// reset: by the peer (Stream.Abort, or a stream it refused: over its
	// MaxStreams or ReceiveBudget) or by this end. It is both
	// yamux.ErrConnectionReset and syscall.ECONNRESET, so that code that
	// knows sockets and not yamux (a forward) sees a reset.
	ErrStreamReset = fmt.Errorf("link stream reset: %w (%w)", yamux.ErrConnectionReset, syscall.ECONNRESET)

	// ErrNoCandidate is returned by Establish when the candidates ran out
	// (or the context ended) before any of them authenticated.
	ErrNoCandidate = errors.New("no candidate connection authenticated")
)
