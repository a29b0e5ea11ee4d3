package link

import (
	"fmt"
	"io"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/warren-p2p/warren/internal/conf"
)

// Config tunes a Link. A zero field means its default; a negative one is
// an error (Verify).
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

// Defaults of Config, which are also the defaults of the config file's
// [link] keys.
const (
	DefaultKeepAliveInterval  = 15 * time.Second
	DefaultWriteTimeout       = 10 * time.Second
	DefaultHandshakeTimeout   = 10 * time.Second
	DefaultStreamWindow       = 4 << 20
	DefaultMaxStreams         = 16384
	DefaultReceiveBudget      = 64 << 20
	DefaultStreamCloseTimeout = time.Minute
)

// MinStreamWindow is the smallest StreamWindow a link accepts.
const MinStreamWindow = 256 * 1024

// maxAcceptBacklog caps yamux's accept queue (see yamux()).
const maxAcceptBacklog = 4096

// DefaultConfig returns a Config with every default filled in.
func DefaultConfig() *Config {
	return &Config{
		KeepAliveInterval:  DefaultKeepAliveInterval,
		WriteTimeout:       DefaultWriteTimeout,
		HandshakeTimeout:   DefaultHandshakeTimeout,
		StreamWindow:       DefaultStreamWindow,
		MaxStreams:         DefaultMaxStreams,
		ReceiveBudget:      DefaultReceiveBudget,
		StreamCloseTimeout: DefaultStreamCloseTimeout,
	}
}

// withDefaults returns a copy of c (nil allowed) with zero fields defaulted.
func (c *Config) withDefaults() *Config {
	d := DefaultConfig()
	if c == nil {
		return d
	}
	out := *c
	conf.Default(&out.KeepAliveInterval, d.KeepAliveInterval)
	conf.Default(&out.WriteTimeout, d.WriteTimeout)
	conf.Default(&out.HandshakeTimeout, d.HandshakeTimeout)
	conf.Default(&out.StreamWindow, d.StreamWindow)
	conf.Default(&out.MaxStreams, d.MaxStreams)
	conf.Default(&out.ReceiveBudget, d.ReceiveBudget)
	conf.Default(&out.StreamCloseTimeout, d.StreamCloseTimeout)
	return &out
}

// Verify reports whether c (after defaults) is usable.
func (c *Config) Verify() error {
	c = c.withDefaults()
	switch {
	case c.KeepAliveInterval < 0, c.WriteTimeout < 0, c.HandshakeTimeout < 0, c.StreamCloseTimeout < 0:
		return fmt.Errorf("link config: durations must be positive")
	case c.StreamWindow < MinStreamWindow:
		return fmt.Errorf("link config: StreamWindow %d is below %d", c.StreamWindow, MinStreamWindow)
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
