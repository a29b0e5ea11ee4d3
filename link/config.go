package link

import (
	"fmt"
	"io"
	"time"

	"github.com/hashicorp/yamux"
)

// Config tunes a Link. The zero value of a field means its default.
type Config struct {
	// KeepAliveInterval is how often the link pings the peer. A link whose
	// ping goes unanswered for WriteTimeout is closed. Default 15s, below
	// the 30s UDP mapping timeout of common NATs.
	KeepAliveInterval time.Duration

	// WriteTimeout bounds how long a frame may wait to be written to the
	// underlying connection; a link that stalls that long is closed.
	// Default 10s.
	WriteTimeout time.Duration

	// HandshakeTimeout bounds the TLS handshake and nomination on each
	// candidate connection. Default 10s.
	HandshakeTimeout time.Duration

	// StreamWindow is each stream's maximum receive window in bytes.
	// Default 4 MiB; at least 256 KiB.
	StreamWindow uint32

	// MaxStreams caps the streams the peer may have open to us at once,
	// counting those this end has closed and the peer has not finished
	// (see StreamCloseTimeout); more are refused (reset). It is a ceiling
	// on bookkeeping, not what protects this end's memory from a peer:
	// ReceiveBudget is. Default 16384: a forward or SOCKS5 listener
	// carries 10,000 connections to one peer.
	MaxStreams int

	// ReceiveBudget bounds the bytes the peer may have sent on all its
	// streams together that this end has not read yet (each stream may
	// hold up to StreamWindow): a frame that would take the link over it
	// resets its stream. A peer sending into many streams to targets
	// that never read pins at most this much here, plus one frame.
	// Default 64 MiB: 16 streams with full windows; at least StreamWindow.
	ReceiveBudget int64

	// StreamCloseTimeout bounds how long a stream this end has closed
	// (Close) waits for the peer to finish its side, as tcp_fin_timeout
	// does an orphaned TCP connection: then the peer is sent a reset and
	// the link forgets the stream. It does not apply to a half-closed
	// stream (CloseWrite), which stays readable for as long as the peer
	// sends. Default 1m.
	StreamCloseTimeout time.Duration
}

const (
	minStreamWindow  = 256 * 1024
	maxAcceptBacklog = 4096
)

// DefaultConfig returns a Config with every default filled in.
func DefaultConfig() *Config {
	return &Config{
		KeepAliveInterval:  15 * time.Second,
		WriteTimeout:       10 * time.Second,
		HandshakeTimeout:   10 * time.Second,
		StreamWindow:       4 << 20,
		MaxStreams:         16384,
		ReceiveBudget:      64 << 20,
		StreamCloseTimeout: time.Minute,
	}
}

// withDefaults returns a copy of c (nil allowed) with zero fields defaulted.
func (c *Config) withDefaults() *Config {
	d := DefaultConfig()
	if c == nil {
		return d
	}
	out := *c
	if out.KeepAliveInterval == 0 {
		out.KeepAliveInterval = d.KeepAliveInterval
	}
	if out.WriteTimeout == 0 {
		out.WriteTimeout = d.WriteTimeout
	}
	if out.HandshakeTimeout == 0 {
		out.HandshakeTimeout = d.HandshakeTimeout
	}
	if out.StreamWindow == 0 {
		out.StreamWindow = d.StreamWindow
	}
	if out.MaxStreams == 0 {
		out.MaxStreams = d.MaxStreams
	}
	if out.ReceiveBudget == 0 {
		out.ReceiveBudget = d.ReceiveBudget
	}
	if out.StreamCloseTimeout == 0 {
		out.StreamCloseTimeout = d.StreamCloseTimeout
	}
	return &out
}

// Verify reports whether c (after defaults) is usable.
func (c *Config) Verify() error {
	c = c.withDefaults()
	switch {
	case c.KeepAliveInterval < 0, c.WriteTimeout < 0, c.HandshakeTimeout < 0, c.StreamCloseTimeout < 0:
		return fmt.Errorf("link config: durations must be positive")
	case c.StreamWindow < minStreamWindow:
		return fmt.Errorf("link config: StreamWindow %d is below %d", c.StreamWindow, minStreamWindow)
	case c.MaxStreams < 0:
		return fmt.Errorf("link config: MaxStreams must be positive")
	case c.ReceiveBudget < int64(c.StreamWindow):
		return fmt.Errorf("link config: ReceiveBudget %d is below StreamWindow %d", c.ReceiveBudget, c.StreamWindow)
	}
	return nil
}

func (c *Config) yamux() *yamux.Config {
	y := yamux.DefaultConfig()
	// Link runs its own keepalive so that it can record the RTT.
	y.EnableKeepAlive = false
	y.ConnectionWriteTimeout = c.WriteTimeout
	y.MaxStreamWindowSize = c.StreamWindow
	// yamux would arm its close timeout on a half-close too (its Close is
	// our CloseWrite) and reset a stream still receiving; Stream.Close
	// runs StreamCloseTimeout instead.
	y.StreamCloseTimeout = 0
	// yamux resets a stream that finds its accept queue full; Accept
	// drains it at once, so it need not hold MaxStreams (each entry is a
	// pointer allocated up front, per link). It also bounds the streams
	// we open that the peer has not acknowledged yet.
	y.AcceptBacklog = min(c.MaxStreams, maxAcceptBacklog)
	y.LogOutput = io.Discard
	y.Logger = nil
	return y
}
