package transport

import (
	"errors"
	"fmt"
	"net"
)

var (
	// ErrPeerClosed is returned by Write on a Conn whose peer has closed
	// its end. Read returns the data the peer sent before closing and
	// then io.EOF.
	ErrPeerClosed = errors.New("transport: peer closed the stream")

	// ErrPeerReset is returned once the peer aborted the stream: its Close
	// gave up before everything it had written was acknowledged, so some
	// of that data may be missing.
	ErrPeerReset = errors.New("transport: stream reset by peer")

	// ErrPeerTimeout is returned once nothing at all (data, acknowledgement
	// or keepalive) has arrived from the peer for Config.IdleTimeout.
	ErrPeerTimeout = errors.New("transport: peer silent for too long")

	// ErrReservedConv is returned by Dial for a conversation ID whose first
	// byte on the wire (its low byte) is PrefixByte. MakeConv avoids it.
	ErrReservedConv = errors.New("transport: conversation ID starts with the reserved prefix byte")

	// ErrSessionExists is returned by Dial when a stream with the same
	// remote address and conversation ID is already open on the Demux.
	ErrSessionExists = errors.New("transport: stream with this remote and conversation ID already open")

	// ErrBadPrefix is returned by Handle for a prefix that is empty, too
	// long, does not start with PrefixByte, or overlaps the prefix of
	// another handler or of transport's own control packets.
	ErrBadPrefix = errors.New("transport: invalid handler prefix")

	// errDemuxClosed fails the streams of a Demux that was closed under
	// them; it matches net.ErrClosed.
	errDemuxClosed = fmt.Errorf("transport: demux closed: %w", net.ErrClosed)
)
