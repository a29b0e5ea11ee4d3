package link

import "errors"

var (
	// ErrClosed is returned by operations on a closed link.
	ErrClosed = errors.New("link closed")

	// ErrNotNominated is returned for a candidate connection the
	// controlling peer closed without choosing it.
	ErrNotNominated = errors.New("candidate connection not nominated")

	// ErrNoCandidate is returned by Establish when the candidates ran out
	// (or the context ended) before any of them authenticated.
	ErrNoCandidate = errors.New("no candidate connection authenticated")
)
