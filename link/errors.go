package link

import "errors"

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

	// ErrNoCandidate is returned by Establish when the candidates ran out
	// (or the context ended) before any of them authenticated.
	ErrNoCandidate = errors.New("no candidate connection authenticated")
)
